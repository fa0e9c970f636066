"""The k8s/ render and the cross-reference checks run over it (tests/k8s/test_validate.py).

Each check takes the rendered objects and returns a list of problems, one sentence each
naming the object at fault, so that a test can assert "no problems" and a broken-on-purpose
copy can assert which problem appears. Reads no environment variables (the binaries'
locations come from obs_tools.common.versions, which reads OBS_STACK_CACHE).
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from obs_tools.common.paths import REPO
from obs_tools.common.versions import VERSIONS, kubectl_binary
from obs_tools.deploy.secrets import SECRETS

from tests.support.requirements import unavailable

KUSTOMIZATION = REPO / "k8s"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def kubectl() -> str:
    """The pinned kubectl of `scripts/bootstrap.sh k8s`, else the one on PATH (the fast
    lane needs only the Python bootstrap: a machine's kubectl renders k8s/ too, and
    `make validate` checks the pinned one); skipped, or failed in CI, when neither exists."""
    if kubectl_binary().is_file():
        return str(kubectl_binary())
    return shutil.which("kubectl") or unavailable(
        "kubectl is not installed; run `scripts/bootstrap.sh k8s`"
    )


def kustomize(directory: Path = KUSTOMIZATION) -> str:
    """`kubectl kustomize DIR` (kustomize is built into kubectl), as text."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"`kubectl kustomize {directory}` failed:\n{result.stderr}")
    return result.stdout


def load(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def dump(docs: Iterable[dict]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)


def ident(doc: dict) -> str:
    """`Kind namespace/name`, as every problem names its object."""
    meta = doc["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{doc['kind']} {where}{meta['name']}"


def find(docs: Iterable[dict], kind: str, name: str, namespace: str | None = None) -> dict:
    for doc in docs:
        meta = doc["metadata"]
        if doc["kind"] == kind and meta["name"] == name and meta.get("namespace") == namespace:
            return doc
    raise KeyError(f"{kind} {namespace}/{name} is not in the render")


def workloads(docs: Iterable[dict]) -> Iterator[dict]:
    return (doc for doc in docs if doc["kind"] in WORKLOAD_KINDS)


def pod_template(workload: dict) -> dict:
    """The pod template of a workload; a CronJob's is one level down, in its Job's."""
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]


def pod_spec(workload: dict) -> dict:
    return pod_template(workload)["spec"]


def containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def template_labels(workload: dict) -> dict[str, str]:
    return pod_template(workload)["metadata"].get("labels", {})


def template_annotations(workload: dict) -> dict[str, str]:
    return pod_template(workload)["metadata"].get("annotations", {})


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def by_kind(docs: Iterable[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


# --- Services <-> pods ------------------------------------------------------------------


def service_backends(docs: list[dict], service: dict) -> list[dict]:
    namespace = service["metadata"].get("namespace")
    selector = service["spec"].get("selector", {})
    return [
        w
        for w in workloads(docs)
        if w["metadata"].get("namespace") == namespace and matches(selector, template_labels(w))
    ]


def check_services(docs: list[dict]) -> list[str]:
    """Every Service selects a pod template, and each of its targetPorts is a port of a
    container there (by name, or by number)."""
    problems = []
    for service in by_kind(docs, "Service"):
        backends = service_backends(docs, service)
        if not backends:
            selector = service["spec"].get("selector", {})
            problems.append(f"{ident(service)}: selector {selector} matches no pod template")
            continue
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for workload in backends:
                declared = [p for c in containers(pod_spec(workload)) for p in c.get("ports", [])]
                if not any(target in (p.get("name"), p["containerPort"]) for p in declared):
                    problems.append(
                        f"{ident(service)} port {port.get('name', port['port'])}: targetPort "
                        f"{target!r} is not a container port of {ident(workload)}"
                    )
    return problems


# --- references from pods to ConfigMaps, Secrets, ServiceAccounts, PVCs ---------------------


def secret_table() -> dict[tuple[str, str], set[str]]:
    """The Secrets `make up` creates (tools/obs_tools/deploy/secrets.py), not in the render."""
    return {(s.namespace, s.name): {k.key for k in s.keys} for s in SECRETS}


def check_references(docs: list[dict]) -> list[str]:
    """Every ConfigMap, Secret (and key), ServiceAccount, PVC and volume a pod refers to
    exists: in the render, or for Secrets in tools/obs_tools/deploy/secrets.py SECRETS."""

    def names(kind: str) -> set[tuple[str, str]]:
        return {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in by_kind(docs, kind)}

    tables = {
        "ConfigMap": {
            (d["metadata"]["namespace"], d["metadata"]["name"]): {*d.get("data", {}),
                                                                  *d.get("binaryData", {})}
            for d in by_kind(docs, "ConfigMap")
        },
        "Secret": secret_table(),
    }  # fmt: skip
    accounts, claims = names("ServiceAccount"), names("PersistentVolumeClaim")
    problems = []
    for workload in workloads(docs):
        owner = ident(workload)
        namespace = workload["metadata"]["namespace"]
        spec = pod_spec(workload)
        account = spec.get("serviceAccountName")
        if account and (namespace, account) not in accounts:
            problems.append(f"{owner}: ServiceAccount {namespace}/{account} does not exist")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        templates = {
            t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])
        }
        # (who refers, kind, reference, keys it needs)
        refs: list[tuple[str, str, dict, list[str]]] = []
        for name, volume in volumes.items():
            sources = [volume, *volume.get("projected", {}).get("sources", [])]
            for source in sources:
                for kind, key in (("ConfigMap", "configMap"), ("Secret", "secret")):
                    if key in source:
                        ref = source[key]
                        items = [item["key"] for item in ref.get("items", [])]
                        refs.append((f"{owner} volume {name}", kind, ref, items))
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if (namespace, claim) not in claims:
                    problems.append(
                        f"{owner} volume {name}: PVC {namespace}/{claim} does not exist"
                    )
        for container in containers(spec):
            who = f"{owner} container {container['name']}"
            for env in container.get("env", []):
                for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    ref = env.get("valueFrom", {}).get(key)
                    if ref:
                        refs.append((f"{who} env {env['name']}", kind, ref, [ref["key"]]))
            for source in container.get("envFrom", []):
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in source:
                        refs.append((f"{who} envFrom", kind, source[key], []))
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volumes and mount["name"] not in templates:
                    problems.append(f"{who}: volumeMount {mount['name']!r} names no volume")
                volume = volumes.get(mount["name"], {})
                source = volume.get("configMap") or volume.get("secret")
                if mount.get("subPath") and source:
                    # A file of the volume: an item's path, else a key of the object.
                    items = [item["path"] for item in source.get("items", [])]
                    kind = "ConfigMap" if "configMap" in volume else "Secret"
                    keys = [] if mount["subPath"] in items else [mount["subPath"]]
                    refs.append((f"{who} volumeMount {mount['name']} subPath", kind, source, keys))
        for who, kind, ref, keys in refs:
            if ref.get("optional"):
                continue
            name = ref.get("name") or ref.get("secretName")
            present = tables[kind].get((namespace, name))
            if present is None:
                problems.append(f"{who}: {kind} {namespace}/{name} does not exist")
                continue
            problems += [
                f"{who}: {kind} {namespace}/{name} has no key {key!r}"
                for key in keys
                if key not in present
            ]
    return problems


# --- images -------------------------------------------------------------------------------


def images(docs: list[dict]) -> list[tuple[str, str]]:
    """(owner, image) for every container of every workload."""
    return [
        (f"{ident(w)} container {c['name']}", c["image"])
        for w in workloads(docs)
        for c in containers(pod_spec(w))
    ]


def split_image(image: str) -> tuple[str, str | None]:
    """(repository, tag or None); a digest counts as a tag."""
    if "@" in image:
        return image.split("@", 1)[0], image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        return image.rsplit(":", 1)[0], image.rsplit(":", 1)[1]
    return image, None


def check_images_pinned(docs: list[dict]) -> list[str]:
    problems = []
    for owner, image in images(docs):
        _, tag = split_image(image)
        if tag is None or tag == "latest":
            problems.append(f"{owner}: image {image} is not pinned to an exact tag")
    return problems


# The images whose version scripts/versions.env pins for the tests too: the deployed
# versions are the tested ones. Repository -> the tag it must have.
def expected_tags() -> dict[str, str]:
    es = VERSIONS["ELASTICSEARCH_VERSION"]
    exporter = VERSIONS["ELASTICSEARCH_EXPORTER_DEB_VERSION"].split("-")[0]
    return {
        "docker.io/jaegertracing/jaeger": VERSIONS["JAEGER_RELEASE"].removeprefix("v"),
        "jaegertracing/jaeger": VERSIONS["JAEGER_RELEASE"].removeprefix("v"),
        "docker.elastic.co/elasticsearch/elasticsearch": es,
        "docker.elastic.co/kibana/kibana": es,
        "quay.io/prometheus/prometheus": VERSIONS["PROMETHEUS_RELEASE"],
        "quay.io/prometheus/alertmanager": VERSIONS["ALERTMANAGER_VERSION"],
        "registry.k8s.io/kube-state-metrics/kube-state-metrics": VERSIONS[
            "KUBE_STATE_METRICS_VERSION"
        ],
        "quay.io/prometheuscommunity/elasticsearch-exporter": f"v{exporter}",
    }


def check_tested_versions(docs: list[dict]) -> list[str]:
    problems = []
    expected = expected_tags()
    for owner, image in images(docs):
        repository, tag = split_image(image)
        if repository in expected and tag != expected[repository]:
            problems.append(
                f"{owner}: image {image} is not the tested version {expected[repository]} "
                "(scripts/versions.env)"
            )
    return problems


# --- addresses: who talks to which Service on which port -----------------------------------

SVC_ADDRESS = re.compile(
    r"(?:https?://)?\b([a-z0-9](?:[a-z0-9-]*[a-z0-9])?)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?:(\d+)"
)


@dataclass(frozen=True)
class Address:
    owner: str  # who uses it, for the message
    service: str
    namespace: str
    port: int


def addresses_in(owner: str, text: str) -> list[Address]:
    return [
        Address(owner, service, namespace, int(port))
        for service, namespace, port in SVC_ADDRESS.findall(text)
    ]


def expand(value: str, env: dict[str, str | None]) -> str:
    """Fluent Bit's ${VAR} substitution."""
    return re.sub(r"\$\{(\w+)\}", lambda m: env.get(m[1]) or "", value)


def fluent_bit_output(docs: list[dict]) -> list[Address]:
    """Fluent Bit's es output Host/Port, with ${VAR} from the DaemonSet's env."""
    found = []
    for workload in by_kind(docs, "DaemonSet"):
        spec = pod_spec(workload)
        for container in spec["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            for volume in spec.get("volumes", []):
                name = volume.get("configMap", {}).get("name")
                if not name:
                    continue
                config_map = find(docs, "ConfigMap", name, workload["metadata"]["namespace"])
                for key, text in config_map.get("data", {}).items():
                    host = re.search(r"^\s*Host\s+(\S+)", text, re.M)
                    port = re.search(r"^\s*Port\s+(\S+)", text, re.M)
                    if not (host and port and re.search(r"^\s*Name\s+es\s*$", text, re.M)):
                        continue
                    host_value, port_value = expand(host[1], env), expand(port[1], env)
                    owner = f"{ident(workload)} ({key}: Host {host_value}, Port {port_value})"
                    parts = host_value.split(".")
                    if len(parts) >= 3 and parts[2] == "svc" and port_value.isdigit():
                        found.append(Address(owner, parts[0], parts[1], int(port_value)))
                    else:
                        found.append(Address(owner, host_value, "?", int(port_value or 0)))
    return found


def alertmanager_smarthost(docs: list[dict]) -> list[Address]:
    """smtp_smarthost of alertmanager.yml: a short name resolves in the pod's namespace."""
    found = []
    for config_map in by_kind(docs, "ConfigMap"):
        text = config_map.get("data", {}).get("alertmanager.yml")
        if not text:
            continue
        host, _, port = yaml.safe_load(text)["global"]["smtp_smarthost"].rpartition(":")
        parts = host.split(".")
        namespace = parts[1] if len(parts) > 1 else config_map["metadata"]["namespace"]
        found.append(
            Address(f"{ident(config_map)} (smtp_smarthost)", parts[0], namespace, int(port))
        )
    return found


def addresses(docs: list[dict]) -> list[Address]:
    """Every in-cluster address the stack's configuration names: env values and
    arguments of every container, every ConfigMap's files (Grafana's datasources,
    Prometheus' alerting, ...), Fluent Bit's output and Alertmanager's SMTP host."""
    found = []
    for workload in workloads(docs):
        for container in containers(pod_spec(workload)):
            owner = f"{ident(workload)} container {container['name']}"
            for env in container.get("env", []):
                found += addresses_in(f"{owner} env {env['name']}", env.get("value") or "")
            for arg in container.get("args", []) + container.get("command", []):
                found += addresses_in(f"{owner} args", arg)
    for config_map in by_kind(docs, "ConfigMap"):
        for key, text in config_map.get("data", {}).items():
            found += addresses_in(f"{ident(config_map)} {key}", text)
    return found + fluent_bit_output(docs) + alertmanager_smarthost(docs)


def check_addresses(docs: list[dict]) -> list[str]:
    problems = []
    services = {
        (s["metadata"]["namespace"], s["metadata"]["name"]): s for s in by_kind(docs, "Service")
    }
    for address in addresses(docs):
        service = services.get((address.namespace, address.service))
        if service is None:
            problems.append(f"{address.owner}: no Service {address.namespace}/{address.service}")
        elif address.port not in [p["port"] for p in service["spec"]["ports"]]:
            problems.append(
                f"{address.owner}: Service {address.namespace}/{address.service} has no port "
                f"{address.port}"
            )
    return problems


# --- Prometheus discovery ----------------------------------------------------------------

# The job names the rules and dashboards rely on (docs/k8s contract).
SCRAPE_JOBS = {
    "frontend", "backend", "kube-state-metrics", "fluent-bit", "jaeger", "elasticsearch",
    "alertmanager", "prometheus",
}  # fmt: skip


def prometheus_config(docs: list[dict]) -> tuple[dict, dict]:
    """(the ConfigMap holding prometheus.yml, the parsed prometheus.yml)."""
    for config_map in by_kind(docs, "ConfigMap"):
        text = config_map.get("data", {}).get("prometheus.yml")
        if text:
            return config_map, yaml.safe_load(text)
    raise AssertionError("no ConfigMap in the render has a prometheus.yml")


def _relabel_uses(job: dict, source: str, action: str) -> bool:
    return any(
        rule.get("action", "replace") == action and source in rule.get("source_labels", [])
        for rule in job.get("relabel_configs", [])
    )


def job_targets(docs: list[dict], job: dict) -> list[dict]:
    """The workloads whose pods a kubernetes_sd (role pod) job discovers: in its
    namespaces, matching its label selectors."""
    found = []
    for sd in job.get("kubernetes_sd_configs", []):
        if sd.get("role") != "pod":
            continue
        namespaces = sd.get("namespaces", {}).get("names")
        selectors = {}
        for selector in sd.get("selectors", []):
            for term in selector.get("label", "").split(","):
                if "=" in term:
                    key, _, value = term.partition("=")
                    selectors[key.strip()] = value.strip()
        for workload in workloads(docs):
            namespace = workload["metadata"]["namespace"]
            if namespaces and namespace not in namespaces:
                continue
            if all(template_labels(workload).get(k) == v for k, v in selectors.items()):
                found.append(workload)
    return found


def check_discovery(docs: list[dict]) -> list[str]:
    """Each scrape job finds pod templates that carry what its relabelling keeps on
    (the prometheus.io/scrape annotation; prometheus.io/port naming a container port),
    every pod template that asks to be scraped is some job's, and the job names are the
    ones the rules and dashboards use."""
    problems = []
    config_map, config = prometheus_config(docs)
    jobs = {job["job_name"]: job for job in config.get("scrape_configs", [])}
    if set(jobs) != SCRAPE_JOBS:
        problems.append(
            f"{ident(config_map)}: scrape jobs {sorted(jobs)} are not {sorted(SCRAPE_JOBS)}"
        )
    scraped = set()
    for name, job in jobs.items():
        targets = job_targets(docs, job)
        if not targets:
            problems.append(f"{ident(config_map)}: job {name} discovers no pod template")
        for workload in targets:
            scraped.add(ident(workload))
            annotations = template_annotations(workload)
            scrape_key = "__meta_kubernetes_pod_annotation_prometheus_io_scrape"
            if (
                _relabel_uses(job, scrape_key, "keep")
                and annotations.get("prometheus.io/scrape") != "true"
            ):
                problems.append(
                    f"{ident(workload)}: job {name} keeps only pods annotated "
                    'prometheus.io/scrape: "true"'
                )
            port_key = "__meta_kubernetes_pod_container_port_number"
            numbers = {
                str(p["containerPort"])
                for c in pod_spec(workload)["containers"]
                for p in c.get("ports", [])
            }
            if (
                _relabel_uses(job, port_key, "keepequal")
                and annotations.get("prometheus.io/port") not in numbers
            ):
                problems.append(
                    f"{ident(workload)}: job {name} scrapes the container port named by "
                    f"prometheus.io/port ({annotations.get('prometheus.io/port')!r}), which is "
                    f"none of {sorted(numbers)}"
                )
    for workload in workloads(docs):
        if template_annotations(workload).get("prometheus.io/scrape") == "true" and (
            ident(workload) not in scraped
        ):
            problems.append(f"{ident(workload)}: asks to be scraped, and no scrape job finds it")
    return problems


# --- probes and version labels -------------------------------------------------------------


def check_probes(docs: list[dict]) -> list[str]:
    """Every probe's named port is a port of its own container (the API server accepts any
    well-formed name; the kubelet would fail the probe forever)."""
    problems = []
    for workload in workloads(docs):
        for container in containers(pod_spec(workload)):
            names = {p.get("name") for p in container.get("ports", [])}
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = container.get(kind, {})
                handler = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc")
                port = (handler or {}).get("port")
                if isinstance(port, str) and port not in names:
                    problems.append(
                        f"{ident(workload)} container {container['name']}: {kind} port "
                        f"{port!r} is not one of its ports {sorted(n for n in names if n)}"
                    )
    return problems


def check_version_labels(docs: list[dict]) -> list[str]:
    """app.kubernetes.io/version (on the workload and its pods) is the tag of an image the
    pods run, so that `make status` and dashboards show what really runs."""
    problems = []
    for workload in workloads(docs):
        tags = {
            (split_image(c["image"])[1] or "").removeprefix("v")
            for c in containers(pod_spec(workload))
        }
        for where, labels in (
            ("labels", workload["metadata"].get("labels", {})),
            ("pod labels", template_labels(workload)),
        ):
            version = labels.get("app.kubernetes.io/version")
            if version is not None and version.removeprefix("v") not in tags:
                problems.append(
                    f"{ident(workload)}: {where} app.kubernetes.io/version {version!r} is not "
                    f"the tag of any of its images {sorted(tags)}"
                )
    return problems


# --- Fluent Bit's tail <-> the pods whose logs it must collect -------------------------------

# The kubelet's name for a container's log file (a symlink into the runtime's logs).
LOG_NAME = "/var/log/containers/{pod}_{namespace}_{container}-{id}.log"
# Whose logs Fluent Bit ships (the contract): the services'.
LOGGED_NAMESPACES = ("obs-apps",)


def tail_paths(docs: list[dict]) -> list[tuple[str, str]]:
    """(owner, Path) of every tail input in Fluent Bit's ConfigMaps."""
    found = []
    for config_map in by_kind(docs, "ConfigMap"):
        for key, text in config_map.get("data", {}).items():
            for section in re.split(r"^\s*\[", text, flags=re.M):
                if re.match(r"INPUT\]", section) and re.search(
                    r"^\s*Name\s+tail\s*$", section, re.M
                ):
                    path = re.search(r"^\s*Path\s+(\S+)", section, re.M)
                    if path:
                        found.append((f"{ident(config_map)} {key}", path[1]))
    return found


def check_log_collection(docs: list[dict]) -> list[str]:
    """Every container of every pod in LOGGED_NAMESPACES writes a log file that a tail
    Path of Fluent Bit matches."""
    paths = tail_paths(docs)
    if not paths:
        return ["no Fluent Bit tail input in any ConfigMap of the render"]
    problems = []
    for workload in workloads(docs):
        namespace = workload["metadata"]["namespace"]
        if namespace not in LOGGED_NAMESPACES:
            continue
        for container in pod_spec(workload)["containers"]:
            log = LOG_NAME.format(
                pod=f"{workload['metadata']['name']}-7d9f8b6c5-x2x4q", namespace=namespace,
                container=container["name"], id="0" * 64,
            )  # fmt: skip
            if not any(fnmatch.fnmatchcase(log, path) for _, path in paths):
                problems.append(
                    f"{ident(workload)} container {container['name']}: its log {log} matches "
                    f"no tail Path ({'; '.join(f'{o}: {p}' for o, p in paths)})"
                )
    return problems
