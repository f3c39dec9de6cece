"""`python -m aposthog`: the command line (the `aposthog` script is `_aposthog_cli`)."""

import sys

try:
    from ._cli import main
except KeyboardInterrupt:
    # Ctrl-C while the command line loads (its imports take a moment): quiet, as in it.
    sys.exit(130)

sys.exit(main())
