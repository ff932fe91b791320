"""`python -m helpers run ...`: the course runner (see helpers.runner)."""

import sys

from helpers.runner import main

sys.exit(main())
