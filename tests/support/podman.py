"""Build and run the services' container images with podman, for the image tests.

Reads no environment variables. Every podman call is bounded by a timeout and fails
with podman's own error output. The OCI runtime wrapper (runc_without_rlimits.py) is
used only when podman has been seen to fail with the sandbox's setrlimit error.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .polling import GiveUp

RUNTIME_WRAPPER = Path(__file__).with_name("runc_without_rlimits.py")
# runc: "error setting rlimit type 7: operation not permitted";
# crun: "setrlimit RLIMIT_NOFILE: Operation not permitted".
SETRLIMIT_REFUSED = re.compile(r"(setrlimit|setting rlimit)[^\n]*not permitted", re.IGNORECASE)


class PodmanError(AssertionError):
    """A podman command failed; the message has its command line and output."""


@dataclass(frozen=True)
class Podman:
    executable: str
    # The OCI runtime given to every podman call, or None for podman's default.
    runtime: str | None = None

    def argv(self, *args: str) -> list[str]:
        runtime = ["--runtime", self.runtime] if self.runtime else []
        return [self.executable, *runtime, *args]

    def run(self, *args: str, timeout: float = 120, check: bool = True):
        result = subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise PodmanError(
                f"`podman {' '.join(args)}` exited with {result.returncode}:\n"
                f"{result.stderr[-4000:]}{result.stdout[-2000:]}"
            )
        return result

    def image_exists(self, image: str) -> bool:
        return self.run("image", "exists", image, check=False).returncode == 0

    def inspect_image(self, image: str, template: str) -> str:
        return self.run("image", "inspect", "--format", template, image).stdout.strip()


def detect(executable: str, image: str) -> Podman:
    """A Podman that can start containers here: the default OCI runtime if it works,
    else (only after the setrlimit refusal) the wrapper that drops rlimits."""
    probe = ("run", "--rm", "--network=none", image, "true")
    plain = Podman(executable)
    result = plain.run(*probe, check=False)
    if result.returncode == 0:
        return plain
    if not SETRLIMIT_REFUSED.search(result.stderr):
        raise PodmanError(f"podman cannot start a container from {image}:\n{result.stderr}")
    wrapped = Podman(executable, str(RUNTIME_WRAPPER))
    result = wrapped.run(*probe, check=False)
    if result.returncode != 0:
        raise PodmanError(
            f"podman was refused setrlimit, and still fails with {RUNTIME_WRAPPER.name}:\n"
            f"{result.stderr}"
        )
    return wrapped


@dataclass
class Container:
    podman: Podman
    name: str

    def state(self, field: str) -> str:
        return self.podman.run(
            "container", "inspect", "--format", f"{{{{.State.{field}}}}}", self.name
        ).stdout.strip()

    def running(self) -> bool:
        return self.state("Running") == "true"

    def pid(self) -> int:
        return int(self.state("Pid"))

    def logs(self) -> tuple[str, str]:
        """What the container wrote to stdout and to stderr, separately."""
        result = self.podman.run("logs", self.name)
        return result.stdout, result.stderr

    def tail(self, lines: int = 40) -> str:
        result = self.podman.run("logs", "--tail", str(lines), self.name, check=False)
        return (
            f"--- container {self.name} ({self.state('Status')}), last {lines} log lines ---\n"
            f"{result.stdout}{result.stderr}"
        )

    def alive(self) -> bool:
        """For poll_until: give up at once if the container has exited."""
        if not self.running():
            raise GiveUp(f"container {self.name} exited\n{self.tail()}")
        return True

    def remove(self) -> None:
        self.podman.run("rm", "--force", "--time", "0", self.name, check=False)


def start(podman: Podman, name: str, image: str, options: list[str], env: dict[str, str]):
    """`podman run -d` with a log driver that `podman logs` can read back anywhere."""
    env_args = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    podman.run(
        "run", "--detach", "--name", name, "--log-driver", "k8s-file", *options, *env_args, image
    )
    return Container(podman, name)


@dataclass(frozen=True)
class ProcessSecurity:
    """How the kernel sees a container's main process (from /proc, not podman's config)."""

    uid: int
    gid: int
    effective_capabilities: int
    no_new_privs: bool
    root_read_only: bool


def _to_container_id(host_id: int, id_map: str) -> int:
    # /proc/PID/uid_map lines: first id inside, first id outside, count.
    for line in id_map.splitlines():
        inside, outside, count = (int(field) for field in line.split())
        if outside <= host_id < outside + count:
            return inside + host_id - outside
    raise ValueError(f"id {host_id} is not mapped into the container")


def process_security(pid: int) -> ProcessSecurity:
    proc = Path(f"/proc/{pid}")
    status = dict(
        line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line
    )
    # Mount info fields: id, parent, major:minor, root, mount point, options, ...
    root_options = next(
        line.split()[5].split(",")
        for line in (proc / "mountinfo").read_text().splitlines()
        if line.split()[4] == "/"
    )
    return ProcessSecurity(
        uid=_to_container_id(int(status["Uid"].split()[1]), (proc / "uid_map").read_text()),
        gid=_to_container_id(int(status["Gid"].split()[1]), (proc / "gid_map").read_text()),
        effective_capabilities=int(status["CapEff"].strip(), 16),
        no_new_privs=status["NoNewPrivs"].strip() == "1",
        root_read_only="ro" in root_options,
    )


def hardening_problems(security: ProcessSecurity, expected_uid: int) -> list[str]:
    """What falls short of the pod security the manifests ask for (empty when nothing)."""
    problems = []
    if security.uid == 0 or security.uid != expected_uid:
        problems.append(f"runs as uid {security.uid}, not the image's user {expected_uid}")
    if security.effective_capabilities:
        problems.append(f"has capabilities {security.effective_capabilities:#x}")
    if not security.no_new_privs:
        problems.append("may gain privileges (no_new_privs is off)")
    if not security.root_read_only:
        problems.append("its root filesystem is writable")
    return problems


def user_problem(user: str) -> str | None:
    """Why an image's USER would not pass Kubernetes' runAsNonRoot check, or None.

    The kubelet can verify only a numeric uid (it does not read /etc/passwd)."""
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    if not match:
        return f"USER {user!r} is not numeric (uid or uid:gid)"
    if int(match.group(1)) == 0:
        return f"USER {user!r} is root"
    if match.group(2) is not None and int(match.group(2)) == 0:
        return f"USER {user!r} has the root group"
    return None
