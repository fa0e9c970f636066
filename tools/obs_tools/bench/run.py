"""Run the side-by-side benchmark of `make bench` and write its JSON result.

Reads BENCH_DURATION (seconds per measured run, default 4), BENCH_ROUNDS (default 6),
BENCH_CONNECTIONS (wrk concurrency, default 8) and BENCH_VARIANTS (comma list, default
all), so that a quick look takes `BENCH_DURATION=3 BENCH_ROUNDS=1 make bench`.

Every variant is the same code (the frontend -> backend chain under gunicorn, as
`make demo` runs it), configured differently: TELEMETRY_SIGNALS picks the signals, the
OTEL_* variables the exporter and sampler. All variants' services start first and
stay up; then each round runs wrk once against every variant, in an order rotated
from round to round, each run between two runs of the bare app, so that background
noise (other tenants of a shared machine) hits every variant alike and each ratio
compares runs seconds apart. Spans go to the real local Jaeger, started here with the
repository's jaeger/config.yaml.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from obs_tools.common.blackhole import BlackHole
from obs_tools.common.processes import ManagedProcess
from obs_tools.common.versions import REPO, VERSIONS, jaeger_binary
from obs_tools.common.wait import PollTimeout, free_port, poll_until
from obs_tools.localstack.components import (
    JAEGER_IN_MEMORY,
    LocalStack,
    Ports,
    service_argv,
    service_env,
)

WRK_SCRIPT = Path(__file__).with_name("wrk_report.lua")


@dataclass
class Variant:
    name: str
    description: str
    env: dict[str, str]
    # "jaeger", "refused" or "blackhole": where spans go, when traces are on.
    otlp: str | None = None


VARIANTS = [
    Variant("bare", "all telemetry off (TELEMETRY_SIGNALS=none)", {"TELEMETRY_SIGNALS": "none"}),
    Variant("metrics", "Prometheus metrics only", {"TELEMETRY_SIGNALS": "metrics"}),
    Variant("logs", "ECS JSON logs only", {"TELEMETRY_SIGNALS": "logs"}),
    Variant(
        "traces",
        "traces only, 100 % sampled, to Jaeger",
        {"TELEMETRY_SIGNALS": "traces"},
        otlp="jaeger",
    ),
    # The default: OpenTelemetry's Flask and httpx instrumentations, the SDK's batch
    # processor and OTLP exporter (the package's only instrumentation mode).
    Variant("full", "metrics + traces (100 %, to Jaeger) + logs", {}, otlp="jaeger"),
    Variant(
        "full-semconv-http",
        "full, stable HTTP attribute names (OTEL_SEMCONV_STABILITY_OPT_IN=http)",
        {"OTEL_SEMCONV_STABILITY_OPT_IN": "http"},
        otlp="jaeger",
    ),
    Variant(
        "full-sampled-10",
        "full, traces sampled at 10 % (parentbased_traceidratio 0.1)",
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
        otlp="jaeger",
    ),
    # Public levers on the export cost (issue #18): fewer, larger exports; or more,
    # smaller ones, each holding the GIL for a shorter encode.
    Variant(
        "full-bsp-64",
        "full, batches of 64 spans (OTEL_BSP_MAX_EXPORT_BATCH_SIZE)",
        {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64"},
        otlp="jaeger",
    ),
    Variant(
        "full-bsp-2048",
        "full, batches of 2048 spans (OTEL_BSP_MAX_EXPORT_BATCH_SIZE, queue 8192)",
        {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2048", "OTEL_BSP_MAX_QUEUE_SIZE": "8192"},
        otlp="jaeger",
    ),
    Variant("full-otlp-refused", "full, OTLP endpoint refuses connections", {}, otlp="refused"),
    Variant(
        "full-otlp-blackhole",
        "full, OTLP endpoint accepts and never answers",
        {},
        otlp="blackhole",
    ),
]


def ok_200(response) -> bool:
    return response.status_code == 200


@dataclass
class Chain:
    variant: Variant
    backend: ManagedProcess
    frontend: ManagedProcess
    runs: list[dict] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.frontend.url


def start_jaeger(run_dir: Path) -> tuple[ManagedProcess, str]:
    if not jaeger_binary().exists():
        raise SystemExit(f"Jaeger is not built ({jaeger_binary()}): run `make bootstrap`")
    stack = LocalStack(run_dir / "stack", Ports.free())
    program = next(p for p in stack.backends() if p.name == "jaeger")
    env = {**program.env, **JAEGER_IN_MEMORY}
    jaeger = ManagedProcess("jaeger", program.argv, run_dir, env=env, cwd=REPO)
    poll_until(
        lambda: program.ready() if jaeger.proc.poll() is None else _died(jaeger),
        "jaeger health",
        60,
        on_timeout=jaeger.tail,
    )
    jaeger.query_url = stack.url("jaeger_query")
    return jaeger, stack.jaeger_otlp_endpoint


def _died(process: ManagedProcess):
    raise SystemExit(f"{process.name} exited\n{process.tail()}")


def start_chain(variant: Variant, endpoint: str | None, run_dir: Path) -> Chain:
    env = {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=bench", **variant.env}
    if endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    back_port, front_port = free_port(), free_port()
    backend = ManagedProcess(
        f"{variant.name}-backend",
        service_argv("backend", back_port),
        run_dir,
        env=service_env("backend", **env),
        cwd=REPO,
    )
    frontend = ManagedProcess(
        f"{variant.name}-frontend",
        service_argv("frontend", front_port),
        run_dir,
        env=service_env("frontend", BACKEND_URL=f"http://127.0.0.1:{back_port}", **env),
        cwd=REPO,
    )
    backend.url = f"http://127.0.0.1:{back_port}"
    frontend.url = f"http://127.0.0.1:{front_port}"
    return Chain(variant, backend, frontend)


def wrk(url: str, seconds: float, connections: int) -> dict:
    argv = [
        "wrk",
        "-t2",
        f"-c{max(2, connections)}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if result.returncode != 0:
        raise SystemExit(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    line = next(ln for ln in reversed(result.stdout.splitlines()) if ln.startswith("{"))
    return json.loads(line)


def busy_processes(own: set[int]) -> list[str]:
    """Other processes using CPU right now (what else was running), from ps."""
    out = subprocess.run(
        ["ps", "-eo", "pid,ni,pcpu,comm", "--sort=-pcpu", "--no-headers"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    busy = []
    for line in out.splitlines():
        pid, nice, pcpu, comm = line.split(None, 3)
        if int(pid) in own or float(pcpu) < 5.0 or comm in ("ps",):
            continue
        busy.append(f"{comm} (nice {nice}, {pcpu} % CPU since start)")
    return busy[:8]


# A run starts once every bench process together uses less than this share of one
# core, or after SETTLE_TIMEOUT_S: one run's work must not land on the next variant's.
SETTLE_CPU_SHARE = 0.05
SETTLE_WINDOW_S = 0.5
SETTLE_TIMEOUT_S = 10.0


def export_delay_s(variant: Variant) -> float:
    """How long a traced variant's last spans may wait in its queue after the load
    stops (OTEL_BSP_SCHEDULE_DELAY, milliseconds, 5000 by default): until then their
    export, and Jaeger storing them, are still to come."""
    if not variant.otlp:
        return 0.0
    raw = variant.env.get("OTEL_BSP_SCHEDULE_DELAY") or os.environ.get("OTEL_BSP_SCHEDULE_DELAY")
    return float(raw or 5000) / 1000


def settle(processes: list[ManagedProcess], not_before: float = 0.0) -> float:
    """Wait, bounded, until `not_before` (a time.monotonic() value) has passed and the
    bench's processes are idle; returns the seconds waited."""
    started = time.monotonic()

    def cpu() -> float:
        return sum(p.cpu_seconds() for p in processes)

    def idle() -> bool:
        before = cpu()
        time.sleep(SETTLE_WINDOW_S)  # CPU share is measured over a window
        quiet = cpu() - before < SETTLE_CPU_SHARE * SETTLE_WINDOW_S
        return quiet and time.monotonic() >= not_before

    timeout = max(0.0, not_before - started) + SETTLE_TIMEOUT_S
    with contextlib.suppress(PollTimeout):
        poll_until(idle, "the bench processes to be idle", timeout, interval=0)
    return time.monotonic() - started


def measure(chain: Chain, seconds: float, connections: int, jaeger: ManagedProcess | None) -> dict:
    wrk(chain.url, 1, max(2, connections))  # warm the pools after the other variants' turns
    before = (chain.frontend.cpu_seconds(), chain.backend.cpu_seconds())
    jaeger_before = jaeger.cpu_seconds() if jaeger else 0.0
    loadavg = os.getloadavg()[0]
    result = wrk(chain.url, seconds, connections)
    front = chain.frontend.cpu_seconds() - before[0]
    back = chain.backend.cpu_seconds() - before[1]
    requests = max(result["requests"], 1)
    duration = result["duration_us"] / 1e6
    errors = sum(result["errors"].values())
    return {
        "requests": result["requests"],
        "rps": result["requests"] / duration,
        "p50_ms": result["latency_us"]["p50"] / 1000,
        "p90_ms": result["latency_us"]["p90"] / 1000,
        "p99_ms": result["latency_us"]["p99"] / 1000,
        "max_ms": result["latency_us"]["max"] / 1000,
        "errors": errors,
        "error_detail": result["errors"],
        "cpu_us_per_request": {
            "frontend": 1e6 * front / requests,
            "backend": 1e6 * back / requests,
            "total": 1e6 * (front + back) / requests,
        },
        "jaeger_cpu_us_per_request": (
            1e6 * (jaeger.cpu_seconds() - jaeger_before) / requests if jaeger else None
        ),
        "loadavg_1m_before": loadavg,
    }


def populated_app():
    """The real frontend app, every route, method, status and error type seen once: the
    series count a long-running service reaches. Returns (app, its Metrics)."""
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import CollectorRegistry

    import frontend
    from obs_telemetry.errors import ERROR_TYPES, SIMULATED_ERRORS
    from obs_telemetry.extension import state_of

    app = frontend.create_app(
        {"TESTING": True}, registry=CollectorRegistry(), tracer_provider=TracerProvider()
    )
    metrics = state_of(app).metrics
    statuses = ["200", "201", "400", "404", "405", "413", "502",
                *map(str, SIMULATED_ERRORS.values())]  # fmt: skip
    endpoints = [rule.rule for rule in app.url_map.iter_rules()] + ["unmatched"]
    for endpoint in endpoints:
        for method in ("GET", "POST", "HEAD", "other"):
            for status in dict.fromkeys(statuses):
                metrics.observe_request(endpoint, method, int(status), 0.0123, "ab" * 16)
    for error_type in ERROR_TYPES:
        metrics.observe_error(error_type)
    return app, metrics


def render_cost(client, accept: str, repetitions: int) -> dict:
    body = client.get("/metrics", headers={"Accept": accept}).get_data(as_text=True)
    times = []
    for _ in range(repetitions):
        start = time.perf_counter()
        client.get("/metrics", headers={"Accept": accept})
        times.append(time.perf_counter() - start)
    return {
        "lines": len(body.splitlines()),
        "bytes": len(body.encode()),
        "samples": sum(1 for line in body.splitlines() if line and not line.startswith("#")),
        "ms_median": 1000 * statistics.median(times),
        "ms_min": 1000 * min(times),
    }


def metrics_render(repetitions: int = 30) -> dict:
    """Time /metrics at a realistic series count, in both exposition formats."""
    app, _ = populated_app()
    client = app.test_client()
    result = {
        label: render_cost(client, accept, repetitions)
        for label, accept in (
            ("text", "text/plain"),
            ("openmetrics", "application/openmetrics-text; version=1.0.0"),
        )
    }
    app.extensions["backend_client"].close()
    return result


def per_call_us(call, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return 1e6 * (time.perf_counter() - start) / calls


def seed002_cost(repetitions: int = 30, calls: int = 20000, rounds: int = 5) -> dict:
    """What seed 002's request series (http_requests_total, request_duration_seconds,
    duplicates of seed 000's flask_* pair) cost, side by side in one process: /metrics
    with and without them (the two collectors unregistered), and per request the time of
    their two updates (a labelled counter increment and a histogram observation with an
    exemplar, what Metrics.observe_request does for them) next to the whole of it.
    Alternated over `rounds` so that a drift of the machine's speed hits both."""
    app, metrics = populated_app()
    client = app.test_client()
    seed002 = (metrics.http_requests_total, metrics.seed_request_duration)
    counter = metrics.http_requests_total.labels("/items", "GET", "200")
    histogram = metrics.seed_request_duration.labels("/items", "GET")
    exemplar = {"trace_id": "ab" * 16}

    def whole():
        metrics.observe_request("/items", "GET", 200, 0.0123, "ab" * 16)

    def seed002_updates():
        counter.inc()
        histogram.observe(0.0123, exemplar)

    observe, extra = [], []
    for _ in range(rounds):
        observe.append(per_call_us(whole, calls))
        extra.append(per_call_us(seed002_updates, calls))
    with_them = render_cost(client, "text/plain", repetitions)
    for collector in seed002:
        metrics.registry.unregister(collector)
    without = render_cost(client, "text/plain", repetitions)
    app.extensions["backend_client"].close()
    return {
        "observe_request_us": statistics.median(observe),
        "seed002_updates_us": statistics.median(extra),
        "render_with": with_them,
        "render_without": without,
    }


def versions() -> dict:
    packages = (
        "flask",
        "gunicorn",
        "prometheus-client",
        "python-json-logger",
        "httpx",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-flask",
        "opentelemetry-exporter-otlp-proto-http",
        "protobuf",
    )
    found = {name: metadata.version(name) for name in packages}
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    found["wrk"] = " ".join((wrk_version.stdout or wrk_version.stderr).split()[:2])
    found["python"] = platform.python_version()
    found["jaeger"] = f"{VERSIONS['JAEGER_RELEASE']} (module {VERSIONS['JAEGER_MODULE_VERSION']})"
    return found


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
    }


def summarize(runs: list[dict]) -> dict:
    def median(key):
        return statistics.median(r[key] for r in runs)

    return {
        "rps": median("rps"),
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "errors": sum(r["errors"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        "cpu_us_per_request": statistics.median(r["cpu_us_per_request"]["total"] for r in runs),
        "cpu_us_frontend": statistics.median(r["cpu_us_per_request"]["frontend"] for r in runs),
        "cpu_us_backend": statistics.median(r["cpu_us_per_request"]["backend"] for r in runs),
        "rps_min": min(r["rps"] for r in runs),
        "rps_max": max(r["rps"] for r in runs),
        "p99_min": min(r["p99_ms"] for r in runs),
        "p99_max": max(r["p99_ms"] for r in runs),
    }


def add_paired_ratios(result: dict) -> None:
    """Each run against the mean of the bare runs just before and after it, then the
    median of those ratios over rounds (round_order says why).
    """
    bare = next((v for v in result["variants"] if v["name"] == "bare"), None)
    if bare is None:
        return
    bare_runs = sorted(bare["runs"], key=lambda run: run["sequence"])
    for variant in result["variants"]:
        if variant is bare:
            continue
        ratios = []
        for run in variant["runs"]:
            before = [b for b in bare_runs if b["sequence"] < run["sequence"]][-1:]
            after = [b for b in bare_runs if b["sequence"] > run["sequence"]][:1]
            neighbours = before + after
            if not neighbours:
                continue
            rps = statistics.mean(b["rps"] for b in neighbours)
            p99 = statistics.mean(b["p99_ms"] for b in neighbours)
            ratios.append((run["rps"] / rps, run["p99_ms"] / p99))
        if not ratios:
            continue
        variant["summary"]["paired"] = {
            "rps_ratio": statistics.median(r for r, _ in ratios),
            "p99_ratio": statistics.median(p for _, p in ratios),
            "rps_ratio_min": min(r for r, _ in ratios),
            "rps_ratio_max": max(r for r, _ in ratios),
        }
    bare["summary"]["paired"] = {
        "rps_ratio": 1.0,
        "p99_ratio": 1.0,
        "rps_ratio_min": 1.0,
        "rps_ratio_max": 1.0,
    }


def round_order(chains: list[Chain], round_: int) -> list[Chain]:
    """One round's runs: every variant once, in an order rotated from round to round,
    each between two runs of the bare app (bare, A, bare, B, ..., bare).

    This machine's speed drifts by up to 2x within a minute (other tenants of the
    host; see the run table), so a variant is compared with the bare runs just
    before and after it, seconds apart, rather than with one bare run per round.
    """
    bare = [c for c in chains if c.variant.name == "bare"]
    others = [c for c in chains if c.variant.name != "bare"]
    if not others:
        return bare
    shift = round_ % len(others)
    rotated = others[shift:] + others[:shift]
    if not bare:
        return rotated
    order = []
    for chain in rotated:
        order += [bare[0], chain]
    return order + bare


def run(out: Path) -> dict:
    seconds = float(os.environ.get("BENCH_DURATION", "4"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "6"))
    connections = int(os.environ.get("BENCH_CONNECTIONS", "8"))
    wanted = [v for v in os.environ.get("BENCH_VARIANTS", "").split(",") if v]
    variants = [v for v in VARIANTS if not wanted or v.name in wanted]
    if not variants:
        raise SystemExit(f"BENCH_VARIANTS={wanted}: known are {[v.name for v in VARIANTS]}")
    run_dir = REPO / ".run" / "bench"
    run_dir.mkdir(parents=True, exist_ok=True)
    for old in run_dir.glob("*.log"):
        old.unlink()

    processes: list[ManagedProcess] = []
    blackhole = BlackHole()
    started = time.time()
    result: dict = {}
    try:
        jaeger, jaeger_endpoint = start_jaeger(run_dir)
        processes.append(jaeger)
        endpoints = {
            "jaeger": jaeger_endpoint,
            "refused": f"http://127.0.0.1:{free_port()}",
            "blackhole": blackhole.url,
        }
        chains = []
        for variant in variants:
            chain = start_chain(variant, endpoints.get(variant.otlp), run_dir)
            processes += [chain.backend, chain.frontend]
            chains.append(chain)
        for chain in chains:
            chain.backend.wait_http(
                f"{chain.backend.url}/readyz", ok=lambda r: r.status_code == 200
            )
            chain.frontend.wait_http(
                f"{chain.frontend.url}/readyz", ok=lambda r: r.status_code == 200
            )
        own = {pid for p in processes for pid in p.pids()} | {os.getpid()}
        for chain in chains:
            wrk(chain.url, 2, connections)
        others = []
        sequence = 0
        not_before = 0.0
        for round_ in range(rounds):
            others.append(busy_processes(own))
            for chain in round_order(chains, round_):
                settled_s = settle(processes, not_before)
                sample = measure(chain, seconds, connections, jaeger)
                not_before = time.monotonic() + export_delay_s(chain.variant)
                sample["settle_s"] = settled_s
                sample["round"] = round_
                sample["sequence"] = sequence
                sequence += 1
                chain.runs.append(sample)
                print(
                    f"[bench] round {round_ + 1}/{rounds} {chain.variant.name:20s} "
                    f"{sample['rps']:7.0f} req/s  p50 {sample['p50_ms']:6.1f} ms  "
                    f"p99 {sample['p99_ms']:6.1f} ms  cpu "
                    f"{sample['cpu_us_per_request']['total']:6.0f} us/req  "
                    f"errors {sample['errors']}",
                    flush=True,
                )
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "elapsed_s": round(time.time() - started),
            "command": "make bench",
            "settings": {
                "duration_s": seconds,
                "rounds": rounds,
                "connections": connections,
                "wrk_threads": 2,
                "gunicorn_threads": 8,
                "paths": ["/", "/items", "/items/2", "/items/4"],
            },
            "machine": machine(),
            "versions": versions(),
            "other_processes": others,
            "variants": [
                {
                    "name": c.variant.name,
                    "description": c.variant.description,
                    "env": c.variant.env,
                    "otlp": c.variant.otlp,
                    "runs": c.runs,
                    "summary": summarize(c.runs),
                }
                for c in chains
            ],
            "metrics_render": metrics_render(),
            "seed002_cost": seed002_cost(),
        }
        add_paired_ratios(result)
    finally:
        for process in reversed(processes):
            process.stop()
        blackhole.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[bench] wrote {out}", file=sys.stderr)
    return result
