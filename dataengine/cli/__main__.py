"""`python -m dataengine.cli`, the same as the `dataengine` command."""

import sys

from dataengine.cli import main

sys.exit(main())
