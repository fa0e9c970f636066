"""obs-views [--check]: write the generated views into the repository, or (with
--check) exit 1 naming every file that differs from what would be generated.

Writes grafana/dashboards/*.json, kibana/saved-objects.ndjson and the PrometheusRules
of k8s/components/kube-prometheus-stack/ (from prometheus/rules/*.yml). Reads no
environment variables.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from obs_tools.common.paths import REPO

from . import grafana, kibana, prometheus_rule

DASHBOARDS_DIR = REPO / "grafana" / "dashboards"
SAVED_OBJECTS = REPO / "kibana" / "saved-objects.ndjson"
RUNBOOKS_DIR = REPO / "docs" / "runbooks"


def render() -> dict[Path, str]:
    """Every generated file and its content."""
    files = {
        DASHBOARDS_DIR / name: json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, body in grafana.dashboards(RUNBOOKS_DIR).items()
    }
    files[SAVED_OBJECTS] = kibana.ndjson(kibana.saved_objects())
    files[prometheus_rule.OUTPUT] = prometheus_rule.render()
    return files


def _name(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def stale_files(files: dict[Path, str]) -> list[str]:
    """Files that differ from `files`, and generated files left over in the folder."""
    stale = [_name(p) for p, text in files.items() if not p.exists() or p.read_text() != text]
    stale += [_name(p) for p in DASHBOARDS_DIR.glob("*.json") if p not in files]
    return sorted(stale)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="obs-views", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        stale = stale_files(files)
        for name in stale:
            print(f"out of date: {name} (run `make views`)", file=sys.stderr)
        return 1 if stale else 0
    DASHBOARDS_DIR.mkdir(parents=True, exist_ok=True)
    prometheus_rule.OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    for path in DASHBOARDS_DIR.glob("*.json"):
        if path not in files:
            path.unlink()
    for path, text in files.items():
        path.write_text(text)
    print(f"wrote {len(files)} files")
    return 0
