"""Generated from proto/gridpilot/v1; do not edit."""
