"""`python -m guard.cli`: the `guard` command."""

import sys

from guard.cli.main import main

sys.exit(main())
