"""`python -m obs_tools.loadgen`: the same as `obs-loadgen` (cli.py)."""

from .cli import main

raise SystemExit(main())
