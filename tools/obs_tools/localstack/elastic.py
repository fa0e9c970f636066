"""Elasticsearch for the local stack: per-run config with a generated password, and the
project's index template.

Reads OBS_ES_HEAP through components.py. The password is generated for each run and
kept in <run dir>/secrets (mode 0600); it is never written to the repository.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx

from ..common.versions import REPO, elasticsearch_home
from .components import ES_SYSTEM_USER, ES_USER, LocalStack

TEMPLATE_NAME = "obs-logs"
TEMPLATE_FILE = REPO / "fluent-bit" / "index-template.json"
INDEX_PREFIX = "obs-logs-"


def _settings(stack: LocalStack, state: Path) -> str:
    p = stack.ports
    return "\n".join(
        [
            "cluster.name: obs-stack-local",
            "node.name: local",
            "discovery.type: single-node",
            "network.host: 127.0.0.1",
            f"http.port: {p.elasticsearch}",
            f"transport.port: {p.elasticsearch_transport}",
            f"path.data: {state / 'data'}",
            f"path.logs: {state / 'logs'}",
            # Authentication stays on, as in any real deployment; TLS is off because
            # everything stays on the loopback interface.
            "xpack.security.enabled: true",
            "xpack.security.http.ssl.enabled: false",
            "xpack.security.transport.ssl.enabled: false",
            # A laptop disk that is 90% full would otherwise make every index
            # read-only and silently stop the logs.
            "cluster.routing.allocation.disk.threshold_enabled: false",
            "action.destructive_requires_name: true",
            "",
        ]
    )


def prepare(stack: LocalStack) -> None:
    """Config dir, data dirs and the generated user, before Elasticsearch starts."""
    home = elasticsearch_home()
    if not (home / "bin" / "elasticsearch").exists():
        raise FileNotFoundError(
            f"Elasticsearch is not installed at {home}: run `make bootstrap` (scripts/bootstrap.sh)"
        )
    as_root = os.geteuid() == 0
    state = (
        Path(tempfile.mkdtemp(prefix="obs-stack-es-"))
        if as_root
        else stack.run_dir / "elasticsearch"
    )
    stack.es_state_dir = state
    if (state / "config").exists():
        shutil.rmtree(state / "config")
    shutil.copytree(home / "config", state / "config")
    for sub in ("data", "logs"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    with open(state / "config" / "elasticsearch.yml", "a") as config:
        config.write("\n# Written by tools/obs_tools/localstack/elastic.py for this run.\n")
        config.write(_settings(stack, state))

    password = secrets.token_urlsafe(24)
    stack.es_password_file.parent.mkdir(parents=True, exist_ok=True)
    stack.es_password_file.touch(mode=0o600)
    stack.es_password_file.write_text(password + "\n")

    if as_root:
        account = pwd.getpwnam(ES_SYSTEM_USER)
        os.chmod(state, 0o755)
        for root, _dirs, files in os.walk(state):
            os.chown(root, account.pw_uid, account.pw_gid)
            for name in files:
                os.chown(os.path.join(root, name), account.pw_uid, account.pw_gid)
    # The file realm user, written into this run's config dir.
    command = [
        str(home / "bin" / "elasticsearch-users"),
        "useradd",
        ES_USER,
        "-p",
        password,
        "-r",
        "superuser",
    ]
    if as_root:
        command = ["runuser", "-u", ES_SYSTEM_USER, "--", *command]
    env = dict(os.environ, **stack._es_env())
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"elasticsearch-users failed: {result.stderr or result.stdout}")


def cleanup(stack: LocalStack) -> None:
    if (
        stack.es_state_dir
        and os.geteuid() == 0
        and stack.es_state_dir.name.startswith("obs-stack-es-")
    ):
        shutil.rmtree(stack.es_state_dir, ignore_errors=True)


def apply_index_template(stack: LocalStack) -> None:
    """PUT fluent-bit/index-template.json, so the mapping exists before the first line."""
    body = json.loads(TEMPLATE_FILE.read_text())
    response = httpx.put(
        f"{stack.url('elasticsearch')}/_index_template/{TEMPLATE_NAME}",
        json=body,
        auth=stack.es_auth(),
        timeout=30,
    )
    if response.status_code != 200:
        raise RuntimeError(f"index template rejected: {response.status_code} {response.text}")
