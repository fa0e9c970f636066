"""The k8s/ render against the configuration files it ships: every Prometheus job finds
a pod to scrape on a port the pod declares, Fluent Bit's ConfigMap holds every file its
entry point includes and its state paths are mounted, Grafana's datasource assumes the
scrape interval Prometheus uses, Alertmanager's password file is mounted where
alertmanager.yml looks for it, and Kibana reads its secrets in its mounted kibana.yml.
Rendering needs kubectl (kustomize), no cluster.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from obs_tools.common.paths import REPO
from obs_tools.common.versions import VERSIONS, prometheus_binary, promtool_binary

from tests.k8s.conftest import require_k8s_binaries
from tests.k8s.render import kustomize

PROMETHEUS_CONFIG = REPO / "prometheus" / "prometheus-kubernetes.yml"
# The job names of the contract between the helpers (and of the local stack).
JOBS = {
    "frontend", "backend", "kube-state-metrics", "fluent-bit", "jaeger", "elasticsearch",
    "alertmanager", "prometheus",
}  # fmt: skip


@pytest.fixture(scope="module")
def render() -> list[dict]:
    text = kustomize()
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


def kubernetes_config_text() -> str:
    """The Kubernetes entry point and its includes, with its @SET variables substituted
    as Fluent Bit does (a @SET value wins over the environment)."""
    text = "\n".join(
        (REPO / "fluent-bit" / name).read_text()
        for name in fluent_bit_includes("fluent-bit-kubernetes.conf")
    )
    for name, value in re.findall(r"^\s*@SET\s+(\w+)=(\S+)", text, re.M | re.I):
        text = text.replace("${" + name + "}", value)
    return text


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", quantity)
    assert match, f"unexpected quantity {quantity!r}"
    return float(match.group(1)) * units.get(match.group(2) or "", 1 / 2**20)


def test_fluent_bit_buffers_fit_its_memory_limit(render):
    """Filesystem buffering still keeps up to storage.max_chunks_up chunks in memory (a
    chunk is about 2 MB at most) plus the backlog being reloaded: with the DaemonSet's
    limit below that sum, a long Elasticsearch outage would end in an OOM kill loop."""
    daemonset = next(d for d in render if d["kind"] == "DaemonSet")
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    limit = mebibytes(container["resources"]["limits"]["memory"])
    text = kubernetes_config_text()
    chunks = int(re.search(r"^\s*storage\.max_chunks_up\s+(\d+)", text, re.M).group(1))
    backlog = re.search(r"^\s*storage\.backlog\.mem_limit\s+(\S+)", text, re.M).group(1)
    # An allowance of 40 MiB for Fluent Bit itself (its idle RSS is tens of MiB).
    needed = chunks * 2 + mebibytes(backlog) + 40
    assert needed <= limit, (
        f"fluent-bit: {chunks} chunks up x 2 MB + backlog {backlog} + 40 MiB = "
        f"{needed:.0f} MiB exceeds the DaemonSet's memory limit of {limit:.0f} MiB"
    )


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
    text = kubernetes_config_text()
    paths = re.findall(r"^\s*(?:DB|storage\.path)\s+(\S+)", text, re.M | re.I)
    assert len(paths) >= 2, f"no tail DB or storage.path in fluent-bit-kubernetes.conf: {paths}"
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


# Settings that hold secrets. kibana-docker (the image's entry point) turns a variable
# named after a setting (upper case, dots as underscores: ELASTICSEARCH_PASSWORD) into
# a `--setting=value` argument on Kibana's command line, visible in ps.
KIBANA_SECRET_SETTINGS = (
    "elasticsearch.password", "elasticsearch.serviceAccountToken",
    "xpack.security.encryptionKey", "xpack.encryptedSavedObjects.encryptionKey",
    "xpack.reporting.encryptionKey",
)  # fmt: skip
# The image's own kibana.yml (the 8.19 docker build's template), which ours replaces.
KIBANA_IMAGE_DEFAULTS = {
    "server.host": "0.0.0.0",
    "server.shutdownTimeout": "5s",
    "monitoring.ui.container.elasticsearch.enabled": True,
}


def kibana_problems(render: list[dict]) -> list[str]:
    """What would make the deployed Kibana leak a secret on its command line, fail on a
    ${VAR} it cannot resolve, or lose the image's defaults."""
    deployment = next(
        d for d in render if d["kind"] == "Deployment" and d["metadata"]["name"] == "kibana"
    )
    pod = deployment["spec"]["template"]["spec"]
    container = kibana_container(render)
    problems = []
    mount = next(
        (m for m in container.get("volumeMounts", [])
         if m["mountPath"] == "/usr/share/kibana/config/kibana.yml"),
        None,
    )  # fmt: skip
    if mount is None:
        return ["nothing is mounted at /usr/share/kibana/config/kibana.yml"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    config_map = next(
        d for d in render
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == volume["configMap"]["name"]
    )  # fmt: skip
    text = config_map["data"][mount["subPath"]]
    settings = yaml.safe_load(text)
    # Kibana replaces ${VAR} in the values (the comments are not read).
    values = " ".join(str(value) for value in settings.values())
    env = {e["name"]: e for e in container.get("env", [])}
    for name, value in KIBANA_IMAGE_DEFAULTS.items():
        if settings.get(name) != value:
            problems.append(f"kibana.yml: {name} is {settings.get(name)!r}, not {value!r}")
    for name in re.findall(r"\$\{(\w+)\}", values):
        if name not in env:
            problems.append(f"kibana.yml refers to ${{{name}}}, which the container lacks")
    for setting in KIBANA_SECRET_SETTINGS:
        if setting in settings and "${" not in str(settings[setting]):
            problems.append(f"kibana.yml: {setting} is not read from a variable")
        translated = setting.upper().replace(".", "_")
        if translated in env:
            problems.append(f"env {translated} becomes --{setting}=... on the command line")
    for name, variable in env.items():
        if "secretKeyRef" in (variable.get("valueFrom") or {}) and f"${{{name}}}" not in values:
            problems.append(f"env {name} holds a secret that kibana.yml does not use")
    return problems


def test_kibana_reads_its_secrets_in_kibana_yml_not_on_its_command_line(render):
    assert kibana_problems(render) == []
    # Breaking it on purpose: the variable named as kibana-docker's allow-list has it.
    broken = copy.deepcopy(render)
    container = kibana_container(broken)
    for variable in container["env"]:
        if variable["name"] == "KIBANA_SYSTEM_PASSWORD":
            variable["name"] = "ELASTICSEARCH_PASSWORD"
    assert kibana_problems(broken) == [
        "kibana.yml refers to ${KIBANA_SYSTEM_PASSWORD}, which the container lacks",
        "env ELASTICSEARCH_PASSWORD becomes --elasticsearch.password=... on the command line",
        "env ELASTICSEARCH_PASSWORD holds a secret that kibana.yml does not use",
    ]
    # And without the file, the image's own kibana.yml (no password at all) is used.
    broken = copy.deepcopy(render)
    kibana_container(broken)["volumeMounts"].pop()
    assert kibana_problems(broken) == ["nothing is mounted at /usr/share/kibana/config/kibana.yml"]


def kibana_container(render: list[dict]) -> dict:
    deployment = next(
        d for d in render if d["kind"] == "Deployment" and d["metadata"]["name"] == "kibana"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


# --- Prometheus: no deprecated flag; retention in the config file --------------------------

# What Prometheus v3.16.0 deprecates on its command line (github.com/prometheus/prometheus
# v0.316.0, cmd/prometheus/main.go): the flags --storage.tsdb.retention.time and
# --storage.tsdb.retention.size ("[DEPRECATED] ... use the storage.tsdb.retention.* field
# in the config file instead") and --log.level ("Deprecated: set runtime.log_level in the
# configuration file instead"); and these --enable-feature values (setFeatureListOptions):
# auto-reload-config (deprecated: --config.auto-reload), extra-scrape-metrics and
# xor2-encoding (being phased out for config settings), and the no-ops
# promql-duration-expr, native-histograms, ooo-native-histograms and
# promql-extended-range-selectors.
DEPRECATED_PROMETHEUS_FLAGS = {
    "--storage.tsdb.retention.time", "--storage.tsdb.retention.size", "--log.level",
}  # fmt: skip
DEPRECATED_PROMETHEUS_FEATURES = {
    "auto-reload-config", "extra-scrape-metrics", "xor2-encoding", "promql-duration-expr",
    "native-histograms", "ooo-native-histograms", "promql-extended-range-selectors",
}  # fmt: skip


def prometheus_container(render: list[dict]) -> dict:
    deployment = next(
        d for d in render if d["kind"] == "Deployment" and d["metadata"]["name"] == "prometheus"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def deprecated_prometheus_args(args: list[str]) -> list[str]:
    found = []
    for arg in args:
        flag, _, value = arg.partition("=")
        if flag in DEPRECATED_PROMETHEUS_FLAGS:
            found.append(arg)
        if flag == "--enable-feature" and set(value.split(",")) & DEPRECATED_PROMETHEUS_FEATURES:
            found.append(arg)
    return found


def test_prometheus_runs_with_no_deprecated_flag(render):
    args = prometheus_container(render)["args"]
    assert all(a.startswith("--") and "=" in a for a in args), args
    assert deprecated_prometheus_args(args) == []
    # The check sees the flags the Deployment had before they moved to the config file.
    assert deprecated_prometheus_args(["--storage.tsdb.retention.time=2d"])


def test_prometheus_keeps_its_retention_in_the_deployed_config_file(render):
    config_map = next(
        d
        for d in render
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("prometheus-config-")
    )
    config = yaml.safe_load(config_map["data"]["prometheus.yml"])
    retention = config["storage"]["tsdb"]["retention"]
    assert retention == {"time": "2d", "size": "1GB"}
    # Below the data emptyDir's limit, with room for the WAL and the head block.
    volumes = next(
        d for d in render if d["kind"] == "Deployment" and d["metadata"]["name"] == "prometheus"
    )["spec"]["template"]["spec"]["volumes"]
    (data,) = [v for v in volumes if v["name"] == "data"]
    assert mebibytes("1Gi") <= mebibytes(data["emptyDir"]["sizeLimit"]) / 2


def test_the_pinned_prometheus_deprecates_exactly_the_listed_flags():
    """The list above against `prometheus --help` of the deployed release, when built."""
    binary = prometheus_binary()
    require_k8s_binaries(["prometheus"])
    result = subprocess.run(
        [str(binary), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    text = result.stdout + result.stderr
    # kingpin prints each flag, then its help indented below it.
    flags = re.split(r"\n\s+(?=--[\w.-]+)", text)
    deprecated = {
        re.match(r"(--[\w.-]+)", block).group(1)
        for block in flags
        if block.startswith("--") and re.search(r"\bdeprecated\b", block, re.I)
    }
    assert deprecated == DEPRECATED_PROMETHEUS_FLAGS, text


def test_promtool_accepts_the_deployed_config_file(render, tmp_path):
    promtool = promtool_binary()
    require_k8s_binaries(["promtool"])
    config_map = next(
        d
        for d in render
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("prometheus-config-")
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(config_map["data"]["prometheus.yml"])
    # --syntax-only: the rule files are checked where they are mounted by test_validate.py.
    result = subprocess.run(
        [str(promtool), "check", "config", "--syntax-only", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_is_the_version_scripts_versions_env_pins(render):
    deployment = next(
        d for d in render if d["kind"] == "Deployment" and d["metadata"]["name"] == "grafana"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    version = VERSIONS["GRAFANA_VERSION"]
    assert container["image"] == f"docker.io/grafana/grafana:{version}"
    labels = [
        deployment["metadata"]["labels"],
        deployment["spec"]["template"]["metadata"]["labels"],
    ]
    assert all(labels_["app.kubernetes.io/version"] == version for labels_ in labels)


# --- Jaeger: the in-memory store fits the pod's memory ---------------------------------------

JAEGER_MEMORY = REPO / "docs" / "jaeger-memory.json"
# Go's GOMEMLIMIT syntax (runtime/mgcpacer.go readGOMEMLIMIT, parseByteCount): a byte count
# with an optional B, KiB, MiB, GiB or TiB suffix; anything else stops the program.
GO_BYTE_UNITS = {"": 1, "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def go_byte_count(value: str) -> int:
    match = re.fullmatch(r"(\d+)(B|KiB|MiB|GiB|TiB)?", value)
    assert match, f"GOMEMLIMIT={value!r} is not a byte count Go accepts"
    return int(match.group(1)) * GO_BYTE_UNITS[match.group(2) or ""]


def jaeger_budget(render: list[dict]) -> dict[str, int]:
    deployment = next(
        d for d in render if d["kind"] == "Deployment" and d["metadata"]["name"] == "jaeger"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    config_map = next(
        d
        for d in render
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("jaeger-config-")
    )
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    memory = config["extensions"]["jaeger_storage"]["backends"]["memstore"]["memory"]
    assert "GOMEMLIMIT" in env, "Jaeger runs without GOMEMLIMIT: its heap may double"
    return {
        "limit": int(mebibytes(container["resources"]["limits"]["memory"]) * 2**20),
        "gomemlimit": go_byte_count(env["GOMEMLIMIT"]),
        "max_traces": memory["max_traces"],
    }


def test_jaegers_trace_store_fits_its_memory_limit(render):
    """The arithmetic of jaeger/config.yaml, with the measured bytes per trace."""
    budget = jaeger_budget(render)
    measured = json.loads(JAEGER_MEMORY.read_text())
    per_trace = measured["live_heap_bytes_per_trace"]
    idle = measured["idle_live_heap_bytes"]
    stored = budget["max_traces"] * per_trace
    assert stored < budget["gomemlimit"] < budget["limit"], budget
    # Room for Go's garbage (GOGC=100 lets the heap reach twice the live data before a
    # collection) or for traces twice the measured average, without collecting constantly.
    assert idle + 2 * stored <= budget["gomemlimit"], (budget, per_trace)
    # What Go does not count (the binary's mapped code...) fits between the two, and the
    # limit leaves Go's collector some slack (at most 85% of the container's limit).
    first = measured["points"][0]
    outside_go = first["rss_bytes"] - first["go_sys_bytes"]
    assert budget["limit"] - budget["gomemlimit"] >= outside_go, (budget, outside_go)
    assert budget["gomemlimit"] <= 0.85 * budget["limit"], budget
    # The measurement stored fewer traces than the store keeps: no eviction skewed it.
    assert measured["points"][-1]["traces"] < measured["max_traces_while_measuring"]


def test_go_byte_counts_are_parsed_as_go_does():
    assert go_byte_count("420MiB") == 420 * 2**20
    assert go_byte_count("1073741824") == 2**30
    with pytest.raises(AssertionError):
        go_byte_count("420Mi")
