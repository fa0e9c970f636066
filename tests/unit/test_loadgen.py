"""The load generator's pieces that need no server: mix, plan and percentiles."""

from __future__ import annotations

import random

import pytest
from obs_tools.loadgen.engine import CRASH, Mix, quick_plan
from obs_tools.loadgen.stats import LatencyHistogram, RunStats


def test_crash_is_only_in_the_mix_when_asked():
    plain = Mix(random.Random(1))
    assert all(plain.pick() != CRASH for _ in range(2000))
    with_crash = Mix(random.Random(1), crash_weight=50)
    assert any(with_crash.pick() == CRASH for _ in range(200))


def test_mix_includes_errors_and_slow_requests():
    mix = Mix(random.Random(7))
    endpoints = {mix.pick().endpoint for _ in range(2000)}
    assert {"/error", "/slow", "/", "/health", "/orders"} <= endpoints


def test_quick_plan_hits_every_endpoint_and_every_error_type():
    plan = quick_plan()
    paths = [r.path for r in plan]
    for error_type in ("database_error", "validation_error", "permission_error", "timeout_error"):
        assert f"/error?type={error_type}" in paths
    assert {r.endpoint for r in plan} >= {"/", "/health", "/stats", "/items", "/slow", "/metrics"}


@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_percentiles_are_within_two_percent(q):
    rng = random.Random(3)
    values = sorted(rng.lognormvariate(-3, 1) for _ in range(20_000))
    histogram = LatencyHistogram()
    for v in values:
        histogram.record(v)
    exact = values[int(q * len(values)) - 1]
    assert histogram.percentile(q) == pytest.approx(exact, rel=0.025)


def test_summary_counts_errors_and_transport_failures():
    stats = RunStats()
    stats.record("/", 200, 0.01)
    stats.record("/error", 500, 0.02)
    stats.record("/", "ConnectError", 0.001)
    summary = stats.summary()
    assert (summary["requests"], summary["errors"]) == (3, 2)
    assert summary["statuses"] == {"200": 1, "500": 1, "ConnectError": 1}
    assert summary["endpoints"]["/"]["errors"] == 1
