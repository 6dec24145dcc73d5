"""The job wrapper: runs one job attempt (sandbox, input data, payload under a watchdog, outputs)."""
