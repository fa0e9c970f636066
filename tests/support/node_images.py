"""Images for the real node's tests, built with podman from the services' base image:
the pod sandbox ("pause") image and stand-ins for upstream images under their upstream
names, then handed to the node's containerd.

No registry is reachable where the tests run, so an upstream image's init containers and
Job scripts run in a stand-in that has what those scripts use in the real image. Each
stand-in carries the label io.obs-stack.standin naming what it imitates and what it was
built from. The Elasticsearch stand-in, after the upstream image at its pinned tag
(elastic/elasticsearch v8.19.4, distribution/docker/src/docker/Dockerfile):
- USER elasticsearch:root, the user uid 1000 of group 1000 and member of group 0
  ("adduser -u 1000 -g 1000 -G 0 -d /usr/share/elasticsearch elasticsearch");
- /usr/share/elasticsearch/config: the distribution's config folder (here taken from
  the 8.19.4 zip the bootstrap downloads), with jvm.options.d, directories 0555 and
  files 0444, then "chmod -R ug+w config", owned 1000:0 ("COPY --chown=1000:0");
- bash and GNU coreutils (the Ubuntu base), curl (the Dockerfile installs one).
The jdk and the server are left out: the scripts that run in it here never start
Elasticsearch (the server runs outside the node, from the same distribution).

Reads no environment variables.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from obs_tools.common.versions import VERSIONS, cache_dir

from .podman import Podman

STANDIN_LABEL = "io.obs-stack.standin"
ES_VERSION = VERSIONS["ELASTICSEARCH_VERSION"]
ES_IMAGE = f"docker.elastic.co/elasticsearch/elasticsearch:{ES_VERSION}"
# In podman's storage the stand-in has a name of its own, so that it never shadows a
# real image pulled there; only the test node's containerd knows it as ES_IMAGE.
ES_STANDIN = f"localhost/obs-stack-test/elasticsearch-standin:{ES_VERSION}"
BUILD_TIMEOUT_S = 600


def elasticsearch_zip() -> Path:
    return cache_dir() / "dl" / f"elasticsearch-{ES_VERSION}.zip"


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


def build_elasticsearch_standin(podman: Podman, base: str) -> str:
    """The stand-in for ES_IMAGE (see the module docstring); returns its podman name."""
    archive = elasticsearch_zip()
    if not archive.is_file():
        raise FileNotFoundError(f"{archive} is missing; run `scripts/bootstrap.sh all`")
    with tempfile.TemporaryDirectory() as context:
        prefix = f"elasticsearch-{ES_VERSION}/config/"
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.namelist():
                if member.startswith(prefix) and not member.endswith("/"):
                    target = Path(context) / "config" / member[len(prefix) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(zipped.read(member))
        label = (
            f"stand-in for {ES_IMAGE}: {base} with curl and the config folder of the Maven "
            f"elasticsearch-{ES_VERSION}.zip; no JDK, no server"
        )
        containerfile = f"""FROM {base}
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends curl >/dev/null \\
 && rm -rf /var/lib/apt/lists/*
RUN groupadd -g 1000 elasticsearch \\
 && useradd -u 1000 -g 1000 -G 0 -M -d /usr/share/elasticsearch elasticsearch
COPY config /usr/share/elasticsearch/config
RUN cd /usr/share/elasticsearch && mkdir -p config/jvm.options.d data logs plugins \\
 && find . -type d -exec chmod 0555 {{}} + && find . -type f -exec chmod 0444 {{}} + \\
 && chmod -R ug+w config data logs plugins && chown -R 1000:0 . && chmod 555 .
ENV ELASTIC_CONTAINER=true PATH=/usr/share/elasticsearch/bin:$PATH
WORKDIR /usr/share/elasticsearch
LABEL {STANDIN_LABEL}="{label}"
USER elasticsearch:root
"""
        _build(podman, ES_STANDIN, containerfile, Path(context))
    return ES_STANDIN
