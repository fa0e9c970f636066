"""tests/support/footprint.py: quantities, the table's arithmetic and its grouping by
workload, on samples made by hand (the cgroup reading itself runs in the node tests).

Reads no environment variables.
"""

from __future__ import annotations

import pytest

from tests.support import footprint
from tests.support.footprint import Sample, Usage

MIB = footprint.MIB


@pytest.mark.parametrize(
    ("text", "value"),
    [("100m", 0.1), ("1", 1.0), ("128Mi", 128 * MIB), ("1Gi", 1024 * MIB), ("64Ki", 65536.0)],
)
def test_quantity(text, value):
    assert footprint.quantity(text) == pytest.approx(value)


def pod(name: str, cid: str, memory_limit: str = "256Mi") -> dict:
    resources = {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": memory_limit},
    }
    return {
        "metadata": {"namespace": "obs-apps", "name": name},
        "spec": {"containers": [{"name": "backend", "resources": resources}]},
        "status": {
            "containerStatuses": [
                {"name": "backend", "containerID": f"containerd://{cid}", "state": {"running": {}}}
            ]
        },
    }


def test_table_averages_cpu_between_samples_and_skips_restarted_containers():
    pods = [pod("backend-5d8f7c9b6-abcde", "a"), pod("backend-5d8f7c9b6-fghij", "b")]
    key_a = ("obs-apps", "backend-5d8f7c9b6-abcde", "backend")
    key_b = ("obs-apps", "backend-5d8f7c9b6-fghij", "backend")
    first = Sample(
        10.0,
        {
            key_a: Usage(50 * MIB, 60 * MIB, 1_000_000_000),
            key_b: Usage(50 * MIB, 60 * MIB, 5_000_000_000),
        },
    )
    # b restarted: its CPU time began again, so it has no average over the interval.
    last = Sample(
        20.0,
        {
            key_a: Usage(70 * MIB, 90 * MIB, 3_000_000_000),
            key_b: Usage(40 * MIB, 40 * MIB, 1_000_000_000),
        },
    )
    (row,) = footprint.table(pods, first, last)
    assert row["pod"] == "backend-5d8f7c9b6-abcde"
    assert row["cpu_avg_cores"] == pytest.approx(0.2)
    assert (row["working_set_mib"], row["peak_mib"]) == (70.0, 90.0)
    assert (row["memory_request"], row["memory_limit"]) == ("128Mi", "256Mi")


@pytest.mark.parametrize(
    ("pod_name", "workload"),
    [
        ("backend-685c88d45b-kw2jb", "backend"),
        ("fluent-bit-9pv4m", "fluent-bit"),
        ("elasticsearch-0", "elasticsearch"),
        ("kube-state-metrics-684f49f47f-6bjvm", "kube-state-metrics"),
    ],
)
def test_workload_names(pod_name, workload):
    assert footprint.workload(pod_name) == workload


def test_markdown_keeps_the_largest_of_several_pods():
    rows = [
        {
            "namespace": "obs-apps",
            "pod": f"frontend-5d8f7c9b6-{s}",
            "container": "frontend",
            "cpu_avg_cores": cpu,
            "working_set_mib": ws,
            "peak_mib": ws,
            "cpu_request": "100m",
            "cpu_limit": "500m",
            "memory_request": "128Mi",
            "memory_limit": "256Mi",
        }
        for s, cpu, ws in (("abcde", 0.002, 60.0), ("fghij", 0.004, 55.0))
    ]
    text = footprint.markdown(rows, 100)
    assert "| frontend / frontend (largest of 2) | 4m | 100m / 500m | 60 Mi |" in text, text
