"""Command line of the Kubernetes deployment: preflight, up, status, open, down.

Usage: python -m k8s {preflight,up,status,open,down} [options]   (scripts/ on the path)
Reads OBS_K8S_CONTEXT (kubectl context), OBS_KUBECTL (the kubectl to run; default the
one on PATH), OBS_MINIKUBE_PROFILE (default minikube), MINIKUBE_HOME (where the disk
check looks; default ~/.minikube), the Secret variables of k8s/secrets.py, and
KUBECONFIG through kubectl (or --kubeconfig). Exit status: 0 done,
1 failed (with a message naming what and why, never a traceback), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from stack.wait import PollTimeout, poll_until, port_in_use

from . import resources, rollout
from .contract import IMAGES, NAMESPACES, SELECTOR, UIS, WORKLOAD_KINDS
from .kubectl import DeployError, Kubectl, require_tool, run_tool
from .secrets import SECRETS, consumers, ensure_secrets, not_in_table

REPO = Path(__file__).resolve().parents[2]
# The hostPath that Fluent Bit's DaemonSet keeps its tail DB and buffer in: it outlives
# the pods (that is its point) and `down` too (tests/k8s checks it is the render's).
FLUENT_BIT_STATE = "/var/lib/fluent-bit"
# --timeout's default, in seconds. Longer than the longest wait inside the stack (the
# kibana-import Job waits up to 900 s for Kibana, whose startupProbe allows 600 s;
# Elasticsearch's 300 s, the setup Job's 600 s) plus the image pulls of a first run,
# so that `make up` does not give up on a stack that is still coming up on its own.
# tests/k8s/test_deploy_tooling.py derives the inner waits from the render and checks.
DEFAULT_TIMEOUT = 1200
# Said after a rollout timeout (not after a failed Job: re-running does not re-run it).
RESUME_HINT = (
    "Nothing is undone: the stack keeps coming up in the cluster. Re-running `make up` "
    "resumes (it re-applies and waits again), and `make status` shows what is not ready."
)
MINIKUBE_HINT = "Install it: https://minikube.sigs.k8s.io/docs/start/ (or use --skip-minikube)."
KUBECTL_HINT = (
    "Install it: https://kubernetes.io/docs/tasks/tools/ (`minikube kubectl` also works)."
)


def say(line: str) -> None:
    print(line, flush=True)


def image_tag(service: str) -> str:
    """The services' version (their pyproject.toml) tags their images."""
    text = (REPO / "services" / service / "pyproject.toml").read_text()
    return next(
        line.split("=", 1)[1].strip().strip('"')
        for line in text.splitlines()
        if line.startswith("version")
    )


def render(kubectl: Kubectl, manifests: Path) -> str:
    return kubectl.run("kustomize", str(manifests), timeout=120).stdout


def workloads_in(render_yaml: str) -> set[tuple[str, str, str]]:
    return {
        (d["kind"], d["metadata"].get("namespace", "default"), d["metadata"]["name"])
        for d in yaml.safe_load_all(render_yaml)
        if d and d.get("kind") in WORKLOAD_KINDS
    }


class Deployment:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.profile = args.profile
        self.manifests = Path(args.manifests).resolve()
        kubectl = require_tool("kubectl", KUBECTL_HINT, args.kubectl)
        self.minikube = None if args.skip_minikube else require_tool("minikube", MINIKUBE_HINT)
        # Minikube names its kubectl context after the profile.
        context = args.context or (None if args.skip_minikube else self.profile)
        self.kubectl = Kubectl(kubectl, context, args.kubeconfig)
        if not (self.manifests / "kustomization.yaml").exists():
            raise DeployError(f"no kustomization.yaml in {self.manifests}")

    # --- preflight -------------------------------------------------------------------
    def preflight(self) -> resources.Sizing | None:
        render_yaml = render(self.kubectl, self.manifests)
        unknown = not_in_table(render_yaml)
        if unknown:
            raise DeployError(
                "k8s/ refers to Secrets that `make up` does not create (scripts/k8s/secrets.py,"
                " SECRETS): " + ", ".join(unknown)
            )
        if self.minikube:
            needs = resources.render_needs(render_yaml, nodes=1)
            sizing = resources.minikube_sizing(needs)
            say(f"Resources the stack needs on Minikube:\n{indent(sizing.explanation)}")
            profile = self.minikube_profile()
            if profile:
                # An existing profile keeps its size: `minikube start` ignores --cpus and
                # --memory for it, so a too-small one must be recreated, not started.
                self.check_profile(profile, sizing)
            else:
                self.check_host(sizing)
            return sizing
        context = self.kubectl.run("config", "current-context", check=False).stdout.strip()
        nodes = self.kubectl.json("get", "nodes")["items"]
        pods = self.kubectl.json("get", "pods", "--all-namespaces")["items"]
        classes = self.kubectl.json("get", "storageclasses")["items"]
        needs = resources.render_needs(render_yaml, nodes=max(1, len(nodes)))
        problems = resources.cluster_shortfall(needs, nodes, pods)
        problems += resources.storage_shortfall(render_yaml, classes)
        if problems:
            raise DeployError(
                f"the cluster (context {self.kubectl.context or context!r}) cannot run the "
                "stack:\n" + indent("\n".join(problems))
            )
        say(
            f"Cluster check (context {self.kubectl.context or context!r}):\n"
            + indent(resources.cluster_fit(needs, nodes, pods))
        )
        return None

    def minikube_profile(self) -> dict | None:
        result = run_tool([self.minikube, "profile", "list", "-o", "json"], 60, "minikube")
        for profile in json.loads(result.stdout or "{}").get("valid") or []:
            if profile.get("Name") == self.profile:
                return profile
        return None

    def check_profile(self, profile: dict, sizing: resources.Sizing) -> None:
        config = profile.get("Config") or {}
        short = [
            f"{what}: has {have}, needs {need}"
            for what, have, need in (
                ("CPUs", config.get("CPUs", 0), sizing.cpus),
                ("memory (MB)", config.get("Memory", 0), sizing.memory_mb),
                ("disk (MB)", config.get("DiskSize", 0), sizing.disk_mb),
            )
            if have < need
        ]
        if short:
            raise DeployError(
                f"the Minikube profile {self.profile!r} ({profile_state(profile)}) is too "
                "small: "
                + "; ".join(short)
                + f"\nRecreate it: minikube delete -p {self.profile} && make up"
                + " (this deletes everything in that cluster)"
            )
        say(
            f"Minikube profile {self.profile!r} ({profile_state(profile)}) has "
            f"{config.get('CPUs')} CPUs, {config.get('Memory')} MB, {config.get('DiskSize')} MB "
            "disk: big enough."
        )

    def check_host(self, sizing: resources.Sizing) -> None:
        """Before `minikube start`: can this machine give the new node what it needs?"""
        problems = resources.host_shortfall(sizing, minikube_home())
        if problems:
            raise DeployError(
                f"this machine cannot host a Minikube node of {sizing.cpus} CPUs, "
                f"{sizing.memory_mb} MB and {sizing.disk_mb} MB of disk:\n"
                + indent("\n".join(problems))
            )
        say(f"No Minikube profile {self.profile!r} yet; this machine has room for it.")

    # --- up --------------------------------------------------------------------------
    def up(self) -> None:
        started = time.monotonic()
        sizing = self.step("preflight", self.preflight)
        if self.minikube:
            self.step("minikube", lambda: self.start_minikube(sizing))
        if self.args.registry:
            say(f"Images from {self.args.registry} (not built here).")
        elif self.args.skip_build:
            say("Image build skipped (--skip-build): the images must already be on the nodes.")
        elif self.minikube:
            self.step("images", self.build_images)
        else:
            raise DeployError(
                "on a cluster other than Minikube, name the registry that holds the images "
                "(--registry REGISTRY) or pass --skip-build if the nodes already have them"
            )
        with self.kustomization() as manifests:
            render_yaml = render(self.kubectl, manifests)
            self.step("namespaces", lambda: self.apply_namespaces(render_yaml))
            changed = self.step(
                "secrets", lambda: ensure_secrets(self.kubectl, say, self.args.show_secrets)
            )
            readers = consumers(render_yaml, changed) if changed else []
            jobs = [r for r in readers if r[0] == "Job"]
            workloads = [r for r in readers if r[0] in WORKLOAD_KINDS and r[0] != "Job"]
            if jobs:
                self.step("re-run jobs", lambda: self.rerun_jobs(changed, jobs))
            self.step("apply", lambda: self.apply(manifests, render_yaml))
            if workloads:
                self.step("restart", lambda: self.restart(changed, workloads))
            self.step("rollout", lambda: self.wait_rollout(render_yaml))
        say(f"obs-stack is up ({time.monotonic() - started:.0f} s).\n")
        print_access(self.profile if self.minikube else None)

    def wait_rollout(self, render_yaml: str) -> None:
        rollout.wait_ready(
            self.kubectl, say, self.args.timeout, expected=workloads_in(render_yaml),
            on_timeout=RESUME_HINT,
        )  # fmt: skip

    def rerun_jobs(self, changed, jobs) -> None:
        """A finished Job never runs again: delete the ones that read a changed
        credential (elasticsearch-setup sets the users' passwords), so that the apply
        creates them anew and they run with the new values."""
        say(f"  Credentials changed: {', '.join('/'.join(c) for c in sorted(changed))}.")
        for _, namespace, name in jobs:
            say(f"  job/{name} ({namespace}) reads them: deleting it so that it runs again")
            self.kubectl.run(
                "delete", "job", name, "-n", namespace, "--ignore-not-found", "--wait",
                "--timeout=120s", timeout=150,
            )  # fmt: skip

    def restart(self, changed, workloads) -> None:
        """Containers read a Secret's values at start (environment variables): restart
        the workloads that read a changed one, so they use the new values."""
        for kind, namespace, name in workloads:
            say(f"  {kind.lower()}/{name} ({namespace}) reads a changed credential: restarting it")
            self.kubectl.run(
                "rollout", "restart", f"{kind.lower()}/{name}", "-n", namespace, timeout=60
            )

    def step(self, name: str, action):
        say(f"==> {name}")
        start = time.monotonic()
        result = action()
        say(f"    {name}: ok ({time.monotonic() - start:.0f} s)")
        return result

    def start_minikube(self, sizing: resources.Sizing) -> None:
        profile = self.minikube_profile()
        if profile and profile.get("Status") == "Running":
            say(f"  Minikube profile {self.profile!r} is running.")
            return
        say(
            f"  minikube start -p {self.profile} --cpus {sizing.cpus} --memory "
            f"{sizing.memory_mb} --disk-size {sizing.disk_mb}mb (several minutes the first time)"
        )
        run_tool(
            [self.minikube, "start", "-p", self.profile, f"--cpus={sizing.cpus}",
             f"--memory={sizing.memory_mb}", f"--disk-size={sizing.disk_mb}mb"],
            900, "minikube start", stream=lambda line: say(f"    | {line}"),
        )  # fmt: skip

    def build_images(self) -> None:
        for image in IMAGES:
            tag = f"{image.name}:{image_tag(image.service)}"
            say(f"  minikube image build -t {tag} -f {image.dockerfile} services")
            started = time.monotonic()
            # A relative -f is taken inside the build context (services/).
            run_tool(
                [self.minikube, "-p", self.profile, "image", "build", "-t", tag,
                 "-f", image.dockerfile, str(REPO / "services")],
                900, f"building {tag} in Minikube", stream=lambda line: say(f"    | {line}"),
            )  # fmt: skip
            # `minikube image build` logs a failed build as a warning and still exits 0
            # (machine.BuildImage): check that the image is really there.
            listed = run_tool(
                [self.minikube, "-p", self.profile, "image", "ls"], 120, "minikube image ls"
            ).stdout.split()
            if not any(ref == tag or ref.endswith(f"/{tag}") for ref in listed):
                raise DeployError(
                    f"building {tag} in Minikube failed: `minikube image ls` does not list it "
                    f"(see `minikube -p {self.profile} logs`, or run the build by hand: "
                    f"minikube -p {self.profile} image build -t {tag} -f {image.dockerfile} "
                    "services)"
                )
            say(f"    {tag}: built ({time.monotonic() - started:.0f} s)")

    def kustomization(self):
        """k8s/ itself, or an overlay that points the images at --registry."""
        registry = self.args.registry
        if not registry:
            return _Fixed(self.manifests)
        overlay = tempfile.TemporaryDirectory(prefix="obs-stack-overlay-")
        images = [
            {
                "name": image.name,
                "newName": f"{registry.rstrip('/')}/{image.name}",
                "newTag": image_tag(image.service),
            }
            for image in IMAGES
        ]
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(self.manifests, overlay.name)],
            "images": images,
        }
        (Path(overlay.name) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        return _Overlay(overlay)

    def apply(self, manifests: Path, render_yaml: str) -> None:
        result = self.kubectl.run("apply", "-k", str(manifests), timeout=300, check=False)
        changed = _immutable_jobs(result.stderr)
        if result.returncode != 0 and changed:
            # A Job's pod template cannot change (its ConfigMap's name hash did, say): a
            # finished Job is history, so replace it and apply again.
            namespaces = {
                d["metadata"]["name"]: d["metadata"].get("namespace", "default")
                for d in yaml.safe_load_all(render_yaml)
                if d and d["kind"] == "Job"
            }
            for job in changed:
                say(f"  job/{job} changed: deleting it to run the new one")
                self.kubectl.run(
                    "delete", "job", job, "-n", namespaces.get(job, "default"),
                    "--wait", "--timeout=120s", timeout=150,
                )  # fmt: skip
            result = self.kubectl.run("apply", "-k", str(manifests), timeout=300, check=False)
        if result.returncode != 0:
            raise DeployError(
                f"`kubectl apply -k {manifests}` failed (exit {result.returncode}):\n"
                + (result.stderr.strip() or result.stdout.strip())
            )
        say(indent(result.stdout.strip()))
        # Warnings (Pod Security "would violate", deprecated APIs) do not fail the apply
        # but a rejected pod shows up only later as a rollout that never finishes.
        for line in result.stderr.strip().splitlines():
            say(f"  {line}")

    def apply_namespaces(self, render_yaml: str) -> None:
        namespaces = [d for d in yaml.safe_load_all(render_yaml) if d and d["kind"] == "Namespace"]
        if namespaces:
            self.kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump_all(namespaces), timeout=60)
        say(f"  {', '.join(d['metadata']['name'] for d in namespaces) or 'none in the render'}")

    # --- status, down, open ----------------------------------------------------------
    def status(self) -> int:
        workloads = rollout.list_workloads(self.kubectl)
        if not workloads:
            say(f"obs-stack is not deployed (nothing labelled {SELECTOR}).")
            return 1
        width = max(len(w.label) for w in workloads)
        for w in workloads:
            done = "complete" if w.kind == "Job" else "ready"
            state = done if w.done else ("FAILED" if w.failed else "NOT READY")
            say(f"  {w.label:<{width}}  {w.ready}/{w.desired}  {state}")
        not_ready = [w for w in workloads if not w.done]
        for namespace in sorted({w.namespace for w in not_ready}):
            for pod, reasons in rollout.pod_problems(self.kubectl, namespace).items():
                say(f"  pod {pod} ({namespace}): {'; '.join(reasons)}")
        say(
            f"{len(workloads) - len(not_ready)}/{len(workloads)} workloads ready"
            + (f"; not ready: {', '.join(w.name for w in not_ready)}" if not_ready else "")
        )
        return 1 if not_ready else 0

    def down(self) -> None:
        """Delete exactly what the render and the Secrets table name (by name, not by
        label: someone else's object that happens to carry our labels stays), wait for
        it to be gone, and say what is left if anything is."""
        say(f"Deleting what {display(self.manifests)} defines, and the Secrets `up` made ...")
        timeout = int(self.args.timeout)
        started = time.monotonic()
        for spec in SECRETS:
            self.kubectl.run(
                "delete", "secret", spec.name, "-n", spec.namespace, "--ignore-not-found",
                timeout=60,
            )  # fmt: skip
        self.kubectl.run(
            "delete", "-k", str(self.manifests), "--ignore-not-found", "--wait",
            f"--timeout={timeout}s", timeout=timeout + 30,
        )  # fmt: skip
        left = self.kubectl.run(
            "get", "-k", str(self.manifests), "--ignore-not-found", "-o", "name", timeout=60
        ).stdout.split()
        # Volumes provisioned for our claims go with them (reclaim policy Delete), but
        # asynchronously: wait for them too, within the same time limit.
        namespaces = set(NAMESPACES)

        def volumes_gone():
            volumes = self.kubectl.json("get", "persistentvolumes")["items"]
            left_volumes = [
                f"persistentvolume/{v['metadata']['name']}"
                for v in volumes
                if (v["spec"].get("claimRef") or {}).get("namespace") in namespaces
                and v["spec"].get("persistentVolumeReclaimPolicy") == "Delete"
            ]
            return left_volumes or None

        try:
            poll_until(
                lambda: not volumes_gone(),
                "volumes of the deleted claims",
                max(5.0, timeout - (time.monotonic() - started)),
                1.0,
            )
        except PollTimeout:
            left += volumes_gone() or []
        if left:
            raise DeployError(f"still present after delete: {', '.join(left)}")
        say(f"obs-stack removed ({time.monotonic() - started:.0f} s).")
        say(state_left_note(self.profile if self.minikube else None))

    def open(self) -> None:
        busy = [ui for ui in UIS if port_in_use(ui.port)]
        if busy:
            raise DeployError(
                "local ports already in use: " + ", ".join(f"{ui.port} ({ui.title})" for ui in busy)
            )
        forwards = []
        try:
            for ui in UIS:
                argv = self.kubectl.argv(
                    ["port-forward", "-n", ui.namespace, f"svc/{ui.service}",
                     f"{ui.port}:{ui.port}", "--address", "127.0.0.1"]
                )  # fmt: skip
                forwards.append(
                    (
                        ui,
                        subprocess.Popen(
                            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
                        ),
                    )
                )
            for ui, process in forwards:

                def listening(ui=ui, process=process):
                    if process.poll() is not None:
                        raise DeployError(
                            f"port-forward to {ui.title} exited: {process.stderr.read().strip()}"
                        )
                    return port_in_use(ui.port)

                try:
                    poll_until(listening, f"port-forward to {ui.title}", 20)
                except PollTimeout as exc:
                    raise DeployError(str(exc)) from None
            print_access(None, forwarded=True)
            say("Forwarding until Ctrl-C.")
            while True:
                for ui, process in forwards:
                    if process.poll() is not None:
                        raise DeployError(
                            f"port-forward to {ui.title} stopped: {process.stderr.read().strip()}"
                        )
                time.sleep(1)
        except KeyboardInterrupt:
            say("Stopped forwarding.")
        finally:
            for _, process in forwards:
                process.terminate()
            for _, process in forwards:
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()


class _Fixed:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        return None


class _Overlay:
    def __init__(self, directory: tempfile.TemporaryDirectory) -> None:
        self.directory = directory

    def __enter__(self) -> Path:
        return Path(self.directory.name)

    def __exit__(self, *exc) -> None:
        self.directory.cleanup()


def print_access(profile: str | None, forwarded: bool = False) -> None:
    if not forwarded:
        say("Reach the UIs with `make open` (port-forwards until Ctrl-C), then:")
    for ui in UIS:
        say(f"  {ui.title:<24} http://127.0.0.1:{ui.port}{ui.path}")
    # Values are never printed: say where to read them.
    say("Logins (read from the Secrets; `up --show-secrets` prints every value):")
    say(
        "  Grafana (user, password): kubectl -n obs-monitoring get secret grafana-admin -o "
        """go-template='{{index .data "admin-user" | base64decode}} """
        """{{index .data "admin-password" | base64decode}}{{"\\n"}}'"""
    )
    say(
        "  Kibana: user elastic, password: kubectl -n obs-monitoring get secret "
        "elasticsearch-credentials -o jsonpath='{.data.elastic-password}' | base64 -d"
    )


def state_left_note(profile: str | None) -> str:
    """What `down` leaves behind on purpose, and how to remove it."""
    remove = (
        f"minikube -p {profile} ssh -- sudo rm -rf {FLUENT_BIT_STATE}"
        if profile
        else f"on each node: sudo rm -rf {FLUENT_BIT_STATE}"
    )
    return (
        f"Left on the node(s): Fluent Bit's state in the hostPath {FLUENT_BIT_STATE} (its "
        "tail.db offsets and up to 1 GB of log chunks not yet sent). A later `make up` "
        "resumes from it and sends those old chunks. To start clean, remove it: " + remove
    )


def profile_state(profile: dict | None) -> str:
    return (profile or {}).get("Status") or "absent"


def minikube_home() -> Path:
    """Where Minikube keeps its machines (MINIKUBE_HOME, default ~/.minikube)."""
    home = os.environ.get("MINIKUBE_HOME")
    return Path(home) if home else Path.home() / ".minikube"


def _immutable_jobs(stderr: str) -> list[str]:
    """Jobs that `kubectl apply` refused to change because their template is immutable."""
    return sorted(set(re.findall(r'The Job "([^"]+)" is invalid: .*field is immutable', stderr)))


def display(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def parse(argv: list[str]) -> argparse.Namespace:
    return parser().parse_args(argv)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m k8s", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["preflight", "up", "status", "open", "down"])
    parser.add_argument(
        "--skip-minikube",
        action="store_true",
        help="use the current kubectl context instead of Minikube",
    )
    parser.add_argument("--skip-build", action="store_true", help="do not build the service images")
    parser.add_argument("--registry", help="pull the service images from REGISTRY/obs-frontend:...")
    parser.add_argument(
        "--context",
        default=os.environ.get("OBS_K8S_CONTEXT"),
        help="kubectl context (default: Minikube's, or the current one)",
    )
    parser.add_argument(
        "--kubeconfig",
        help="kubeconfig file (default: kubectl's: $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument(
        "--kubectl",
        default=os.environ.get("OBS_KUBECTL"),
        help="the kubectl to run, a path or a name on PATH (default: kubectl)",
    )
    parser.add_argument(
        "--profile",
        default=os.environ.get("OBS_MINIKUBE_PROFILE", "minikube"),
        help="Minikube profile, also its kubectl context (default: minikube)",
    )
    parser.add_argument("--manifests", default=str(REPO / "k8s"), help="kustomization directory")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for the rollout (up) or the deletion (down); default "
        f"{DEFAULT_TIMEOUT:g}",
    )
    parser.add_argument(
        "--show-secrets",
        action="store_true",
        help="print the Secrets' values (never printed otherwise)",
    )
    return parser  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        deployment = Deployment(args)
        if args.command == "preflight":
            deployment.preflight()
        elif args.command == "up":
            deployment.up()
        elif args.command == "status":
            return deployment.status()
        elif args.command == "down":
            deployment.down()
        elif args.command == "open":
            deployment.open()
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
