"""The processes one end-to-end test starts beside a control plane: their ports, their
logs in the test's folder, their last lines for a failure message, and stopping them all.

Reads no environment variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from obs_tools.common.processes import ManagedProcess

from tests.support.kube_cluster import KubeCluster


@dataclass
class ProcessRig:
    workdir: Path
    cluster: KubeCluster
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def spawn(self, name: str, argv: list[str], **options) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.logs, **options)
        self.processes[name] = process
        return process

    def context(self, *names: str) -> str:
        """The last log lines of the named processes of this rig."""
        return "\n".join(self.processes[n].describe_failure() for n in names if n in self.processes)

    def stop(self) -> None:
        """Every process, the last started first."""
        for process in reversed(list(self.processes.values())):
            process.stop()
        self.processes.clear()
