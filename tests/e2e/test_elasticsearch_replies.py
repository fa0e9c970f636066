"""Why fluent-bit/output-elasticsearch.conf and the index template say what they say,
shown with the real Elasticsearch 8's replies: the bulk replies that Fluent Bit's es
output judges (create vs index on a resend, a full chunk's reply against the default
buffer), a value of the wrong type, pod labels with dots. The real Fluent Bit's own
runs are in test_fluent_bit.py.

Uses the session's local stack (conftest.local_stack) for Elasticsearch only; each test
writes its own trace id, so it reads only its own documents. Reads no environment
variables.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

import httpx
import pytest
from elasticsearch import Elasticsearch
from obs_tools.localstack.elastic import TEMPLATE_FILE

from tests.config.fluent_bit_checks import es_bulk_delivered

pytestmark = pytest.mark.e2e


@pytest.fixture
def es(local_stack):
    client = Elasticsearch(
        local_stack.url("elasticsearch"),
        basic_auth=local_stack.stack.es_auth(),
        request_timeout=30,
    )
    yield client
    client.close()


def line(trace_id: str, message: str, length: int = 0) -> bytes:
    """One ECS JSON line as the services write it, padded to `length` bytes if given."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    doc = {"@timestamp": now, "log.level": "info", "trace.id": trace_id, "message": message}
    if length:
        doc["message"] += "x" * (length - len(json.dumps(doc)) - 1)
    return json.dumps(doc).encode() + b"\n"


def documents(es: Elasticsearch, trace_id: str) -> list[dict]:
    es.indices.refresh(index="obs-logs-*")
    result = es.search(index="obs-logs-*", query={"term": {"trace.id": trace_id}}, size=100)
    return [hit["_source"] for hit in result["hits"]["hits"]]


def bulk(es: Elasticsearch, operation: str, docs: list[dict], index: str) -> dict:
    body = []
    for doc in docs:
        body += [{operation: {"_index": index, "_id": doc["message"]}}, doc]
    return es.bulk(operations=body).body


def test_fluent_bit_would_wedge_on_a_resend_with_create_and_not_with_index(es):
    """Real Elasticsearch replies, judged by the model of Fluent Bit's es output
    (fluent_bit_checks.es_bulk_delivered): why output-elasticsearch.conf says
    Write_Operation index."""
    trace_id = secrets.token_hex(16)
    now = datetime.now(UTC)
    index = f"obs-logs-{now:%Y.%m.%d}"
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    docs = [
        {"@timestamp": stamp, "trace.id": trace_id, "message": f"{trace_id}-{i}"} for i in range(3)
    ]
    first = bulk(es, "create", docs, index)
    assert es_bulk_delivered(first) and not first["errors"]
    resent_create = bulk(es, "create", docs, index)
    assert [i["create"]["status"] for i in resent_create["items"]] == [409, 409, 409]
    assert not es_bulk_delivered(resent_create)  # retried for ever with Retry_Limit False
    resent_index = bulk(es, "index", docs, index)
    assert [i["index"]["status"] for i in resent_index["items"]] == [200, 200, 200]
    assert es_bulk_delivered(resent_index)
    assert len(documents(es, trace_id)) == 3


def test_a_value_of_the_wrong_type_does_not_cost_the_line(es, local_stack):
    """A batch with one rejected line counts as delivered in Fluent Bit, and the line is
    lost; the template's ignore_malformed keeps the line instead. The same document in
    an index with the template's mappings but without ignore_malformed is rejected."""
    trace_id = secrets.token_hex(16)
    now = datetime.now(UTC)
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    doc = {"@timestamp": stamp, "trace.id": trace_id, "http.response.status_code": "oops"}
    kept = es.index(index=f"obs-logs-{now:%Y.%m.%d}", document=doc)
    assert kept["result"] == "created"
    assert len(documents(es, trace_id)) == 1

    template = json.loads(TEMPLATE_FILE.read_text())["template"]
    strict = f"obs-template-check-{trace_id}"
    es.indices.create(
        index=strict,
        mappings=template["mappings"],
        settings={k: v for k, v in template["settings"].items() if k != "mapping"},
    )
    try:
        response = httpx.post(
            f"{local_stack.url('elasticsearch')}/{strict}/_doc",
            json=doc,
            auth=local_stack.stack.es_auth(),
            timeout=30,
        )
        assert response.status_code == 400, response.text
    finally:
        es.indices.delete(index=strict)


POD_LABELS = {"app": "frontend", "app.kubernetes.io/name": "frontend"}


def test_pod_labels_with_dots_conflict_when_mapped(es, local_stack):
    """Why the kubernetes filter keeps Labels Off: with Replace_Dots Off the labels
    app and app.kubernetes.io/name cannot both be mapped; Elasticsearch rejects the
    line wherever dynamic mapping is on."""
    trace_id = secrets.token_hex(16)
    index = f"obs-labels-check-{trace_id}"
    doc = {"trace.id": trace_id, "kubernetes": {"labels": POD_LABELS}}
    try:
        response = httpx.post(
            f"{local_stack.url('elasticsearch')}/{index}/_doc",
            json=doc,
            auth=local_stack.stack.es_auth(),
            timeout=30,
        )
        assert response.status_code == 400, response.text
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)
    # The project's template maps with "dynamic": false, so there the labels are
    # accepted but left unmapped (kept in _source, not searchable): Labels On would buy
    # nothing here, and copied into a cluster with dynamic mappings it breaks lines.
    now = datetime.now(UTC)
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    kept = es.index(index=f"obs-logs-{now:%Y.%m.%d}", document={**doc, "@timestamp": stamp})
    assert kept["result"] == "created"
    mapping = es.indices.get_mapping(index=kept["_index"])[kept["_index"]]["mappings"]
    assert "labels" not in mapping["properties"]["kubernetes"]["properties"]


def test_the_bulk_reply_for_a_full_chunk_exceeds_the_default_buffer_size(es, local_stack):
    """Why output-elasticsearch.conf says Buffer_Size False: Fluent Bit's chunks hold
    about 2 MB of records, and the real reply to a bulk request of that size is longer
    than the es output's default 512KB response buffer. A cut reply is not valid JSON;
    elasticsearch_error_check then accepts it only if it contains the literal
    "errors":false,"items":[, which Elasticsearch 8 does not write (it puts "took"
    between them), so the chunk would be retried for ever."""
    trace_id = secrets.token_hex(16)
    now = datetime.now(UTC)
    index = f"obs-logs-{now:%Y.%m.%d}"
    lines = []
    while sum(map(len, lines)) < 2_000_000:
        lines.append(line(trace_id, f"GET /items/{len(lines)} 200"))
    body = b"".join(
        json.dumps({"index": {"_index": index}}).encode() + b"\n" + raw for raw in lines
    )
    response = httpx.post(
        f"{local_stack.url('elasticsearch')}/_bulk",
        content=body,
        headers={"Content-Type": "application/x-ndjson"},
        auth=local_stack.stack.es_auth(),
        timeout=120,
    )
    response.raise_for_status()
    reply = response.content
    assert len(reply) > 512_000, len(reply)
    assert b'"errors":false,"items":[' not in reply[:512_000], reply[:200]
    assert es_bulk_delivered(json.loads(reply))
