"""The deploy steps of `make preflight`, `make up`, `make status` and `make down`
(Deployment): preflight (the render against the cluster, or Minikube's sizing), up
(Minikube started and the images built, namespaces, Secrets, apply, rollout), status,
and down (exactly what up made). Minikube's steps are in minikube.py, the Secrets' in
secrets.py, `make open` and the URLs in access.py.

Reads no environment variables itself: its options come from cli.py (which reads
OBS_K8S_CONTEXT, OBS_KUBECTL, OBS_MINIKUBE_PROFILE), minikube.py reads MINIKUBE_HOME,
secrets.py the Secret variables, kubectl KUBECONFIG.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import yaml

from obs_tools.common.paths import REPO
from obs_tools.common.versions import VERSIONS
from obs_tools.common.wait import PollTimeout, poll_until

from . import resources, rollout
from .access import print_access
from .console import indent, say
from .contract import IMAGES, NAMESPACES, SELECTOR, WORKLOAD_KINDS, image_tag
from .kubectl import DeployError, Kubectl, require_tool
from .minikube import HINT as MINIKUBE_HINT
from .minikube import Minikube
from .secrets import (
    check_table,
    delete_secrets,
    ensure_secrets,
    readers,
    rerun_jobs,
    restart_readers,
)

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
KUBECTL_HINT = (
    "Install it: https://kubernetes.io/docs/tasks/tools/ (with minikube installed and no "
    "kubectl, `make up` runs `minikube kubectl --` instead; a shell alias is not seen)."
)

T = TypeVar("T")


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
        self.minikube = None
        if not args.skip_minikube:
            if not (args.kubectl or shutil.which("kubectl")) and not shutil.which("minikube"):
                require_tool("kubectl", KUBECTL_HINT)  # neither: name the first one needed
            self.minikube = Minikube(require_tool("minikube", MINIKUBE_HINT), self.profile)
        # Minikube names its kubectl context after the profile.
        context = args.context or (None if args.skip_minikube else self.profile)
        self.kubectl = self.find_kubectl(context)
        if not (self.manifests / "kustomization.yaml").exists():
            raise DeployError(f"no kustomization.yaml in {self.manifests}")

    def find_kubectl(self, context: str | None) -> Kubectl:
        """kubectl from --kubectl or PATH; with Minikube and no kubectl on PATH,
        `minikube -p PROFILE kubectl --` (it downloads the cluster's kubectl version
        the first time; a shell alias `kubectl=...` is invisible to this process)."""
        if self.args.kubectl or not self.minikube or shutil.which("kubectl"):
            path = require_tool("kubectl", KUBECTL_HINT, self.args.kubectl)
            check_kubectl_version(path)
            return Kubectl(path, context, self.args.kubeconfig)
        say(f"No kubectl on PATH: using `minikube -p {self.profile} kubectl --`.")
        prefix = ("-p", self.profile, "kubectl", "--")
        return Kubectl(self.minikube.path, context, self.args.kubeconfig, prefix)

    # --- preflight -------------------------------------------------------------------
    def preflight(self) -> resources.Sizing | None:
        render_yaml = render(self.kubectl, self.manifests)
        check_table(render_yaml)
        if self.minikube:
            return self.minikube.preflight(render_yaml)
        self.check_cluster(render_yaml)
        return None

    def check_cluster(self, render_yaml: str) -> None:
        """A cluster other than Minikube: do its nodes have room and storage for the render?"""
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

    # --- up --------------------------------------------------------------------------
    def up(self) -> None:
        started = time.monotonic()
        sizing = self.step("preflight", self.preflight)
        if self.minikube:
            self.step("minikube", lambda: self.minikube.start(sizing))
        tags = self.provide_images()
        with self.kustomization(tags) as manifests:
            render_yaml = render(self.kubectl, manifests)
            self.step("namespaces", lambda: self.apply_namespaces(render_yaml))
            self.step("failed jobs", lambda: self.replace_failed_jobs(render_yaml))
            changed = self.step(
                "secrets", lambda: ensure_secrets(self.kubectl, say, self.args.show_secrets)
            )
            jobs, workloads = readers(render_yaml, changed)
            if jobs:
                self.step("re-run jobs", lambda: rerun_jobs(self.kubectl, say, changed, jobs))
            self.step("apply", lambda: self.apply(manifests, render_yaml))
            if workloads:
                self.step("restart", lambda: restart_readers(self.kubectl, say, workloads))
            self.step("rollout", lambda: self.wait_rollout(render_yaml))
        say(f"obs-stack is up ({time.monotonic() - started:.0f} s).\n")
        print_access(self.profile if self.minikube else None)

    def step(self, name: str, action: Callable[[], T]) -> T:
        say(f"==> {name}")
        start = time.monotonic()
        result = action()
        say(f"    {name}: ok ({time.monotonic() - start:.0f} s)")
        return result

    def provide_images(self) -> dict[str, str] | None:
        """The service images: built in Minikube (their tags returned), or already in
        --registry or on the nodes (None: the manifests' tags)."""
        if self.args.registry:
            say(f"Images from {self.args.registry} (not built here).")
        elif self.args.skip_build and self.minikube:
            # The tags a build of these sources makes (what an earlier `make up` left
            # on the node), not the manifests' bare version, which nothing builds.
            tags = self.minikube.source_tags(Path(self.args.services))
            names = ", ".join(f"{name}:{tag}" for name, tag in tags.items())
            say(f"Image build skipped (--skip-build): using {names}.")
            return tags
        elif self.args.skip_build:
            say("Image build skipped (--skip-build): the images must already be on the nodes.")
        elif self.minikube:
            services = Path(self.args.services)
            return self.step("images", lambda: self.minikube.build_images(services))
        else:
            raise DeployError(
                "on a cluster other than Minikube, name the registry that holds the images "
                "(--registry REGISTRY) or pass --skip-build if the nodes already have them"
            )

    def kustomization(
        self, tags: dict[str, str] | None = None
    ) -> contextlib.AbstractContextManager[Path]:
        """k8s/ itself, or an overlay that points the images at --registry, or at the
        tags just built in Minikube (a new tag changes the pod template: the pods roll)."""
        if tags:
            return images_overlay(self.manifests, {name: (name, t) for name, t in tags.items()})
        if not self.args.registry:
            return contextlib.nullcontext(self.manifests)
        return registry_overlay(self.manifests, self.args.registry)

    def replace_failed_jobs(self, render_yaml: str) -> None:
        """A Job out of retries stays Failed, and `apply` does not run it again: delete
        ours that failed, so that this run's apply creates them anew."""
        jobs = {
            (d["metadata"].get("namespace", "default"), d["metadata"]["name"])
            for d in yaml.safe_load_all(render_yaml)
            if d and d["kind"] == "Job"
        }
        failed = []
        for namespace in sorted({namespace for namespace, _ in jobs}):
            listed = self.kubectl.run("get", "jobs", "-n", namespace, "-o", "json", check=False)
            for job in (json.loads(listed.stdout).get("items") if listed.stdout else None) or []:
                workload = rollout.workload_state({**job, "kind": "Job"})
                if workload.failed and (namespace, workload.name) in jobs:
                    failed.append(workload)
        for job in failed:
            say(f"  job/{job.name} ({job.namespace}) had failed ({job.failed}): deleting it "
                "so that it runs again")  # fmt: skip
            self.kubectl.run(
                "delete", "job", job.name, "-n", job.namespace, "--ignore-not-found", "--wait",
                "--timeout=120s", timeout=150,
            )  # fmt: skip
        if not failed:
            say("  none")

    def apply_namespaces(self, render_yaml: str) -> None:
        namespaces = [d for d in yaml.safe_load_all(render_yaml) if d and d["kind"] == "Namespace"]
        if namespaces:
            self.kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump_all(namespaces), timeout=60)
        say(f"  {', '.join(d['metadata']['name'] for d in namespaces) or 'none in the render'}")

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

    def wait_rollout(self, render_yaml: str) -> None:
        rollout.wait_ready(
            self.kubectl, say, self.args.timeout, expected=workloads_in(render_yaml),
            on_timeout=RESUME_HINT,
        )  # fmt: skip

    # --- status, down ----------------------------------------------------------------
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
        delete_secrets(self.kubectl)
        self.kubectl.run(
            "delete", "-k", str(self.manifests), "--ignore-not-found", "--wait",
            f"--timeout={timeout}s", timeout=timeout + 30,
        )  # fmt: skip
        left = self.kubectl.run(
            "get", "-k", str(self.manifests), "--ignore-not-found", "-o", "name", timeout=60
        ).stdout.split()
        # Volumes provisioned for our claims go with them (reclaim policy Delete), but
        # asynchronously: wait for them too, within the same time limit.
        left += self.wait_volumes_gone(max(5.0, timeout - (time.monotonic() - started)))
        if left:
            raise DeployError(f"still present after delete: {', '.join(left)}")
        say(f"obs-stack removed ({time.monotonic() - started:.0f} s).")
        say(state_left_note(self.profile if self.minikube else None))

    def wait_volumes_gone(self, seconds: float) -> list[str]:
        """The volumes of our deleted claims still there after `seconds`, if any."""
        try:
            poll_until(
                lambda: not self.volumes_left(), "volumes of the deleted claims", seconds, 1.0
            )
        except PollTimeout:
            return self.volumes_left()
        return []

    def volumes_left(self) -> list[str]:
        namespaces = set(NAMESPACES)
        volumes = self.kubectl.json("get", "persistentvolumes")["items"]
        return [
            f"persistentvolume/{v['metadata']['name']}"
            for v in volumes
            if (v["spec"].get("claimRef") or {}).get("namespace") in namespaces
            and v["spec"].get("persistentVolumeReclaimPolicy") == "Delete"
        ]


def registry_overlay(manifests: Path, registry: str) -> contextlib.AbstractContextManager[Path]:
    """A kustomization over `manifests` that names the service images in `registry`."""
    return images_overlay(
        manifests,
        {
            image.name: (f"{registry.rstrip('/')}/{image.name}", image_tag(image.service))
            for image in IMAGES
        },
    )


@contextlib.contextmanager
def images_overlay(manifests: Path, images: dict[str, tuple[str, str]]) -> Iterator[Path]:
    """A kustomization over `manifests` that renames each image {name: (new name,
    new tag)} (kustomize `images`), in a temporary directory removed on exit."""
    with tempfile.TemporaryDirectory(prefix="obs-stack-overlay-") as directory:
        images = [
            {"name": name, "newName": new_name, "newTag": tag}
            for name, (new_name, tag) in images.items()
        ]
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(manifests, directory)],
            "images": images,
        }
        (Path(directory) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        yield Path(directory)


def check_kubectl_version(path: str) -> None:
    """Refuse a kubectl older than KUBECTL_MIN_VERSION (Debian 12's 1.20 fails the
    render with `json: unknown field "labels"`). One that does not say its version is
    let through: the render then fails with kubectl's own message."""
    minimum = VERSIONS["KUBECTL_MIN_VERSION"]
    try:
        result = subprocess.run(
            [path, "version", "--client", "-o", "json"], capture_output=True, text=True,
            timeout=30, check=False,
        )  # fmt: skip
        found = json.loads(result.stdout)["clientVersion"]["gitVersion"]
    except (subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
        return
    if version_tuple(found) < version_tuple(minimum):
        raise DeployError(
            f"kubectl {found} ({path}) is too old: make up needs {minimum} or newer. "
            "Install a newer one (https://kubernetes.io/docs/tasks/tools/), or with "
            "Minikube take it off PATH: `minikube kubectl --` is then used."
        )


def version_tuple(text: str) -> tuple[int, ...]:
    """(1, 33, 0) from v1.33.0, v1.32.4-dispatcher or 1.20.5."""
    return tuple(
        int(re.match(r"\d*", part).group() or 0) for part in text.lstrip("v").split(".")[:3]
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


def _immutable_jobs(stderr: str) -> list[str]:
    """Jobs that `kubectl apply` refused to change because their template is immutable."""
    return sorted(set(re.findall(r'The Job "([^"]+)" is invalid: .*field is immutable', stderr)))


def display(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)
