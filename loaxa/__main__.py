"""`python -m loaxa`: the same program as the `loaxa` console script."""

import sys

from loaxa.cli import main

sys.exit(main())
