"""k8s/components/kube-prometheus-stack/ proven with the real prometheus-operator.

On the session's control plane (tests/k8s/conftest.py: etcd, kube-apiserver,
controller-manager, scheduler, a kwok node, the whole k8s/ render applied), this module
applies the CRDs of prometheus-operator v0.85.0 (its example/prometheus-operator-crd/,
copied by `scripts/bootstrap.sh k8s`), runs the operator built from the same source
against the API server, and creates in namespace `monitoring` a Prometheus and an
Alertmanager resource as kube-prometheus-stack 77.14.0 renders them with its default
values for a release named `prometheus` (seed 002), read from the chart's templates at
that tag (CHART_TAG below lists the files): ServiceMonitors, PodMonitors and
PrometheusRules selected by `release: prometheus` in every namespace, every
AlertmanagerConfig of every namespace selected (matcher strategy left to the operator's
default, OnNamespace), the chart's default Alertmanager configuration. Then it applies
the render of k8s-overlays/kube-prometheus-stack/ (k8s/ plus the component) and the
seed's Secret alertmanager-gmail-secret, and checks what the operator generates:

- the Prometheus configuration (Secret prometheus-<name>, prometheus.yaml.gz) has a scrape
  job for each of our ServiceMonitors and PodMonitors, and the rules ConfigMap
  (prometheus-<name>-rulefiles-0) every group of prometheus/rules/*.yml;
- the real Prometheus v3.16.0, loaded with that generated configuration, scrapes the real
  frontend and backend (gunicorn on 127.0.0.1) under job="frontend"/"backend", and
  evaluates our rules (every rule healthy, a recording rule computed from the scrapes);
- the Alertmanager configuration generated from our AlertmanagerConfig (Secret
  alertmanager-<name>-generated) passes `amtool check-config` (v0.34.2), routes
  PodCrashLooping of an obs-apps pod (and the chart's own KubePodCrashLooping) to the
  e-mail receiver and an alert of another namespace to the chart's `null`, and carries
  the password of the seed's Secret;
- the operator's governing Service prometheus-operated (what the overlay's ExternalName
  names) exists in `monitoring`, headless, port 9090.

Breakages, each shown to fail a check: a wrong `release` label (the job disappears from
the generated configuration), a wrong port name (the job stays, Prometheus scrapes
nothing), a rule file that the PrometheusRules lack (a group missing from the rules
ConfigMap; also `obs-views --check`, tests/config/test_views.py).

What differs from a cluster, and why: kwok runs no containers, so the operator's
StatefulSets never run; only the Secrets and ConfigMaps it generates are used. In the
generated Prometheus configuration, the test adds kubeconfig_file to each
kubernetes_sd_config (in a cluster: the pod's service account), appends relabelling that
sends the frontend's and backend's discovered endpoints to the processes on 127.0.0.1
(after the operator's own relabelling, so a wrong port name still drops them) and drops
the other jobs' targets, scrapes and evaluates every 2 s instead of 15/30 s, reads the
rule files from a scratch folder, and sends no alerts (Alertmanager is checked on its
own configuration with amtool). As the operator's config-reloader sidecar does in the
pod, $(SHARD) is expanded (to 0: one shard).

Reads CI (CI=true: a missing binary fails instead of skipping).
"""

from __future__ import annotations

import base64
import copy
import gzip
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from obs_tools.common.processes import ManagedProcess
from obs_tools.common.versions import (
    REPO,
    VERSIONS,
    amtool_binary,
    cache_dir,
    prometheus_binary,
)
from obs_tools.localstack.components import service_argv, service_env
from obs_tools.views import prometheus_rule

from tests.k8s import render
from tests.k8s.conftest import require_applied, require_k8s_binaries
from tests.k8s.render import dump, load
from tests.support.kube_cluster import BOOTSTRAP_HINT, KubeCluster
from tests.support.polling import PollTimeout, free_port, poll_until
from tests.support.requirements import unavailable
from tests.support.rig import ProcessRig

pytestmark = [pytest.mark.validate]

OVERLAY = REPO / "k8s-overlays" / "kube-prometheus-stack"
COMPONENT = REPO / "k8s" / "components" / "kube-prometheus-stack"

# THE CHART, AS READ (not from memory): github.com/prometheus-community/helm-charts at the
# tag kube-prometheus-stack-77.14.0, the newest release whose Chart.yaml has appVersion
# v0.85.0 (our PROMETHEUS_OPERATOR_VERSION; 77.0.0 to 77.14.0 all have it, and their
# templates/prometheus/prometheus.yaml, templates/alertmanager/alertmanager.yaml,
# templates/alertmanager/secret.yaml and templates/_helpers.tpl are identical). Files read,
# under charts/kube-prometheus-stack/: Chart.yaml, values.yaml, templates/_helpers.tpl,
# templates/prometheus/prometheus.yaml, templates/prometheus/service.yaml,
# templates/alertmanager/alertmanager.yaml, templates/alertmanager/secret.yaml,
# templates/alertmanager/service.yaml, templates/grafana/configmaps-datasources.yaml,
# templates/prometheus/rules-1.14/kubernetes-apps.yaml; and, for the subcharts that Chart.yaml
# pins, charts/kube-state-metrics/templates/servicemonitor.yaml and _helpers.tpl at
# kube-state-metrics-6.3.0 (same repository), charts/grafana/values.yaml and
# templates/_pod.tpl at grafana-10.0.0 (github.com/grafana/helm-charts).
CHART_TAG = "kube-prometheus-stack-77.14.0"
CHART_NAME = "kube-prometheus-stack"
# The release name seed 002 installs the chart under (`helm install prometheus ...`):
# what the chart's selectors select. The component's value must equal it.
SEED_RELEASE = "prometheus"
# The release's namespace (`-n monitoring`; the chart's namespaceOverride is "").
NAMESPACE = "monitoring"


def chart_fullname(release: str) -> str:
    """templates/_helpers.tpl, "kube-prometheus-stack.fullname" (fullnameOverride and
    nameOverride ""): the release name alone when it contains the chart's name, else
    "<release>-kube-prometheus-stack", truncated to 26 characters, "-" trimmed."""
    name = release if CHART_NAME in release else f"{release}-{CHART_NAME}"
    return name[:26].rstrip("-")


# "prometheus-kube-prometheus" for release `prometheus`; the CR names are
# "kube-prometheus-stack.prometheus.crname" / ".alertmanager.crname" (fullname + suffix,
# cleanPrometheusOperatorObjectNames: false), and the chart's Services
# (templates/prometheus/service.yaml, templates/alertmanager/service.yaml) take the same
# names. The operator adds the governing Services prometheus-operated and
# alertmanager-operated.
PROMETHEUS = f"{chart_fullname(SEED_RELEASE)}-prometheus"
ALERTMANAGER = f"{chart_fullname(SEED_RELEASE)}-alertmanager"
assert (PROMETHEUS, ALERTMANAGER) == (
    "prometheus-kube-prometheus-prometheus", "prometheus-kube-prometheus-alertmanager",
)  # fmt: skip
FIELD_MANAGER = "obs-stack-up"  # the `applied` fixture's: the same objects, one owner
SERVICES = {"frontend": "obs-apps", "backend": "obs-apps"}
# How long the operator may take to regenerate its output after a change (it reconciles
# within seconds; the bound covers a loaded 2-core machine).
RECONCILE_TIMEOUT = 90
INTERVAL = "2s"


def operator_binary() -> Path:
    return cache_dir() / "bin" / f"prometheus-operator-{VERSIONS['PROMETHEUS_OPERATOR_VERSION']}"


def operator_crds() -> Path:
    return cache_dir() / f"prometheus-operator-{VERSIONS['PROMETHEUS_OPERATOR_VERSION']}-crds"


def require_operator() -> None:
    """Skip (fail with CI=true) when the bootstrap has not built the operator."""
    missing = [p for p in (operator_binary(), operator_crds()) if not p.exists()]
    if not missing:
        return
    unavailable(f"not built: {', '.join(map(str, missing))}; {BOOTSTRAP_HINT}")


def release_label() -> str:
    """The one place the component sets it (monitors/kustomization.yaml)."""
    kustomization = yaml.safe_load((COMPONENT / "monitors" / "kustomization.yaml").read_text())
    (pairs,) = [entry["pairs"] for entry in kustomization["labels"] if "release" in entry["pairs"]]
    return pairs["release"]


# --- the chart's side: what kube-prometheus-stack creates by default ----------------------


def chart_objects(release: str) -> list[dict]:
    """The Prometheus and Alertmanager resources that CHART_TAG's templates render with
    the chart's default values, and its default Alertmanager configuration Secret.

    templates/prometheus/prometheus.yaml: with the values' *SelectorNilUsesHelmValues:
    true and *Selector: {}, serviceMonitorSelector, podMonitorSelector, ruleSelector,
    probeSelector and scrapeConfigSelector are `matchLabels: {release: "<release>"}`;
    every *NamespaceSelector is {} (values.yaml: {}), i.e. every namespace;
    alerting.alertmanagers names the chart's Alertmanager Service, port
    alertmanagerSpec.portName (http-web), pathPrefix routePrefix (/), apiVersion v2.
    templates/alertmanager/alertmanager.yaml: alertmanagerConfigSelector {} (values {}),
    alertmanagerConfigNamespaceSelector {} (values {}: every namespace; nil would mean
    the Alertmanager's own), and no alertmanagerConfigMatcherStrategy (values {} renders
    nothing), so the operator's default applies: OnNamespace (the v0.85.0 CRD's default;
    pkg/alertmanager/amcfg.go getEnforcer: a `namespace` matcher on each first-level route
    of an AlertmanagerConfig, and continue: true).
    templates/alertmanager/secret.yaml: Secret alertmanager-<Alertmanager name>, key
    alertmanager.yaml = toYaml of values.yaml's alertmanager.config.

    What differs, on purpose: `version` is that of the binaries this test runs
    (Prometheus, amtool), not the chart's images (prometheus v3.6.0, alertmanager
    v0.28.1, values.yaml); the image, pod, storage and scheduling fields are left out
    (kwok runs no pod; they do not change what the operator generates)."""
    selector = {"matchLabels": {"release": release}}
    fullname = chart_fullname(release)
    prometheus, alertmanager = f"{fullname}-prometheus", f"{fullname}-alertmanager"
    # values.yaml, alertmanager.config, as written there.
    am_config = {
        "global": {"resolve_timeout": "5m"},
        "inhibit_rules": [
            {
                "source_matchers": ["severity = critical"],
                "target_matchers": ["severity =~ warning|info"],
                "equal": ["namespace", "alertname"],
            },
            {
                "source_matchers": ["severity = warning"],
                "target_matchers": ["severity = info"],
                "equal": ["namespace", "alertname"],
            },
            {
                "source_matchers": ["alertname = InfoInhibitor"],
                "target_matchers": ["severity = info"],
                "equal": ["namespace"],
            },
            {"target_matchers": ["alertname = InfoInhibitor"]},
        ],
        "route": {
            "group_by": ["namespace"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "12h",
            "receiver": "null",
            "routes": [{"receiver": "null", "matchers": ['alertname = "Watchdog"']}],
        },
        "receivers": [{"name": "null"}],
        "templates": ["/etc/alertmanager/config/*.tmpl"],
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "Prometheus",
            "metadata": {"name": prometheus, "namespace": NAMESPACE},
            "spec": {
                "version": VERSIONS["PROMETHEUS_RELEASE"],
                "automountServiceAccountToken": True,
                "alerting": {
                    "alertmanagers": [
                        {
                            "namespace": NAMESPACE,
                            "name": alertmanager,
                            "port": "http-web",
                            "pathPrefix": "/",
                            "apiVersion": "v2",
                        }
                    ]
                },
                "externalUrl": f"http://{prometheus}.{NAMESPACE}:9090",
                "paused": False,
                "replicas": 1,
                "shards": 1,
                "logLevel": "info",
                "logFormat": "logfmt",
                "listenLocal": False,
                "enableOTLPReceiver": False,
                "enableAdminAPI": False,
                "retention": "10d",
                "walCompression": True,
                "routePrefix": "/",
                "serviceAccountName": prometheus,
                "serviceMonitorSelector": selector,
                "serviceMonitorNamespaceSelector": {},
                "podMonitorSelector": selector,
                "podMonitorNamespaceSelector": {},
                "probeSelector": selector,
                "probeNamespaceSelector": {},
                "ruleNamespaceSelector": {},
                "ruleSelector": selector,
                "scrapeConfigSelector": selector,
                "scrapeConfigNamespaceSelector": {},
                "portName": "http-web",
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"alertmanager-{alertmanager}", "namespace": NAMESPACE},
            "stringData": {"alertmanager.yaml": yaml.safe_dump(am_config)},
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "Alertmanager",
            "metadata": {"name": alertmanager, "namespace": NAMESPACE},
            "spec": {
                "version": VERSIONS["ALERTMANAGER_VERSION"],
                "replicas": 1,
                "listenLocal": False,
                "serviceAccountName": alertmanager,
                "automountServiceAccountToken": True,
                "externalUrl": f"http://{alertmanager}.{NAMESPACE}:9093",
                "paused": False,
                "logFormat": "logfmt",
                "logLevel": "info",
                "retention": "120h",
                "alertmanagerConfigSelector": {},
                "alertmanagerConfigNamespaceSelector": {},
                "routePrefix": "/",
                "portName": "http-web",
            },
        },
    ]


# --- the component's side -----------------------------------------------------------------


def overlay_docs(cluster: KubeCluster) -> list[dict]:
    """`kubectl kustomize k8s-overlays/kube-prometheus-stack` with the pinned kubectl."""
    return load(cluster.kubectl("kustomize", str(OVERLAY)).stdout)


def component_objects(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]


def gmail_secret(namespace: str) -> dict:
    """Seed 002's Secret (step 5), in the AlertmanagerConfig's namespace."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "alertmanager-gmail-secret", "namespace": namespace},
        "type": "Opaque",
        "stringData": {"smtp_pass": GMAIL_TEST_PASSWORD},
    }


# A throwaway value, looked for in the generated configuration.
GMAIL_TEST_PASSWORD = "obs-test-app-password-0000"


def expected_jobs(docs: list[dict]) -> set[str]:
    """The operator's job names: serviceMonitor/<ns>/<name>/<i>, podMonitor/<ns>/<name>/<i>."""
    jobs = set()
    for doc in docs:
        kind = {"ServiceMonitor": "serviceMonitor", "PodMonitor": "podMonitor"}.get(doc["kind"])
        if not kind:
            continue
        endpoints = doc["spec"].get("endpoints") or doc["spec"].get("podMetricsEndpoints")
        meta = doc["metadata"]
        jobs |= {f"{kind}/{meta['namespace']}/{meta['name']}/{i}" for i in range(len(endpoints))}
    return jobs


def expected_groups(rules_dir: Path = prometheus_rule.RULES_DIR) -> set[str]:
    return {
        group["name"]
        for path in prometheus_rule.rule_files(rules_dir)
        for group in yaml.safe_load(path.read_text())["groups"]
    }


# --- the operator's output ----------------------------------------------------------------


@dataclass
class Generated:
    prometheus: dict | None  # the parsed prometheus.yaml.gz
    rule_files: dict[str, str]  # the rules ConfigMap's files
    alertmanager: str | None  # alertmanager.yaml of the generated Secret


def _secret_file(cluster: KubeCluster, name: str, key: str) -> bytes | None:
    result = cluster.kubectl("get", "secret", name, "-n", NAMESPACE, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    data = yaml.safe_load(result.stdout).get("data") or {}
    return gzip.decompress(base64.b64decode(data[key])) if key in data else None


def generated(cluster: KubeCluster) -> Generated:
    config = _secret_file(cluster, f"prometheus-{PROMETHEUS}", "prometheus.yaml.gz")
    rules = cluster.kubectl(
        "get", "configmap", f"prometheus-{PROMETHEUS}-rulefiles-0", "-n", NAMESPACE,
        "-o", "json", check=False,
    )  # fmt: skip
    am = _secret_file(cluster, f"alertmanager-{ALERTMANAGER}-generated", "alertmanager.yaml.gz")
    return Generated(
        prometheus=yaml.safe_load(config) if config else None,
        rule_files=(yaml.safe_load(rules.stdout).get("data") or {})
        if rules.returncode == 0
        else {},
        alertmanager=am.decode() if am else None,
    )


def generated_groups(output: Generated) -> set[str]:
    return {
        group["name"]
        for text in output.rule_files.values()
        for group in (yaml.safe_load(text) or {}).get("groups", [])
    }


def config_problems(output: Generated, jobs: set[str], groups: set[str]) -> list[str]:
    """What the generated Prometheus configuration lacks; empty when it has it all."""
    if output.prometheus is None:
        return [f"no Secret prometheus-{PROMETHEUS} with prometheus.yaml.gz yet"]
    have_jobs = {job["job_name"] for job in output.prometheus.get("scrape_configs") or []}
    problems = [f"scrape job {job} missing" for job in sorted(jobs - have_jobs)]
    have_groups = generated_groups(output)
    problems += [f"rule group {group} missing" for group in sorted(groups - have_groups)]
    if not output.prometheus.get("rule_files"):
        problems.append("the generated configuration loads no rule files")
    return problems


# --- the rig: the operator, the services, Prometheus --------------------------------------


@dataclass
class Rig(ProcessRig):
    docs: list[dict] = field(default_factory=list)

    def apply(self, docs: list[dict]) -> None:
        self.cluster.kubectl(
            "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts",
            "-f", "-", stdin=dump(docs),
        )  # fmt: skip

    def wait_generated(self, want, description: str) -> Generated:
        """Poll the operator's output until want(output) is truthy."""

        def ready() -> Generated | None:
            out = generated(self.cluster)
            return out if want(out) else None

        return poll_until(
            ready,
            f"prometheus-operator: {description}",
            timeout=RECONCILE_TIMEOUT,
            interval=1.0,
            on_timeout=self.explain,
        )

    def explain(self) -> str:
        """What the operator has generated so far, against what the component asks for,
        and the operator's last log lines."""
        out = generated(self.cluster)
        problems = config_problems(out, expected_jobs(self.docs), expected_groups())
        receivers = [
            r["name"] for r in yaml.safe_load(out.alertmanager or "{}").get("receivers", [])
        ]
        return "\n".join(
            [
                f"generated Prometheus configuration: {problems or 'complete'}",
                f"generated Alertmanager receivers: {receivers}",
                self.context("prometheus-operator"),
            ]
        )


def operator_argv(rig: Rig) -> list[str]:
    """The operator out of cluster: it has no --kubeconfig, only the API server address
    and a client certificate (the control plane's admin)."""
    pki = rig.cluster.pki
    return [
        str(operator_binary()),
        f"--apiserver={rig.cluster.server}",
        f"--ca-file={pki / 'ca.crt'}",
        f"--cert-file={pki / 'admin.crt'}",
        f"--key-file={pki / 'admin.key'}",
        f"--web.listen-address=127.0.0.1:{rig.ports['operator']}",
        "--log-level=info",
    ]


def start_service(rig: Rig, service: str) -> None:
    env = service_env(service, OTEL_TRACES_EXPORTER="none")
    rig.spawn(service, service_argv(service, rig.ports[service]), env=env, cwd=REPO).wait_http(
        f"{rig.url(service)}/metrics", timeout=60, ok=lambda r: r.status_code == 200
    )


def prometheus_config(rig: Rig, output: Generated, rules_dir: Path) -> dict:
    """The operator's configuration with the changes the module docstring lists, after
    what the operator's config-reloader sidecar does in the pod: expand $(VAR) from its
    environment (SHARD, the pod's shard number, is 0 with one shard; the relabelling
    that keeps a shard's targets reads it)."""
    reloader_env = {"SHARD": "0", "POD_NAME": f"prometheus-{PROMETHEUS}-0"}
    text = re.sub(r"\$\((\w+)\)", lambda m: reloader_env[m[1]], yaml.safe_dump(output.prometheus))
    config = yaml.safe_load(text)
    config["global"].update(
        scrape_interval=INTERVAL, scrape_timeout=INTERVAL, evaluation_interval=INTERVAL
    )
    config.pop("alerting", None)
    rules_dir.mkdir(parents=True, exist_ok=True)
    for old in rules_dir.glob("*"):
        old.unlink()
    for name, text in output.rule_files.items():
        (rules_dir / name).write_text(text)
    config["rule_files"] = [str(rules_dir / "*.yaml")]
    targets = {f"serviceMonitor/{ns}/{name}/0": name for name, ns in SERVICES.items()}
    for job in config.get("scrape_configs") or []:
        job["scrape_interval"] = INTERVAL
        job.pop("scrape_timeout", None)
        for sd in job.get("kubernetes_sd_configs", []):
            sd["kubeconfig_file"] = str(rig.cluster.kubeconfig)
        redirect = []
        if job["job_name"] in targets:
            redirect = [
                {"source_labels": ["__address__"], "target_label": "instance"},
                {
                    "target_label": "__address__",
                    "replacement": f"127.0.0.1:{rig.ports[targets[job['job_name']]]}",
                },
            ]
        job["relabel_configs"] = [
            *(job.get("relabel_configs") or []),
            *redirect,
            {"source_labels": ["__address__"], "regex": r"127\.0\.0\.1:\d+", "action": "keep"},
        ]
    return config


@dataclass
class RunningPrometheus:
    url: str
    process: ManagedProcess

    def get(self, path: str, **params) -> dict:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()["data"]


@pytest.fixture(scope="module")
def rig(kube_cluster, applied, tmp_path_factory) -> Iterator[Rig]:
    require_k8s_binaries(["kubectl", "prometheus", "amtool"])
    require_operator()
    cluster = require_applied(applied)
    workdir = tmp_path_factory.mktemp("kube-prometheus-stack")
    rig = Rig(workdir, cluster, docs=overlay_docs(cluster))
    rig.logs.mkdir(parents=True, exist_ok=True)
    for name in ("operator", *SERVICES, "prometheus"):
        rig.ports[name] = free_port()
    try:
        # CRDs are too big for client-side apply's last-applied annotation.
        cluster.kubectl("apply", "--server-side", "-f", str(operator_crds()), timeout=180)
        cluster.kubectl(
            "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", timeout=90
        )
        operator = rig.spawn("prometheus-operator", operator_argv(rig))
        operator.wait_http(f"{rig.url('operator')}/healthz", timeout=60)
        rig.apply(chart_objects(SEED_RELEASE))
        rig.apply([gmail_secret("obs-apps")])
        # The whole overlay: the Services' `metrics` ports and the labelled Grafana
        # ConfigMaps are k8s/'s objects, the rest the component's.
        rig.apply(rig.docs)
        for service in SERVICES:
            start_service(rig, service)
        yield rig
    finally:
        # Leave the session's cluster as the other tests expect it: the component's
        # objects and the chart's namespace gone (deleted while the operator still runs,
        # so that it removes what it made), k8s/'s objects as k8s/ renders them.
        cluster.kubectl("delete", "--wait=false", "--ignore-not-found", "-f", "-",
                        stdin=dump(component_objects(rig.docs)), check=False)  # fmt: skip
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", "--ignore-not-found",
                        check=False)  # fmt: skip
        cluster.kubectl("wait", "--for=delete", f"namespace/{NAMESPACE}", "--timeout=60s",
                        timeout=90, check=False)  # fmt: skip
        cluster.kubectl("delete", "secret", "alertmanager-gmail-secret", "-n", "obs-apps",
                        "--ignore-not-found", check=False)  # fmt: skip
        cluster.kubectl(
            "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts",
            "-f", "-", stdin=cluster.kubectl("kustomize", str(REPO / "k8s")).stdout,
            check=False,
        )  # fmt: skip
        rig.stop()


def start_prometheus(rig: Rig, output: Generated, name: str) -> RunningPrometheus:
    config_path = rig.workdir / f"{name}.yml"
    config_path.write_text(yaml.safe_dump(prometheus_config(rig, output, rig.workdir / name)))
    port = free_port()
    process = rig.spawn(
        name,
        [
            str(prometheus_binary()),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={rig.workdir / (name + '-data')}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
    )
    process.wait_http(f"http://127.0.0.1:{port}/-/ready", ok=lambda r: r.status_code == 200)
    return RunningPrometheus(f"http://127.0.0.1:{port}", process)


def stop_prometheus(rig: Rig, running: RunningPrometheus) -> None:
    running.process.stop()
    rig.processes.pop(running.process.name, None)


def scrape_state(prom: RunningPrometheus) -> dict[str, dict]:
    """Per service: its active targets' health, and how many endpoints of its Service
    the operator's relabelling dropped."""
    data = prom.get("/api/v1/targets")
    state = {}
    for service, namespace in SERVICES.items():
        job = f"serviceMonitor/{namespace}/{service}/0"
        active = [t for t in data["activeTargets"] if t["scrapePool"] == job]
        dropped = [
            t
            for t in data["droppedTargets"]
            if t["discoveredLabels"].get("__meta_kubernetes_service_name") == service
            and t["discoveredLabels"].get("job") == job
        ]
        state[service] = {
            "up": [t for t in active if t["health"] == "up" and t["labels"]["job"] == service],
            "active": active,
            "dropped": len(dropped),
        }
    return state


def summary(state: dict[str, dict]) -> str:
    """scrape_state for a failure message: counts, and each active target's health."""
    return "; ".join(
        f"{service}: {len(v['up'])} up, active "
        f"{[(t['scrapeUrl'], t['health'], t.get('lastError', '')) for t in v['active']]}, "
        f"{v['dropped']} endpoints dropped by relabelling"
        for service, v in state.items()
    )


def state_if(prom: RunningPrometheus, want) -> dict | None:
    state = scrape_state(prom)
    return state if want(state) else None


# --- the checks ---------------------------------------------------------------------------


def test_default_render_has_no_component_objects(render_docs):
    """Opt-in: `kubectl kustomize k8s/` (what `make up` applies) has none of them."""
    kinds = {d["kind"] for d in render_docs if d["apiVersion"].startswith("monitoring.coreos")}
    assert kinds == set()
    labelled = [
        d["metadata"]["name"]
        for d in render_docs
        if {"grafana_dashboard", "grafana_datasource"} & set(d["metadata"].get("labels", {}))
    ]
    assert labelled == []


def test_release_label_is_set_once_and_carried_by_every_selected_object(rig):
    release = release_label()
    assert release == SEED_RELEASE, "the chart's selectors (seed 002's release) would skip them"
    objects = component_objects(rig.docs)
    assert {d["kind"] for d in objects} == {
        "ServiceMonitor", "PodMonitor", "PrometheusRule", "AlertmanagerConfig",
    }  # fmt: skip
    unlabelled = [
        f"{d['kind']} {d['metadata']['name']}"
        for d in objects
        if d["metadata"].get("labels", {}).get("release") != release
    ]
    assert unlabelled == []
    # Written in exactly one file of the component.
    files = [
        p.relative_to(REPO).as_posix()
        for p in COMPONENT.rglob("*.yaml")
        if re.search(r"^\s*release:", p.read_text(), re.M)
    ]
    assert files == ["k8s/components/kube-prometheus-stack/monitors/kustomization.yaml"]


# What the chart replaces (k8s-overlays/kube-prometheus-stack/ removes ours).
REPLACED = {"prometheus", "alertmanager", "grafana", "kube-state-metrics"}


def test_overlay_replaces_our_monitoring_and_keeps_the_rest_wired(rig, render_docs):
    def deployments(docs):
        return {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}

    assert deployments(render_docs) - deployments(rig.docs) == REPLACED
    assert deployments(render_docs) >= REPLACED
    # Every address the remaining configuration names is a Service port of the overlay:
    # Grafana's Prometheus datasource reaches the chart's Prometheus through the
    # ExternalName Service `prometheus`; every referenced Secret/ConfigMap key exists.
    assert render.check_addresses(rig.docs) == []
    assert render.check_references(rig.docs) == []
    (service,) = [
        d for d in rig.docs if d["kind"] == "Service" and d["metadata"]["name"] == "prometheus"
    ]
    assert service["spec"]["externalName"] == f"prometheus-operated.{NAMESPACE}.svc.cluster.local"
    assert [p["port"] for p in service["spec"]["ports"]] == [9090]
    # ... and that name is what the operator creates for the chart's Prometheus: the
    # governing Service prometheus-operated (v0.85.0 pkg/prometheus/server/statefulset.go,
    # governingServiceName; pkg/prometheus/common.go BuildStatefulSetService: headless,
    # port 9090 named after spec.portName, the chart's http-web).
    operated = poll_until(
        lambda: _service_ports(rig.cluster, "prometheus-operated"),
        f"prometheus-operator: Service {NAMESPACE}/prometheus-operated",
        timeout=RECONCILE_TIMEOUT,
        on_timeout=rig.explain,
    )
    # Headless (clusterIP None): the ExternalName's DNS name answers the pods' addresses.
    assert operated == ("None", {"http-web": 9090})


def _service_ports(cluster: KubeCluster, name: str) -> tuple[str, dict[str, int]] | None:
    """(clusterIP, {port name: port}) of a Service in NAMESPACE, None while it is absent."""
    result = cluster.kubectl("get", "service", name, "-n", NAMESPACE, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    spec = yaml.safe_load(result.stdout)["spec"]
    return spec.get("clusterIP"), {p["name"]: p["port"] for p in spec["ports"]}


def test_grafana_configmaps_are_labelled_for_the_chart_sidecar(rig):
    by_name = {
        d["metadata"]["name"].rsplit("-", 1)[0]: d
        for d in rig.docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("grafana-")
    }
    assert by_name["grafana-dashboards"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert by_name["grafana-datasources"]["metadata"]["labels"]["grafana_datasource"] == "1"
    dashboards = sorted(p.name for p in (REPO / "grafana" / "dashboards").glob("*.json"))
    assert sorted(by_name["grafana-dashboards"]["data"]) == dashboards


def test_operator_generates_our_scrape_jobs_and_rule_groups(rig):
    jobs, groups = expected_jobs(rig.docs), expected_groups()
    assert len(jobs) == 5 and len(groups) >= 5
    try:
        rig.wait_generated(lambda out: not config_problems(out, jobs, groups), "jobs and rules")
    except PollTimeout as exc:
        problems = config_problems(generated(rig.cluster), jobs, groups)
        pytest.fail(f"{exc}\nstill missing: {problems}", pytrace=False)


def test_real_prometheus_scrapes_the_services_and_evaluates_our_rules(rig):
    jobs, groups = expected_jobs(rig.docs), expected_groups()
    output = rig.wait_generated(lambda out: not config_problems(out, jobs, groups), "ready")
    prom = start_prometheus(rig, output, "prometheus")
    try:
        state = poll_until(
            lambda: state_if(prom, lambda s: all(v["up"] for v in s.values())),
            "Prometheus (operator config): frontend and backend targets up",
            timeout=60,
            on_timeout=lambda: f"{summary(scrape_state(prom))}\n{rig.context('prometheus')}",
        )
        # Every pod of each Deployment (replicas) is one endpoint, sent to the process.
        assert all(t["labels"]["job"] == s for s, v in state.items() for t in v["up"])
        # Traffic, so that a recording rule of recording.yml has something to compute.
        for _ in range(20):
            httpx.get(f"{rig.url('frontend')}/healthz", timeout=5)

        def evaluated():
            loaded = {g["name"]: g for g in prom.get("/api/v1/rules")["groups"]}
            if set(loaded) != groups:
                return None
            rules = [r for g in loaded.values() for r in g["rules"]]
            if any(r["health"] != "ok" for r in rules):
                raise AssertionError(
                    f"unhealthy rules: {[r for r in rules if r['health'] != 'ok']}"
                )
            fresh = all(not r["lastEvaluation"].startswith("0001-") for r in rules)
            return loaded if fresh else None

        loaded = poll_until(evaluated, "Prometheus: our rule groups evaluated", timeout=60,
                            on_timeout=lambda: rig.context("prometheus"))  # fmt: skip
        assert set(loaded) == groups
        rate = poll_until(
            lambda: prom.get("/api/v1/query", query='job:flask_requests:rate5m{job="frontend"}')[
                "result"
            ],
            "Prometheus: job:flask_requests:rate5m{job=frontend} computed from the scrapes",
            timeout=60,
            on_timeout=lambda: rig.context("prometheus"),
        )
        assert float(rate[0]["value"][1]) >= 0
        watchdog = prom.get("/api/v1/alerts")["alerts"]
        assert any(a["labels"]["alertname"] == "Watchdog" for a in watchdog), watchdog
    finally:
        stop_prometheus(rig, prom)


def _amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(amtool_binary()), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_generated_alertmanager_config_mails_the_crash_loop(rig):
    def has_ours(out: Generated) -> bool:
        return bool(out.alertmanager) and "obs-apps/obs-stack-email/email" in out.alertmanager

    output = rig.wait_generated(has_ours, "Alertmanager configuration with our receiver")
    path = rig.workdir / "alertmanager.yaml"
    path.write_text(output.alertmanager)
    check = _amtool("check-config", str(path))
    assert check.returncode == 0, f"amtool check-config:\n{check.stdout}{check.stderr}"
    routed = _amtool(
        "config", "routes", "test", f"--config.file={path}", "--verify.receivers="
        "obs-apps/obs-stack-email/email", "alertname=PodCrashLooping", "namespace=obs-apps",
        "pod=backend-7d9f8b6c5-x2x4q", "container=backend", "service=backend",
        "severity=critical",
    )  # fmt: skip
    assert routed.returncode == 0, (
        f"PodCrashLooping is not routed to the e-mail:\n{routed.stdout}{routed.stderr}"
    )
    # The operator's default matcher strategy (OnNamespace), as docs/kubernetes.md says:
    # an alert of another namespace goes to the chart's default receiver, not ours.
    elsewhere = _amtool(
        "config", "routes", "test", f"--config.file={path}", "--verify.receivers=null",
        "alertname=TargetDown", "namespace=obs-monitoring", "service=jaeger",
    )  # fmt: skip
    assert elsewhere.returncode == 0, f"{elsewhere.stdout}{elsewhere.stderr}"
    # The namespace matcher is all the route has: the chart's own rules' alerts about
    # obs-apps objects are mailed too, e.g. KubePodCrashLooping (CHART_TAG's
    # templates/prometheus/rules-1.14/kubernetes-apps.yaml: severity warning, on
    # kube-state-metrics' series, whose namespace is the pod's: the subchart's
    # ServiceMonitor has honorLabels, values.yaml kube-state-metrics.prometheus.monitor).
    chart_alert = _amtool(
        "config", "routes", "test", f"--config.file={path}", "--verify.receivers="
        "obs-apps/obs-stack-email/email", "alertname=KubePodCrashLooping",
        "namespace=obs-apps", "job=kube-state-metrics", "severity=warning",
    )  # fmt: skip
    assert chart_alert.returncode == 0, f"{chart_alert.stdout}{chart_alert.stderr}"
    config = yaml.safe_load(output.alertmanager)
    (receiver,) = [r for r in config["receivers"] if r["name"] == "obs-apps/obs-stack-email/email"]
    (email,) = receiver["email_configs"]
    assert email["auth_password"] == GMAIL_TEST_PASSWORD
    assert (email["smarthost"], email["require_tls"]) == ("smtp.gmail.com:587", True)


# --- breakages ----------------------------------------------------------------------------


def _restore(rig: Rig) -> None:
    rig.apply(rig.docs)
    jobs, groups = expected_jobs(rig.docs), expected_groups()
    rig.wait_generated(lambda out: not config_problems(out, jobs, groups), "restored")


def test_wrong_release_label_drops_the_scrape_job(rig):
    broken = copy.deepcopy(rig.docs)
    for doc in broken:
        if doc["kind"] == "ServiceMonitor" and doc["metadata"]["name"] == "frontend":
            doc["metadata"]["labels"]["release"] = "not-the-release"
    try:
        rig.apply(broken)
        jobs, groups = expected_jobs(rig.docs), expected_groups()
        out = rig.wait_generated(
            lambda out: config_problems(out, jobs, groups), "frontend's job dropped"
        )
        assert config_problems(out, jobs, groups) == [
            "scrape job serviceMonitor/obs-apps/frontend/0 missing"
        ]
    finally:
        _restore(rig)


def test_wrong_port_name_leaves_the_service_unscraped(rig):
    broken = copy.deepcopy(rig.docs)
    for doc in broken:
        if doc["kind"] == "Service" and doc["metadata"]["name"] == "frontend":
            for port in doc["spec"]["ports"]:
                if port["name"] == "metrics":
                    port["name"] = "http-metrics"
    jobs, groups = expected_jobs(rig.docs), expected_groups()
    prom = None
    try:
        rig.apply(broken)
        # The generated configuration is complete: the job is there, it finds nothing.
        output = rig.wait_generated(lambda out: not config_problems(out, jobs, groups), "complete")
        prom = start_prometheus(rig, output, "prometheus-wrong-port")
        state = poll_until(
            lambda: state_if(prom, lambda s: s["frontend"]["dropped"] and s["backend"]["up"]),
            "Prometheus: frontend's endpoints discovered (and dropped), backend up",
            timeout=60,
            on_timeout=lambda: (
                f"{summary(scrape_state(prom))}\n{rig.context('prometheus-wrong-port')}"
            ),
        )
        assert state["frontend"]["active"] == [], state["frontend"]
    finally:
        if prom:
            stop_prometheus(rig, prom)
        # The Service as k8s/ renders it (its port named `metrics` again).
        rig.apply(rig.docs)


def test_rule_file_missing_from_the_prometheusrules_fails(rig, tmp_path):
    """A rule file added to prometheus/rules/ without `make views`: the group is not in
    what the operator loads, and `obs-views --check` reports the stale file."""
    rules = tmp_path / "rules"
    rules.mkdir()
    for path in prometheus_rule.rule_files():
        (rules / path.name).write_text(path.read_text())
    extra = {"groups": [{"name": "obs-extra", "rules": [{"record": "obs:extra", "expr": "1"}]}]}
    (rules / "extra.yml").write_text(yaml.safe_dump(extra))
    jobs = expected_jobs(rig.docs)
    output = rig.wait_generated(
        lambda out: not config_problems(out, jobs, expected_groups()), "complete"
    )
    assert config_problems(output, jobs, expected_groups(rules)) == ["rule group obs-extra missing"]
    committed = prometheus_rule.OUTPUT.read_text()
    assert prometheus_rule.render(rules) != committed
    assert prometheus_rule.render() == committed, "run `make views`"
