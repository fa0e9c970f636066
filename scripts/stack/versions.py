"""Pinned versions and install locations, from scripts/versions.env.

Reads OBS_STACK_CACHE (default ~/.cache/obs-stack), as scripts/bootstrap.sh does.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]
REPO = SCRIPTS.parent


def _parse(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


VERSIONS = _parse(SCRIPTS / "versions.env")


def cache_dir() -> Path:
    return Path(os.environ.get("OBS_STACK_CACHE", Path.home() / ".cache" / "obs-stack"))


def jaeger_binary() -> Path:
    return cache_dir() / "bin" / f"jaeger-{VERSIONS['JAEGER_MODULE_VERSION']}"


def elasticsearch_home() -> Path:
    name = f"elasticsearch-{VERSIONS['ELASTICSEARCH_VERSION']}"
    # Mirrors bootstrap.sh: as root, outside /root so that user obs-es can read it.
    if os.geteuid() == 0:
        return Path("/var/cache/obs-stack") / name
    return cache_dir() / name


def java_home() -> Path | None:
    explicit = os.environ.get("ES_JAVA_HOME") or os.environ.get("JAVA_HOME")
    if explicit:
        return Path(explicit)
    java = shutil.which("java")
    return Path(os.path.realpath(java)).parents[1] if java else None
