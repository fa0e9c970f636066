"""What the local stack runs: one Program per component, with its command line,
environment, log file and readiness check, plus the config files it needs.

Reads, to choose defaults: OBS_ES_HEAP (Elasticsearch heap, default 512m) and the
locations in versions.py. The repository's own config files are used as they are;
only addresses (free ports, the mail catcher's SMTP port) are filled in locally.
"""

from __future__ import annotations

import os
import shlex
import smtplib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import httpx
import yaml

from ..common.versions import (
    REPO,
    VERSIONS,
    alertmanager_ui_dir,
    elasticsearch_home,
    fluent_bit_binary,
    jaeger_binary,
)
from ..common.wait import free_port

ES_USER = "obs-admin"
ES_SYSTEM_USER = "obs-es"


@dataclass
class Ports:
    """Every port the stack binds on 127.0.0.1; the defaults are the well-known ones."""

    frontend: int = 5000
    backend: int = 5001
    prometheus: int = 9090
    alertmanager: int = 9093
    jaeger_query: int = 16686
    jaeger_query_grpc: int = 16685
    jaeger_otlp_http: int = 4318
    jaeger_otlp_grpc: int = 4317
    jaeger_health: int = 13133
    jaeger_metrics: int = 8888
    elasticsearch: int = 9200
    elasticsearch_transport: int = 9300
    elasticsearch_exporter: int = 9114
    smtp: int = 1025
    fluent_bit: int = 2020

    @classmethod
    def free(cls) -> Ports:
        return cls(**{f.name: free_port() for f in fields(cls)})

    def items(self):
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


# Jaeger on its in-memory store (jaeger/config.yaml's memstore backend), for measurements
# that run Jaeger without Elasticsearch (`make bench`, obs_tools.bench.jaeger_memory):
# the Elasticsearch backend is still built at start and needs a readable password file,
# which /dev/null is; it never connects.
JAEGER_IN_MEMORY = {"JAEGER_TRACE_STORAGE": "memstore", "JAEGER_ES_PASSWORD_FILE": os.devnull}


@dataclass
class Program:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # Returns truthy once the component serves requests; None: RUNNING is enough.
    ready: Callable[[], object] | None = None
    user: str | None = None
    autostart: bool = True
    # Services are restarted whatever their exit code, as a kubelet would.
    autorestart: bool = True
    stop_seconds: int = 20
    priority: int = 500
    cwd: Path = REPO


def http_ok(url: str, auth=None) -> Callable[[], bool]:
    def check() -> bool:
        return httpx.get(url, timeout=2.0, auth=auth).status_code == 200

    return check


def smtp_ok(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with smtplib.SMTP("127.0.0.1", port, timeout=2) as smtp:
            return smtp.noop()[0] == 250

    return check


def service_argv(module: str, port: int) -> list[str]:
    """gunicorn command line of one service, bound to loopback."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:obs_telemetry.gunicorn_conf",
        "--bind",
        f"127.0.0.1:{port}",
        f"{module}.wsgi:app",
    ]


def service_env(module: str, **overrides: str) -> dict[str, str]:
    env = {
        "PYTHONUNBUFFERED": "1",
        "OTEL_SERVICE_NAME": module,
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=local",
    }
    env.update(overrides)
    return env


class LocalStack:
    """The programs and config files of one local stack in `run_dir`."""

    def __init__(
        self,
        run_dir: Path,
        ports: Ports | None = None,
        *,
        services_only: bool = False,
        service_env_overrides: dict[str, str] | None = None,
        traffic_argv: list[str] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.ports = ports or Ports()
        self.services_only = services_only
        self.service_env_overrides = service_env_overrides or {}
        self.traffic_argv = traffic_argv
        self.log_dir = self.run_dir / "logs"
        self.mail_dir = self.run_dir / "mail"
        self.secrets_dir = self.run_dir / "secrets"
        self.es_password_file = self.secrets_dir / "elasticsearch-password"
        # Elasticsearch runs as user obs-es when we are root, and that user cannot enter
        # /root or pytest's private temp dirs: its state lives in /tmp then.
        self.es_state_dir: Path | None = None

    # -- addresses ---------------------------------------------------------------

    def url(self, component: str) -> str:
        return f"http://127.0.0.1:{getattr(self.ports, component)}"

    @property
    def jaeger_otlp_endpoint(self) -> str:
        return self.url("jaeger_otlp_http")

    def es_password(self) -> str:
        return self.es_password_file.read_text().strip()

    def es_auth(self) -> tuple[str, str]:
        return ES_USER, self.es_password()

    def client_password_file(self, user: str) -> Path:
        """The password of one of Elasticsearch's client users (elastic.CLIENT_USERS)."""
        return self.secrets_dir / f"elasticsearch-{user}-password"

    # -- programs ----------------------------------------------------------------

    def services(self) -> list[Program]:
        p = self.ports
        common = (
            {}
            if self.services_only
            else {
                "OTEL_EXPORTER_OTLP_ENDPOINT": self.jaeger_otlp_endpoint,
            }
        )
        if self.services_only:
            # No Jaeger to send to: spans are still made (trace ids in logs, exemplars,
            # traceparent to the backend) but not exported.
            common["OTEL_TRACES_EXPORTER"] = "none"
        common.update(self.service_env_overrides)
        backend = Program(
            "backend",
            service_argv("backend", p.backend),
            service_env("backend", **common),
            ready=http_ok(f"{self.url('backend')}/readyz"),
            priority=300,
        )
        frontend = Program(
            "frontend",
            service_argv("frontend", p.frontend),
            service_env("frontend", BACKEND_URL=self.url("backend"), **common),
            ready=http_ok(f"{self.url('frontend')}/readyz"),
            priority=310,
        )
        return [backend, frontend]

    def backends(self) -> list[Program]:
        p = self.ports
        python = sys.executable
        programs = [
            Program(
                "mailcatcher",
                [
                    python,
                    "-m",
                    "obs_tools.localstack.mailcatcher",
                    "serve",
                    "--port",
                    str(p.smtp),
                    "--maildir",
                    str(self.mail_dir),
                ],
                {},
                ready=smtp_ok(p.smtp),
                priority=100,
            ),
            Program(
                "elasticsearch",
                [str(elasticsearch_home() / "bin" / "elasticsearch")],
                self._es_env(),
                ready=self._es_ready,
                user=ES_SYSTEM_USER if os.geteuid() == 0 else None,
                stop_seconds=30,
                priority=100,
            ),
            # Debian's prometheus-elasticsearch-exporter: Elasticsearch's health, indices
            # and JVM as Prometheus metrics ("Stack health" dashboard). It reads the
            # credentials from ES_USERNAME / ES_PASSWORD, never from its command line.
            Program(
                "elasticsearch-exporter",
                [
                    "prometheus-elasticsearch-exporter",
                    f"--es.uri={self.url('elasticsearch')}",
                    "--es.indices",
                    f"--web.listen-address=127.0.0.1:{p.elasticsearch_exporter}",
                ],
                {"ES_USERNAME": ES_USER, "ES_PASSWORD": ""},  # password filled in at render
                ready=self._es_exporter_ready,
                priority=150,
            ),
            Program(
                "jaeger",
                [str(jaeger_binary()), "--config", str(REPO / "jaeger" / "config.yaml")],
                {
                    "JAEGER_LISTEN_HOST": "127.0.0.1",
                    "JAEGER_QUERY_HTTP_PORT": str(p.jaeger_query),
                    "JAEGER_QUERY_GRPC_PORT": str(p.jaeger_query_grpc),
                    "JAEGER_OTLP_HTTP_PORT": str(p.jaeger_otlp_http),
                    "JAEGER_OTLP_GRPC_PORT": str(p.jaeger_otlp_grpc),
                    "JAEGER_HEALTH_PORT": str(p.jaeger_health),
                    "JAEGER_METRICS_PORT": str(p.jaeger_metrics),
                    # The UI config (link patterns to Kibana): the query extension reads
                    # and validates it at start, and injects it into the UI's page.
                    "JAEGER_UI_CONFIG": str(REPO / "jaeger" / "ui-config.json"),
                    "JAEGER_ES_URL": self.url("elasticsearch"),
                    "JAEGER_ES_PASSWORD_FILE": str(self.client_password_file("jaeger")),
                },
                ready=http_ok(f"{self.url('jaeger_health')}/status"),
                # Started by runner.start once Elasticsearch has Jaeger's index
                # templates: a span stored before would create the day's index with
                # field types guessed from that span.
                autostart=False,
                priority=100,
            ),
            Program(
                "alertmanager",
                [
                    "prometheus-alertmanager",
                    f"--config.file={self.run_dir / 'alertmanager.yml'}",
                    f"--storage.path={self.run_dir / 'alertmanager-data'}",
                    f"--web.listen-address=127.0.0.1:{p.alertmanager}",
                    # The address that e-mails link to ("Alertmanager: ..."), instead of
                    # one built from the host name.
                    f"--web.external-url={self.url('alertmanager')}",
                    # A single instance: no gossip port for an HA cluster.
                    "--cluster.listen-address=",
                    # Debian's package has no web UI; the release's own, unpacked by the
                    # bootstrap (trailing slash: the flag names a folder).
                    f"--web.ui-path={alertmanager_ui_dir()}/",
                ],
                ready=http_ok(f"{self.url('alertmanager')}/-/ready"),
                priority=200,
            ),
            Program(
                "prometheus",
                [
                    "prometheus",
                    f"--config.file={self.run_dir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.run_dir / 'prometheus-data'}",
                    # A flag here: Debian's 2.42 has no storage.tsdb.retention in its
                    # config file (v3 deprecates the flag for it: prometheus-kubernetes.yml).
                    "--storage.tsdb.retention.time=1d",
                    f"--web.listen-address=127.0.0.1:{p.prometheus}",
                    # Exemplars (trace ids on histogram buckets) are a feature flag in 2.x.
                    "--enable-feature=exemplar-storage",
                ],
                ready=http_ok(f"{self.url('prometheus')}/-/ready"),
                priority=200,
            ),
            self._log_shipper(),
        ]
        if self.traffic_argv:
            programs.append(
                Program(
                    "traffic",
                    self.traffic_argv,
                    {},
                    autostart=False,
                    priority=900,
                )
            )
        return programs

    def programs(self) -> list[Program]:
        return self.services() if self.services_only else self.backends() + self.services()

    def _es_env(self) -> dict[str, str]:
        from ..common.versions import java_home

        env = {
            "ES_JAVA_OPTS": f"-Xms{os.environ.get('OBS_ES_HEAP', '512m')} "
            f"-Xmx{os.environ.get('OBS_ES_HEAP', '512m')}",
        }
        java = java_home()
        if java:
            env["ES_JAVA_HOME"] = str(java)
        if self.es_state_dir:
            env["ES_PATH_CONF"] = str(self.es_state_dir / "config")
        return env

    def _es_ready(self) -> bool:
        response = httpx.get(
            f"{self.url('elasticsearch')}/_cluster/health", auth=self.es_auth(), timeout=2.0
        )
        return response.status_code == 200 and response.json()["status"] in ("green", "yellow")

    def _es_exporter_ready(self) -> bool:
        # The exporter queries Elasticsearch at each scrape: ready once that works.
        metrics = httpx.get(f"{self.url('elasticsearch_exporter')}/metrics", timeout=5.0).text
        return "elasticsearch_cluster_health_up 1" in metrics

    def _log_shipper(self) -> Program:
        """The real Fluent Bit (built by `scripts/bootstrap.sh all`) on the repository's
        fluent-bit/fluent-bit-local.conf, tailing the services' log files."""
        env = {
            "ES_HOST": "127.0.0.1",
            "ES_PORT": str(self.ports.elasticsearch),
            "ES_USER": ES_USER,
            # Fluent Bit reads the password from its environment only; it is generated
            # per run and never written to the repository.
            "ES_PASSWORD": "",  # filled in by supervisor config rendering
            "OBS_LOG_PATH": str(self.log_dir / "*end.log"),
            "OBS_STATE_DIR": str(self.run_dir / "shipper-state"),
            "FLUENT_BIT_HTTP_LISTEN": "127.0.0.1",
            "FLUENT_BIT_HTTP_PORT": str(self.ports.fluent_bit),
        }
        argv = [str(fluent_bit_binary()), "-c", str(REPO / "fluent-bit" / "fluent-bit-local.conf")]
        # Fluent Bit resolves @INCLUDE and Parsers_File against its working directory
        # first: run it from the folder the files are in.
        return Program(
            "log-shipper",
            argv,
            env,
            ready=http_ok(f"{self.url('fluent_bit')}/api/v1/health"),
            autostart=False,
            priority=400,
            cwd=REPO / "fluent-bit",
        )

    # -- config files ------------------------------------------------------------

    def prometheus_config(self) -> dict:
        """The local scrape config; rules are the repository's files, unchanged."""
        p = self.ports

        def job(name: str, port: int) -> dict:
            return {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}

        return {
            "global": {
                # Shorter than the usual 15 s so that the demo and the e2e tests see
                # changes quickly; the rules' windows do not depend on it.
                "scrape_interval": "5s",
                "evaluation_interval": "5s",
                "external_labels": {"stack": "local"},
            },
            "rule_files": [str(REPO / "prometheus" / "rules" / "*.yml")],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{p.alertmanager}"]}]}
                ]
            },
            "scrape_configs": [
                job("frontend", p.frontend),
                job("backend", p.backend),
                job("prometheus", p.prometheus),
                job("alertmanager", p.alertmanager),
                job("jaeger", p.jaeger_metrics),
                job("elasticsearch", p.elasticsearch_exporter),
                # Fluent Bit's own path, as the DaemonSet's prometheus.io/path names it.
                {**job("fluent-bit", p.fluent_bit), "metrics_path": "/api/v1/metrics/prometheus"},
            ],
        }

    def alertmanager_config(self) -> dict:
        """The repository's routing, with the local mail catcher as SMTP server.

        Its template paths are relative to alertmanager.yml's directory, but this copy
        lives in the run dir: they are made absolute, still naming the repository's
        files.
        """
        directory = REPO / "prometheus" / "alertmanager"
        config = yaml.safe_load((directory / "alertmanager.yml").read_text())
        config["global"]["smtp_smarthost"] = f"127.0.0.1:{self.ports.smtp}"
        config["templates"] = [str(directory / t) for t in config.get("templates", [])]
        return config

    def write_configs(self) -> None:
        for directory in (self.run_dir, self.log_dir, self.mail_dir, self.secrets_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if self.services_only:
            return
        (self.run_dir / "prometheus.yml").write_text(yaml.safe_dump(self.prometheus_config()))
        (self.run_dir / "alertmanager.yml").write_text(yaml.safe_dump(self.alertmanager_config()))
        (self.run_dir / "shipper-state").mkdir(exist_ok=True)


def supervisor_quote(value: str) -> str:
    """A value for supervisord's environment= list: quoted, with % escaped."""
    escaped = value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def command_line(argv: list[str]) -> str:
    return shlex.join(argv).replace("%", "%%")


__all__ = ["ES_USER", "VERSIONS", "LocalStack", "Ports", "Program", "service_argv", "service_env"]
