"""A stand-in for the `minikube` command, for tests of `make up`'s Minikube steps on a
machine where Minikube cannot run (no container runtime or VM). It implements only what
tools/obs_tools/deploy calls, answering as minikube does at the versions we support
(scripts/versions.env MINIKUBE_MIN_VERSION..MINIKUBE_MAX_TESTED_VERSION), as read from
minikube's source at these tags (kubernetes/minikube):

- `profile list -o json`: {"invalid": [], "valid": [profile]}. A profile whose API server
  answers has Status "Running" up to v1.34.0 (cmd/minikube/cmd/config/profile_list.go,
  profileStatus) and "OK" from v1.35.0 on (pkg/minikube/cluster/status.go, codeNames
  200; "HAppy" 201 for HA). Read at v1.34.0, v1.35.0 and v1.38.1.
- `start` on an existing profile keeps its size: a different --cpus/--memory only prints
  "You cannot change the CPUs for an existing minikube cluster. Please first delete the
  cluster." (cmd/minikube/cmd/start_flags.go, updateExistingConfigFromFlags, v1.34.0 and
  v1.38.1), on stderr with the "❗  " prefix (pkg/minikube/out/out.go WarningT).
- `image build` that fails inside the node logs "Failed to build image for profile ..."
  as a warning and exits 0 (v1.38.1 pkg/minikube/machine/build_images.go, BuildImage
  `return nil`); a build that succeeds replaces the tag's image.
- `image ls` (format short) prints one repo tag a line, normalised as
  docker.io/library/NAME:TAG; `--format json` prints [{"id", "repoDigests", "repoTags",
  "size"}] (v1.38.1 pkg/minikube/machine/cache_images.go ListImages,
  pkg/minikube/cruntime/cruntime.go ListImage).
- `version --short` prints the bare version, e.g. "v1.38.1" (cmd/minikube/cmd/version.go,
  v1.34.0 and v1.38.1).
- `kubectl -- ARGS` runs a kubectl with --cluster=PROFILE inserted before the first
  flag (v1.38.1 cmd/minikube/cmd/kubectl.go). Real minikube downloads the cluster's
  kubectl; the stand-in runs FAKE_MINIKUBE_KUBECTL.
The stand-in does not imitate the start itself, `status`, `delete` or the drivers.

Reads FAKE_MINIKUBE_STATE (directory: profile, images, and every call recorded one
JSON argv a line), FAKE_MINIKUBE_PROFILE (a JSON object: a profile that exists before
the first call), FAKE_MINIKUBE_VERSION (default v1.38.1: `version` and the Status names),
FAKE_MINIKUBE_BUILD=fail (every build fails as minikube reports it: exit 0, no image)
and FAKE_MINIKUBE_KUBECTL (the kubectl that `minikube kubectl` runs).

The kubectl context the tool then uses is the profile's name: tests point it at a real
control plane by naming the profile after that cluster's context.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path


def version() -> tuple[int, ...]:
    text = os.environ.get("FAKE_MINIKUBE_VERSION", "v1.38.1")
    return tuple(int(part) for part in text.lstrip("v").split("."))


def running_status() -> str:
    return "OK" if version() >= (1, 35, 0) else "Running"


def main(argv: list[str]) -> int:
    state = Path(os.environ["FAKE_MINIKUBE_STATE"])
    state.mkdir(parents=True, exist_ok=True)
    with (state / "calls.jsonl").open("a") as calls:
        calls.write(json.dumps(argv) + "\n")
    profile_file = state / "profile.json"
    if not profile_file.exists() and os.environ.get("FAKE_MINIKUBE_PROFILE"):
        profile_file.write_text(os.environ["FAKE_MINIKUBE_PROFILE"])
    profile, args = split_profile(argv)
    if args[:1] == ["kubectl"]:
        return kubectl(profile, args[1:])
    words = [a for a in args if not a.startswith("-")]
    if words[:1] == ["version"]:
        # `version --short`: the bare version (cmd/minikube/cmd/version.go).
        print(os.environ.get("FAKE_MINIKUBE_VERSION", "v1.38.1"))
    elif words[:2] == ["profile", "list"]:
        valid = [json.loads(profile_file.read_text())] if profile_file.exists() else []
        print(json.dumps({"invalid": [], "valid": valid}))
    elif words[:1] == ["start"]:
        start(profile_file, profile, args)
    elif words[:2] == ["image", "build"]:
        return build(state, profile, args)
    elif words[:2] == ["image", "ls"]:
        list_images(state, args)
    else:
        print(f"fake minikube: unsupported {argv}", file=sys.stderr)
        return 64
    return 0


def split_profile(argv: list[str]) -> tuple[str, list[str]]:
    """The -p/--profile value (default minikube) and the other arguments."""
    args, profile, index = [], "minikube", 0
    while index < len(argv):
        arg = argv[index]
        if arg in ("-p", "--profile") and index + 1 < len(argv):
            profile, index = argv[index + 1], index + 2
            continue
        if arg.startswith("--profile="):
            profile = arg.split("=", 1)[1]
        else:
            args.append(arg)
        index += 1
    return profile, args


def start(profile_file: Path, name: str, args: list[str]) -> None:
    options = dict(a.lstrip("-").split("=", 1) for a in args if a.startswith("--") and "=" in a)
    if profile_file.exists():
        config = json.loads(profile_file.read_text()).get("Config") or {}
        # Only a flag that is given and differs is warned about (Flags().Changed).
        if "memory" in options and int(options["memory"]) != config.get("Memory"):
            print("❗  You cannot change the memory size for an existing minikube cluster. "
                  "Please first delete the cluster.", file=sys.stderr)  # fmt: skip
        if "cpus" in options and int(options["cpus"]) != config.get("CPUs"):
            print("❗  You cannot change the CPUs for an existing minikube cluster. "
                  "Please first delete the cluster.", file=sys.stderr)  # fmt: skip
    else:
        # minikube's own defaults for a new profile are not imitated: flags required.
        config = {"CPUs": int(options["cpus"]), "Memory": int(options["memory"]),
                  "DiskSize": int(options["disk-size"].removesuffix("mb"))}  # fmt: skip
    profile = {"Name": name, "Status": running_status(), "Config": config}
    profile_file.write_text(json.dumps(profile))
    print(f"fake minikube: profile {name} running with {config}")


def load_images(state: Path) -> dict[str, str]:
    path = state / "images.json"
    return json.loads(path.read_text()) if path.exists() else {}


def build(state: Path, profile: str, args: list[str]) -> int:
    tag = args[args.index("-t") + 1]
    context = Path(args[-1])
    dockerfile = context / args[args.index("-f") + 1]
    if not dockerfile.is_file():
        print(f"unable to prepare context: {dockerfile}: no such file", file=sys.stderr)
        return 1
    print(f"fake minikube: building {tag} from {dockerfile}")
    if os.environ.get("FAKE_MINIKUBE_BUILD") == "fail":
        # What BuildImage logs, and its `return nil`: the command succeeds.
        print(f"W1205 12:00:00.000000 fake build_images.go:125] Failed to build image for "
              f"profile {profile}. make sure the profile is running. RUN pip install: exit "
              "status 1", file=sys.stderr)  # fmt: skip
        return 0
    images = load_images(state)
    reference = tag if "/" in tag else f"docker.io/library/{tag}"
    images[reference] = (
        "sha256:" + hashlib.sha256(dockerfile.read_bytes() + tag.encode()).hexdigest()
    )
    (state / "images.json").write_text(json.dumps(images))
    return 0


def list_images(state: Path, args: list[str]) -> None:
    images = load_images(state)
    if "--format=json" in args or args[-2:] == ["--format", "json"]:
        print(json.dumps([{"id": image_id, "repoDigests": [], "repoTags": [reference],
                           "size": "1000"} for reference, image_id in images.items()]))  # fmt: skip
    elif images:
        print("\n".join(images))


def kubectl(profile: str, args: list[str]) -> int:
    if args[:1] == ["--"]:
        args = args[1:]
    flag = next((i for i, a in enumerate(args) if a.startswith("-")), len(args))
    args = [*args[:flag], f"--cluster={profile}", *args[flag:]]
    real = os.environ["FAKE_MINIKUBE_KUBECTL"]
    os.execv(real, [real, *args])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
