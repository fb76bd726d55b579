"""`python -m ces` is the `ces` command."""

import sys

from ces.cli import main

sys.exit(main())
