"""`python -m linarch` is the `linarch` command."""

import sys

from linarch.cli import main

sys.exit(main())
