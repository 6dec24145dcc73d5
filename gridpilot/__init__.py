"""gridpilot: pilot-based workload management (shared client-side pieces and the CLI)."""

__version__ = "0.1.0"
