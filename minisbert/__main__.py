"""`python -m minisbert …` runs the `minisbert` command (see cli.py)."""

from .cli import main

raise SystemExit(main())
