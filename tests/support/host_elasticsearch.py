"""The real Elasticsearch (the distribution `scripts/bootstrap.sh all` installs) on an
address that the real node's pods reach: the node's bridge gateway, not loopback.

The pods reach it through a Service without selector and an EndpointSlice naming that
address, so a Job that calls http://elasticsearch.obs-monitoring.svc:9200 talks to the
real server through kube-proxy and CoreDNS. Security is on and the password of the
reserved user `elastic` is the keystore's bootstrap.password, as the upstream image's
entrypoint sets it from ELASTIC_PASSWORD (elastic/dockerfiles v8.19.4,
elasticsearch/bin/docker-entrypoint.sh).

Reads no environment variables; runs Elasticsearch as the system user obs-es when root
(it refuses to run as root), as the local stack does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
from obs_tools.common.processes import ManagedProcess
from obs_tools.common.versions import elasticsearch_home, java_home
from obs_tools.localstack.components import ES_SYSTEM_USER

from .polling import free_port


def es_env(config: Path, heap: str) -> dict[str, str]:
    """The environment of an Elasticsearch node (or its CLI tools) on `config`."""
    env = {"ES_PATH_CONF": str(config), "ES_JAVA_OPTS": f"-Xms{heap} -Xmx{heap}"}
    if java := java_home():
        env["ES_JAVA_HOME"] = str(java)
    return env


def as_es_user(argv: list[str]) -> list[str]:
    """Elasticsearch refuses to run as root: as root, run it as the system user."""
    return ["runuser", "-u", ES_SYSTEM_USER, "--", *argv] if os.geteuid() == 0 else argv


class HostElasticsearch:
    def __init__(
        self, host: str, elastic_password: str, heap: str = "512m", home: Path | None = None
    ):
        # A folder of its own that obs-es can reach (pytest's are private to root);
        # removed by stop().
        self.workdir = Path(tempfile.mkdtemp(prefix="obs-node-es-"))
        self.host = host
        self.port = free_port()
        self.password = elastic_password
        self.heap = heap
        # Another Elasticsearch home than the bootstrap's (e.g. one with a plugin added).
        self.home = home or elasticsearch_home()
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _env(self) -> dict[str, str]:
        return es_env(self.workdir / "config", self.heap)

    def _as_es_user(self, argv: list[str]) -> list[str]:
        return as_es_user(argv)

    def _prepare(self) -> None:
        home = self.home
        shutil.copytree(home / "config", self.workdir / "config")
        for sub in ("data", "logs"):
            (self.workdir / sub).mkdir(parents=True)
        settings = [
            "cluster.name: obs-node-test",
            "node.name: host",
            "discovery.type: single-node",
            f"network.host: {self.host}",
            f"http.port: {self.port}",
            "transport.host: 127.0.0.1",
            f"transport.port: {free_port()}",
            f"path.data: {self.workdir / 'data'}",
            f"path.logs: {self.workdir / 'logs'}",
            "xpack.security.enabled: true",
            "xpack.security.http.ssl.enabled: false",
            "xpack.security.transport.ssl.enabled: false",
            "cluster.routing.allocation.disk.threshold_enabled: false",
        ]
        with open(self.workdir / "config" / "elasticsearch.yml", "a") as config:
            config.write("\n" + "\n".join(settings) + "\n")
        if os.geteuid() == 0:
            account = pwd.getpwnam(ES_SYSTEM_USER)
            for root, _dirs, files in os.walk(self.workdir):
                os.chown(root, account.pw_uid, account.pw_gid)
                for name in files:
                    os.chown(os.path.join(root, name), account.pw_uid, account.pw_gid)
        tool = str(home / "bin" / "elasticsearch-keystore")
        env = dict(os.environ, **self._env())
        steps = (
            ([tool, "create"], None),
            ([tool, "add", "-x", "bootstrap.password"], self.password),
        )
        for argv, stdin in steps:
            result = subprocess.run(
                self._as_es_user(argv), input=stdin, env=env, capture_output=True,
                text=True, timeout=120, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise AssertionError(f"Elasticsearch keystore: {argv[1:]} failed: {result.stderr}")

    def start(self, timeout: float = 180) -> HostElasticsearch:
        os.chmod(self.workdir, 0o755)
        self._prepare()
        binary = str(self.home / "bin" / "elasticsearch")
        self.process = ManagedProcess(
            "elasticsearch", self._as_es_user([binary]), self.workdir, env=self._env()
        )
        self.process.wait_http(
            f"{self.url}/_cluster/health",
            timeout=timeout,
            ok=lambda r: r.status_code in (200, 401),
        )
        answer = httpx.get(
            f"{self.url}/_cluster/health", auth=("elastic", self.password), timeout=10
        )
        if answer.status_code != 200:
            raise AssertionError(
                f"Elasticsearch at {self.url} refused the bootstrap password of `elastic`: "
                f"{answer.status_code} {answer.text}\n{self.process.tail()}"
            )
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop(timeout=30)
        shutil.rmtree(self.workdir, ignore_errors=True)
