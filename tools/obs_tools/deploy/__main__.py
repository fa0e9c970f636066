"""`python -m obs_tools.deploy`: the same as its console command (cli.py)."""

from .cli import main

raise SystemExit(main())
