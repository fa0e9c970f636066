"""What each container of the k8s/ render requests and may use, and the totals.

Usage: obs-deploy totals [--markdown] [RENDER]
RENDER is the output of `kubectl kustomize k8s/` (a file, or - for stdin); without it,
kubectl renders k8s/ itself. Reads no environment variables (kubectl reads KUBECONFIG,
but rendering needs no cluster). docs/kubernetes.md's resource table is this command's
--markdown output.

The totals count what the scheduler reserves: each pod's effective request (its
containers added up, or its largest init container if that is larger), times replicas,
DaemonSet pods once per node (one on Minikube), Jobs' pods while they run. Limits are
added up the same way; they may exceed the node, since pods rarely all peak at once.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from obs_tools.common.paths import REPO

from .resources import autoscaler_minimums, minikube_sizing, pods_of, quantity, render_needs


@dataclass(frozen=True)
class Row:
    namespace: str
    workload: str  # kind/name
    container: str  # "(init) name" for init containers
    image: str
    copies: int
    requests: tuple[float, float]  # (CPU millicores, memory bytes) of one container
    limits: tuple[float, float]


def _cpu_memory(values: dict | None) -> tuple[float, float]:
    values = values or {}
    return quantity(values.get("cpu", 0)) * 1000, quantity(values.get("memory", 0))


def rows(render_yaml: str, nodes: int = 1) -> list[Row]:
    """One row per container of every workload in the render."""
    found = []
    docs = [doc for doc in yaml.safe_load_all(render_yaml) if doc]
    scaled = autoscaler_minimums(docs)
    for doc in docs:
        counted = pods_of(doc, nodes, scaled)
        if counted is None:
            continue
        pod, copies = counted
        meta = doc["metadata"]
        containers = [("(init) ", c) for c in pod.get("initContainers") or []]
        containers += [("", c) for c in pod["containers"]]
        for prefix, container in containers:
            resources = container.get("resources") or {}
            found.append(
                Row(
                    namespace=meta.get("namespace", "default"),
                    workload=f"{doc['kind']}/{meta['name']}",
                    container=prefix + container["name"],
                    image=container["image"],
                    copies=copies,
                    requests=_cpu_memory(resources.get("requests")),
                    limits=_cpu_memory(resources.get("limits")),
                )
            )
    return found


def limit_totals(render_yaml: str, nodes: int = 1) -> tuple[float, float]:
    """Sum of limits, counted per pod as the requests are (init containers by max)."""
    cpu = memory = 0.0
    pods: dict[tuple[str, str], list[Row]] = {}
    for row in rows(render_yaml, nodes):
        pods.setdefault((row.namespace, row.workload), []).append(row)
    for containers in pods.values():
        main = [r for r in containers if not r.container.startswith("(init)")]
        init = [r for r in containers if r.container.startswith("(init)")]
        pod_cpu = sum(r.limits[0] for r in main)
        pod_memory = sum(r.limits[1] for r in main)
        for r in init:
            pod_cpu, pod_memory = max(pod_cpu, r.limits[0]), max(pod_memory, r.limits[1])
        cpu += pod_cpu * containers[0].copies
        memory += pod_memory * containers[0].copies
    return cpu, memory


def cpu_text(millicores: float) -> str:
    return f"{millicores:.0f}m"


def memory_text(value: float) -> str:
    return f"{value / 2**20:.0f}Mi"


def report(render_yaml: str, markdown: bool = False) -> str:
    table = rows(render_yaml)
    needs = render_needs(render_yaml, nodes=1)
    limit_cpu, limit_memory = limit_totals(render_yaml)
    sizing = minikube_sizing(needs)
    header = ["namespace", "workload", "container", "image", "copies", "requests", "limits"]
    body = [
        [
            r.namespace,
            r.workload,
            r.container,
            r.image,
            str(r.copies),
            f"{cpu_text(r.requests[0])} / {memory_text(r.requests[1])}",
            f"{cpu_text(r.limits[0])} / {memory_text(r.limits[1])}",
        ]
        for r in table
    ]
    totals = (
        f"Total requests: {cpu_text(needs.cpu_m)} CPU, {memory_text(needs.memory)} memory "
        f"(what the scheduler reserves; volume claims {memory_text(needs.storage)}).\n"
        f"Total limits: {cpu_text(limit_cpu)} CPU, {memory_text(limit_memory)} memory.\n"
        f"Minikube profile `make up` creates for it:\n{sizing.explanation}"
    )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines) + "\n\n" + totals
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *body]
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n\n" + totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="obs-deploy totals", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("render", nargs="?", help="a render of k8s/ (file or -); default: k8s/")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = parser.parse_args(argv)
    if args.render == "-":
        render_yaml = sys.stdin.read()
    elif args.render:
        render_yaml = Path(args.render).read_text()
    else:
        try:
            render_yaml = subprocess.run(
                ["kubectl", "kustomize", str(REPO / "k8s")],
                capture_output=True, text=True, check=True, timeout=120,
            ).stdout  # fmt: skip
        except FileNotFoundError:
            print("error: kubectl is not installed (it renders k8s/)", file=sys.stderr)
            return 1
        except subprocess.CalledProcessError as exc:
            print(f"error: kubectl kustomize k8s/ failed:\n{exc.stderr.strip()}", file=sys.stderr)
            return 1
    print(report(render_yaml, markdown=args.markdown))
    return 0
