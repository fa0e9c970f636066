"""fluent-bit/fluent-bit-kubernetes.conf run by the real Fluent Bit, with only its paths
redirected into a temporary folder and the API server's address given: container log
files in both runtime formats (containerd's CRI lines, with one line split by the
runtime, and docker's json-file lines) of a pod object created in a real kube-apiserver
(tests/support/kube_cluster.py, no node). The kubernetes filter authenticates with a
token of the DaemonSet's own ServiceAccount and RBAC (k8s/logging/fluent-bit.yaml), and
the documents land in the session's real Elasticsearch with the pod's fields (pod_id
and host only the API knows) and the service's JSON lifted to the top level, each line
once.

Reads CI: with CI=true a missing binary fails the test, elsewhere it is skipped.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from datetime import UTC, datetime

import pytest
import yaml
from obs_tools.common.paths import REPO

from tests.support.fluent_bit import (
    FLUENT_BIT_DIR,
    FluentBit,
    count_by_message,
    documents,
    require_fluent_bit,
)
from tests.support.kube_cluster import BOOTSTRAP_HINT, CONTROL_PLANE, KubeCluster, missing_binaries
from tests.support.polling import poll_until
from tests.support.requirements import unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.k8s]

NAMESPACE = "obs-apps"
NODE = "node-under-test"  # spec.nodeName: no such node runs, only the API knows the name


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    missing = missing_binaries(CONTROL_PLANE)
    if missing:
        unavailable(f"not built: {', '.join(p.name for p in missing)}; {BOOTSTRAP_HINT}")
    with KubeCluster(tmp_path_factory.mktemp("kube-fluent-bit"), kwok=False) as cluster:
        yield cluster


def fluent_bit_rbac() -> list[dict]:
    """The DaemonSet's ServiceAccount, ClusterRole and binding, as k8s/ deploys them."""
    docs = list(yaml.safe_load_all((REPO / "k8s" / "logging" / "fluent-bit.yaml").read_text()))
    chosen = [
        d
        for d in docs
        if d and d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
    ]
    assert len(chosen) == 3, [d["kind"] for d in docs if d]
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
        for n in ("obs-logging", NAMESPACE)
    ]
    return namespaces + chosen


def redirected_config(tmp_path, cluster: KubeCluster, token_file) -> tuple:
    """fluent-bit-kubernetes.conf with its paths under tmp_path and the API server's
    address, CA and token added to the kubernetes filter; every other line unchanged."""
    text = (FLUENT_BIT_DIR / "fluent-bit-kubernetes.conf").read_text()
    containers = tmp_path / "var" / "log" / "containers"
    containers.mkdir(parents=True)
    state = tmp_path / "state"
    state.mkdir()
    prefix = "obs.kube." + str(containers).strip("/").replace("/", ".") + "."
    replacements = [
        ("@SET OBS_STATE_DIR=/var/fluent-bit/state", f"@SET OBS_STATE_DIR={state}"),
        ("/var/log/containers/*_obs-apps_*.log", f"{containers}/*_obs-apps_*.log"),
        (
            "Kube_Tag_Prefix     obs.kube.var.log.containers.",
            f"Kube_Tag_Prefix     {prefix}\n"
            f"    Kube_URL            {cluster.server}\n"
            f"    Kube_CA_File        {cluster.pki / 'ca.crt'}\n"
            f"    Kube_Token_File     {token_file}",
        ),
    ]
    for old, new in replacements:
        assert text.count(old) == 1, f"fluent-bit-kubernetes.conf no longer contains {old!r}"
        text = text.replace(old, new)
    config = tmp_path / "fluent-bit-kubernetes.conf"
    config.write_text(text)
    return config, containers


def ecs(trace_id: str, message: str, service: str) -> str:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps(
        {
            "@timestamp": now,
            "log.level": "info",
            "service.name": service,
            "trace.id": trace_id,
            "message": message,
        }
    )


def runtime_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def test_cri_and_docker_lines_get_pod_metadata_from_the_api_and_lifted_json(
    control_plane, local_stack, tmp_path
):
    require_fluent_bit()
    cluster = control_plane
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(fluent_bit_rbac()))
    pods = {}
    for service in ("frontend", "backend"):
        name = f"{service}-{secrets.token_hex(3)}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": service}},
            "spec": {
                "nodeName": NODE,
                "containers": [{"name": service, "image": f"obs-stack/{service}:test"}],
            },
        }
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
        pods[service] = cluster.get_json("pod", name, "-n", NAMESPACE)
    token = cluster.kubectl(
        "create", "token", "fluent-bit", "-n", "obs-logging", "--duration=1h"
    ).stdout.strip()
    token_file = tmp_path / "token"
    token_file.write_text(token)
    config, containers = redirected_config(tmp_path, cluster, token_file)

    trace_id = secrets.token_hex(16)
    expected = Counter()
    # containerd (CRI): "<time> <stream> <P|F> <log>"; the runtime splits a long line
    # into P pieces and an F one, which the cri parser joins.
    cri = []
    for i in range(10):
        message = f"cri line {i}"
        cri.append(f"{runtime_time()} stdout F {ecs(trace_id, message, 'frontend')}")
        expected[message] += 1
    split = ecs(trace_id, "cri split line " + "y" * 20_000, "frontend")
    cri += [
        f"{runtime_time()} stdout P {split[:16384]}",
        f"{runtime_time()} stdout F {split[16384:]}",
    ]
    expected[json.loads(split)["message"]] += 1
    # docker's json-file driver: one JSON object per line, the service's line in "log".
    docker = []
    for i in range(10):
        message = f"docker line {i}"
        log = ecs(trace_id, message, "backend") + "\n"
        docker.append(json.dumps({"log": log, "stream": "stdout", "time": runtime_time()}))
        expected[message] += 1
    files = {}
    for service, lines in (("frontend", cri), ("backend", docker)):
        container_id = secrets.token_hex(32)
        path = (
            containers
            / f"{pods[service]['metadata']['name']}_{NAMESPACE}_{service}-{container_id}.log"
        )
        path.write_text("\n".join(lines) + "\n")
        files[service] = container_id

    es_url, auth = local_stack.url("elasticsearch"), local_stack.stack.es_auth()
    fluent_bit = FluentBit(
        "fluent-bit-kubernetes",
        config,
        tmp_path,
        {
            "ES_HOST": "127.0.0.1",
            "ES_PORT": str(local_stack.stack.ports.elasticsearch),
            "ES_USER": auth[0],
            "ES_PASSWORD": auth[1],
        },
    )
    try:
        fluent_bit.start()
        docs = poll_until(
            lambda: (
                (d := documents(es_url, auth, "trace.id", trace_id))
                and len(d) >= sum(expected.values())
                and d
            ),
            f"{sum(expected.values())} container lines in Elasticsearch",
            60,
            interval=1,
            on_timeout=lambda: (
                fluent_bit.failure_context() + "\n" + cluster.failure_context("kube-apiserver")
            ),
        )
    finally:
        fluent_bit.stop()
    assert count_by_message(docs) == expected, fluent_bit.failure_context()
    for doc in docs:
        service = doc["service.name"]
        pod = pods[service]
        kube = doc.get("kubernetes", {})
        assert kube.get("pod_name") == pod["metadata"]["name"], doc
        assert kube.get("namespace_name") == NAMESPACE
        assert kube.get("container_name") == service
        assert kube.get("docker_id") == files[service]
        # Only the API server knows these two: the filter asked it.
        assert kube.get("pod_id") == pod["metadata"]["uid"], (doc, fluent_bit.failure_context())
        assert kube.get("host") == NODE
        # The service's JSON is at the top level, the runtime's wrapper gone.
        assert doc["log.level"] == "info" and doc["trace.id"] == trace_id
        assert "log" not in doc or isinstance(doc["log"], dict), doc
