import sys

from sitedirectors.main import main

sys.exit(main())
