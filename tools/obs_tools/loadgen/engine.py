"""The request engine: an endpoint mix, open-loop rate limiting and honest latency.

Reads no environment variables. With a target rate, request i is due at
start + i / rate, and its latency is measured from that due time, not from when it was
actually sent: if the service stalls, the requests that queue up behind the stall
count their waiting time too (no coordinated omission). Without a rate (spike mode)
each worker sends as fast as answers come back, and latency is per request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from .stats import RunStats

ERROR_TYPES = ("database_error", "validation_error", "permission_error", "timeout_error")


@dataclass(frozen=True)
class Request:
    endpoint: str  # the route template, as the services label their metrics
    method: str
    path: str
    body: dict | None = None


def _item(rng: random.Random) -> Request:
    # Id 6 does not exist: one lookup in six is a 404, as real traffic has.
    return Request("/items/<int:item_id>", "GET", f"/items/{rng.randint(1, 6)}")


def _order(rng: random.Random) -> Request:
    quantity = 0 if rng.random() < 0.1 else rng.randint(1, 3)  # 10% invalid orders
    return Request(
        "/orders", "POST", "/orders", {"item_id": rng.randint(1, 5), "quantity": quantity}
    )


# (weight, request factory). /error and /slow are in; /crash only on request.
MIX: list[tuple[float, Callable[[random.Random], Request]]] = [
    (25, lambda rng: Request("/", "GET", "/")),
    (15, lambda rng: Request("/items", "GET", "/items")),
    (20, _item),
    (10, _order),
    (10, lambda rng: Request("/health", "GET", "/health")),
    (5, lambda rng: Request("/stats", "GET", "/stats")),
    (8, lambda rng: Request("/error", "GET", "/error")),
    (7, lambda rng: Request("/slow", "GET", "/slow")),
]
CRASH = Request("/crash", "GET", "/crash")


class Mix:
    def __init__(self, rng: random.Random, crash_weight: float = 0.0) -> None:
        self.rng = rng
        self.entries = list(MIX)
        if crash_weight > 0:
            self.entries.append((crash_weight, lambda rng: CRASH))
        self.weights = [w for w, _ in self.entries]

    def pick(self) -> Request:
        _, factory = self.rng.choices(self.entries, weights=self.weights)[0]
        return factory(self.rng)


def quick_plan() -> list[Request]:
    """Every endpoint a few times, each kind of error included."""
    plan = [Request("/", "GET", "/")] * 3 + [Request("/health", "GET", "/health")] * 3
    plan += [Request("/stats", "GET", "/stats")] * 2 + [Request("/items", "GET", "/items")] * 2
    plan += [Request("/items/<int:item_id>", "GET", f"/items/{i}") for i in (1, 2, 999)]
    plan += [Request("/orders", "POST", "/orders", {"item_id": 1, "quantity": 2})] * 2
    plan += [Request("/orders", "POST", "/orders", {"item_id": 1, "quantity": 0})]
    plan += [Request("/error", "GET", f"/error?type={t}") for t in ERROR_TYPES]
    plan += [Request("/slow", "GET", "/slow?delay=0.2")] * 2
    plan += [Request("/metrics", "GET", "/metrics")]
    return plan


@dataclass
class LoadSpec:
    target: str
    count: int | None = None
    duration: float | None = None
    rate: float | None = None
    concurrency: int = 10
    plan: list[Request] | None = None
    crash_weight: float = 0.0
    seed: int | None = None
    # Connect and read timeouts of each request: longer than the services' own
    # slowest answer (/slow caps at 5 s, a backend timeout at 10 s).
    timeout: float = 15.0


async def run(
    spec: LoadSpec,
    stats: RunStats,
    progress: Callable[[RunStats], None] | None = None,
    status_file: Path | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Send the load described by `spec`, recording into `stats`, until done or `stop`."""
    rng = random.Random(spec.seed)
    mix = Mix(rng, spec.crash_weight)
    count = len(spec.plan) if spec.plan is not None else spec.count
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    start = loop.time()
    indexes = itertools.count()
    limits = httpx.Limits(
        max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency
    )
    timeout = httpx.Timeout(spec.timeout, connect=3.0)

    async with httpx.AsyncClient(base_url=spec.target, timeout=timeout, limits=limits) as client:

        async def worker() -> None:
            while not stop.is_set():
                i = next(indexes)
                if count is not None and i >= count:
                    return
                if spec.rate:
                    due = start + i / spec.rate
                    if spec.duration is not None and due - start >= spec.duration:
                        return
                    wait = due - loop.time()
                    if wait > 0:
                        try:
                            await asyncio.wait_for(stop.wait(), timeout=wait)
                            return
                        except TimeoutError:
                            pass
                else:
                    due = loop.time()
                    if spec.duration is not None and due - start >= spec.duration:
                        return
                request = spec.plan[i] if spec.plan is not None else mix.pick()
                try:
                    response = await client.request(request.method, request.path, json=request.body)
                    status: int | str = response.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                stats.record(request.endpoint, status, loop.time() - due)

        async def reporter() -> None:
            while True:
                await asyncio.sleep(0.5)
                if progress:
                    progress(stats)
                if status_file:
                    write_status(status_file, stats, spec)

        workers = [asyncio.create_task(worker()) for _ in range(spec.concurrency)]
        side = asyncio.create_task(reporter()) if (progress or status_file) else None
        finished = asyncio.gather(*workers)
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({finished, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # On a stop, requests still in flight are abandoned, not awaited: Ctrl-C
            # answers at once even with a 15 s /slow outstanding. They are not counted.
            for task in [*workers, stopped]:
                task.cancel()
            await asyncio.gather(*workers, stopped, return_exceptions=True)
            if side:
                side.cancel()
                await asyncio.gather(side, return_exceptions=True)
            if status_file:
                write_status(status_file, stats, spec)
        # A worker cancelled by the stop leaves a CancelledError in `finished`; only a
        # real failure of a worker that ran to its end is worth raising.
        error = finished.exception() if finished.done() and not finished.cancelled() else None
        if error is not None and not isinstance(error, asyncio.CancelledError):
            raise error


def write_status(path: Path, stats: RunStats, spec: LoadSpec) -> None:
    summary = stats.summary()
    summary.update(target=spec.target, target_rate=spec.rate, pid=os.getpid())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary))
    os.replace(tmp, path)
