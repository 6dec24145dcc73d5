"""Central's logic: plain async functions that receive their collaborators (store, matcher,
config, clock). One module per topic; errors in errors.py; no gRPC here."""
