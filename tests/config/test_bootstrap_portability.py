"""scripts/bootstrap.sh where a GNU tool is missing (issue #21): without sha256sum
(older macOS has only Perl's `shasum -a 256`, issue #21) `--print-venv` still names the same
environment. Before the fix it stopped at once: "sha256sum: command not found".

Reads no environment variables (PATH is built by the test).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from obs_tools.common.paths import REPO

BOOTSTRAP = REPO / "scripts" / "bootstrap.sh"


def path_without(tmp_path, missing: str) -> str:
    """A PATH of one directory linking every command on PATH but `missing`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            link = bin_dir / name
            if name != missing and not link.exists():
                link.symlink_to(os.path.join(directory, name))
    return str(bin_dir)


def test_print_venv_works_without_sha256sum(tmp_path):
    if not shutil.which("shasum"):
        pytest.skip("no shasum here to stand for macOS's")
    expected = subprocess.run(
        ["bash", str(BOOTSTRAP), "--print-venv"], capture_output=True, text=True, check=True,
        timeout=60,
    ).stdout  # fmt: skip
    env = {**os.environ, "PATH": path_without(tmp_path, "sha256sum")}
    result = subprocess.run(
        ["bash", str(BOOTSTRAP), "--print-venv"], capture_output=True, text=True, env=env,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


def python_310() -> str | None:
    """A Python 3.10 that runs (a pyenv shim on PATH may not: it needs `pyenv global`)."""
    pyenv = sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))
    for candidate in [shutil.which("python3.10"), *map(str, pyenv)]:
        if not candidate:
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if probe.stdout.strip() == "True":
            return candidate
    return None


def test_a_python_too_old_gets_one_line_not_a_traceback(tmp_path):
    """Ubuntu 22.04's Python 3.10: before the fix an AssertionError traceback came first."""
    old = python_310()
    if not old:
        pytest.skip("no Python 3.10 here")
    env = {**os.environ, "PYTHON": old, "OBS_STACK_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        ["bash", str(BOOTSTRAP), "python"], capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "ERROR: Python >= 3.11 is required" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
