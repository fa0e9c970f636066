"""Every call to kubectl and minikube goes through here: bounded, and failing with a
message that names the command and quotes its error. Reads no environment variables
(kubectl itself reads KUBECONFIG).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class DeployError(Exception):
    """A failure to report to the user as it is: a message, never a traceback."""


def require_tool(name: str, hint: str, explicit: str | None = None) -> str:
    """The path of `name` on PATH, or of `explicit` (a path or a command name) if given."""
    path = shutil.which(explicit or name)
    if not path and explicit:
        raise DeployError(f"{name}: {explicit!r} is not an executable file. {hint}")
    if not path:
        raise DeployError(f"{name} is not installed or not on PATH. {hint}")
    return path


@dataclass(frozen=True)
class Kubectl:
    executable: str = "kubectl"
    context: str | None = None
    kubeconfig: str | None = None  # None: kubectl's own choice ($KUBECONFIG, ~/.kube/config)
    # Words between the executable and kubectl's own arguments: ("-p", PROFILE,
    # "kubectl", "--") when the executable is minikube (`minikube kubectl --`).
    prefix: tuple[str, ...] = ()

    def argv(self, args: Sequence[str]) -> list[str]:
        config = ["--kubeconfig", self.kubeconfig] if self.kubeconfig else []
        context = ["--context", self.context] if self.context else []
        return [self.executable, *self.prefix, *config, *context, *args]

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        timeout: float = 60,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        try:
            result = subprocess.run(
                self.argv(args),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DeployError(
                f"`kubectl {' '.join(args)}` did not finish in {timeout:g} s"
            ) from None
        if check and result.returncode != 0:
            raise DeployError(
                f"`kubectl {' '.join(args)}` failed (exit {result.returncode}):\n"
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def json(self, *args: str, timeout: float = 60) -> dict:
        return json.loads(self.run(*args, "-o", "json", timeout=timeout).stdout)


def run_tool(
    argv: Sequence[str], timeout: float, what: str, stream: Callable[[str], None] | None = None
) -> subprocess.CompletedProcess:
    """Run another tool (minikube), failing with its own message. With `stream`, each
    output line goes to it as it comes (minutes-long steps show progress)."""
    if stream:
        return _run_streaming(list(argv), timeout, what, stream)
    try:
        result = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise DeployError(f"{what} did not finish in {timeout:g} s (`{' '.join(argv)}`)") from None
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-20:])
        raise DeployError(f"{what} failed (exit {result.returncode}): `{' '.join(argv)}`\n{tail}")
    return result


def _run_streaming(
    argv: list[str], timeout: float, what: str, stream: Callable[[str], None]
) -> subprocess.CompletedProcess:
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    lines: list[str] = []

    def pump() -> None:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            stream(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise DeployError(f"{what} did not finish in {timeout:g} s (`{' '.join(argv)}`)") from None
    finally:
        reader.join(timeout=5)
    if process.returncode != 0:
        tail = "\n".join(lines[-20:])
        raise DeployError(f"{what} failed (exit {process.returncode}): `{' '.join(argv)}`\n{tail}")
    return subprocess.CompletedProcess(argv, 0, "\n".join(lines), "")
