"""Elasticsearch for the local stack: per-run config with generated passwords, the
project's index templates, and the users of its clients.

Reads OBS_ES_HEAP through components.py. The passwords are generated for each run and
kept in <run dir>/secrets (mode 0600); they are never written to the repository.

Users and roles are the file realm's (config/users, config/roles.yml): the Maven zip
that the bootstrap installs lacks the analysis module that the native realm's
.security index needs, so the setup Job's PUT /_security/... cannot run here. The roles
are the same files the setup Job installs (jaeger/elasticsearch/role-*.json).
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
import yaml

from ..common.versions import REPO, elasticsearch_home
from .components import ES_SYSTEM_USER, ES_USER, LocalStack

TEMPLATE_NAME = "obs-logs"
TEMPLATE_FILE = REPO / "fluent-bit" / "index-template.json"
INDEX_PREFIX = "obs-logs-"
JAEGER_FILES = REPO / "jaeger" / "elasticsearch"
# name -> file, in the order they must be installed (before Jaeger's first span).
TEMPLATES = {
    TEMPLATE_NAME: TEMPLATE_FILE,
    "jaeger-span": JAEGER_FILES / "jaeger-span.json",
    "jaeger-service": JAEGER_FILES / "jaeger-service.json",
}
# user -> role (file under jaeger/elasticsearch/), as the setup Job creates them.
CLIENT_USERS = {
    "jaeger": ("obs_jaeger", JAEGER_FILES / "role-jaeger.json"),
    "jaeger-index-cleaner": (
        "obs_jaeger_index_cleaner",
        JAEGER_FILES / "role-jaeger-index-cleaner.json",
    ),
}


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

    write_roles(state / "config" / "roles.yml")
    if as_root:
        account = pwd.getpwnam(ES_SYSTEM_USER)
        os.chmod(state, 0o755)
        for root, _dirs, files in os.walk(state):
            os.chown(root, account.pw_uid, account.pw_gid)
            for name in files:
                os.chown(os.path.join(root, name), account.pw_uid, account.pw_gid)
    _add_user(stack, ES_USER, "superuser", stack.es_password_file)
    for user, (role, _file) in CLIENT_USERS.items():
        _add_user(stack, user, role, stack.client_password_file(user))


def write_roles(path: Path) -> None:
    """The clients' roles in the file realm's roles.yml. Block style, each role at the
    start of a line: Elasticsearch splits the file into roles by its lines, and skips
    (with an error in its log) a role written as one JSON object."""
    roles = {role: json.loads(file.read_text()) for role, file in CLIENT_USERS.values()}
    with open(path, "a") as out:
        out.write("\n# Written by tools/obs_tools/localstack/elastic.py for this run.\n")
        out.write(yaml.safe_dump(roles, default_flow_style=False, sort_keys=False))


def _add_user(stack: LocalStack, user: str, role: str, password_file: Path) -> None:
    """A file realm user with a new password, kept in `password_file` (mode 0600)."""
    password = secrets.token_urlsafe(24)
    password_file.parent.mkdir(parents=True, exist_ok=True)
    password_file.touch(mode=0o600)
    password_file.write_text(password + "\n")
    home = elasticsearch_home()
    command = [
        str(home / "bin" / "elasticsearch-users"),
        "useradd",
        user,
        "-p",
        password,
        "-r",
        role,
    ]
    if os.geteuid() == 0:
        command = ["runuser", "-u", ES_SYSTEM_USER, "--", *command]
    env = dict(os.environ, **stack._es_env())
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(
            f"elasticsearch-users useradd {user} failed: {result.stderr or result.stdout}"
        )


def cleanup(stack: LocalStack) -> None:
    if (
        stack.es_state_dir
        and os.geteuid() == 0
        and stack.es_state_dir.name.startswith("obs-stack-es-")
    ):
        shutil.rmtree(stack.es_state_dir, ignore_errors=True)


def apply_index_templates(stack: LocalStack) -> None:
    """PUT the templates of TEMPLATES, so the mappings exist before the first log line
    and the first span."""
    for name, file in TEMPLATES.items():
        response = httpx.put(
            f"{stack.url('elasticsearch')}/_index_template/{name}",
            json=json.loads(file.read_text()),
            auth=stack.es_auth(),
            timeout=30,
        )
        if response.status_code != 200:
            raise RuntimeError(
                f"index template {name} ({file.relative_to(REPO)}) rejected: "
                f"{response.status_code} {response.text}"
            )
