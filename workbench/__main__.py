"""`python -m workbench` is the `sift` command."""

import sys

from workbench.cli import main

sys.exit(main())
