"""The job wrapper: runs one job attempt (sandbox, input data, payload + watchdog, outputs)."""
