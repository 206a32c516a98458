"""`python -m lossdiag` runs the command line."""

import sys

from lossdiag.cli import main

sys.exit(main())
