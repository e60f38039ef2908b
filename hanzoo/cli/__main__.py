"""python -m hanzoo.cli: the hanzoo command."""

import sys

from . import main

sys.exit(main())
