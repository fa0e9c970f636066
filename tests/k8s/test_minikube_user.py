"""`make up`, `make open` and `make status` as a Minikube user meets them (issue #21),
without a cluster: the Minikube steps run against tests/support/fake_minikube.py (which
answers as minikube v1.34.0..v1.38.1 does, citing its source), `open` against a kubectl
stand-in that listens on the local port it is asked to forward (or fails as kubectl
does). Each test here failed on the code before the fix it names.

Reads CI (tests/k8s/render.kubectl: a missing kubectl then fails instead of skipping).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from obs_tools.common.paths import REPO
from obs_tools.common.versions import VERSIONS
from obs_tools.deploy import deployment as k8s_main
from obs_tools.deploy import minikube as minikube_module
from obs_tools.deploy import resources
from obs_tools.deploy.cli import parse
from obs_tools.deploy.contract import UIS
from obs_tools.deploy.deployment import Deployment
from obs_tools.deploy.kubectl import DeployError
from obs_tools.deploy.minikube import Minikube

from tests.k8s import render
from tests.k8s.test_deploy_tooling import ClusterSecretsKubectl, deployed_secrets
from tests.support import open_run
from tests.support.open_run import listening, port_args

STANDIN = REPO / "tests" / "support" / "fake_minikube.py"
SIZING = resources.Sizing(cpus=4, memory_mb=8192, disk_mb=30000, explanation="")
# A kubectl stand-in for `open` and `status`: port-forward listens on the local port it
# is given (or fails as kubectl does with FAKE_KUBECTL_FORWARD=missing, or for the
# services of FAKE_KUBECTL_MISSING); on SIGUSR1 it
# stops as kubectl does when the pod goes away (client-go portforward's
# ErrLostConnectionToPod, "lost connection to pod": the real kubectl v1.34.4 prints it,
# seen in tests/k8s/test_real_node.py, at the first request after its pod went away).
# Anything else prints an empty list.
FAKE_KUBECTL = """\
import json, os, signal, socket, sys
from pathlib import Path
args = sys.argv[1:]
log = Path(os.environ["FAKE_KUBECTL_DIR"])
with (log / "kubectl-calls.jsonl").open("a") as calls:
    calls.write(json.dumps(args) + "\\n")
if "port-forward" not in args:
    print(json.dumps({"apiVersion": "v1", "kind": "List", "items": []}))
    sys.exit(0)
service = next(a for a in args if a.startswith("svc/"))[4:]
missing = os.environ.get("FAKE_KUBECTL_MISSING", "").split(",")
if os.environ.get("FAKE_KUBECTL_FORWARD") == "missing" or service in missing:
    print(f'Error from server (NotFound): services "{service}" not found', file=sys.stderr)
    sys.exit(1)
local = int(next(a for a in args if a.split(":")[0].isdigit() and ":" in a).split(":")[0])
def lost(*_):
    print("E1205 portforward.go:413] an error occurred forwarding: lost connection to pod",
          file=sys.stderr)
    print("error: lost connection to pod", file=sys.stderr)
    os._exit(1)
signal.signal(signal.SIGUSR1, lost)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", local))
server.listen()
(log / f"forward-{service}.pid").write_text(str(os.getpid()))
while True:
    server.accept()[0].close()
"""


def script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


def standin(
    tmp_path: Path, monkeypatch, profile: dict | None = None, **env: str
) -> tuple[str, Path]:
    """The stand-in as `minikube` (a path), its variables set for this test only."""
    state = tmp_path / "minikube-state"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    minikube = bin_dir / "minikube"
    minikube.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" "$@"\n')
    minikube.chmod(0o755)
    monkeypatch.setenv("FAKE_MINIKUBE_STATE", str(state))
    if profile:
        monkeypatch.setenv("FAKE_MINIKUBE_PROFILE", json.dumps(profile))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return str(minikube), state


@pytest.fixture(autouse=True)
def _clean_standin_env(monkeypatch):
    for name in ("FAKE_MINIKUBE_STATE", "FAKE_MINIKUBE_PROFILE", "FAKE_MINIKUBE_BUILD",
                 "FAKE_MINIKUBE_VERSION", "FAKE_MINIKUBE_KUBECTL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def calls(state: Path) -> list[list[str]]:
    path = state / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def profile(status: str) -> dict:
    config = {"CPUs": SIZING.cpus, "Memory": SIZING.memory_mb, "DiskSize": SIZING.disk_mb}
    return {"Name": "obs-test", "Status": status, "Config": config}


# --- 1. a running profile is seen as running -----------------------------------------


@pytest.mark.parametrize("status", ["OK", "HAppy", "Running"])
def test_a_running_profile_is_not_started_again(tmp_path, monkeypatch, status):
    """minikube >= v1.35.0 says "OK" ("HAppy" for HA), v1.34.0 "Running". Before the fix
    only "Running" counted: every `make up` ran `minikube start` again."""
    path, state = standin(tmp_path, monkeypatch, profile(status))
    Minikube(path, "obs-test").start(SIZING)
    assert not [c for c in calls(state) if "start" in c]


def test_a_stopped_profile_is_started_once_then_seen_running(tmp_path, monkeypatch):
    path, state = standin(tmp_path, monkeypatch, profile("Stopped"))
    minikube = Minikube(path, "obs-test")
    minikube.start(SIZING)
    minikube.start(SIZING)  # the stand-in now says "OK", as minikube v1.38.1 does
    assert len([c for c in calls(state) if "start" in c]) == 1


def test_a_bigger_stopped_profile_is_started_as_it_is(tmp_path, monkeypatch, capsys):
    """Before the fix `up` passed the computed size to an existing profile, and minikube
    answered "You cannot change the CPUs for an existing minikube cluster" right after
    our "big enough"."""
    bigger = profile("Stopped")
    bigger["Config"].update(CPUs=8, Memory=16384)
    path, state = standin(tmp_path, monkeypatch, bigger)
    Minikube(path, "obs-test").start(SIZING)
    assert [c for c in calls(state) if "start" in c] == [["start", "-p", "obs-test"]]
    assert "You cannot change" not in capsys.readouterr().out


def test_a_new_profile_runs_the_kubernetes_the_tests_run(tmp_path, monkeypatch):
    """Pinned for a new profile only: minikube refuses to downgrade an existing one."""
    path, state = standin(tmp_path, monkeypatch)
    Minikube(path, "obs-test").start(SIZING)
    (start,) = [c for c in calls(state) if "start" in c]
    assert start[-1] == f"--kubernetes-version={VERSIONS['K8S_VERSION']}"


@pytest.mark.parametrize(("version", "warned"), [("v1.38.1", False), ("v1.34.0", False),
                                                 ("v1.33.1", True), ("v1.39.0", True)])  # fmt: skip
def test_a_minikube_outside_the_checked_range_is_warned_about(
    tmp_path, monkeypatch, capsys, version, warned
):
    path, _ = standin(tmp_path, monkeypatch, FAKE_MINIKUBE_VERSION=version)
    Minikube(path, "obs-test").check_version()
    out = capsys.readouterr().out
    assert (f"warning: minikube {version} is outside the range" in out) == warned, out


@pytest.mark.parametrize(("answer", "warned"), [("8 8000000000", False), ("2 4100000000", True),
                                               ("", False)])  # fmt: skip
def test_docker_desktops_limits_are_held_against_the_node(tmp_path, answer, warned):
    """macOS: the docker driver's node fits in Docker Desktop's VM, not the Mac. Before
    the fix only the host was counted. `docker info` not answering: no warning."""
    docker = script(tmp_path / "docker", f"print({answer!r})\n")
    sizing = resources.Sizing(cpus=3, memory_mb=5632, disk_mb=1, explanation="")
    warnings = minikube_module.docker_desktop_shortfall(sizing, str(docker))
    assert bool(warnings) == warned
    if warned:
        assert "gives its VM 2 CPUs and 3910 MB" in warnings[0]
        assert "Settings > Resources" in warnings[0]


def test_the_standin_refuses_to_resize_as_minikube_does(tmp_path, monkeypatch):
    path, _ = standin(tmp_path, monkeypatch, profile("Stopped"))
    result = subprocess.run(
        [path, "start", "-p", "obs-test", "--cpus=8", f"--memory={SIZING.memory_mb}",
         "--disk-size=30000mb"], capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0
    assert "You cannot change the CPUs for an existing minikube cluster" in result.stderr
    listed = json.loads(subprocess.check_output([path, "profile", "list", "-o", "json"]))
    assert listed["valid"][0]["Config"]["CPUs"] == SIZING.cpus
    assert listed["valid"][0]["Status"] == "OK"


# --- 4. a failed build fails; a rebuild reaches the pods ------------------------------


def test_a_failed_build_fails_even_over_an_old_image_of_the_same_version(tmp_path, monkeypatch):
    """minikube's `image build` exits 0 when the build fails. Before the fix, the old
    obs-frontend:1.0.0 in `image ls` made that failure pass as "built"."""
    path, state = standin(tmp_path, monkeypatch, profile("OK"), FAKE_MINIKUBE_BUILD="fail")
    state.mkdir()
    old = {"docker.io/library/obs-frontend:1.0.0": "sha256:old",
           "docker.io/library/obs-backend:1.0.0": "sha256:old"}  # fmt: skip
    (state / "images.json").write_text(json.dumps(old))
    with pytest.raises(DeployError) as failed:
        Minikube(path, "obs-test").build_images()
    message = str(failed.value)
    assert message.startswith("building the image obs-frontend:1.0.0-"), message
    assert "Failed to build image for profile obs-test" in message
    assert "image build -t obs-frontend:1.0.0-" in message


def rendered_images(manifests: Path) -> dict[str, str]:
    rendered = render.kustomize(manifests)
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
        for d in yaml.safe_load_all(rendered)
        if d and d["kind"] == "Deployment" and d["metadata"]["name"] in ("frontend", "backend")
    }


def test_a_code_change_gets_a_new_tag_that_rolls_the_pods(tmp_path, monkeypatch):
    """Before the fix the tag was the version, 1.0.0, whatever the code: the pod
    template never changed and IfNotPresent kept the old image."""
    context = tmp_path / "services"
    shutil.copytree(REPO / "services", context, ignore=shutil.ignore_patterns("__pycache__"))
    path, state = standin(tmp_path, monkeypatch, profile("OK"))
    minikube = Minikube(path, "obs-test")
    first = minikube.build_images(context)
    assert minikube.build_images(context) == first
    assert len([c for c in calls(state) if "build" in c]) == 2, "the second run built again"
    source = next((context / "frontend" / "frontend").rglob("*.py"))
    source.write_text(source.read_text() + "\n# a code change\n")
    second = minikube.build_images(context)
    assert second["obs-backend"] == first["obs-backend"]
    assert second["obs-frontend"] != first["obs-frontend"]
    deployment = Deployment.__new__(Deployment)
    deployment.args, deployment.manifests = parse(["up"]), REPO / "k8s"
    with deployment.kustomization(first) as before, deployment.kustomization(second) as after:
        images_before, images_after = rendered_images(before), rendered_images(after)
    assert images_before["frontend"] == f"obs-frontend:{first['obs-frontend']}"
    assert images_after["frontend"] == f"obs-frontend:{second['obs-frontend']}"
    assert images_after["backend"] == images_before["backend"]


def test_skip_build_on_minikube_deploys_the_tags_a_build_makes(tmp_path, monkeypatch):
    """--skip-build must not roll the pods back to the bare version, which no build
    makes any more."""
    path, _ = standin(tmp_path, monkeypatch, profile("OK"))
    deployment = Deployment.__new__(Deployment)
    deployment.args = parse(["up", "--skip-build"])
    deployment.minikube = Minikube(path, "obs-test")
    built = deployment.minikube.build_images()
    assert deployment.provide_images() == built


# --- 5. no kubectl on PATH: `minikube kubectl --` --------------------------------------


def test_without_kubectl_on_path_minikube_kubectl_is_used(tmp_path, monkeypatch):
    """Before the fix: "kubectl is not installed ... (`minikube kubectl` also works)",
    which it did not."""
    path, state = standin(tmp_path, monkeypatch)
    fake = script(tmp_path / "real-kubectl", FAKE_KUBECTL)
    env = {**os.environ, "PATH": str(Path(path).parent), "FAKE_MINIKUBE_KUBECTL": str(fake),
           "FAKE_KUBECTL_DIR": str(tmp_path)}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "obs_tools.deploy", "status", "--profile=obs-test"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert "No kubectl on PATH: using `minikube -p obs-test kubectl --`." in result.stdout
    assert "obs-stack is not deployed" in result.stdout, result.stderr
    assert result.returncode == 1 and "Traceback" not in result.stderr
    kubectl_calls = [
        json.loads(x) for x in (tmp_path / "kubectl-calls.jsonl").read_text().splitlines()
    ]
    # minikube inserts --cluster=PROFILE before the first flag (cmd/minikube/cmd/kubectl.go).
    assert kubectl_calls[0][:3] == ["--cluster=obs-test", "--context", "obs-test"]
    assert calls(state)[0][:4] == ["-p", "obs-test", "kubectl", "--"]


# --- 6. a failed Job is replaced -------------------------------------------------------


class FailedJobKubectl(ClusterSecretsKubectl):
    """A cluster holding the Secrets and a kibana-import Job that ran out of retries."""

    def run(self, *args, stdin=None, timeout=60, check=True):
        if args[:2] == ("get", "jobs") and "obs-monitoring" in args:
            self.calls.append((args, stdin))
            job = {"kind": "Job", "metadata": {"name": "kibana-import", "namespace":
                   "obs-monitoring", "generation": 1}, "spec": {"completions": 1},
                   "status": {"failed": 3, "conditions": [{"type": "Failed", "status": "True",
                   "reason": "BackoffLimitExceeded", "message": "Job has reached the "
                   "specified backoff limit"}]}}  # fmt: skip
            return subprocess.CompletedProcess(args, 0, json.dumps({"items": [job]}), "")
        return super().run(*args, stdin=stdin, timeout=timeout, check=check)


def test_up_replaces_a_job_that_failed_before_applying(monkeypatch, capsys):
    """Before the fix a Failed Job stayed Failed: every later `up` failed at once."""
    rendered = render.kustomize()
    kubectl = FailedJobKubectl(deployed_secrets())
    deployment = Deployment.__new__(Deployment)
    deployment.args = parse(["up", "--skip-minikube", "--skip-build"])
    deployment.minikube, deployment.manifests, deployment.kubectl = None, REPO / "k8s", kubectl
    monkeypatch.setattr(k8s_main, "render", lambda kubectl, manifests: rendered)
    monkeypatch.setattr(deployment, "preflight", lambda: None)
    monkeypatch.setattr(k8s_main.rollout, "wait_ready", lambda *a, **k: [])
    monkeypatch.setattr(k8s_main, "print_access", lambda profile: None)
    deployment.up()
    verbs = [" ".join(a[:3]) for a, _ in kubectl.calls if a[0] in ("delete", "apply")]
    assert verbs.index("delete job kibana-import") < verbs.index(f"apply -k {REPO / 'k8s'}")
    out = capsys.readouterr().out
    assert "job/kibana-import (obs-monitoring) had failed (BackoffLimitExceeded" in out


# --- 2, 3. `make open`: kubectl's error, busy ports, a lost forward --------------------


def open_env(tmp_path: Path, **extra: str) -> tuple[Path, dict[str, str]]:
    fake = script(tmp_path / "kubectl", FAKE_KUBECTL)
    return fake, {**os.environ, "FAKE_KUBECTL_DIR": str(tmp_path), **extra}


def distinct_free_ports() -> dict[str, int]:
    return open_run.distinct_free_ports([ui.service for ui in UIS])


def test_open_shows_kubectls_own_error(tmp_path):
    """Before the fix: "timed out after 20s ... (last error: DeployError('port-forward
    to Grafana exited: '))": the message was swallowed and stderr read twice."""
    fake, env = open_env(tmp_path, FAKE_KUBECTL_FORWARD="missing")
    result = subprocess.run(
        [sys.executable, "-m", "obs_tools.deploy", "open", "--skip-minikube",
         f"--kubectl={fake}", *port_args(distinct_free_ports())],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert 'Error from server (NotFound): services "grafana" not found' in result.stderr
    assert "timed out" not in result.stderr and "Traceback" not in result.stderr


class OpenRun(open_run.OpenRun):
    """`obs-deploy open` with the kubectl stand-in, which records each forward's pid."""

    def __init__(self, tmp_path: Path, fake: Path, env: dict[str, str], ports: dict[str, int]):
        args = [f"--kubectl={fake}", *port_args(ports)]
        super().__init__(tmp_path, sys.executable, args, env)

    def forward_pid(self, service: str) -> int:
        return int((self.tmp_path / f"forward-{service}.pid").read_text())


def test_a_busy_port_is_skipped_with_a_warning_and_the_rest_open(tmp_path):
    """Before the fix one taken port (macOS's AirPlay on :5000) refused them all, and
    the ports could not be moved (no --port)."""
    fake, env = open_env(tmp_path)
    ports = distinct_free_ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports["frontend"]))
        holder.listen()
        run = OpenRun(tmp_path, fake, env, ports)
        try:
            run.wait_for("Forwarding until Ctrl-C.")
            others = {s: p for s, p in ports.items() if s != "frontend"}
            assert all(listening(p) for p in others.values())
        finally:
            code = run.stop()
    out = run.text()
    assert f"warning: local port {ports['frontend']} is in use: frontend is not forwarded" in out
    assert "--port frontend=PORT" in out
    assert f"http://127.0.0.1:{ports['grafana']}/" in out
    assert code == 0 and "Stopped forwarding." in out


def test_a_ui_that_does_not_forward_is_skipped_with_kubectls_error(tmp_path):
    """Before the fix, one missing Service (a UI left out, or its pod not running yet)
    stopped every other forward too: `open` exited 1 with nothing forwarded."""
    fake, env = open_env(tmp_path, FAKE_KUBECTL_MISSING="grafana")
    ports = distinct_free_ports()
    run = OpenRun(tmp_path, fake, env, ports)
    try:
        run.wait_for("Forwarding until Ctrl-C.")
        assert all(listening(p) for s, p in ports.items() if s != "grafana")
    finally:
        code = run.stop()
    out = run.text()
    assert (
        "warning: port-forward to Grafana exited 1: Error from server (NotFound): services "
        '"grafana" not found; Grafana is not forwarded (once its pod runs, run make open again)'
    ) in out
    assert f"http://127.0.0.1:{ports['grafana']}/" not in out
    assert f"http://127.0.0.1:{ports['jaeger']}/" in out
    assert code == 0, out


def test_a_lost_forward_comes_back_and_the_others_stay(tmp_path):
    """Before the fix, one pod restart stopped all seven port-forwards."""
    fake, env = open_env(tmp_path)
    ports = distinct_free_ports()
    run = OpenRun(tmp_path, fake, env, ports)
    try:
        run.wait_for("Forwarding until Ctrl-C.")
        pids = {ui.service: run.forward_pid(ui.service) for ui in UIS}
        os.kill(pids["grafana"], signal.SIGUSR1)
        run.wait_for("Grafana: forwarding again on 127.0.0.1:")
        assert "lost connection to pod" in run.text()
        assert run.forward_pid("grafana") != pids["grafana"]
        assert listening(ports["grafana"])
        for service, pid in pids.items():
            if service != "grafana":
                assert run.forward_pid(service) == pid and listening(ports[service])
    finally:
        code = run.stop()
    assert code == 0, run.text()


# --- issue #21, the likely ones -------------------------------------------------------


def test_a_kubectl_older_than_the_minimum_is_refused_naming_it(tmp_path):
    """Before the fix Debian 12's kubectl 1.20 went on and failed the render with
    `json: unknown field "labels"`."""
    old = script(tmp_path / "kubectl", 'import json\nprint(json.dumps({"clientVersion": '
                 '{"gitVersion": "v1.20.15"}}))\n')  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "obs_tools.deploy", "status", "--skip-minikube",
         f"--kubectl={old}"], capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    minimum = VERSIONS["KUBECTL_MIN_VERSION"]
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: kubectl v1.20.15 ({old}) is too old: make up needs")
    assert f"{minimum} or newer" in result.stderr


def test_the_default_profile_is_our_own(monkeypatch):
    """Not minikube's own "minikube", made with 2 CPUs: always refused as too small."""
    monkeypatch.delenv("OBS_MINIKUBE_PROFILE", raising=False)
    assert parse(["up"]).profile == "obs-stack"
