"""OTLP/HTTP span export with a direct protobuf encoder: the same bytes' meaning, less CPU.

Reads no environment variables itself; the exporter it extends reads the standard
OTEL_EXPORTER_OTLP_* variables.

The SDK's exporter builds one protobuf object per span, attribute and value before
serialising them: about 85 us of CPU per span here (docs/benchmarks.md), under the
same GIL as the requests. This module writes the protobuf
wire format of each Span directly from the SDK's span, reusing the encoded bytes of
attribute pairs it has seen (a service's spans repeat the same method, host, route and
user agent): about a fifth of that cost. The resource and the instrumentation scope,
the same for a whole batch, still go through the SDK's encoder and are cached. A span
it cannot encode exactly (links, or an attribute value of another type) is encoded by
the SDK's own code instead, so the message the receiver decodes is always the one the
SDK would have sent (tests/unit/test_otlp_encoding.py compares them).

EncodingBatchSpanProcessor, the SDK's BatchSpanProcessor with this encoder, encodes each
span as it ends rather than a whole batch at once on the batch thread.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_instrumentation_scope,
    _encode_resource,
)
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import _encode_span
from opentelemetry.exporter.otlp.proto.http._common import _is_request_too_large
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

log = logging.getLogger("obs_telemetry.tracing")

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack

# SpanFlags: the context-has-is-remote bit always, the is-remote bit for remote parents.
_FLAGS_LOCAL = _pack_fixed32(0x100)
_FLAGS_REMOTE = _pack_fixed32(0x300)
_ONE_BYTE = tuple(bytes((i,)) for i in range(0x80))


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 on the wire: two's complement, ten bytes
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(tag: bytes, payload: bytes) -> bytes:
    size = len(payload)
    return tag + (_ONE_BYTE[size] if size < 0x80 else _varint(size)) + payload


class _Unsupported(Exception):
    """A value this encoder does not write; the SDK's encoder takes the span."""


def _any_value(value) -> bytes:
    # bool before int: bool is an int subclass.
    if isinstance(value, str):
        return _len_field(b"\x0a", value.encode("utf-8"))
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, tuple | list):
        values = b"".join(_len_field(b"\x0a", _any_value(v)) for v in value)
        return _len_field(b"\x2a", values)
    raise _Unsupported(type(value).__name__)


def _key_value(tag: bytes, key: str, value) -> bytes:
    kv = _len_field(b"\x0a", key.encode("utf-8")) + _len_field(b"\x12", _any_value(value))
    return _len_field(tag, kv)


# Encoded attribute fields by (tag, key, type, value). The spans of a service repeat
# the same few pairs (method, host, route, user agent, status code...): a lookup is
# about a tenth of encoding one. The type is part of the key because True == 1 and
# hash(True) == hash(1); floats are never cached (0.0 == -0.0, NaN != NaN), nor strings
# longer than _CACHEABLE_STRING (a scanner's 4 KB URLs never repeat). Bounded by
# clearing, so values that never repeat cost an insert, and the cache at most about
# 4096 x 300 bytes. Request threads encode concurrently (EncodingBatchSpanProcessor):
# a dict get or set is atomic under the GIL, and a race costs at most one more encoding
# of the same bytes.
_field_cache: dict[tuple, bytes] = {}
_FIELD_CACHE_LIMIT = 4096
_CACHEABLE_STRING = 256
_CACHED_VALUE_TYPES = frozenset({str, int, bool})


def _attribute_field(tag: bytes, key: str, value) -> bytes:
    kind = type(value)
    if kind not in _CACHED_VALUE_TYPES or (kind is str and len(value) > _CACHEABLE_STRING):
        return _key_value(tag, key, value)
    cache_key = (tag, key, kind, value)
    data = _field_cache.get(cache_key)
    if data is None:
        data = _key_value(tag, key, value)
        if len(_field_cache) >= _FIELD_CACHE_LIMIT:
            _field_cache.clear()
        _field_cache[cache_key] = data
    return data


def _attributes(tag: bytes, attributes) -> bytes:
    if not attributes:
        return b""
    return b"".join([_attribute_field(tag, key, value) for key, value in attributes.items()])


def encode_span(span: ReadableSpan) -> bytes:
    """The Span message's bytes, as opentelemetry-proto's trace.v1.Span."""
    if span.links:
        raise _Unsupported("links")
    context = span.get_span_context()
    out = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
    ]
    if context.trace_state:
        state = ",".join(f"{k}={v}" for k, v in context.trace_state.items())
        out.append(_len_field(b"\x1a", state.encode("utf-8")))
    parent = span.parent
    if parent is not None:
        out.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    if span.name:
        out.append(_len_field(b"\x2a", span.name.encode("utf-8")))
    out.append(b"\x30" + _varint(span.kind.value + 1))
    if span.start_time:
        out.append(b"\x39" + _pack_fixed64(span.start_time))
    if span.end_time:
        out.append(b"\x41" + _pack_fixed64(span.end_time))
    out.append(_attributes(b"\x4a", span.attributes))
    if span.dropped_attributes:
        out.append(b"\x50" + _varint(span.dropped_attributes))
    for event in span.events:
        body = b""
        if event.timestamp:
            body += b"\x09" + _pack_fixed64(event.timestamp)
        if event.name:
            body += _len_field(b"\x12", event.name.encode("utf-8"))
        body += _attributes(b"\x1a", event.attributes)
        if event.dropped_attributes:
            body += b"\x20" + _varint(event.dropped_attributes)
        out.append(_len_field(b"\x5a", body))
    if span.dropped_events:
        out.append(b"\x60" + _varint(span.dropped_events))
    if span.dropped_links:
        out.append(b"\x70" + _varint(span.dropped_links))
    status = span.status
    if status is not None:
        body = b""
        if status.description:
            body += _len_field(b"\x12", status.description.encode("utf-8"))
        if status.status_code.value:
            body += b"\x18" + _varint(status.status_code.value)
        out.append(_len_field(b"\x7a", body))
    out.append(
        b"\x85\x01" + (_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    )
    return b"".join(out)


def _span_bytes(span: ReadableSpan) -> bytes:
    try:
        return encode_span(span)
    except _Unsupported:
        return _encode_span(span).SerializeToString()


class EncodedSpan:
    """A span already written as its OTLP Span message, with what groups it in a request."""

    __slots__ = ("data", "instrumentation_scope", "resource")

    def __init__(self, span: ReadableSpan) -> None:
        self.resource = span.resource
        self.instrumentation_scope = span.instrumentation_scope
        self.data = _span_bytes(span)


class EncodingBatchSpanProcessor(BatchSpanProcessor):
    """BatchSpanProcessor whose queue holds spans already encoded (EncodedSpan).

    Each span is encoded by the thread that ends it (15 us), so the batch thread only
    joins bytes and sends them. Encoding a whole batch of 512 spans on the batch thread
    held the GIL for about 8 ms at a time: every request thread that gave up the GIL
    meanwhile waited up to the 5 ms switch interval to get it back, which is what made
    p99 jump with tracing on (docs/benchmarks.md). The CPU is the same; it is spread
    evenly instead of arriving in bursts.
    """

    def on_end(self, span: ReadableSpan) -> None:
        if not (span.context and span.context.trace_flags.sampled):
            return
        batch = getattr(self, "_batch_processor", None)
        if batch is None:
            # SDKs before 1.34 have no shared BatchProcessor: their own behaviour.
            super().on_end(span)
            return
        item = span
        queue = getattr(batch, "_queue", None)
        # While the queue is full (an exporter that cannot keep up, or hangs), each new
        # span pushes the oldest out; new spans then go in as they are, and the batch
        # thread encodes them only if they are sent. After shutdown emit() drops them.
        room = queue is None or queue.maxlen is None or len(queue) < queue.maxlen
        if room and not getattr(batch, "_shutdown", False):
            try:
                item = EncodedSpan(span)
            except Exception:  # never fail a request: the batch thread encodes it
                item = span
        batch.emit(item)


class SpanBatchEncoder:
    """ExportTraceServiceRequest bytes for a batch; resource and scope bytes cached."""

    def __init__(self) -> None:
        self._resources: dict[int, tuple[object, bytes]] = {}
        self._scopes: dict[int, tuple[object, bytes]] = {}

    def _cached(self, cache: dict, key_object, encode) -> bytes:
        entry = cache.get(id(key_object))
        # The object is kept in the entry, so its id cannot be reused by another one.
        if entry is None or entry[0] is not key_object:
            entry = (key_object, encode(key_object))
            if len(cache) > 64:
                cache.clear()
            cache[id(key_object)] = entry
        return entry[1]

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        # Looked up by identity first: Resource.__hash__ serialises all the resource's
        # attributes to JSON (9 us per span), and the SDK hands every span of a
        # provider the same Resource object. A resource object not seen yet joins an
        # equal one's group, as the SDK's encoder (a dict keyed by Resource) does.
        grouped: dict[int, tuple] = {}
        for span in spans:
            data = span.data if type(span) is EncodedSpan else _span_bytes(span)
            resource = span.resource
            entry = grouped.get(id(resource))
            if entry is None:
                entry = next((e for e in grouped.values() if e[0] == resource), None)
                if entry is None:
                    entry = (resource, {})
                grouped[id(resource)] = entry
            scope = span.instrumentation_scope or None
            entry[1].setdefault(scope, []).append(data)
        request = []
        # Each group once, in first-seen order, even when several ids point at it.
        for resource, scopes in {id(e): e for e in grouped.values()}.values():
            body = _len_field(
                b"\x0a",
                self._cached(
                    self._resources, resource, lambda r: _encode_resource(r).SerializeToString()
                ),
            )
            for scope, span_bytes in scopes.items():
                scope_body = b""
                if scope is not None:
                    scope_body = _len_field(
                        b"\x0a",
                        self._cached(
                            self._scopes,
                            scope,
                            lambda s: _encode_instrumentation_scope(s).SerializeToString(),
                        ),
                    )
                scope_body += b"".join([_len_field(b"\x12", s) for s in span_bytes])
                if scope is not None and scope.schema_url:
                    scope_body += _len_field(b"\x1a", scope.schema_url.encode("utf-8"))
                body += _len_field(b"\x12", scope_body)
            if resource.schema_url:
                body += _len_field(b"\x1a", resource.schema_url.encode("utf-8"))
            request.append(_len_field(b"\x0a", body))
        return b"".join(request)


class FastOTLPSpanExporter(OTLPSpanExporter):
    """OTLPSpanExporter whose batches are encoded by SpanBatchEncoder."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._batch_encoder = SpanBatchEncoder()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        # The SDK's export() with only the encoding line changed.
        if self._shutdown:
            log.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as result:
            try:
                data = self._batch_encoder.encode(spans)
            except Exception as error:  # a bad span must not kill the batch thread
                log.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            if _is_request_too_large(data, self._max_request_size):
                log.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size %d",
                    len(data),
                    self._max_request_size,
                )
                return SpanExportResult.FAILURE
            export_result = self._client.export(data)
            if not export_result.success:
                result.error = export_result.error
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
