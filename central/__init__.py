"""The central service: job store, matcher, state machine, sandboxes, data catalog, agents."""
