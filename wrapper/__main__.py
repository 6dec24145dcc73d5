"""`python -m wrapper --central HOST:PORT --job-dir DIR --site SITE ...`"""

import sys

from wrapper.main import main

sys.exit(main())
