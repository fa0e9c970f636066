"""Latency and outcome statistics of a load run. Reads no environment variables.

Percentiles come from a log-bucketed histogram (2% relative precision), so memory stays
bounded however long `continuous_traffic.sh` runs.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

_BASE = 1e-4  # 0.1 ms: the smallest latency told apart
_GROWTH = 1.02
_LOG_GROWTH = math.log(_GROWTH)


class LatencyHistogram:
    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        index = 0 if seconds <= _BASE else int(math.log(seconds / _BASE) / _LOG_GROWTH) + 1
        self.buckets[index] += 1
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def percentile(self, q: float) -> float | None:
        """Upper bound of the bucket holding the q-quantile (q in 0..1)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(_BASE * _GROWTH**index, self.max)
        return self.max


@dataclass
class EndpointStats:
    count: int = 0
    errors: int = 0
    statuses: Counter = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


class RunStats:
    """Thread-safe totals per endpoint (route template, as the services label them)."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        self.endpoints: dict[str, EndpointStats] = {}
        self.overall = EndpointStats()
        self._lock = threading.Lock()

    def record(self, endpoint: str, status: int | str, latency: float) -> None:
        error = not isinstance(status, int) or status >= 400
        with self._lock:
            stats = self.endpoints.setdefault(endpoint, EndpointStats())
            for target in (stats, self.overall):
                target.count += 1
                target.errors += error
                target.statuses[str(status)] += 1
                target.latency.record(latency)

    def elapsed(self) -> float:
        return self._clock() - self.started

    def progress_line(self) -> str:
        with self._lock:
            o = self.overall
            elapsed = self.elapsed()
            rate = o.count / elapsed if elapsed > 0 else 0.0
            error_pct = 100.0 * o.errors / o.count if o.count else 0.0
            p50, p95 = o.latency.percentile(0.5), o.latency.percentile(0.95)
        return (
            f"[{elapsed:7.1f}s] {o.count:>7} req  {rate:7.1f} req/s  "
            f"err {error_pct:5.1f}%  p50 {_ms(p50)}  p95 {_ms(p95)}"
        )

    def summary(self) -> dict:
        with self._lock:
            elapsed = self.elapsed()
            return {
                "elapsed_seconds": round(elapsed, 3),
                "requests": self.overall.count,
                "errors": self.overall.errors,
                "requests_per_second": round(self.overall.count / elapsed, 2) if elapsed else 0.0,
                "error_percent": round(100.0 * self.overall.errors / self.overall.count, 2)
                if self.overall.count
                else 0.0,
                "latency_ms": _percentiles(self.overall.latency),
                "statuses": dict(self.overall.statuses),
                "endpoints": {
                    name: {
                        "count": s.count,
                        "errors": s.errors,
                        "statuses": dict(s.statuses),
                        "latency_ms": _percentiles(s.latency),
                    }
                    for name, s in sorted(self.endpoints.items())
                },
            }


def _percentiles(histogram: LatencyHistogram) -> dict:
    return {
        name: None if value is None else round(value * 1000, 1)
        for name, value in (
            ("p50", histogram.percentile(0.5)),
            ("p95", histogram.percentile(0.95)),
            ("p99", histogram.percentile(0.99)),
            ("max", histogram.max if histogram.count else None),
        )
    }


def _ms(seconds: float | None) -> str:
    return "    -  " if seconds is None else f"{seconds * 1000:5.0f}ms"


def format_table(summary: dict) -> str:
    header = (
        f"{'endpoint':<28} {'count':>7} {'errors':>7} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}"
    )
    lines = [header, "-" * len(header)]

    def row(name: str, data: dict) -> str:
        lat = data["latency_ms"]

        def cell(key: str) -> str:
            return "-" if lat[key] is None else f"{lat[key]:.1f}"

        return (
            f"{name:<28} {data['count']:>7} {data['errors']:>7} "
            f"{cell('p50'):>9} {cell('p95'):>9} {cell('p99'):>9}"
        )

    for name, data in summary["endpoints"].items():
        lines.append(row(name, data))
    lines.append("-" * len(header))
    lines.append(
        row(
            "total",
            {
                "count": summary["requests"],
                "errors": summary["errors"],
                "latency_ms": summary["latency_ms"],
            },
        )
    )
    lines.append(
        f"{summary['requests']} requests in {summary['elapsed_seconds']:.1f} s "
        f"({summary['requests_per_second']:.1f} req/s), {summary['error_percent']:.1f}% errors; "
        f"statuses: {', '.join(f'{k}={v}' for k, v in sorted(summary['statuses'].items()))}"
    )
    return "\n".join(lines)
