"""`make up`'s code path against a real control plane: `obs-deploy up --skip-minikube
--skip-build` (what `make up UP_ARGS="--skip-minikube --skip-build"` runs) deploys the
whole k8s/ render to etcd + kube-apiserver + controller-manager + scheduler with a kwok
node, every workload reaches its desired ready count, `status` says so, and `down`
removes exactly what `up` made. A pod that can never be scheduled makes `up` fail in
bounded time, naming the component and showing its events.

kwok runs no containers (see tests/support/kube_cluster.py): this proves the objects, the
admission (Pod Security), the controllers, the scheduling and our waiting logic, not the
applications. `obs-deploy` runs in its own venv on Python 3.10 (tests/support/deploy_venv.py).
Reads CI (a missing binary is then a failure, not a skip), and through deploy_venv
OBS_TEST_PYTHON310 and OBS_STACK_CACHE.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from obs_tools.common.paths import REPO
from obs_tools.common.versions import k8s_binary
from obs_tools.deploy import deployment as k8s_main
from obs_tools.deploy import resources
from obs_tools.deploy.contract import IMAGES
from obs_tools.deploy.secrets import SECRETS, referenced_secret_keys

from tests.support.deploy_venv import deploy_python
from tests.support.kube_cluster import KubeCluster

pytestmark = pytest.mark.k8s

MANIFESTS = REPO / "k8s"
# Per command: generous for a loaded 2-core machine; the rollout itself takes seconds.
COMMAND_TIMEOUT = 300
ROLLOUT_TIMEOUT = 180
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
REGISTRY = "registry.example:5000/team"


def render(manifests: Path = MANIFESTS) -> str:
    return subprocess.run(
        [str(k8s_binary("kubectl")), "kustomize", str(manifests)],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip


@pytest.fixture
def cluster(deploy_cluster):
    """The session's control plane for `obs-deploy up` (tests/k8s/conftest.py)."""
    return deploy_cluster


def path_without_minikube() -> str:
    return os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not (Path(d) / "minikube").exists()
    )  # fmt: skip


def k8s_cli(cluster: KubeCluster, *args: str, env: dict[str, str] | None = None):
    """`obs-deploy ARGS` as `make up` runs it, against the fixture's cluster."""
    environ = {
        **os.environ,
        "PATH": path_without_minikube(),
        "KUBECONFIG": str(cluster.kubeconfig),
        **(env or {}),
    }
    # The deploy tool's own venv on Python 3.10 (tests/support/deploy_venv.py): what a
    # learner's `make up` runs, with PyYAML and nothing else of the development set.
    argv = [deploy_python(), "-m", "obs_tools.deploy", *args, "--skip-minikube",
            "--kubectl", str(k8s_binary("kubectl"))]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(
        argv, capture_output=True, text=True, env=environ, cwd=REPO, timeout=COMMAND_TIMEOUT
    )
    result.seconds = time.monotonic() - started
    return result


def show(result) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def workload_objects(render_yaml: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(render_yaml) if d and d["kind"] in WORKLOADS]


def ready_counts(cluster: KubeCluster, doc: dict) -> tuple[int, int]:
    """(ready, desired) of one workload, read from the API server by this test."""
    meta = doc["metadata"]
    live = cluster.get_json(doc["kind"].lower(), meta["name"], "-n", meta["namespace"])
    spec, status = live["spec"], live.get("status") or {}
    if doc["kind"] == "Deployment":
        return min(status.get("readyReplicas", 0), status.get("availableReplicas", 0)), spec[
            "replicas"
        ]
    if doc["kind"] == "StatefulSet":
        return status.get("readyReplicas", 0), spec["replicas"]
    if doc["kind"] == "DaemonSet":
        # One kwok node: one pod.
        return status.get("numberReady", 0), max(1, status.get("desiredNumberScheduled", 0))
    return status.get("succeeded", 0), spec.get("completions", 1)


def secret_values(cluster: KubeCluster) -> dict[tuple[str, str], dict[str, str]]:
    found = {}
    for spec in SECRETS:
        live = cluster.kubectl(
            "get", "secret", spec.name, "-n", spec.namespace, "-o", "json", check=False
        )
        if live.returncode == 0:
            data = json.loads(live.stdout).get("data") or {}
            found[(spec.namespace, spec.name)] = {
                k: base64.b64decode(v).decode() for k, v in data.items()
            }
    return found


def overlay(directory: Path, patch: dict) -> Path:
    """A kustomization of k8s/ with one strategic-merge patch."""
    directory.mkdir()
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(MANIFESTS, directory)],
        "patches": [{"patch": yaml.safe_dump(patch)}],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory


BYSTANDERS = [
    # Not ours, but carrying our labels: `down` must delete by name, not by label.
    {"apiVersion": "v1", "kind": "Namespace",
     "metadata": {"name": "bystander", "labels": {"app.kubernetes.io/part-of": "obs-stack"}}},
    {"apiVersion": "v1", "kind": "ConfigMap",
     "metadata": {"name": "keep-me", "namespace": "bystander",
                  "labels": {"app.kubernetes.io/part-of": "obs-stack"}},
     "data": {"k": "v"}},
    {"apiVersion": "v1", "kind": "Secret",
     "metadata": {"name": "keep-me-too", "namespace": "bystander",
                  "labels": {"app.kubernetes.io/part-of": "obs-stack"}},
     "stringData": {"k": "v"}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
     "metadata": {"name": "bystander-reader",
                  "labels": {"app.kubernetes.io/part-of": "obs-stack"}},
     "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
]  # fmt: skip


def test_up_rolls_out_everything_status_shows_it_and_down_removes_only_ours(cluster, tmp_path):
    render_yaml = render()
    rendered = tmp_path / "render.yaml"
    rendered.write_text(render_yaml)
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(BYSTANDERS))
    grafana_password = "from-the-environment-7f3a9c"
    up = k8s_cli(
        cluster, "up", f"--registry={REGISTRY}", f"--timeout={ROLLOUT_TIMEOUT}",
        env={"GRAFANA_ADMIN_PASSWORD": grafana_password},
    )  # fmt: skip
    print(f"`up` took {up.seconds:.1f} s\n{up.stdout}")
    assert up.returncode == 0, show(up)
    assert "Traceback" not in up.stderr

    workloads = workload_objects(render_yaml)
    assert {d["kind"] for d in workloads} == set(WORKLOADS)
    counts = {
        f"{d['kind']}/{d['metadata']['namespace']}/{d['metadata']['name']}": ready_counts(
            cluster, d
        )
        for d in workloads
    }
    assert {k: v for k, v in counts.items() if v[0] < v[1] or v[1] < 1} == {}, counts

    # Another cluster's way (docs/kubernetes.md: UP_ARGS="--skip-minikube --registry ..."): only our
    # two images are renamed.
    for image in IMAGES:
        live = cluster.get_json("deployment", image.service, "-n", "obs-apps")
        (container,) = live["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"{REGISTRY}/{image.name}:1.0.0"
    assert f"Images from {REGISTRY} (not built here)." in up.stdout

    # Every Secret key the manifests use exists; no value reached the terminal.
    values = secret_values(cluster)
    for namespace, name, key in referenced_secret_keys(render_yaml):
        assert (namespace, name) in values, f"Secret {namespace}/{name} missing"
        assert key is None or key in values[(namespace, name)], f"{namespace}/{name}: {key}"
    assert values[("obs-monitoring", "grafana-admin")]["admin-password"] == grafana_password
    assert (
        values[("obs-logging", "fluent-bit-elasticsearch")]["password"]
        == values[("obs-monitoring", "elasticsearch-credentials")]["fluent-bit-password"]
    )
    secrets_printed = [
        f"{ns}/{name}/{key}"
        for (ns, name), data in values.items()
        for key, value in data.items()
        if len(value) >= 8 and value in up.stdout + up.stderr
    ]
    assert secrets_printed == []

    # The login commands `up` prints work, and print what the Secrets hold.
    logins = {}
    for line in up.stdout.splitlines():
        title, _, command = line.strip().partition(": kubectl ")
        if command:
            logins[title.split()[0].rstrip(":")] = subprocess.run(
                f"{k8s_binary('kubectl')} {command}", shell=True, capture_output=True,
                text=True, check=True, timeout=60, env={**os.environ, "KUBECONFIG": str(
                    cluster.kubeconfig)},
            ).stdout  # fmt: skip
    assert logins["Grafana"] == f"obs-admin {grafana_password}\n"
    elastic = values[("obs-monitoring", "elasticsearch-credentials")]["elastic-password"]
    assert logins["Kibana"] == elastic

    status = k8s_cli(cluster, "status")
    assert status.returncode == 0, show(status)
    for doc in workloads:
        label = f"{doc['kind'].lower()}/{doc['metadata']['name']} ({doc['metadata']['namespace']})"
        line = next((ln for ln in status.stdout.splitlines() if label in ln), None)
        assert line is not None, f"{label} not in status:\n{status.stdout}"
        assert line.split()[-1] in ("ready", "complete"), line
    assert f"{len(workloads)}/{len(workloads)} workloads ready" in status.stdout

    # A second `up` keeps the passwords, and replaces a Job whose pod template changed
    # (as when kustomize renames the ConfigMap it mounts): a Job's template is immutable.
    changed = overlay(tmp_path / "changed-job", {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "kibana-import", "namespace": "obs-monitoring"},
        "spec": {"template": {"metadata": {"annotations": {"obs-stack.test/rev": "2"}}}},
    })  # fmt: skip
    again = k8s_cli(
        cluster,
        "up",
        f"--registry={REGISTRY}",
        f"--timeout={ROLLOUT_TIMEOUT}",
        f"--manifests={changed}",
    )
    assert again.returncode == 0, show(again)
    assert "job/kibana-import changed: deleting it to run the new one" in again.stdout
    assert "admin-password: kept" in again.stdout
    assert secret_values(cluster) == values
    job = cluster.get_json("job", "kibana-import", "-n", "obs-monitoring")
    assert job["spec"]["template"]["metadata"]["annotations"]["obs-stack.test/rev"] == "2"
    assert job["status"].get("succeeded") == 1

    # A credential changed through its variable: the setup Job runs again (a new Job
    # object) and the workloads that read the value restart; nothing else does.
    setup_before = cluster.get_json("job", "elasticsearch-setup", "-n", "obs-monitoring")
    changed_up = k8s_cli(
        cluster, "up", f"--registry={REGISTRY}", f"--timeout={ROLLOUT_TIMEOUT}",
        env={"ELASTICSEARCH_GRAFANA_PASSWORD": "changed-grafana-pw-4d1e"},
    )  # fmt: skip
    print(f"`up` with a changed credential took {changed_up.seconds:.1f} s\n{changed_up.stdout}")
    assert changed_up.returncode == 0, show(changed_up)
    assert "grafana-password: from $ELASTICSEARCH_GRAFANA_PASSWORD, changed" in changed_up.stdout
    assert "job/elasticsearch-setup (obs-monitoring) reads them: deleting it" in changed_up.stdout
    assert "changed-grafana-pw-4d1e" not in changed_up.stdout + changed_up.stderr
    setup_after = cluster.get_json("job", "elasticsearch-setup", "-n", "obs-monitoring")
    assert setup_after["metadata"]["uid"] != setup_before["metadata"]["uid"]
    assert setup_after["status"].get("succeeded") == 1
    restarted = {
        d["metadata"]["name"]
        for d in workloads
        if "kubectl.kubernetes.io/restartedAt"
        in (
            cluster.get_json(d["kind"].lower(), d["metadata"]["name"], "-n",
                             d["metadata"]["namespace"])["spec"]["template"]["metadata"]
            .get("annotations") or {}
        )
    }  # fmt: skip
    assert restarted == {"grafana", "elasticsearch-exporter"}
    assert (
        secret_values(cluster)[("obs-monitoring", "elasticsearch-credentials")]["grafana-password"]
        == "changed-grafana-pw-4d1e"
    )

    # The elastic password cannot change under a deployed Elasticsearch: refused, and
    # nothing written.
    before = secret_values(cluster)
    refused = k8s_cli(
        cluster, "up", f"--registry={REGISTRY}", f"--timeout={ROLLOUT_TIMEOUT}",
        env={"ELASTIC_PASSWORD": "another-elastic-pw-9b2c"},
    )  # fmt: skip
    assert refused.returncode == 1, show(refused)
    assert refused.stderr.startswith("error: $ELASTIC_PASSWORD differs from elastic-password")
    assert "==> apply" not in refused.stdout
    assert secret_values(cluster) == before

    down = k8s_cli(cluster, "down", f"--timeout={ROLLOUT_TIMEOUT}")
    print(f"`down` took {down.seconds:.1f} s")
    assert down.returncode == 0, show(down)
    # What it leaves on the nodes on purpose, and how to remove it.
    assert "Fluent Bit's state in the hostPath /var/lib/fluent-bit" in down.stdout
    assert "on each node: sudo rm -rf /var/lib/fluent-bit" in down.stdout
    left = cluster.kubectl(
        "get", "-f", str(rendered), "--ignore-not-found", "-o", "name"
    ).stdout.split()
    assert left == []
    assert secret_values(cluster) == {}
    volumes = cluster.get_json("persistentvolumes")["items"]
    assert [
        v["metadata"]["name"]
        for v in volumes
        if (v["spec"].get("claimRef") or {}).get("namespace", "").startswith("obs-")
    ] == []
    for doc in BYSTANDERS:
        meta = doc["metadata"]
        where = ["-n", meta["namespace"]] if "namespace" in meta else []
        cluster.kubectl("get", doc["kind"].lower(), meta["name"], *where)  # raises if gone
    gone = k8s_cli(cluster, "status")
    assert gone.returncode == 1 and "not deployed" in gone.stdout, show(gone)


def test_a_pod_that_cannot_be_scheduled_fails_up_in_bounded_time_naming_it(cluster, tmp_path):
    # An overlay of k8s/ in which Jaeger's pod asks for a node label no node has: it
    # stays Pending (FailedScheduling), as a pod too big for the node or with an
    # unsatisfiable affinity would. Everything else is the real render.
    unschedulable = overlay(tmp_path / "overlay", {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "jaeger", "namespace": "obs-monitoring"},
        "spec": {"template": {"spec": {"nodeSelector": {"obs-stack.test/no-such": "node"}}}},
    })  # fmt: skip
    timeout = 20
    try:
        up = k8s_cli(cluster, "up", "--skip-build", f"--timeout={timeout}",
                     f"--manifests={unschedulable}")  # fmt: skip
        print(f"`up` failed after {up.seconds:.1f} s\n{up.stdout}\n{up.stderr}")
        assert up.returncode == 1, show(up)
        assert "Traceback" not in up.stderr
        # Bounded: the rollout wait plus the steps before it (seconds each).
        assert up.seconds < timeout + 90
        first = up.stderr.splitlines()[0]
        assert first == f"error: not ready after {timeout} s: deployment/jaeger (obs-monitoring)"
        assert "FailedScheduling" in up.stderr
        assert "didn't match Pod's node affinity/selector" in up.stderr
        assert "--- deployment/jaeger (obs-monitoring): 0/1 ready ---" in up.stderr
        assert "/jaeger: no log, the container has not started (pod Pending)" in up.stderr
        # It says what to do next: nothing was undone, a re-run resumes.
        assert up.stderr.rstrip().endswith(k8s_main.RESUME_HINT)

        status = k8s_cli(cluster, "status", f"--manifests={unschedulable}")
        assert status.returncode == 1, show(status)
        assert "deployment/jaeger (obs-monitoring)" in status.stdout
        assert "not ready: jaeger" in status.stdout
        assert "phase Pending" in status.stdout
    finally:
        down = k8s_cli(
            cluster, "down", f"--timeout={ROLLOUT_TIMEOUT}", f"--manifests={unschedulable}"
        )
        assert down.returncode == 0, show(down)


def fake_minikube(tmp_path: Path, profile: dict | None = None) -> tuple[dict[str, str], Path]:
    """A `minikube` on PATH (tests/support/fake_minikube.py): Minikube itself cannot run
    here. Returns the environment for k8s_cli and the file of recorded calls."""
    bin_dir, state = tmp_path / "fake-bin", tmp_path / "fake-minikube"
    bin_dir.mkdir()
    script = REPO / "tests" / "support" / "fake_minikube.py"
    (bin_dir / "minikube").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    (bin_dir / "minikube").chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{path_without_minikube()}",
           "FAKE_MINIKUBE_STATE": str(state)}  # fmt: skip
    if profile:
        env["FAKE_MINIKUBE_PROFILE"] = json.dumps(profile)
    return env, state / "calls.jsonl"


def minikube_cli(cluster: KubeCluster, env: dict[str, str], *args: str):
    """`make up`'s default path (no --skip-minikube): the profile is named after the
    fixture's kubectl context, which is the context Minikube would have created."""
    environ = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), **env}
    argv = [deploy_python(), "-m", "obs_tools.deploy", *args, "--profile=obs-test",
            "--kubectl", str(k8s_binary("kubectl"))]  # fmt: skip
    return subprocess.run(
        argv, capture_output=True, text=True, env=environ, cwd=REPO, timeout=COMMAND_TIMEOUT
    )


def test_make_up_on_minikube_sizes_starts_builds_and_deploys(cluster, tmp_path):
    sizing = resources.minikube_sizing(resources.render_needs(render(), nodes=1))
    # A stopped profile exactly as big as needed: preflight accepts it, `up` starts it.
    stopped = {"Name": "obs-test", "Status": "Stopped",
               "Config": {"CPUs": sizing.cpus, "Memory": sizing.memory_mb,
                          "DiskSize": sizing.disk_mb}}  # fmt: skip
    env, calls_file = fake_minikube(tmp_path, stopped)
    try:
        up = minikube_cli(cluster, env, "up", f"--timeout={ROLLOUT_TIMEOUT}")
        print(up.stdout)
        assert up.returncode == 0, show(up)
        for line in sizing.explanation.splitlines():
            assert f"  {line}\n" in up.stdout
        calls = [json.loads(line) for line in calls_file.read_text().splitlines()]
        # An existing profile is started as it is (its size was checked in preflight).
        assert ["start", "-p", "obs-test"] in calls
        builds = sorted(c[c.index("-t") + 1] for c in calls if "build" in c)
        # The version and a hash of the sources (minikube.content_tag).
        assert [b.rsplit("-", 1)[0] for b in builds] == ["obs-backend:1.0.0", "obs-frontend:1.0.0"]
        # The long steps' output reaches the terminal as it comes.
        assert "    | fake minikube: profile obs-test running with" in up.stdout
        assert "    | fake minikube: building obs-frontend:1.0.0-" in up.stdout
        assert "obs-stack is up" in up.stdout
        status = minikube_cli(cluster, env, "status")
        assert status.returncode == 0, show(status)
    finally:
        down = minikube_cli(cluster, env, "down", f"--timeout={ROLLOUT_TIMEOUT}")
        assert down.returncode == 0, show(down)
        assert "minikube -p obs-test ssh -- sudo rm -rf /var/lib/fluent-bit" in down.stdout


def test_a_build_that_minikube_reports_as_done_but_did_not_make_fails_up(cluster, tmp_path):
    sizing = resources.minikube_sizing(resources.render_needs(render(), nodes=1))
    running = {"Name": "obs-test", "Status": "Running",
               "Config": {"CPUs": sizing.cpus, "Memory": sizing.memory_mb,
                          "DiskSize": sizing.disk_mb}}  # fmt: skip
    env, _ = fake_minikube(tmp_path, running)
    env["FAKE_MINIKUBE_BUILD"] = "fail"
    up = minikube_cli(cluster, env, "up", "--timeout=30")
    assert up.returncode == 1, show(up)
    assert up.stderr.startswith("error: building the image obs-frontend:1.0.0-"), show(up)
    assert "minikube exited 0 but does not list the image" in up.stderr, show(up)
    assert "==> apply" not in up.stdout


def test_a_minikube_profile_too_small_is_refused_with_the_numbers(cluster, tmp_path):
    small = {"Name": "obs-test", "Status": "Running",
             "Config": {"CPUs": 2, "Memory": 2048, "DiskSize": 20000}}  # fmt: skip
    env, _ = fake_minikube(tmp_path, small)
    sizing = resources.minikube_sizing(resources.render_needs(render(), nodes=1))
    result = minikube_cli(cluster, env, "preflight")
    assert result.returncode == 1, show(result)
    assert f"memory (MB): has 2048, needs {sizing.memory_mb}" in result.stderr
    assert f"CPUs: has 2, needs {sizing.cpus}" in result.stderr
    assert "minikube delete -p obs-test" in result.stderr
    assert "Traceback" not in result.stderr
