"""k8s-overlays/production/ (issue #20): three Elasticsearch nodes, two Jaegers, HPAs, PDBs
and spread, proven on a real control plane with three kwok nodes.

Fast (no marker; kubectl renders, openssl signs): the overlay's copies of base files differ
from them only as listed; the transport certificates of make-transport-certs.sh are what
Elasticsearch needs; the requests stated in kustomization.yaml and docs/production.md are
what tools/obs_tools/deploy/resources.py computes from the render; the render passes the
cross-reference checks of tests/k8s/render.py.

validate (one control plane for the module, three kwok nodes of 4 CPUs and 8 GiB): the
render applied server-side with Pod Security enforced and warnings as errors; every
workload rolls out, the replicas of each multi-replica one on distinct nodes; `kubectl
drain` of one node (the eviction API: the real API server enforces the PDBs) succeeds and
no PDB's workload is ever below its budget (a watch of every pod, checked after each
event); a second drain, while the first node is still cordoned and the evicted
Elasticsearch pod Pending (its anti-affinity forbids the two nodes left that already have
one), is refused, and what it did evict is ready on the last node (the spread's
nodeTaintsPolicy Honor). kwok runs no container: nothing here shows that Elasticsearch
forms a cluster, only that Kubernetes schedules, spreads and protects the pods as written.

Reads CI (a missing binary or openssl fails instead of skipping).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml
from obs_tools.common.paths import REPO
from obs_tools.common.versions import k8s_binary
from obs_tools.deploy.resources import quantity, render_needs

from tests.k8s import render
from tests.k8s.conftest import apply_namespaces_and_secrets, require_k8s_binaries
from tests.k8s.render import by_kind, find, kustomize, load
from tests.support.kube_cluster import CONTROL_PLANE, KubeCluster, NodeCapacity
from tests.support.polling import poll_until
from tests.support.requirements import unavailable

OVERLAY = REPO / "k8s-overlays" / "production"
CERTS_SCRIPT = OVERLAY / "make-transport-certs.sh"
DOCS_PAGE = REPO / "docs" / "production.md"
NODES = 3
# The message of the API server's eviction when a PDB has no disruption left
# (pkg/registry/core/pod/storage/eviction.go), which kubectl drain prints.
PDB_REFUSAL = "Cannot evict pod as it would violate the pod's disruption budget"


@pytest.fixture(scope="module")
def production_render() -> str:
    return kustomize(OVERLAY)


@pytest.fixture(scope="module")
def docs(production_render) -> list[dict]:
    return load(production_render)


# --- the transport certificates -------------------------------------------------------------


def openssl(*args: str) -> str:
    if not shutil.which("openssl"):
        unavailable("openssl is not installed (Debian: apt-get install openssl)")
    result = subprocess.run(
        ["openssl", *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, f"openssl {' '.join(args)}: {result.stderr}"
    return result.stdout


def test_the_certificate_script_makes_a_ca_and_a_node_certificate_it_signed(tmp_path):
    out = tmp_path / "certs"
    result = subprocess.run(
        [str(CERTS_SCRIPT), str(out)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    assert (out / "tls.key").stat().st_mode & 0o777 == 0o600

    # Signed by the CA (and only a CA may sign: basicConstraints CA:TRUE on it).
    assert openssl("verify", "-CAfile", str(out / "ca.crt"), str(out / "tls.crt")).strip() == (
        f"{out / 'tls.crt'}: OK"
    )
    ca_ext = openssl("x509", "-in", str(out / "ca.crt"), "-noout", "-ext", "basicConstraints")
    assert "CA:TRUE" in ca_ext
    node_ext = openssl(
        "x509", "-in", str(out / "tls.crt"), "-noout",
        "-ext", "subjectAltName,extendedKeyUsage,basicConstraints",
    )  # fmt: skip
    assert "CA:FALSE" in node_ext
    # A transport connection is both: the node that dials presents it as a client.
    assert "TLS Web Server Authentication" in node_ext
    assert "TLS Web Client Authentication" in node_ext
    sans = set(re.findall(r"(?:DNS|IP Address):[^,\s]+", node_ext))
    assert {
        "DNS:*.elasticsearch-nodes.obs-monitoring.svc",
        "DNS:*.elasticsearch-nodes.obs-monitoring.svc.cluster.local",
        "DNS:elasticsearch-0.elasticsearch-nodes.obs-monitoring.svc",
        "DNS:elasticsearch-2.elasticsearch-nodes.obs-monitoring.svc.cluster.local",
        "DNS:localhost",
        "IP Address:127.0.0.1",
    } <= sans, node_ext

    # The key is the certificate's.
    cert_key = openssl("x509", "-in", str(out / "tls.crt"), "-noout", "-pubkey")
    key = openssl("pkey", "-in", str(out / "tls.key"), "-pubout")
    assert cert_key == key


def test_the_certificate_script_wants_exactly_one_directory(tmp_path):
    for argv in ([], ["--apply"], [str(tmp_path / "a"), str(tmp_path / "b")]):
        result = subprocess.run(
            [str(CERTS_SCRIPT), *argv], capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 2, (argv, result.stderr)
        assert "usage:" in result.stderr


# --- the overlay's copies of base files ----------------------------------------------------


def test_elasticsearch_settings_change_only_discovery_transport_tls_and_watermarks():
    base = yaml.safe_load((REPO / "k8s/monitoring/files/elasticsearch.yml").read_text())
    prod = yaml.safe_load((OVERLAY / "elasticsearch.yml").read_text())
    changed = {k: prod[k] for k in prod if base.get(k, object()) != prod[k]}
    removed = sorted(set(base) - set(prod))
    assert removed == ["discovery.type"]
    assert changed == {
        "discovery.seed_hosts": "elasticsearch-nodes.obs-monitoring.svc:9300",
        "cluster.initial_master_nodes": "elasticsearch-0,elasticsearch-1,elasticsearch-2",
        "network.publish_host": "${POD_IP}",
        # Exactly the settings of the decision in issue #20 (and the other test that runs
        # three nodes with them on loopback).
        "xpack.security.transport.ssl.enabled": True,
        "xpack.security.transport.ssl.verification_mode": "certificate",
        "xpack.security.transport.ssl.certificate": "certs/transport/tls.crt",
        "xpack.security.transport.ssl.key": "certs/transport/tls.key",
        "xpack.security.transport.ssl.certificate_authorities": "certs/transport/ca.crt",
        "cluster.routing.allocation.disk.threshold_enabled": True,
    }


def test_the_index_template_differs_only_in_its_replicas():
    base = json.loads((REPO / "fluent-bit/index-template.json").read_text())
    prod = json.loads((OVERLAY / "index-template.json").read_text())
    assert prod["template"]["settings"]["number_of_replicas"] == 1
    prod["template"]["settings"]["number_of_replicas"] = base["template"]["settings"][
        "number_of_replicas"
    ]
    assert prod == base


def without_retention(text: str) -> str:
    """prometheus.yml without its retention block: from its comment to rule_files."""
    start, end = text.index("# Retention in the config file"), text.index("\nrule_files:")
    return text[:start] + text[end:]


def test_prometheus_config_is_the_base_but_for_its_retention():
    base = (REPO / "prometheus/prometheus-kubernetes.yml").read_text()
    prod = (OVERLAY / "prometheus.yml").read_text()
    # Text, comments included: a change to the base shows here until it is copied.
    assert without_retention(prod) == without_retention(base)
    assert yaml.safe_load(prod)["storage"] == {
        "tsdb": {"retention": {"time": "15d", "size": "16GB"}}
    }


def test_prometheus_retention_and_a_compaction_fit_its_volume(docs):
    config_map = next(
        d
        for d in by_kind(docs, "ConfigMap")
        if d["metadata"]["name"].startswith("prometheus-config")
    )
    size = yaml.safe_load(config_map["data"]["prometheus.yml"])["storage"]["tsdb"]["retention"]
    # Prometheus' sizes are base 2 (16GB is 16 GiB).
    retained = quantity(size["size"].replace("GB", "Gi"))
    claim = find(docs, "PersistentVolumeClaim", "prometheus-data", "obs-monitoring")
    volume = quantity(claim["spec"]["resources"]["requests"]["storage"])
    # Room for a compaction's new block (at most 10% of 15 days, about 1.1 GB) and more.
    assert volume - retained >= 2 * 2**30
    prometheus = find(docs, "Deployment", "prometheus", "obs-monitoring")
    (data,) = (v for v in render.pod_spec(prometheus)["volumes"] if v["name"] == "data")
    assert data == {"name": "data", "persistentVolumeClaim": {"claimName": "prometheus-data"}}


# --- what the render asks for ------------------------------------------------------------


def stated_totals(production_render: str) -> list[str]:
    """render_needs counts a Deployment whose HPA owns spec.replicas at the HPA's
    minReplicas (2 for frontend and backend here)."""
    needs = render_needs(production_render)
    return [
        f"render_needs: {needs.cpu_m:.0f}m CPU, {needs.memory / 2**20:.0f}Mi memory, "
        f"{needs.storage / 2**30:.0f}Gi volume claims",
    ]


def test_the_stated_requests_are_what_the_deploy_tool_computes(production_render, docs):
    lines = stated_totals(production_render)
    kustomization = " ".join(
        line.lstrip("# ").strip()
        for line in (OVERLAY / "kustomization.yaml").read_text().splitlines()
    )
    page = " ".join(DOCS_PAGE.read_text().split())
    for line in lines:
        assert line in kustomization, f"k8s-overlays/production/kustomization.yaml: {line}"
        assert line in page, f"docs/production.md: {line}"


def test_the_render_passes_the_cross_reference_checks(docs):
    assert render.check_services(docs) == []
    assert render.check_addresses(docs) == []
    assert render.check_discovery(docs) == []
    assert render.check_probes(docs) == []
    assert render.check_version_labels(docs) == []
    assert render.check_images_pinned(docs) == []
    # The transport Secret is the overlay's own (make-transport-certs.sh), not make up's.
    assert render.check_references(docs) == [
        "StatefulSet obs-monitoring/elasticsearch volume transport-tls: Secret "
        "obs-monitoring/elasticsearch-transport-tls does not exist"
    ]


def replicated(docs: list[dict]) -> dict[tuple[str, str], dict]:
    """(namespace, name) -> workload, for every Deployment or StatefulSet that runs more
    than one pod: by spec.replicas or by its HPA's minReplicas."""
    hpas = {
        (h["metadata"]["namespace"], h["spec"]["scaleTargetRef"]["name"]): h["spec"]["minReplicas"]
        for h in by_kind(docs, "HorizontalPodAutoscaler")
    }
    found = {}
    for workload in [*by_kind(docs, "Deployment"), *by_kind(docs, "StatefulSet")]:
        key = (workload["metadata"]["namespace"], workload["metadata"]["name"])
        if max(workload["spec"].get("replicas", 1), hpas.get(key, 1)) > 1:
            found[key] = workload
    return found


def test_every_replicated_workload_has_a_budget_and_is_spread(docs):
    workloads = replicated(docs)
    assert sorted(workloads) == [
        ("obs-apps", "backend"), ("obs-apps", "frontend"),
        ("obs-monitoring", "elasticsearch"), ("obs-monitoring", "jaeger"),
    ]  # fmt: skip
    budgets = by_kind(docs, "PodDisruptionBudget")
    for (namespace, name), workload in workloads.items():
        labels = render.template_labels(workload)
        covering = [
            b["metadata"]["name"]
            for b in budgets
            if b["metadata"]["namespace"] == namespace
            and render.matches(b["spec"]["selector"]["matchLabels"], labels)
        ]
        assert covering == [name], f"{namespace}/{name}: PDBs {covering}"
        spec = render.pod_spec(workload)
        spread = [
            c["topologyKey"]
            for c in spec.get("topologySpreadConstraints", [])
            if c["whenUnsatisfiable"] == "DoNotSchedule"
        ]
        anti = [
            t["topologyKey"]
            for t in spec.get("affinity", {})
            .get("podAntiAffinity", {})
            .get("requiredDuringSchedulingIgnoredDuringExecution", [])
        ]
        assert "kubernetes.io/hostname" in spread + anti, f"{namespace}/{name} is not spread"


# --- on a real control plane with three kwok nodes ------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[KubeCluster]:
    require_k8s_binaries([*CONTROL_PLANE, "kwok"])
    with KubeCluster(
        tmp_path_factory.mktemp("production"),
        kwok_nodes=NODES,
        node_capacity=NodeCapacity(cpu="4", memory="8Gi"),
    ) as started:
        yield started


@pytest.fixture(scope="module")
def overlay_applied(cluster, production_render, stack_secrets, tmp_path_factory):
    """As `make up` would, then the transport Secret with make-transport-certs.sh --apply:
    Namespaces, Secrets, then the render, server-side with warnings as errors."""
    docs = load(production_render)
    apply_namespaces_and_secrets(cluster, docs, stack_secrets)
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           "KUBECTL": str(k8s_binary("kubectl"))}  # fmt: skip
    certs = subprocess.run(
        [str(CERTS_SCRIPT), "--apply", str(tmp_path_factory.mktemp("certs"))],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert certs.returncode == 0, certs.stderr
    return cluster.kubectl(
        "apply", "--server-side", "--field-manager=obs-stack-up", "--warnings-as-errors",
        "-f", "-", stdin=production_render, check=False,
    )  # fmt: skip


@pytest.mark.validate
def test_server_side_apply_with_pod_security_warns_nothing(cluster, overlay_applied):
    assert overlay_applied.returncode == 0, overlay_applied.stderr
    assert "warning" not in overlay_applied.stderr.lower(), overlay_applied.stderr
    for namespace in ("obs-apps", "obs-monitoring"):
        labels = cluster.get_json("namespace", namespace)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    secret = cluster.get_json("secret", "elasticsearch-transport-tls", "-n", "obs-monitoring")
    assert sorted(secret["data"]) == ["ca.crt", "tls.crt", "tls.key"]


def pods(cluster: KubeCluster, namespace: str, name: str) -> list[dict]:
    return cluster.get_json("pods", "-n", namespace, "-l", f"app.kubernetes.io/name={name}")[
        "items"
    ]


def ready(pod: dict) -> bool:
    """Healthy as the disruption controller counts it: Ready, and not being deleted."""
    conditions = pod.get("status", {}).get("conditions") or []
    return "deletionTimestamp" not in pod["metadata"] and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def wait_rolled_out(cluster: KubeCluster, docs: list[dict]) -> None:
    # The HPAs raise frontend and backend from the 1 pod a Deployment without replicas
    # starts with to minReplicas, on their first sync (15 s period), metrics or not.
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        namespace, target = hpa["metadata"]["namespace"], hpa["spec"]["scaleTargetRef"]["name"]
        poll_until(
            lambda n=namespace, t=target, m=hpa["spec"]["minReplicas"]: (
                cluster.get_json("deployment", t, "-n", n)["spec"]["replicas"] == m
            ),
            f"the HPA scaling {namespace}/{target} to {hpa['spec']['minReplicas']}",
            timeout=60,
        )
    for kind in ("Deployment", "StatefulSet"):
        for workload in by_kind(docs, kind):
            meta = workload["metadata"]
            cluster.rollout_status(kind.lower(), meta["name"], meta["namespace"], timeout=90)


@pytest.mark.validate
def test_every_workload_rolls_out_with_replicas_on_distinct_nodes(cluster, overlay_applied, docs):
    assert overlay_applied.returncode == 0, overlay_applied.stderr
    wait_rolled_out(cluster, docs)
    for (namespace, name), workload in replicated(docs).items():
        running = [p for p in pods(cluster, namespace, name) if ready(p)]
        nodes = [p["spec"]["nodeName"] for p in running]
        expected = cluster.get_json(workload["kind"].lower(), name, "-n", namespace)["spec"][
            "replicas"
        ]
        assert len(running) == expected >= 2, f"{namespace}/{name}: {nodes}"
        assert len(set(nodes)) == len(nodes), f"{namespace}/{name} shares a node: {nodes}"


class BudgetWatch:
    """A watch of every pod in the cluster: after each event, how many pods each PDB's
    selector finds healthy, and the lowest count seen per PDB while it ran.
    Runs from start() until stop()."""

    def __init__(self, cluster: KubeCluster, budgets: list[dict]) -> None:
        self.cluster = cluster
        self.budgets = budgets
        self.pods: dict[str, dict] = {}
        self.lowest: dict[str, int] = {}
        self.events = 0
        self.error: BaseException | None = None
        self._client: httpx.Client | None = None
        self._version = ""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def key(self, budget: dict) -> str:
        return f"{budget['metadata']['namespace']}/{budget['metadata']['name']}"

    def healthy(self, budget: dict) -> int:
        namespace = budget["metadata"]["namespace"]
        selector = budget["spec"]["selector"]["matchLabels"]
        return sum(
            1
            for pod in self.pods.values()
            if pod["metadata"]["namespace"] == namespace
            and render.matches(selector, pod["metadata"].get("labels", {}))
            and ready(pod)
        )

    def _record(self) -> None:
        for budget in self.budgets:
            key = self.key(budget)
            self.lowest[key] = min(self.lowest.get(key, 1 << 30), self.healthy(budget))

    def start(self) -> BudgetWatch:
        context = ssl.create_default_context(cafile=str(self.cluster.pki / "ca.crt"))
        context.load_cert_chain(
            str(self.cluster.pki / "admin.crt"), str(self.cluster.pki / "admin.key")
        )
        self._client = httpx.Client(base_url=self.cluster.server, verify=context)
        listed = self._client.get("/api/v1/pods", timeout=10).raise_for_status().json()
        for pod in listed["items"]:
            self.pods[pod["metadata"]["uid"]] = pod
        self._record()
        self._version = listed["metadata"]["resourceVersion"]
        self._thread.start()
        return self

    def _run(self) -> None:
        # A read blocked on the socket cannot be interrupted from another thread: each
        # watch request gives up after a second without events and the next one resumes
        # at the last resourceVersion seen, so no event is lost and stop() is heard.
        try:
            while not self._stopping.is_set():
                params = {"watch": "true", "resourceVersion": self._version}
                try:
                    with self._client.stream(
                        "GET", "/api/v1/pods", params=params, timeout=httpx.Timeout(10, read=1)
                    ) as response:
                        response.raise_for_status()
                        for line in response.iter_lines():
                            self._event(json.loads(line))
                except httpx.ReadTimeout:
                    continue
        except BaseException as exc:
            self.error = exc

    def _event(self, event: dict) -> None:
        pod = event["object"]
        if event["type"] == "ERROR":
            raise AssertionError(f"pod watch failed: {pod}")
        if event["type"] == "DELETED":
            self.pods.pop(pod["metadata"]["uid"], None)
        else:
            self.pods[pod["metadata"]["uid"]] = pod
        self._version = pod["metadata"]["resourceVersion"]
        self.events += 1
        self._record()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "the pod watch did not stop"
        assert self._client is not None
        self._client.close()
        if self.error:
            raise self.error


def drain(
    cluster: KubeCluster, node: str, timeout: int
) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = cluster.kubectl(
        "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", f"--timeout={timeout}s",
        timeout=timeout + 30, check=False,
    )  # fmt: skip
    return result, time.monotonic() - started


@pytest.mark.validate
def test_a_drain_keeps_every_budget_and_a_second_one_is_refused(cluster, overlay_applied, docs):
    assert overlay_applied.returncode == 0, overlay_applied.stderr
    wait_rolled_out(cluster, docs)

    # The disruption controller's view follows the pods: wait until it has counted them
    # all (every workload at full strength, one disruption allowed each).
    def settled() -> list[dict] | bool:
        budgets = cluster.get_json("pdb", "-A")["items"]
        return (
            len(budgets) == 4
            and all(
                b["status"].get("observedGeneration") == b["metadata"]["generation"]
                and b["status"]["currentHealthy"] == b["status"]["expectedPods"] >= 2
                and b["status"]["disruptionsAllowed"] == 1
                for b in budgets
            )
            and budgets
        )

    budgets = poll_until(
        settled, "every PDB at full strength with one disruption allowed", timeout=30,
        on_timeout=lambda: cluster.kubectl("get", "pdb", "-A", check=False).stdout,
    )  # fmt: skip
    desired = {
        f"{b['metadata']['namespace']}/{b['metadata']['name']}": b["status"]["desiredHealthy"]
        for b in budgets
    }

    es_nodes = {p["spec"]["nodeName"] for p in pods(cluster, "obs-monitoring", "elasticsearch")}
    assert es_nodes == set(cluster.node_names)
    first, second = cluster.node_names[0], cluster.node_names[1]

    watch = BudgetWatch(cluster, budgets).start()
    try:
        result, first_seconds = drain(cluster, first, timeout=120)
        assert result.returncode == 0, result.stderr
        # Everything evicted is back and ready elsewhere, but the Elasticsearch pod: its
        # anti-affinity leaves it no node (the other two have one, the first is cordoned).
        started = time.monotonic()
        for workload in by_kind(docs, "Deployment"):
            meta = workload["metadata"]
            cluster.rollout_status("deployment", meta["name"], meta["namespace"], timeout=90)
        back_seconds = time.monotonic() - started

        def unschedulable(pod: dict) -> bool:
            conditions = pod.get("status", {}).get("conditions") or []
            return not pod["spec"].get("nodeName") and any(
                c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
                for c in conditions
            )

        poll_until(
            lambda: [unschedulable(p) for p in pods(cluster, "obs-monitoring", "elasticsearch")]
            .count(True) == 1,
            "the evicted Elasticsearch pod back, and unschedulable", timeout=30,
        )  # fmt: skip
        assert sum(ready(p) for p in pods(cluster, "obs-monitoring", "elasticsearch")) == 2

        refused, second_seconds = drain(cluster, second, timeout=20)
    finally:
        watch.stop()

    assert refused.returncode != 0, refused.stdout
    assert PDB_REFUSAL in refused.stderr, refused.stderr
    # Refused: the Elasticsearch pod on the second node, and nothing else.
    refused_pods = {
        match[1]
        for line in refused.stderr.splitlines()
        if PDB_REFUSAL in line
        for match in [re.search(r'evicting pods/"([^"]+)"', line)]
        if match
    }
    on_second = {
        p["metadata"]["name"]
        for p in pods(cluster, "obs-monitoring", "elasticsearch")
        if p["spec"].get("nodeName") == second
    }
    assert refused_pods == on_second, refused.stderr
    assert sum(ready(p) for p in pods(cluster, "obs-monitoring", "elasticsearch")) == 2
    # What the second drain did evict came back on the one node left: both replicas of
    # frontend, backend and Jaeger now share it, which their spread allows only because
    # it counts no cordoned node (nodeTaintsPolicy Honor; with the default, Ignore, the
    # two cordoned nodes hold 0 replicas each and a second one on the last node is a skew
    # of 2: Pending).
    for workload in by_kind(docs, "Deployment"):
        meta = workload["metadata"]
        cluster.rollout_status("deployment", meta["name"], meta["namespace"], timeout=60)
    last = cluster.node_names[2]
    for namespace, name in (("obs-apps", "frontend"), ("obs-apps", "backend"),
                            ("obs-monitoring", "jaeger")):  # fmt: skip
        nodes = [p["spec"]["nodeName"] for p in pods(cluster, namespace, name) if ready(p)]
        assert nodes == [last, last], f"{namespace}/{name}: {nodes}"

    below = {key: (watch.lowest[key], floor) for key, floor in desired.items()
             if watch.lowest[key] < floor}  # fmt: skip
    assert watch.events > 0
    assert not below, f"(lowest healthy, desiredHealthy) below the budget: {below}"
    print(
        f"\nfirst drain of {first}: {first_seconds:.1f} s; evicted pods ready elsewhere "
        f"{back_seconds:.1f} s later; second drain of {second} refused after "
        f"{second_seconds:.1f} s (its --timeout 20 s); pod events watched: {watch.events}; "
        f"lowest healthy per PDB: {watch.lowest} (desiredHealthy {desired})"
    )
