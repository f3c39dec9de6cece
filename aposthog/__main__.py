"""`python -m aposthog`: the command line (the `aposthog` script is `_aposthog_cli`)."""

import sys

from ._cli import main

sys.exit(main())
