"""The test control plane itself (tests/support/kube_cluster.py): versions, admission,
controllers, scheduling, PVC binding and kube-state-metrics, so that a test built on it
fails for the manifests' reasons and not the fixture's.

Reads CI (through the kube_cluster fixture).
"""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path

import httpx
import pytest
import yaml
from obs_tools.common.versions import VERSIONS

from tests.k8s.conftest import require_k8s_binaries
from tests.support.kube_cluster import CONTROL_PLANE, ClusterError, KubeCluster
from tests.support.polling import poll_until

pytestmark = pytest.mark.validate


def apply(cluster, *docs: dict, check: bool = True, extra: tuple[str, ...] = ()):
    return cluster.kubectl(
        "apply", "--server-side", "--field-manager=obs-test", *extra, "-f", "-",
        stdin=yaml.safe_dump_all(docs), check=check,
    )  # fmt: skip


def namespace(name: str, enforce: str | None = None) -> dict:
    labels = {f"pod-security.kubernetes.io/{m}": enforce for m in ("enforce", "warn")}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels if enforce else {}},
    }


def pod_spec(cpu: str = "10m", restricted: bool = True) -> dict:
    container = {
        "name": "app",
        "image": "registry.example/app:1.0.0",
        "resources": {"requests": {"cpu": cpu, "memory": "16Mi"}},
    }
    spec: dict = {"containers": [container]}
    if restricted:
        spec["securityContext"] = {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        container["securityContext"] = {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
    return spec


def deployment(name: str, ns: str, **spec_options) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec(**spec_options)},
        },
    }


def test_the_servers_report_the_pinned_version(kube_cluster):
    version = json.loads(kube_cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == VERSIONS["K8S_VERSION"]
    assert version["clientVersion"]["gitVersion"] == VERSIONS["K8S_VERSION"]


def test_pod_security_admission_refuses_a_non_compliant_pod(kube_cluster):
    apply(kube_cluster, namespace("fixture-restricted", "restricted"))
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "rootful", "namespace": "fixture-restricted"},
        "spec": pod_spec(restricted=False),
    }
    result = apply(kube_cluster, bad, check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr, result.stderr
    good = dict(bad, metadata={"name": "compliant", "namespace": "fixture-restricted"})
    good["spec"] = pod_spec(restricted=True)
    apply(kube_cluster, good)


def test_a_deployment_rolls_out_on_the_kwok_node_and_ksm_sees_it(kube_cluster):
    apply(kube_cluster, namespace("fixture-rollout", "restricted"))
    apply(kube_cluster, deployment("web", "fixture-rollout"))
    kube_cluster.rollout_status("deployment", "web", "fixture-rollout")
    pods = kube_cluster.get_json("pods", "-n", "fixture-rollout")["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {kube_cluster.node_name}

    def ksm_reports_it():
        text = httpx.get(f"{kube_cluster.ksm_url}/metrics", timeout=5).text
        line = (
            "kube_deployment_status_replicas_available"
            '{namespace="fixture-rollout",deployment="web"} 2'
        )
        return line in text

    poll_until(ksm_reports_it, "kube-state-metrics to report web's 2 available replicas", 30)


def test_a_pod_bigger_than_the_node_is_not_scheduled(kube_cluster):
    apply(kube_cluster, namespace("fixture-too-big", "restricted"))
    apply(kube_cluster, deployment("huge", "fixture-too-big", cpu="64"))
    with pytest.raises(ClusterError, match="did not roll out"):
        kube_cluster.rollout_status("deployment", "huge", "fixture-too-big", timeout=5)

    def unschedulable():
        (pod,) = kube_cluster.get_json("pods", "-n", "fixture-too-big")["items"][:1]
        conditions = pod["status"].get("conditions", [])
        return any("Insufficient cpu" in c.get("message", "") for c in conditions)

    poll_until(unschedulable, "the scheduler to report Insufficient cpu", 30)


def test_a_statefulset_claim_is_bound_by_the_default_storage_class(kube_cluster):
    apply(kube_cluster, namespace("fixture-sts", "restricted"))
    labels = {"app": "db"}
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "fixture-sts"},
        "spec": {
            "serviceName": "db",
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec()},
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }
    sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "data", "mountPath": "/data"}
    ]
    apply(kube_cluster, sts)
    kube_cluster.rollout_status("statefulset", "db", "fixture-sts")
    pvc = kube_cluster.get_json("pvc", "data-db-0", "-n", "fixture-sts")
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["spec"]["storageClassName"] == "kwok-volume"


def test_a_component_that_fails_to_start_is_named_with_its_log(tmp_path):
    require_k8s_binaries(CONTROL_PLANE)
    broken = KubeCluster(tmp_path, kwok=False, admission_plugins=("NoSuchAdmissionPlugin",))
    with pytest.raises(ClusterError) as failure:
        broken.start()
    message = str(failure.value)
    assert "kube-apiserver exited" in message
    assert "NoSuchAdmissionPlugin" in message  # quoted from the apiserver's own log
    # Everything it had started (etcd, whose data dir is under tmp_path) is stopped again.
    assert not processes_mentioning(str(tmp_path))


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if text in argv:
                found.append(f"{cmdline.parent.name}: {argv}")
    return found


def test_a_port_taken_before_the_component_binds_it_is_replaced(tmp_path):
    # The CI flake this guards against: a port found free was someone else's by the time
    # kube-controller-manager bound it. Here the port is held on purpose.
    require_k8s_binaries(CONTROL_PLANE)
    cluster = KubeCluster(tmp_path, kwok=False)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        cluster.ports.controller_manager = taken
        with cluster:
            assert cluster.ports.controller_manager != taken
            assert "kube-controller-manager" in cluster.processes
            names = {n["metadata"]["name"] for n in cluster.get_json("namespaces")["items"]}
            assert "default" in names
    assert not processes_mentioning(str(tmp_path))
