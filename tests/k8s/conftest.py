"""Fixtures for the Kubernetes tests: one real control plane with a kwok node per test
session, and one with a real node (kubelet + containerd) for the tests that run
containers.

Two control planes, not one: the kwok tests deploy the whole render into the stack's
namespaces and expect every pod Running without images, while the real-node tests
deploy the same objects into the same namespaces (the services find each other by
those names) and run them for real. Sharing one would let the scheduler put kwok's
pods on the real node and the real node's on kwok.

Reads CI: with CI=true a binary that `scripts/bootstrap.sh k8s` builds and that is missing
fails the test; elsewhere the test is skipped with the command that builds it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from obs_tools.deploy.resources import minikube_sizing, render_needs
from obs_tools.deploy.secrets import SECRETS, choose_values, manifest

from tests.k8s.render import by_kind, dump, kustomize, load
from tests.support import node_images, standins
from tests.support.image_fixtures import base_image
from tests.support.kube_cluster import (
    BOOTSTRAP_HINT,
    CONTROL_PLANE,
    KubeCluster,
    NodeCapacity,
    missing_binaries,
)
from tests.support.real_node import PAUSE_IMAGE, RealNode, missing_tools
from tests.support.requirements import unavailable


def require_k8s_binaries(names: Iterable[str]) -> None:
    """Skip (fail with CI=true) when a binary of `scripts/bootstrap.sh k8s` is missing."""
    missing = missing_binaries(names)
    if not missing:
        return
    unavailable(f"not built: {', '.join(p.name for p in missing)}; {BOOTSTRAP_HINT}")


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
def deploy_cluster(tmp_path_factory):
    """A control plane for `obs-deploy up` itself (tests/k8s/test_rollout.py,
    test_minikube_journey.py): one kwok node the size `make up` would give Minikube.
    Not kube_cluster: these tests deploy, wait for and delete the whole render in the
    stack's namespaces, which the tests of kube_cluster use for their own objects.
    Each test leaves it as it found it (`obs-deploy down`)."""
    require_k8s_binaries([*CONTROL_PLANE, "kwok", "kubectl"])
    sizing = minikube_sizing(render_needs(kustomize(), nodes=1))
    capacity = NodeCapacity(cpu=str(sizing.cpus), memory=f"{sizing.memory_mb}Mi")
    with KubeCluster(tmp_path_factory.mktemp("deploy"), node_capacity=capacity) as cluster:
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
    """The Secrets `make up` creates (tools/obs_tools/deploy/secrets.py), with throwaway values."""
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


def apply_namespaces_and_secrets(cluster: KubeCluster, docs: list[dict], secrets) -> None:
    """What `make up` applies before the render: its Namespaces, then its Secrets."""
    for objects in (by_kind(docs, "Namespace"), secrets):
        cluster.kubectl(
            "apply", "--server-side", "--field-manager=obs-stack-up", "-f", "-",
            stdin=dump(objects),
        )  # fmt: skip


@pytest.fixture(scope="session")
def applied(kube_cluster, render_text, stack_secrets) -> Applied:
    """The whole render applied to the session's control plane, as `make up` does:
    Namespaces first, then the Secrets, then everything (server-side, warnings are
    errors). Tests that need it to have succeeded call `require_applied`."""
    apply_namespaces_and_secrets(kube_cluster, load(render_text), stack_secrets)
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


def require_real_node() -> None:
    """Skip (fail with CI=true) where a real node cannot start: not root, or the
    bootstrap's node binaries and packages are missing."""
    problem = ""
    if os.geteuid() != 0:
        problem = "a real Kubernetes node needs root"
    elif missing := missing_tools():
        problem = f"not installed: {', '.join(missing)}; {BOOTSTRAP_HINT}"
    if problem:
        unavailable(problem)


@dataclass
class NodeCluster:
    """A control plane with one real node, and the podman that built its images."""

    cluster: KubeCluster
    node: RealNode
    podman: object
    loaded: set[str]

    def load_image(self, source: str, *names: str) -> None:
        """Copy an image from podman's storage to the node's containerd as `names`."""
        archive = self.node.workdir / "image.tar"
        self.podman.run("save", "--format", "docker-archive", "-o", str(archive), source,
                        timeout=300)  # fmt: skip
        try:
            self.node.import_archive(archive, source, *names)
        finally:
            archive.unlink(missing_ok=True)
        self.loaded.update(names)


def rendered_image(docs: list[dict], deployment: str) -> str:
    (doc,) = (d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == deployment)
    return doc["spec"]["template"]["spec"]["containers"][0]["image"]


@pytest.fixture(scope="session")
def real_node(tmp_path_factory, podman, images, render_docs) -> NodeCluster:
    """etcd, kube-apiserver, controller-manager and scheduler, and a real node: containerd
    (runc), the kubelet, kube-proxy and CoreDNS, with the pause image and both service
    images under the names the render gives them. Started once per session (about
    20 s), stopped with everything it made at the end."""
    require_k8s_binaries(CONTROL_PLANE)
    require_real_node()
    workdir = tmp_path_factory.mktemp("node")
    node_images.build_pause_image(podman, base_image(), PAUSE_IMAGE)
    cluster = KubeCluster(workdir / "cp", kwok=False)
    with cluster, RealNode(cluster, workdir / "n") as node:
        nodes = NodeCluster(cluster, node, podman, set())
        nodes.load_image(PAUSE_IMAGE, PAUSE_IMAGE)
        for service, built in images.items():
            nodes.load_image(built.tag, rendered_image(render_docs, service))
        yield nodes


def load_standin(real_node: NodeCluster, built: standins.Built) -> str:
    """A stand-in in the node's containerd under its upstream name; returns that name."""
    if built.upstream not in real_node.loaded:
        real_node.load_image(built.ref, built.upstream)
    return built.upstream


@pytest.fixture(scope="session")
def standin_images(real_node) -> dict[str, str]:
    """Every stand-in of tests/support/standins.py built (or found by its key) and on the
    node under the upstream name the render pins: {contract name: upstream reference}."""
    built, missing = {}, []
    for name in standins.STANDINS:
        try:
            built[name] = standins.build(real_node.podman, base_image(), name)
        except standins.MissingInput as error:
            missing.append(f"{name}: {error}")
    if missing:
        unavailable("stand-ins that cannot be built:\n" + "\n".join(missing))
    return {name: load_standin(real_node, image) for name, image in built.items()}


@pytest.fixture(scope="session")
def elasticsearch_standin(real_node) -> str:
    """The Elasticsearch stand-in (tests/support/standins.py) on the node, under the
    upstream name the render pins."""
    try:
        built = standins.build(real_node.podman, base_image(), "elasticsearch")
    except standins.MissingInput as error:
        unavailable(str(error))
    return load_standin(real_node, built)
