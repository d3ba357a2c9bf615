"""``python -m nasseg.cli`` is the ``nasseg`` command."""

import sys

from nasseg.cli import main

sys.exit(main())
