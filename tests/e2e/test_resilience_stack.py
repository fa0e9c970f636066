"""Resilience against the real local stack: log lines survive a restart of the log
shipper or of Elasticsearch during load, exactly once; random URLs and methods cannot
blow up metric series or Jaeger operation names.

Uses the session's local stack (conftest.local_stack). The log test counts, for a set
of requests with known trace ids, the lines the services wrote to their log files and
the documents Elasticsearch holds, per trace id.
"""

from __future__ import annotations

import json
import random
import secrets
import string
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.polling import poll_until

pytestmark = pytest.mark.e2e


def traced_requests(url: str, stop: threading.Event, sent: list[str]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            trace_id = secrets.token_hex(16)
            header = f"00-{trace_id}-{secrets.token_hex(8)}-01"
            response = client.get(f"{url}/items/3", headers={"traceparent": header})
            assert response.status_code == 200, response.text
            sent.append(trace_id)
            stop.wait(0.02)


def lines_per_trace(local_stack, trace_ids: set[str]) -> Counter:
    found = Counter()
    for name in ("frontend", "backend"):
        for raw in (local_stack.stack.log_dir / f"{name}.log").read_text().splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("trace.id") in trace_ids:
                found[line["trace.id"]] += 1
    return found


def docs_per_trace(local_stack, trace_ids: list[str]) -> Counter:
    es = local_stack.url("elasticsearch")
    auth = local_stack.stack.es_auth()
    httpx.post(f"{es}/obs-logs-*/_refresh", auth=auth, timeout=30)
    response = httpx.post(
        f"{es}/obs-logs-*/_search",
        json={
            "size": 0,
            "query": {"terms": {"trace.id": trace_ids}},
            "aggs": {"per_trace": {"terms": {"field": "trace.id", "size": len(trace_ids) + 10}}},
        },
        auth=auth,
        timeout=30,
    )
    response.raise_for_status()
    buckets = response.json()["aggregations"]["per_trace"]["buckets"]
    return Counter({b["key"]: b["doc_count"] for b in buckets})


def restart_jaeger_after_elasticsearch(supervisor) -> None:
    """Only the local stack needs this. After a failed bulk write, Jaeger's client
    (olivere/elastic v7.0.32, bulk_processor.go:613) writes again only once `HEAD /`
    answers 2xx; Maven's Elasticsearch has no rest-root module and answers 405, so
    Jaeger would store nothing more until restarted. A full Elasticsearch answers 200 to
    the user jaeger, whose role has `monitor` for this (test_trace_storage.py)."""
    supervisor.stop_program("jaeger")
    supervisor.start_program("jaeger")
    supervisor.wait_ready("jaeger", 60)


@pytest.mark.parametrize("component", ["log-shipper", "elasticsearch"])
def test_log_lines_written_during_a_restart_reach_elasticsearch_exactly_once(
    local_stack, component
):
    supervisor = local_stack.supervisor
    stop, sent = threading.Event(), []
    load = threading.Thread(
        target=traced_requests, args=(local_stack.url("frontend"), stop, sent), daemon=True
    )
    load.start()
    try:
        poll_until(lambda: len(sent) >= 20, "20 requests before the restart", 30)
        supervisor.stop_program(component)
        mark = len(sent)
        poll_until(lambda: len(sent) >= mark + 20, f"20 requests while {component} is down", 30)
        supervisor.start_program(component)
        supervisor.wait_ready(component, 120)
        if component == "elasticsearch":
            restart_jaeger_after_elasticsearch(supervisor)
        mark = len(sent)
        poll_until(lambda: len(sent) >= mark + 20, "20 requests after the restart", 30)
    finally:
        stop.set()
        load.join(timeout=30)
    trace_ids = list(sent)

    def all_written():
        # Every request writes an access line in both services; the workers write their
        # lines in batches, at most obs_telemetry.logs.FLUSH_INTERVAL_S after the fact.
        written = lines_per_trace(local_stack, set(trace_ids))
        complete = len(written) == len(trace_ids) and all(n >= 2 for n in written.values())
        return written if complete else None

    expected = poll_until(all_written, "both services' access lines in their log files", 10)

    def all_shipped():
        found = docs_per_trace(local_stack, trace_ids)
        return found if sum(found.values()) >= sum(expected.values()) else None

    try:
        found = poll_until(all_shipped, "every log line written during the restart in ES", 120)
    except Exception:
        found = docs_per_trace(local_stack, trace_ids)
        missing = {t: n - found[t] for t, n in expected.items() if found[t] < n}
        raise AssertionError(
            f"{component} restart: {sum(missing.values())} of {sum(expected.values())} lines "
            f"never reached Elasticsearch ({len(missing)} requests affected)\n"
            + local_stack.failure_context("log-shipper")
        ) from None
    duplicated = {t: found[t] - n for t, n in expected.items() if found[t] > n}
    assert not duplicated, (
        f"{component} restart: {sum(duplicated.values())} lines indexed twice "
        f"({len(duplicated)} requests)\n" + local_stack.failure_context("log-shipper")
    )
    assert found == expected


def metric_series(text: str, family: str) -> set[str]:
    return {
        line.split(" ")[0]
        for line in text.splitlines()
        if line.startswith(family + "{") or line.startswith(family + " ")
    }


def jaeger_operations(local_stack, service: str) -> set[str]:
    response = httpx.get(
        f"{local_stack.url('jaeger_query')}/api/services/{service}/operations", timeout=10
    )
    response.raise_for_status()
    # The query API lists operation names as plain strings.
    return set(response.json()["data"] or [])


def test_random_paths_and_methods_cannot_create_series_or_operations(local_stack):
    frontend = local_stack.url("frontend")
    families = ("flask_requests_total", "flask_request_duration_seconds_count")
    # The background traffic would add legitimate series of its own meanwhile.
    local_stack.supervisor.stop_program("traffic")
    try:
        scan(local_stack, frontend, families)
    finally:
        local_stack.supervisor.start_program("traffic")


def scan(local_stack, frontend: str, families: tuple[str, ...]) -> None:
    before_metrics = httpx.get(f"{frontend}/metrics", timeout=10).text
    before_ops = jaeger_operations(local_stack, "frontend")
    rng = random.Random(9)
    # No ".": the client would resolve "/x/.." to "/", a known path, not an unknown one.
    alphabet = string.ascii_letters + string.digits + "-_~%"
    methods = ["GET"] + [
        "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 9))) for _ in range(40)
    ]
    known = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
    requests = [
        (
            rng.choice([m for m in methods if m not in known or m == "GET"]),
            "/"
            + "/".join(
                "".join(rng.choices(alphabet, k=rng.randint(1, 12)))
                for _ in range(rng.randint(1, 4))
            ),
        )
        for _ in range(10_000)
    ]
    marker = secrets.token_hex(16)

    def send(chunk):
        statuses = Counter()
        with httpx.Client(timeout=10) as client:
            for method, path in chunk:
                statuses[client.request(method, f"{frontend}{path}").status_code] += 1
        return statuses

    chunks = [requests[i::8] for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        statuses = sum(pool.map(send, chunks), Counter())
    assert set(statuses) == {404}, statuses
    # One traced request of our own, so that we know when Jaeger has the scan's spans.
    header = f"00-{marker}-{secrets.token_hex(8)}-01"
    assert (
        httpx.get(f"{frontend}/no-such-path-{marker}", headers={"traceparent": header}).status_code
        == 404
    )
    poll_until(
        lambda: (
            httpx.get(f"{local_stack.url('jaeger_query')}/api/traces/{marker}").status_code == 200
        ),
        "the marker trace in Jaeger",
        60,
    )
    after_metrics = httpx.get(f"{frontend}/metrics", timeout=10).text
    for family in families:
        new = metric_series(after_metrics, family) - metric_series(before_metrics, family)
        assert len(new) <= 2, f"{family} gained {len(new)} series: {sorted(new)[:10]}"
    new_ops = jaeger_operations(local_stack, "frontend") - before_ops
    assert len(new_ops) <= 2, f"Jaeger gained {len(new_ops)} operations: {sorted(new_ops)[:10]}"
