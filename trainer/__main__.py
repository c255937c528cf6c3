"""`python -m trainer` runs one training run (see trainer/main.py)."""

import sys

from trainer.main import main

sys.exit(main())
