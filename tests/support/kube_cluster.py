"""A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager
and kube-scheduler on free 127.0.0.1 ports, with their own PKI and kubeconfig in a scratch
directory; optionally kwok (simulated nodes, one by default, on which pods are marked
Running and PVCs bound) and kube-state-metrics. The binaries are the ones
`scripts/bootstrap.sh k8s` builds (obs_tools.common.versions.k8s_binary).

Reads no environment variables itself (the processes inherit the test's environment).

What this exercises and what it does not: the API objects (schema, defaulting, validation),
admission (Pod Security included), RBAC, the controllers (Deployments make ReplicaSets and
pods, StatefulSets make PVCs, the default ServiceAccount) and the scheduler (a pod too big
for the node stays Pending). kwok runs no containers: images, commands, probes, config
mounts and networking are not exercised there. For those, start it with kwok=False and
join a real node to it (tests/support/real_node.py: kubelet, containerd, kube-proxy,
CoreDNS).

Usage:
    with KubeCluster(tmp_dir, kwok=True) as cluster:
        cluster.kubectl("apply", "--server-side", "-f", path)
"""

from __future__ import annotations

import contextlib
import json
import shutil
import ssl
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from obs_tools.common.processes import ManagedProcess
from obs_tools.common.versions import k8s_binary, kwok_stages_dir

from .polling import GiveUp, PollTimeout, free_port, poll_until

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
BOOTSTRAP_HINT = "run `scripts/bootstrap.sh k8s` (or `make bootstrap-k8s`)"

# The plugins Minikube turns on (its default apiserver extra-config), plus PodSecurity and
# Priority, which are on by default anyway: naming them makes the test fail loudly if a
# future release drops one rather than silently testing less.
ADMISSION_PLUGINS = (
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "DefaultStorageClass",
    "DefaultTolerationSeconds",
    "NodeRestriction",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "PodSecurity",
    "Priority",
)
SERVICE_CIDR = "10.96.0.0/16"
# How many sets of free ports start() tries before it gives up (see start()).
PORT_ATTEMPTS = 3

# kwok's stages (from its module's kustomize/stage/): nodes become Ready and keep a lease;
# pods go Ready, Jobs' pods complete, deleted pods go away; PVCs get a PV and bind.
KWOK_STAGES = (
    "node/fast/node-initialize",
    "node/heartbeat-with-lease/node-heartbeat-with-lease",
    "pod/fast/pod-ready",
    "pod/fast/pod-complete",
    "pod/fast/pod-delete",
    "volume/fast/pv-bind",
    "volume/fast/pv-delete",
    "volume/fast/pvc-provision",
    "volume/fast/pvc-delete",
)
# The default StorageClass (`kwok-volume`, Immediate binding) that the volume stages
# provision for: without one a StatefulSet's PVCs stay Pending.
KWOK_STORAGE_CLASS = "volume/fast/storage-class"


class ClusterError(AssertionError):
    """A component failed to start or answer; the message names it and quotes its log."""


def missing_binaries(names: Iterable[str] = CONTROL_PLANE) -> list[Path]:
    """The bootstrap's binaries among `names` that are not built yet."""
    return [path for path in (k8s_binary(name) for name in names) if not path.is_file()]


@dataclass(frozen=True)
class NodeCapacity:
    """The simulated node's capacity; the default is a Minikube VM of 4 CPUs and 8 GiB."""

    cpu: str = "4"
    memory: str = "8Gi"
    pods: str = "110"
    ephemeral_storage: str = "20Gi"

    def as_resources(self) -> dict[str, str]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": self.pods,
            "ephemeral-storage": self.ephemeral_storage,
        }


@dataclass
class Ports:
    etcd_client: int = field(default_factory=free_port)
    etcd_peer: int = field(default_factory=free_port)
    apiserver: int = field(default_factory=free_port)
    controller_manager: int = field(default_factory=free_port)
    scheduler: int = field(default_factory=free_port)
    ksm: int = field(default_factory=free_port)
    ksm_telemetry: int = field(default_factory=free_port)


def _openssl(cwd: Path, *args: str) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise ClusterError(f"PKI: `openssl {' '.join(args)}` failed:\n{result.stderr}")


def make_pki(directory: Path) -> None:
    """A CA, the API server's serving certificate, an admin client certificate
    (group system:masters) and the service-account signing key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    days = "3650"
    _openssl(directory, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", days,
             "-subj", "/CN=obs-stack-test-ca", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    sans = ",".join(
        ["IP:127.0.0.1", "IP:10.96.0.1", "DNS:localhost", "DNS:kubernetes"]
        + [f"DNS:kubernetes.default{s}" for s in ("", ".svc", ".svc.cluster.local")]
    )
    (directory / "server.ext").write_text(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject, ext in (
        ("apiserver", "/CN=kube-apiserver", "server.ext"),
        ("admin", "/O=system:masters/CN=obs-stack-test-admin", "client.ext"),
    ):
        _openssl(directory, "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                 "-keyout", f"{name}.key", "-out", f"{name}.csr")  # fmt: skip
        _openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt",
                 "-CAkey", "ca.key", "-CAcreateserial", "-days", days, "-extfile", ext,
                 "-out", f"{name}.crt")  # fmt: skip
    _openssl(directory, "genrsa", "-out", "sa.key", "2048")
    _openssl(directory, "rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")


class KubeCluster:
    """Start with start() or `with`; stop() stops every process by PID, in reverse order."""

    def __init__(
        self,
        workdir: Path,
        *,
        kwok: bool = True,
        node_name: str = "kwok-node-0",
        node_capacity: NodeCapacity | None = None,
        kwok_nodes: int = 1,
        kube_state_metrics: bool = False,
        admission_plugins: Sequence[str] = ADMISSION_PLUGINS,
        start_timeout: float = 90.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.pki = self.workdir / "pki"
        self.logs = self.workdir / "logs"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.with_kwok = kwok
        self.node_name = node_name
        # With kwok_nodes > 1 (spread, anti-affinity and drains need several nodes): node_name
        # first, then the same name numbered 1, 2, ... (kwok-node-0, kwok-node-1, ...; "-N"
        # is appended to a name that does not end in -0); each its own
        # kubernetes.io/hostname, all of node_capacity.
        if kwok_nodes < 1:
            raise ValueError(f"kwok_nodes must be at least 1, not {kwok_nodes}")
        stem = node_name.removesuffix("-0")
        self.node_names = [node_name, *(f"{stem}-{i}" for i in range(1, kwok_nodes))]
        self.node_capacity = node_capacity or NodeCapacity()
        self.with_ksm = kube_state_metrics
        self.admission_plugins = tuple(admission_plugins)
        self.start_timeout = start_timeout
        self.ports = Ports()
        self.processes: dict[str, ManagedProcess] = {}

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> KubeCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> KubeCluster:
        needed = [*CONTROL_PLANE]
        needed += ["kwok"] if self.with_kwok else []
        needed += ["kube-state-metrics"] if self.with_ksm else []
        missing = missing_binaries(needed)
        if missing:
            raise ClusterError(f"not built: {', '.join(map(str, missing))}; {BOOTSTRAP_HINT}")
        self.logs.mkdir(parents=True, exist_ok=True)
        make_pki(self.pki)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self._write_kubeconfig()
            try:
                self._start_etcd()
                self._start_apiserver()
                self._start_controller_manager()
                self._start_scheduler()
                if self.with_kwok:
                    self._start_kwok()
                if self.with_ksm:
                    self._start_kube_state_metrics()
                return self
            except ClusterError as exc:
                self.stop()
                # A port found free can be taken before the component binds it: any
                # outgoing connection on the machine may get it as its ephemeral port
                # (seen once in CI: "bind: address already in use"). New ports, new
                # etcd data (its member URLs name the old ones), and another try.
                if "address already in use" not in str(exc) or attempt == PORT_ATTEMPTS:
                    raise
                self.ports = Ports()
                shutil.rmtree(self.workdir / "etcd-data", ignore_errors=True)
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        self.processes.clear()

    # --- helpers for tests -------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def ksm_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.ksm}"

    def kubectl(
        self, *args: str, stdin: str | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess:
        """kubectl v<K8S_VERSION> against this cluster; check=True raises with its stderr."""
        argv = [str(k8s_binary("kubectl")), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"`kubectl {' '.join(args)}` failed (exit {result.returncode}):\n"
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def get_json(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def failure_context(self, *names: str) -> str:
        """The last log lines of the named components (all if none named)."""
        chosen = names or tuple(self.processes)
        return "\n".join(
            self.processes[name].describe_failure() for name in chosen if name in self.processes
        )

    def check_running(self) -> None:
        """Fail naming any component that has exited since it started."""
        dead = [p for p in self.processes.values() if not p.running()]
        if dead:
            raise ClusterError("\n".join(p.describe_failure() for p in dead))

    # --- components ----------------------------------------------------------------------

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "obs-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self.pki / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(self.pki / "admin.crt"),
                        "client-key": str(self.pki / "admin.key"),
                    },
                }
            ],
            "contexts": [{"name": "obs-test", "context": {"cluster": "obs-test", "user": "admin"}}],
            "current-context": "obs-test",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))

    def _spawn(self, name: str, argv: Sequence[str]) -> ManagedProcess:
        process = ManagedProcess(name, [str(k8s_binary(name)), *argv], self.logs)
        self.processes[name] = process
        return process

    def _wait(self, process: ManagedProcess, what: str, condition) -> None:
        """Poll `condition` until truthy; fail naming the component if it exits or stalls."""

        def ready():
            if not process.running():
                raise GiveUp(
                    f"{process.name} exited with code {process.proc.returncode} before "
                    f"{what}\n{process.tail()}"
                )
            return condition()

        try:
            poll_until(ready, f"{process.name}: {what}", self.start_timeout)
        except PollTimeout as exc:
            raise ClusterError(f"{exc}\n{process.tail()}") from None
        except GiveUp as exc:
            raise ClusterError(str(exc)) from None

    def _https_client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def _start_etcd(self) -> None:
        p = self.ports
        client = f"http://127.0.0.1:{p.etcd_client}"
        peer = f"http://127.0.0.1:{p.etcd_peer}"
        process = self._spawn(
            "etcd",
            [
                "--name=obs-test",
                f"--data-dir={self.workdir / 'etcd-data'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=obs-test={peer}",
                # A throwaway store: durability costs seconds per apply on a slow disk.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait(
            process,
            f"healthy on {client}/health",
            lambda: httpx.get(f"{client}/health", timeout=2).json().get("health") == "true",
        )

    def _start_apiserver(self) -> None:
        pki = self.pki
        process = self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports.apiserver}",
                # No kubelet reports endpoints for the `kubernetes` Service here.
                "--endpoint-reconciler-type=none",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--authorization-mode=Node,RBAC",
                # Reach a kubelet (port-forward, logs, exec) at the node's InternalIP,
                # as kubeadm, and so Minikube, configures it (its controlplane
                # manifests.go; found by code search, not read at a tag): the default
                # tries the Hostname first, and a real node's name resolves nowhere here.
                "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
                f"--enable-admission-plugins={','.join(self.admission_plugins)}",
                # Fluent Bit's namespace is PSA `privileged` (hostPath): as on Minikube.
                "--allow-privileged=true",
                "--profiling=false",
            ],
        )
        context = self._https_client_context()
        self._wait(
            process,
            f"ready on {self.server}/readyz",
            lambda: (
                httpx.get(f"{self.server}/readyz", verify=context, timeout=2).status_code == 200
            ),
        )

    def _component_healthz(self, process: ManagedProcess, port: int) -> None:
        # Self-signed serving certificates; /healthz needs no authentication.
        url = f"https://127.0.0.1:{port}/healthz"
        self._wait(
            process,
            f"healthy on {url}",
            lambda: httpx.get(url, verify=False, timeout=2).status_code == 200,
        )

    def _start_controller_manager(self) -> None:
        pki = self.pki
        process = self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports.controller_manager}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ],
        )
        self._component_healthz(process, self.ports.controller_manager)
        # Pods need their namespace's `default` ServiceAccount, which this controller makes.
        self._wait(
            process,
            "the default ServiceAccount exists",
            lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
        )

    def _start_scheduler(self) -> None:
        process = self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports.scheduler}",
            ],
        )
        self._component_healthz(process, self.ports.scheduler)

    def _stage_files(self, names: Iterable[str]) -> list[Path]:
        stages = kwok_stages_dir()
        paths = [stages / f"{name}.yaml" for name in names]
        absent = [p for p in paths if not p.is_file()]
        if absent:
            raise ClusterError(
                f"kwok stages missing: {', '.join(map(str, absent))}; {BOOTSTRAP_HINT}"
            )
        return paths

    def _start_kwok(self) -> None:
        stages = self.workdir / "kwok-stages.yaml"
        stages.write_text(
            "".join(f"---\n{p.read_text()}\n" for p in self._stage_files(KWOK_STAGES))
        )
        process = self._spawn(
            "kwok",
            [
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=true",
                # Without this the node-lifecycle controller marks the node NotReady after
                # about 50 s and every pod unready, and kwok never turns them back.
                "--node-lease-duration-seconds=40",
                f"--config={stages}",
            ],
        )
        (storage_class,) = self._stage_files([KWOK_STORAGE_CLASS])
        self.kubectl("apply", "--server-side", "-f", str(storage_class))
        nodes = [self._node(name) for name in self.node_names]
        self.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(nodes))

        def nodes_ready() -> bool:
            for name in self.node_names:
                node = self.get_json("node", name)
                conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
                if conditions.get("Ready") != "True":
                    return False
            return True

        self._wait(process, f"node(s) {', '.join(self.node_names)} Ready", nodes_ready)

    def _node(self, name: str) -> dict:
        resources = self.node_capacity.as_resources()
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "status": {"capacity": resources, "allocatable": resources},
        }

    def _start_kube_state_metrics(self) -> None:
        process = self._spawn(
            "kube-state-metrics",
            [
                f"--kubeconfig={self.kubeconfig}",
                "--host=127.0.0.1",
                f"--port={self.ports.ksm}",
                "--telemetry-host=127.0.0.1",
                f"--telemetry-port={self.ports.ksm_telemetry}",
            ],
        )
        url = f"{self.ksm_url}/healthz"
        self._wait(
            process,
            f"healthy on {url}",
            lambda: httpx.get(url, timeout=2).status_code == 200,
        )

    # --- waiting on workloads --------------------------------------------------------------

    def rollout_status(self, kind: str, name: str, namespace: str, timeout: float = 60) -> None:
        """`kubectl rollout status`, failing with the workload's events and the cluster logs."""
        result = self.kubectl(
            "rollout", "status", f"{kind}/{name}", "-n", namespace, f"--timeout={timeout:g}s",
            check=False, timeout=timeout + 30,
        )  # fmt: skip
        if result.returncode != 0:
            events = self.kubectl(
                "get", "events", "-n", namespace, "--field-selector",
                f"involvedObject.name={name}", check=False,
            ).stdout  # fmt: skip
            raise ClusterError(
                f"{kind}/{name} in {namespace} did not roll out: {result.stderr.strip()}\n"
                f"events:\n{events}\n{self.failure_context('kube-scheduler', 'kwok')}"
            )


@contextlib.contextmanager
def kube_cluster(workdir: Path, **options):
    """KubeCluster as a context manager function, for fixtures."""
    cluster = KubeCluster(workdir, **options)
    with cluster:
        yield cluster
