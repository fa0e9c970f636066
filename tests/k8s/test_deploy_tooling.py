"""tools/obs_tools/deploy (`make up`, `status`, `open`, `down`) without a cluster: resource sums,
readiness rules, Secret values, the registry overlay (real `kubectl kustomize`), and
the preflight's messages when tools are missing. The rollout against a real API server
is tested where the control plane runs.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from obs_tools.common.paths import REPO
from obs_tools.deploy import cli, resources, rollout
from obs_tools.deploy import deployment as k8s_main
from obs_tools.deploy import secrets as k8s_secrets
from obs_tools.deploy.cli import parse
from obs_tools.deploy.contract import IMAGES
from obs_tools.deploy.deployment import Deployment, _immutable_jobs

from tests.k8s import render


def deployment(name, replicas, containers, init=None, kind="Deployment", **extra):
    spec = {"template": {"spec": {"containers": containers, "initContainers": init or []}}}
    if replicas is not None:
        spec["replicas"] = replicas
    spec.update(extra)
    return {"kind": kind, "metadata": {"name": name, "namespace": "obs-apps"}, "spec": spec}


def container(cpu=None, memory=None):
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {"name": "c", "resources": {"requests": requests}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("250m", 0.25), ("2", 2), ("1.5", 1.5), ("512Mi", 512 * 2**20), ("1Gi", 2**30),
     ("500M", 5e8), ("1e3", 1000), ("10Gi", 10 * 2**30)],
)  # fmt: skip
def test_quantities(text, expected):
    assert resources.quantity(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["512MiBs", "", "1.2.3x", "Gi"])
def test_bad_quantities_are_refused(bad):
    with pytest.raises(ValueError, match="quantity"):
        resources.quantity(bad)


def test_render_needs_sums_replicas_init_containers_daemonsets_and_volumes():
    docs = [
        deployment("frontend", 2, [container("100m", "128Mi"), container("50m", "64Mi")]),
        # Init container bigger than the main one: it sets the pod's request.
        deployment("backend", None, [container("100m", "128Mi")], init=[container("500m", "1Mi")]),
        deployment("fluent-bit", None, [container("100m", "100Mi")], kind="DaemonSet"),
        deployment(
            "elasticsearch", 1, [container("1", "2Gi")], kind="StatefulSet",
            volumeClaimTemplates=[{"spec": {"resources": {"requests": {"storage": "10Gi"}}}}],
        ),
        {"kind": "PersistentVolumeClaim", "metadata": {"name": "grafana"},
         "spec": {"resources": {"requests": {"storage": "1Gi"}}}},
        {"kind": "ConfigMap", "metadata": {"name": "x"}},
    ]  # fmt: skip
    needs = resources.render_needs(yaml.safe_dump_all(docs), nodes=3)
    assert needs.cpu_m == pytest.approx(2 * 150 + 500 + 3 * 100 + 1000)
    assert needs.memory == pytest.approx((2 * 192 + 128 + 3 * 100) * 2**20 + 2 * 2**30)
    assert needs.storage == pytest.approx(11 * 2**30)


def test_minikube_sizing_says_how_it_was_computed():
    needs = resources.Needs(cpu_m=2000, memory=3 * 2**30, storage=10 * 2**30)
    sizing = resources.minikube_sizing(needs)
    # (2000 + 750) * 1.25 = 3438m; (3072 + 170) * 1.25 + 1024 = 5076 MiB -> 5120 MB.
    assert (sizing.cpus, sizing.memory_mb) == (4, 5120)
    assert sizing.disk_mb == 22 * 1024
    assert "2000m" in sizing.explanation and "3438m" in sizing.explanation


def node(cpu, memory, ready=True):
    return {
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        }
    }


def pod(cpu, memory, labels=None, phase="Running"):
    return {
        "metadata": {"labels": labels or {}},
        "spec": {"containers": [container(cpu, memory)]},
        "status": {"phase": phase},
    }


def test_existing_cluster_fits_or_says_what_is_short():
    needs = resources.Needs(cpu_m=1000, memory=2**30)
    nodes = [node("2", "4Gi"), node("8", "64Gi", ready=False)]
    assert resources.cluster_shortfall(needs, nodes, [pod("500m", "1Gi")]) == []
    problems = resources.cluster_shortfall(needs, nodes, [pod("1500m", "1Gi")])
    assert len(problems) == 1 and problems[0].startswith("CPU")
    # Our own pods (a previous deploy) and finished pods do not count as used.
    ours = pod("1500m", "3Gi", labels={"app.kubernetes.io/part-of": "obs-stack"})
    assert (
        resources.cluster_shortfall(needs, nodes, [ours, pod("2", "3Gi", phase="Succeeded")]) == []
    )


def obj(kind, spec=None, status=None, generation=1):
    return {
        "kind": kind,
        "metadata": {"name": "x", "namespace": "obs-apps", "generation": generation},
        "spec": spec or {},
        "status": {"observedGeneration": 1, **(status or {})},
    }


def deploy(desired, replicas, updated, available, generation=1):
    status = {"replicas": replicas, "updatedReplicas": updated, "availableReplicas": available}
    return obj("Deployment", {"replicas": desired}, status, generation)


def sts(ready, updated, current, update):
    status = {"readyReplicas": ready, "updatedReplicas": updated}
    status.update(currentRevision=current, updateRevision=update)
    return obj("StatefulSet", {"replicas": 1}, status)


def ds(desired, ready, updated, available):
    status = {"desiredNumberScheduled": desired, "numberReady": ready}
    status.update(updatedNumberScheduled=updated, numberAvailable=available)
    return obj("DaemonSet", {}, status)


@pytest.mark.parametrize(
    ("workload", "done"),
    [
        (deploy(2, 2, 2, 2), True),
        (deploy(2, 2, 2, 1), False),
        # A new spec the controller has not seen yet is not "done", whatever the counts.
        (deploy(1, 1, 1, 1, generation=2), False),
        # An old ReplicaSet's pod still running.
        (deploy(1, 2, 1, 1), False),
        (sts(1, 1, "a", "a"), True),
        (sts(1, 0, "a", "b"), False),
        (ds(1, 1, 1, 1), True),
        (ds(2, 1, 2, 1), False),
        (obj("Job", {"completions": 1}, {"succeeded": 1}), True),
        (obj("Job", {}, {"active": 1}), False),
    ],
)
def test_workload_readiness_follows_rollout_status(workload, done):
    assert rollout.workload_state(workload).done is done


def test_a_failed_job_is_reported_as_failed():
    condition = {"type": "Failed", "status": "True"}
    condition.update(reason="BackoffLimitExceeded", message="gave up")
    job = obj("Job", {}, {"failed": 7, "conditions": [condition]})
    state = rollout.workload_state(job)
    assert not state.done and state.failed == "BackoffLimitExceeded: gave up"


def test_secret_values_come_from_env_then_cluster_then_default_then_random():
    spec = k8s_secrets.SecretSpec("ns", "s", (
        k8s_secrets.Key("a", "OBS_TEST_A"), k8s_secrets.Key("b", "OBS_TEST_B"),
        k8s_secrets.Key("c", "OBS_TEST_C", default="fixed"), k8s_secrets.Key("d", "OBS_TEST_D"),
        k8s_secrets.Key("e", same_as=("other", "t", "k")),
    ))  # fmt: skip
    values, sources = k8s_secrets.choose_values(
        spec,
        existing={"a": "old-a", "b": "old-b"},
        environ={"OBS_TEST_A": "from-env"},
        resolved={("other", "t", "k"): "shared"},
        token=lambda n: f"random{n}",
    )
    assert values == {"a": "from-env", "b": "old-b", "c": "fixed", "d": "random24", "e": "shared"}
    assert sources["a"] == "from $OBS_TEST_A" and sources["b"] == "kept"
    assert sources["d"] == "random"


def test_secret_table_is_consistent():
    created = {(s.namespace, s.name, k.key) for s in k8s_secrets.SECRETS for k in s.keys}
    for spec in k8s_secrets.SECRETS:
        for key in spec.keys:
            if key.same_as:
                # Resolved in table order: the source must come first.
                assert key.same_as in created
    grafana = next(s for s in k8s_secrets.SECRETS if s.name == "grafana-admin")
    password = next(k for k in grafana.keys if k.key == "admin-password")
    assert password.default is None, "Grafana's password must be random unless given"


class RecordingKubectl:
    """Stands in for kubectl where these tests need no cluster: records every call."""

    def __init__(self):
        self.calls = []

    def run(self, *args, stdin=None, timeout=60, check=True):
        self.calls.append((args, stdin))
        return subprocess.CompletedProcess(args, 0, "", "")


def test_secrets_go_to_kubectl_on_stdin_and_never_to_the_terminal(capsys):
    kubectl = RecordingKubectl()
    environ = {"GRAFANA_ADMIN_PASSWORD": "s3cret-from-env"}
    k8s_secrets.ensure_secrets(kubectl, print, environ=environ)
    out = capsys.readouterr().out
    applied = [json.loads(stdin) for args, stdin in kubectl.calls if args[0] == "apply"]
    assert {(m["metadata"]["namespace"], m["metadata"]["name"]) for m in applied} == {
        (s.namespace, s.name) for s in k8s_secrets.SECRETS
    }
    assert all(m["metadata"]["labels"]["app.kubernetes.io/part-of"] == "obs-stack" for m in applied)
    assert "s3cret-from-env" not in out
    assert all("s3cret" not in " ".join(args) for args, _ in kubectl.calls)
    assert "admin-password: from $GRAFANA_ADMIN_PASSWORD" in out
    k8s_secrets.ensure_secrets(RecordingKubectl(), print, show=True, environ=environ)
    assert "s3cret-from-env" in capsys.readouterr().out


def test_render_secret_references_must_be_in_the_table():
    def env(secret, key, **extra):
        return {"name": "V", "valueFrom": {"secretKeyRef": {"name": secret, "key": key, **extra}}}

    grafana = {
        "name": "g",
        "env": [
            env("grafana-admin", "admin-password"),
            env("grafana-admin", "typo"),
            env("nope", "k", optional=True),
        ],
        "envFrom": [{"secretRef": {"name": "unknown-secret"}}],
    }
    docs = [deployment("grafana", 1, [grafana])]
    docs[0]["metadata"]["namespace"] = "obs-monitoring"
    problems = k8s_secrets.not_in_table(yaml.safe_dump_all(docs))
    assert problems == [
        "key 'typo' of Secret obs-monitoring/grafana-admin",
        "Secret obs-monitoring/unknown-secret",
    ]


def test_registry_overlay_renames_the_service_images(tmp_path):
    render.kubectl()
    base = tmp_path / "k8s"
    base.mkdir()
    (base / "kustomization.yaml").write_text("resources: [app.yaml]\n")
    (base / "app.yaml").write_text(yaml.safe_dump_all([
        deployment(image.service, 1, [{"name": "app", "image": f"{image.name}:1.0.0"}])
        for image in IMAGES
    ]))  # fmt: skip
    args = parse(["up", "--skip-minikube", "--registry", "registry.example:5000/team/",
                  "--manifests", str(base)])  # fmt: skip
    with Deployment(args).kustomization() as overlay:
        rendered = subprocess.run(
            ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True
        ).stdout
    images = sorted(
        d["spec"]["template"]["spec"]["containers"][0]["image"]
        for d in yaml.safe_load_all(rendered)
    )
    assert images == [
        "registry.example:5000/team/obs-backend:1.0.0",
        "registry.example:5000/team/obs-frontend:1.0.0",
    ]


def run_cli(*args, path: str):
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        [sys.executable, "-m", "obs_tools.deploy", *args], capture_output=True, text=True, env=env,
        timeout=60, cwd=REPO,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "tool"),
    [(["up"], "minikube"), (["up", "--skip-minikube"], "kubectl"), (["status"], "kubectl")],
)
def test_missing_tools_give_a_clear_message_and_exit_1(tmp_path, args, tool):
    # An empty PATH directory, plus a kubectl when only minikube should be missing.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if tool == "minikube":
        (bin_dir / "kubectl").write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / "kubectl").chmod(0o755)
    result = run_cli(*args, path=str(bin_dir))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {tool} is not installed")
    assert "Traceback" not in result.stderr + result.stdout


def test_a_pod_bigger_than_every_node_is_refused_even_if_the_total_fits():
    docs = [deployment("elasticsearch", 1, [container("500m", "6Gi")], kind="StatefulSet")]
    needs = resources.render_needs(yaml.safe_dump_all(docs))
    nodes = [node("4", "4Gi"), node("4", "4Gi")]
    problems = resources.cluster_shortfall(needs, nodes, [])
    assert problems == [
        "StatefulSet/obs-apps/elasticsearch: one pod requests 500m CPU and 6144 MiB, more than"
        " the largest node has allocatable (4000m, 4096 MiB): it could never be scheduled"
    ]
    assert resources.cluster_shortfall(needs, [node("4", "8Gi")], []) == []


def test_claims_need_a_default_storage_class():
    docs = [
        deployment(
            "elasticsearch", 1, [container("1", "1Gi")], kind="StatefulSet",
            volumeClaimTemplates=[{"metadata": {"name": "data"},
                                   "spec": {"resources": {"requests": {"storage": "5Gi"}}}}],
        )
    ]  # fmt: skip
    render_yaml = yaml.safe_dump_all(docs)
    plain = {"metadata": {"name": "slow", "annotations": {}}}
    default = {"metadata": {"name": "standard", "annotations": {resources.DEFAULT_CLASS: "true"}}}
    (problem,) = resources.storage_shortfall(render_yaml, [plain])
    assert "StatefulSet/obs-apps/elasticsearch volume claim 'data'" in problem
    assert resources.storage_shortfall(render_yaml, [plain, default]) == []
    # A claim that names its class needs no default.
    docs[0]["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] = "slow"
    assert resources.storage_shortfall(yaml.safe_dump_all(docs), [plain]) == []


def test_a_machine_too_small_for_the_minikube_node_is_named(tmp_path):
    fits = resources.Sizing(cpus=1, memory_mb=1, disk_mb=1, explanation="")
    assert resources.host_shortfall(fits, tmp_path) == []
    huge = resources.Sizing(cpus=10**6, memory_mb=10**9, disk_mb=10**12, explanation="")
    problems = resources.host_shortfall(huge, tmp_path)
    assert [p.split(":")[0] for p in problems] == ["CPUs", "memory", "disk"]
    assert f"under {tmp_path}" in problems[2]


def test_jobs_refused_as_immutable_are_found_in_kubectl_errors():
    # The API server's message, as `kubectl apply` printed it in tests/k8s/test_rollout.py.
    stderr = (
        'The Job "kibana-import" is invalid: spec.template: Invalid value: '
        "core.PodTemplateSpec{...}: field is immutable\n"
        'The Deployment "web" is invalid: spec.selector: Invalid value: {}: field is immutable'
    )
    assert _immutable_jobs(stderr) == ["kibana-import"]
    assert _immutable_jobs("error: something else") == []


def test_the_secrets_table_is_exactly_what_k8s_refers_to():
    """Both ways: preflight refuses a render that refers to a Secret key the table does
    not create, and the table creates nothing the manifests do not use."""
    rendered = render.kustomize()
    assert k8s_secrets.not_in_table(rendered) == []
    referenced = k8s_secrets.referenced_secret_keys(rendered)
    created = {(s.namespace, s.name, k.key) for s in k8s_secrets.SECRETS for k in s.keys}
    assert created == referenced
    # Breaking it on purpose: a key the manifests would need that the table lacks.
    broken = rendered.replace("key: grafana-password", "key: grafana-pasword", 1)
    assert k8s_secrets.not_in_table(broken) == [
        "key 'grafana-pasword' of Secret obs-monitoring/elasticsearch-credentials"
    ]


def quick_start() -> str:
    page = (REPO / "docs" / "kubernetes.md").read_text()
    start = page.index("## Quick start on Minikube")
    return page[start : page.index("\n## ", start + 1)]


def test_the_kubernetes_quick_start_matches_the_code():
    """Its numbers are what the preflight computes from the render now; its commands are
    Makefile targets and options `obs-deploy` has."""
    section = quick_start()
    rendered = render.kustomize()
    needs = resources.render_needs(rendered, nodes=1)
    sizing = resources.minikube_sizing(needs)
    for text in (
        f"render {needs.cpu_m:.0f}m",
        f"render {resources.mib(needs.memory)}",
        f"volume claims {resources.mib(needs.storage)}",
        f"--cpus={sizing.cpus}",
        f"--memory={sizing.memory_mb}",
        f"--disk-size={sizing.disk_mb}mb",
        f"at least {sizing.cpus} CPUs, {sizing.memory_mb} MB of memory",
        f"{sizing.disk_mb} MB of disk",
    ):
        assert text in section, text
    for image in IMAGES:
        tag = f"{image.name}:{k8s_main.image_tag(image.service)}"
        # The frontend's build command is shown in full; the backend's is "the same".
        if image.service == "frontend":
            # The tag: the version, then a hash of the sources (minikube.content_tag).
            assert f"-t {tag}-<hash> -f {image.dockerfile} services" in section
        assert image.name in section
    targets = set(re.findall(r"^([a-z-]+):", (REPO / "Makefile").read_text(), re.M))
    used = set(re.findall(r"(?:^|`)make ([a-z-]+)", section, re.M))
    assert used and used <= targets, used - targets
    options = {a for action in cli.parser()._actions for a in action.option_strings}
    # Options in UP_ARGS="..." and in `--option` prose (not other tools' flags).
    shown = {
        option
        for args in re.findall(r'UP_ARGS="([^"]*)"', section)
        for option in re.findall(r"--[a-z-]+", args)
    } | set(re.findall(r"`(--[a-z-]+)", section))
    shown -= {"--cpus", "--memory", "--disk-size"}  # minikube start's, in the sizing table
    assert len(shown) > 5 and shown <= options, shown - options


def inner_waits(rendered: str) -> dict[str, float]:
    """The longest each component may take on its own before Kubernetes or a Job gives
    up: a container's startupProbe budget, and the Job scripts' WAIT_SECONDS (the value
    set in the Job, else the script's default)."""
    waits = {}
    scripts = REPO / "k8s" / "monitoring" / "files"
    for doc in yaml.safe_load_all(rendered):
        pod = ((doc or {}).get("spec") or {}).get("template", {}).get("spec") or {}
        for c in pod.get("containers") or []:
            probe = c.get("startupProbe")
            if probe:
                waits[f"{doc['metadata']['name']}/{c['name']} startupProbe"] = probe.get(
                    "initialDelaySeconds", 0
                ) + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
            if doc["kind"] != "Job":
                continue
            env = {e["name"]: e.get("value") for e in c.get("env") or []}
            script = scripts / f"{doc['metadata']['name']}.sh"
            default = re.search(
                r"^WAIT_SECONDS=\$\{WAIT_SECONDS:-(\d+)\}$", script.read_text(), re.M
            )
            assert default, f"{script.name} has no WAIT_SECONDS default"
            waits[f"job/{doc['metadata']['name']} WAIT_SECONDS"] = float(
                env.get("WAIT_SECONDS") or default.group(1)
            )
    return waits


def test_the_default_rollout_timeout_outlasts_every_inner_wait():
    """`make up` must not give up on a stack that is still allowed to come up: its
    default --timeout exceeds the longest startupProbe budget and Job wait, with room
    for a first run's image pulls (minutes on Minikube)."""
    rendered = render.kustomize()
    waits = inner_waits(rendered)
    # The ones this check exists for are found (Kibana's probe, the import's wait).
    assert waits["kibana/kibana startupProbe"] == 600
    assert waits["job/kibana-import WAIT_SECONDS"] == 900
    pulls = 240
    longest = max(waits, key=waits.get)
    assert parse(["up"]).timeout >= waits[longest] + pulls, (longest, waits[longest])
    # Breaking it on purpose: the old default is shorter than the import's wait.
    assert waits[longest] + pulls > 600
    page = (REPO / "docs" / "kubernetes.md").read_text()
    assert f"{k8s_main.DEFAULT_TIMEOUT:g} by default" in page


def test_down_names_the_hostpath_fluent_bit_keeps_its_state_in():
    """`down` tells what it leaves on the node: the path must be the DaemonSet's."""
    rendered = render.kustomize()
    (daemonset,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "DaemonSet"]
    (container,) = daemonset["spec"]["template"]["spec"]["containers"]
    volumes = {v["name"]: v for v in daemonset["spec"]["template"]["spec"]["volumes"]}
    state = next(m for m in container["volumeMounts"] if m["mountPath"] == "/var/fluent-bit/state")
    assert volumes[state["name"]]["hostPath"]["path"] == k8s_main.FLUENT_BIT_STATE
    note = k8s_main.state_left_note("obs-test")
    assert f"minikube -p obs-test ssh -- sudo rm -rf {k8s_main.FLUENT_BIT_STATE}" in note
    page = (REPO / "docs" / "kubernetes.md").read_text()
    assert f"minikube -p obs-stack ssh -- sudo rm -rf {k8s_main.FLUENT_BIT_STATE}" in page


class ClusterSecretsKubectl(RecordingKubectl):
    """RecordingKubectl whose cluster already holds Secrets: `get secret` answers them."""

    def __init__(self, existing: dict[tuple[str, str], dict[str, str]]):
        super().__init__()
        self.existing = existing

    def run(self, *args, stdin=None, timeout=60, check=True):
        self.calls.append((args, stdin))
        if args[:2] == ("get", "secret"):
            data = self.existing.get((args[args.index("-n") + 1], args[2]))
            out = json.dumps({"data": {k: base64.b64encode(v.encode()).decode()
                                       for k, v in data.items()}}) if data else ""  # fmt: skip
            return subprocess.CompletedProcess(args, 0, out, "")
        return subprocess.CompletedProcess(args, 0, "", "")


def deployed_secrets() -> dict[tuple[str, str], dict[str, str]]:
    """The Secrets of a deployment, each value old-<secret>-<key>; a copy (same_as)
    holds its source's value, as `make up` wrote it."""

    def old(name: str, key) -> str:
        return f"old-{key.same_as[1]}-{key.same_as[2]}" if key.same_as else f"old-{name}-{key.key}"

    return {
        (s.namespace, s.name): {k.key: old(s.name, k) for k in s.keys} for s in k8s_secrets.SECRETS
    }


def test_a_credential_changed_through_the_environment_is_reported_as_changed(capsys):
    kubectl = ClusterSecretsKubectl(deployed_secrets())
    environ = {
        "ELASTICSEARCH_FLUENT_BIT_PASSWORD": "new-fb",
        "GRAFANA_ADMIN_USER": "old-grafana-admin-admin-user",
    }
    changed = k8s_secrets.ensure_secrets(kubectl, print, environ=environ)
    # The copy in obs-logging changes with it; an unchanged variable is no change.
    assert changed == {
        ("obs-monitoring", "elasticsearch-credentials", "fluent-bit-password"),
        ("obs-logging", "fluent-bit-elasticsearch", "password"),
    }
    assert "fluent-bit-password: from $ELASTICSEARCH_FLUENT_BIT_PASSWORD, changed" in (
        capsys.readouterr().out
    )
    # Kept values and a first deployment change nothing.
    assert k8s_secrets.ensure_secrets(ClusterSecretsKubectl(deployed_secrets()), print) == set()
    assert k8s_secrets.ensure_secrets(RecordingKubectl(), print, environ=environ) == set()


def test_changing_the_elastic_password_of_a_deployment_is_refused_before_any_write():
    kubectl = ClusterSecretsKubectl(deployed_secrets())
    with pytest.raises(k8s_main.DeployError) as refused:
        k8s_secrets.ensure_secrets(kubectl, print, environ={"ELASTIC_PASSWORD": "new"})
    assert str(refused.value).startswith(
        "$ELASTIC_PASSWORD differs from elastic-password in the deployed Secret "
        "obs-monitoring/elasticsearch-credentials, and it cannot change: Elasticsearch "
    )
    assert "Nothing was changed" in str(refused.value)
    assert [args for args, _ in kubectl.calls if args[0] != "get"] == []
    # The same value, or a first deployment, is fine.
    same = {"ELASTIC_PASSWORD": "old-elasticsearch-credentials-elastic-password"}
    assert k8s_secrets.ensure_secrets(ClusterSecretsKubectl(deployed_secrets()), print,
                                      environ=same) == set()  # fmt: skip
    k8s_secrets.ensure_secrets(RecordingKubectl(), print, environ={"ELASTIC_PASSWORD": "new"})


CHANGES = {
    "grafana-password": (
        {("obs-monitoring", "elasticsearch-credentials", "grafana-password")},
        [("Job", "obs-monitoring", "elasticsearch-setup"),
         ("Deployment", "obs-monitoring", "elasticsearch-exporter"),
         ("Deployment", "obs-monitoring", "grafana")],
    ),
    "fluent-bit-password": (
        {("obs-monitoring", "elasticsearch-credentials", "fluent-bit-password"),
         ("obs-logging", "fluent-bit-elasticsearch", "password")},
        [("DaemonSet", "obs-logging", "fluent-bit"),
         ("Job", "obs-monitoring", "elasticsearch-setup")],
    ),
    "kibana-system-password": (
        {("obs-monitoring", "elasticsearch-credentials", "kibana-system-password")},
        [("Job", "obs-monitoring", "elasticsearch-setup"),
         ("Deployment", "obs-monitoring", "kibana")],
    ),
    "encryption-key": (
        {("obs-monitoring", "kibana-encryption-keys", "encryption-key")},
        [("Deployment", "obs-monitoring", "kibana")],
    ),
    "smtp-password": (
        {("obs-monitoring", "alertmanager-smtp", "smtp-password")},
        [("Deployment", "obs-monitoring", "alertmanager")],
    ),
    "admin-password": (
        {("obs-monitoring", "grafana-admin", "admin-password")},
        [("Deployment", "obs-monitoring", "grafana")],
    ),
}  # fmt: skip


@pytest.mark.parametrize("key", CHANGES)
def test_a_changed_credential_reaches_exactly_the_workloads_that_read_it(key):
    """From the render: the Jobs that re-run (the setup Job sets the users' passwords in
    Elasticsearch) and the workloads restarted, and no other."""
    rendered = render.kustomize()
    changed, expected = CHANGES[key]
    assert sorted(k8s_secrets.consumers(rendered, changed)) == sorted(expected)


def test_up_reruns_the_setup_job_before_the_apply_and_restarts_readers_after(monkeypatch, capsys):
    """The order `up` runs things in when a credential changed, with a kubectl that
    records every call and a cluster that already holds the Secrets."""
    rendered = render.kustomize()
    kubectl = ClusterSecretsKubectl(deployed_secrets())
    deployment = Deployment.__new__(Deployment)
    deployment.args = parse(["up", "--skip-minikube", "--skip-build"])
    deployment.minikube = None
    deployment.manifests = REPO / "k8s"
    deployment.kubectl = kubectl
    monkeypatch.setattr(k8s_main, "render", lambda kubectl, manifests: rendered)
    monkeypatch.setattr(deployment, "preflight", lambda: None)
    monkeypatch.setattr(k8s_main.rollout, "wait_ready", lambda *a, **k: [])
    monkeypatch.setattr(k8s_main, "print_access", lambda profile: None)
    monkeypatch.setenv("ELASTICSEARCH_GRAFANA_PASSWORD", "new-grafana-pw")
    deployment.up()
    # Reads (the Secrets, the Jobs that failed) are not part of the order.
    calls = [args for args, _ in kubectl.calls if args[0] != "get"]
    verbs = [" ".join(a[:3]) for a in calls if a[0] != "apply" or a[1] == "-k"]
    assert verbs == [
        "delete job elasticsearch-setup",
        "apply -k " + str(REPO / "k8s"),
        "rollout restart deployment/elasticsearch-exporter",
        "rollout restart deployment/grafana",
    ]
    out = capsys.readouterr().out
    assert "job/elasticsearch-setup (obs-monitoring) reads them: deleting it" in out
    assert "deployment/grafana (obs-monitoring) reads a changed credential: restarting" in out
    assert "new-grafana-pw" not in out


# --- The deploy tool's own venv: stdlib and PyYAML only (requirements/deploy.lock) ----

DEPLOY_LOCKED = {"yaml"}  # requirements/deploy.lock, beside setuptools/wheel (build only)
# The stdlib of Python 3.10, the oldest the deploy tool runs on: 3.11's less what it added.
STDLIB_310 = sys.stdlib_module_names - {"tomllib"}


def module_file(module: str):
    path = REPO / "tools" / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imported_modules(module: str) -> set[str]:
    """The absolute names a module imports, its relative imports resolved."""
    import ast

    file = module_file(module)
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
            if node.module:
                names.add(f"{base}.{node.module}")
            else:  # from . import x: x may be a module of the package
                names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def deploy_tool_modules() -> set[str]:
    """Every obs_tools module `python -m obs_tools.deploy` can load: the package's own,
    the packages above each, and whatever they import of obs_tools, transitively."""
    todo = [
        f"obs_tools.deploy.{f.stem}" for f in module_file("obs_tools.deploy").parent.glob("*.py")
    ]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen or not module_file(module).exists():
            continue  # a name imported from a module, not a module itself
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += [m for m in imported_modules(module) if m.startswith("obs_tools")]
    return seen


def test_the_deploy_tool_imports_only_the_stdlib_and_pyyaml():
    """`make up` runs in a venv with PyYAML alone on Python >= 3.10 (issue #21): an
    import of anything else (httpx, tomllib) would pass every test in the dev venv and
    fail on a learner's laptop. test_rollout.py runs the tool in that venv on 3.10."""
    modules = deploy_tool_modules()
    assert {"obs_tools", "obs_tools.common", "obs_tools.common.wait"} <= modules
    outside = {}
    for module in sorted(modules):
        for name in imported_modules(module):
            top = name.split(".")[0]
            if top not in STDLIB_310 | DEPLOY_LOCKED | {"obs_tools", "__future__"}:
                outside.setdefault(module, set()).add(name)
    assert not outside, f"the deploy tool imports what requirements/deploy.lock lacks: {outside}"
    locked = {
        line.split("==")[0] for line in (REPO / "requirements" / "deploy.lock").read_text().split()
        if "==" in line
    }  # fmt: skip
    assert "pyyaml" in locked
