"""What each pod of the real node uses, read from its containers' cgroups (cgroup v1, as
on this machine), against the requests and limits its spec asks for.

Per container: the working set (memory.usage_in_bytes less the inactive file cache, as
the kubelet counts it for eviction and `kubectl top`), the peak of memory.usage_in_bytes
(memory.max_usage_in_bytes: page cache included, so an upper bound) and the CPU time
(cpuacct.usage). Two samples give the average CPU between them.

Reads no environment variables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Usage:
    working_set: int
    peak: int
    cpu_ns: int


@dataclass(frozen=True)
class Sample:
    taken: float
    # (namespace, pod, container) -> Usage
    usage: dict[tuple[str, str, str], Usage]


def _cgroup_dirs(pid: int) -> dict[str, Path]:
    dirs = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            if controller in ("memory", "cpuacct"):
                dirs[controller] = CGROUP_ROOT / controller / path.lstrip("/")
    return dirs


def _read_int(path: Path) -> int:
    return int(path.read_text().split()[0])


def container_usage(pid: int) -> Usage:
    dirs = _cgroup_dirs(pid)
    memory = dirs["memory"]
    stat = dict(line.split() for line in (memory / "memory.stat").read_text().splitlines())
    usage = _read_int(memory / "memory.usage_in_bytes")
    inactive = int(stat.get("total_inactive_file", stat.get("inactive_file", 0)))
    return Usage(
        working_set=max(0, usage - inactive),
        peak=_read_int(memory / "memory.max_usage_in_bytes"),
        cpu_ns=_read_int(dirs["cpuacct"] / "cpuacct.usage"),
    )


def task_pids(tasks_listing: str) -> dict[str, int]:
    """`ctr tasks ls` output: container id -> host PID."""
    pids = {}
    for line in tasks_listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2 and fields[1].isdigit():
            pids[fields[0]] = int(fields[1])
    return pids


def sample(pods: list[dict], tasks_listing: str) -> Sample:
    """The usage of every running container of `pods` (objects from the API)."""
    pids = task_pids(tasks_listing)
    usage = {}
    for pod in pods:
        meta = pod["metadata"]
        for status in pod.get("status", {}).get("containerStatuses", []):
            cid = (status.get("containerID") or "").removeprefix("containerd://")
            if cid in pids and "running" in status.get("state", {}):
                key = (meta["namespace"], meta["name"], status["name"])
                usage[key] = container_usage(pids[cid])
    return Sample(time.monotonic(), usage)


def quantity(text: str | None) -> float | None:
    """A Kubernetes quantity as a number (CPU in cores, memory in bytes)."""
    if text is None:
        return None
    units = {"m": 1e-3, "Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if str(text).endswith(suffix):
            return float(str(text)[: -len(suffix)]) * factor
    return float(text)


def table(pods: list[dict], first: Sample, last: Sample) -> list[dict]:
    """One row per container present in both samples: its use and its spec's bounds."""
    specs = {
        (p["metadata"]["namespace"], p["metadata"]["name"], c["name"]): c.get("resources", {})
        for p in pods
        for c in p["spec"]["containers"]
    }
    rows = []
    seconds = max(last.taken - first.taken, 1e-9)
    for key, end in sorted(last.usage.items()):
        start = first.usage.get(key)
        if start is None or key not in specs or end.cpu_ns < start.cpu_ns:
            continue  # restarted between the samples: its CPU time began again
        resources = specs[key]
        rows.append(
            {
                "namespace": key[0],
                "pod": key[1],
                "container": key[2],
                "cpu_avg_cores": round((end.cpu_ns - start.cpu_ns) / 1e9 / seconds, 3),
                "working_set_mib": round(end.working_set / MIB, 1),
                "peak_mib": round(end.peak / MIB, 1),
                "cpu_request": resources.get("requests", {}).get("cpu"),
                "cpu_limit": resources.get("limits", {}).get("cpu"),
                "memory_request": resources.get("requests", {}).get("memory"),
                "memory_limit": resources.get("limits", {}).get("memory"),
            }
        )
    return rows


def workload(pod: str) -> str:
    """The workload's name in a pod's: less a Deployment's two suffixes, a DaemonSet's
    one, a StatefulSet's ordinal."""
    parts = pod.split("-")
    if parts[-1].isdigit():
        return "-".join(parts[:-1])
    if len(parts) > 2 and len(parts[-1]) == 5 and any(c.isdigit() for c in parts[-2]):
        return "-".join(parts[:-2])
    return "-".join(parts[:-1])


def markdown(rows: list[dict], seconds: float) -> str:
    """One line per workload and container; with several pods, the largest of each."""
    merged: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (workload(r["pod"]), r["container"])
        seen = merged.setdefault(key, {**r, "pods": 0})
        seen["pods"] += 1
        for field in ("cpu_avg_cores", "working_set_mib", "peak_mib"):
            seen[field] = max(seen[field], r[field])
    lines = [
        f"| workload / container | CPU, average over {seconds:.0f} s | CPU request / limit "
        "| working set | peak (with page cache) | memory request / limit |",
        "|---|---|---|---|---|---|",
    ]
    for (name, container), r in sorted(merged.items()):
        copies = f" (largest of {r['pods']})" if r["pods"] > 1 else ""
        lines.append(
            f"| {name} / {container}{copies} | {r['cpu_avg_cores'] * 1000:.0f}m "
            f"| {r['cpu_request']} / {r['cpu_limit']} | {r['working_set_mib']:.0f} Mi "
            f"| {r['peak_mib']:.0f} Mi | {r['memory_request']} / {r['memory_limit']} |"
        )
    return "\n".join(lines)
