"""`python -m linarch.search ...`: see cli.py."""

import sys

from linarch.search.cli import main

if __name__ == "__main__":
    sys.exit(main())
