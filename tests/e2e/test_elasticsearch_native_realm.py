"""Native-realm writes on Maven's Elasticsearch 8.19.4, with and without the
obs-standin-analysis plugin (tests/support/es_standin_plugin).

Maven's integ-test-zip lacks the analysis-common module, so the first native-realm write
fails creating `.security` with `Unknown filter type [pattern_capture]`, as the
Kubernetes setup Job meets it on the real node (docs/kubernetes.md). With the plugin in
a private copy of the home's plugins/ (the shared home stays as the bootstrap left it),
the writes the setup Job makes succeed: kibana_system's password, a role, a user, who
then authenticates; a query on the user's e-mail (the field of the index's `email`
analyzer) shows that the components analyze, not only that they are registered. Without
the plugin, the same first write answers Elasticsearch's own error. One Elasticsearch
(256 MB of heap) per test, security on, `elastic` with the keystore's bootstrap password
(tests/support/host_elasticsearch.py).

Reads CI: with CI=true a missing Elasticsearch, Java or javac fails instead of skipping.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.es_cluster import require_elasticsearch
from tests.support.es_standin_plugin import build_plugin, home_with_plugin, javac_binary
from tests.support.host_elasticsearch import HostElasticsearch
from tests.support.requirements import unavailable

pytestmark = pytest.mark.e2e

HEAP = "256m"
ROLE = "obs_standin_reader"
USER = "obs_standin_user"
EMAIL = "Jane.Doe@Example.com"


@pytest.fixture
def private_home() -> Iterator[Path]:
    """An Elasticsearch home with the plugin, in a folder that obs-es can enter."""
    require_elasticsearch()
    if javac_binary() is None:
        unavailable("no javac (JDK 17 or newer) to build the plugin; install openjdk-17-jdk")
    plugin = build_plugin()
    parent = Path(tempfile.mkdtemp(prefix="obs-es-home-"))
    os.chmod(parent, 0o755)
    try:
        yield home_with_plugin(parent / "home", plugin)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def start(home: Path | None) -> HostElasticsearch:
    server = HostElasticsearch("127.0.0.1", secrets.token_urlsafe(16), heap=HEAP, home=home)
    try:
        return server.start(timeout=120)
    except BaseException:
        server.stop()
        raise


@pytest.fixture
def with_plugin(private_home: Path) -> Iterator[HostElasticsearch]:
    server = start(private_home)
    yield server
    server.stop()


@pytest.fixture
def without_plugin() -> Iterator[HostElasticsearch]:
    require_elasticsearch()
    server = start(None)
    yield server
    server.stop()


def call(server: HostElasticsearch, method: str, path: str, **kwargs) -> httpx.Response:
    kwargs.setdefault("auth", ("elastic", server.password))
    return httpx.request(method, f"{server.url}{path}", timeout=60, **kwargs)


def expect_ok(response: httpx.Response, server: HostElasticsearch) -> dict:
    assert response.status_code == 200, (
        f"{response.request.method} {response.request.url.path}: {response.status_code} "
        f"{response.text}\n{server.process.tail() if server.process else ''}"
    )
    return response.json()


def test_native_realm_writes_succeed_with_the_plugin(with_plugin):
    es = with_plugin
    plugins = call(es, "GET", "/_cat/plugins", params={"h": "component"}).text.split()
    assert "obs-standin-analysis" in plugins, plugins

    password = secrets.token_urlsafe(16)
    expect_ok(
        call(es, "POST", "/_security/user/kibana_system/_password", json={"password": password}),
        es,
    )
    role = {"cluster": ["monitor"], "indices": [{"names": ["obs-logs-*"], "privileges": ["read"]}]}
    assert expect_ok(call(es, "PUT", f"/_security/role/{ROLE}", json=role), es)["role"]["created"]
    user = {"password": password, "roles": [ROLE], "email": EMAIL, "full_name": "Jane Doe"}
    assert expect_ok(call(es, "PUT", f"/_security/user/{USER}", json=user), es)["created"]

    me = expect_ok(call(es, "GET", "/_security/_authenticate", auth=(USER, password)), es)
    assert (me["username"], me["roles"], me["authentication_realm"]["type"]) == (
        USER,
        [ROLE],
        "native",
    )
    kibana = call(es, "GET", "/_security/_authenticate", auth=("kibana_system", password))
    assert expect_ok(kibana, es)["username"] == "kibana_system"

    # The field's only analyzer is `email`: the domain is a term of its own (captured
    # after "@" by pattern_capture, lowercased) only if the components really analyzed.
    query = {"query": {"match": {"email": "EXAMPLE.com"}}}
    found = expect_ok(call(es, "POST", "/_security/_query/user", json=query), es)
    assert [u["username"] for u in found["users"]] == [USER], found


def test_native_realm_write_fails_without_the_plugin(without_plugin):
    es = without_plugin
    answer = call(
        es,
        "POST",
        "/_security/user/kibana_system/_password",
        json={"password": secrets.token_urlsafe(16)},
    )
    assert answer.status_code != 200, answer.text
    assert "Unknown filter type [pattern_capture]" in answer.text, answer.text
