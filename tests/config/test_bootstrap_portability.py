"""scripts/bootstrap.sh on a learner's machine (issue #21): without sha256sum (older macOS
has only Perl's `shasum -a 256`) `--print-venv` still names the same environment (before
the fix it stopped at once: "sha256sum: command not found"); a Python too old, or one
without venv support (Debian's and Ubuntu's python3 without python3-venv), gets one line
naming what to install, not a traceback.

Reads no environment variables (PATH is built by the test).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from obs_tools.common.paths import REPO

from tests.support.deploy_venv import find_python

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


def test_a_python_too_old_gets_one_line_not_a_traceback(tmp_path):
    """Ubuntu 22.04's Python 3.10: before the fix an AssertionError traceback came first."""
    old = find_python(10)
    if not old:
        pytest.skip("no Python 3.10 here")
    env = {**os.environ, "PYTHON": old, "OBS_STACK_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        ["bash", str(BOOTSTRAP), "python"], capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "ERROR: Python >= 3.11 is required" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_the_deploy_tool_refuses_a_python_older_than_3_10(tmp_path):
    old = find_python(9)
    if not old:
        pytest.skip("no Python 3.9 here")
    env = {**os.environ, "PYTHON": old, "OBS_STACK_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        ["bash", str(BOOTSTRAP), "deploy"], capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "ERROR: Python >= 3.10 is required" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_python_without_venv_support_names_the_package_to_install(tmp_path):
    """Debian's and Ubuntu's python3 lack ensurepip until python3-venv is installed;
    `python3 -m venv` then stops half-way with a message about ensurepip. Stood in for
    here by an `ensurepip` that fails to import, first on the path, as Debian's does."""
    shadow = tmp_path / "no-ensurepip"
    (shadow / "ensurepip").mkdir(parents=True)
    (shadow / "ensurepip" / "__init__.py").write_text(
        "raise ImportError(\"No module named 'ensurepip'\")\n"
    )
    env = {**os.environ, "PYTHONPATH": str(shadow), "OBS_STACK_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        ["bash", str(BOOTSTRAP), "deploy"], capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "install the package python3-venv" in result.stderr, result.stderr
    assert not list((tmp_path / "cache").glob("venv-deploy-*")), "a half-made venv was left"
