"""What the k8s/ render asks of a cluster, and whether a cluster has it.

Reads no environment variables. The numbers: the sum of the render's resource
requests (each pod's effective request: its containers' requests added up, or its
largest init container's if that is larger; times replicas; DaemonSet pods once per
node; a Job's pods times its parallelism, a CronJob's one run; a Deployment whose
HorizontalPodAutoscaler owns its replicas at the autoscaler's minimum), plus what
Kubernetes' own pods request on a Minikube node, plus HEADROOM_PERCENT. Disk: the
persistent volume claims plus room for images and the node's system.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# What kubeadm's static pods and CoreDNS request on a one-node Minikube cluster
# (kube-apiserver 250m, kube-controller-manager 200m, kube-scheduler 100m, etcd 100m and
# 100Mi, CoreDNS 100m and 70Mi). Already running, and counted, on an existing cluster.
MINIKUBE_SYSTEM_CPU_M = 750
MINIKUBE_SYSTEM_MEMORY = 170 * 2**20
# Scheduling is by requests, but pods use more than they request at start-up and the
# node's OS and container runtime need memory outside Kubernetes' accounting.
HEADROOM_PERCENT = 25
MINIKUBE_OS_MEMORY = 1 * 2**30
# Images of the whole stack (Elasticsearch and Kibana alone are about 1.5 GB each) and
# the node's own system files.
IMAGES_AND_SYSTEM_DISK = 12 * 2**30

_SUFFIXES = {
    "": 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "m": 10**-3,
}  # fmt: skip
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity ("250m", "1.5", "512Mi", "1e9") as a plain number."""
    match = _QUANTITY.match(str(value).strip())
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


@dataclass
class Needs:
    cpu_m: float = 0
    memory: float = 0
    storage: float = 0
    # (kind/namespace/name, cpu_m, memory) of each workload, for the explanation.
    parts: list[tuple[str, float, float]] = field(default_factory=list)
    # The largest single pod (kind/namespace/name, cpu_m, memory): it must fit on one node.
    largest_pod: tuple[str, float, float] = ("", 0, 0)


def _requests(containers: list[dict]) -> tuple[float, float]:
    cpu = memory = 0.0
    for container in containers or []:
        requests = (container.get("resources") or {}).get("requests") or {}
        cpu += quantity(requests.get("cpu", 0)) * 1000
        memory += quantity(requests.get("memory", 0))
    return cpu, memory


def pod_requests(pod_spec: dict) -> tuple[float, float]:
    cpu, memory = _requests(pod_spec.get("containers", []))
    for init in pod_spec.get("initContainers") or []:
        init_cpu, init_memory = _requests([init])
        cpu, memory = max(cpu, init_cpu), max(memory, init_memory)
    return cpu, memory


def render_needs(render_yaml: str, nodes: int = 1) -> Needs:
    """What the objects in `kubectl kustomize k8s/` output request in total."""
    needs = Needs()
    docs = [doc for doc in yaml.safe_load_all(render_yaml) if doc]
    scaled = autoscaler_minimums(docs)
    for doc in docs:
        kind, spec = doc.get("kind"), doc.get("spec") or {}
        meta = doc.get("metadata") or {}
        label = f"{kind}/{meta.get('namespace', '-')}/{meta.get('name')}"
        if kind == "PersistentVolumeClaim":
            needs.storage += quantity(spec["resources"]["requests"]["storage"])
            continue
        counted = pods_of(doc, nodes, scaled)
        if counted is None:
            continue
        pod, copies = counted
        cpu, memory = pod_requests(pod)
        if (memory, cpu) > (needs.largest_pod[2], needs.largest_pod[1]):
            needs.largest_pod = (label, cpu, memory)
        needs.cpu_m += cpu * copies
        needs.memory += memory * copies
        needs.parts.append((label, cpu * copies, memory * copies))
        for claim in spec.get("volumeClaimTemplates") or []:
            storage = claim["spec"]["resources"]["requests"]["storage"]
            needs.storage += quantity(storage) * copies
    return needs


def pods_of(
    doc: dict, nodes: int, scaled: dict[tuple[str, str, str], int]
) -> tuple[dict, int] | None:
    """(pod spec, how many of its pods run at once) of a workload, None for other kinds.
    `scaled`: autoscaler_minimums of the render."""
    kind, spec, meta = doc.get("kind"), doc.get("spec") or {}, doc.get("metadata") or {}
    if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        # Without spec.replicas an autoscaler owns the count: its minimum.
        default = scaled.get((meta.get("namespace"), kind, meta.get("name")), 1)
        copies = spec.get("replicas", default)
    elif kind == "DaemonSet":
        copies = nodes
    elif kind in ("Job", "CronJob"):
        if kind == "CronJob":
            # One run at a time (our CronJobs forbid concurrent runs) while it runs; its
            # pod template is one level down.
            spec = spec["jobTemplate"]["spec"]
        copies = spec.get("parallelism", 1)
    else:
        return None
    return spec["template"]["spec"], copies


def autoscaler_minimums(docs: list[dict]) -> dict[tuple[str, str, str], int]:
    """(namespace, kind, name) of each HorizontalPodAutoscaler's target -> its minReplicas."""
    minimums = {}
    for doc in docs:
        if doc.get("kind") != "HorizontalPodAutoscaler":
            continue
        target = doc["spec"]["scaleTargetRef"]
        key = (doc["metadata"].get("namespace"), target["kind"], target["name"])
        minimums[key] = doc["spec"].get("minReplicas", 1)
    return minimums


@dataclass(frozen=True)
class Sizing:
    cpus: int
    memory_mb: int
    disk_mb: int
    explanation: str


def minikube_sizing(needs: Needs) -> Sizing:
    """The Minikube node that fits the render, and how that was computed."""
    factor = 1 + HEADROOM_PERCENT / 100
    cpu_m = (needs.cpu_m + MINIKUBE_SYSTEM_CPU_M) * factor
    memory = (needs.memory + MINIKUBE_SYSTEM_MEMORY) * factor + MINIKUBE_OS_MEMORY
    disk = needs.storage + IMAGES_AND_SYSTEM_DISK
    sizing = Sizing(
        cpus=max(2, math.ceil(cpu_m / 1000)),
        memory_mb=math.ceil(memory / 2**20 / 256) * 256,
        disk_mb=math.ceil(disk / 2**20 / 1024) * 1024,
        explanation="",
    )
    explanation = (
        f"CPU: render requests {needs.cpu_m:.0f}m + Kubernetes system pods "
        f"{MINIKUBE_SYSTEM_CPU_M}m, +{HEADROOM_PERCENT}% headroom = {cpu_m:.0f}m -> "
        f"{sizing.cpus} CPUs\n"
        f"memory: render requests {mib(needs.memory)} + system pods "
        f"{mib(MINIKUBE_SYSTEM_MEMORY)}, +{HEADROOM_PERCENT}% headroom, + "
        f"{mib(MINIKUBE_OS_MEMORY)} for the node's OS and runtime = {mib(memory)} -> "
        f"{sizing.memory_mb} MB\n"
        f"disk: volume claims {mib(needs.storage)} + {mib(IMAGES_AND_SYSTEM_DISK)} for "
        f"images and system = {mib(disk)} -> {sizing.disk_mb} MB"
    )
    return Sizing(sizing.cpus, sizing.memory_mb, sizing.disk_mb, explanation)


@dataclass(frozen=True)
class Capacity:
    ready_nodes: int
    alloc_cpu_m: float
    alloc_memory: float
    used_cpu_m: float  # requested by pods that are not ours and not finished
    used_memory: float
    largest_node: tuple[float, float]  # (cpu_m, memory) allocatable of the biggest node


def capacity(nodes: list[dict], pods: list[dict]) -> Capacity:
    ready = [n for n in nodes if _node_ready(n)]
    sizes = [
        (
            quantity(n["status"]["allocatable"]["cpu"]) * 1000,
            quantity(n["status"]["allocatable"]["memory"]),
        )
        for n in ready
    ]
    used_cpu = used_mem = 0.0
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        phase = pod.get("status", {}).get("phase")
        if labels.get("app.kubernetes.io/part-of") == "obs-stack" or phase in (
            "Succeeded",
            "Failed",
        ):
            continue
        cpu, memory = pod_requests(pod["spec"])
        used_cpu, used_mem = used_cpu + cpu, used_mem + memory
    return Capacity(
        len(ready),
        sum(c for c, _ in sizes),
        sum(m for _, m in sizes),
        used_cpu,
        used_mem,
        max(sizes, key=lambda size: (size[1], size[0]), default=(0.0, 0.0)),
    )


def host_shortfall(sizing: Sizing, minikube_home: Path) -> list[str]:
    """What this machine lacks for a new Minikube node of `sizing`: CPUs, memory (Linux:
    /proc/meminfo; elsewhere the driver's VM settings decide, and Minikube checks), and
    free disk where Minikube keeps its machines."""
    problems = []
    cpus = os.cpu_count() or 0
    if cpus < sizing.cpus:
        problems.append(f"CPUs: {sizing.cpus} needed, this machine has {cpus}")
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total_kib = next(
            int(line.split()[1])
            for line in meminfo.read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        if total_kib * 1024 < sizing.memory_mb * 2**20:
            problems.append(
                f"memory: {sizing.memory_mb} MB needed, this machine has {total_kib // 1024} MB"
            )
    where = minikube_home if minikube_home.exists() else Path.home()
    free = shutil.disk_usage(where).free
    if free < sizing.disk_mb * 2**20:
        problems.append(f"disk: {sizing.disk_mb} MB needed, {free // 2**20} MB free under {where}")
    return problems


def cluster_fit(needs: Needs, nodes: list[dict], pods: list[dict]) -> str:
    """The numbers behind "it fits", for the terminal."""
    have = capacity(nodes, pods)
    factor = 1 + HEADROOM_PERCENT / 100
    return (
        f"the stack requests {needs.cpu_m:.0f}m CPU and {mib(needs.memory)} memory "
        f"(the sum of its pods' requests), {needs.cpu_m * factor:.0f}m and "
        f"{mib(needs.memory * factor)} with {HEADROOM_PERCENT}% headroom;\n"
        f"the cluster has {have.alloc_cpu_m - have.used_cpu_m:.0f}m CPU and "
        f"{mib(have.alloc_memory - have.used_memory)} free ({have.alloc_cpu_m:.0f}m and "
        f"{mib(have.alloc_memory)} allocatable on {have.ready_nodes} Ready node(s), "
        f"{have.used_cpu_m:.0f}m and {mib(have.used_memory)} requested by other pods): it fits."
    )


def cluster_shortfall(needs: Needs, nodes: list[dict], pods: list[dict]) -> list[str]:
    """On an existing cluster: what the render's requests (+headroom) exceed, given the
    Ready nodes' allocatable resources and what other pods already request; and whether
    the largest pod fits on the largest node at all."""
    factor = 1 + HEADROOM_PERCENT / 100
    have = capacity(nodes, pods)
    alloc_cpu, alloc_mem = have.alloc_cpu_m, have.alloc_memory
    used_cpu, used_mem = have.used_cpu_m, have.used_memory
    ready = range(have.ready_nodes)
    problems = []
    if not ready:
        problems.append("no node is Ready")
    free_cpu, free_mem = alloc_cpu - used_cpu, alloc_mem - used_mem
    if needs.cpu_m * factor > free_cpu:
        problems.append(
            f"CPU: the stack requests {needs.cpu_m:.0f}m (+{HEADROOM_PERCENT}% = "
            f"{needs.cpu_m * factor:.0f}m); the cluster has {free_cpu:.0f}m free "
            f"({alloc_cpu:.0f}m allocatable on {len(ready)} Ready nodes, "
            f"{used_cpu:.0f}m requested by other pods)"
        )
    if needs.memory * factor > free_mem:
        problems.append(
            f"memory: the stack requests {mib(needs.memory)} (+{HEADROOM_PERCENT}% = "
            f"{mib(needs.memory * factor)}); the cluster has {mib(free_mem)} free "
            f"({mib(alloc_mem)} allocatable, {mib(used_mem)} requested by other pods)"
        )
    label, pod_cpu, pod_mem = needs.largest_pod
    node_cpu, node_mem = have.largest_node
    if ready and (pod_cpu > node_cpu or pod_mem > node_mem):
        problems.append(
            f"{label}: one pod requests {pod_cpu:.0f}m CPU and {mib(pod_mem)}, more than the "
            f"largest node has allocatable ({node_cpu:.0f}m, {mib(node_mem)}): it could "
            "never be scheduled"
        )
    return problems


DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


def storage_shortfall(render_yaml: str, storage_classes: list[dict]) -> list[str]:
    """Claims without a storageClassName need a default StorageClass, or stay Pending."""
    default_classes = [
        c["metadata"]["name"]
        for c in storage_classes
        if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS) == "true"
    ]
    if default_classes:
        return []
    claims = []
    for doc in yaml.safe_load_all(render_yaml):
        if not doc:
            continue
        meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
        if doc.get("kind") == "PersistentVolumeClaim" and not spec.get("storageClassName"):
            claims.append(f"PersistentVolumeClaim/{meta.get('namespace')}/{meta.get('name')}")
        for claim in spec.get("volumeClaimTemplates") or []:
            if not claim["spec"].get("storageClassName"):
                claims.append(
                    f"{doc['kind']}/{meta.get('namespace')}/{meta.get('name')} "
                    f"volume claim {claim['metadata']['name']!r}"
                )
    if not claims:
        return []
    return [
        "no default StorageClass, so these claims would stay Pending: "
        + ", ".join(claims)
        + f" (mark one as the default: kubectl annotate storageclass NAME {DEFAULT_CLASS}=true)"
    ]


def _node_ready(node: dict) -> bool:
    conditions = node.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def mib(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"
