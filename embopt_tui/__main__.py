"""``python -m embopt_tui`` is the ``embopt-tui`` command."""

import sys

from embopt_tui.cli import main

sys.exit(main())
