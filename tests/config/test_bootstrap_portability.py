"""scripts/bootstrap.sh where a GNU tool is missing (issue #21): without sha256sum
(older macOS has only Perl's `shasum -a 256`, issue #21) `--print-venv` still names the same
environment. Before the fix it stopped at once: "sha256sum: command not found".

Reads no environment variables (PATH is built by the test).
"""

from __future__ import annotations

import os
import shutil
import subprocess

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
