"""``python -m reliability.cli``: the ``reliability`` command."""

import sys

from reliability.cli import main

sys.exit(main())
