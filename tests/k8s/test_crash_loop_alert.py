"""The course's crash-loop alert on real Kubernetes signals.

A real control plane (etcd, kube-apiserver, controller-manager, scheduler, one kwok node)
runs the whole `kubectl kustomize k8s/` render. The test then plays the kubelet for one
backend pod: it crashes the real backend service (gunicorn, the local harness's command
line) through /crash, restarts it, and reports each crash through the pod status API
(restartCount, waiting reason CrashLoopBackOff, Ready False), as a kubelet would.
kube-state-metrics (v2.13.0, with the deployed Deployment's arguments) turns that status
into series; Prometheus v3.16.0 discovers the pods through kubernetes_sd against the API
server with the repository's prometheus-kubernetes.yml jobs `kube-state-metrics` and
`backend`, evaluates the repository's rule files, and sends to Alertmanager v0.34.2
configured from prometheus/alertmanager/ exactly as `make demo` renders it, which mails
the repository's mail catcher (tools/obs_tools/localstack/mailcatcher.py).

Asserted: every job of prometheus-kubernetes.yml discovers the render's pods;
PodCrashLooping fires in Prometheus for that pod, Alertmanager routes it to the e-mail
receiver, the e-mail names the pod; ServiceCrashLooping (the services' own
process_start_time_seconds signal, which the same crash loop also raises) fires too and
Alertmanager inhibits it, as it does the pod's TargetDown, so the crash loop is one
e-mail; and without the inhibition rule ServiceCrashLooping would be active (mailed).
Wall time about 2.5 minutes, most of it the rule's `for: 1m` and the e-mail groups' waits.

What is changed from the deployed configuration, and why (nothing else is):
- kwok runs no containers, so a discovered pod's IP answers nothing. Relabelling steps
  appended to every job send the scrape of the crash-looping backend pod and of the
  kube-state-metrics pod to the processes standing in for them on 127.0.0.1, and drop
  every other target (after discovery: each job must still find its pods);
  `instance` keeps the pod's address, as in the cluster.
- kubernetes_sd_configs get `kubeconfig_file` (in the cluster: the in-cluster account).
- Scrape and evaluation every 2 s instead of 15 s: the rules' windows and `for:` do not
  depend on it, and the wait shrinks by about 40 s. The rule files are the repository's.

Reads CI (CI=true: a missing binary fails instead of skipping).
"""

from __future__ import annotations

import copy
import html
import json
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest
import yaml
from obs_tools.common.processes import ManagedProcess
from obs_tools.common.versions import REPO, alertmanager_binary, k8s_binary, prometheus_binary
from obs_tools.localstack.components import LocalStack, Ports, service_argv, service_env
from obs_tools.localstack.mailcatcher import read_messages

from tests.k8s.conftest import require_k8s_binaries
from tests.support import views
from tests.support.kube_cluster import CONTROL_PLANE, KubeCluster
from tests.support.polling import GiveUp, free_port, poll_until
from tests.support.rig import ProcessRig

pytestmark = [pytest.mark.validate, pytest.mark.e2e]

NAMESPACE = "obs-apps"
SERVICE = "backend"
KSM_NAMESPACE = "obs-monitoring"
# Three restarts: the rule's threshold is "more than 2". A fourth crash then leaves the
# container waiting in CrashLoopBackOff, where a real crash loop spends most of its time.
RESTARTS = 3
# Shorter than the deployed 15 s (see the module docstring); the rules' ranges are 5m/15m.
INTERVAL = "2s"
SCRAPE_JOBS = ("kube-state-metrics", SERVICE)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class CrashLoopRig(ProcessRig):
    """The processes of the test and how to reach them; stop() stops each by PID."""

    pod: str = ""
    pod_ip: str = ""
    ksm_pod: str = ""
    ksm_pod_ip: str = ""
    # Seconds since the fixture started, per milestone; printed at the end (-s shows it).
    timeline: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    # Values worth reading in the log, not asserted (see run_crash_loop).
    observations: dict[str, object] = field(default_factory=dict)

    def mark(self, milestone: str) -> None:
        self.timeline[milestone] = round(time.monotonic() - self.started, 1)

    def context(self, *names: str) -> str:
        """The last log lines of the named components (ours and the cluster's), and
        Prometheus' view of its targets when Prometheus is named."""
        theirs = [n for n in names if n in self.cluster.processes]
        targets = [self.targets()] if "prometheus" in names else []
        return "\n".join([*targets, super().context(*names),
                          self.cluster.failure_context(*theirs) if theirs else ""])  # fmt: skip

    def targets(self) -> str:
        """One line per active target, and how many discovered ones relabelling dropped."""
        try:
            data = httpx.get(f"{self.url('prometheus')}/api/v1/targets", timeout=5).json()
        except (httpx.HTTPError, ValueError) as exc:
            return f"Prometheus targets: unavailable ({exc!r})"
        lines = [
            f"  {t['labels'].get('job')} {t['labels'].get('instance')} -> {t['scrapeUrl']}: "
            f"{t['health']} {t.get('lastError', '')}"
            for t in data["data"]["activeTargets"]
        ]
        dropped = len(data["data"]["droppedTargets"])
        return "\n".join(["Prometheus active targets:", *lines, f"  ({dropped} dropped)"])

    # --- Prometheus and Alertmanager APIs ----------------------------------------------

    def query(self, expr: str) -> list[dict]:
        response = httpx.get(
            f"{self.url('prometheus')}/api/v1/query", params={"query": expr}, timeout=10
        )
        response.raise_for_status()
        return response.json()["data"]["result"]

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def prometheus_alerts(self, name: str) -> list[dict]:
        alerts = httpx.get(f"{self.url('prometheus')}/api/v1/alerts", timeout=10).json()
        return [a for a in alerts["data"]["alerts"] if a["labels"]["alertname"] == name]

    def alertmanager_alerts(self, name: str) -> list[dict]:
        alerts = httpx.get(f"{self.url('alertmanager')}/api/v2/alerts", timeout=10).json()
        return [a for a in alerts if a["labels"]["alertname"] == name]

    def mails(self) -> list:
        return read_messages(self.workdir / "mail")


# --- the real objects ----------------------------------------------------------------------


def render(cluster: KubeCluster) -> list[dict]:
    text = cluster.kubectl("kustomize", str(REPO / "k8s")).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def find(docs: list[dict], kind: str, namespace: str, name: str) -> dict:
    for doc in docs:
        meta = doc["metadata"]
        if doc["kind"] == kind and meta.get("namespace") == namespace and meta["name"] == name:
            return doc
    raise AssertionError(f"the render of k8s/ has no {kind} {namespace}/{name}")


def pods_of(cluster: KubeCluster, namespace: str, name: str) -> list[dict]:
    pods = cluster.get_json("pods", "-n", namespace, "-l", f"app.kubernetes.io/name={name}")[
        "items"
    ]
    return sorted(pods, key=lambda p: p["metadata"]["name"])


def ksm_argv(cluster: KubeCluster, deployment: dict, port: int, telemetry_port: int) -> list:
    """kube-state-metrics with the deployed container's arguments, on loopback ports."""
    (container,) = [
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if c["name"] == "kube-state-metrics"
    ]
    kept = [
        a for a in container.get("args", []) if not a.startswith(("--port=", "--telemetry-port="))
    ]
    return [
        str(k8s_binary("kube-state-metrics")),
        f"--kubeconfig={cluster.kubeconfig}",
        "--host=127.0.0.1",
        f"--port={port}",
        "--telemetry-host=127.0.0.1",
        f"--telemetry-port={telemetry_port}",
        *kept,
    ]


# --- configuration as deployed, pointed at the test's processes ----------------------------


def prometheus_config(rig: CrashLoopRig) -> dict:
    """prometheus/prometheus-kubernetes.yml with the changes the module docstring lists."""
    deployed = yaml.safe_load((REPO / "prometheus" / "prometheus-kubernetes.yml").read_text())
    config = copy.deepcopy(deployed)
    config["global"].update(
        scrape_interval=INTERVAL, scrape_timeout=INTERVAL, evaluation_interval=INTERVAL
    )
    # The same files the prometheus-rules ConfigMap mounts at /etc/prometheus/rules/.
    config["rule_files"] = [str(REPO / "prometheus" / "rules" / "*.yml")]
    config["alerting"]["alertmanagers"] = [
        {"static_configs": [{"targets": [f"127.0.0.1:{rig.ports['alertmanager']}"]}]}
    ]
    stand_ins = {
        "kube-state-metrics": (rig.ksm_pod, rig.ports["ksm"]),
        SERVICE: (rig.pod, rig.ports[SERVICE]),
    }
    jobs = []
    for job in config["scrape_configs"]:
        # Deep copies: the YAML anchor makes every pod job share one relabel list.
        job = copy.deepcopy(job)
        for sd in job["kubernetes_sd_configs"]:
            sd["kubeconfig_file"] = str(rig.cluster.kubeconfig)
        # Every job is loaded and discovers its pods; only the stand-ins are scraped.
        redirect = []
        if job["job_name"] in stand_ins:
            pod, port = stand_ins[job["job_name"]]
            redirect = [
                {
                    "source_labels": ["__meta_kubernetes_pod_name"],
                    "regex": re.escape(pod),
                    "target_label": "__address__",
                    "replacement": f"127.0.0.1:{port}",
                }
            ]
        job["relabel_configs"] = [
            *job["relabel_configs"],
            {"source_labels": ["__address__"], "target_label": "instance"},
            *redirect,
            {"source_labels": ["__address__"], "regex": r"127\.0\.0\.1:\d+", "action": "keep"},
        ]
        jobs.append(job)
    names = {j["job_name"] for j in jobs}
    assert set(SCRAPE_JOBS) <= names, f"scrape jobs renamed? {sorted(names)}"
    config["scrape_configs"] = jobs
    return config


def alertmanager_config(rig: CrashLoopRig) -> dict:
    """The repository's alertmanager.yml as `make demo` renders it (LocalStack), so the
    routing, inhibitions and template are the deployed ones and mail goes to our catcher."""
    stack = LocalStack(rig.workdir / "local-stack", Ports(smtp=rig.ports["smtp"]))
    return stack.alertmanager_config()


# --- acting as the kubelet -----------------------------------------------------------------


def patch_status(rig: CrashLoopRig, restarts: int, running: bool, exit_code: int = 1) -> None:
    """What the kubelet reports: restartCount counts the container's previous instances;
    between a crash and the restart the container waits in CrashLoopBackOff, unready."""
    stamp = now_rfc3339()
    if running:
        state = {"running": {"startedAt": stamp}}
    else:
        message = f"back-off 10s restarting failed container={SERVICE} pod={rig.pod}"
        state = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
    status = {
        "name": SERVICE,
        "restartCount": restarts,
        "ready": running,
        "started": running,
        "state": state,
        "lastState": {
            "terminated": {"exitCode": exit_code, "reason": "Error", "finishedAt": stamp}
        },
    }
    conditions = [
        {"type": kind, "status": "True" if running else "False", "lastTransitionTime": stamp}
        for kind in ("Ready", "ContainersReady")
    ]
    if not running:
        for condition in conditions:
            condition["reason"] = "ContainersNotReady"
    patch = {"status": {"containerStatuses": [status], "conditions": conditions}}
    rig.cluster.kubectl(
        "patch", "pod", rig.pod, "-n", NAMESPACE, "--subresource=status",
        "--type=strategic", "-p", json.dumps(patch),
    )  # fmt: skip


def start_backend(rig: CrashLoopRig, generation: int) -> ManagedProcess:
    """The real backend service, as the local harness runs it, with /crash switched on
    as in k8s/apps/backend.yaml."""
    env = service_env(SERVICE, CHAOS_CRASH_ENABLED="true", OTEL_TRACES_EXPORTER="none")
    process = rig.spawn(
        f"{SERVICE}-{generation}", service_argv(SERVICE, rig.ports[SERVICE]), env=env, cwd=REPO
    )
    process.wait_http(f"{rig.url(SERVICE)}/readyz", timeout=60, ok=lambda r: r.status_code == 200)
    return process


def crash(rig: CrashLoopRig, process: ManagedProcess) -> int:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{rig.url(SERVICE)}/crash", timeout=10)
    try:
        return process.wait(timeout=30)
    except Exception as exc:
        raise AssertionError(f"{process.name} did not exit after /crash\n{process.tail()}") from exc


def wait_scraped(rig: CrashLoopRig, expr: str, want, description: str, *components: str):
    """Poll Prometheus until `expr` satisfies `want`; return its value."""
    # A one-element list: truthy for poll_until even when the value is 0.
    (value,) = poll_until(
        lambda: [v] if (v := rig.scalar(expr)) is not None and want(v) else None,
        f"Prometheus: {description} ({expr})",
        timeout=60,
        on_timeout=lambda: rig.context("prometheus", *components),
    )
    return value


# --- the scenario ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    require_k8s_binaries(
        [*CONTROL_PLANE, "kwok", "kube-state-metrics", "prometheus", "alertmanager"]
    )
    workdir = tmp_path_factory.mktemp("crash-loop")
    # Its own cluster: the pod is made to crash-loop, which other tests must not see.
    cluster = KubeCluster(workdir / "cluster", kwok=True)
    cluster.start()
    rig = CrashLoopRig(workdir, cluster)
    rig.logs.mkdir(parents=True, exist_ok=True)
    rig.mark("cluster up")
    try:
        backend = setup(rig)
        rig.mark("pipeline up")
        run_crash_loop(rig, backend)
        rig.mark("crash loop done")
        yield rig
    finally:
        rig.stop()
        cluster.stop()
        rig.mark("stopped")
        print(f"\ncrash-loop timeline (s): {rig.timeline}", file=sys.stderr)
        print(f"crash-loop observations: {rig.observations}", file=sys.stderr)


def setup(rig: CrashLoopRig) -> ManagedProcess:
    """Render and apply k8s/, then start the stand-ins and the alerting pipeline; return
    the first backend process."""
    cluster = rig.cluster
    docs = render(cluster)
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=obs-test", "-f", "-",
        stdin=yaml.safe_dump_all(docs),
    )  # fmt: skip
    cluster.rollout_status("deployment", SERVICE, NAMESPACE)
    cluster.rollout_status("deployment", "kube-state-metrics", KSM_NAMESPACE)
    backend_pod = pods_of(cluster, NAMESPACE, SERVICE)[0]
    rig.pod = backend_pod["metadata"]["name"]
    rig.pod_ip = backend_pod["status"].get("podIP", "")
    assert rig.pod_ip, f"kwok gave pod {rig.pod} no IP: Prometheus' pod discovery skips it"
    ksm_pod = pods_of(cluster, KSM_NAMESPACE, "kube-state-metrics")[0]
    rig.ksm_pod, rig.ksm_pod_ip = ksm_pod["metadata"]["name"], ksm_pod["status"]["podIP"]

    for name in ("ksm", "ksm_telemetry", "smtp", "alertmanager", "prometheus", SERVICE):
        rig.ports[name] = free_port()

    ksm_deployment = find(docs, "Deployment", KSM_NAMESPACE, "kube-state-metrics")
    rig.spawn(
        "kube-state-metrics",
        ksm_argv(cluster, ksm_deployment, rig.ports["ksm"], rig.ports["ksm_telemetry"]),
    ).wait_http(f"{rig.url('ksm')}/healthz", ok=lambda r: r.status_code == 200)

    mail_dir = rig.workdir / "mail"
    rig.spawn(
        "mailcatcher",
        [sys.executable, "-m", "obs_tools.localstack.mailcatcher", "serve",
         "--port", str(rig.ports["smtp"]), "--maildir", str(mail_dir)],
    )  # fmt: skip
    poll_until(
        lambda: "listening on" in rig.processes["mailcatcher"].log_path.read_text(),
        "mailcatcher: listening",
        timeout=30,
        on_timeout=lambda: rig.context("mailcatcher"),
    )

    am_config = rig.workdir / "alertmanager.yml"
    am_config.write_text(yaml.safe_dump(alertmanager_config(rig)))
    rig.spawn(
        "alertmanager",
        [
            str(alertmanager_binary()),
            f"--config.file={am_config}",
            f"--storage.path={rig.workdir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{rig.ports['alertmanager']}",
            f"--web.external-url={rig.url('alertmanager')}",
            "--cluster.listen-address=",
        ],
    ).wait_http(f"{rig.url('alertmanager')}/-/ready", ok=lambda r: r.status_code == 200)

    backend = start_backend(rig, 0)

    prom_config = rig.workdir / "prometheus.yml"
    prom_config.write_text(yaml.safe_dump(prometheus_config(rig)))
    rig.spawn(
        "prometheus",
        [
            str(prometheus_binary()),
            f"--config.file={prom_config}",
            f"--storage.tsdb.path={rig.workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{rig.ports['prometheus']}",
        ],
    ).wait_http(f"{rig.url('prometheus')}/-/ready", ok=lambda r: r.status_code == 200)
    return backend


def run_crash_loop(rig: CrashLoopRig, backend: ManagedProcess) -> None:
    """RESTARTS crashes and restarts, each seen by Prometheus through both signals, then
    one more crash that leaves the container waiting in CrashLoopBackOff."""
    pod = f'namespace="{NAMESPACE}",pod="{rig.pod}",container="{SERVICE}"'
    restarts = f"kube_pod_container_status_restarts_total{{{pod}}}"
    waiting = f'kube_pod_container_status_waiting_reason{{{pod},reason="CrashLoopBackOff"}}'
    start_time = f'process_start_time_seconds{{job="{SERVICE}",pod="{rig.pod}"}}'
    # The counter's first value must be scraped before it rises, or increase() sees none.
    wait_scraped(rig, restarts, lambda v: v == 0, f"{rig.pod} at 0 restarts", "kube-state-metrics")
    previous = wait_scraped(
        rig, start_time, lambda v: v > 0, f"{SERVICE} of pod {rig.pod} scraped", backend.name
    )
    for attempt in range(1, RESTARTS + 2):
        exit_code = crash(rig, backend)
        patch_status(rig, restarts=attempt - 1, running=False, exit_code=exit_code)
        wait_scraped(rig, waiting, lambda v: v == 1, "CrashLoopBackOff", "kube-state-metrics")
        if attempt > RESTARTS:
            break
        backend = start_backend(rig, attempt)
        patch_status(rig, restarts=attempt, running=True)
        wait_scraped(
            rig, restarts, lambda v, n=attempt: v == n, f"restart {attempt}", "kube-state-metrics"
        )
        # Each new process must be scraped before the next crash, or changes() in
        # ServiceCrashLooping would count fewer restarts than happened.
        previous = wait_scraped(
            rig, start_time, lambda v, p=previous: v != p, f"restarted {SERVICE}", backend.name
        )
        rig.mark(f"restart {attempt} scraped")
        # The rule's first branch, "more than 2 restarts in 5 minutes", after only
        # `attempt` restarts: increase() extrapolates to the end of its window.
        rig.observations[f"increase[5m] after {attempt} restarts"] = rig.scalar(
            f"increase({restarts}[5m])"
        )
        rig.observations[f"PodCrashLooping after {attempt} restarts"] = [
            a["state"] for a in rig.prometheus_alerts("PodCrashLooping")
        ]


# --- the checks --------------------------------------------------------------------------------


def test_every_scrape_job_discovers_its_pods_in_the_render(rig):
    """The whole prometheus-kubernetes.yml loads in Prometheus v3.16.0, and each job's
    namespace and label selector find the render's pods (scraped or not)."""
    deployed = yaml.safe_load((REPO / "prometheus" / "prometheus-kubernetes.yml").read_text())
    jobs = [j["job_name"] for j in deployed["scrape_configs"]]
    data = httpx.get(f"{rig.url('prometheus')}/api/v1/targets", timeout=10).json()["data"]
    found: dict[str, int] = dict.fromkeys(jobs, 0)
    for target in data["activeTargets"] + data["droppedTargets"]:
        job = target.get("scrapePool") or target["discoveredLabels"].get("job")
        found[job] = found.get(job, 0) + 1
    rig.observations["targets discovered per job"] = found
    assert all(found[j] for j in jobs), f"jobs that discovered no pod: {found}"
    scraped = {t["labels"]["job"]: t["labels"]["instance"] for t in data["activeTargets"]}
    # The ports the pods' prometheus.io/port annotations name.
    assert scraped == {
        "kube-state-metrics": f"{rig.ksm_pod_ip}:8080",
        SERVICE: f"{rig.pod_ip}:5001",
    }, scraped


def test_the_dashboards_kubernetes_only_queries_return_the_restarts(rig):
    """The panels the local e2e views test cannot check (kube-state-metrics only exists
    here), with $service set to the crashed service, return its restarts from the real
    Prometheus v3.16.0 and kube-state-metrics: seed 002's Grafana query among them."""
    checked = {}
    for dashboard in views.load_dashboards():
        for target in filter(views.is_kubernetes_only, views.targets(dashboard)):
            expr = views.substitute(target.body["expr"], {"service": SERVICE})
            checked[target.where] = rig.scalar(expr)
    assert checked, "no dashboard panel reads kube_pod_container_status_restarts_total"
    wrong = {where: value for where, value in checked.items() if value != RESTARTS}
    assert not wrong, f"expected {RESTARTS} restarts of {SERVICE}, got {wrong}"


def firing_in_prometheus(rig: CrashLoopRig, name: str) -> list[dict]:
    return [a for a in rig.prometheus_alerts(name) if a["state"] == "firing"]


def test_pod_crash_looping_fires_in_prometheus_for_the_pod(rig):
    # `for: 1m` after the third restart, evaluated every INTERVAL.
    (alert,) = poll_until(
        lambda: firing_in_prometheus(rig, "PodCrashLooping"),
        "Prometheus: PodCrashLooping firing",
        timeout=150,
        interval=1,
        on_timeout=lambda: rig.context("prometheus", "kube-state-metrics"),
    )
    labels = alert["labels"]
    assert labels["namespace"] == NAMESPACE
    assert labels["pod"] == rig.pod
    assert labels["container"] == SERVICE
    assert labels["service"] == SERVICE
    assert labels["severity"] == "critical"
    # `max by (namespace, pod, container)` must have dropped the scrape labels.
    assert "instance" not in labels and "job" not in labels, labels
    assert float(alert["value"]) > 2


def test_alertmanager_routes_pod_crash_looping_to_email(rig):
    (alert,) = poll_until(
        lambda: [
            a
            for a in rig.alertmanager_alerts("PodCrashLooping")
            if a["status"]["state"] == "active"
        ],
        "Alertmanager: PodCrashLooping active",
        timeout=150,
        interval=1,
        on_timeout=lambda: rig.context("prometheus", "alertmanager"),
    )
    assert [r["name"] for r in alert["receivers"]] == ["email"]
    assert alert["labels"]["pod"] == rig.pod


def pod_mails(rig: CrashLoopRig) -> list:
    return [m for m in rig.mails() if "PodCrashLooping" in m.subject]


def test_the_email_names_the_pod(rig):
    (message, *more) = poll_until(
        lambda: pod_mails(rig),
        "mailcatcher: the PodCrashLooping e-mail",
        timeout=180,
        interval=1,
        on_timeout=lambda: rig.context("prometheus", "alertmanager", "mailcatcher"),
    )
    assert not more, [m.subject for m in more]
    assert message.subject == f"[FIRING] PodCrashLooping {SERVICE} (critical)"
    summary = f"{SERVICE} is crash looping in pod {rig.pod}"
    description = f"Container {SERVICE} of pod {NAMESPACE}/{rig.pod}"
    assert message.html.startswith("<!DOCTYPE html>")
    for part in (message.body, html.unescape(message.html)):
        assert summary in part, part
        assert description in part, part
        assert f"pod={rig.pod}" in part, part
        assert "http://localhost:3000/d/obs-runbook-crash-looping" in part, part
    rig.mark("PodCrashLooping mail")
    rig.observations["mail"] = f"Subject: {message.subject}\n{message.body}"


def test_service_crash_looping_fires_but_is_inhibited(rig):
    # The same crash loop raises the services' own signal (4 processes, 3 changes of
    # process_start_time_seconds); Prometheus fires it ...
    (alert,) = poll_until(
        lambda: firing_in_prometheus(rig, "ServiceCrashLooping"),
        "Prometheus: ServiceCrashLooping firing",
        timeout=150,
        interval=1,
        on_timeout=lambda: rig.context("prometheus", f"{SERVICE}-{RESTARTS}"),
    )
    assert alert["labels"]["service"] == SERVICE
    assert alert["labels"]["pod"] == rig.pod
    assert alert["labels"]["namespace"] == NAMESPACE
    # The pod's address, from kubernetes_sd, as in the cluster (port: prometheus.io/port).
    assert alert["labels"]["instance"] == f"{rig.pod_ip}:5001"
    # ... and Alertmanager mutes it: PodCrashLooping names the pod.
    (source,) = rig.alertmanager_alerts("PodCrashLooping")

    def suppressed():
        muted = [
            a
            for a in rig.alertmanager_alerts("ServiceCrashLooping")
            if a["status"]["state"] == "suppressed"
        ]
        unmuted = [
            a
            for a in rig.alertmanager_alerts("ServiceCrashLooping")
            if a["status"]["state"] == "active"
        ]
        if unmuted and firing_in_prometheus(rig, "PodCrashLooping"):
            raise GiveUp(f"ServiceCrashLooping is not inhibited: {unmuted}")
        return muted

    (target,) = poll_until(
        suppressed,
        "Alertmanager: ServiceCrashLooping suppressed",
        timeout=60,
        interval=1,
        on_timeout=lambda: rig.context("alertmanager"),
    )
    assert target["status"]["inhibitedBy"] == [source["fingerprint"]]
    assert_no_mail_but_the_crash_loop_one(rig, target, "ServiceCrashLooping")


def test_target_down_of_the_crashed_pod_is_inhibited(rig):
    # In CrashLoopBackOff the pod is still Running, so it stays a target and is down
    # (prometheus-kubernetes.yml says so); a minute later TargetDown fires, and the
    # crash-loop alerts mute it in Alertmanager: the crash loop is the one mail.
    # Both crash-loop alerts mute TargetDown (alertmanager.yml); Alertmanager names
    # only the first source it matched in inhibitedBy, so either one is the right answer.
    crash_loops = {
        a["fingerprint"]
        for name in ("PodCrashLooping", "ServiceCrashLooping")
        for a in rig.alertmanager_alerts(name)
    }
    assert crash_loops, "Alertmanager holds no crash-loop alert"
    (alert,) = poll_until(
        lambda: [
            a
            for a in rig.alertmanager_alerts("TargetDown")
            if a["labels"].get("service") == SERVICE
        ],
        "Alertmanager: TargetDown of the crashed backend",
        timeout=120,
        interval=1,
        on_timeout=lambda: rig.context("prometheus", "alertmanager"),
    )
    assert alert["labels"]["pod"] == rig.pod
    assert alert["status"]["state"] == "suppressed", alert
    assert crash_loops & set(alert["status"]["inhibitedBy"]), alert
    rig.observations["TargetDown inhibited by"] = [
        a["labels"]["alertname"]
        for name in ("PodCrashLooping", "ServiceCrashLooping")
        for a in rig.alertmanager_alerts(name)
        if a["fingerprint"] in alert["status"]["inhibitedBy"]
    ]
    assert_no_mail_but_the_crash_loop_one(rig, alert, "TargetDown")


def assert_no_mail_but_the_crash_loop_one(rig, alert: dict, name: str) -> None:
    """No mail for a suppressed alert: its group's first flush (group_wait after it
    arrived) has passed once PodCrashLooping's own mail is in, and then some: wait out
    one group_wait and one group_interval past its arrival, reading both from the config,
    then check that PodCrashLooping's is still the only mail."""
    route = alertmanager_config(rig)["route"]
    grace = seconds(route["group_wait"]) + seconds(route["group_interval"])
    # startsAt is when Prometheus fired it, which sends it at once.
    arrived = datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00"))
    poll_until(
        lambda: (datetime.now(UTC) - arrived).total_seconds() > grace,
        f"one group_wait and group_interval past {name}'s arrival",
        timeout=grace + 10,
        interval=1,
    )
    subjects = [m.subject for m in rig.mails()]
    assert subjects == [f"[FIRING] PodCrashLooping {SERVICE} (critical)"], subjects


def seconds(duration: str) -> float:
    value, unit = re.fullmatch(r"(\d+)([smh])", duration).groups()
    return int(value) * {"s": 1, "m": 60, "h": 3600}[unit]


def test_without_the_inhibition_rule_service_crash_looping_would_be_mailed(rig):
    """The inhibition check above can fail: the same two alerts, posted to a second
    Alertmanager whose config lacks the PodCrashLooping -> ServiceCrashLooping rule, leave
    ServiceCrashLooping active (it would be mailed)."""
    config = alertmanager_config(rig)
    kept = [
        r
        for r in config["inhibit_rules"]
        if r.get("source_matchers") != ['alertname="PodCrashLooping"']
    ]
    assert len(kept) == len(config["inhibit_rules"]) - 1, config["inhibit_rules"]
    config["inhibit_rules"] = kept
    # Its mail would land among the real ones: send it nowhere (nothing listens there).
    config["global"]["smtp_smarthost"] = f"127.0.0.1:{free_port()}"
    path = rig.workdir / "alertmanager-broken.yml"
    path.write_text(yaml.safe_dump(config))
    rig.ports["alertmanager-broken"] = free_port()
    url = rig.url("alertmanager-broken")
    rig.spawn(
        "alertmanager-broken",
        [
            str(alertmanager_binary()),
            f"--config.file={path}",
            f"--storage.path={rig.workdir / 'alertmanager-broken-data'}",
            f"--web.listen-address=127.0.0.1:{rig.ports['alertmanager-broken']}",
            "--cluster.listen-address=",
        ],
    ).wait_http(f"{url}/-/ready", ok=lambda r: r.status_code == 200)
    alerts = [
        {k: a[k] for k in ("labels", "annotations", "startsAt", "endsAt", "generatorURL")}
        for name in ("PodCrashLooping", "ServiceCrashLooping")
        for a in rig.alertmanager_alerts(name)
    ]
    assert len(alerts) == 2, alerts
    httpx.post(f"{url}/api/v2/alerts", json=alerts, timeout=10).raise_for_status()

    def states():
        got = httpx.get(f"{url}/api/v2/alerts", timeout=10).json()
        return {a["labels"]["alertname"]: a["status"]["state"] for a in got}

    poll_until(
        lambda: states() == {"PodCrashLooping": "active", "ServiceCrashLooping": "active"},
        "the Alertmanager without the rule to hold both alerts active",
        timeout=30,
        on_timeout=lambda: f"states: {states()}\n{rig.context('alertmanager-broken')}",
    )
