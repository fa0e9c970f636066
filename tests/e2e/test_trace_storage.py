"""Jaeger's traces in Elasticsearch, in the local stack of `make demo`: they survive a
restart of Jaeger, Jaeger's user can touch nothing but its indices, the templates are
Jaeger's own, and the es-index-cleaner keeps the retention with its own user.

Everything is real: Jaeger v2.13.0 and its es-index-cleaner built from the module,
Elasticsearch 8.19.4, the services. Reads no environment variables.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import httpx
import pytest
from obs_tools.common.versions import jaeger_binary, jaeger_es_index_cleaner_binary
from obs_tools.localstack.elastic import JAEGER_FILES

from tests.support.polling import poll_until
from tests.support.requirements import unavailable
from tests.support.traces import jaeger_trace, services_of, traced_get

pytestmark = pytest.mark.e2e


def es(local_stack, method: str, path: str, user: str | None = None, **kwargs) -> httpx.Response:
    """A request to the stack's Elasticsearch as the superuser, or as a client `user`."""
    stack = local_stack.stack
    auth = (
        stack.es_auth()
        if user is None
        else (user, stack.client_password_file(user).read_text().strip())
    )
    return httpx.request(
        method, f"{local_stack.url('elasticsearch')}{path}", auth=auth, timeout=30, **kwargs
    )


def stored_trace(local_stack, trace_id: str) -> dict:
    """The trace from the query API once it holds both services' spans."""
    query = local_stack.url("jaeger_query")
    return poll_until(
        lambda: (
            (t := jaeger_trace(query, trace_id)) and services_of(t) == {"frontend", "backend"} and t
        ),
        f"trace {trace_id} from both services in Jaeger",
        timeout=60,
        on_timeout=lambda: local_stack.failure_context("jaeger", "frontend", "backend"),
    )


def restart_jaeger(local_stack) -> None:
    supervisor = local_stack.supervisor
    old_pid = supervisor.pid("jaeger")
    supervisor.stop_program("jaeger")
    supervisor.start_program("jaeger")
    supervisor.wait_ready("jaeger", 60)
    assert supervisor.pid("jaeger") != old_pid


def test_a_trace_survives_a_restart_of_jaeger(local_stack):
    trace_id, response = traced_get(f"{local_stack.url('frontend')}/items/2")
    assert response.status_code == 200
    before = stored_trace(local_stack, trace_id)
    # Where it is kept: the day's span index, which the restart leaves alone.
    hits = es(
        local_stack,
        "POST",
        "/jaeger-span-*/_count",
        json={"query": {"term": {"traceID": trace_id}}},
    )
    assert hits.json()["count"] == len(before["spans"]), hits.text

    restart_jaeger(local_stack)

    after = jaeger_trace(local_stack.url("jaeger_query"), trace_id)
    assert after is not None, (
        "Jaeger lost the trace in its restart:\n" + local_stack.failure_context("jaeger")
    )
    assert sorted(s["spanID"] for s in after["spans"]) == sorted(
        s["spanID"] for s in before["spans"]
    )
    found = httpx.get(
        f"{local_stack.url('jaeger_query')}/api/traces",
        params={"service": "frontend", "lookback": "1h", "limit": 1000},
        timeout=30,
    ).json()["data"]
    assert trace_id in {t["traceID"] for t in found}
    services = httpx.get(f"{local_stack.url('jaeger_query')}/api/services", timeout=10).json()
    assert {"frontend", "backend"} <= set(services["data"])


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/obs-logs-jaeger-test/_doc", {"message": "not Jaeger's"}),
        ("PUT", "/_index_template/jaeger-span", {"index_patterns": ["jaeger-span-*"]}),
        ("DELETE", "/jaeger-span-2000-01-01", None),
    ],
    ids=["write-logs", "put-template", "delete-index"],
)
def test_jaeger_user_is_refused_outside_its_indices(local_stack, method, path, body):
    response = es(local_stack, method, path, user="jaeger", json=body)
    assert response.status_code == 403, (
        f"{method} {path} as jaeger: {response.status_code} {response.text}"
    )


def test_jaeger_user_may_run_the_health_check_its_client_forces(local_stack):
    """After a failed bulk write, Jaeger's client sends HEAD / every 5 s and writes again
    only once it answers 2xx (olivere/elastic v7.0.32 bulk_processor.go:613, client.go
    healthcheck). HEAD / is the action cluster:monitor/main. Maven's Elasticsearch has no
    handler for / (405 to anyone), so the privilege is asked of the security layer."""
    response = es(
        local_stack, "POST", "/_security/user/_has_privileges", user="jaeger",
        json={"cluster": ["cluster:monitor/main"]},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["has_all_requested"], response.text


def test_jaeger_user_sees_no_log_line(local_stack):
    # A wildcard search leaves out the indices a user may not read, instead of a 403.
    def total(user):
        response = es(local_stack, "POST", "/obs-logs-*/_search", user=user, json={"size": 0})
        assert response.status_code == 200, response.text
        return response.json()["hits"]["total"]["value"]

    poll_until(lambda: total(None) > 0, "log lines in obs-logs-*", timeout=60)
    assert total("jaeger") == 0


def test_jaeger_user_writes_and_reads_its_daily_indices(local_stack):
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    response = es(
        local_stack, "POST", f"/jaeger-service-{day}/_search", user="jaeger", json={"size": 1}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("name", ["jaeger-span", "jaeger-service"])
def test_templates_are_what_the_pinned_jaeger_renders(name):
    """jaeger/elasticsearch/*.json are Jaeger's own mappings, with the one documented
    change (its _meta): replicas that follow the number of nodes."""
    rendered = subprocess.run(
        [str(jaeger_binary()), "elasticsearch-mappings", "--mapping", name, "--es-version", "8",
         "--shards", "1", "--replicas", "0"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    expected = json.loads(rendered)
    del expected["template"]["settings"]["index.number_of_replicas"]
    expected["template"]["settings"]["index.auto_expand_replicas"] = "0-1"
    ours = json.loads((JAEGER_FILES / f"{name}.json").read_text())
    assert ours.pop("_meta")["managed_by"] == "obs-stack"
    assert ours == expected


def test_installed_templates_are_the_files(local_stack):
    for name in ("jaeger-span", "jaeger-service"):
        (installed,) = es(local_stack, "GET", f"/_index_template/{name}").json()["index_templates"]
        assert (
            installed["index_template"]["template"]["settings"]["index"]["auto_expand_replicas"]
            == "0-1"
        )


def run_cleaner(local_stack, days: int) -> subprocess.CompletedProcess:
    """The CronJob's command (k8s/monitoring/jaeger-es-index-cleaner.yaml): its user, the
    password in ES_PASSWORD, never on the command line."""
    cleaner = jaeger_es_index_cleaner_binary()
    if not cleaner.exists():
        unavailable(f"not built: {cleaner}; run `scripts/bootstrap.sh all`")
    password = local_stack.stack.client_password_file("jaeger-index-cleaner").read_text()
    result = subprocess.run(
        [str(cleaner), str(days), local_stack.url("elasticsearch")],
        env={"ES_USERNAME": "jaeger-index-cleaner", "ES_PASSWORD": password.strip()},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, f"es-index-cleaner failed:\n{result.stdout}{result.stderr}"
    return result


def index_names(local_stack) -> set[str]:
    response = es(local_stack, "GET", "/_cat/indices?format=json&h=index&expand_wildcards=open")
    return {i["index"] for i in response.json()}


def test_es_index_cleaner_deletes_by_creation_date_and_only_jaeger_indices(local_stack):
    """Last in this module: it deletes today's jaeger-* indices, which Jaeger creates
    again from its templates at its next span.

    Elasticsearch does not let a test back-date an index (index.creation_date is not a
    setting one may give), so the two cutoffs that work today are used: 1 day keeps
    everything created today, whatever its name says; 0 days deletes it all."""
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    named_old = "jaeger-span-2000-01-01"
    assert es(local_stack, "PUT", f"/{named_old}").status_code == 200
    stored_trace(local_stack, traced_get(f"{local_stack.url('frontend')}/items/1")[0])
    before = index_names(local_stack)
    assert {named_old, f"jaeger-span-{day}", f"jaeger-service-{day}"} <= before

    run_cleaner(local_stack, days=1)
    assert index_names(local_stack) >= before, "created today, so kept, whatever the name says"

    result = run_cleaner(local_stack, days=0)
    after = index_names(local_stack)
    assert not {n for n in after if n.startswith("jaeger-")}, result.stderr
    # Not Jaeger's: out of the cleaner's reach, and left alone.
    assert {n for n in before if not n.startswith("jaeger-")} <= after
