"""ServerSpans exports the spans opentelemetry-instrumentation-flask would, request for
request: same names, kinds, scope, attributes, status, events and parents."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import backend
import frontend
from tests.conftest import QUIET

TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
TRACED = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "tracestate": "vendor=x,other=y"}

BACKEND_REQUESTS = [
    ("GET", "/api/items/2?x=1", TRACED | {"User-Agent": "curl/8.0"}, None),
    ("GET", "/api/items/99", {}, None),
    ("GET", "/api/items/abc", {}, None),
    ("GET", "/nope/deeper", {"traceparent": "garbage"}, None),
    ("GET", "/error?type=database_error", TRACED, None),
    ("GET", "/error?type=permission_error", {}, None),
    ("BREW", "/api/items", {}, None),
    ("DELETE", "/api/items", {}, None),
    ("HEAD", "/api/items", {}, None),
    ("OPTIONS", "/", {}, None),
    ("POST", "/api/orders", {"Content-Type": "application/json"}, b'{"item_id": 1, "quantity": 3}'),
    ("POST", "/api/orders", {"Content-Type": "application/json"}, b"[1, 2]"),
    ("GET", "/metrics", TRACED, None),
    ("GET", "/metrics/", {}, None),
    ("GET", "/livez", {}, None),
    ("GET", "/readyz?x=1", {}, None),
    ("GET", "/stats", {}, None),
    ("GET", "/slow?delay=abc", {}, None),
]
FRONTEND_REQUESTS = [
    ("GET", "/items/2", TRACED, None),
    ("GET", "/items/42", {}, None),
    ("GET", "/error?type=timeout_error", {}, None),
    ("POST", "/orders", {"Content-Type": "application/json"}, b'{"item_id": 9, "quantity": 1}'),
    ("GET", "/slow?delay=-1", {}, None),
    ("PUT", "/", {}, None),
]


def normalized(span) -> tuple:
    attributes = dict(span.attributes)
    # The test client's ephemeral port differs between the two runs.
    if "net.peer.port" in attributes:
        attributes["net.peer.port"] = "<port>"
    events = []
    for event in span.events:
        fields = dict(event.attributes)
        # Same exception, raised through the same code; only frame details may differ.
        fields.pop("exception.stacktrace", None)
        events.append((event.name, tuple(sorted(fields.items()))))
    parent = span.parent
    scope = span.instrumentation_scope
    return (
        span.name,
        span.kind,
        (scope.name, scope.version, scope.schema_url),
        tuple(sorted(attributes.items(), key=lambda kv: kv[0])),
        (span.status.status_code, span.status.description),
        tuple(events),
        None
        if parent is None
        else (parent.is_remote, format(parent.span_id, "016x") if parent.is_remote else "local"),
        format(span.context.trace_id, "032x") == TRACE_ID,
        span.start_time <= span.end_time,
    )


def spans_for(module, requests, mode: str, backend_url: str | None = None) -> list[tuple]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = dict(QUIET, TELEMETRY_INSTRUMENTATION=mode)
    if backend_url:
        config["BACKEND_URL"] = backend_url
    app = module.create_app(config, registry=CollectorRegistry(), tracer_provider=provider)
    client = app.test_client()
    for method, path, headers, body in requests:
        client.open(path, method=method, headers=headers, data=body)
    if "backend_client" in app.extensions:
        app.extensions["backend_client"].close()
    provider.shutdown()
    return [normalized(span) for span in exporter.get_finished_spans()]


def test_backend_spans_match_the_upstream_instrumentation():
    lean = spans_for(backend, BACKEND_REQUESTS, "lean")
    upstream = spans_for(backend, BACKEND_REQUESTS, "upstream")
    # Scrapes and probes make no span; everything else makes exactly one.
    assert len(upstream) == len(BACKEND_REQUESTS) - 4
    assert lean == upstream


def test_repeated_requests_reuse_cached_attributes_and_still_match():
    # The second pass takes every request's attributes from the cache.
    lean = spans_for(backend, BACKEND_REQUESTS * 2, "lean")
    upstream = spans_for(backend, BACKEND_REQUESTS * 2, "upstream")
    assert lean == upstream
    assert lean[: len(lean) // 2] == lean[len(lean) // 2 :]


class RecordingEnviron(dict):
    """A WSGI environ that notes every key read from it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key) -> bool:
        self.read.add(key)
        return super().__contains__(key)


GUNICORN_LIKE = {
    "REQUEST_METHOD": "GET",
    "RAW_URI": "/api/items/2?x=1",
    "PATH_INFO": "/api/items/2",
    "QUERY_STRING": "x=1",
    "SCRIPT_NAME": "",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "5001",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "10.0.0.7",
    "REMOTE_PORT": "40312",
    "HTTP_HOST": "backend:5001",
    "HTTP_USER_AGENT": "Googlebot/2.1",
    "HTTP_ACCEPT": "*/*",
    "wsgi.url_scheme": "http",
}


@pytest.mark.parametrize(
    "environ",
    [
        GUNICORN_LIKE,
        # No RAW_URI or REQUEST_URI: upstream rebuilds the URL with wsgiref.
        {k: v for k, v in GUNICORN_LIKE.items() if k != "RAW_URI"},
        dict(GUNICORN_LIKE, RAW_URI="", REQUEST_URI="/x", REMOTE_HOST="client.example"),
        {
            "REQUEST_METHOD": "BREW",
            "wsgi.url_scheme": "https",
            "SERVER_NAME": "h",
            "SERVER_PORT": "443",
        },
    ],
    ids=["gunicorn", "no-raw-uri", "request-uri", "sparse"],
)
@pytest.mark.parametrize("mode", ["default", "http/dup"])
def test_the_attribute_cache_key_covers_every_environ_key_upstream_reads(
    environ, mode, monkeypatch
):
    from opentelemetry.instrumentation import wsgi as otel_wsgi
    from opentelemetry.instrumentation._semconv import _StabilityMode

    from obs_telemetry.server_spans import REQUEST_ATTRIBUTE_KEYS

    recording = RecordingEnviron(environ)
    stability = _StabilityMode.DEFAULT if mode == "default" else _StabilityMode.HTTP_DUP
    otel_wsgi.collect_request_attributes(recording, stability)
    assert recording.read, "nothing recorded: the check would pass vacuously"
    assert recording.read <= set(REQUEST_ATTRIBUTE_KEYS), recording.read - set(
        REQUEST_ATTRIBUTE_KEYS
    )


def test_the_key_check_notices_a_missing_key(monkeypatch):
    import obs_telemetry.server_spans as server_spans

    monkeypatch.setattr(server_spans, "REQUEST_ATTRIBUTE_KEYS", ("REQUEST_METHOD",))
    with pytest.raises(AssertionError):
        test_the_attribute_cache_key_covers_every_environ_key_upstream_reads(
            GUNICORN_LIKE, "default", monkeypatch
        )


def test_capture_all_methods_turns_the_attribute_cache_off(monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS", "true")
    app = backend.create_app(
        dict(QUIET), registry=CollectorRegistry(), tracer_provider=TracerProvider()
    )
    hooks = [hook for hook in app.before_request_funcs[None] if hasattr(hook, "__self__")]
    server_spans = next(h.__self__ for h in hooks if type(h.__self__).__name__ == "ServerSpans")
    assert server_spans._attribute_cache is None
    monkeypatch.delenv("OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS")
    app = backend.create_app(
        dict(QUIET), registry=CollectorRegistry(), tracer_provider=TracerProvider()
    )
    hooks = [hook for hook in app.before_request_funcs[None] if hasattr(hook, "__self__")]
    server_spans = next(h.__self__ for h in hooks if type(h.__self__).__name__ == "ServerSpans")
    assert server_spans._attribute_cache == {}
    # Each request gets its own copy: the route and the status code are added to it.
    first = server_spans._request_attributes(dict(GUNICORN_LIKE))
    first["http.route"] = "/changed"
    assert "http.route" not in server_spans._request_attributes(dict(GUNICORN_LIKE))
    assert len(server_spans._attribute_cache) == 1
    # A request with a long URL is answered right and not kept.
    long_path = "/api/items/" + "x" * 3000
    environ = dict(GUNICORN_LIKE, RAW_URI=long_path, PATH_INFO=long_path)
    assert server_spans._request_attributes(environ)["http.target"] == long_path
    assert len(server_spans._attribute_cache) == 1


def test_frontend_spans_match_the_upstream_instrumentation(backend_server):
    lean = spans_for(frontend, FRONTEND_REQUESTS, "lean", backend_server.url)
    upstream = spans_for(frontend, FRONTEND_REQUESTS, "upstream", backend_server.url)
    assert len(upstream) >= len(FRONTEND_REQUESTS) + 3  # server spans plus client spans
    assert lean == upstream


def test_the_comparison_notices_a_difference():
    lean = spans_for(backend, BACKEND_REQUESTS[:3], "lean")
    upstream = spans_for(backend, BACKEND_REQUESTS[1:4], "upstream")
    assert lean != upstream
    assert spans_for(backend, BACKEND_REQUESTS[:1], "lean")[0][0] == "GET /api/items/<int:item_id>"


@pytest.mark.parametrize("mode", ["lean", "upstream"])
def test_the_server_span_is_current_while_the_view_runs(mode, backend_server):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = frontend.create_app(
        dict(QUIET, TELEMETRY_INSTRUMENTATION=mode, BACKEND_URL=backend_server.url),
        registry=CollectorRegistry(),
        tracer_provider=provider,
    )
    app.test_client().get("/items/1", headers=TRACED)
    app.extensions["backend_client"].close()
    spans = {span.kind.name: span for span in exporter.get_finished_spans()}
    assert spans["CLIENT"].parent.span_id == spans["SERVER"].context.span_id
