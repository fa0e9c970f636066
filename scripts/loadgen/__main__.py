"""Entry point: python -m loadgen MODE [args]. See cli.py for what it reads."""

import sys

from .cli import main

sys.exit(main())
