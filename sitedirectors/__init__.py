"""Site directors: the director loop and one backend module per computing-element type."""
