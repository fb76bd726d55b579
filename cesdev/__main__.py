"""`python -m cesdev`: the development command."""

import sys

from cesdev.cli import main

sys.exit(main())
