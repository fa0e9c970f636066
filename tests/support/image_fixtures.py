"""The two service images, built once per test session from services/*/Dockerfile; a
pytest plugin (tests/conftest.py loads it), shared by the image tests and the real
Kubernetes node's tests (tests/k8s/), so that one session builds them once.

Reads CI: with CI=true a missing podman or base image fails the run; elsewhere the
image tests are skipped with the command that installs them (`scripts/bootstrap.sh
images`, which `make test` runs first). Images get a tag unique to this run and are
removed at the end; podman's build cache (untagged layers) stays, so the next run only
rebuilds what changed.
"""

from __future__ import annotations

import re
import secrets
import shutil
import time
from dataclasses import dataclass

import pytest
from obs_tools.common.paths import REPO

from tests.support import podman as podman_support
from tests.support.requirements import unavailable

SERVICES = ("backend", "frontend")
BUILD_TIMEOUT_S = 600


def base_image() -> str:
    """The base every Dockerfile starts FROM (scripts/bootstrap.sh images provides it)."""
    images = {
        match
        for name in SERVICES
        for match in re.findall(
            r"^FROM\s+(\S+)", (REPO / "services" / name / "Dockerfile").read_text(), re.M
        )
    }
    assert len(images) == 1, f"services/*/Dockerfile start FROM different bases: {images}"
    return images.pop()


def missing(message: str) -> None:
    unavailable(f"{message}; run `scripts/bootstrap.sh images`")


@dataclass(frozen=True)
class BuiltImage:
    service: str
    tag: str
    size_bytes: int
    build_seconds: float
    user: str


# Filled by the fixtures, printed at the end of the run.
BUILT: list[BuiltImage] = []
BASE: list[str] = []


@pytest.fixture(scope="session")
def podman() -> podman_support.Podman:
    executable = shutil.which("podman")
    if not executable:
        missing("podman is not installed")
    image = base_image()
    if not podman_support.Podman(executable).image_exists(image):
        missing(f"the base image {image} is not in podman's storage")
    podman = podman_support.detect(executable, image)
    # scripts/bootstrap.sh labels its local stand-in; a pulled official image has no label.
    standin = podman.inspect_image(image, '{{index .Labels "io.obs-stack.standin.python"}}')
    kind = (
        "official" if standin in ("", "<no value>") else f"LOCAL STAND-IN, Debian python3 {standin}"
    )
    runtime = f", OCI runtime {podman.runtime}" if podman.runtime else ""
    BASE.append(f"base {image} ({kind}){runtime}")
    return podman


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(4)


@pytest.fixture(scope="session")
def images(podman, run_id):
    built = {}
    try:
        for service in SERVICES:
            tag = f"localhost/obs-stack-test/{service}:{run_id}"
            start = time.monotonic()
            podman.run(
                "build",
                "--pull=never",
                "--layers",
                # The build's pip reaches PyPI through the host's network.
                "--network=host",
                "--file",
                str(REPO / "services" / service / "Dockerfile"),
                "--tag",
                tag,
                str(REPO / "services"),
                timeout=BUILD_TIMEOUT_S,
            )
            built[service] = BuiltImage(
                service,
                tag,
                int(podman.inspect_image(tag, "{{.Size}}")),
                time.monotonic() - start,
                podman.inspect_image(tag, "{{.Config.User}}"),
            )
            BUILT.append(built[service])
        yield built
    finally:
        for image in built.values():
            podman.run("rmi", "--force", image.tag, check=False)


def pytest_terminal_summary(terminalreporter):
    if BUILT:
        terminalreporter.section("service images (podman)")
        for line in BASE:
            terminalreporter.write_line(line)
        for image in BUILT:
            terminalreporter.write_line(
                f"{image.service}: {image.size_bytes / 1e6:.0f} MB, "
                f"built in {image.build_seconds:.1f} s, USER {image.user}"
            )
