"""One managed child process: started in its own process group with its own log file,
watched, and stopped within a bound. Used by the tests (every real backend they run),
the benchmark and the real node's components.

Reads no environment variables. Every process writes to its own log file, so a failure
can name the component and show its last lines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from .wait import GiveUp, poll_until

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ManagedProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            # Own process group, so stop() also reaches anything it forked.
            start_new_session=True,
            preexec_fn=preexec_fn,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"[{self.name}] no log file"
        body = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} log lines of {self.name} ({self.log_path}) ---\n{body}"

    def describe_failure(self) -> str:
        state = "running" if self.running() else f"exited with {self.proc.returncode}"
        return f"{self.name} ({state})\n{self.tail()}"

    def wait_http(self, url: str, timeout: float = 60.0, ok=lambda r: r.status_code < 500):
        """Poll `url` until it answers; fail naming this component if it dies or stalls."""

        def ready():
            if not self.running():
                raise GiveUp(
                    f"{self.name} exited with code {self.proc.returncode} before it was ready\n"
                    f"{self.tail()}"
                )
            return ok(httpx.get(url, timeout=2.0))

        return poll_until(
            ready, f"{self.name} to answer on {url}", timeout, on_timeout=self.describe_failure
        )

    def signal(self, signum: int) -> None:
        if self.running():
            os.kill(self.proc.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def pids(self) -> list[int]:
        """The process and its direct children (a gunicorn master's worker)."""
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except FileNotFoundError:
            children = []
        return [pid, *map(int, children)]

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its direct children so far, all threads."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / CLOCK_TICKS

    def stop(self, timeout: float = 15.0) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        else:
            # The leader is gone; make sure nothing it forked outlives the test.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
