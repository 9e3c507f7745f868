"""`python -m pipeline`: the dreamreel command."""

import sys

from pipeline.cli import main

sys.exit(main())
