"""The course's journey, step by step, against a stack deployed on the real node
(tests/k8s/test_course_journey.py): each step waits for one signal to arrive where the
course reads it, through the pods themselves, and fails naming the component that did
not deliver it, with that component's last log lines.

Every request goes to a Service's ClusterIP (kube-proxy's rules on this machine) or to
a pod's IP on the node's bridge: nothing here scrapes, mails or ships logs itself.

Reads no environment variables.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from .kube_cluster import KubeCluster
from .polling import GiveUp, PollTimeout, poll_until
from .real_node import KUBELET_LOGS
from .traces import jaeger_trace, services_of

APPS, MONITORING, LOGGING = "obs-apps", "obs-monitoring", "obs-logging"


class JourneyError(AssertionError):
    """A step of the journey did not see its signal; the message starts with the
    component that should have delivered it."""


@dataclass
class Stack:
    cluster: KubeCluster
    # Trace ids of the requests sent through the frontend, newest last.
    trace_ids: list[str] = field(default_factory=list)
    # The backend pod that crash_until_backoff held in CrashLoopBackOff.
    crash_looping: str | None = None

    def service_url(self, namespace: str, name: str, port: str | None = None) -> str:
        spec = self.cluster.get_json("service", name, "-n", namespace)["spec"]
        ports = spec["ports"]
        chosen = next((p for p in ports if p.get("name") == port), ports[0])
        return f"http://{spec['clusterIP']}:{chosen['port']}"

    def pods(self, namespace: str, name: str) -> list[dict]:
        selector = f"app.kubernetes.io/name={name}"
        return self.cluster.get_json("pods", "-n", namespace, "-l", selector)["items"]

    def secret(self, namespace: str, name: str, key: str) -> str:
        data = self.cluster.get_json("secret", name, "-n", namespace)["data"]
        return base64.b64decode(data[key]).decode()

    def log_tail(self, namespace: str, name: str, lines: int = 12) -> str:
        """The CRI log tail of every container of the workload's pods."""
        parts = []
        for pod in self.pods(namespace, name):
            meta = pod["metadata"]
            folder = KUBELET_LOGS / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
            for log in sorted(folder.glob("*/*.log")):
                text = log.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {meta['name']}/{log.parent.name}/{log.name}")
                parts += [line[:400] for line in text]
        return "\n".join(parts) or f"(no log of {namespace}/{name})"


def wait_for(component: str, what: str, condition, timeout: float, logs=None, interval=2.0):
    """poll_until, with a failure that names `component` and shows `logs()`."""
    try:
        return poll_until(condition, f"{component}: {what}", timeout, interval)
    except (PollTimeout, GiveUp) as exc:
        detail = f"\n{logs()}" if logs else ""
        raise JourneyError(f"{component}: {what}: not seen.\n{exc}{detail}") from None


# --- 1. traffic ----------------------------------------------------------------------------


def send_traffic(stack: Stack, requests: int = 10, timeout: float = 60) -> str:
    """GET /items through the frontend Service, each request its own sampled trace;
    returns the last trace id. The frontend answering /livez while /items fails means
    the wire to the backend is what is broken, and the error says so."""
    frontend = stack.service_url(APPS, "frontend")
    answers: list[str] = []

    def frontend_alive():
        response = httpx.get(f"{frontend}/livez", timeout=5)
        answers.append(f"/livez {response.status_code}")
        return response.status_code == 200

    wait_for(
        "frontend Service",
        f"{frontend}/livez answers 200",
        frontend_alive,
        timeout,
        logs=lambda: f"answers: {answers[-3:]}",
    )

    def items_served():
        trace_id = secrets.token_hex(16)
        header = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        response = httpx.get(f"{frontend}/items", headers=header, timeout=15)
        answers.append(f"/items {response.status_code} {response.text[:200]}")
        if response.status_code == 200:
            stack.trace_ids.append(trace_id)
        return len(stack.trace_ids) >= requests

    before = len(stack.trace_ids)
    requests += before
    wait_for(
        "backend Service (from the frontend)",
        f"{requests - before} answers 200 from {frontend}/items",
        items_served,
        timeout,
        interval=0.2,
        logs=lambda: f"answers: {answers[-3:]}\n" + stack.log_tail(APPS, "frontend"),
    )
    return stack.trace_ids[-1]


def load(stack: Stack, seconds: float = 20, workers: int = 4) -> int:
    """Requests through the frontend Service from `workers` threads for `seconds`, so
    that the footprint shows the stack at work, not idle; returns how many answered 200."""
    url = f"{stack.service_url(APPS, 'frontend')}/items"
    deadline = time.monotonic() + seconds

    def worker() -> int:
        done = 0
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    done += client.get(url).status_code == 200
        return done

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(lambda _: worker(), range(workers)))


# --- 2. Prometheus scrapes the pods --------------------------------------------------------


def prometheus_query(stack: Stack, query: str) -> list[dict]:
    url = stack.service_url(MONITORING, "prometheus")
    response = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def scraped_by_pod_ip(stack: Stack, service: str, timeout: float = 120) -> set[str]:
    """Prometheus (a pod) found every Ready pod of `service` through the API and scrapes
    it at its pod IP: up == 1 for each."""
    want = {p["status"]["podIP"] for p in stack.pods(APPS, service) if p["status"].get("podIP")}

    def all_up():
        found = prometheus_query(stack, f'up{{job="{service}"}} == 1')
        seen = {r["metric"]["instance"].rsplit(":", 1)[0] for r in found}
        return want and want <= seen and seen

    return wait_for(
        "Prometheus",
        f"up == 1 for {service} at pod IPs {sorted(want)}",
        all_up,
        timeout,
        logs=lambda: stack.log_tail(MONITORING, "prometheus"),
    )


# --- 3. the crash loop, its metric, its alert, its e-mail ------------------------------------


def crash_until_backoff(stack: Stack, timeout: float = 180) -> str:
    """POST /crash to one backend pod each time it is back up, until the kubelet holds
    it in CrashLoopBackOff; returns the pod's name."""
    pod = stack.pods(APPS, "backend")[0]
    name = pod["metadata"]["name"]

    def backoff():
        current = stack.cluster.get_json("pod", name, "-n", APPS)["status"]
        (status,) = current["containerStatuses"]
        if status.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff":
            return status["restartCount"] >= 3 and status
        if status.get("ready"):
            # The process exits while answering.
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(f"http://{current['podIP']}:5001/crash", timeout=5)
        return None

    wait_for(
        "kubelet",
        f"{name} in CrashLoopBackOff after three /crash",
        backoff,
        timeout,
        logs=lambda: stack.log_tail(APPS, "backend"),
        interval=1,
    )
    stack.crash_looping = name
    return name


def kube_state_metrics_reports(stack: Stack, pod: str, timeout: float = 120) -> None:
    query = (
        f'kube_pod_container_status_waiting_reason{{reason="CrashLoopBackOff",pod="{pod}"}}'
        " == 1 or max_over_time(kube_pod_container_status_restarts_total"
        f'{{pod="{pod}"}}[10m]) >= 3'
    )
    wait_for(
        "kube-state-metrics",
        f"CrashLoopBackOff or 3 restarts of {pod} in Prometheus",
        lambda: prometheus_query(stack, query),
        timeout,
        logs=lambda: stack.log_tail(MONITORING, "kube-state-metrics"),
    )


def alert_fires(stack: Stack, pod: str, timeout: float = 240) -> None:
    url = stack.service_url(MONITORING, "prometheus")

    def firing():
        alerts = httpx.get(f"{url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return [
            a
            for a in alerts
            if a["labels"].get("alertname") == "PodCrashLooping"
            and a["labels"].get("pod") == pod
            and a["state"] == "firing"
        ]

    wait_for(
        "Prometheus rule PodCrashLooping",
        f"firing for {pod}",
        firing,
        timeout,
        logs=lambda: stack.log_tail(MONITORING, "prometheus"),
    )


def mailcatcher_url(stack: Stack) -> str:
    return stack.service_url(MONITORING, "mailcatcher", "http")


def clear_mail(stack: Stack) -> None:
    httpx.delete(f"{mailcatcher_url(stack)}/api/v1/messages", timeout=10).raise_for_status()


def mail_naming(stack: Stack, pod: str, timeout: float = 180) -> dict:
    """The alert e-mail that Alertmanager (a pod) sent to the mail catcher (a pod),
    read through the catcher's API; it names the crash-looping pod."""
    url = mailcatcher_url(stack)

    def mailed():
        listed = httpx.get(f"{url}/api/v1/messages", timeout=10).json()["messages"]
        for summary in listed:
            message = httpx.get(f"{url}/api/v1/message/{summary['ID']}", timeout=10).json()
            if "PodCrashLooping" in message["Subject"] + message["Text"] and pod in (
                message["Subject"] + message["Text"]
            ):
                return message
        return None

    return wait_for(
        "Alertmanager",
        f"an e-mail naming {pod} at the mail catcher",
        mailed,
        timeout,
        logs=lambda: stack.log_tail(MONITORING, "alertmanager"),
    )


# --- 4. logs: containerd -> /var/log/pods -> Fluent Bit -> Elasticsearch ---------------------


def log_line_with_trace(stack: Stack, trace_id: str, timeout: float = 120) -> dict:
    """A log document in Elasticsearch (a pod) found by its trace.id, with the pod's
    metadata that Fluent Bit's kubernetes filter adds."""
    url = stack.service_url(MONITORING, "elasticsearch")
    auth = ("elastic", stack.secret(MONITORING, "elasticsearch-credentials", "elastic-password"))
    query = {"query": {"term": {"trace.id": trace_id}}}

    def found():
        response = httpx.post(f"{url}/obs-logs-*/_search", json=query, auth=auth, timeout=10)
        hits = response.json().get("hits", {}).get("hits", []) if response.is_success else []
        return hits and hits[0]["_source"]

    return wait_for(
        "Fluent Bit",
        f"a log line with trace.id {trace_id} in Elasticsearch",
        found,
        timeout,
        logs=lambda: stack.log_tail(LOGGING, "fluent-bit"),
    )


# --- 5. the trace in Jaeger -------------------------------------------------------------------


def trace_in_jaeger(stack: Stack, trace_id: str, timeout: float = 120) -> dict:
    url = stack.service_url(MONITORING, "jaeger", "http-ui")

    def complete():
        trace = jaeger_trace(url, trace_id)
        return trace and services_of(trace) >= {"frontend", "backend"} and trace

    return wait_for(
        "Jaeger (OTLP from the services)",
        f"trace {trace_id} across frontend and backend",
        complete,
        timeout,
        logs=lambda: stack.log_tail(MONITORING, "jaeger"),
    )


# --- 6. the retention CronJob -----------------------------------------------------------------


def run_cronjob_once(stack: Stack, cronjob: str, timeout: float = 120) -> None:
    """A Job made from the CronJob's template (`kubectl create job --from`), to its end."""
    job = f"{cronjob}-journey"
    stack.cluster.kubectl("create", "job", job, f"--from=cronjob/{cronjob}", "-n", MONITORING)

    def ended():
        status = stack.cluster.get_json("job", job, "-n", MONITORING).get("status", {})
        if status.get("failed"):
            raise GiveUp(f"Job {job} failed")
        return status.get("succeeded")

    wait_for(
        cronjob,
        f"Job {job} complete",
        ended,
        timeout,
        logs=lambda: stack.log_tail(MONITORING, cronjob),
    )
    stack.cluster.kubectl("delete", "job", job, "-n", MONITORING, "--wait=false")


def pretty(document: dict) -> str:
    return json.dumps(document, indent=1)[:3000]
