"""A stand-in for the `minikube` command, for tests of `make up`'s Minikube steps on a
machine where Minikube cannot run (no container runtime or VM). It implements only what
tools/obs_tools/deploy calls: `profile list -o json`, `start`, `image build`, `image ls`; it records
every call (one JSON argv per line) and keeps its state in the directory named by
FAKE_MINIKUBE_STATE. FAKE_MINIKUBE_PROFILE (a JSON object) pre-creates a profile;
FAKE_MINIKUBE_BUILD=silent-failure makes `image build` exit 0 without an image, as
Minikube does when the build inside the node fails.

The kubectl context the tool then uses is the profile's name: tests point it at a real
control plane by naming the profile after that cluster's context.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    state = Path(os.environ["FAKE_MINIKUBE_STATE"])
    state.mkdir(parents=True, exist_ok=True)
    with (state / "calls.jsonl").open("a") as calls:
        calls.write(json.dumps(argv) + "\n")
    profile_file, images_file = state / "profile.json", state / "images.txt"
    if not profile_file.exists() and os.environ.get("FAKE_MINIKUBE_PROFILE"):
        profile_file.write_text(os.environ["FAKE_MINIKUBE_PROFILE"])
    words = [a for a in argv if not a.startswith("-")]
    options = dict(a.lstrip("-").split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    if words[:2] == ["profile", "list"]:
        valid = [json.loads(profile_file.read_text())] if profile_file.exists() else []
        print(json.dumps({"invalid": [], "valid": valid}))
    elif words[:1] == ["start"]:
        name = argv[argv.index("-p") + 1]
        config = {"CPUs": int(options["cpus"]), "Memory": int(options["memory"]),
                  "DiskSize": int(options["disk-size"].removesuffix("mb"))}  # fmt: skip
        profile_file.write_text(json.dumps({"Name": name, "Status": "Running", "Config": config}))
        print(f"fake minikube: profile {name} running with {config}")
    elif "image" in argv and "build" in argv:
        tag = argv[argv.index("-t") + 1]
        dockerfile = Path(argv[-1]) / argv[argv.index("-f") + 1]
        if not dockerfile.is_file():
            print(f"unable to prepare context: {dockerfile}: no such file", file=sys.stderr)
            return 1
        print(f"fake minikube: building {tag} from {dockerfile}")
        if os.environ.get("FAKE_MINIKUBE_BUILD") != "silent-failure":
            with images_file.open("a") as images:
                images.write(f"docker.io/library/{tag}\n")
    elif "image" in argv and "ls" in argv:
        print(images_file.read_text() if images_file.exists() else "", end="")
    else:
        print(f"fake minikube: unsupported {argv}", file=sys.stderr)
        return 64
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
