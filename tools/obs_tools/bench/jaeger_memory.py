"""Jaeger's memory per stored trace, measured: `python -m obs_tools.bench.jaeger_memory [JSON]`.

Runs the real Jaeger (the binary of `make bootstrap`, on jaeger/config.yaml as the local
stack starts it, with its in-memory store) and both services exporting to it, sends the
load generator's request mix (each request is one trace, frontend -> backend for most
endpoints) in steps, and after each step, once the load has stopped, waits for Go's next
garbage collection (the runtime forces one within two minutes when idle) and reads the
live heap: Jaeger's otelcol_process_runtime_heap_alloc_bytes just after that collection,
checked against the collection's own line of GODEBUG=gctrace=1 (MiB). The slope of the
live heap over the stored traces is the bytes per trace that jaeger/config.yaml's
max_traces is sized with (tests/k8s/test_config_wiring.py checks that arithmetic against
the render).

Writes docs/jaeger-memory.json (or JSON): every point and the fitted slopes. Runs from
any directory once `make bootstrap` has installed the tooling (about 10 minutes; the
machine should be otherwise idle for the throughput, though the memory figures do not
depend on it). Reads no environment variables.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from obs_tools.common.versions import REPO, VERSIONS
from obs_tools.common.wait import poll_until
from obs_tools.loadgen.engine import LoadSpec, run
from obs_tools.loadgen.stats import RunStats
from obs_tools.localstack.components import JAEGER_IN_MEMORY, LocalStack, Ports, Program

DEFAULT_JSON = REPO / "docs" / "jaeger-memory.json"
# Cumulative traces after each step; the last must stay below max_traces (no eviction).
STEPS = (5_000, 10_000, 20_000)
WARM_UP = 50
CONCURRENCY = 60
# gctrace=1: "... ms cpu, 31->31->28 MB, 57 MB goal, ..." (heap at start, at end, live;
# MiB, runtime/mgc.go prints the byte counts >>20).
GC_LINE = re.compile(r"^gc \d+ @.* (\d+)->(\d+)->(\d+) MB, ", re.M)


def start(program: Program, log: Path, **extra_env: str) -> subprocess.Popen:
    env = {**os.environ, **program.env, **extra_env}
    return subprocess.Popen(
        program.argv, env=env, cwd=program.cwd, stdin=subprocess.DEVNULL,
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def metrics(url: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return values


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024


def send(url: str, count: int, seed: int) -> RunStats:
    stats = RunStats()
    asyncio.run(run(LoadSpec(url, count=count, concurrency=CONCURRENCY, seed=seed), stats))
    return stats


def slope(points: list[dict], key: str) -> float:
    """Least-squares bytes per trace of `key` over the points' stored traces."""
    xs = [p["traces"] for p in points]
    ys = [p[key] for p in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    num = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return num / sum((x - mean_x) ** 2 for x in xs)


def measure(work: Path) -> dict:
    config = yaml.safe_load((REPO / "jaeger" / "config.yaml").read_text())
    memory = config["extensions"]["jaeger_storage"]["backends"]["memstore"]["memory"]
    assert STEPS[-1] < memory["max_traces"], "the steps would evict traces"
    stack = LocalStack(work, Ports.free())
    (jaeger_program,) = [p for p in stack.backends() if p.name == "jaeger"]
    jaeger_log = work / "jaeger.log"
    jaeger = start(jaeger_program, jaeger_log, GODEBUG="gctrace=1", **JAEGER_IN_MEMORY)
    services = []
    try:
        poll_until(
            lambda: httpx.get(f"{stack.url('jaeger_health')}/status", timeout=2).is_success,
            "Jaeger to be healthy", timeout=60,
        )  # fmt: skip
        for program in stack.services():
            services.append(start(program, work / f"{program.name}.log"))
            poll_until(program.ready, f"{program.name} to be ready", timeout=60)
        frontend = stack.url("frontend")
        metrics_url = f"{stack.url('jaeger_metrics')}/metrics"

        def point(traces: int, seconds: float) -> dict:
            gcs = len(GC_LINE.findall(jaeger_log.read_text(errors="replace")))
            # The export delays of the services and Jaeger's batch processor.
            time.sleep(5)
            poll_until(
                lambda: len(GC_LINE.findall(jaeger_log.read_text(errors="replace"))) > gcs,
                "an idle garbage collection", timeout=200, interval=2,
            )  # fmt: skip
            values = metrics(metrics_url)
            live_mib = int(GC_LINE.findall(jaeger_log.read_text(errors="replace"))[-1][2])
            row = {
                "traces": traces,
                "send_seconds": round(seconds, 1),
                "heap_alloc_bytes": int(values["otelcol_process_runtime_heap_alloc_bytes"]),
                "gctrace_live_mib": live_mib,
                "rss_bytes": rss_bytes(jaeger.pid),
                "go_sys_bytes": int(values["otelcol_process_runtime_total_sys_memory_bytes"]),
                "spans": int(values["otelcol_receiver_accepted_spans_total"]),
            }
            print(json.dumps(row), flush=True)
            return row

        send(frontend, WARM_UP, seed=1)
        points = [point(WARM_UP, 0.0)]
        sent = WARM_UP
        for index, target in enumerate(STEPS):
            began = time.monotonic()
            send(frontend, target - sent, seed=100 + index)
            sent = target
            points.append(point(sent, time.monotonic() - began))
    finally:
        for process in [*services, jaeger]:
            stop(process)
    last, first = points[-1], points[0]
    return {
        "measured": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "jaeger": VERSIONS["JAEGER_RELEASE"],
        "max_traces_while_measuring": memory["max_traces"],
        "request_mix": f"loadgen.engine.MIX, concurrency {CONCURRENCY}",
        "points": points,
        "spans_per_trace": round(
            (last["spans"] - first["spans"]) / (last["traces"] - first["traces"]), 2
        ),
        "live_heap_bytes_per_trace": round(slope(points, "heap_alloc_bytes")),
        "rss_bytes_per_trace": round(slope(points, "rss_bytes")),
        "idle_live_heap_bytes": first["heap_alloc_bytes"],
        "idle_rss_bytes": first["rss_bytes"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m obs_tools.bench.jaeger_memory", description=__doc__
    )
    parser.add_argument("json", nargs="?", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jaeger-memory-") as work:
        result = measure(Path(work))
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{result['live_heap_bytes_per_trace']} bytes of live heap per trace -> {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
