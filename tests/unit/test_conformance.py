"""Conformance: the spans obs_telemetry produces, against the specifications.

Every expectation here comes from the OpenTelemetry HTTP semantic conventions
(https://opentelemetry.io/docs/specs/semconv/http/http-spans/), the SDK environment
variable specification, or the documented behaviour of the upstream instrumentations
(opentelemetry-instrumentation-flask and -httpx), never from a recording of our own
output. Run against every instrumentation mode the package offers (MODES); a mode that
cannot pass does not ship.

The app under test is tests/support/conformance_app.py. What the instrumentations read
once per process (OTEL_SEMCONV_STABILITY_OPT_IN, the excluded-URL variables) is tested
in a fresh interpreter per setting. Flush on SIGTERM under gunicorn is in
tests/integration/test_conformance_shutdown.py. Reads no environment variables itself.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN_ID, SpanKind, StatusCode

from obs_telemetry.extension import APP_ERROR_TYPE_ATTRIBUTE
from obs_telemetry.tracing import build_tracer_provider
from tests.support import conformance_app
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.polling import poll_until

REPO = Path(__file__).resolve().parents[2]
# Every instrumentation mode obs_telemetry offers, each a factory of the conformance app.
# Today there is one: OpenTelemetry's own instrumentations. A faster mode added to the
# package must be added here and pass every test below.
MODES = {"upstream": conformance_app.create_app}

TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
SAMPLED_PARENT = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
UNSAMPLED_PARENT = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}
# Variables the instrumentations read once per process; fresh interpreters get only ours.
PROCESS_WIDE = (
    "OTEL_SEMCONV_STABILITY_OPT_IN",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
    "OTEL_PYTHON_FLASK_EXCLUDED_URLS",
    "OTEL_PYTHON_EXCLUDED_URLS",
)


@pytest.fixture(params=sorted(MODES))
def mode(request):
    return request.param


@pytest.fixture
def make_app(mode, tracer_provider):
    made = []

    def make(provider=tracer_provider, **options):
        app = MODES[mode](provider, **options)
        made.append(app)
        return app

    yield make
    for app in made:
        conformance_app.close(app)


@pytest.fixture
def client(make_app):
    return make_app().test_client()


def finished(exporter, kind=None):
    return [s for s in exporter.get_finished_spans() if kind is None or s.kind == kind]


def in_fresh_process(mode: str, env: dict[str, str], requests: list) -> list[dict]:
    """The spans of `requests`, answered in a new interpreter with only `env` set."""
    assert mode in MODES
    environ = {k: v for k, v in os.environ.items() if k not in PROCESS_WIDE} | env
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.conformance_app", json.dumps(requests)],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


# --- Span name, kind, parent ---------------------------------------------------------


def test_server_span_continues_the_remote_parent(client, span_exporter):
    client.get("/items/1", headers=SAMPLED_PARENT)
    (span,) = finished(span_exporter)
    # Server span name: "{method} {http.route}"; kind SERVER; parent from traceparent.
    assert span.name == "GET /items/<int:item_id>"
    assert span.kind == SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert span.parent.is_remote


def test_server_span_without_traceparent_is_a_root(client, span_exporter):
    client.get("/items/1")
    (span,) = finished(span_exporter)
    assert span.parent is None
    assert span.kind == SpanKind.SERVER


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        # No route matched: the name is the method alone, never the raw path.
        ("GET", "/no/such/route", "GET"),
        # A method the conventions do not know is named "HTTP".
        ("BREW", "/items/1", "HTTP"),
    ],
)
def test_span_name_without_a_route(client, span_exporter, method, path, name):
    client.open(path, method=method)
    (span,) = finished(span_exporter)
    assert span.name == name


def test_client_spans_are_children_and_propagate_w3c_context(client, span_exporter):
    conformance_app.OBSERVED.clear()
    client.get("/call", headers=SAMPLED_PARENT)
    (server,) = finished(span_exporter, SpanKind.SERVER)
    clients = finished(span_exporter, SpanKind.CLIENT)
    assert len(clients) == 3
    sent = conformance_app.OBSERVED["downstream_traceparents"]
    for span, traceparent in zip(clients, sent, strict=True):
        # Client span name: "{method}"; parent: the server span; the outgoing
        # traceparent names the client span as the downstream's parent.
        assert span.name == "GET"
        assert span.parent.span_id == server.context.span_id
        trace_hex = format(span.context.trace_id, "032x")
        assert traceparent == f"00-{trace_hex}-{span.context.span_id:016x}-01"


def test_instrumenting_a_client_twice_records_one_span_per_call(make_app, span_exporter):
    make_app(instrument_client_twice=True).test_client().get("/call")
    assert len(finished(span_exporter, SpanKind.CLIENT)) == 3


# --- Status ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "http_status"),
    [
        ("/items/1", StatusCode.UNSET, 200),
        # Server spans: status MUST be left unset for 4xx (the client's error).
        ("/items/404", StatusCode.UNSET, 404),
        ("/invalid", StatusCode.UNSET, 400),
        ("/no/such/route", StatusCode.UNSET, 404),
        # 5xx: status ERROR.
        ("/fail", StatusCode.ERROR, 500),
        ("/unavailable", StatusCode.ERROR, 503),
    ],
)
def test_server_span_status_follows_the_response_code(
    client, span_exporter, path, status, http_status
):
    assert client.get(path).status_code == http_status
    (span,) = finished(span_exporter)
    assert span.status.status_code == status
    if http_status < 500:
        assert [e.name for e in span.events] == []


def test_an_exception_is_an_error_with_an_exception_event(client, span_exporter):
    assert client.get("/boom").status_code == 500
    (span,) = finished(span_exporter)
    assert span.status.status_code == StatusCode.ERROR
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "RuntimeError"
    assert event.attributes["exception.message"] == "boom"


def test_client_span_status_follows_the_response_code(client, span_exporter):
    client.get("/call")
    statuses = {
        span.attributes.get(
            "http.status_code", span.attributes.get("http.response.status_code")
        ): span.status.status_code
        for span in finished(span_exporter, SpanKind.CLIENT)
    }
    # Client spans: 4xx and 5xx are both errors; 2xx leaves the status unset.
    assert statuses == {200: StatusCode.UNSET, 404: StatusCode.ERROR, 502: StatusCode.ERROR}


def test_the_app_error_category_has_its_own_attribute(client, span_exporter):
    client.get("/invalid")
    client.get("/fail")
    invalid, fail = finished(span_exporter)
    assert invalid.attributes[APP_ERROR_TYPE_ATTRIBUTE] == "validation_error"
    assert fail.attributes[APP_ERROR_TYPE_ATTRIBUTE] == "database_error"
    # error.type belongs to the instrumentation (absent in the default mode).
    assert "error.type" not in invalid.attributes


# --- Attributes in the three OTEL_SEMCONV_STABILITY_OPT_IN modes -------------------------

OLD_SERVER = {"http.method", "http.scheme", "http.target", "http.status_code", "http.route"}
NEW_SERVER = {
    "http.request.method",
    "url.scheme",
    "url.path",
    "http.response.status_code",
    "http.route",
}
OLD_CLIENT = {"http.method", "http.url", "http.status_code"}
NEW_CLIENT = {"http.request.method", "url.full", "http.response.status_code", "server.address"}
SEMCONV_REQUESTS = [
    ["GET", "/items/1?q=2", {"User-Agent": "conformance/1"}],
    ["GET", "/invalid", {}],
    ["GET", "/fail", {}],
    ["BREW", "/items/1", {}],
    ["GET", "/call", {}],
]


@pytest.mark.parametrize("opt_in", ["", "http", "http/dup"])
def test_attributes_follow_the_semconv_opt_in(mode, opt_in):
    spans = in_fresh_process(mode, {"OTEL_SEMCONV_STABILITY_OPT_IN": opt_in}, SEMCONV_REQUESTS)
    servers = [s for s in spans if s["kind"] == "SERVER"]
    clients = [s for s in spans if s["kind"] == "CLIENT"]
    item, invalid, fail, brew, _call = servers
    emits_old, emits_new = opt_in in ("", "http/dup"), opt_in in ("http", "http/dup")
    old_keys = {"http.method", "http.status_code", "http.target", "http.url"}
    # Old names only by default, new names only with "http", both with "http/dup".
    for span in servers + clients:
        keys = set(span["attributes"])
        expected_old = OLD_SERVER - {"http.route"} if span["kind"] == "SERVER" else OLD_CLIENT
        expected_new = NEW_SERVER - {"http.route"} if span["kind"] == "SERVER" else NEW_CLIENT
        if emits_old:
            assert keys >= expected_old, span
        else:
            assert not keys & old_keys, span
        if emits_new:
            assert keys >= expected_new, span
        else:
            assert not keys & (NEW_SERVER | NEW_CLIENT) - {"http.route"}, span
    attributes = item["attributes"]
    assert attributes["http.route"] == "/items/<int:item_id>"
    if emits_old:
        assert set(attributes) >= OLD_SERVER
        assert attributes["http.method"] == "GET"
        assert attributes["http.target"] == "/items/1?q=2"
        assert attributes["http.status_code"] == 200
        assert attributes["http.user_agent"] == "conformance/1"
    if emits_new:
        assert set(attributes) >= NEW_SERVER
        assert attributes["http.request.method"] == "GET"
        assert attributes["url.path"] == "/items/1"
        assert attributes["url.query"] == "q=2"
        assert attributes["http.response.status_code"] == 200
        assert attributes["user_agent.original"] == "conformance/1"
        # An unknown method is reported as _OTHER with the original kept aside.
        assert brew["attributes"]["http.request.method"] == "_OTHER"
        assert brew["attributes"]["http.request.method_original"] == "BREW"
        # error.type: the status code for a 5xx, absent on a server's 4xx; the app's
        # category never overwrites it.
        assert fail["attributes"]["error.type"] == "500"
        assert "error.type" not in invalid["attributes"]
        by_status = {s["attributes"]["http.response.status_code"]: s for s in clients}
        assert by_status[404]["attributes"]["error.type"] == "404"
        assert "error.type" not in by_status[200]["attributes"]
    assert fail["attributes"][APP_ERROR_TYPE_ATTRIBUTE] == "database_error"
    assert invalid["attributes"][APP_ERROR_TYPE_ATTRIBUTE] == "validation_error"


def test_captured_headers_follow_the_environment(mode):
    # Upstream's documented header capture: http.request.header.<name, lower case, "-"
    # as "_"> with a list of values, on the SERVER span.
    spans = in_fresh_process(
        mode,
        {"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": "X-Tenant"},
        [["GET", "/items/1", {"X-Tenant": "blue", "X-Other": "no"}]],
    )
    (span,) = spans
    assert span["kind"] == "SERVER"
    assert span["attributes"]["http.request.header.x_tenant"] == ["blue"]
    assert "http.request.header.x_other" not in span["attributes"]


# --- Excluded URLs from the environment -----------------------------------------------

EXCLUSION_REQUESTS = [
    ["GET", path, {}] for path in ("/items/1", "/metrics", "/livez", "/reports/metrics")
]


@pytest.mark.parametrize(
    ("env", "traced"),
    [
        # Unset: scrapes and probes are not traced, a route that merely ends in
        # "metrics" is.
        ({}, ["/items/1", "/reports/metrics"]),
        # Set: the instrumentation's own variable replaces the default entirely.
        ({"OTEL_PYTHON_FLASK_EXCLUDED_URLS": "items/1,livez"}, ["/metrics", "/reports/metrics"]),
        # The generic variable, which the Flask instrumentation falls back to.
        ({"OTEL_PYTHON_EXCLUDED_URLS": "reports"}, ["/items/1", "/metrics", "/livez"]),
    ],
)
def test_excluded_urls_come_from_the_environment(mode, env, traced):
    spans = in_fresh_process(mode, env, EXCLUSION_REQUESTS)
    targets = [s["attributes"]["http.target"] for s in spans]
    assert targets == traced


# --- Sampling and span limits ---------------------------------------------------------


def provider_from_env(monkeypatch, env: dict[str, str]):
    """build_tracer_provider as the services call it, exporting to memory."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider("conformance", "0.0.1", exporter=exporter)
    return provider, exporter


def test_parentbased_ratio_follows_the_parent_and_samples_roots(monkeypatch, make_app):
    provider, exporter = provider_from_env(
        monkeypatch,
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    )
    client = make_app(provider).test_client()
    client.get("/items/1", headers=SAMPLED_PARENT)
    client.get("/items/2", headers=UNSAMPLED_PARENT)
    roots = 400
    for _ in range(roots):
        client.get("/items/3")
    provider.force_flush()
    spans = exporter.get_finished_spans()
    targets = [s.attributes["http.target"] for s in spans]
    # A sampled parent is always followed, an unsampled one never.
    assert "/items/1" in targets
    assert "/items/2" not in targets
    # Roots at 10 %: binomial(400, 0.1) lies in 15..70 but for a ~1e-6 chance.
    assert 15 <= targets.count("/items/3") <= 70
    provider.shutdown()


def test_always_off_exports_nothing(monkeypatch, make_app):
    provider, exporter = provider_from_env(monkeypatch, {"OTEL_TRACES_SAMPLER": "always_off"})
    make_app(provider).test_client().get("/items/1", headers=SAMPLED_PARENT)
    provider.force_flush()
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


def test_span_limits_come_from_the_environment(monkeypatch, make_app):
    provider, exporter = provider_from_env(
        monkeypatch,
        {"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "4", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "6"},
    )
    make_app(provider).test_client().get("/items/1", headers={"User-Agent": "abcdefghij"})
    provider.force_flush()
    (span,) = exporter.get_finished_spans()
    assert len(span.attributes) == 4
    assert span.dropped_attributes > 0
    assert all(len(v) <= 6 for v in span.attributes.values() if isinstance(v, str))
    provider.shutdown()


# --- Context through copy_current_request_context and threads -------------------------


def test_copied_request_context_leaves_no_span_on_the_worker(make_app, span_exporter, caplog):
    conformance_app.OBSERVED.clear()
    app = make_app()
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="opentelemetry.context"):
        assert client.get("/copied-context").status_code == 200
        # A later request whose code runs on the same worker thread.
        later = app.extensions["worker"].submit(client.get, "/items/5").result()
    assert later.status_code == 200
    assert not [r for r in caplog.records if "detach" in r.getMessage().lower()]
    # The worker never made the request's span current for good, and holds none after.
    assert conformance_app.OBSERVED["worker_after"] == INVALID_SPAN_ID
    first, second = finished(span_exporter)
    # Each request is one SERVER span, ended once, after its view returned.
    assert first.name == "GET /copied-context"
    assert first.end_time >= conformance_app.OBSERVED["view_done_ns"]
    assert second.name == "GET /items/<int:item_id>"
    assert second.kind == SpanKind.SERVER
    assert second.parent is None
    assert second.context.trace_id != first.context.trace_id


def test_a_thread_given_the_context_makes_children_of_the_server_span(client, span_exporter):
    client.get("/spawn")
    child, server = finished(span_exporter)
    assert child.name == "child work"
    assert child.parent.span_id == server.context.span_id
    assert child.context.trace_id == server.context.trace_id


# --- Huge integers --------------------------------------------------------------------


def test_huge_integers_do_not_corrupt_an_export(monkeypatch, make_app):
    with OtlpReceiver() as receiver:
        # A long delay: both requests' spans leave in the same export, at the flush.
        provider_env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "60000",
        }
        for name, value in provider_env.items():
            monkeypatch.setenv(name, value)
        provider = build_tracer_provider("conformance", "0.0.1")
        client = make_app(provider).test_client()
        client.get("/huge")
        client.get("/items/1")
        assert provider.force_flush()
        spans = poll_until(
            lambda: receiver.snapshot() if len(receiver.snapshot()) == 2 else None,
            "both spans at the OTLP receiver",
            timeout=10,
        )
        provider.shutdown()
    huge = next(s for s in spans if s.name == "GET /huge")
    assert huge.attributes["test.fine"] == 7
    # OTLP's int_value is an int64: a value outside it is dropped, never wrapped.
    assert huge.attributes.get("test.int64_overflow", 2**63 + 5) == 2**63 + 5
    assert huge.attributes.get("test.int_70_bits", 2**70) == 2**70
    assert any(s.name == "GET /items/<int:item_id>" for s in spans)


# --- Instrumentation scope ------------------------------------------------------------


def test_spans_name_the_instrumentation_that_recorded_them(client, span_exporter):
    client.get("/call")
    scopes = {
        (s.kind, s.instrumentation_scope.name, s.instrumentation_scope.version)
        for s in finished(span_exporter)
    }
    assert scopes == {
        (
            SpanKind.SERVER,
            "opentelemetry.instrumentation.flask",
            metadata.version("opentelemetry-instrumentation-flask"),
        ),
        (
            SpanKind.CLIENT,
            "opentelemetry.instrumentation.httpx",
            metadata.version("opentelemetry-instrumentation-httpx"),
        ),
    }
