"""The deploy tool's own small venv (`scripts/bootstrap.sh deploy`: Python >= 3.10 and
requirements/deploy.lock, PyYAML only), built on the oldest Python it supports, so that
the tests which run `obs-deploy` against the real control plane prove that `make up`,
`status` and `down` need nothing more (issue #21: Ubuntu 22.04 ships Python 3.10).

Reads OBS_TEST_PYTHON3<minor> (OBS_TEST_PYTHON310: the Python 3.10 to use; else
python3.10 on PATH, else pyenv's under HOME), OBS_STACK_CACHE through bootstrap.sh, and
CI (a missing Python 3.10 then fails). Needs PyPI the first time (bootstrap.sh deploy).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from obs_tools.common.paths import REPO

from tests.support.requirements import unavailable

BOOTSTRAP = REPO / "scripts" / "bootstrap.sh"


def python_version(candidate: str) -> tuple[int, int] | None:
    try:
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    # A pyenv shim on PATH may exist and still fail: it needs `pyenv global`.
    return tuple(map(int, probe.stdout.split())) if probe.returncode == 0 else None


def find_python(minor: int) -> str | None:
    """A Python 3.<minor> that runs: OBS_TEST_PYTHON3<minor>, then PATH, then pyenv's."""
    pyenv = sorted(Path.home().glob(f".pyenv/versions/3.{minor}.*/bin/python3.{minor}"))
    candidates = [os.environ.get(f"OBS_TEST_PYTHON3{minor}"), shutil.which(f"python3.{minor}")]
    for candidate in [*candidates, *map(str, pyenv)]:
        if candidate and python_version(candidate) == (3, minor):
            return candidate
    return None


@functools.cache
def deploy_python() -> str:
    """The interpreter of the deploy venv on Python 3.10, made by bootstrap.sh deploy."""
    python = find_python(10)
    if python is None:
        unavailable(
            "no Python 3.10 to run the deploy tool on its oldest Python (set "
            "OBS_TEST_PYTHON310, or: pyenv install 3.10)"
        )
    env = {**os.environ, "PYTHON": python}
    built = subprocess.run(
        ["bash", str(BOOTSTRAP), "deploy"], capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    if built.returncode != 0:
        raise AssertionError(
            f"scripts/bootstrap.sh deploy with {python} failed:\n{built.stdout}{built.stderr}"
        )
    venv = subprocess.run(
        ["bash", str(BOOTSTRAP), "--print-deploy-venv"], capture_output=True, text=True,
        env=env, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    python = str(Path(venv) / "bin" / "python")
    # The venv is shared by the checkouts that use the same cache, and its editable
    # install follows the last one that ran bootstrap: it must be this one.
    where = subprocess.run(
        [python, "-c", "import obs_tools; print(obs_tools.__file__)"],
        capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    if not where.startswith(str(REPO / "tools")):
        raise AssertionError(f"the deploy venv {venv} runs obs_tools from {where}, not {REPO}")
    return python
