"""`python -m central serve --config FILE ...`; see central/main.py."""

import sys

from central.main import main

sys.exit(main())
