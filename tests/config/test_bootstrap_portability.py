"""scripts/bootstrap.sh on a learner's machine (issue #21): without sha256sum (older macOS
has only Perl's `shasum -a 256`) `--print-venv` still names the same environment (before
the fix it stopped at once: "sha256sum: command not found"); a Python too old, or one
without venv support (Debian's and Ubuntu's python3 without python3-venv), gets one line
naming what to install, not a traceback.

Reads OBS_TEST_PYTHON39 and OBS_TEST_PYTHON310 (through tests/support/deploy_venv.py
find_python; else pyenv's under HOME) and passes the rest of the environment on to
bootstrap.sh with PYTHON, PYTHONPATH, PATH and OBS_STACK_CACHE set by each test.
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


def bootstrap(tmp_path, mode: str, **env: str) -> subprocess.CompletedProcess:
    """`scripts/bootstrap.sh MODE` with a cache of the test's own and `env` added."""
    environ = {**os.environ, "OBS_STACK_CACHE": str(tmp_path / "cache"), **env}
    return subprocess.run(
        ["bash", str(BOOTSTRAP), mode], capture_output=True, text=True, env=environ,
        timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    "mode, minor, message",
    [
        # Ubuntu 22.04's Python 3.10: before the fix an AssertionError traceback came first.
        ("python", 10, "ERROR: Python >= 3.11 is required"),
        # The deploy tool's own venv takes 3.10, not older.
        ("deploy", 9, "ERROR: Python >= 3.10 is required"),
    ],
)
def test_a_python_too_old_gets_one_line_not_a_traceback(tmp_path, mode, minor, message):
    old = find_python(minor)
    if not old:
        pytest.skip(f"no Python 3.{minor} here")
    result = bootstrap(tmp_path, mode, PYTHON=old)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
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
    result = bootstrap(tmp_path, "deploy", PYTHONPATH=str(shadow))
    assert result.returncode != 0
    assert "install the package python3-venv" in result.stderr, result.stderr
    assert not list((tmp_path / "cache").glob("venv-deploy-*")), "a half-made venv was left"
