"""`python -m groklab.cli VERB ...`: the same as the `groklab` command."""

import sys

from groklab.cli.main import main

sys.exit(main())
