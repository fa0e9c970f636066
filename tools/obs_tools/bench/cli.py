"""Command line of `make bench`: `obs-bench run|report [JSON]`.

Reads the BENCH_* variables through run.py (see there). The services' packages are
installed in the venv (scripts/bootstrap.sh), so /metrics is timed in-process with the
real app.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from obs_tools.common.versions import REPO

DEFAULT_JSON = REPO / "docs" / "benchmarks.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="obs-bench", description=__doc__)
    parser.add_argument("command", choices=["run", "report", "all"])
    parser.add_argument("json", nargs="?", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    if args.command in ("run", "all"):
        from .run import run

        run(args.json)
    if args.command in ("report", "all"):
        from .report import report

        report(args.json)
    return 0
