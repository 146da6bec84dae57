"""``python -m lcc.cli``: the ``lcc`` command."""

import sys

from . import main

sys.exit(main())
