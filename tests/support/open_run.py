"""`obs-deploy open` (what `make open` runs) in the background for a test: its output in
a file, waited on by text, stopped with Ctrl-C (SIGINT) as a user stops it.

Reads no environment variables (the caller passes the command's environment).
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

from obs_tools.common.paths import REPO

from tests.support.polling import free_port, poll_until


class OpenRun:
    def __init__(self, tmp_path: Path, python: str, args: list[str], env: dict[str, str]):
        self.output = tmp_path / "open.out"
        self.tmp_path = tmp_path
        argv = [python, "-m", "obs_tools.deploy", "open", "--skip-minikube", *args]
        with self.output.open("w") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                            env=env, cwd=REPO)  # fmt: skip

    def text(self) -> str:
        return self.output.read_text()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        def seen():
            if self.process.poll() is not None:
                raise AssertionError(f"open exited {self.process.returncode}:\n{self.text()}")
            return text in self.text()

        poll_until(seen, f"{text!r} in the output of `obs-deploy open`", timeout)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise


def port_args(ports: dict[str, int]) -> list[str]:
    return [f"--port={service}={port}" for service, port in ports.items()]


def distinct_free_ports(services: list[str]) -> dict[str, int]:
    """A free local port per service, no two alike."""
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(services):
        ports = {service: free_port() for service in services}
    return ports


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
