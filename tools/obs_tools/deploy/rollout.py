"""Readiness of the stack's workloads: waiting for it (`make up`), showing it (`make
status`), and explaining a failure (events and last log lines). Reads no environment
variables.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from obs_tools.common.wait import GiveUp, PollTimeout, poll_until

from .contract import SELECTOR, WORKLOAD_KINDS
from .kubectl import DeployError, Kubectl


@dataclass(frozen=True)
class Workload:
    kind: str
    namespace: str
    name: str
    ready: int
    desired: int
    done: bool
    failed: str | None = None  # why it can never become ready (a Job out of retries)

    @property
    def label(self) -> str:
        return f"{self.kind.lower()}/{self.name} ({self.namespace})"


def workload_state(obj: dict) -> Workload:
    """How far one Deployment, StatefulSet, DaemonSet or Job is, as rollout status judges."""
    kind, meta = obj["kind"], obj["metadata"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    current = status.get("observedGeneration", 0) >= meta.get("generation", 0)
    failed = None
    if kind == "Deployment":
        desired = spec.get("replicas", 1)
        ready = status.get("availableReplicas", 0)
        done = current and status.get("updatedReplicas", 0) == desired and ready == desired
        done = done and status.get("replicas", 0) == desired
    elif kind == "StatefulSet":
        desired = spec.get("replicas", 1)
        ready = status.get("readyReplicas", 0)
        revision_ok = status.get("updateRevision") in (None, status.get("currentRevision"))
        done = current and ready == desired and revision_ok
        done = done and status.get("updatedReplicas", desired) == desired
    elif kind == "DaemonSet":
        desired = status.get("desiredNumberScheduled", 0)
        ready = status.get("numberReady", 0)
        done = (
            current
            and status.get("updatedNumberScheduled", 0) == desired
            and ready == desired
            and status.get("numberAvailable", 0) == desired
        )
    elif kind == "Job":
        desired = spec.get("completions", 1)
        ready = status.get("succeeded", 0)
        done = ready >= desired
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Failed" and condition.get("status") == "True":
                failed = f"{condition.get('reason')}: {condition.get('message')}"
    else:
        raise ValueError(f"not a workload kind: {kind}")
    return Workload(kind, meta["namespace"], meta["name"], ready, desired, done, failed)


def list_workloads(kubectl: Kubectl) -> list[Workload]:
    kinds = ",".join(k.lower() for k in WORKLOAD_KINDS)
    items = kubectl.json("get", kinds, "--all-namespaces", "-l", SELECTOR)["items"]
    return sorted(
        (workload_state(item) for item in items), key=lambda w: (w.namespace, w.kind, w.name)
    )


def pod_problems(kubectl: Kubectl, namespace: str) -> dict[str, list[str]]:
    """{pod name: waiting reasons and not-ready conditions} for the namespace's pods."""
    problems = {}
    for pod in kubectl.json("get", "pods", "-n", namespace, "-l", SELECTOR)["items"]:
        reasons = []
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting")
            if waiting:
                reasons.append(f"{status['name']}: {waiting.get('reason')}")
            if status.get("restartCount"):
                reasons.append(f"{status['name']}: {status['restartCount']} restarts")
        phase = (pod.get("status") or {}).get("phase")
        if phase not in ("Running", "Succeeded"):
            reasons.append(f"phase {phase}")
        if reasons:
            problems[pod["metadata"]["name"]] = reasons
    return problems


def explain(kubectl: Kubectl, workload: Workload, log_lines: int = 20) -> str:
    """Events of the workload and its pods, and each pod's last log lines."""
    namespace = workload.namespace
    lines = [f"--- {workload.label}: {workload.ready}/{workload.desired} ready ---"]
    events = kubectl.json("get", "events", "-n", namespace)["items"]
    pods = [
        p
        for p in kubectl.json("get", "pods", "-n", namespace, "-l", SELECTOR)["items"]
        if _owned_by(p, workload)
    ]
    names = {workload.name} | {p["metadata"]["name"] for p in pods}

    def when(event: dict) -> str:
        # Older components fill lastTimestamp, newer ones (the scheduler) eventTime only.
        return event.get("lastTimestamp") or event.get("eventTime") or ""

    for event in sorted(events, key=when):
        involved = event.get("involvedObject") or {}
        if involved.get("name") in names or involved.get("name", "").startswith(workload.name):
            lines.append(
                f"  event {involved.get('kind')}/{involved.get('name')}: "
                f"{event.get('type')} {event.get('reason')}: {event.get('message')}"
            )
    for pod in pods:
        started = {
            status["name"]
            for status in (pod.get("status") or {}).get("containerStatuses") or []
            if set(status.get("state") or {}) & {"running", "terminated"}
            or status.get("lastState", {}).get("terminated")
        }
        for container in pod["spec"]["containers"]:
            if container["name"] not in started:
                phase = (pod.get("status") or {}).get("phase")
                lines.append(
                    f"  {pod['metadata']['name']}/{container['name']}: no log, the container "
                    f"has not started (pod {phase})"
                )
                continue
            result = kubectl.run(
                "logs", "-n", namespace, pod["metadata"]["name"], "-c", container["name"],
                f"--tail={log_lines}", check=False,
            )  # fmt: skip
            text = (result.stdout or result.stderr).rstrip() or "(no log lines)"
            lines.append(f"  last log lines of {pod['metadata']['name']}/{container['name']}:")
            lines.extend(f"    {line}" for line in text.splitlines())
    return "\n".join(lines)


def _owned_by(pod: dict, workload: Workload) -> bool:
    # Pods of a Deployment belong to its ReplicaSets, named "<deployment>-<hash>".
    for owner in pod["metadata"].get("ownerReferences") or []:
        name = owner.get("name", "")
        if name == workload.name or (
            workload.kind == "Deployment" and name.rsplit("-", 1)[0] == workload.name
        ):
            return True
    return False


def wait_ready(
    kubectl: Kubectl,
    say: Callable[[str], None],
    timeout: float,
    interval: float = 2.0,
    expected: set[tuple[str, str, str]] | None = None,
    on_timeout: str = "",
) -> list[Workload]:
    """Wait until every workload is ready, printing progress when it changes; on
    timeout (or a Job that failed), raise naming the components, with their events
    and logs. `expected`: (kind, namespace, name) that must exist (from the render);
    `on_timeout`: a last line for the timeout's message."""
    start = time.monotonic()
    seen = {"line": "", "pending": [], "missing": []}

    def all_ready():
        workloads = list_workloads(kubectl)
        present = {(w.kind, w.namespace, w.name) for w in workloads}
        seen["missing"] = missing = sorted((expected or set()) - present)
        seen["pending"] = pending = [w for w in workloads if not w.done]
        line = (
            f"{len(workloads) - len(pending)}/{len(workloads)} ready"
            + (f"; waiting for {', '.join(f'{w.name} {w.ready}/{w.desired}' for w in pending)}"
               if pending else "")
            + (f"; not created yet: {', '.join(m[2] for m in missing)}" if missing else "")
        )  # fmt: skip
        if line != seen["line"]:
            say(f"  [{time.monotonic() - start:4.0f} s] {line}")
            seen["line"] = line
        failed = [w for w in workloads if w.failed]
        if failed:
            raise GiveUp(
                "failed: " + ", ".join(f"{w.label}: {w.failed}" for w in failed) + "\n"
                + "\n".join(explain(kubectl, w) for w in failed)
            )  # fmt: skip
        return workloads if workloads and not pending and not missing else None

    try:
        return poll_until(all_ready, "the stack's workloads", timeout, interval)
    except GiveUp as exc:
        raise DeployError(str(exc)) from None
    except PollTimeout:
        pending, missing = seen["pending"], seen["missing"]
        names = ", ".join([w.label for w in pending] + [f"{m[0]}/{m[2]}" for m in missing])
        raise DeployError(
            f"not ready after {timeout:g} s: {names}\n"
            + "\n".join(explain(kubectl, w) for w in pending)
            + (f"\n{on_timeout}" if on_timeout else "")
        ) from None
