"""The pilot: runs on a worker node, registers, pulls jobs, runs wrappers, streams heartbeats."""
