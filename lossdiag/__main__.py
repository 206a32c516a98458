"""`python -m lossdiag` runs the command line."""

import sys

# `-m` put the working directory first on sys.path. lossdiag never imports the user's code here,
# and a json.py or random.py in that folder would otherwise replace the real module.
if sys.path and sys.path[0] in ("", __import__("os").getcwd()):
    del sys.path[0]

from lossdiag.cli import main

sys.exit(main())
