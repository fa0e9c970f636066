"""`make validate`: the k8s/ render checked offline, by the real tools, before any cluster.

- strict OpenAPI schema validation of every object (kubernetes-validate, Kubernetes 1.34:
  Minikube's default; unknown fields are errors);
- server-side apply of the whole render to a real kube-apiserver (admission plugins on,
  Pod Security included) with warnings as errors, then every workload rolled out on a
  simulated kwok node of 4 CPUs and 8 GiB (tests/support/kube_cluster.py NodeCapacity);
- cross-references: Services <-> pods, ConfigMaps/Secrets/keys/ServiceAccounts/PVCs,
  addresses (OTLP endpoint, Fluent Bit's output, Grafana's datasources, Kibana's
  Elasticsearch, ...) <-> Services and ports, Prometheus discovery <-> pods;
- the deployed configurations loaded by the deployed versions: promtool and amtool
  (Prometheus v3.16.0, Alertmanager v0.34.2), Prometheus discovering the cluster's pods as
  its ServiceAccount, kube-state-metrics as its ServiceAccount, Jaeger started on its
  ConfigMap answering its probe; the image tags are the versions tested;
- checkov over the render, with an allow-list whose every entry has a reason;
- broken-on-purpose copies: each check names the object it fails on.

Reads CI (through the fixtures: a missing binary fails instead of skipping).
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
import yaml
from obs_tools.common.processes import ManagedProcess
from obs_tools.common.versions import (
    VERSIONS,
    alertmanager_binary,
    amtool_binary,
    checkov_binary,
    jaeger_binary,
    k8s_binary,
    prometheus_binary,
    promtool_binary,
)
from obs_tools.deploy.contract import NAMESPACES
from obs_tools.deploy.secrets import SECRETS, referenced_secret_keys

from tests.k8s import render
from tests.k8s.conftest import require_applied
from tests.k8s.deployed import decoded, env_of, materialize
from tests.support.polling import free_port, poll_until
from tests.support.requirements import unavailable

pytestmark = pytest.mark.validate

# Minikube's default Kubernetes (minikube v1.37: v1.34.0) is the minor version the
# schemas are checked against and the control plane runs (K8S_VERSION).
SCHEMA_VERSION = "1.34.0"
ALLOWLIST = Path(__file__).with_name("checkov-allowlist.yaml")


@pytest.fixture(scope="module")
def docs(render_docs) -> list[dict]:
    return render_docs


@pytest.fixture
def mutable(render_docs) -> list[dict]:
    """A deep copy of the render, to break on purpose."""
    return copy.deepcopy(render_docs)


@pytest.fixture(scope="module")
def secrets(stack_secrets) -> dict[tuple[str, str], dict[str, str]]:
    return {(m["metadata"]["namespace"], m["metadata"]["name"]): decoded(m) for m in stack_secrets}


def test_the_schema_version_is_the_control_planes():
    assert (
        VERSIONS["K8S_VERSION"].removeprefix("v").rsplit(".", 1)[0]
        == SCHEMA_VERSION.rsplit(".", 1)[0]
    )


def test_the_render_has_the_contracts_namespaces_and_labels(docs):
    assert {d["metadata"]["name"] for d in render.by_kind(docs, "Namespace")} == set(NAMESPACES)
    unlabelled = [
        render.ident(d)
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "obs-stack"
    ]
    assert unlabelled == []


# --- schema ---------------------------------------------------------------------------


def schema_problems(docs: list[dict]) -> list[str]:
    problems = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = "/".join(str(p) for p in error.path)
            problems.append(f"{render.ident(doc)}: {where}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{render.ident(doc)}: no schema for {doc['apiVersion']}")
    return problems


def test_every_object_passes_strict_schema_validation(docs):
    assert schema_problems(docs) == []


def test_an_unknown_field_fails_schema_validation_naming_the_object(mutable):
    render.find(mutable, "Deployment", "jaeger", "obs-monitoring")["spec"]["replica"] = 1
    (problem,) = schema_problems(mutable)
    assert problem.startswith("Deployment obs-monitoring/jaeger: spec:")
    assert "'replica' was unexpected" in problem


# --- the real API server ----------------------------------------------------------------


def test_server_side_apply_accepts_every_object_without_a_warning(applied, docs):
    result = applied.result
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    # kubectl prints `<kind>[.<group>]/<name> serverside-applied` per object.
    applied_objects = {
        (word.split("/")[0].split(".")[0], word.split("/", 1)[1])
        for word in result.stdout.split()
        if "/" in word
    }
    missing = [
        render.ident(doc)
        for doc in docs
        if (doc["kind"].lower(), doc["metadata"]["name"]) not in applied_objects
    ]
    assert missing == [], result.stdout


def test_every_workload_rolls_out_on_a_4_cpu_8_gib_node(applied, docs):
    cluster = require_applied(applied)
    failures = []
    for workload in render.workloads(docs):
        kind, name = workload["kind"], workload["metadata"]["name"]
        namespace = workload["metadata"]["namespace"]
        if kind == "CronJob":
            # Nothing rolls out: one run, made now from its job template as
            # `kubectl create job --from` does, must schedule and complete.
            cluster.kubectl("create", "job", f"--from=cronjob/{name}", f"{name}-now",
                            "-n", namespace)  # fmt: skip
            kind, name = "Job", f"{name}-now"
        if kind == "Job":
            result = cluster.kubectl(
                "wait", "--for=condition=complete", f"job/{name}", "-n", namespace,
                "--timeout=60s", check=False, timeout=90,
            )  # fmt: skip
            if result.returncode != 0:
                failures.append(f"{render.ident(workload)}: {result.stderr.strip()}")
            continue
        try:
            cluster.rollout_status(kind.lower(), name, namespace, timeout=60)
        except AssertionError as error:
            failures.append(str(error))
    assert failures == []


def test_statefulset_claims_are_bound(applied, docs):
    cluster = require_applied(applied)
    for sts in render.by_kind(docs, "StatefulSet"):
        namespace, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        for template in sts["spec"].get("volumeClaimTemplates", []):
            for ordinal in range(sts["spec"].get("replicas", 1)):
                claim = f"{template['metadata']['name']}-{name}-{ordinal}"
                pvc = cluster.get_json("pvc", claim, "-n", namespace)
                assert pvc["status"]["phase"] == "Bound", (claim, pvc["status"])


def restricted_namespaces(docs: list[dict]) -> list[str]:
    return [
        d["metadata"]["name"]
        for d in render.by_kind(docs, "Namespace")
        if d["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "restricted"
    ]


def test_namespace_pod_security_levels_are_the_contracts(docs):
    levels = {
        d["metadata"]["name"]: d["metadata"]["labels"].get("pod-security.kubernetes.io/enforce")
        for d in render.by_kind(docs, "Namespace")
    }
    assert levels == {
        "obs-apps": "restricted",
        "obs-monitoring": "restricted",
        "obs-logging": "privileged",
    }


ROOTFUL_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "rootful"},
    "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0.0"}]},
}


@pytest.mark.parametrize("namespace", ["obs-apps", "obs-monitoring"])
def test_a_non_compliant_pod_is_refused_in_each_restricted_namespace(applied, docs, namespace):
    assert namespace in restricted_namespaces(docs)
    cluster = require_applied(applied)
    pod = copy.deepcopy(ROOTFUL_POD)
    pod["metadata"]["namespace"] = namespace
    result = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-",
        stdin=json.dumps(pod), check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert 'pods "rootful" is forbidden: violates PodSecurity "restricted:latest"' in (
        result.stderr
    ), result.stderr


def test_a_workload_without_its_security_context_is_refused_naming_it(applied, mutable):
    cluster = require_applied(applied)
    deployment = render.find(mutable, "Deployment", "frontend", "obs-apps")
    del render.pod_spec(deployment)["containers"][0]["securityContext"]["allowPrivilegeEscalation"]
    result = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "--warnings-as-errors",
        "--field-manager=obs-stack-up", "-f", "-", stdin=json.dumps(deployment), check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert 'would violate PodSecurity "restricted:latest"' in result.stderr, result.stderr
    assert 'container "frontend" must set securityContext.allowPrivilegeEscalation=false' in (
        result.stderr
    )


# --- cross-references -------------------------------------------------------------------


def test_services_select_pods_and_target_their_ports(docs):
    assert render.check_services(docs) == []


def test_every_referenced_configmap_secret_key_account_and_claim_exists(docs):
    assert render.check_references(docs) == []


def test_every_secret_of_the_table_is_used(docs, render_text):
    used = {(ns, name) for ns, name, _ in referenced_secret_keys(render_text)}
    assert {(s.namespace, s.name) for s in SECRETS} <= used


def test_every_address_is_a_real_service_and_port(docs):
    found = render.addresses(docs)
    # The ones the stack cannot work without, so that the check cannot pass empty.
    owners = " ".join(a.owner for a in found)
    for needed in ("OTEL_EXPORTER_OTLP_ENDPOINT", "output-elasticsearch.conf", "datasources.yaml",
                   "kibana.yml", "smtp_smarthost", "prometheus.yml"):  # fmt: skip
        assert needed in owners, f"no in-cluster address found in {needed}"
    assert render.check_addresses(docs) == []


def test_prometheus_discovery_matches_the_pods(docs):
    assert render.check_discovery(docs) == []


def test_fluent_bit_serves_its_metrics_where_prometheus_looks(docs):
    daemonset = render.find(docs, "DaemonSet", "fluent-bit", "obs-logging")
    (container,) = render.pod_spec(daemonset)["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    ports = {p["containerPort"] for p in container["ports"]}
    annotations = render.template_annotations(daemonset)
    assert int(env["FLUENT_BIT_HTTP_PORT"]) in ports
    assert annotations["prometheus.io/port"] == env["FLUENT_BIT_HTTP_PORT"]


def test_every_probe_names_a_port_of_its_container(docs):
    assert render.check_probes(docs) == []


def test_version_labels_are_the_image_tags(docs):
    assert render.check_version_labels(docs) == []


def test_fluent_bit_tails_the_log_files_of_every_service_container(docs):
    assert render.tail_paths(docs)
    assert render.check_log_collection(docs) == []


# --- broken on purpose: each check names the object ----------------------------------------


def test_a_selector_that_matches_nothing_is_reported(mutable):
    service = render.find(mutable, "Service", "frontend", "obs-apps")
    service["spec"]["selector"] = {"app.kubernetes.io/name": "frontend-typo"}
    assert render.check_services(mutable) == [
        "Service obs-apps/frontend: selector {'app.kubernetes.io/name': 'frontend-typo'} "
        "matches no pod template"
    ]


def test_a_wrong_target_port_name_is_reported(mutable):
    service = render.find(mutable, "Service", "jaeger", "obs-monitoring")
    service["spec"]["ports"][1]["targetPort"] = "otlp-https"
    (problem,) = render.check_services(mutable)
    assert problem.startswith("Service obs-monitoring/jaeger port otlp-http: targetPort")
    assert "Deployment obs-monitoring/jaeger" in problem


def test_a_renamed_configmap_reference_is_reported(mutable):
    jaeger = render.find(mutable, "Deployment", "jaeger", "obs-monitoring")
    volume = next(v for v in render.pod_spec(jaeger)["volumes"] if "configMap" in v)
    volume["configMap"]["name"] = "jaeger-configuration"
    assert render.check_references(mutable) == [
        "Deployment obs-monitoring/jaeger volume config: ConfigMap "
        "obs-monitoring/jaeger-configuration does not exist"
    ]


def test_a_sub_path_naming_no_key_is_reported(mutable):
    prometheus = render.find(mutable, "Deployment", "prometheus", "obs-monitoring")
    mount = next(
        m for m in render.pod_spec(prometheus)["containers"][0]["volumeMounts"]
        if m["name"] == "config"
    )  # fmt: skip
    mount["subPath"] = "prometheus.yaml"
    (problem,) = render.check_references(mutable)
    assert problem.startswith(
        "Deployment obs-monitoring/prometheus container prometheus volumeMount config subPath:"
    )
    assert problem.endswith("has no key 'prometheus.yaml'")


def test_a_secret_key_the_table_does_not_create_is_reported(mutable):
    grafana = render.find(mutable, "Deployment", "grafana", "obs-monitoring")
    env = next(
        e for e in render.pod_spec(grafana)["containers"][0]["env"]
        if e["name"] == "GF_SECURITY_ADMIN_PASSWORD"
    )  # fmt: skip
    env["valueFrom"]["secretKeyRef"]["key"] = "password"
    assert render.check_references(mutable) == [
        "Deployment obs-monitoring/grafana container grafana env GF_SECURITY_ADMIN_PASSWORD: "
        "Secret obs-monitoring/grafana-admin has no key 'password'"
    ]


def test_an_unpinned_image_is_reported(mutable):
    backend = render.find(mutable, "Deployment", "backend", "obs-apps")
    render.pod_spec(backend)["containers"][0]["image"] = "obs-backend:latest"
    assert render.check_images_pinned(mutable) == [
        "Deployment obs-apps/backend container backend: image obs-backend:latest is not "
        "pinned to an exact tag"
    ]


def test_an_image_other_than_the_tested_version_is_reported(mutable):
    prometheus = render.find(mutable, "Deployment", "prometheus", "obs-monitoring")
    render.pod_spec(prometheus)["containers"][0]["image"] = "quay.io/prometheus/prometheus:v3.15.0"
    (problem,) = render.check_tested_versions(mutable)
    assert problem.startswith("Deployment obs-monitoring/prometheus container prometheus:")
    assert VERSIONS["PROMETHEUS_RELEASE"] in problem


def test_an_address_on_a_port_the_service_lacks_is_reported(mutable):
    frontend = render.find(mutable, "Deployment", "frontend", "obs-apps")
    env = next(
        e for e in render.pod_spec(frontend)["containers"][0]["env"]
        if e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT"
    )  # fmt: skip
    env["value"] = "http://jaeger.obs-monitoring.svc:4319"
    assert render.check_addresses(mutable) == [
        "Deployment obs-apps/frontend container frontend env OTEL_EXPORTER_OTLP_ENDPOINT: "
        "Service obs-monitoring/jaeger has no port 4319"
    ]


def test_fluent_bits_output_to_a_missing_service_is_reported(mutable):
    daemonset = render.find(mutable, "DaemonSet", "fluent-bit", "obs-logging")
    env = next(
        e for e in render.pod_spec(daemonset)["containers"][0]["env"] if e["name"] == "ES_HOST"
    )
    env["value"] = "elastic.obs-monitoring.svc"
    (problem,) = render.check_addresses(mutable)
    assert problem.startswith("DaemonSet obs-logging/fluent-bit (output-elasticsearch.conf")
    assert problem.endswith("no Service obs-monitoring/elastic")


def test_a_scrape_port_annotation_naming_no_port_is_reported(mutable):
    backend = render.find(mutable, "Deployment", "backend", "obs-apps")
    backend["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] = "5002"
    (problem,) = render.check_discovery(mutable)
    assert problem.startswith("Deployment obs-apps/backend: job backend scrapes the container port")


def test_a_probe_on_a_port_name_the_container_lacks_is_reported(mutable):
    kibana = render.find(mutable, "Deployment", "kibana", "obs-monitoring")
    container = render.pod_spec(kibana)["containers"][0]
    probe = container["readinessProbe"]
    (handler,) = [probe[k] for k in ("httpGet", "tcpSocket") if k in probe]
    handler["port"] = "https"
    (problem,) = render.check_probes(mutable)
    assert problem.startswith(
        "Deployment obs-monitoring/kibana container kibana: readinessProbe port 'https'"
    )


def test_a_version_label_that_is_not_an_image_tag_is_reported(mutable):
    jaeger = render.find(mutable, "Deployment", "jaeger", "obs-monitoring")
    jaeger["metadata"]["labels"]["app.kubernetes.io/version"] = "2.12.0"
    (problem,) = render.check_version_labels(mutable)
    assert problem.startswith(
        "Deployment obs-monitoring/jaeger: labels app.kubernetes.io/version '2.12.0'"
    )


def test_a_tail_path_on_the_wrong_namespace_is_reported(mutable):
    for config_map in render.by_kind(mutable, "ConfigMap"):
        for key, text in config_map.get("data", {}).items():
            config_map["data"][key] = text.replace("_obs-apps_", "_obs-stack_")
    problems = render.check_log_collection(mutable)
    assert problems
    assert problems[0].startswith("Deployment obs-apps/")
    assert "matches no tail Path" in problems[0]


# --- the deployed versions, on the deployed configuration ----------------------------------


def test_the_images_are_the_tested_versions(docs):
    repositories = {render.split_image(image)[0] for _, image in render.images(docs)}
    # Each pinned component is deployed (else the check below would pass vacuously).
    pinned = {
        "quay.io/prometheus/prometheus", "quay.io/prometheus/alertmanager",
        "docker.elastic.co/elasticsearch/elasticsearch", "docker.elastic.co/kibana/kibana",
        "registry.k8s.io/kube-state-metrics/kube-state-metrics",
    }  # fmt: skip
    assert pinned <= repositories
    assert repositories & {"docker.io/jaegertracing/jaeger", "jaegertracing/jaeger"}
    assert render.check_tested_versions(docs) == []


def require_binary(path: Path) -> str:
    if not path.is_file():
        unavailable(f"not built: {path}; run `scripts/bootstrap.sh k8s`")
    return str(path)


def run(*argv: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def arg_value(args: list[str], flag: str) -> str:
    for arg in args:
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"no {flag}= among {args}")


@pytest.fixture(scope="module")
def prometheus_deployed(docs, secrets, tmp_path_factory):
    workload = render.find(docs, "Deployment", "prometheus", "obs-monitoring")
    files = materialize(docs, workload, "prometheus", tmp_path_factory.mktemp("prom"), secrets)
    args = render.pod_spec(workload)["containers"][0]["args"]
    return workload, files, args


def test_promtool_accepts_the_deployed_prometheus_config_and_its_rules(prometheus_deployed):
    promtool = require_binary(promtool_binary())
    _, files, args = prometheus_deployed
    config = files.local(arg_value(args, "--config.file"))
    result = run(promtool, "check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    # The rule files were found where the Deployment mounts them, and checked.
    rules = list(files.mounts["/etc/prometheus/rules"].glob("*.yml"))
    assert rules
    for rule_file in rules:
        assert re.search(rf"Checking {re.escape(str(rule_file))}\s+SUCCESS: \d+ rules found",
                         result.stdout + result.stderr), result.stdout + result.stderr  # fmt: skip


def test_amtool_accepts_the_deployed_alertmanager_config(docs, secrets, tmp_path):
    amtool = require_binary(amtool_binary())
    workload = render.find(docs, "Deployment", "alertmanager", "obs-monitoring")
    files = materialize(docs, workload, "alertmanager", tmp_path, secrets)
    args = render.pod_spec(workload)["containers"][0]["args"]
    config = files.local(arg_value(args, "--config.file"))
    result = run(amtool, "check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout, result.stdout
    # The password file the config names is the one the Secret volume provides.
    password_file = yaml.safe_load(config.read_text())["global"]["smtp_auth_password_file"]
    assert Path(password_file).is_file(), password_file


def test_the_deployed_alertmanager_starts_on_its_config(docs, secrets, tmp_path):
    binary = require_binary(alertmanager_binary())
    workload = render.find(docs, "Deployment", "alertmanager", "obs-monitoring")
    files = materialize(docs, workload, "alertmanager", tmp_path / "root", secrets)
    args = [files.relocate(a) for a in render.pod_spec(workload)["containers"][0]["args"]]
    port = free_port()
    process = ManagedProcess(
        "alertmanager", [binary, *args, f"--web.listen-address=127.0.0.1:{port}"], tmp_path
    )
    try:
        process.wait_http(f"http://127.0.0.1:{port}/-/ready", ok=lambda r: r.status_code == 200)
        status = httpx.get(f"http://127.0.0.1:{port}/api/v2/status", timeout=5).json()
        assert "smtp_auth_password_file" in status["config"]["original"]
        assert status["versionInfo"]["version"] == VERSIONS["ALERTMANAGER_VERSION"].removeprefix(
            "v"
        )
    finally:
        process.stop()


def test_jaegers_container_ports_are_its_configs_defaults(docs):
    workload = render.find(docs, "Deployment", "jaeger", "obs-monitoring")
    config = next(
        cm["data"]["config.yaml"]
        for cm in render.by_kind(docs, "ConfigMap")
        if "config.yaml" in cm.get("data", {})
        and cm["metadata"]["name"].startswith("jaeger-config")
    )
    defaults = {int(p) for p in re.findall(r"\$\{env:JAEGER_\w+_PORT:-(\d+)\}", config)}
    (container,) = render.pod_spec(workload)["containers"]
    assert {p["containerPort"] for p in container["ports"]} == defaults


def test_the_deployed_jaeger_starts_on_its_config_and_answers_its_probe(docs, secrets, tmp_path):
    binary = require_binary(jaeger_binary())
    workload = render.find(docs, "Deployment", "jaeger", "obs-monitoring")
    files = materialize(docs, workload, "jaeger", tmp_path / "root", secrets)
    (container,) = render.pod_spec(workload)["containers"]
    config = files.local("/etc/jaeger/config.yaml").read_text()
    # The Deployment's env (paths into its volumes relocated), plus every port made free
    # and the host loopback.
    env = {k: files.relocate(v) for k, v in env_of(workload, "jaeger", secrets).items()}
    ports = {name: free_port() for name in re.findall(r"\$\{env:(JAEGER_\w+_PORT):-\d+\}", config)}
    env.update({name: str(port) for name, port in ports.items()}, JAEGER_LISTEN_HOST="127.0.0.1")
    default_port = {
        int(default): name
        for name, default in re.findall(r"\$\{env:(JAEGER_\w+_PORT):-(\d+)\}", config)
    }
    probe = container["readinessProbe"]["httpGet"]
    probe_port = next(p["containerPort"] for p in container["ports"] if p["name"] == probe["port"])
    local_port = ports[default_port[probe_port]]
    args = [files.relocate(a) for a in container["args"]]
    process = ManagedProcess("jaeger", [binary, *args], tmp_path, env=env)
    try:
        process.wait_http(
            f"http://127.0.0.1:{local_port}{probe['path']}", ok=lambda r: r.status_code == 200
        )
    finally:
        process.stop()


def test_the_deployed_elasticsearch_exporter_accepts_its_arguments(docs, secrets, tmp_path):
    """Debian's exporter is the same upstream release as the image (check_tested_versions):
    it starts with the Deployment's arguments and env, and serves metrics on its port."""
    binary = shutil.which("prometheus-elasticsearch-exporter")
    if not binary:
        unavailable("prometheus-elasticsearch-exporter is not installed; run `make bootstrap`")
    workload = render.find(docs, "Deployment", "elasticsearch-exporter", "obs-monitoring")
    (container,) = render.pod_spec(workload)["containers"]
    port = free_port()
    args = [a for a in container["args"] if not a.startswith("--web.listen-address=")]
    argv = [binary, *args, f"--web.listen-address=127.0.0.1:{port}"]
    env = env_of(workload, container["name"], secrets)
    process = ManagedProcess("elasticsearch-exporter", argv, tmp_path, env=env)
    try:
        # Its landing page: /metrics would wait for the absent Elasticsearch.
        process.wait_http(f"http://127.0.0.1:{port}/", ok=lambda r: r.status_code == 200)
        # The port Prometheus is told to scrape is the one the exporter listens on.
        listen = arg_value(container["args"], "--web.listen-address").rsplit(":", 1)[1]
        assert render.template_annotations(workload)["prometheus.io/port"] == listen
    finally:
        process.stop()


def service_account_kubeconfig(cluster, namespace: str, name: str, path: Path) -> Path:
    token = cluster.kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"] = [{"name": "admin", "user": {"token": token.strip()}}]
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def deployed_prometheus(cluster, docs, secrets, tmp_path, edit=lambda config: None):
    """The deployed Prometheus binary on the deployed prometheus.yml, as the Deployment's
    ServiceAccount (its RoleBindings decide what it may list). Out of the cluster the only
    change is where the API server is and who Prometheus is (kubeconfig_file); `edit`
    breaks the config on purpose. Yields a function returning the active targets as
    (job, instance, scrape path, namespace label, pod label)."""
    binary = require_binary(prometheus_binary())
    workload = render.find(docs, "Deployment", "prometheus", "obs-monitoring")
    spec = render.pod_spec(workload)
    files = materialize(docs, workload, "prometheus", tmp_path / "root", secrets)
    kubeconfig = service_account_kubeconfig(
        cluster, "obs-monitoring", spec["serviceAccountName"], tmp_path / "kubeconfig"
    )
    args = spec["containers"][0]["args"]
    config_path = files.local(arg_value(args, "--config.file"))
    config = yaml.safe_load(config_path.read_text())
    for job in config["scrape_configs"]:
        for sd in job.get("kubernetes_sd_configs", []):
            sd["kubeconfig_file"] = str(kubeconfig)
    edit(config)
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [binary, *(files.relocate(a) for a in args), f"--web.listen-address=127.0.0.1:{port}"]
    process = ManagedProcess("prometheus", argv, tmp_path)
    url = f"http://127.0.0.1:{port}"

    def targets() -> set[tuple]:
        active = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return {
            (
                t["labels"]["job"],
                t["labels"]["instance"],
                t["scrapeUrl"].split(t["labels"]["instance"], 1)[1],
                t["labels"].get("namespace"),
                t["labels"].get("pod"),
            )
            for t in active
        }

    targets.process = process  # for failure messages
    try:
        process.wait_http(f"{url}/-/ready", ok=lambda r: r.status_code == 200)
        yield targets
        assert "forbidden" not in process.log_path.read_text(), process.tail()
    finally:
        process.stop()


def test_prometheus_discovers_every_scraped_pod_as_its_service_account(
    applied, docs, secrets, tmp_path
):
    """Every job finds exactly the running pods of its component, on the annotated port
    and path, labelled with their namespace and pod (kube-state-metrics excepted: its
    series keep the labels of the objects they describe)."""
    cluster = require_applied(applied)
    _, config = render.prometheus_config(docs)
    expected = expected_targets(cluster, docs, config)
    with deployed_prometheus(cluster, docs, secrets, tmp_path) as targets:
        poll_until(
            lambda: targets() == expected,
            f"Prometheus to discover exactly {sorted(expected)}",
            30,
            on_timeout=lambda: f"found {sorted(targets())}\n{targets.process.tail()}",
        )


def test_a_relabelling_mistake_changes_what_prometheus_discovers(applied, docs, secrets, tmp_path):
    """Broken on purpose: without the rule keeping only the annotated port, Jaeger's other
    container ports (OTLP, UI, ...) become targets of job jaeger."""
    cluster = require_applied(applied)

    def drop_port_rule(config):
        job = next(j for j in config["scrape_configs"] if j["job_name"] == "jaeger")
        job["relabel_configs"] = [
            r for r in job["relabel_configs"] if r.get("action") != "keepequal"
        ]

    jaeger = render.find(docs, "Deployment", "jaeger", "obs-monitoring")
    otlp = next(
        p["containerPort"] for p in render.pod_spec(jaeger)["containers"][0]["ports"]
        if p["name"] == "otlp-grpc"
    )  # fmt: skip
    with deployed_prometheus(cluster, docs, secrets, tmp_path, drop_port_rule) as targets:
        poll_until(
            lambda: any(t[0] == "jaeger" and t[1].endswith(f":{otlp}") for t in targets()),
            f"job jaeger to gain a target on the OTLP port {otlp}",
            30,
        )


def expected_targets(cluster, docs, config) -> set[tuple]:
    """(job, pod IP:annotated port, annotated path, namespace, pod) of every running pod of
    each job's component, read from the live cluster; namespace and pod only for the jobs
    whose relabelling sets those labels."""
    expected = set()
    for job in config["scrape_configs"]:
        labelled = {r.get("target_label") for r in job.get("relabel_configs", [])}
        for workload in render.job_targets(docs, job):
            namespace = workload["metadata"]["namespace"]
            match = workload["spec"]["selector"]["matchLabels"]
            selector = ",".join(f"{k}={v}" for k, v in match.items())
            pods = cluster.get_json("pods", "-n", namespace, "-l", selector)["items"]
            assert pods, f"no pods of {render.ident(workload)}"
            annotations = render.template_annotations(workload)
            for pod in pods:
                if pod["status"].get("phase") != "Running":
                    continue
                expected.add((
                    job["job_name"],
                    f"{pod['status']['podIP']}:{annotations['prometheus.io/port']}",
                    annotations.get("prometheus.io/path", "/metrics"),
                    namespace if "namespace" in labelled else None,
                    pod["metadata"]["name"] if "pod" in labelled else None,
                ))  # fmt: skip
    return expected


def test_kube_state_metrics_as_deployed_sees_the_stack(applied, docs, tmp_path):
    """The deployed kube-state-metrics arguments, run with its ServiceAccount's
    permissions: it lists what it is told to watch, in the stack's namespaces."""
    cluster = require_applied(applied)
    binary = require_binary(k8s_binary("kube-state-metrics"))
    workload = render.find(docs, "Deployment", "kube-state-metrics", "obs-monitoring")
    spec = render.pod_spec(workload)
    kubeconfig = service_account_kubeconfig(
        cluster, "obs-monitoring", spec["serviceAccountName"], tmp_path / "kubeconfig"
    )
    port, telemetry = free_port(), free_port()
    args = [
        a for a in spec["containers"][0]["args"]
        if not a.startswith(("--port=", "--telemetry-port="))
    ]  # fmt: skip
    argv = [binary, *args, f"--kubeconfig={kubeconfig}", "--host=127.0.0.1", f"--port={port}",
            "--telemetry-host=127.0.0.1", f"--telemetry-port={telemetry}"]  # fmt: skip
    process = ManagedProcess("kube-state-metrics-as-deployed", argv, tmp_path)
    try:
        process.wait_http(f"http://127.0.0.1:{port}/healthz", ok=lambda r: r.status_code == 200)
        wanted = [
            'kube_deployment_status_replicas_available{namespace="obs-apps",deployment="frontend"}',
            'kube_statefulset_status_replicas_ready{namespace="obs-monitoring",statefulset="elasticsearch"}',
            'kube_daemonset_status_number_ready{namespace="obs-logging",daemonset="fluent-bit"}',
            'kube_pod_container_status_restarts_total{namespace="obs-apps"',
        ]

        def all_there():
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            return all(w in text for w in wanted)

        poll_until(all_there, f"kube-state-metrics to report {wanted}", 30, on_timeout=process.tail)
        log = process.log_path.read_text()
        assert "forbidden" not in log, process.tail()
    finally:
        process.stop()


# --- checkov --------------------------------------------------------------------------


def allowlist() -> list[dict]:
    return yaml.safe_load(ALLOWLIST.read_text())["allow"]


def test_every_checkov_allowlist_entry_has_a_reason():
    for entry in allowlist():
        assert set(entry) == {"check", "resources", "reason"}, entry
        assert len(entry["reason"].split()) >= 5, entry


def checkov_run(text: str, directory: Path) -> list[dict]:
    """checkov's failed checks on a render, offline (--skip-download)."""
    checkov = require_binary(checkov_binary())
    path = directory / "render.yaml"
    path.write_text(text)
    result = run(
        checkov, "--file", str(path), "--framework", "kubernetes", "--skip-download",
        "--output", "json", "--quiet", timeout=600, cwd=directory,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stdout + result.stderr
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    return [f for r in reports for f in r.get("results", {}).get("failed_checks", [])]


@pytest.fixture(scope="module")
def checkov_failures(render_text, tmp_path_factory) -> list[dict]:
    return checkov_run(render_text, tmp_path_factory.mktemp("checkov"))


def allowed(failure: dict) -> bool:
    return any(
        entry["check"] == failure["check_id"]
        and (entry["resources"] == "*" or failure["resource"] in entry["resources"])
        for entry in allowlist()
    )


def test_checkov_finds_nothing_outside_the_allowlist(checkov_failures):
    unexpected = [
        f"{f['check_id']} {f['resource']}: {f['check_name']}"
        for f in checkov_failures
        if not allowed(f)
    ]
    assert unexpected == []


def test_every_checkov_allowlist_entry_is_still_needed(checkov_failures):
    for entry in allowlist():
        assert any(
            f["check_id"] == entry["check"]
            and (entry["resources"] == "*" or f["resource"] in entry["resources"])
            for f in checkov_failures
        ), f"allow-list entry no longer needed: {entry}"


def test_checkov_reports_a_privileged_container_naming_its_workload(mutable, tmp_path):
    frontend = render.find(mutable, "Deployment", "frontend", "obs-apps")
    render.pod_spec(frontend)["containers"][0]["securityContext"]["privileged"] = True
    failures = checkov_run(render.dump([frontend]), tmp_path)
    assert ("CKV_K8S_16", "Deployment.obs-apps.frontend") in {
        (f["check_id"], f["resource"]) for f in failures
    }
    assert not all(allowed(f) for f in failures)
