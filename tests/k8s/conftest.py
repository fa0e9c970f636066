"""Fixtures for the Kubernetes tests: one real control plane per test session.

Reads CI: with CI=true a binary that `scripts/bootstrap.sh k8s` builds and that is missing
fails the test; elsewhere the test is skipped with the command that builds it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

import pytest

from k8s.secrets import SECRETS, choose_values, manifest
from tests.k8s.render import by_kind, dump, kustomize, load
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


@pytest.fixture(scope="session")
def render_text() -> str:
    """`kubectl kustomize k8s/` with the pinned kubectl: what `make up` applies."""
    require_k8s_binaries(["kubectl"])
    return kustomize()


@pytest.fixture(scope="session")
def render_docs(render_text) -> list[dict]:
    return load(render_text)


@pytest.fixture(scope="session")
def stack_secrets() -> list[dict]:
    """The Secrets `make up` creates (scripts/k8s/secrets.py), with throwaway values."""
    resolved: dict = {}
    manifests = []
    for spec in SECRETS:
        values, _ = choose_values(spec, {}, {}, resolved)
        resolved.update({(spec.namespace, spec.name, k): v for k, v in values.items()})
        manifests.append(manifest(spec, values))
    return manifests


@dataclass
class Applied:
    """The outcome of `kubectl apply --server-side --warnings-as-errors` of the render."""

    cluster: KubeCluster
    result: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def applied(kube_cluster, render_text, stack_secrets) -> Applied:
    """The whole render applied to the session's control plane, as `make up` does:
    Namespaces first, then the Secrets, then everything (server-side, warnings are
    errors). Tests that need it to have succeeded call `require_applied`."""
    docs = load(render_text)
    kube_cluster.kubectl(
        "apply", "--server-side", "--field-manager=obs-stack-up", "-f", "-",
        stdin=dump(by_kind(docs, "Namespace")),
    )  # fmt: skip
    kube_cluster.kubectl(
        "apply", "--server-side", "--field-manager=obs-stack-up", "-f", "-",
        stdin=dump(stack_secrets),
    )  # fmt: skip
    result = kube_cluster.kubectl(
        "apply", "--server-side", "--field-manager=obs-stack-up", "--warnings-as-errors",
        "-f", "-", stdin=render_text, check=False,
    )  # fmt: skip
    return Applied(kube_cluster, result)


def require_applied(applied: Applied) -> KubeCluster:
    if applied.result.returncode != 0:
        pytest.fail(
            "the render was not applied (see test_server_side_apply_accepts_every_object):\n"
            + applied.result.stderr,
            pytrace=False,
        )
    return applied.cluster
