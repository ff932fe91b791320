"""`python -m helpers run ...` (the course runner) and `python -m helpers
student ...` (student copies): see helpers.runner and helpers.workshop."""

import sys

from helpers.runner import main

sys.exit(main())
