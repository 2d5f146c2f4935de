"""`python -m deploy ...` runs the enhance command (see deploy/enhance.py)."""

import sys

from deploy.enhance import main

sys.exit(main())
