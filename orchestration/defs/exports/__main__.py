"""`python -m orchestration.defs.exports <export id> <question json>`: one export as a Dagster run."""

import sys

from orchestration.defs.exports import main

sys.exit(main(sys.argv[1:]))
