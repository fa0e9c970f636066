"""Conformance under gunicorn: spans still queued at SIGTERM are exported before exit.

The OpenTelemetry SDK specification has TracerProvider.shutdown call every processor's
shutdown, and BatchSpanProcessor's shutdown export what it holds; the services call it
from gunicorn's worker_exit hook (obs_telemetry/gunicorn_conf.py). The batch delay
here is ten minutes, so only that shutdown can deliver the span. Reads no environment
variables; the rest of the conformance suite is tests/unit/test_conformance.py.
"""

from __future__ import annotations

import secrets
import signal

import httpx
import pytest

from tests.support.otlp_receiver import OtlpReceiver
from tests.support.polling import free_port, poll_until
from tests.support.services import start_service

pytestmark = pytest.mark.integration


def test_sigterm_flushes_the_queued_spans(tmp_path):
    with OtlpReceiver() as receiver:
        service = start_service(
            "backend-flush",
            "backend",
            free_port(),
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="600000",
        )
        try:
            service.wait_http(f"{service.url}/readyz")
            trace_id = secrets.token_hex(16)
            headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
            assert httpx.get(f"{service.url}/api/items/1", headers=headers).status_code == 200
            assert [s for s in receiver.snapshot() if s.trace_id == trace_id] == []
            service.signal(signal.SIGTERM)
            assert service.wait(timeout=40) == 0, service.describe_failure()
            # The export finished before the worker exited; poll only for the receiver's
            # handler thread to store what it already answered.
            (span,) = poll_until(
                lambda: [s for s in receiver.snapshot() if s.trace_id == trace_id] or None,
                "the request's span at the OTLP receiver",
                timeout=5,
            )
        finally:
            service.stop()
    assert span.name == "GET /api/items/<int:item_id>"
    assert span.kind == 2  # SPAN_KIND_SERVER in OTLP
