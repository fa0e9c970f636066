"""The direct span encoder sends exactly the message the SDK's OTLP encoder would."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from obs_telemetry.otlp_encoding import (
    EncodedSpan,
    EncodingBatchSpanProcessor,
    FastOTLPSpanExporter,
    SpanBatchEncoder,
    encode_span,
)


def decoded(data: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(data)


def assert_same_as_sdk(spans) -> None:
    ours = decoded(SpanBatchEncoder().encode(spans))
    theirs = decoded(encode_spans(spans).SerializeToString())
    assert ours == theirs, f"ours:\n{ours}\nSDK:\n{theirs}"


def test_the_services_real_spans_encode_as_the_sdk_does(client, span_exporter):
    for path in ("/", "/items/2", "/items/99", "/error?type=database_error", "/nope"):
        client.get(path, headers={"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"})
    client.post("/orders", json={"item_id": 1, "quantity": 2})
    spans = span_exporter.get_finished_spans()
    assert len(spans) >= 12
    assert any(span.events for span in spans)  # the exception events of /error
    assert_same_as_sdk(spans)


@pytest.fixture
def made_spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource({"service.name": "x", "n": 3}, schema_url="https://schema/1")
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def test_every_attribute_type_status_event_and_parent(made_spans):
    provider, exporter = made_spans
    tracer = provider.get_tracer("scope.a", "1.2", schema_url="https://schema/2")
    remote = SpanContext(
        int("1" * 32, 16),
        int("2" * 16, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(1),
        trace_state=TraceState([("k", "v"), ("a", "b")]),
    )
    parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    with tracer.start_as_current_span("ünïcode", context=parent, kind=SpanKind.CLIENT) as span:
        span.set_attributes(
            {
                "s": "text",
                "empty": "",
                "t": True,
                "f": False,
                "zero": 0,
                "neg": -5,
                "big": 2**62,
                "pi": 3.25,
                "nz": -0.0,
                "ints": [1, -2, 3],
                "strs": ["a", ""],
                "bools": [True, False],
                "floats": [1.5, 2.0],
            }
        )
        span.add_event("evt", {"k": 1, "l": ["x"]})
        span.add_event("bare")
        span.set_status(Status(StatusCode.ERROR, "went wrong"))
        with tracer.start_as_current_span("child") as child:
            child.set_status(Status(StatusCode.OK))
    other = provider.get_tracer("scope.b")
    with other.start_as_current_span("", kind=SpanKind.INTERNAL):
        pass
    assert_same_as_sdk(exporter.get_finished_spans())


def test_spans_with_links_fall_back_to_the_sdk_encoder(made_spans):
    provider, exporter = made_spans
    tracer = provider.get_tracer("t")
    link = Link(SpanContext(5, 6, is_remote=False), {"why": "batch"})
    with tracer.start_as_current_span("linked", links=[link]):
        pass
    with tracer.start_as_current_span("plain"):
        pass
    spans = exporter.get_finished_spans()
    with pytest.raises(Exception, match="links"):
        encode_span(spans[0])
    assert_same_as_sdk(spans)


def test_a_broken_encoder_is_caught_by_the_comparison(made_spans, monkeypatch):
    provider, exporter = made_spans
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("n", 7)
    import obs_telemetry.otlp_encoding as encoding

    # Local spans flagged as having a remote parent: one wrong bit must be noticed.
    monkeypatch.setattr(encoding, "_FLAGS_LOCAL", encoding._FLAGS_REMOTE)
    with pytest.raises(AssertionError):
        assert_same_as_sdk(exporter.get_finished_spans())


def test_cached_attribute_fields_keep_each_values_type(made_spans):
    # The field cache is keyed by value: True == 1 == 1.0 and 0.0 == -0.0 in Python,
    # yet each is a different AnyValue on the wire. Spans in one batch, in both orders.
    provider, exporter = made_spans
    tracer = provider.get_tracer("t")
    for value in (True, 1, 1.0, -0.0, 0.0, 0, False, "1", 1, True):
        with tracer.start_as_current_span("s") as span:
            span.set_attribute("v", value)
            span.add_event("e", {"v": value})
    spans = exporter.get_finished_spans()
    assert_same_as_sdk(spans)
    assert_same_as_sdk(list(reversed(spans)))


def test_the_field_cache_stays_bounded_and_right_when_cleared(made_spans, monkeypatch):
    import obs_telemetry.otlp_encoding as encoding

    monkeypatch.setattr(encoding, "_FIELD_CACHE_LIMIT", 5)
    encoding._field_cache.clear()
    provider, exporter = made_spans
    tracer = provider.get_tracer("t")
    for i in range(40):
        with tracer.start_as_current_span("s") as span:
            span.set_attributes({"port": 40000 + i % 9, "url": f"/x/{i % 7}", "m": "GET"})
    spans = exporter.get_finished_spans()
    assert_same_as_sdk(spans)
    assert len(encoding._field_cache) <= 5
    encoding._field_cache.clear()
    with tracer.start_as_current_span("long") as span:
        span.set_attribute("url", "/" + "x" * 5000)
    assert_same_as_sdk(exporter.get_finished_spans()[-1:])
    assert not encoding._field_cache


def test_equal_resources_share_one_resource_spans_as_in_the_sdk():
    # Spans of two providers with equal (not identical) resources, and of a third
    # with another resource: the SDK's encoder groups by equality.
    exporter = InMemorySpanExporter()
    providers = [
        TracerProvider(resource=Resource({"service.name": name}))
        for name in ("same", "other", "same")
    ]
    for provider in providers:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    for round_ in range(2):
        for index, provider in enumerate(providers):
            with provider.get_tracer("t").start_as_current_span(f"s{round_}-{index}"):
                pass
    spans = exporter.get_finished_spans()
    assert spans[0].resource is not spans[2].resource
    assert len(decoded(SpanBatchEncoder().encode(spans)).resource_spans) == 2
    assert_same_as_sdk(spans)
    for provider in providers:
        provider.shutdown()


class RecordingExporter(FastOTLPSpanExporter):
    """Our exporter, keeping what the batch thread hands it instead of sending it."""

    def __init__(self) -> None:
        super().__init__(endpoint="http://127.0.0.1:9/v1/traces")
        self.batches: list[list] = []

    def export(self, spans):
        self.batches.append(list(spans))
        return SpanExportResult.SUCCESS


def test_spans_encoded_as_they_end_make_the_sdks_request(made_spans):
    provider, exporter = made_spans
    tracer = provider.get_tracer("t")
    link = Link(SpanContext(5, 6, is_remote=False), {"why": "batch"})
    for name in ("a", "b"):
        with tracer.start_as_current_span(name, attributes={"n": 1}):
            pass
    with tracer.start_as_current_span("linked", links=[link]):
        pass
    spans = exporter.get_finished_spans()
    # What EncodingBatchSpanProcessor queues: encoded spans, and a raw span when
    # encoding it at its end failed.
    items = [EncodedSpan(spans[0]), spans[1], EncodedSpan(spans[2])]
    ours = decoded(SpanBatchEncoder().encode(items))
    theirs = decoded(encode_spans(spans).SerializeToString())
    assert ours == theirs, f"ours:\n{ours}\nSDK:\n{theirs}"


def test_the_processor_queues_spans_encoded_and_only_sampled_ones(made_spans):
    provider, in_memory = made_spans
    recording = RecordingExporter()
    processor = EncodingBatchSpanProcessor(recording)
    provider.add_span_processor(processor)
    with provider.get_tracer("t").start_as_current_span("kept", attributes={"k": "v"}):
        pass
    # A recorded but unsampled span (a RECORD_ONLY sampler's) must not be exported.
    unsampled = ReadableSpan(
        "unsampled",
        context=SpanContext(7, 8, is_remote=False, trace_flags=TraceFlags(0)),
        resource=provider.resource,
    )
    processor.on_end(unsampled)
    provider.force_flush()
    items = [item for batch in recording.batches for item in batch]
    assert [type(item) for item in items] == [EncodedSpan]
    assert decoded(SpanBatchEncoder().encode(items)) == decoded(
        encode_spans(in_memory.get_finished_spans()).SerializeToString()
    )


def test_a_span_that_fails_to_encode_at_its_end_is_queued_as_is(made_spans, monkeypatch):
    provider, _ = made_spans
    recording = RecordingExporter()
    provider.add_span_processor(EncodingBatchSpanProcessor(recording))
    import obs_telemetry.otlp_encoding as encoding

    def broken(span):
        raise RuntimeError("encoder bug")

    monkeypatch.setattr(encoding, "_span_bytes", broken)
    with provider.get_tracer("t").start_as_current_span("s"):
        pass  # ending the span must not raise into the request
    provider.force_flush()
    (item,) = [item for batch in recording.batches for item in batch]
    assert type(item) is not EncodedSpan and item.name == "s"


def test_a_full_queue_gets_spans_unencoded(made_spans, monkeypatch):
    # Spans beyond the queue's bound push out the oldest; encoding them in the request
    # thread would be wasted on an exporter that cannot keep up.
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "2")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
    provider, _ = made_spans
    recording = RecordingExporter()
    processor = EncodingBatchSpanProcessor(recording)
    # Hold the batch thread out of the way: the queue stays as the request threads left it.
    processor._batch_processor._export_lock.acquire()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for name in ("a", "b", "c"):
        with tracer.start_as_current_span(name):
            pass
    queued = list(processor._batch_processor._queue)
    processor._batch_processor._export_lock.release()
    # Newest first: "c" came when the queue was full, and pushed "a" out.
    newest, older = queued
    assert type(newest) is ReadableSpan and newest.name == "c"
    assert type(older) is EncodedSpan
