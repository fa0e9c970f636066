"""Minikube's part of `make preflight` and `make up`: the node size the k8s/ render needs
(held against an existing profile, or against this machine before a new one), `minikube
start` with that size, and the service images built inside the node, tagged with a hash
of what each image is built from (so that a code change reaches the pods, and a build
that failed can never pass for the old image of the same tag).

Supported minikube: v1.34.0 to v1.38.1 (scripts/versions.env MINIKUBE_MIN_VERSION and
MINIKUBE_MAX_TESTED_VERSION): what it prints was read from its source at those tags, and
tests/support/fake_minikube.py imitates it, citing the files.

Reads MINIKUBE_HOME (where Minikube keeps its machines, for the disk check; default
~/.minikube). The profile comes from the command line (cli.py: --profile, default
$OBS_MINIKUBE_PROFILE, else obs-stack).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from obs_tools.common.paths import REPO
from obs_tools.common.versions import VERSIONS

from . import resources
from .console import indent, say
from .contract import IMAGES, Image, image_tag
from .kubectl import DeployError, run_tool

HINT = "Install it: https://minikube.sigs.k8s.io/docs/start/ (or use --skip-minikube)."
# `profile list -o json` Status of a profile whose API server answers. minikube v1.34.0
# printed the API server's state, "Running" (cmd/minikube/cmd/config/profile_list.go,
# profileStatus); from v1.35.0 on it prints cluster.GetState's name, "OK" (code 200), or
# "HAppy" (201) for an HA cluster with all control planes healthy
# (pkg/minikube/cluster/status.go, codeNames; read at v1.35.0 and v1.38.1). v1.34.0
# also printed "HAppy" for HA. Anything else ("Stopped", "Paused", "Degraded",
# "Starting", "Unknown"...) is left to `minikube start`, which resumes or repairs it.
RUNNING = frozenset({"Running", "OK", "HAppy"})


class Minikube:
    """The `minikube` command at `path`, acting on one profile."""

    def __init__(self, path: str, profile: str) -> None:
        self.path = path
        self.profile = profile

    def preflight(self, render_yaml: str) -> resources.Sizing:
        """The node size the render needs, said, and checked against where it will run."""
        needs = resources.render_needs(render_yaml, nodes=1)
        sizing = resources.minikube_sizing(needs)
        say(f"Resources the stack needs on Minikube:\n{indent(sizing.explanation)}")
        self.check_version()
        profile = self.find_profile()
        if profile:
            # An existing profile keeps its size: `minikube start` ignores --cpus and
            # --memory for it, so a too-small one must be recreated, not started.
            self.check_profile(profile, sizing)
        else:
            self.check_host(sizing)
        return sizing

    def check_version(self) -> None:
        """Warn outside the range whose behaviour this tool was written against (it may
        still work: minikube rarely changes what is read here)."""
        # `minikube version --short` prints the bare version, "v1.38.1"
        # (cmd/minikube/cmd/version.go, read at v1.34.0 and v1.38.1).
        found = run_tool([self.path, "version", "--short"], 60, "minikube version").stdout
        found = found.strip().splitlines()[-1] if found.strip() else "unknown"
        low, high = VERSIONS["MINIKUBE_MIN_VERSION"], VERSIONS["MINIKUBE_MAX_VERSION"]
        if not found.startswith("v") or not (
            version_tuple(low) <= version_tuple(found) <= version_tuple(high)
        ):
            say(
                f"warning: minikube {found} is outside the range make up was checked "
                f"against ({low} to {high}); if a step fails, try minikube {high}."
            )

    def find_profile(self) -> dict | None:
        result = run_tool([self.path, "profile", "list", "-o", "json"], 60, "minikube")
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
        docker = shutil.which("docker")
        if sys.platform == "darwin" and docker:
            for warning in docker_desktop_shortfall(sizing, docker):
                say(f"warning: {warning}")

    def start(self, sizing: resources.Sizing) -> None:
        profile = self.find_profile()
        if is_running(profile):
            say(f"  Minikube profile {self.profile!r} is running ({profile_state(profile)}).")
            return
        argv = [self.path, "start", "-p", self.profile]
        if not profile:
            argv += [f"--cpus={sizing.cpus}", f"--memory={sizing.memory_mb}",
                     f"--disk-size={sizing.disk_mb}mb"]  # fmt: skip
            # A new cluster runs the Kubernetes the control-plane tests run, not the
            # minikube release's default (v1.35.1 in v1.38.1). Not for an existing one:
            # minikube refuses to downgrade it, and upgrading it is the user's call.
            # minikube v1.38.1 lists v1.34.4 among its known versions
            # (pkg/minikube/constants/constants_kubernetes_versions.go); older releases
            # warn that it is newer than their newest and look it up online
            # (cmd/minikube/cmd/start.go validateKubernetesVersion, read at v1.38.1).
            argv.append(f"--kubernetes-version={VERSIONS['K8S_VERSION']}")
        # An existing profile (checked big enough) is started as it is: size flags that
        # differ from it only make minikube print "You cannot change the CPUs for an
        # existing minikube cluster" (cmd/minikube/cmd/start_flags.go, v1.34.0-v1.38.1).
        say(f"  {shlex.join(['minikube', *argv[1:]])} (several minutes the first time)")
        run_tool(argv, 900, "minikube start", stream=lambda line: say(f"    | {line}"))

    def build_images(self, context: Path = REPO / "services") -> dict[str, str]:
        """Build each service image unless the node has it already; its tag per image name."""
        return {image.name: self.build_image(image, context) for image in IMAGES}

    def source_tags(self, context: Path = REPO / "services") -> dict[str, str]:
        """The tag per image name that a build of these sources makes, unbuilt."""
        return {image.name: content_tag(image, context) for image in IMAGES}

    def build_image(self, image: Image, context: Path) -> str:
        tag = f"{image.name}:{content_tag(image, context)}"
        if self.has_image(tag):
            # Same tag, same sources: that build already succeeded.
            say(f"  {tag}: already built from these sources")
            return tag.split(":", 1)[1]
        say(f"  minikube image build -t {tag} -f {image.dockerfile} {context}")
        started = time.monotonic()
        # A relative -f is taken inside the build context (services/).
        build = [self.path, "-p", self.profile, "image", "build", "-t", tag,
                 "-f", image.dockerfile, str(context)]  # fmt: skip
        output = run_tool(
            build, 900, f"building {tag} in Minikube", stream=lambda line: say(f"    | {line}")
        ).stdout
        # `minikube image build` logs a failed build as a warning and still exits 0
        # (v1.38.1 pkg/minikube/machine/build_images.go, BuildImage: "Failed to build
        # image for profile ..." then `return nil`). The tag is new for these sources,
        # so it is listed only if this build made it.
        if not self.has_image(tag):
            last = "\n".join(output.strip().splitlines()[-10:])
            raise DeployError(
                f"building the image {tag} ({image.service}) in Minikube failed: minikube "
                f"exited 0 but does not list the image. Its output ended with:\n{indent(last)}"
                f"\nRun the build by hand to see why: {shlex.join(build)}"
            )
        say(f"    {tag}: built ({time.monotonic() - started:.0f} s)")
        return tag.split(":", 1)[1]

    def has_image(self, tag: str) -> bool:
        # `image ls`'s default format "short" prints one repo tag a line, normalised as
        # docker.io/library/NAME:TAG (pkg/minikube/machine/cache_images.go, ListImages).
        listed = run_tool(
            [self.path, "-p", self.profile, "image", "ls"], 120, "minikube image ls"
        ).stdout.split()
        return any(ref == tag or ref.endswith(f"/{tag}") for ref in listed)


def content_tag(image: Image, context: Path) -> str:
    """The service's version and a hash of the Dockerfile and of every file it COPYs
    from the context: a new tag exactly when what the image is built from changed."""
    digest = hashlib.sha256()
    dockerfile = context / image.dockerfile
    for path in [dockerfile, *sorted(copied_files(dockerfile, context))]:
        digest.update(str(path.relative_to(context)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"{image_tag(image.service)}-{digest.hexdigest()[:12]}"


def copied_files(dockerfile: Path, context: Path) -> set[Path]:
    """The context's files that the Dockerfile's COPY lines (not --from) take, without
    bytecode (services/.dockerignore keeps it out of the context too)."""
    files: set[Path] = set()
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY" or any(w.startswith("--from") for w in words):
            continue
        for source in [w for w in words[1:-1] if not w.startswith("--")]:
            root = context / source
            found = [root] if root.is_file() else root.rglob("*")
            files |= {
                p for p in found
                if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
            }  # fmt: skip
    return files


def docker_desktop_shortfall(sizing: resources.Sizing, docker: str) -> list[str]:
    """On macOS the docker driver's node lives in Docker Desktop's VM, which gets about
    half the Mac's memory by default: what it lacks for the node (a warning, since
    another driver, vfkit or qemu, does not use it)."""
    try:
        result = subprocess.run(
            [docker, "info", "--format", "{{.NCPU}} {{.MemTotal}}"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        cpus, memory = (int(word) for word in result.stdout.split())
    except (subprocess.TimeoutExpired, ValueError):
        return []  # Docker not running: minikube will say so, or use another driver
    memory_mb = memory // 2**20  # bytes; minikube's --memory counts MiB
    if cpus >= sizing.cpus and memory_mb >= sizing.memory_mb:
        return []
    return [
        f"Docker Desktop gives its VM {cpus} CPUs and {memory_mb} MB; a Minikube node on "
        f"the docker driver needs {sizing.cpus} CPUs and {sizing.memory_mb} MB. Raise them "
        "in Docker Desktop: Settings > Resources (then Apply & restart), or minikube "
        "will refuse to start."
    ]


def version_tuple(text: str) -> tuple[int, ...]:
    """(1, 38, 1) from v1.38.1 or v1.38.1-beta.0; zeros for what is not a number."""
    parts = text.lstrip("v").split("-")[0].split(".")[:3]
    return tuple(int(p) if p.isdigit() else 0 for p in parts)


def is_running(profile: dict | None) -> bool:
    return bool(profile) and profile.get("Status") in RUNNING


def profile_state(profile: dict | None) -> str:
    return (profile or {}).get("Status") or "absent"


def minikube_home() -> Path:
    """Where Minikube keeps its machines (MINIKUBE_HOME, default ~/.minikube)."""
    home = os.environ.get("MINIKUBE_HOME")
    return Path(home) if home else Path.home() / ".minikube"
