"""The render's workloads on a real Kubernetes node: containerd runs the containers, the
kubelet applies their securityContext and volumes, runs their probes and restarts them,
kube-proxy and CoreDNS carry a request from one Service to another.

What kwok cannot show, shown here (tests/support/real_node.py):
- the frontend and backend Deployments, Services and namespace, as rendered, become
  Ready through their real probes, run as the rendered user with no capability on a
  read-only root, and a request through the frontend's Service reaches the backend by
  its Service name; their stdout lands in /var/log/pods in CRI format;
- `make open` (the pinned kubectl's port-forwards) reaches real pods, and a forward whose
  pod is replaced comes back while the others stay;
- /crash makes the kubelet restart the backend until CrashLoopBackOff;
- the same check fails, naming the cause, on three manifests broken on purpose: no
  /tmp emptyDir, a wrong probe port, runAsNonRoot on an image whose USER is a name;
- Elasticsearch's `config` init container, as rendered, copies the image's config into
  the kubelet's emptyDir (root:1000, mode 2777 with fsGroup 1000) as uid 1000, while
  the command the audit found (`cp -a .../config/. /config/`) fails there.

Reads CI through the fixtures (tests/k8s/conftest.py): no skip with CI=true; `make
open` runs in the deploy tool's venv on Python 3.10 (tests/support/deploy_venv.py reads
OBS_TEST_PYTHON310).
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import httpx
import pytest
from obs_tools.common.versions import VERSIONS, k8s_binary
from obs_tools.deploy.contract import UIS

from tests.k8s.conftest import NodeCluster
from tests.k8s.render import by_kind, dump, find
from tests.support.deploy_venv import deploy_python
from tests.support.kube_cluster import KubeCluster
from tests.support.open_run import OpenRun, distinct_free_ports, port_args
from tests.support.polling import GiveUp, PollTimeout, poll_until
from tests.support.real_node import KUBELET_LOGS, gateway

pytestmark = pytest.mark.node

APPS = "obs-apps"
MONITORING = "obs-monitoring"
SERVICES = ("frontend", "backend")
# A waiting reason that no amount of waiting fixes.
HOPELESS = {
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
    "ErrImageNeverPull",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "RunContainerError",
}
# The init container command the audit found failing on a real node (issue #15): kept
# here as the regression sample the rendered one is compared with.
AUDITED_ES_INIT = (
    "cp -a /usr/share/elasticsearch/config/. /config/ && "
    "cp /obs-config/elasticsearch.yml /config/elasticsearch.yml"
)

# Run as the server's user after the init containers: what Elasticsearch needs of its
# config folder at start (its files, and writing its keystore there).
ES_CONFIG_CHECK = (
    "cd /usr/share/elasticsearch/config; "
    "cmp elasticsearch.yml /obs-config/elasticsearch.yml; "
    "test -s jvm.options; test -s log4j2.properties; test -d jvm.options.d; "
    "touch elasticsearch.keystore.tmp; rm elasticsearch.keystore.tmp; "
    "echo config complete and writable as $(id -u)"
)


# --- applying and diagnosing ---------------------------------------------------------------


def apply(cluster: KubeCluster, docs: list[dict]) -> None:
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=obs-stack-test", "-f", "-", stdin=dump(docs)
    )


def pods(cluster: KubeCluster, namespace: str, selector: str) -> list[dict]:
    return cluster.get_json("pods", "-n", namespace, "-l", selector)["items"]


def container_log(pod: dict, container: str, lines: int = 8) -> str:
    """The tail of the CRI log files the runtime wrote for `container`, one file per
    start (0.log, 1.log, ...), read in that order."""
    meta = pod["metadata"]
    folder = KUBELET_LOGS / f"{meta['namespace']}_{meta['name']}_{meta['uid']}" / container
    files = sorted(folder.glob("*.log"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    if not files:
        return f"(no log file in {folder})"
    text = "".join(f.read_text(errors="replace") for f in files)
    return "\n".join(line[:400] for line in text.splitlines()[-lines:])


def diagnose(cluster: KubeCluster, namespace: str, selector: str) -> str:
    """Each pod's phase, containers' states, events and log tails: a failure's message."""
    report = []
    for pod in pods(cluster, namespace, selector):
        name = pod["metadata"]["name"]
        status = pod.get("status", {})
        report.append(f"pod {namespace}/{name}: {status.get('phase')}")
        statuses = status.get("initContainerStatuses", []) + status.get("containerStatuses", [])
        for c in statuses:
            report.append(
                f"  {c['name']}: ready={c.get('ready')} restarts={c.get('restartCount')} "
                f"state={json.dumps(c.get('state'))} last={json.dumps(c.get('lastState'))}"
            )
            report.append("  log: " + container_log(pod, c["name"]).replace("\n", "\n  log: "))
        events = cluster.kubectl(
            "get", "events", "-n", namespace, "--field-selector",
            f"involvedObject.name={name}", "-o", "custom-columns=REASON:.reason,MESSAGE:.message",
            "--no-headers", check=False,
        ).stdout  # fmt: skip
        report.append("  events:\n    " + events.strip().replace("\n", "\n    "))
    return "\n".join(report) or f"no pod matches {selector} in {namespace}"


def wait_ready(cluster: KubeCluster, namespace: str, selector: str, count: int, timeout: float):
    """Until `count` pods are Ready; fails at once on a hopeless waiting reason, and
    with the diagnosis when time runs out."""

    def ready() -> bool:
        found = pods(cluster, namespace, selector)
        for pod in found:
            for c in pod.get("status", {}).get("containerStatuses", []):
                reason = c.get("state", {}).get("waiting", {}).get("reason")
                if reason in HOPELESS:
                    raise GiveUp(f"{pod['metadata']['name']}/{c['name']}: {reason}")
        ready_pods = [
            p
            for p in found
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
        ]
        return len(ready_pods) == count == len(found)

    try:
        poll_until(ready, f"{count} Ready pods {selector} in {namespace}", timeout, interval=1)
    except (GiveUp, PollTimeout) as exc:
        raise AssertionError(f"{exc}\n{diagnose(cluster, namespace, selector)}") from None


# --- the render's apps on the node ---------------------------------------------------------


def namespace_docs(render_docs: list[dict], namespace: str) -> list[dict]:
    """The namespace itself and every namespaced object of the render in it."""
    own = [d for d in render_docs if d["metadata"].get("namespace") == namespace]
    return [find(render_docs, "Namespace", namespace), *own]


@pytest.fixture(scope="module")
def apps(real_node: NodeCluster, render_docs) -> KubeCluster:
    """frontend and backend as rendered (Deployments, Services, RBAC) in obs-apps."""
    cluster = real_node.cluster
    apply(cluster, namespace_docs(render_docs, APPS))
    for service in SERVICES:
        replicas = find(render_docs, "Deployment", service, APPS)["spec"]["replicas"]
        wait_ready(cluster, APPS, f"app.kubernetes.io/name={service}", replicas, timeout=240)
    return cluster


def test_the_node_runs_the_pinned_kubelet_and_containerd(real_node: NodeCluster):
    node = real_node.cluster.get_json("node", real_node.node.name)
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == VERSIONS["K8S_VERSION"]
    runtime = VERSIONS["CONTAINERD_DEB_VERSION"].split("~")[0]
    assert info["containerRuntimeVersion"].startswith(f"containerd://{runtime}"), info
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    # `kubectl logs` and `exec` reach the kubelet at this address.
    assert addresses.get("InternalIP") == gateway(), addresses
    print(f"\nreal node Ready {real_node.node.started_in:.1f} s after its start")


def task_pid(real_node: NodeCluster, container_id: str) -> int:
    """The host PID of a container's process, from containerd."""
    cid = container_id.removeprefix("containerd://")
    out = real_node.node.ctr("tasks", "ls").stdout
    for line in out.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == cid:
            return int(fields[1])
    raise AssertionError(f"containerd has no task {cid}:\n{out}")


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def root_mount_options(pid: int) -> list[str]:
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            return fields[5].split(",")
    raise AssertionError(f"no root mount for pid {pid}")


@pytest.mark.parametrize("service", SERVICES)
def test_each_pod_runs_as_rendered_and_ready_through_its_probes(
    real_node: NodeCluster, apps: KubeCluster, render_docs, service
):
    spec = find(render_docs, "Deployment", service, APPS)["spec"]["template"]["spec"]
    uid = str(spec["securityContext"]["runAsUser"])
    for pod in pods(apps, APPS, f"app.kubernetes.io/name={service}"):
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"] and status["started"], status
        assert status["restartCount"] == 0, diagnose(
            apps, APPS, f"app.kubernetes.io/name={service}"
        )
        process = proc_status(task_pid(real_node, status["containerID"]))
        assert process["Uid"].split() == [uid] * 4, process["Uid"]
        assert int(process["CapEff"], 16) == 0, process["CapEff"]
        assert process["NoNewPrivs"] == "1"
        assert "ro" in root_mount_options(task_pid(real_node, status["containerID"]))


def service_url(cluster: KubeCluster, namespace: str, name: str) -> str:
    service = cluster.get_json("service", name, "-n", namespace)
    port = service["spec"]["ports"][0]["port"]
    return f"http://{service['spec']['clusterIP']}:{port}"


def test_a_request_through_the_frontend_service_reaches_the_backend(apps: KubeCluster):
    url = f"{service_url(apps, APPS, 'frontend')}/items"
    answers: list[str] = []

    def answered():
        response = httpx.get(url, timeout=5)
        answers.append(f"{response.status_code} {response.text[:300]}")
        return response.status_code == 200 and response

    # kube-proxy writes the Service's rules a moment after the endpoints are ready.
    response = poll_until(
        answered,
        f"200 from {url} (frontend Service -> backend.obs-apps.svc through CoreDNS)",
        30,
        on_timeout=lambda: (
            f"last answer: {answers[-1:]}\n"
            + diagnose(apps, APPS, "app.kubernetes.io/name=frontend")
        ),
    )
    items = response.json()
    assert items, f"{url} answered {items!r}"

    def backend_logged() -> bool:
        return any(
            " stdout " in line and "/api/items" in line
            for pod in pods(apps, APPS, "app.kubernetes.io/name=backend")
            for line in container_log(pod, "backend", 200).splitlines()
        )

    # containerd writes `<time> stdout F <line>` to the files Fluent Bit tails.
    poll_until(backend_logged, "the backend's CRI log in /var/log/pods names /api/items", 20)


# --- `make open` on the node: real port-forwards, a forwarded pod replaced ----------------

# A UI of contract.UIS in obs-monitoring (Jaeger's Service name and port) stood in for by
# the backend image: what is under test is kubectl's port-forward to a real pod and
# `open`'s restart of a lost one, not Jaeger, which has no image here.
STANDIN_SELECTOR = "app.kubernetes.io/name=ui-standin"


def ui_standin_docs(render_docs) -> list[dict]:
    deployment = copy.deepcopy(find(render_docs, "Deployment", "backend", APPS))
    labels = {"app.kubernetes.io/name": "ui-standin"}
    deployment["metadata"] = {"name": "ui-standin", "namespace": MONITORING, "labels": labels}
    deployment["spec"]["replicas"] = 1
    deployment["spec"]["selector"] = {"matchLabels": labels}
    template = deployment["spec"]["template"]
    template["metadata"] = {"labels": labels}
    (container,) = template["spec"]["containers"]
    container["env"] = [{"name": "PORT", "value": "5001"},
                        {"name": "OTEL_SDK_DISABLED", "value": "true"}]  # fmt: skip
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "jaeger", "namespace": MONITORING, "labels": labels},
        "spec": {"selector": labels,
                 "ports": [{"name": "http-query", "port": 16686, "targetPort": "http"}]},
    }  # fmt: skip
    return [find(render_docs, "Namespace", MONITORING), deployment, service]


@pytest.fixture(scope="module")
def ui_standin(apps: KubeCluster, render_docs) -> KubeCluster:
    apply(apps, ui_standin_docs(render_docs))
    wait_ready(apps, MONITORING, STANDIN_SELECTOR, 1, timeout=120)
    return apps


def test_open_forwards_to_real_pods_and_brings_back_the_one_whose_pod_was_replaced(
    ui_standin: KubeCluster, render_docs, tmp_path
):
    """`make open` with the pinned kubectl: the UIs whose Service exists are forwarded
    (the others are skipped with kubectl's error); the frontend's pods are replaced, its
    forward ends at the next request ("lost connection to pod") and comes back on a new
    pod while the other forward stays, untouched."""
    cluster = ui_standin
    ports = distinct_free_ports([ui.service for ui in UIS])
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    args = [f"--kubectl={k8s_binary('kubectl')}", *port_args(ports)]
    run = OpenRun(tmp_path, deploy_python(), args, env)
    frontend, jaeger = (f"http://127.0.0.1:{ports[s]}/livez" for s in ("frontend", "jaeger"))
    try:
        run.wait_for("Forwarding until Ctrl-C.", timeout=120)
        assert httpx.get(frontend, timeout=5).status_code == 200, run.text()
        assert httpx.get(jaeger, timeout=5).status_code == 200, run.text()
        selector = "app.kubernetes.io/name=frontend"
        old = {p["metadata"]["name"] for p in pods(cluster, APPS, selector)}
        cluster.kubectl("delete", "pods", "-n", APPS, "-l", selector, "--grace-period=2")
        replicas = find(render_docs, "Deployment", "frontend", APPS)["spec"]["replicas"]
        wait_ready(cluster, APPS, selector, replicas, timeout=180)
        assert not old & {p["metadata"]["name"] for p in pods(cluster, APPS, selector)}

        def frontend_answers():
            return httpx.get(frontend, timeout=5).status_code == 200

        # Seen here: kubectl's forward outlives its pod; the first connection through it
        # afterwards fails and ends it ("lost connection to pod"), and `open` starts it
        # again. So a user's reload fails once, and the next one reaches the new pod.
        poll_until(frontend_answers, "the frontend through its restarted forward", 120,
                   on_timeout=run.text)  # fmt: skip
        run.wait_for("frontend: forwarding again on 127.0.0.1:", timeout=30)
        assert httpx.get(jaeger, timeout=5).status_code == 200, run.text()
    finally:
        code = run.stop()
    out = run.text()
    assert code == 0, out
    # The text the kubectl stand-in of test_minikube_user.py prints, seen from the real one.
    assert "lost connection to pod" in out, out
    assert "Jaeger: forwarding again" not in out, out
    for ui in UIS:
        if ui.service not in ("frontend", "jaeger"):
            assert f'services "{ui.service}" not found; {ui.title} is not forwarded (' in out, out


def test_crash_makes_the_kubelet_restart_the_backend_until_crashloopbackoff(apps: KubeCluster):
    selector = "app.kubernetes.io/name=backend"
    pod = pods(apps, APPS, selector)[0]
    name = pod["metadata"]["name"]

    def state() -> dict:
        return apps.get_json("pod", name, "-n", APPS)["status"]["containerStatuses"][0]

    def crash_or_backoff():
        current = state()
        if current.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff":
            return current
        if current.get("ready"):
            ip = apps.get_json("pod", name, "-n", APPS)["status"]["podIP"]
            httpx.post(f"http://{ip}:5001/crash", timeout=5)
        return None

    final = poll_until(crash_or_backoff, f"{name} in CrashLoopBackOff after /crash", 150, 1)
    # The kubelet backs off from the first restart on (10 s, doubling).
    assert final["restartCount"] >= 1, final
    # /crash exits the process with status 1 (obs_telemetry/ops.py).
    assert final["lastState"]["terminated"]["exitCode"] == 1, final


# --- the same checks on manifests broken on purpose ---------------------------------------


def broken_backend(render_docs, namespace: str, breakage: str, image: str | None) -> list[dict]:
    """The rendered backend Deployment in `namespace`, broken in one way."""
    deployment = copy.deepcopy(find(render_docs, "Deployment", "backend", APPS))
    deployment["metadata"]["namespace"] = namespace
    deployment["spec"]["replicas"] = 1
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    if breakage == "no /tmp emptyDir":
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "tmp"]
        container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "tmp"]
    elif breakage == "wrong probe port":
        container["readinessProbe"]["httpGet"]["port"] = 5999
    elif breakage == "runAsNonRoot with a named USER":
        for key in ("runAsUser", "runAsGroup"):
            spec["securityContext"].pop(key)
        container["image"] = image
    namespace_doc = copy.deepcopy(find(render_docs, "Namespace", APPS))
    namespace_doc["metadata"]["name"] = namespace
    return [namespace_doc, deployment]


# What the kubelet or the process says when each breakage stops the pod.
BREAKAGES = {
    "no /tmp emptyDir": re.compile(r"No usable temporary directory|Read-only file system"),
    "wrong probe port": re.compile(r"Readiness probe failed: .*5999.*connection refused"),
    "runAsNonRoot with a named USER": re.compile(r"runAsNonRoot and image has non-numeric user"),
}


@pytest.fixture(scope="module")
def named_user_image(real_node: NodeCluster, images) -> str:
    """The backend image with `USER app` (a name) instead of 10001:10001."""
    import tempfile

    name = "localhost/obs-stack-test/backend-named-user:1"
    with tempfile.TemporaryDirectory() as context:
        containerfile = Path(context) / "Containerfile"
        containerfile.write_text(f"FROM {images['backend'].tag}\nUSER app\n")
        real_node.podman.run(
            "build", "--pull=never", "--tag", name, "--file", str(containerfile), context
        )
    real_node.load_image(name, name)
    return name


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_manifest_fails_the_check_naming_the_cause(
    real_node: NodeCluster, render_docs, named_user_image, breakage
):
    namespace = "obs-break-" + re.sub(r"[^a-z0-9]+", "-", breakage.lower()).strip("-")
    cluster = real_node.cluster
    apply(cluster, broken_backend(render_docs, namespace, breakage, named_user_image))
    try:
        with pytest.raises(AssertionError) as failure:
            wait_ready(cluster, namespace, "app.kubernetes.io/name=backend", 1, timeout=60)
        assert BREAKAGES[breakage].search(str(failure.value)), str(failure.value)
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# --- Elasticsearch's init container on the node --------------------------------------------


def es_init_pod(render_docs, command: str | None) -> dict:
    """A pod of the rendered Elasticsearch template: its init containers as rendered (or
    `config` running `command`), then a check, as the server's user, that the config
    folder is complete and writable where Elasticsearch writes its keystore."""
    template = copy.deepcopy(find(render_docs, "StatefulSet", "elasticsearch", MONITORING))
    spec = template["spec"]["template"]["spec"]
    init = next(c for c in spec["initContainers"] if c["name"] == "config")
    if command is not None:
        init["command"] = ["bash", "-ec", command]
    (server,) = spec["containers"]
    config_mount = next(m for m in server["volumeMounts"] if m["name"] == "config")
    spec["containers"] = [
        {
            "name": "check",
            "image": server["image"],
            "imagePullPolicy": "IfNotPresent",
            "command": ["bash", "-ec", ES_CONFIG_CHECK],
            "securityContext": server["securityContext"],
            "resources": server["resources"],
            "volumeMounts": [
                config_mount,
                {"name": "obs-config", "mountPath": "/obs-config", "readOnly": True},
            ],
        }
    ]
    # The data volume is a claim template; nothing here writes data.
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] in ("config", "obs-config")]
    spec["restartPolicy"] = "Never"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "es-init-" + ("rendered" if command is None else "audited"),
            "namespace": MONITORING,
            "labels": {"obs-stack.test/es-init": "rendered" if command is None else "audited"},
        },
        "spec": spec,
    }


def run_to_end(cluster: KubeCluster, pod: dict, timeout: float = 90) -> dict:
    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    cluster.kubectl("delete", "pod", name, "-n", namespace, "--ignore-not-found", "--wait=true")
    apply(cluster, [pod])

    def ended():
        got = cluster.get_json("pod", name, "-n", namespace)
        return got if got["status"].get("phase") in ("Succeeded", "Failed") else None

    return poll_until(ended, f"pod {namespace}/{name} to end", timeout, 1)


@pytest.fixture(scope="module")
def es_namespace(real_node: NodeCluster, render_docs, elasticsearch_standin) -> KubeCluster:
    docs = [find(render_docs, "Namespace", MONITORING)]
    docs += [
        d for d in by_kind(render_docs, "ConfigMap") if d["metadata"].get("namespace") == MONITORING
    ]
    apply(real_node.cluster, docs)
    return real_node.cluster


def test_elasticsearch_config_init_container_as_rendered_runs_on_the_node(
    es_namespace, render_docs
):
    pod = run_to_end(es_namespace, es_init_pod(render_docs, None))
    selector = "obs-stack.test/es-init=rendered"
    assert pod["status"]["phase"] == "Succeeded", diagnose(es_namespace, MONITORING, selector)
    assert "config complete and writable as 1000" in container_log(pod, "check")


def test_the_audited_elasticsearch_init_command_fails_on_the_node(es_namespace, render_docs):
    """The regression sample: this is what the render shipped before issue #15."""
    pod = run_to_end(es_namespace, es_init_pod(render_docs, AUDITED_ES_INIT))
    (init,) = [s for s in pod["status"]["initContainerStatuses"] if s["name"] == "config"]
    assert pod["status"]["phase"] == "Failed", pod["status"]
    assert init["state"]["terminated"]["exitCode"] == 1, init
    assert "preserving times for '/config/.': Operation not permitted" in container_log(
        pod, "config"
    )
