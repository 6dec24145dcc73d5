"""Benchmarks of a real central: `gridpilot bench matcher` (see docs/benchmarks.md)."""
