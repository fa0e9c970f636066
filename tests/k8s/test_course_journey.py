"""The course's journey on a real node (issue #22): `make up --skip-minikube` deploys the
render onto the test control plane with a real node (kubelet + containerd), every
upstream image replaced by a stand-in built from our pinned sources under the same
name (tests/support/standins.py), then the course's signals travel as on Minikube:

- traffic through the frontend Service reaches the backend, each request its own trace;
- Prometheus (a pod) discovers both services through the API and scrapes their pods by IP;
- /crash until the kubelet holds a backend pod in CrashLoopBackOff; kube-state-metrics
  reports it, PodCrashLooping fires, Alertmanager (a pod) mails the mail catcher (a pod),
  read through its API with the pod named;
- the services' stdout, written by containerd to /var/log/pods, goes through the Fluent
  Bit DaemonSet to Elasticsearch (a pod): a line found by its trace.id, with the pod's
  metadata; the same trace is in Jaeger (a pod) across both services.

Left out, by name, in one place (standins.EXCLUDED says why): Kibana and Grafana. Their
Deployments are deleted by the overlay this test deploys (OVERLAY_PATCHES); Kibana's
Service is answered by a recording server on the node's gateway that answers as Kibana
8 does, so that the import Job runs for real against it.

Each wire is then broken on purpose, once: the same step fails naming the component.
The footprint of every pod over the journey is printed (and written as JSON to
OBS_FOOTPRINT_OUT when that is set: docs/node-footprint.json was made so).

Reads CI (through the fixtures: no skip with CI=true) and OBS_FOOTPRINT_OUT.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from obs_tools.common.paths import REPO
from obs_tools.common.versions import k8s_binary

from tests.k8s.conftest import NodeCluster
from tests.support import footprint, journey
from tests.support.journey import APPS, LOGGING, MONITORING, JourneyError, Stack
from tests.support.polling import poll_until
from tests.support.real_node import gateway
from tests.support.recorder import Recorder, kibana
from tests.support.standins import EXCLUDED

pytestmark = pytest.mark.node

# What the overlay removes from the render: the workloads whose images have no stand-in.
OVERLAY_PATCHES = [
    {
        "$patch": "delete",
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": MONITORING},
    }
    for name in sorted(EXCLUDED)
]
MAKE_TIMEOUT = 900
ROLLOUT_TIMEOUT = 600
FLUENT_BIT_STATE = Path("/var/lib/fluent-bit")
STORAGE_CLASS = "standard"


def make(cluster, target: str, overlay: Path, *, background: bool = False):
    """`make TARGET` with UP_ARGS onto the test cluster: the command a user runs."""
    up_args = (
        f"--skip-minikube --skip-build --context obs-test --kubectl {k8s_binary('kubectl')} "
        f"--manifests {overlay} --timeout {ROLLOUT_TIMEOUT}"
    )
    argv = ["make", "--no-print-directory", "-C", str(REPO), target, f"UP_ARGS={up_args}"]
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    if background:
        return subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=MAKE_TIMEOUT)


def write_overlay(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(REPO / "k8s", folder)],
        "patches": [{"patch": yaml.safe_dump(p)} for p in OVERLAY_PATCHES],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return folder


def storage(node_name: str, folder: Path) -> list[dict]:
    """A default StorageClass and one local PersistentVolume for Elasticsearch's claim.
    Minikube's provisioner makes hostPath volumes; a `local` volume also gets the pod's
    fsGroup applied by the kubelet, as most CSI drivers do, which is the stricter case."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    return [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": "journey-elasticsearch-data"},
            "spec": {
                "capacity": {"storage": "5Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": STORAGE_CLASS,
                "local": {"path": str(folder)},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/hostname",
                                        "operator": "In",
                                        "values": [node_name],
                                    }
                                ]
                            }
                        ]
                    }
                },
            },
        },
    ]


def kibana_endpoint(port: int) -> dict:
    """Kibana's Service (the render's) sent to the recording server on the gateway."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kibana-recorder",
            "namespace": MONITORING,
            "labels": {
                "kubernetes.io/service-name": "kibana",
                "endpointslice.kubernetes.io/managed-by": "obs-stack-test",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [gateway()], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


def up_in_background(cluster, overlay: Path, kibana_port: int) -> subprocess.CompletedProcess:
    """`make up`, and Kibana's endpoint added as soon as `up` made the namespace."""
    started = time.monotonic()
    process = make(cluster, "up", overlay, background=True)

    def namespace_made():
        if process.poll() is not None:
            return True
        got = cluster.kubectl("get", "namespace", MONITORING, check=False)
        return got.returncode == 0

    poll_until(namespace_made, f"make up to create {MONITORING}", 300, 1)
    if process.poll() is None:
        cluster.kubectl(
            "apply", "--server-side", "-f", "-", stdin=json.dumps(kibana_endpoint(kibana_port))
        )
    try:
        out, _ = process.communicate(timeout=MAKE_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    print(f"\nmake up: exit {process.returncode} after {time.monotonic() - started:.0f} s")
    return subprocess.CompletedProcess(process.args, process.returncode, out, "")


def cleanup(cluster, overlay: Path, state_existed: bool) -> None:
    down = make(cluster, "down", overlay)
    cluster.kubectl(
        "delete",
        "persistentvolume",
        "journey-elasticsearch-data",
        "--ignore-not-found",
        check=False,
    )
    cluster.kubectl("delete", "storageclass", STORAGE_CLASS, "--ignore-not-found", check=False)
    if not state_existed:
        # Fluent Bit's hostPath outlives `make down` by design; this node's is the
        # machine's own /var/lib/fluent-bit, which the test made.
        shutil.rmtree(FLUENT_BIT_STATE, ignore_errors=True)
    if down.returncode != 0:
        print(f"make down during cleanup: exit {down.returncode}\n{down.stdout}\n{down.stderr}")


@pytest.fixture(scope="module")
def deployed(real_node: NodeCluster, standin_images, tmp_path_factory):
    cluster = real_node.cluster
    workdir = tmp_path_factory.mktemp("journey")
    overlay = write_overlay(workdir / "overlay")
    state_existed = FLUENT_BIT_STATE.exists()
    cluster.kubectl(
        "apply",
        "--server-side",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(storage(real_node.node.name, workdir / "es-data")),
    )
    try:
        with Recorder(kibana(), host=gateway()) as kibana_server:
            up = up_in_background(cluster, overlay, kibana_server.port)
            yield {
                "stack": Stack(cluster),
                "up": up,
                "overlay": overlay,
                "kibana": kibana_server,
                "node": real_node,
            }
    finally:
        cleanup(cluster, overlay, state_existed)


def test_make_up_deploys_every_workload_but_kibana_and_grafana(deployed):
    up = deployed["up"]
    assert up.returncode == 0, up.stdout[-6000:]
    assert "obs-stack is up" in up.stdout, up.stdout[-3000:]
    status = make(deployed["stack"].cluster, "status", deployed["overlay"])
    assert status.returncode == 0, status.stdout + status.stderr
    for excluded in EXCLUDED:
        assert excluded not in status.stdout.replace("kibana-import", ""), status.stdout
    calls = [(r["method"], r["path"]) for r in deployed["kibana"].requests]
    assert ("POST", "/api/saved_objects/_import?overwrite=true") in calls, calls


def test_the_course_journey(deployed, request):
    stack: Stack = deployed["stack"]
    node = deployed["node"].node
    pods = lambda: all_pods(stack)  # noqa: E731 - re-read: the crash restarts a pod
    first = footprint.sample(pods(), node.ctr("tasks", "ls").stdout)

    trace_id = journey.send_traffic(stack)
    answered = journey.load(stack)
    assert answered > 0
    print(f"\nload: {answered} requests answered 200 in 20 s through the frontend Service")
    for service in ("frontend", "backend"):
        journey.scraped_by_pod_ip(stack, service)
    journey.clear_mail(stack)
    pod = journey.crash_until_backoff(stack)
    journey.kube_state_metrics_reports(stack, pod)
    journey.alert_fires(stack, pod)
    mail = journey.mail_naming(stack, pod)
    assert any(t["Address"] == "oncall@obs-stack.local" for t in mail["To"]), mail["To"]

    document = journey.log_line_with_trace(stack, trace_id)
    kubernetes = document.get("kubernetes", {})
    assert kubernetes.get("namespace_name") == APPS, journey.pretty(document)
    assert kubernetes.get("pod_name", "").startswith(("frontend-", "backend-")), kubernetes
    trace = journey.trace_in_jaeger(stack, trace_id)
    assert trace["traceID"] == trace_id
    # The retention CronJob's image and user, now rather than at 00:55.
    journey.run_cronjob_once(stack, "jaeger-es-index-cleaner")

    last = footprint.sample(pods(), node.ctr("tasks", "ls").stdout)
    report_footprint(pods(), first, last)


def all_pods(stack: Stack) -> list[dict]:
    return [
        p
        for namespace in (APPS, MONITORING, LOGGING)
        for p in stack.cluster.get_json("pods", "-n", namespace)["items"]
    ]


def report_footprint(pods: list[dict], first, last) -> None:
    rows = footprint.table(pods, first, last)
    seconds = last.taken - first.taken
    print("\n" + footprint.markdown(rows, seconds))
    over = [
        r
        for r in rows
        if r["memory_limit"]
        and r["working_set_mib"] * footprint.MIB > footprint.quantity(r["memory_limit"])
    ]
    assert not over, f"working set above the memory limit: {over}"
    if out := os.environ.get("OBS_FOOTPRINT_OUT"):
        Path(out).write_text(
            json.dumps(
                {"measured": time.strftime("%Y-%m-%d"), "seconds": round(seconds), "rows": rows},
                indent=1,
            )
            + "\n"
        )


# --- each wire broken on purpose -----------------------------------------------------------


def configmap_of(stack: Stack, namespace: str, workload: str, kind: str = "deployment") -> dict:
    spec = stack.cluster.get_json(kind, workload, "-n", namespace)["spec"]["template"]["spec"]
    names = [v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v]
    return {n: stack.cluster.get_json("configmap", n, "-n", namespace) for n in names}


def replace_text(stack: Stack, namespace: str, maps: dict, old: str, new: str) -> dict:
    """Edit the first ConfigMap value containing `old`; returns the original object."""
    for name, cm in maps.items():
        for key, value in cm["data"].items():
            if old in value:
                patch = {"data": {key: value.replace(old, new, 1)}}
                stack.cluster.kubectl(
                    "patch",
                    "configmap",
                    name,
                    "-n",
                    namespace,
                    "--type=merge",
                    "-p",
                    json.dumps(patch),
                )
                return {"name": name, "data": {key: value}}
    raise AssertionError(f"{old!r} is in none of {sorted(maps)}")


def restart(stack: Stack, namespace: str, kind: str, name: str) -> None:
    stack.cluster.kubectl("rollout", "restart", kind, name, "-n", namespace)
    stack.cluster.kubectl(
        "rollout",
        "status",
        kind,
        name,
        "-n",
        namespace,
        f"--timeout={ROLLOUT_TIMEOUT}s",
        timeout=ROLLOUT_TIMEOUT + 30,
    )


def break_service_port(stack: Stack):
    original = stack.cluster.get_json("service", "backend", "-n", APPS)
    port = original["spec"]["ports"][0]
    patch = [{"op": "replace", "path": "/spec/ports/0/targetPort", "value": 5999}]
    stack.cluster.kubectl(
        "patch", "service", "backend", "-n", APPS, "--type=json", "-p", json.dumps(patch)
    )
    check = lambda: journey.send_traffic(stack, requests=3, timeout=30)  # noqa: E731

    def restore():
        fix = [{"op": "replace", "path": "/spec/ports/0/targetPort", "value": port["targetPort"]}]
        stack.cluster.kubectl(
            "patch", "service", "backend", "-n", APPS, "--type=json", "-p", json.dumps(fix)
        )

    return check, restore


def break_fluent_bit_path(stack: Stack):
    maps = configmap_of(stack, LOGGING, "fluent-bit", "daemonset")
    original = replace_text(stack, LOGGING, maps, "/var/log/containers/", "/var/log/no-such-dir/")
    restart(stack, LOGGING, "daemonset", "fluent-bit")

    def check():
        trace_id = journey.send_traffic(stack, requests=2, timeout=60)
        journey.log_line_with_trace(stack, trace_id, timeout=45)

    def restore():
        stack.cluster.kubectl(
            "patch",
            "configmap",
            original["name"],
            "-n",
            LOGGING,
            "--type=merge",
            "-p",
            json.dumps({"data": original["data"]}),
        )
        restart(stack, LOGGING, "daemonset", "fluent-bit")

    return check, restore


def break_smtp_host(stack: Stack):
    maps = configmap_of(stack, MONITORING, "alertmanager")
    original = replace_text(
        stack,
        MONITORING,
        maps,
        'smtp_smarthost: "mailcatcher:1025"',
        'smtp_smarthost: "mailcatcher-broken:1025"',
    )
    journey.clear_mail(stack)
    # A new pod has no notification log: it mails the alerts still firing, the
    # journey's PodCrashLooping among them (keep_firing_for 5m). Its log names the host it
    # failed to reach (EVIDENCE), so a shorter wait is enough to tell the break from a
    # slow delivery.
    restart(stack, MONITORING, "deployment", "alertmanager")
    pod = stack.crash_looping or journey.crash_until_backoff(stack)
    check = lambda: journey.mail_naming(stack, pod, timeout=90)  # noqa: E731

    def restore():
        stack.cluster.kubectl(
            "patch",
            "configmap",
            original["name"],
            "-n",
            MONITORING,
            "--type=merge",
            "-p",
            json.dumps({"data": original["data"]}),
        )
        restart(stack, MONITORING, "deployment", "alertmanager")

    return check, restore


def break_otlp_endpoint(stack: Stack):
    for service in ("frontend", "backend"):
        stack.cluster.kubectl(
            "set",
            "env",
            f"deployment/{service}",
            "-n",
            APPS,
            "OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger-broken.obs-monitoring.svc:4318",
        )
    for service in ("frontend", "backend"):
        stack.cluster.kubectl(
            "rollout",
            "status",
            f"deployment/{service}",
            "-n",
            APPS,
            f"--timeout={ROLLOUT_TIMEOUT}s",
            timeout=ROLLOUT_TIMEOUT + 30,
        )

    def check():
        trace_id = journey.send_traffic(stack, requests=2, timeout=60)
        journey.trace_in_jaeger(stack, trace_id, timeout=45)

    def restore():
        for service in ("frontend", "backend"):
            stack.cluster.kubectl("rollout", "undo", f"deployment/{service}", "-n", APPS)

    return check, restore


# What the failing component's log shows of the break, where it logs one.
EVIDENCE = {"Alertmanager": "mailcatcher-broken"}

BREAKAGES = {
    "backend Service (from the frontend)": break_service_port,
    "Fluent Bit": break_fluent_bit_path,
    "Alertmanager": break_smtp_host,
    "Jaeger (OTLP from the services)": break_otlp_endpoint,
}


@pytest.mark.parametrize("component", list(BREAKAGES))
def test_a_broken_wire_fails_the_journey_naming_its_component(deployed, component):
    stack: Stack = deployed["stack"]
    check, restore = BREAKAGES[component](stack)
    try:
        with pytest.raises(JourneyError) as failure:
            check()
    finally:
        restore()
    assert str(failure.value).startswith(f"{component}:"), str(failure.value)[:2000]
    assert EVIDENCE.get(component, "") in str(failure.value), str(failure.value)[-3000:]
    print(f"\n{component} broken: {str(failure.value).splitlines()[0]}")


def test_make_down_removes_everything(deployed):
    cluster = deployed["stack"].cluster
    down = make(cluster, "down", deployed["overlay"])
    assert down.returncode == 0, down.stdout + down.stderr
    for namespace in (APPS, MONITORING, LOGGING):
        got = cluster.kubectl("get", "namespace", namespace, check=False)
        assert got.returncode != 0, f"{namespace} still there:\n{got.stdout}"
    status = make(cluster, "status", deployed["overlay"])
    assert status.returncode != 0 and "obs-stack is not deployed" in status.stdout, status.stdout
