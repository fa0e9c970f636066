"""The two Jobs' scripts (k8s/monitoring/files/) run with bash and curl against a
recording HTTP server on 127.0.0.1 that answers as Elasticsearch or Kibana would.

A stand-in, because neither real server can do it here: Kibana does not run on this
machine, and the Elasticsearch distribution the local stack installs
(integ-test-zip) lacks the analysis module its security index needs, so it cannot
create native users or roles (`Unknown filter type [pattern_capture]`). The stand-in
checks what only the scripts decide: the requests, their order, credentials and
bodies, and that a failure stops the Job with a message naming the step.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess

import pytest
import yaml
from obs_tools.common.paths import REPO

from tests.k8s.render import kustomize
from tests.support.recorder import Recorder, kibana

FILES = REPO / "k8s" / "monitoring" / "files"
ELASTIC_PASSWORD = 'el"astic\\pw'  # quotes and backslashes must survive curl's config


@pytest.fixture(autouse=True)
def tools():
    for tool in ("bash", "curl"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is needed to run the Jobs' scripts")


def run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(FILES / script)],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


SETUP_ENV = {
    "ELASTIC_PASSWORD": ELASTIC_PASSWORD,
    "KIBANA_SYSTEM_PASSWORD": "kibana-pw",
    "GRAFANA_PASSWORD": 'gra"fana-pw',
    "FLUENT_BIT_PASSWORD": "fluent-pw",
    "INDEX_TEMPLATE": str(REPO / "fluent-bit" / "index-template.json"),
    "JAEGER_PASSWORD": "jaeger-pw",
    "JAEGER_INDEX_CLEANER_PASSWORD": "cleaner-pw",
    "JAEGER_FILES": str(REPO / "jaeger" / "elasticsearch"),
}
JAEGER_FILES = REPO / "jaeger" / "elasticsearch"


def es_ok(method, path, body):
    return 200, {"acknowledged": True} if path.startswith("/_index") else {}


def test_setup_creates_users_roles_and_the_template_as_elastic():
    with Recorder(es_ok) as es:
        result = run("elasticsearch-setup.sh", {**SETUP_ENV, "ES_URL": es.url})
    assert result.returncode == 0, result.stderr
    calls = [(r["method"], r["path"].split("?")[0]) for r in es.requests]
    assert calls == [
        ("GET", "/_cluster/health"),
        ("POST", "/_security/user/kibana_system/_password"),
        ("PUT", "/_security/role/obs_grafana"),
        ("PUT", "/_security/user/grafana"),
        ("PUT", "/_security/role/obs_fluent_bit"),
        ("PUT", "/_security/user/fluent-bit"),
        ("PUT", "/_index_template/obs-logs"),
        ("PUT", "/_index_template/jaeger-span"),
        ("PUT", "/_index_template/jaeger-service"),
        ("PUT", "/_security/role/obs_jaeger"),
        ("PUT", "/_security/user/jaeger"),
        ("PUT", "/_security/role/obs_jaeger_index_cleaner"),
        ("PUT", "/_security/user/jaeger-index-cleaner"),
    ]
    assert all(
        r["headers"]["Authorization"] == basic("elastic", ELASTIC_PASSWORD) for r in es.requests
    )
    bodies = [json.loads(r["body"]) for r in es.requests[1:]]
    assert bodies[0] == {"password": "kibana-pw"}
    assert bodies[1]["indices"] == [
        {"names": ["obs-logs-*"], "privileges": ["read", "view_index_metadata", "monitor"]}
    ]
    assert bodies[1]["cluster"] == ["monitor"]
    assert bodies[2]["password"] == 'gra"fana-pw' and bodies[2]["roles"] == ["obs_grafana"]
    # Fluent Bit may write the daily indices, nothing else.
    assert bodies[3] == {
        "cluster": [],
        "indices": [
            {
                "names": ["obs-logs-*"],
                "privileges": ["create_index", "write", "create_doc", "auto_configure"],
            }
        ],
    }
    assert bodies[4]["password"] == "fluent-pw" and bodies[4]["roles"] == ["obs_fluent_bit"]
    # The very file the local stack installs.
    assert bodies[5] == json.loads((REPO / "fluent-bit" / "index-template.json").read_text())
    # Jaeger's templates and roles: the files the local stack installs too.
    for body, name in zip(
        bodies[6:9], ["jaeger-span", "jaeger-service", "role-jaeger"], strict=True
    ):
        assert body == json.loads((JAEGER_FILES / f"{name}.json").read_text())
    assert bodies[9] == {
        "password": "jaeger-pw",
        "roles": ["obs_jaeger"],
        "full_name": "Jaeger (writes and reads jaeger-*)",
    }
    assert bodies[10] == json.loads((JAEGER_FILES / "role-jaeger-index-cleaner.json").read_text())
    assert bodies[11]["password"] == "cleaner-pw"
    assert bodies[11]["roles"] == ["obs_jaeger_index_cleaner"]
    assert "kibana-pw" not in result.stdout + result.stderr


def test_setup_stops_at_the_first_refused_step_and_names_it():
    def refuse_roles(method, path, body):
        if path.startswith("/_security/role/"):
            return 403, {"error": "action [cluster:admin/xpack/security/role/put] is unauthorized"}
        return es_ok(method, path, body)

    with Recorder(refuse_roles) as es:
        result = run("elasticsearch-setup.sh", {**SETUP_ENV, "ES_URL": es.url})
    assert result.returncode == 1
    assert "role obs_grafana failed: HTTP 403" in result.stderr
    assert "is unauthorized" in result.stderr
    assert not any("/_security/user/grafana" in r["path"] for r in es.requests)


def test_setup_gives_up_when_elasticsearch_is_not_healthy_in_time():
    with Recorder(lambda m, p, b: (503, {"status": "red"})) as es:
        result = run("elasticsearch-setup.sh", {**SETUP_ENV, "ES_URL": es.url, "WAIT_SECONDS": "0"})
    assert result.returncode == 1
    assert f"{es.url} not healthy after 0s" in result.stderr


def test_import_posts_each_ndjson_with_overwrite_and_xsrf_as_elastic():
    with Recorder(kibana()) as kb:
        result = run(
            "kibana-import.sh",
            {"KIBANA_URL": kb.url, "ELASTIC_PASSWORD": ELASTIC_PASSWORD,
             "SAVED_OBJECTS_DIR": str(REPO / "kibana")},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    status, upload = kb.requests
    assert (status["method"], status["path"]) == ("GET", "/api/status")
    assert (upload["method"], upload["path"]) == (
        "POST",
        "/api/saved_objects/_import?overwrite=true",
    )
    for request in kb.requests:
        assert request["headers"]["Authorization"] == basic("elastic", ELASTIC_PASSWORD)
        assert request["headers"]["kbn-xsrf"]
    assert upload["headers"]["Content-Type"].startswith("multipart/form-data")
    assert b'name="file"; filename="saved-objects.ndjson"' in upload["body"]
    assert (REPO / "kibana" / "saved-objects.ndjson").read_bytes().strip() in upload["body"]
    assert '"successCount":11' in result.stdout


def test_import_fails_when_kibana_reports_errors():
    answer = {"success": False, "errors": [{"id": "obs-logs", "error": {"type": "conflict"}}]}
    with Recorder(kibana(import_answer=answer)) as kb:
        result = run(
            "kibana-import.sh",
            {"KIBANA_URL": kb.url, "ELASTIC_PASSWORD": "pw",
             "SAVED_OBJECTS_DIR": str(REPO / "kibana")},
        )  # fmt: skip
    assert result.returncode == 1
    assert "importing saved-objects.ndjson failed: HTTP 200" in result.stderr


@pytest.mark.parametrize(
    ("overall", "saved_objects"),
    [
        ("available", "available"),
        # One degraded plugin degrades the whole; /api/status still answers 200.
        ("degraded", "available"),
        ("degraded", "degraded"),
        # Core's saved objects are what the import needs.
        ("unavailable", "available"),
    ],
)
def test_import_runs_when_kibana_is_available_or_degraded(overall, saved_objects):
    with Recorder(kibana(level=overall, saved_objects=saved_objects)) as kb:
        result = run(
            "kibana-import.sh",
            {"KIBANA_URL": kb.url, "ELASTIC_PASSWORD": "pw",
             "SAVED_OBJECTS_DIR": str(REPO / "kibana"), "WAIT_SECONDS": "0"},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [r["method"] for r in kb.requests] == ["GET", "POST"]


@pytest.mark.parametrize(
    ("overall", "saved_objects", "http_status"),
    [
        ("unavailable", "unavailable", 503),
        # The levels alone decide too, whatever the HTTP status says.
        ("unavailable", "unavailable", 200),
        ("critical", "critical", 200),
        ("available", "available", 503),
    ],
)
def test_import_waits_for_a_usable_kibana_and_gives_up_in_time(overall, saved_objects, http_status):
    answer = kibana(level=overall, saved_objects=saved_objects, http_status=http_status)
    with Recorder(answer) as kb:
        result = run(
            "kibana-import.sh",
            {"KIBANA_URL": kb.url, "ELASTIC_PASSWORD": "pw",
             "SAVED_OBJECTS_DIR": str(REPO / "kibana"), "WAIT_SECONDS": "0"},
        )  # fmt: skip
    assert result.returncode == 1
    assert "not usable (saved objects not available) after 0s" in result.stderr
    assert not any(r["method"] == "POST" for r in kb.requests)


def elasticsearch_readiness_command() -> str:
    """The readiness probe's script, as the StatefulSet in the render runs it."""
    rendered = kustomize()
    (statefulset,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "StatefulSet"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    command = container["readinessProbe"]["exec"]["command"]
    assert command[:2] == ["bash", "-c"]
    return command[2]


@pytest.mark.parametrize(("status", "ready"), [(200, True), (408, False), (401, False)])
def test_elasticsearch_readiness_probe_asks_for_a_yellow_cluster_as_elastic(status, ready):
    script = elasticsearch_readiness_command()
    with Recorder(lambda m, p, b: (status, {})) as es:
        local = script.replace("http://127.0.0.1:9200", es.url)
        assert local != script
        result = subprocess.run(
            ["bash", "-c", local],
            env={"PATH": "/usr/bin:/bin", "ELASTIC_PASSWORD": ELASTIC_PASSWORD},
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert (result.returncode == 0) is ready, result.stderr
    (request,) = es.requests
    assert request["path"] == "/_cluster/health?wait_for_status=yellow&timeout=2s"
    assert request["headers"]["Authorization"] == basic("elastic", ELASTIC_PASSWORD)
