"""Central's gRPC layer: thin servicers over central.logic, one interceptor, conversions."""
