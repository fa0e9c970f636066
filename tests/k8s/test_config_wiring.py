"""The k8s/ render against the configuration files it ships: every Prometheus job finds
a pod to scrape on a port the pod declares, Fluent Bit's ConfigMap holds every file its
entry point includes and its state paths are mounted, Grafana's datasource assumes the
scrape interval Prometheus uses, and Alertmanager's password file is mounted where
alertmanager.yml looks for it. Rendering needs kubectl (kustomize), no cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = REPO / "prometheus" / "prometheus-kubernetes.yml"
# The job names of the contract between the helpers (and of the local stack).
JOBS = {
    "frontend", "backend", "kube-state-metrics", "fluent-bit", "jaeger", "elasticsearch",
    "alertmanager", "prometheus",
}  # fmt: skip


@pytest.fixture(scope="module")
def render() -> list[dict]:
    if not shutil.which("kubectl"):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("kubectl is not installed (CI=true: a missing tool is a failure)")
        pytest.skip("kubectl is not installed")
    text = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "k8s")],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(text) if d]


def pod_templates(render):
    for doc in render:
        template = (doc.get("spec") or {}).get("template")
        if template and doc["kind"] != "Job":
            yield doc["metadata"]["namespace"], doc["metadata"]["name"], template


def scrape_jobs() -> dict[str, dict]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_the_scrape_jobs_are_the_contracts():
    assert set(scrape_jobs()) == JOBS


@pytest.mark.parametrize("job_name", sorted(JOBS))
def test_every_job_discovers_a_pod_that_asks_to_be_scraped_on_a_declared_port(render, job_name):
    job = scrape_jobs()[job_name]
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    (selector,) = sd["selectors"]
    key, value = selector["label"].split("=")
    matches = [
        (name, template)
        for namespace, name, template in pod_templates(render)
        if namespace in sd["namespaces"]["names"]
        and template["metadata"]["labels"].get(key) == value
    ]
    assert len(matches) == 1, f"job {job_name}: pods matched {[m[0] for m in matches]}"
    name, template = matches[0]
    annotations = template["metadata"].get("annotations") or {}
    assert annotations.get("prometheus.io/scrape") == "true", name
    ports = {
        str(port["containerPort"])
        for container in template["spec"]["containers"]
        for port in container.get("ports") or []
    }
    assert annotations.get("prometheus.io/port") in ports, f"{name}: annotated port not declared"
    assert annotations.get("prometheus.io/path", "").startswith("/"), name
    # The relabelling that keeps the annotated pods and names them.
    actions = [
        (r.get("action", "replace"), tuple(r.get("source_labels", [])))
        for r in job["relabel_configs"]
    ]
    assert ("keep", ("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)) in actions
    assert ("keepequal", ("__meta_kubernetes_pod_container_port_number",)) in actions


def test_kube_state_metrics_keeps_the_labels_of_the_pods_it_describes():
    job = scrape_jobs()["kube-state-metrics"]
    assert job["honor_labels"] is True
    # No namespace/pod target labels: they would overwrite (or, with honor_labels,
    # pollute) the described pod's labels that PodCrashLooping groups by.
    assert not {r.get("target_label") for r in job["relabel_configs"]} & {"namespace", "pod"}
    for name in JOBS - {"kube-state-metrics"}:
        targets = {r.get("target_label") for r in scrape_jobs()[name]["relabel_configs"]}
        assert {"namespace", "pod"} <= targets, name


def test_the_crash_loop_alert_matches_the_service_containers(render):
    rules = (REPO / "prometheus" / "rules" / "flask-services.yml").read_text()
    pattern = re.search(r'container=~"([^"]+)"', rules).group(1)
    names = {
        container["name"]
        for namespace, _, template in pod_templates(render)
        if namespace == "obs-apps"
        for container in template["spec"]["containers"]
    }
    assert names == {"frontend", "backend"}
    assert all(re.fullmatch(pattern, name) for name in names)


def test_grafana_assumes_the_scrape_interval_prometheus_uses():
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    datasources = yaml.safe_load((REPO / "grafana" / "datasources.yaml").read_text())
    prometheus = next(d for d in datasources["datasources"] if d["type"] == "prometheus")
    assert prometheus["jsonData"]["timeInterval"] == config["global"]["scrape_interval"]


def fluent_bit_includes(name: str) -> set[str]:
    """Files that a Fluent Bit config file pulls in (@INCLUDE, Parsers_File), recursively."""
    found = {name}
    text = (REPO / "fluent-bit" / name).read_text()
    for match in re.finditer(r"^\s*(?:@INCLUDE|Parsers_File)\s+(\S+)", text, re.M | re.I):
        found |= fluent_bit_includes(match.group(1))
    return found


def test_fluent_bit_configmap_holds_every_file_the_entry_point_includes(render):
    daemonset = next(d for d in render if d["kind"] == "DaemonSet")
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    config_file = container["command"][-1]
    assert config_file.startswith("/fluent-bit/etc/")
    configmap = next(
        d
        for d in render
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("fluent-bit-config-")
    )
    needed = fluent_bit_includes(Path(config_file).name)
    assert needed <= set(configmap["data"]), (
        f"missing from the ConfigMap: {needed - set(configmap['data'])}"
    )
    for name in needed:
        assert configmap["data"][name] == (REPO / "fluent-bit" / name).read_text()


def test_fluent_bit_writes_only_below_its_state_mount(render):
    daemonset = next(d for d in render if d["kind"] == "DaemonSet")
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
    assert writable == ["/var/fluent-bit/state"]
    text = "\n".join(
        (REPO / "fluent-bit" / name).read_text()
        for name in fluent_bit_includes("fluent-bit-kubernetes.conf")
    )
    paths = re.findall(r"^\s*(?:DB|storage\.path)\s+(/\S+)", text, re.M | re.I)
    assert paths, "no tail DB in fluent-bit-kubernetes.conf"
    for path in paths:
        assert path.startswith("/var/fluent-bit/state/"), path


def test_alertmanager_reads_the_smtp_password_where_the_secret_is_mounted(render):
    config = yaml.safe_load((REPO / "prometheus" / "alertmanager" / "alertmanager.yml").read_text())
    password_file = Path(config["global"]["smtp_auth_password_file"])
    deployment = next(
        d for d in render if d["kind"] == "Deployment" and d["metadata"]["name"] == "alertmanager"
    )
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(
        m for m in container["volumeMounts"] if m["mountPath"] == str(password_file.parent)
    )
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "alertmanager-smtp"
    assert {item["path"] for item in secret["items"]} == {password_file.name}
    assert "--web.external-url=http://localhost:9093" in container["args"]
