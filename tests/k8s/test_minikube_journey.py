"""The Minikube user's journey of issue #21 on the real control plane (etcd,
kube-apiserver, controllers, scheduler, one kwok node: tests/k8s/conftest.py
deploy_cluster), with tests/support/fake_minikube.py as `minikube` (it answers as
minikube v1.34.0..v1.38.1 does, citing its source): `make up` on a stopped profile, `make
up` again (it starts nothing, builds nothing, changes nothing), a Job that failed (the
next `make up` runs it again), `make down`.

A code change in a copy of services/ (--services): only its image is built, under a new
tag, and the Deployment's pods roll to it.

Not here, and why: kwok runs no containers, so no port-forward can reach a pod: `make
open` runs against real pods in test_real_node.py (a replaced pod's forward comes back),
and its busy port in test_minikube_user.py against a kubectl stand-in; a failing build
is test_rollout.py's, on this control plane. `obs-deploy` runs here in its own venv on
Python 3.10 (tests/support/deploy_venv.py). Reads
CI through the fixtures (a missing binary then fails instead of skipping).
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from obs_tools.common.paths import REPO
from obs_tools.deploy import resources

from tests.k8s.test_rollout import (
    ROLLOUT_TIMEOUT,
    fake_minikube,
    minikube_cli,
    render,
    show,
)
from tests.support.polling import poll_until

pytestmark = pytest.mark.k8s


def step_output(stdout: str, step: str) -> list[str]:
    """The lines `obs-deploy up` printed for one step (between `==> step` and its ok)."""
    lines = stdout.splitlines()
    start = lines.index(f"==> {step}")
    end = next(i for i in range(start, len(lines)) if lines[i].startswith(f"    {step}: ok"))
    return [line.strip() for line in lines[start + 1 : end] if line.strip()]


def fail_job(cluster, name: str, namespace: str) -> None:
    """Replace the Job by the render's own with a 1 s deadline while the node takes no
    pods: the Job controller marks it Failed (DeadlineExceeded), its pod template the
    render's, so a plain apply leaves it Failed."""
    doc = next(
        d for d in yaml.safe_load_all(render())
        if d and d["kind"] == "Job" and d["metadata"]["name"] == name
    )  # fmt: skip
    doc["spec"]["activeDeadlineSeconds"] = 1
    (node,) = cluster.kubectl("get", "nodes", "-o", "name").stdout.split()
    cluster.kubectl("cordon", node)
    try:
        cluster.kubectl("delete", "job", name, "-n", namespace, "--wait", "--timeout=60s")
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc))

        def failed():
            status = cluster.get_json("job", name, "-n", namespace).get("status") or {}
            return any(
                c["type"] == "Failed" and c["status"] == "True"
                for c in status.get("conditions") or []
            )

        poll_until(failed, f"job/{name} to fail", 60)
    finally:
        cluster.kubectl("uncordon", node)


def generations(cluster) -> dict[str, int]:
    """metadata.generation of every workload of the stack (a spec change moves it)."""
    items = cluster.get_json(
        "deployments,statefulsets,daemonsets,jobs", "--all-namespaces",
        "-l", "app.kubernetes.io/part-of=obs-stack",
    )["items"]  # fmt: skip
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["generation"] for i in items}


def test_up_twice_then_a_failed_job_then_down(deploy_cluster, tmp_path):
    cluster = deploy_cluster
    # A stopped profile of the size `make up` computes: a new one would be held against
    # this machine (2 CPUs here, fewer than the node needs). The pinned Kubernetes
    # version of a new profile: test_minikube_user.py.
    sizing = resources.minikube_sizing(resources.render_needs(render(), nodes=1))
    stopped = {"Name": "obs-test", "Status": "Stopped",
               "Config": {"CPUs": sizing.cpus, "Memory": sizing.memory_mb,
                          "DiskSize": sizing.disk_mb}}  # fmt: skip
    env, calls_file = fake_minikube(tmp_path, stopped)

    def calls():
        return [json.loads(line) for line in calls_file.read_text().splitlines()]

    try:
        first = minikube_cli(cluster, env, "up", f"--timeout={ROLLOUT_TIMEOUT}")
        assert first.returncode == 0, show(first)
        assert len([c for c in calls() if c[:1] == ["start"]]) == 1
        assert len([c for c in calls() if "build" in c]) == 2
        before = len(calls())

        generations_before = generations(cluster)
        second = minikube_cli(cluster, env, "up", f"--timeout={ROLLOUT_TIMEOUT}")
        assert second.returncode == 0, show(second)
        later = calls()[before:]
        assert not [c for c in later if c[:1] == ["start"] or "build" in c], later
        assert "Minikube profile 'obs-test' is running (OK)." in second.stdout
        # kubectl reports the StatefulSet "configured" on every apply here (a
        # client-side three-way-merge difference, not investigated further); what
        # matters is that no workload's spec changed: no generation moved, no pod rolled.
        changed = [line for line in step_output(second.stdout, "apply")
                   if not line.endswith(" unchanged")]  # fmt: skip
        assert set(changed) <= {"statefulset.apps/elasticsearch configured"}, show(second)
        assert generations(cluster) == generations_before, show(second)

        fail_job(cluster, "kibana-import", "obs-monitoring")
        third = minikube_cli(cluster, env, "up", f"--timeout={ROLLOUT_TIMEOUT}")
        assert third.returncode == 0, show(third)
        assert "job/kibana-import (obs-monitoring) had failed (DeadlineExceeded" in third.stdout, (
            show(third)
        )
        job = cluster.get_json("job", "kibana-import", "-n", "obs-monitoring")
        assert job["status"].get("succeeded") == 1
    finally:
        down = minikube_cli(cluster, env, "down", f"--timeout={ROLLOUT_TIMEOUT}")
        assert down.returncode == 0, show(down)


def deployed_images(cluster, namespace: str, name: str) -> tuple[str, set[str]]:
    """The Deployment's template image, and the images of its pods not being deleted."""
    deployment = cluster.get_json("deployment", name, "-n", namespace)
    template = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    pods = cluster.get_json(
        "pods", "-n", namespace, "-l", f"app.kubernetes.io/name={name}"
    )["items"]  # fmt: skip
    running = {
        p["spec"]["containers"][0]["image"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
    }
    return template, running


def test_a_code_change_is_built_and_the_pods_roll(deploy_cluster, tmp_path):
    """Before #21 the tag stayed 1.0.0: no new image reached the pods."""
    cluster = deploy_cluster
    services = tmp_path / "services"
    shutil.copytree(REPO / "services", services, ignore=shutil.ignore_patterns("__pycache__"))
    sizing = resources.minikube_sizing(resources.render_needs(render(), nodes=1))
    running = {"Name": "obs-test", "Status": "OK",
               "Config": {"CPUs": sizing.cpus, "Memory": sizing.memory_mb,
                          "DiskSize": sizing.disk_mb}}  # fmt: skip
    env, calls_file = fake_minikube(tmp_path, running)
    up = ("up", f"--timeout={ROLLOUT_TIMEOUT}", f"--services={services}")
    try:
        first = minikube_cli(cluster, env, *up)
        assert first.returncode == 0, show(first)
        frontend_before, _ = deployed_images(cluster, "obs-apps", "frontend")
        backend_before, _ = deployed_images(cluster, "obs-apps", "backend")
        before = len(calls_file.read_text().splitlines())

        source = next((services / "frontend" / "frontend").rglob("*.py"))
        source.write_text(source.read_text() + "\n# a code change\n")
        second = minikube_cli(cluster, env, *up)
        assert second.returncode == 0, show(second)
        later = [json.loads(line) for line in calls_file.read_text().splitlines()[before:]]
        builds = [c[c.index("-t") + 1] for c in later if "build" in c]
        assert len(builds) == 1 and builds[0].startswith("obs-frontend:1.0.0-"), builds
        template, pods = deployed_images(cluster, "obs-apps", "frontend")
        assert template == builds[0] != frontend_before
        assert pods == {template}, f"pods still on {pods - {template}}"
        assert deployed_images(cluster, "obs-apps", "backend")[0] == backend_before
    finally:
        down = minikube_cli(cluster, env, "down", f"--timeout={ROLLOUT_TIMEOUT}")
        assert down.returncode == 0, show(down)
