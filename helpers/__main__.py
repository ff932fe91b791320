"""`python -m helpers run ...` and `python -m helpers student ...`: the
course's command line, in `helpers.course.cli`."""

import sys

from helpers.course.cli import main

sys.exit(main())
