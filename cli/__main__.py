"""`python -m cli COMMAND ...`: the same as `analyticspro COMMAND ...`."""

import sys

from cli import main

sys.exit(main())
