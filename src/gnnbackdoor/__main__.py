import sys

from gnnbackdoor.cli import main

sys.exit(main())
