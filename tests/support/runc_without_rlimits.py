#!/usr/bin/env python3
"""An OCI runtime for podman and containerd: runc without rlimits and oomScoreAdj.

Some sandboxes forbid a container runtime to set resource limits at all, even to lower
them: `podman run` then fails with `error setting rlimit type 7: operation not permitted`
(runc) or `setrlimit RLIMIT_NOFILE: Operation not permitted` (crun). The same sandboxes
refuse the OOM score adjustment that the kubelet asks for every container: every pod
sandbox then fails with `runc create failed: unable to start container process: can't
get final child's PID from pipe: EOF`. This wrapper deletes `process.rlimits` and
`process.oomScoreAdj` from the container's spec (`<bundle>/config.json` for
`create`/`run`, the `--process` file for `exec`), so that the container inherits the
caller's limits and score, then execs runc with the arguments unchanged.
tests/support/podman.py uses it only after podman has failed with the setrlimit error;
tests/support/real_node.py sets it as containerd's runc binary.

Reads OBS_RUNC (path of runc; default: runc on the PATH or in /usr/bin, /usr/sbin).
Standard library only: podman's conmon runs it with the system python3.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

# Global options of runc that take a value (the subcommand comes after them).
GLOBAL_OPTIONS_WITH_VALUE = {"--root", "--log", "--log-format", "--criu", "--rootless"}


def find_runc() -> str:
    explicit = os.environ.get("OBS_RUNC")
    if explicit:
        return explicit
    found = shutil.which(
        "runc", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin", "/usr/sbin"])
    )
    if not found:
        sys.exit("runc_without_rlimits: runc not found (install runc or set OBS_RUNC)")
    return found


def subcommand(args: list[str]) -> tuple[str | None, list[str]]:
    """The runc subcommand and the arguments after it."""
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("-"):
            return arg, args[index + 1 :]
        index += 2 if arg in GLOBAL_OPTIONS_WITH_VALUE else 1
    return None, []


def option(args: list[str], *names: str) -> str | None:
    for index, arg in enumerate(args):
        for name in names:
            if arg == name and index + 1 < len(args):
                return args[index + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


# Keys of the process object that this sandbox refuses to apply.
REFUSED_KEYS = ("rlimits", "oomScoreAdj")


def strip_rlimits(path: str, key_path: tuple[str, ...]) -> None:
    with open(path) as handle:
        spec = json.load(handle)
    holder = spec
    for key in key_path:
        holder = holder.get(key, {})
    present = [key for key in REFUSED_KEYS if key in holder]
    if not present:
        return
    for key in present:
        del holder[key]
    # Atomic replace: the runtime must never read half a file.
    tmp = f"{path}.no-rlimits"
    with open(tmp, "w") as handle:
        json.dump(spec, handle)
    os.replace(tmp, path)


def main(argv: list[str]) -> None:
    runc = find_runc()
    command, rest = subcommand(argv)
    if command in ("create", "run"):
        bundle = option(rest, "--bundle", "-b") or "."
        strip_rlimits(os.path.join(bundle, "config.json"), ("process",))
    elif command == "exec":
        process = option(rest, "--process", "-p")
        if process:
            strip_rlimits(process, ())
    os.execv(runc, [runc, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
