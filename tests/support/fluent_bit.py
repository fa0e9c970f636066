"""The real Fluent Bit in tests: the binary `scripts/bootstrap.sh all` builds, run on the
repository's fluent-bit/*.conf with its own state folder and HTTP port; a TCP proxy in
front of Elasticsearch that a test closes to make an outage Fluent Bit sees (connections
refused and cut) while the session's Elasticsearch keeps serving the other tests; and
queries for the documents of one test.

Reads CI (require_fluent_bit): with CI=true a missing binary fails the test, elsewhere
it is skipped with the command that builds it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from pathlib import Path

import httpx
from obs_tools.common.paths import REPO
from obs_tools.common.processes import ManagedProcess
from obs_tools.common.versions import fluent_bit_binary

from tests.support.requirements import unavailable

from .polling import free_port

FLUENT_BIT_DIR = REPO / "fluent-bit"


def require_fluent_bit() -> None:
    if fluent_bit_binary().exists():
        return
    unavailable(f"not built: {fluent_bit_binary()}; run `scripts/bootstrap.sh all`")


class FluentBit:
    """One Fluent Bit process on `config`; start() may be called again after stop(), with
    the same state (tail DB, filesystem buffer) as a restarted pod on the same node."""

    def __init__(self, name: str, config: Path, log_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.config = config
        self.log_dir = log_dir
        self.port = free_port()
        self.env = {
            **env,
            "FLUENT_BIT_HTTP_LISTEN": "127.0.0.1",
            "FLUENT_BIT_HTTP_PORT": str(self.port),
        }
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FluentBit:
        self.process = ManagedProcess(
            self.name,
            [str(fluent_bit_binary()), "-c", str(self.config)],
            self.log_dir,
            env=self.env,
            # @INCLUDE and Parsers_File are resolved against the working directory first.
            cwd=FLUENT_BIT_DIR,
        )
        self.process.wait_http(
            f"{self.url}/api/v1/health", timeout=30, ok=lambda r: r.status_code == 200
        )
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def metric(self, name: str) -> float:
        """The sum of one counter over every plugin instance (Prometheus text format).

        Fluent Bit ends each sample with a timestamp (`name{name="es.0"} 0 1796523553391`):
        the value is the first field after the labels, not the last of the line (taking
        the last summed timestamps, so any "> 0" check passed whatever the counter).
        """
        text = httpx.get(f"{self.url}/api/v1/metrics/prometheus", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{"):
                total += float(line.rsplit("}", 1)[1].split()[0])
            elif line.startswith(name + " "):
                total += float(line.split()[1])
        return total

    def failure_context(self) -> str:
        return self.process.describe_failure() if self.process else f"{self.name}: not started"


class TcpProxy:
    """127.0.0.1:port -> target. close() is an outage: the listener goes (connections are
    refused) and every open connection is cut; open() listens on the same port again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def open(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener:
            # shutdown wakes the thread blocked in accept(); close alone may not.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._connections |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


def documents(es_url: str, auth, field: str, value: str) -> list[dict]:
    """Every document in obs-logs-* whose `field` is `value` (a keyword field)."""
    httpx.post(f"{es_url}/obs-logs-*/_refresh", auth=auth, timeout=30)
    response = httpx.post(
        f"{es_url}/obs-logs-*/_search",
        json={"size": 10000, "query": {"term": {field: value}}},
        auth=auth,
        timeout=30,
    )
    response.raise_for_status()
    return [hit["_source"] for hit in response.json()["hits"]["hits"]]


def count_by_message(docs: list[dict]) -> Counter:
    return Counter(doc.get("message") for doc in docs)
