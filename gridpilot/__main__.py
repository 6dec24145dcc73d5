"""`python -m gridpilot` is the `gridpilot` command."""

import sys

from gridpilot.cli.main import main

sys.exit(main())
