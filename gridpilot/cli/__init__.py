"""Command-line entry points: the `gridpilot` umbrella and the gbasf2-style user commands."""
