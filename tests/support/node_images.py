"""The pod sandbox ("pause") image of the real node's tests, built with podman from the
services' base image and handed to the node's containerd. The stand-ins of the upstream
images (Elasticsearch among them) are tests/support/standins.py.

Reads no environment variables.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .podman import Podman

# Every image built here in place of an upstream one says so in this label: what it
# imitates and what it was built from.
STANDIN_LABEL = "io.obs-stack.standin"
BUILD_TIMEOUT_S = 600


def _build(podman: Podman, tag: str, containerfile: str, context: Path) -> None:
    (context / "Containerfile").write_text(containerfile)
    podman.run(
        "build", "--pull=never", "--layers", "--network=host", "--tag", tag,
        "--file", str(context / "Containerfile"), str(context), timeout=BUILD_TIMEOUT_S,
    )  # fmt: skip


def build_pause_image(podman: Podman, base: str, tag: str) -> None:
    """A sandbox image: its only process sleeps until containerd kills it (SIGKILL)."""
    with tempfile.TemporaryDirectory() as context:
        _build(
            podman,
            tag,
            f'FROM {base}\nLABEL {STANDIN_LABEL}="pod sandbox (pause), from {base}"\n'
            'USER 65535:65535\nENTRYPOINT ["sleep", "infinity"]\n',
            Path(context),
        )
