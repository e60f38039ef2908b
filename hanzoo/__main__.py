"""`python -m hanzoo` is the `hanzoo` command."""

from .cli import main

raise SystemExit(main())
