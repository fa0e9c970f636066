"""End to end, with every backend real: services -> Jaeger, Prometheus (+ exemplars),
Elasticsearch (through the log shipper), and Prometheus -> Alertmanager -> e-mail.

Tests run in file order: the crash loop comes first so that its alert can ripen while
the other checks run; the alert tests come last and only wait for what is left.
"""

from __future__ import annotations

import html
import json
import math
import time

import httpx
import pytest
from obs_tools.localstack.elastic import TEMPLATE_FILE
from obs_tools.localstack.mailcatcher import read_messages
from obs_tools.views import links

from tests.support.polling import poll_until
from tests.support.traces import jaeger_trace, services_of, traced_get
from tests.support.views import mapped_types

pytestmark = pytest.mark.e2e

COURSE_PROMQL = [
    "sum(rate(flask_requests_total[5m]))",
    "flask_error_rate",
    "sum by (error_type) (flask_errors_total)",
    "histogram_quantile(0.95, rate(flask_request_duration_seconds_bucket[5m]))",
    # Seed 002's Grafana step, as typed there; its histogram has no series under the bare
    # name request_duration_seconds (a classic histogram is _bucket, _sum and _count).
    # Its fourth query, kube_pod_container_status_restarts_total, exists only in
    # Kubernetes: tests/k8s/test_crash_loop_alert.py.
    "http_requests_total",
    "active_users",
    "request_duration_seconds_bucket",
]
CRASHES = 3


def wait_for_trace(local_stack, trace_id: str) -> dict:
    """The trace once Jaeger holds spans of both services for it."""
    return poll_until(
        lambda: (
            (t := jaeger_trace(local_stack.url("jaeger_query"), trace_id))
            and services_of(t) == {"frontend", "backend"}
            and t
        ),
        f"trace {trace_id} from both services in Jaeger",
        timeout=60,
        on_timeout=lambda: local_stack.failure_context("jaeger", "frontend", "backend"),
    )


def span_kind(span: dict) -> str | None:
    return next((t["value"] for t in span["tags"] if t["key"] == "span.kind"), None)


def backend_start_time(local_stack) -> float | None:
    result = local_stack.prometheus_query('process_start_time_seconds{job="backend"}')
    return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="session")
def crash_loop(local_stack):
    """Crash the backend CRASHES times through /crash, each restart seen by Prometheus."""
    supervisor = local_stack.supervisor
    backend = local_stack.url("backend")
    pids = [supervisor.pid("backend")]
    started = time.monotonic()
    previous = poll_until(
        lambda: backend_start_time(local_stack), "Prometheus to scrape the backend", timeout=60
    )
    for _ in range(CRASHES):
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{backend}/crash", timeout=10)

        def restarted():
            if supervisor.state("backend") != "RUNNING" or supervisor.pid("backend") == pids[-1]:
                return None
            return httpx.get(f"{backend}/readyz", timeout=2).status_code == 200

        poll_until(
            restarted,
            "supervisord to restart the crashed backend",
            timeout=60,
            on_timeout=lambda: local_stack.failure_context("backend"),
        )
        pids.append(supervisor.pid("backend"))
        # Each restart must be scraped before the next crash, or the alert's changes()
        # would see fewer restarts than happened.
        previous = poll_until(
            lambda prev=previous: (v := backend_start_time(local_stack)) != prev and v,
            "Prometheus to scrape the restarted backend",
            timeout=60,
            on_timeout=lambda: local_stack.failure_context("prometheus"),
        )
    return {"pids": pids, "started": started}


def test_supervisor_restarts_the_crashed_backend(crash_loop):
    assert len(set(crash_loop["pids"])) == CRASHES + 1


def test_jaeger_has_the_trace_with_both_services(local_stack):
    trace_id, response = traced_get(f"{local_stack.url('frontend')}/items/2")
    assert response.status_code == 200
    trace = wait_for_trace(local_stack, trace_id)
    spans = {s["spanID"]: s for s in trace["spans"]}
    service = {sid: trace["processes"][s["processID"]]["serviceName"] for sid, s in spans.items()}
    backend_server = next(
        s for s in spans.values() if service[s["spanID"]] == "backend" and span_kind(s) == "server"
    )
    (parent_ref,) = [r for r in backend_server["references"] if r["refType"] == "CHILD_OF"]
    parent = spans[parent_ref["spanID"]]
    # backend server span <- frontend client span <- frontend server span (the root)
    assert service[parent["spanID"]] == "frontend"
    assert span_kind(parent) == "client"
    (grand_ref,) = [r for r in parent["references"] if r["refType"] == "CHILD_OF"]
    root = spans[grand_ref["spanID"]]
    assert service[root["spanID"]] == "frontend"
    assert root["references"] == [] or all(r["spanID"] not in spans for r in root["references"])


@pytest.mark.parametrize(
    ("error_type", "status"), [("database_error", 500), ("permission_error", 403)]
)
def test_jaeger_error_spans_follow_the_http_conventions(local_stack, error_type, status):
    # HTTP semantic conventions: a server span is ERROR for a 5xx and leaves its status
    # unset for a 4xx; the app's own category is in obs_telemetry.error.type either way.
    trace_id, response = traced_get(f"{local_stack.url('frontend')}/error?type={error_type}")
    assert response.status_code == status
    trace = wait_for_trace(local_stack, trace_id)
    servers = [s for s in trace["spans"] if span_kind(s) == "server"]
    assert len(servers) == 2
    for span in servers:
        tags = {t["key"]: t["value"] for t in span["tags"]}
        # Jaeger shows otel.status_code only for OK and ERROR, not for UNSET.
        assert tags.get("otel.status_code") == ("ERROR" if status >= 500 else None), tags
        assert tags.get("obs_telemetry.error.type") == error_type
        exception_events = any(
            f["key"] == "event" and f["value"] == "exception"
            for log in span["logs"]
            for f in log["fields"]
        )
        assert exception_events == (status >= 500)


def test_prometheus_scrapes_both_services(local_stack):
    def all_up():
        targets = httpx.get(f"{local_stack.url('prometheus')}/api/v1/targets", timeout=10).json()
        health = {t["labels"]["job"]: t["health"] for t in targets["data"]["activeTargets"]}
        return health.get("frontend") == "up" and health.get("backend") == "up"

    poll_until(
        all_up,
        "frontend and backend targets up",
        timeout=60,
        on_timeout=lambda: local_stack.failure_context("prometheus"),
    )


@pytest.mark.parametrize("expr", COURSE_PROMQL)
def test_course_promql_returns_data(local_stack, expr):
    def finite_values():
        values = [float(sample["value"][1]) for sample in local_stack.prometheus_query(expr)]
        return [v for v in values if math.isfinite(v)]

    # NaN (no requests on one endpoint in the window) is not data; one finite value is.
    values = poll_until(
        finite_values,
        f"a non-empty result for {expr}",
        timeout=90,
        interval=2,
        on_timeout=lambda: local_stack.failure_context("prometheus"),
    )
    assert all(v >= 0 for v in values)


def test_exemplars_link_metrics_to_jaeger_traces(local_stack):
    def exemplar_trace_ids():
        now = time.time()
        response = httpx.get(
            f"{local_stack.url('prometheus')}/api/v1/query_exemplars",
            params={
                "query": "flask_request_duration_seconds_bucket",
                "start": now - 600,
                "end": now,
            },
            timeout=10,
        )
        return {
            e["labels"]["trace_id"]
            for series in response.json()["data"]
            for e in series["exemplars"]
            if "trace_id" in e["labels"]
        }

    trace_ids = poll_until(
        exemplar_trace_ids, "exemplars with trace ids in Prometheus", timeout=90, interval=2
    )
    query = local_stack.url("jaeger_query")
    found = poll_until(
        lambda: next((t for t in sorted(trace_ids) if jaeger_trace(query, t)), None),
        "one exemplar's trace in Jaeger",
        timeout=60,
    )
    assert len(found) == 32


def es_search(local_stack, query: dict) -> list[dict]:
    response = httpx.post(
        f"{local_stack.url('elasticsearch')}/obs-logs-*/_search",
        json={"query": query, "size": 100},
        auth=local_stack.stack.es_auth(),
        timeout=10,
    )
    response.raise_for_status()
    return [hit["_source"] for hit in response.json()["hits"]["hits"]]


def test_logs_of_one_request_are_in_elasticsearch_from_both_services(local_stack):
    trace_id, response = traced_get(f"{local_stack.url('frontend')}/items/3")
    assert response.status_code == 200
    docs = poll_until(
        lambda: (
            (d := es_search(local_stack, {"term": {"trace.id": trace_id}}))
            and {doc["service.name"] for doc in d} == {"frontend", "backend"}
            and d
        ),
        f"log lines with trace.id {trace_id} from both services in Elasticsearch",
        timeout=60,
        on_timeout=lambda: local_stack.failure_context("log-shipper", "elasticsearch"),
    )
    assert all(doc["trace.id"] == trace_id for doc in docs)


def _leaf_fields(doc: dict, prefix: str = "") -> dict[str, object]:
    leaves = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            leaves.update(_leaf_fields(value, f"{path}."))
        else:
            leaves[path] = value
    return leaves


EXPECTED_TYPE = {
    str: {"keyword", "text", "date"},
    int: {"long", "integer"},
    float: {"double", "float"},
}


def test_every_logged_field_has_its_intended_mapping(local_stack):
    intended = mapped_types(
        json.loads(TEMPLATE_FILE.read_text())["template"]["mappings"]["properties"]
    )
    # Errors, tracebacks and access lines of every kind, so that all field kinds occur.
    for path in ("/error?type=database_error", "/items/999", "/slow?delay=x", "/health"):
        httpx.get(f"{local_stack.url('frontend')}{path}", timeout=15)
    poll_until(
        lambda: es_search(local_stack, {"term": {"error.type": "database_error"}}),
        "error lines in Elasticsearch",
        timeout=60,
    )
    mapping = httpx.get(
        f"{local_stack.url('elasticsearch')}/obs-logs-*/_mapping",
        auth=local_stack.stack.es_auth(),
        timeout=10,
    ).json()
    for index, body in mapping.items():
        actual = mapped_types(body["mappings"]["properties"])
        assert actual == intended, f"{index}: mapping differs from fluent-bit/index-template.json"
        assert body["mappings"]["dynamic"] == "false"
    docs = es_search(local_stack, {"match_all": {}})
    assert len(docs) >= 50
    for doc in docs:
        for field, value in _leaf_fields(doc).items():
            assert field in intended, f"field {field!r} is logged but not mapped: {doc}"
            assert intended[field] in EXPECTED_TYPE[type(value)], (field, value, intended[field])


def mails(local_stack, status: str) -> list:
    return [
        m
        for m in read_messages(local_stack.stack.mail_dir)
        if m.subject.startswith(f"[{status}]")
        and "ServiceCrashLooping" in m.subject
        and "backend" in m.subject
    ]


def test_crash_loop_alert_fires_and_is_emailed(local_stack, crash_loop):
    def routed():
        alerts = httpx.get(f"{local_stack.url('alertmanager')}/api/v2/alerts", timeout=10).json()
        return [
            a
            for a in alerts
            if a["labels"].get("alertname") == "ServiceCrashLooping"
            and a["labels"].get("service") == "backend"
            and a["receivers"]
            and a["receivers"][0]["name"] == "email"
        ]

    poll_until(
        routed,
        "Alertmanager to route ServiceCrashLooping to the email receiver",
        timeout=240,
        interval=2,
        on_timeout=lambda: local_stack.failure_context("prometheus", "alertmanager"),
    )
    (message, *_) = poll_until(
        lambda: mails(local_stack, "FIRING"),
        "the firing e-mail in the mail catcher",
        timeout=120,
        interval=2,
        on_timeout=lambda: local_stack.failure_context("alertmanager", "mailcatcher"),
    )
    # The subject names alert, service and severity; both parts carry the summary and
    # the links to the dashboard, the logs, the traces and the runbook.
    assert message.subject == "[FIRING] ServiceCrashLooping backend (critical)"
    expected_links = [
        f"{links.GRAFANA_URL}/d/obs-services?var-service=backend&from=",
        f"{links.KIBANA_URL}/app/discover#/view/{links.service_search_id('backend')}?_g=(time:",
        f"{links.JAEGER_URL}/search?service=backend&start=",
        f"{links.GRAFANA_URL}/d/obs-runbook-crash-looping",
    ]
    assert message.html.startswith("<!DOCTYPE html>")
    for part in (message.body, html.unescape(message.html)):
        assert "backend is crash looping" in part
        for link in expected_links:
            assert link in part, f"{link} missing from the e-mail:\n{part}"


def test_crash_loop_resolved_email_follows(local_stack, crash_loop):
    # The restarts leave the alert's 5-minute window about 5 minutes after the first
    # crash; then Prometheus resolves it and Alertmanager mails within group_interval.
    remaining = max(60.0, 5 * 60 + 150 - (time.monotonic() - crash_loop["started"]))
    poll_until(
        lambda: mails(local_stack, "RESOLVED"),
        "the resolved e-mail in the mail catcher",
        timeout=remaining,
        interval=3,
        on_timeout=lambda: local_stack.failure_context("prometheus", "alertmanager", "mailcatcher"),
    )
    assert mails(local_stack, "FIRING")
