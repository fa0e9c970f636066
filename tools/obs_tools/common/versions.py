"""Pinned versions and install locations, from scripts/versions.env.

Reads OBS_STACK_CACHE (default ~/.cache/obs-stack), as scripts/bootstrap.sh does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

from .paths import REPO, VERSIONS_ENV


def _parse(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


VERSIONS = _parse(VERSIONS_ENV)


def cache_dir() -> Path:
    return Path(os.environ.get("OBS_STACK_CACHE", Path.home() / ".cache" / "obs-stack"))


def jaeger_binary() -> Path:
    """Jaeger with its web UI embedded, both built from pinned source by the bootstrap."""
    name = f"jaeger-{VERSIONS['JAEGER_MODULE_VERSION']}-ui-{VERSIONS['JAEGER_UI_VERSION']}"
    return cache_dir() / "bin" / name


def jaeger_es_index_cleaner_binary() -> Path:
    """Jaeger's es-index-cleaner, built from the same module by the bootstrap."""
    return cache_dir() / "bin" / f"jaeger-es-index-cleaner-{VERSIONS['JAEGER_MODULE_VERSION']}"


def alertmanager_ui_dir() -> Path:
    """The web UI of Debian's Alertmanager release, unpacked by `scripts/bootstrap.sh all`."""
    return cache_dir() / f"alertmanager-ui-{VERSIONS['ALERTMANAGER_UI_VERSION']}"


def fluent_bit_binary() -> Path:
    """Fluent Bit, built from its pinned source by `scripts/bootstrap.sh all`."""
    return cache_dir() / "bin" / f"fluent-bit-{VERSIONS['FLUENT_BIT_VERSION']}"


# `scripts/bootstrap.sh k8s`: one binary per tool and version in cache_dir()/bin, named
# <tool>-<version>; the version key of each in versions.env.
K8S_TOOL_VERSIONS = {
    "etcd": "ETCD_VERSION",
    "kube-apiserver": "K8S_VERSION",
    "kube-controller-manager": "K8S_VERSION",
    "kube-scheduler": "K8S_VERSION",
    "kubectl": "K8S_VERSION",
    "kubelet": "K8S_VERSION",
    "kube-proxy": "K8S_VERSION",
    "coredns": "COREDNS_VERSION",
    "kwok": "KWOK_VERSION",
    "kube-state-metrics": "KUBE_STATE_METRICS_VERSION",
    "prometheus": "PROMETHEUS_RELEASE",
    "promtool": "PROMETHEUS_RELEASE",
    "alertmanager": "ALERTMANAGER_VERSION",
    "amtool": "ALERTMANAGER_VERSION",
}


def k8s_binary(tool: str) -> Path:
    """The binary `scripts/bootstrap.sh k8s` builds for `tool` (a K8S_TOOL_VERSIONS key)."""
    return cache_dir() / "bin" / f"{tool}-{VERSIONS[K8S_TOOL_VERSIONS[tool]]}"


def etcd_binary() -> Path:
    return k8s_binary("etcd")


def kubectl_binary() -> Path:
    return k8s_binary("kubectl")


def kwok_binary() -> Path:
    return k8s_binary("kwok")


def kube_state_metrics_binary() -> Path:
    return k8s_binary("kube-state-metrics")


def promtool_binary() -> Path:
    """promtool of the Prometheus release deployed on Kubernetes (not Debian's)."""
    return k8s_binary("promtool")


def prometheus_binary() -> Path:
    return k8s_binary("prometheus")


def amtool_binary() -> Path:
    """amtool of the Alertmanager release deployed on Kubernetes (not Debian's)."""
    return k8s_binary("amtool")


def alertmanager_binary() -> Path:
    return k8s_binary("alertmanager")


def kwok_stages_dir() -> Path:
    """kwok's Stage YAMLs (its module's kustomize/stage/ tree), copied by the bootstrap."""
    return cache_dir() / f"kwok-{VERSIONS['KWOK_VERSION']}-stages"


def checkov_binary() -> Path:
    """checkov in its own venv, keyed like bootstrap.sh by Python version and lock hash."""
    lock = REPO / "requirements" / "checkov.lock"
    lock_id = hashlib.sha256(lock.read_bytes()).hexdigest()[:12]
    py_id = f"py{sys.version_info[0]}{sys.version_info[1]}"
    return cache_dir() / f"venv-checkov-{py_id}-{lock_id}" / "bin" / "checkov"


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
