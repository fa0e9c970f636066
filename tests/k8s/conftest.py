"""Fixtures for the Kubernetes tests: one real control plane per test session.

Reads CI: with CI=true a binary that `scripts/bootstrap.sh k8s` builds and that is missing
fails the test; elsewhere the test is skipped with the command that builds it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import pytest

from tests.support.kube_cluster import (
    BOOTSTRAP_HINT,
    CONTROL_PLANE,
    KubeCluster,
    NodeCapacity,
    missing_binaries,
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_k8s_binaries(names: Iterable[str]) -> None:
    """Skip (fail with CI=true) when a binary of `scripts/bootstrap.sh k8s` is missing."""
    missing = missing_binaries(names)
    if not missing:
        return
    message = f"not built: {', '.join(p.name for p in missing)}; {BOOTSTRAP_HINT}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing binary is a failure)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory):
    """etcd + kube-apiserver (Pod Security admission on) + controller-manager + scheduler,
    one kwok node the size of a default Minikube VM, and kube-state-metrics.

    Shared by the whole session (starting one takes 10-20 s): tests create their own
    namespaces and objects, and leave the cluster usable for the next test.
    """
    require_k8s_binaries([*CONTROL_PLANE, "kwok", "kube-state-metrics"])
    cluster = KubeCluster(
        tmp_path_factory.mktemp("kube"),
        kwok=True,
        node_capacity=NodeCapacity(),
        kube_state_metrics=True,
    )
    with cluster:
        yield cluster
