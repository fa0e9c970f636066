"""What a test does when something it needs is not installed: skip with the command
that installs it, or, in CI, fail.

Reads CI: with CI=true (or 1, yes) a missing backend, binary or tool is a failure, so that
a broken bootstrap can never turn into a green run of skipped tests.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(message: str) -> NoReturn:
    """Skip with `message` (which says how to install what is missing); fail in CI."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing dependency is a failure)", pytrace=False)
    pytest.skip(message)
