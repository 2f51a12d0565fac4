"""``python -m saga.cli``: the ``saga`` command."""

import sys

from saga.cli.command import main

sys.exit(main())
