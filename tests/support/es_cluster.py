"""A cluster of the real Elasticsearch (the distribution `scripts/bootstrap.sh all`
unpacks) on 127.0.0.1: N nodes, each with free HTTP and transport ports, 512 MB of heap,
security on with a file-realm superuser (and any client users and roles a test adds),
and transport TLS with the production overlay's settings (k8s-overlays/production/
elasticsearch.yml) and certificates from its own make-transport-certs.sh, so that a
real cluster proves them.

Each node can be stopped (SIGTERM, or SIGKILL for a crash) and started again on its
own data, as a pod that is deleted and rescheduled onto the same volume.

Reads no environment variables. As root, Elasticsearch runs as the system user obs-es
(it refuses root), from a folder under /tmp that obs-es can enter (pytest's are private
to root); stop() removes it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from obs_tools.common.paths import REPO
from obs_tools.common.processes import ManagedProcess
from obs_tools.common.versions import elasticsearch_home, java_home
from obs_tools.localstack.components import ES_SYSTEM_USER, ES_USER

from .host_elasticsearch import as_es_user, es_env
from .polling import GiveUp, free_port, poll_until
from .requirements import unavailable

# The production overlay (k8s-overlays/production/): the cluster here runs with its
# certificate script and its node-to-node settings, so that a real cluster proves them.
PRODUCTION = REPO / "k8s-overlays" / "production"
TRANSPORT_CERTS_SCRIPT = PRODUCTION / "make-transport-certs.sh"
PRODUCTION_SETTINGS = PRODUCTION / "elasticsearch.yml"
# What the overlay must keep for three nodes to talk TLS with the script's files.
TRANSPORT_TLS = {
    "xpack.security.transport.ssl.enabled": "true",
    "xpack.security.transport.ssl.verification_mode": "certificate",
    "xpack.security.transport.ssl.certificate": "certs/transport/tls.crt",
    "xpack.security.transport.ssl.key": "certs/transport/tls.key",
    "xpack.security.transport.ssl.certificate_authorities": "certs/transport/ca.crt",
}


def production_node_settings() -> dict[str, str]:
    """The overlay's transport TLS settings and its store type (mmap off), read from its
    elasticsearch.yml. The rest of that file is about pods (addresses, discovery by DNS,
    node names from the host name) and is replaced by loopback equivalents here."""
    settings = yaml.safe_load(PRODUCTION_SETTINGS.read_text())
    chosen = {
        key: str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in settings.items()
        if key.startswith("xpack.security.transport.ssl.") or key == "node.store.allow_mmap"
    }
    differ = {k: chosen.get(k) for k, v in TRANSPORT_TLS.items() if chosen.get(k) != v}
    if differ:
        raise AssertionError(
            f"{PRODUCTION_SETTINGS}: transport TLS not as make-transport-certs.sh's files "
            f"need it: {differ}"
        )
    return chosen


def require_elasticsearch() -> None:
    missing = []
    if not (elasticsearch_home() / "bin" / "elasticsearch").exists():
        missing.append(f"Elasticsearch ({elasticsearch_home()})")
    if not java_home():
        missing.append("Java (for Elasticsearch)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(ES_SYSTEM_USER)
        except KeyError:
            missing.append(f"the system user {ES_SYSTEM_USER}")
    if missing:
        unavailable(f"not installed: {', '.join(missing)}; run `scripts/bootstrap.sh all`")


def make_transport_certs(outdir: Path) -> None:
    """ca.crt, tls.crt and tls.key in `outdir`, from the overlay's own script."""
    result = subprocess.run(
        ["bash", str(TRANSPORT_CERTS_SCRIPT), str(outdir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(
            f"{TRANSPORT_CERTS_SCRIPT.name} failed ({result.returncode}): "
            f"{result.stderr or result.stdout}"
        )
    for name in ("ca.crt", "tls.crt", "tls.key"):
        if not (outdir / name).is_file():
            raise AssertionError(f"{TRANSPORT_CERTS_SCRIPT.name} did not write {outdir / name}")


@dataclass
class EsNode:
    name: str
    home: Path  # this node's folder: config/, data/, logs/, its console log
    http_port: int = field(default_factory=free_port)
    transport_port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def running(self) -> bool:
        return bool(self.process and self.process.running())

    def tail(self, lines: int = 30) -> str:
        if not self.process:
            return f"{self.name}: never started"
        state = "running" if self.running() else f"exited with {self.process.proc.returncode}"
        return f"{self.name} ({state}, {self.url})\n{self.process.tail(lines)}"


class ElasticsearchCluster:
    """`size` nodes, all master-eligible data nodes, as the production StatefulSet."""

    def __init__(
        self,
        size: int = 3,
        heap: str = "512m",
        name: str = "obs-test-cluster",
        users: dict[str, str] | None = None,
        write_roles: Callable[[Path], None] | None = None,
    ):
        """`users`: more file-realm users, name -> role, each with a new password in
        self.passwords; `write_roles(path)` adds their roles to each node's roles.yml."""
        self.size = size
        self.extra_users = users or {}
        self.write_roles = write_roles
        self.passwords: dict[str, str] = {u: secrets.token_urlsafe(24) for u in self.extra_users}
        self.heap = heap
        self.cluster_name = name
        self.user = ES_USER
        self.password = secrets.token_urlsafe(24)
        self.workdir = Path(tempfile.mkdtemp(prefix="obs-es-cluster-"))
        self.nodes = [EsNode(f"node-{i}", self.workdir / f"node-{i}") for i in range(size)]
        # Seconds from start() to green, for the report.
        self.start_seconds = 0.0
        # Nodes stopped on purpose: their exit is not a failure.
        self.stopped: set[str] = set()
        self.frozen: set[str] = set()

    @property
    def auth(self) -> tuple[str, str]:
        return self.user, self.password

    # -- setup -------------------------------------------------------------------------

    def _env(self, node: EsNode) -> dict[str, str]:
        return es_env(node.home / "config", self.heap)

    def _as_es_user(self, argv: list[str]) -> list[str]:
        return as_es_user(argv)

    def _settings(self, node: EsNode, bootstrap: bool) -> str:
        seeds = ", ".join(f'"127.0.0.1:{n.transport_port}"' for n in self.nodes)
        lines = [
            f"cluster.name: {self.cluster_name}",
            f"node.name: {node.name}",
            "network.host: 127.0.0.1",
            f"http.port: {node.http_port}",
            f"transport.port: {node.transport_port}",
            f"discovery.seed_hosts: [{seeds}]",
            f"path.data: {node.home / 'data'}",
            f"path.logs: {node.home / 'logs'}",
            "xpack.security.enabled: true",
            # Clients talk plain HTTP on loopback, as the local stack's do.
            "xpack.security.http.ssl.enabled: false",
            *(f"{key}: {value}" for key, value in production_node_settings().items()),
            # A test machine's disk above 90 % would otherwise stop shard allocation,
            # and the cluster would never be green.
            "cluster.routing.allocation.disk.threshold_enabled: false",
            "action.destructive_requires_name: true",
        ]
        if bootstrap:
            # Only for the very first election. Elasticsearch's docs say to remove it
            # once the cluster has formed: a restarted node joins by seed_hosts.
            names = ", ".join(f'"{n.name}"' for n in self.nodes)
            lines.append(f"cluster.initial_master_nodes: [{names}]")
        return "\n".join(lines) + "\n"

    def _write_config(self, node: EsNode, bootstrap: bool) -> None:
        config = node.home / "config" / "elasticsearch.yml"
        config.write_text(self._base_config + "\n# Written by tests/support/es_cluster.py.\n")
        with open(config, "a") as out:
            out.write(self._settings(node, bootstrap))
        self._chown(config)

    def _chown(self, *paths: Path) -> None:
        if os.geteuid() != 0:
            return
        account = pwd.getpwnam(ES_SYSTEM_USER)
        for path in paths:
            os.chown(path, account.pw_uid, account.pw_gid)
            for root, dirs, files in os.walk(path) if path.is_dir() else ():
                for name in dirs + files:
                    os.chown(os.path.join(root, name), account.pw_uid, account.pw_gid)

    def _prepare(self) -> None:
        home = elasticsearch_home()
        self._base_config = (home / "config" / "elasticsearch.yml").read_text()
        certs = self.workdir / "transport-certs"
        make_transport_certs(certs)
        for node in self.nodes:
            shutil.copytree(home / "config", node.home / "config")
            shutil.copytree(certs, node.home / "config" / "certs" / "transport")
            for sub in ("data", "logs"):
                (node.home / sub).mkdir()
            self._write_config(node, bootstrap=True)
            if self.write_roles:
                self.write_roles(node.home / "config" / "roles.yml")
        os.chmod(self.workdir, 0o755)
        self._chown(self.workdir)
        # The file-realm users, written once and copied: every node must know them,
        # since a client may land on any of them (the file realm is per node).
        first = self.nodes[0]
        users = {self.user: ("superuser", self.password)}
        users.update({u: (role, self.passwords[u]) for u, role in self.extra_users.items()})
        for user, (role, password) in users.items():
            result = subprocess.run(
                self._as_es_user(
                    [str(home / "bin" / "elasticsearch-users"), "useradd", user,
                     "-p", password, "-r", role]
                ),
                env=dict(os.environ, **self._env(first)),
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise AssertionError(
                    f"elasticsearch-users useradd {user} failed: {result.stderr or result.stdout}"
                )
        for node in self.nodes[1:]:
            for name in ("users", "users_roles"):
                shutil.copy2(first.home / "config" / name, node.home / "config" / name)
                self._chown(node.home / "config" / name)

    # -- processes ---------------------------------------------------------------------

    def _spawn(self, node: EsNode) -> None:
        binary = str(elasticsearch_home() / "bin" / "elasticsearch")
        node.process = ManagedProcess(
            node.name, self._as_es_user([binary]), node.home, env=self._env(node)
        )

    def start(self, timeout: float = 240) -> ElasticsearchCluster:
        """Every node at once (they elect a master among themselves), then green."""
        started = time.monotonic()
        self._prepare()
        for node in self.nodes:
            self._spawn(node)
        self.wait_status("green", timeout, nodes=self.size)
        self.start_seconds = time.monotonic() - started
        # Formed: a node started again from now on must not try to bootstrap.
        for node in self.nodes:
            self._write_config(node, bootstrap=False)
        return self

    def stop_node(self, index: int, crash: bool = False, timeout: float = 60) -> None:
        """SIGTERM (a pod deletion; Elasticsearch leaves the cluster in order) or, with
        crash, SIGKILL of the JVM (the process dies; its sockets close at once)."""
        node = self.nodes[index]
        if not node.process:
            return
        self.stopped.add(node.name)
        if crash:
            # runuser is the process group leader; the JVM is a child of it. SIGKILL to
            # the whole group kills the JVM as a crash would.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)
        node.process.stop(timeout=timeout)
        self.frozen.discard(node.name)

    def freeze_node(self, index: int) -> None:
        """SIGSTOP to the node's processes: it stops answering but its connections stay
        open, as a hung JVM or a machine cut off from the network; the others notice
        only by their checks timing out. stop_node(crash=True) ends it."""
        node = self.nodes[index]
        self.stopped.add(node.name)
        self.frozen.add(node.name)
        os.killpg(node.process.pid, signal.SIGSTOP)

    def start_node(self, index: int) -> None:
        node = self.nodes[index]
        if node.running():
            raise AssertionError(f"{node.name} is already running")
        self.stopped.discard(node.name)
        self._spawn(node)

    def stop(self) -> None:
        for index, node in enumerate(self.nodes):
            if node.name in self.frozen:
                # A frozen JVM would sit out SIGTERM's whole timeout.
                self.stop_node(index, crash=True)
            elif node.process:
                node.process.stop(timeout=30)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- state -------------------------------------------------------------------------

    def failure_context(self, lines: int = 30) -> str:
        return "\n".join(node.tail(lines) for node in self.nodes)

    def client(self, node: int = 0, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.nodes[node].url, auth=self.auth, timeout=timeout)

    def any_running(self) -> EsNode:
        for node in self.nodes:
            if node.running():
                return node
        raise GiveUp("no Elasticsearch node is running\n" + self.failure_context())

    def health(self, via: EsNode | None = None) -> dict:
        node = via or self.any_running()
        response = httpx.get(f"{node.url}/_cluster/health", auth=self.auth, timeout=5)
        response.raise_for_status()
        return response.json()

    def wait_status(
        self, status: str, timeout: float, nodes: int | None = None, via: EsNode | None = None
    ) -> dict:
        """Poll _cluster/health until `status` (green: every replica assigned) with
        `nodes` nodes, or fail with each node's last log lines."""
        nodes = self.size if nodes is None else nodes

        def reached() -> dict | None:
            dead = [
                n.name
                for n in self.nodes
                if n.process and not n.running() and n.name not in self.stopped
            ]
            if dead:
                raise GiveUp(
                    f"Elasticsearch {', '.join(dead)} exited while the cluster was to be "
                    f"{status}\n{self.failure_context()}"
                )
            for node in [via] if via else [n for n in self.nodes if n.running()]:
                with contextlib.suppress(httpx.HTTPError):
                    health = self.health(node)
                    if health["status"] == status and health["number_of_nodes"] == nodes:
                        return health
            return None

        return poll_until(
            reached,
            f"the Elasticsearch cluster ({self.size} nodes) to be {status} with {nodes} nodes",
            timeout,
            interval=0.5,
            on_timeout=lambda: f"last health: {self._last_health()}\n{self.failure_context()}",
        )

    def _last_health(self) -> str:
        try:
            return str(self.health())
        except Exception as exc:  # the failure report must not fail itself
            return repr(exc)

    def primaries_by_node(self, index_pattern: str) -> dict[str, list[str]]:
        """The indices (of those matching) whose primary shards each node holds, one
        entry per shard."""
        response = httpx.get(
            f"{self.any_running().url}/_cat/shards/{index_pattern}",
            params={"format": "json", "h": "index,shard,prirep,state,node"},
            auth=self.auth,
            timeout=10,
        )
        response.raise_for_status()
        held: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for shard in response.json():
            if shard["prirep"] == "p" and shard.get("node") in held:
                held[shard["node"]].append(shard["index"])
        return held

    def master(self) -> str:
        response = httpx.get(
            f"{self.any_running().url}/_cat/master",
            params={"format": "json"},
            auth=self.auth,
            timeout=10,
        )
        response.raise_for_status()
        return response.json()[0]["node"]
