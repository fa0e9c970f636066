"""Minikube's part of `make preflight` and `make up`: the node size the k8s/ render needs
(held against an existing profile, or against this machine before a new one), `minikube
start` with that size, and the service images built inside the node.

Reads MINIKUBE_HOME (where Minikube keeps its machines, for the disk check; default
~/.minikube). The profile comes from the command line (cli.py: --profile, default
$OBS_MINIKUBE_PROFILE, else minikube).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from obs_tools.common.paths import REPO

from . import resources
from .console import indent, say
from .contract import IMAGES, Image, image_tag
from .kubectl import DeployError, run_tool

HINT = "Install it: https://minikube.sigs.k8s.io/docs/start/ (or use --skip-minikube)."


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
        profile = self.find_profile()
        if profile:
            # An existing profile keeps its size: `minikube start` ignores --cpus and
            # --memory for it, so a too-small one must be recreated, not started.
            self.check_profile(profile, sizing)
        else:
            self.check_host(sizing)
        return sizing

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

    def start(self, sizing: resources.Sizing) -> None:
        profile = self.find_profile()
        if profile and profile.get("Status") == "Running":
            say(f"  Minikube profile {self.profile!r} is running.")
            return
        say(
            f"  minikube start -p {self.profile} --cpus {sizing.cpus} --memory "
            f"{sizing.memory_mb} --disk-size {sizing.disk_mb}mb (several minutes the first time)"
        )
        run_tool(
            [self.path, "start", "-p", self.profile, f"--cpus={sizing.cpus}",
             f"--memory={sizing.memory_mb}", f"--disk-size={sizing.disk_mb}mb"],
            900, "minikube start", stream=lambda line: say(f"    | {line}"),
        )  # fmt: skip

    def build_images(self) -> None:
        for image in IMAGES:
            self.build_image(image)

    def build_image(self, image: Image) -> None:
        tag = f"{image.name}:{image_tag(image.service)}"
        say(f"  minikube image build -t {tag} -f {image.dockerfile} services")
        started = time.monotonic()
        # A relative -f is taken inside the build context (services/).
        run_tool(
            [self.path, "-p", self.profile, "image", "build", "-t", tag,
             "-f", image.dockerfile, str(REPO / "services")],
            900, f"building {tag} in Minikube", stream=lambda line: say(f"    | {line}"),
        )  # fmt: skip
        # `minikube image build` logs a failed build as a warning and still exits 0
        # (machine.BuildImage): check that the image is really there.
        listed = run_tool(
            [self.path, "-p", self.profile, "image", "ls"], 120, "minikube image ls"
        ).stdout.split()
        if not any(ref == tag or ref.endswith(f"/{tag}") for ref in listed):
            raise DeployError(
                f"building {tag} in Minikube failed: `minikube image ls` does not list it "
                f"(see `minikube -p {self.profile} logs`, or run the build by hand: "
                f"minikube -p {self.profile} image build -t {tag} -f {image.dockerfile} "
                "services)"
            )
        say(f"    {tag}: built ({time.monotonic() - started:.0f} s)")


def profile_state(profile: dict | None) -> str:
    return (profile or {}).get("Status") or "absent"


def minikube_home() -> Path:
    """Where Minikube keeps its machines (MINIKUBE_HOME, default ~/.minikube)."""
    home = os.environ.get("MINIKUBE_HOME")
    return Path(home) if home else Path.home() / ".minikube"
