"""What keeping traces costs Elasticsearch: `python -m obs_tools.bench.trace_storage [JSON]`.

Runs Elasticsearch, Jaeger on jaeger/config.yaml (its Elasticsearch store, as the user
jaeger) and both services, as the local stack starts them, but without the log shipper,
so that the only documents written are spans. Sends the load generator's request mix
(each request is one trace) and then reads, from Elasticsearch itself:
- disk: the jaeger-* indices' store size over their span count, after a refresh and a
  flush (as written), and again after a force merge to one segment (what a day's index
  shrinks to once it is no longer written);
- heap: the JVM's heap in use right after a full collection (jcmd GC.run), before the
  load and after it: what the new indices keep resident, garbage left out.
Disk figures are per million spans.

Writes docs/trace-storage.json (or JSON). Runs from any directory once `make bootstrap`
has installed the tooling (about 5 minutes). Reads OBS_ES_HEAP (through the local
stack), no other environment variable.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import subprocess
import tempfile
from pathlib import Path

import httpx

from obs_tools.common.versions import REPO, VERSIONS
from obs_tools.common.wait import poll_until
from obs_tools.loadgen.engine import LoadSpec, run
from obs_tools.loadgen.stats import RunStats
from obs_tools.localstack import elastic
from obs_tools.localstack.components import ES_SYSTEM_USER, LocalStack, Ports
from obs_tools.localstack.supervisor import Supervisor

DEFAULT_JSON = REPO / "docs" / "trace-storage.json"
REQUESTS = 10_000
CONCURRENCY = 40
PROGRAMS = ("elasticsearch", "jaeger", "backend", "frontend")


def es_get(stack: LocalStack, path: str, method: str = "GET") -> dict:
    response = httpx.request(
        method, f"{stack.url('elasticsearch')}{path}", auth=stack.es_auth(), timeout=600
    )
    response.raise_for_status()
    return response.json()


def live_heap(stack: LocalStack) -> int:
    """The JVM's heap in use just after a full collection (jcmd GC.run, as the user the
    server runs as), the lowest of three: what the data really keeps resident."""
    (node,) = es_get(stack, "/_nodes/process")["nodes"].values()
    command = ["jcmd", str(node["process"]["id"]), "GC.run"]
    if os.geteuid() == 0:
        command = ["runuser", "-u", ES_SYSTEM_USER, "--", *command]
    readings = []
    for _ in range(3):
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        (stats,) = es_get(stack, "/_nodes/stats/jvm")["nodes"].values()
        readings.append(stats["jvm"]["mem"]["heap_used_in_bytes"])
    return min(readings)


def jaeger_indices(stack: LocalStack) -> dict[str, int]:
    """Spans and bytes on disk of the jaeger-span-* indices, services apart."""
    es_get(stack, "/jaeger-*/_refresh", "POST")
    es_get(stack, "/jaeger-*/_flush", "POST")
    # The primaries' store from the index stats (on one node there is no replica).
    stats = es_get(stack, "/jaeger-*/_stats/store")["indices"]
    rows = [
        {"index": name, "store.size": s["primaries"]["store"]["size_in_bytes"]}
        for name, s in stats.items()
    ]
    # _count, not the index's docs.count: that counts the Lucene documents, and each
    # nested tag, log and reference of a span is one of them.
    return {
        "spans": es_get(stack, "/jaeger-span-*/_count")["count"],
        "span_bytes": sum(
            int(r["store.size"]) for r in rows if r["index"].startswith("jaeger-span-")
        ),
        "all_jaeger_bytes": sum(int(r["store.size"]) for r in rows),
    }


def settled_counts(stack: LocalStack, seen: list[dict]) -> dict | None:
    """The counts once they are the same as 10 s before: every span has left the
    services' batch processors and Jaeger's bulk writer."""
    seen.append(jaeger_indices(stack))
    return seen[-1] if len(seen) > 1 and seen[-1] == seen[-2] else None


def start(stack: LocalStack) -> Supervisor:
    stack.write_configs()
    elastic.prepare(stack)
    programs = [p for p in stack.programs() if p.name in PROGRAMS]
    supervisor = Supervisor(stack, programs)
    supervisor.start()
    for name in ("elasticsearch", "backend", "frontend"):
        supervisor.wait_ready(name, 180)
    elastic.apply_index_templates(stack)
    supervisor.start_program("jaeger")
    supervisor.wait_ready("jaeger", 60)
    return supervisor


def measure(work: Path) -> dict:
    stack = LocalStack(work, Ports.free())
    supervisor = start(stack)
    try:
        heap_before = live_heap(stack)
        seen: list[dict] = []
        stats = RunStats()
        spec = LoadSpec(stack.url("frontend"), count=REQUESTS, concurrency=CONCURRENCY, seed=7)
        asyncio.run(run(spec, stats))
        # Spans leave the services in batches, and Jaeger's bulk writer every 200 ms.
        settled = poll_until(
            lambda: settled_counts(stack, seen),
            "the span count to settle",
            timeout=180,
            interval=10,
        )
        heap_after = live_heap(stack)
        es_get(stack, "/jaeger-*/_forcemerge?max_num_segments=1", "POST")
        merged = jaeger_indices(stack)
    finally:
        supervisor.stop()
        elastic.cleanup(stack)
    per_million = 1_000_000 / settled["spans"]
    return {
        "measured": datetime.date.today().isoformat(),
        "versions": {
            "elasticsearch": VERSIONS["ELASTICSEARCH_VERSION"],
            "jaeger": VERSIONS["JAEGER_RELEASE"],
        },
        "requests": REQUESTS,
        "spans": settled["spans"],
        "spans_per_request": round(settled["spans"] / REQUESTS, 2),
        "as_written": settled,
        "force_merged": merged,
        "mb_per_million_spans_as_written": round(settled["span_bytes"] * per_million / 1e6, 1),
        "mb_per_million_spans_merged": round(merged["span_bytes"] * per_million / 1e6, 1),
        "bytes_per_span_as_written": round(settled["span_bytes"] / settled["spans"], 1),
        "bytes_per_span_merged": round(merged["span_bytes"] / settled["spans"], 1),
        "heap_floor_before_bytes": heap_before,
        "heap_floor_after_bytes": heap_after,
        "heap_difference_mb": round((heap_after - heap_before) / 1e6, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m obs_tools.bench.trace_storage", description=__doc__
    )
    parser.add_argument("json", nargs="?", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trace-storage-") as work:
        result = measure(Path(work))
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
