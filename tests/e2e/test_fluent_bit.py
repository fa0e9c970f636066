"""The real Fluent Bit (the one `scripts/bootstrap.sh all` builds) on the repository's
fluent-bit/fluent-bit-local.conf, with the session's real Elasticsearch:

- the local stack's own shipper: every line both services wrote reaches Elasticsearch
  exactly once;
- lines written before Fluent Bit started, a 40 KB line and a line that is not JSON are
  shipped, each once;
- an Elasticsearch outage of 30 s, alone and with a Fluent Bit restart in the middle of
  it: 0 lines lost, 0 duplicated. The outage is a TCP proxy in front of Elasticsearch
  that closes (connections refused and cut), so the session's Elasticsearch keeps
  serving the other tests.

Each test but the first runs its own Fluent Bit on its own files, with its own trace id
in every line, and reads only its own documents. Reads no environment variables.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest

from tests.config.fluent_bit_checks import LONGEST_EXPECTED_LINE
from tests.support.fluent_bit import (
    FLUENT_BIT_DIR,
    FluentBit,
    TcpProxy,
    count_by_message,
    documents,
    require_fluent_bit,
)
from tests.support.polling import PollTimeout, poll_until

pytestmark = pytest.mark.e2e

OUTAGE_S = 30


def stamp(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def line(trace_id: str, message: str, service: str = "frontend", length: int = 0) -> bytes:
    """One ECS JSON line as the services write it, padded to `length` bytes if given."""
    doc = {
        "@timestamp": stamp(),
        "log.level": "info",
        "service.name": service,
        "trace.id": trace_id,
        "message": message,
    }
    if length:
        doc["message"] += "x" * (length - len(json.dumps(doc)) - 1)
    return json.dumps(doc).encode() + b"\n"


def append(path, *lines: bytes) -> None:
    with open(path, "ab") as out:
        out.write(b"".join(lines))


@pytest.fixture
def es(local_stack):
    return local_stack.url("elasticsearch"), local_stack.stack.es_auth()


@pytest.fixture
def local_fluent_bit(tmp_path, local_stack):
    """A factory: Fluent Bit on fluent-bit-local.conf tailing tmp_path/logs/*end.log,
    sending to `es_port` (the session's Elasticsearch unless a proxy's is given)."""
    require_fluent_bit()
    (tmp_path / "logs").mkdir()
    (tmp_path / "state").mkdir()
    started: list[FluentBit] = []

    def make(es_port: int | None = None) -> FluentBit:
        fluent_bit = FluentBit(
            "fluent-bit",
            FLUENT_BIT_DIR / "fluent-bit-local.conf",
            tmp_path,
            {
                "ES_HOST": "127.0.0.1",
                "ES_PORT": str(es_port or local_stack.stack.ports.elasticsearch),
                "ES_USER": local_stack.stack.es_auth()[0],
                "ES_PASSWORD": local_stack.stack.es_password(),
                "OBS_LOG_PATH": str(tmp_path / "logs" / "*end.log"),
                "OBS_STATE_DIR": str(tmp_path / "state"),
            },
        )
        started.append(fluent_bit)
        return fluent_bit

    yield make
    for fluent_bit in started:
        fluent_bit.stop()


# -- the local stack's own shipper ------------------------------------------------------


def _service_lines(log_dir, before: str) -> Counter:
    """The JSON lines of both services' log files stamped before `before`, as
    (service, @timestamp, message, trace.id) keys."""
    found = Counter()
    for name in ("frontend", "backend"):
        for raw in (log_dir / f"{name}.log").read_text(errors="replace").splitlines():
            try:
                doc = json.loads(raw)
            except ValueError:
                continue  # gunicorn's own lines: not the services' JSON
            if isinstance(doc, dict) and doc.get("@timestamp", "9") < before:
                found[_key(doc)] += 1
    return found


def _key(doc: dict) -> tuple:
    return (doc.get("service.name"), doc["@timestamp"], doc.get("message"), doc.get("trace.id"))


def _service_documents(es_url: str, auth, before: str) -> Counter:
    """The documents of both services stamped before `before`, paged with search_after."""
    httpx.post(f"{es_url}/obs-logs-*/_refresh", auth=auth, timeout=30)
    found, after = Counter(), None
    while True:
        body = {
            "size": 5000,
            "query": {
                "bool": {
                    "filter": [
                        {"terms": {"service.name": ["frontend", "backend"]}},
                        {"range": {"@timestamp": {"lt": before}}},
                    ]
                }
            },
            "sort": [{"@timestamp": "asc"}, {"_doc": "asc"}],
        }
        if after:
            body["search_after"] = after
        response = httpx.post(f"{es_url}/obs-logs-*/_search", json=body, auth=auth, timeout=60)
        response.raise_for_status()
        hits = response.json()["hits"]["hits"]
        if not hits:
            return found
        for hit in hits:
            found[_key(hit["_source"])] += 1
        after = hits[-1]["sort"]


def test_every_line_of_both_services_reaches_elasticsearch_exactly_once(local_stack, es):
    """The stack's log-shipper (Fluent Bit on fluent-bit-local.conf) has shipped every
    line of frontend.log and backend.log since the stack started, none twice: the lines
    stamped before a cut-off, counted in the files and in Elasticsearch."""
    require_fluent_bit()
    es_url, auth = es
    # Requests of our own, so that there is something to count even if the stack has
    # just started: each writes lines in both services.
    with httpx.Client(timeout=10) as client:
        for i in range(50):
            assert client.get(f"{local_stack.url('frontend')}/items/{i % 5 + 1}").status_code
    cutoff = stamp()
    # A line stamped before the cut-off can reach its file later (the services write in
    # batches, a busy machine delays them; one such line failed a single read): the
    # files and Elasticsearch are read again until they agree, or time runs out and the
    # difference is reported.
    written: Counter = Counter()
    found: Counter = Counter()

    def agree() -> bool:
        written.clear()
        written.update(_service_lines(local_stack.stack.log_dir, cutoff))
        found.clear()
        found.update(_service_documents(es_url, auth, cutoff))
        return written == found

    with contextlib.suppress(PollTimeout):
        poll_until(agree, "the service lines and their documents to agree", 90, interval=2)
    assert sum(written.values()) > 100, "the services wrote too few lines to judge"
    missing = written - found
    extra = found - written
    assert not missing, (
        f"{sum(missing.values())} of {sum(written.values())} service lines never reached "
        f"Elasticsearch, e.g. {list(missing)[:3]}\n" + local_stack.failure_context("log-shipper")
    )
    assert not extra, (
        f"{sum(extra.values())} documents are duplicates or lines no file holds, e.g. "
        f"{list(extra)[:3]}\n" + local_stack.failure_context("log-shipper")
    )


# -- one Fluent Bit per test ------------------------------------------------------------


def test_lines_before_start_a_40kb_line_and_a_raw_line_are_shipped_once(local_fluent_bit, es):
    es_url, auth = es
    trace_id = secrets.token_hex(16)
    fluent_bit = local_fluent_bit()
    logs = fluent_bit.env["OBS_LOG_PATH"].rsplit("/", 1)[0]
    frontend, backend = f"{logs}/frontend.log", f"{logs}/backend.log"
    # Written before Fluent Bit starts: Read_from_Head On must ship them.
    append(frontend, *(line(trace_id, f"before start {i}") for i in range(5)))
    append(backend, *(line(trace_id, f"before start {i}", "backend") for i in range(5)))
    long_line = line(trace_id, "traceback ", length=LONGEST_EXPECTED_LINE)
    assert len(long_line) == LONGEST_EXPECTED_LINE
    fluent_bit.start()
    append(frontend, long_line, b"Traceback (most recent call last): " + trace_id.encode() + b"\n")
    append(backend, *(line(trace_id, f"after start {i}", "backend") for i in range(5)))
    expected = Counter(
        [f"before start {i}" for i in range(5)] * 2 + [f"after start {i}" for i in range(5)]
    )

    def shipped():
        docs = documents(es_url, auth, "trace.id", trace_id)
        return docs if len(docs) >= sum(expected.values()) + 1 else None

    docs = poll_until(
        shipped,
        f"{sum(expected.values()) + 1} lines in Elasticsearch",
        60,
        interval=1,
        on_timeout=fluent_bit.failure_context,
    )
    long_docs = [d for d in docs if d["message"].startswith("traceback ")]
    assert len(long_docs) == 1, f"{len(long_docs)} documents for the 40 KB line"
    assert len(long_docs[0]["message"]) > LONGEST_EXPECTED_LINE - 200
    assert count_by_message(d for d in docs if d not in long_docs) == expected
    assert {d["service.name"] for d in docs} == {"frontend", "backend"}
    # The line that is not JSON: kept whole in "message" (filter-unparsed.conf).
    response = httpx.post(
        f"{es_url}/obs-logs-*/_search",
        json={"query": {"match_phrase": {"message": trace_id}}},
        auth=auth,
        timeout=30,
    ).json()
    raw = [h["_source"] for h in response["hits"]["hits"] if "trace.id" not in h["_source"]]
    assert [d["message"] for d in raw] == [f"Traceback (most recent call last): {trace_id}"]


class Writer(threading.Thread):
    """Appends numbered lines to both services' files, 20 a second, until stopped."""

    def __init__(self, logs: str, trace_id: str) -> None:
        super().__init__(daemon=True)
        self.logs, self.trace_id = logs, trace_id
        self.written: list[str] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopped.wait(0.1):
            for service in ("frontend", "backend"):
                message = f"{service} line {n}"
                append(f"{self.logs}/{service}.log", line(self.trace_id, message, service))
                self.written.append(message)
            n += 1


@pytest.mark.parametrize("restart", [False, True], ids=["outage", "restart during outage"])
def test_an_elasticsearch_outage_loses_and_duplicates_nothing(local_fluent_bit, es, restart):
    es_url, auth = es
    trace_id = secrets.token_hex(16)
    proxy = TcpProxy(int(es_url.rsplit(":", 1)[1])).open()
    fluent_bit = local_fluent_bit(es_port=proxy.port).start()
    writer = Writer(fluent_bit.env["OBS_LOG_PATH"].rsplit("/", 1)[0], trace_id)
    writer.start()
    try:
        poll_until(
            lambda: documents(es_url, auth, "trace.id", trace_id),
            "the first lines in Elasticsearch before the outage",
            30,
            on_timeout=fluent_bit.failure_context,
        )
        proxy.close()
        outage_start = time.monotonic()
        if restart:
            # Half-way through the outage: what waits for a retry must survive the stop.
            poll_until(
                lambda: time.monotonic() - outage_start >= OUTAGE_S / 2, "mid-outage", OUTAGE_S
            )
            fluent_bit.stop()
            fluent_bit.start()
        poll_until(
            lambda: time.monotonic() - outage_start >= OUTAGE_S,
            f"{OUTAGE_S} s of outage",
            OUTAGE_S + 5,
        )
        # The outage was real: Fluent Bit saw its flushes fail and scheduled retries.
        assert fluent_bit.metric("fluentbit_output_retries_total") > 0, (
            "no retry during the outage\n" + fluent_bit.failure_context()
        )
        proxy.open()
        writer.stopped.set()
        writer.join(timeout=10)
        expected = Counter(writer.written)

        def caught_up():
            docs = documents(es_url, auth, "trace.id", trace_id)
            return docs if len(docs) >= len(writer.written) else None

        # Retries back off up to scheduler.cap (60 s) in service.conf: a chunk may wait
        # that long after Elasticsearch is back.
        try:
            docs = poll_until(caught_up, "every line in Elasticsearch", 150, interval=2)
        except PollTimeout:
            docs = documents(es_url, auth, "trace.id", trace_id)
        found = count_by_message(docs)
        lost, duplicated = expected - found, found - expected
        assert not lost, (
            f"{sum(lost.values())} of {len(writer.written)} lines lost "
            f"({'restart during ' if restart else ''}a {OUTAGE_S} s outage)\n"
            + fluent_bit.failure_context()
        )
        assert not duplicated, (
            f"{sum(duplicated.values())} lines indexed twice\n" + fluent_bit.failure_context()
        )
    finally:
        writer.stopped.set()
        proxy.close()
