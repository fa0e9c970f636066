"""A real Kubernetes node for tests: containerd, the kubelet, kube-proxy and CoreDNS,
joined to a KubeCluster (tests/support/kube_cluster.py) on this machine.

Unlike kwok, this node runs containers: the kubelet pulls nothing (images are imported
from podman's storage), creates emptyDirs, applies fsGroup and the securityContext,
runs probes, restarts crashing containers and writes their logs to /var/log/pods in
CRI format. kube-proxy (iptables mode) gives Services their ClusterIP and CoreDNS
answers the cluster's names, so a pod reaches another through its Service exactly as
on Minikube. Recipe and measurements: shared/real-node-notes.md of this workplace.

Reads no environment variables itself; the processes inherit the test's environment.
Needs root (network, mounts, cgroups) and the binaries of `scripts/bootstrap.sh k8s`.

Network: pods live on a bridge of their own (POD_CIDR) in network namespaces that
containerd creates here. Two guards keep all their traffic on this machine: a route
sends the Service range to that bridge (so a ClusterIP without kube-proxy rules goes
nowhere), and a filter chain rejects any forwarded packet from a pod to an address
outside POD_CIDR. CoreDNS answers only cluster.local and forwards nothing.

Stopping removes everything: pods, containers and their shims, mounts, the network
namespaces, the bridge, kube-proxy's and our iptables rules, the pods' log folders.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import httpx
import yaml
from obs_tools.common.processes import ManagedProcess
from obs_tools.common.versions import k8s_binary

from .kube_cluster import BOOTSTRAP_HINT, SERVICE_CIDR, ClusterError, KubeCluster
from .polling import GiveUp, PollTimeout, free_port, poll_until

NODE_BINARIES = ("kubelet", "kube-proxy", "coredns")
# Debian packages that `scripts/bootstrap.sh k8s` installs for the node.
HOST_TOOLS = {
    "containerd": "/usr/bin/containerd",
    "ctr": "/usr/bin/ctr",
    "runc": "/usr/sbin/runc",
    "CNI bridge plugin": "/usr/lib/cni/bridge",
    "iptables": "/usr/sbin/iptables",
    "conntrack": "/usr/sbin/conntrack",
}
CNI_BIN_DIR = "/usr/lib/cni"
POD_CIDR = "10.244.0.0/24"
BRIDGE = "obs-node0"
GUARD_CHAIN = "OBS-NODE-GUARD"
CLUSTER_DOMAIN = "cluster.local"
CNI_NETWORK = "obs-node"
# The pod sandbox's image: anything whose entrypoint sleeps until killed. Built from the
# services' base image by build_pause_image(); the name is containerd's sandbox_image.
PAUSE_IMAGE = "localhost/obs-stack-test/pause:1"
# The runc wrapper that drops what this sandbox refuses (process.rlimits, oomScoreAdj).
RUNTIME_WRAPPER = Path(__file__).with_name("runc_without_rlimits.py")
KUBELET_LOGS = Path("/var/log/pods")
# The kubelet links each container's log here as <pod>_<namespace>_<container>-<id>.log.
CONTAINER_LOG_LINKS = Path("/var/log/containers")
API_RELAY = Path(__file__).with_name("tcp_relay.py")


def gateway() -> str:
    """The bridge's address on the host: the pods' gateway, CoreDNS and the node IP."""
    return str(next(ipaddress.ip_network(POD_CIDR).hosts()))


def missing_tools() -> list[str]:
    """What `scripts/bootstrap.sh k8s` has not installed or built yet, by name."""
    absent = [name for name, path in HOST_TOOLS.items() if not Path(path).exists()]
    absent += [name for name in NODE_BINARIES if not k8s_binary(name).is_file()]
    return absent


def _run(argv: Sequence[str], what: str, *, check: bool = True, timeout: float = 60):
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise ClusterError(
            f"real node, {what}: `{' '.join(argv)}` exited with {result.returncode}:\n"
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result


def _mounts_under(prefix: str) -> list[str]:
    """Mount points at or below `prefix`, deepest first (the order to unmount them)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point == prefix or point.startswith(prefix.rstrip("/") + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


def _kube_chains(family: str) -> set[str]:
    """(table, chain) names of the KUBE-* chains in iptables or ip6tables, as `table/chain`."""
    chains, table = set(), ""
    for line in _run([f"{family}-save"], f"{family}-save", check=False).stdout.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":KUBE-"):
            chains.add(f"{table}/{line[1:].split()[0]}")
    return chains


def _sweep_chains(family: str, keep: set[str]) -> None:
    """Remove the KUBE-* chains not in `keep`, and the jumps to them. kube-proxy's
    --cleanup leaves KUBE-FIREWALL (its localnet guard) in place."""
    for entry in sorted(_kube_chains(family) - keep):
        table, chain = entry.split("/")
        for builtin in ("INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"):
            while _run([family, "-t", table, "-D", builtin, "-j", chain], "jump",
                       check=False).returncode == 0:  # fmt: skip
                pass
        _run([family, "-t", table, "-F", chain], "flush", check=False)
    for entry in sorted(_kube_chains(family) - keep):
        table, chain = entry.split("/")
        _run([family, "-t", table, "-X", chain], "delete chain", check=False)


class RealNode:
    """start() joins the node to `cluster` and waits until it is Ready; stop() removes
    everything it made. Images must be imported (import_image) before pods use them."""

    def __init__(self, cluster: KubeCluster, workdir: Path, name: str = "node-0") -> None:
        self.cluster = cluster
        self.name = name
        # containerd's socket path must stay under the 108 bytes of a unix address.
        self.workdir = Path(workdir)
        self.logs = self.workdir / "logs"
        self.socket = self.workdir / "containerd.sock"
        self.processes: dict[str, ManagedProcess] = {}
        self.ports = {"kubelet": free_port(), "proxy-metrics": free_port(), "proxy-healthz": 0}
        self.ports["proxy-healthz"] = free_port()
        self.ports["api-relay"] = free_port()
        self._netns_before: set[str] = set()
        self._chains_before: dict[str, set[str]] = {}
        self.started_in: float | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> RealNode:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> RealNode:
        if os.geteuid() != 0:
            raise ClusterError("a real node needs root (network, mounts, cgroups)")
        absent = missing_tools()
        if absent:
            raise ClusterError(f"real node: not installed: {', '.join(absent)}; {BOOTSTRAP_HINT}")
        began = time.monotonic()
        self.logs.mkdir(parents=True, exist_ok=True)
        self._netns_before = set(os.listdir("/run/netns")) if Path("/run/netns").is_dir() else set()
        self._chains_before = {f: _kube_chains(f) for f in ("iptables", "ip6tables")}
        try:
            self._network()
            self._start_containerd()
            self._start_kubelet()
            self._start_kube_proxy()
            self._start_coredns()
            self._expose_api()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Everything start() made goes, even after a failed start; errors are collected
        and raised at the end, so that one leftover does not hide the others."""
        problems: list[str] = []
        for step in (
            self._delete_pods,
            lambda: self._stop_process("coredns"),
            self._stop_kube_proxy,
            lambda: self._stop_process("api-relay"),
            lambda: self._stop_process("kubelet"),
            self._remove_containers,
            lambda: self._stop_process("containerd"),
            self._kill_shims,
            self._unmount,
            self._remove_netns,
            self._remove_network,
            self._remove_pod_logs,
            self._remove_log_links,
        ):
            try:
                step()
            except Exception as exc:  # reported below, after every step ran
                problems.append(f"{exc}")
        if problems:
            raise ClusterError("real node: cleanup left something behind:\n" + "\n".join(problems))

    # --- helpers for tests -------------------------------------------------------------

    def ctr(self, *args: str, timeout: float = 300, check: bool = True):
        return _run(
            [HOST_TOOLS["ctr"], "--address", str(self.socket), "--namespace", "k8s.io", *args],
            f"ctr {args[0]}",
            check=check,
            timeout=timeout,
        )

    def import_archive(self, archive: Path, source: str, *names: str) -> None:
        """Import an image archive (`podman save`) and tag it `names`, normalised as the
        kubelet asks containerd for them (obs-backend:1.0.0 is
        docker.io/library/obs-backend:1.0.0)."""
        self.ctr("images", "import", str(archive))
        for name in names:
            self.ctr("images", "tag", "--force", normalise(source), normalise(name))

    def describe_failure(self) -> str:
        return "\n".join(p.describe_failure() for p in self.processes.values())

    # --- network -------------------------------------------------------------------------

    def _network(self) -> None:
        gw = gateway()
        prefix = ipaddress.ip_network(POD_CIDR).prefixlen
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"], "bridge")
        _run(["ip", "addr", "add", f"{gw}/{prefix}", "dev", BRIDGE], "bridge address")
        _run(["ip", "link", "set", BRIDGE, "up"], "bridge up")
        # Without kube-proxy's rules a ClusterIP would follow the default route off this
        # machine; this route keeps it on the bridge, where nothing answers it.
        _run(["ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE], "Service range route")
        iptables = HOST_TOOLS["iptables"]
        _run([iptables, "-N", GUARD_CHAIN], "guard chain")
        _run([iptables, "-A", GUARD_CHAIN, "-s", POD_CIDR, "-d", POD_CIDR, "-j", "RETURN"], "guard")
        _run([iptables, "-A", GUARD_CHAIN, "-s", POD_CIDR, "-j", "REJECT"], "guard")
        _run([iptables, "-I", "FORWARD", "1", "-j", GUARD_CHAIN], "guard jump")
        # Pod to ClusterIP to pod is routed through the host.
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
        cni = self.workdir / "cni"
        cni.mkdir(exist_ok=True)
        conflist = {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": gw}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (cni / "10-obs-node.conflist").write_text(json.dumps(conflist, indent=2))

    def _remove_network(self) -> None:
        iptables = HOST_TOOLS["iptables"]
        _run([iptables, "-D", "FORWARD", "-j", GUARD_CHAIN], "guard jump", check=False)
        _run([iptables, "-F", GUARD_CHAIN], "guard chain", check=False)
        _run([iptables, "-X", GUARD_CHAIN], "guard chain", check=False)
        _run(["ip", "route", "del", SERVICE_CIDR, "dev", BRIDGE], "route", check=False)
        _run(["ip", "link", "del", BRIDGE], "bridge", check=False)
        if Path(f"/sys/class/net/{BRIDGE}").exists():
            raise ClusterError(f"the bridge {BRIDGE} is still there")
        left = []
        for family in ("iptables", "ip6tables"):
            _sweep_chains(family, self._chains_before.get(family, set()))
            left += [
                f"{family} {c}"
                for c in sorted(_kube_chains(family) - self._chains_before.get(family, set()))
            ]
        if left:
            raise ClusterError(f"chains left behind: {', '.join(left)}")

    # --- containerd ----------------------------------------------------------------------

    def _start_containerd(self) -> None:
        w = self.workdir
        config = f"""version = 2
root = "{w / "containerd-root"}"
state = "{w / "containerd-state"}"
[grpc]
  address = "{self.socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{RUNTIME_WRAPPER}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{w / "cni"}"
"""
        (w / "containerd.toml").write_text(config)
        process = self._spawn(
            "containerd", [HOST_TOOLS["containerd"], "--config", str(w / "containerd.toml")]
        )
        self._wait(
            process, "its socket answers", lambda: self.ctr("version", check=False).returncode == 0
        )

    def _remove_containers(self) -> None:
        if "containerd" not in self.processes or not self.processes["containerd"].running():
            return
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
            self.ctr("tasks", "delete", "--force", task, check=False)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)

    def _kill_shims(self) -> None:
        # The shims outlive containerd on purpose (they keep containers running across
        # its restarts): here nothing may outlive the test.
        for pid in _pids_mentioning(str(self.socket)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _unmount(self) -> None:
        left = []
        for point in _mounts_under(str(self.workdir)):
            if _run(["umount", "--lazy", point], "umount", check=False).returncode != 0:
                left.append(point)
        if left:
            raise ClusterError(f"could not unmount: {', '.join(left)}")

    def _remove_netns(self) -> None:
        run_netns = Path("/run/netns")
        if not run_netns.is_dir():
            return
        for name in set(os.listdir(run_netns)) - self._netns_before:
            if name.startswith("cni-"):
                _run(["umount", "--lazy", str(run_netns / name)], "netns", check=False)
                with contextlib.suppress(FileNotFoundError):
                    (run_netns / name).unlink()

    # --- kubelet -------------------------------------------------------------------------

    def _start_kubelet(self) -> None:
        gw = gateway()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This machine: cgroup v1, cgroupfs, no swap accounting, no systemd.
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "localStorageCapacityIsolation": False,
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "address": gw,
            "port": self.ports["kubelet"],
            "readOnlyPort": 0,
            "healthzPort": 0,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "clusterDNS": [gw],
            "clusterDomain": CLUSTER_DOMAIN,
            # Pods get only the cluster's resolver, never this machine's.
            "resolvConf": "",
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            # The imported images cannot be pulled again: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            # Its KUBE-FIREWALL and canary chains would outlive it on this machine;
            # kube-proxy makes the rules Services need.
            "makeIPTablesUtilChains": False,
        }
        path = self.workdir / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config))
        process = self._spawn(
            "kubelet",
            [
                str(k8s_binary("kubelet")),
                f"--config={path}",
                f"--kubeconfig={self.cluster.kubeconfig}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--hostname-override={self.name}",
                f"--node-ip={gw}",
                "--v=1",
            ],
        )
        self._wait(process, f"node {self.name} Ready", self._node_ready, timeout=120)

    def _node_ready(self) -> bool:
        result = self.cluster.kubectl("get", "node", self.name, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _delete_pods(self) -> None:
        """Every pod on the node deleted through the API, so that the kubelet itself
        stops the containers and unmounts the volumes."""
        kubelet = self.processes.get("kubelet")
        if not kubelet or not kubelet.running():
            return
        selector = f"spec.nodeName={self.name}"
        self.cluster.kubectl(
            "delete", "pods", "--all-namespaces", "--field-selector", selector,
            "--grace-period=1", "--wait=false", check=False,
        )  # fmt: skip

        def gone() -> bool:
            out = self.cluster.kubectl(
                "get", "pods", "-A", "--field-selector", selector, "-o", "name", check=False
            )
            return out.returncode == 0 and not out.stdout.strip()

        try:
            poll_until(gone, f"pods on {self.name} deleted", 60)
        except PollTimeout:
            # Forced below: the containers are killed with their tasks.
            self.cluster.kubectl(
                "delete", "pods", "-A", "--field-selector", selector, "--force",
                "--grace-period=0", check=False,
            )  # fmt: skip

    # --- kube-proxy, CoreDNS ---------------------------------------------------------------

    def _start_kube_proxy(self) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self.cluster.kubeconfig)},
            "hostnameOverride": self.name,
            "clusterCIDR": POD_CIDR,
            "bindAddress": "127.0.0.1",
            "healthzBindAddress": f"127.0.0.1:{self.ports['proxy-healthz']}",
            "metricsBindAddress": f"127.0.0.1:{self.ports['proxy-metrics']}",
            # Every Service connection leaves the host with its address: replies from a
            # pod on the same bridge then come back through the host's conntrack, with
            # no need for the br_netfilter module.
            "iptables": {"masqueradeAll": True, "localhostNodePorts": False},
            # Leave this machine's conntrack sysctls alone.
            "conntrack": {"maxPerCore": 0},
        }
        path = self.workdir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        process = self._spawn("kube-proxy", [str(k8s_binary("kube-proxy")), f"--config={path}"])
        url = f"http://127.0.0.1:{self.ports['proxy-healthz']}/healthz"
        self._wait(
            process, f"healthy on {url}", lambda: httpx.get(url, timeout=2).status_code == 200
        )

    def _stop_kube_proxy(self) -> None:
        self._stop_process("kube-proxy")
        # Its iptables rules stay after it exits; --cleanup removes them.
        if k8s_binary("kube-proxy").is_file():
            _run([str(k8s_binary("kube-proxy")), "--cleanup"], "kube-proxy --cleanup", check=False)

    def _start_coredns(self) -> None:
        gw, ready = gateway(), free_port()
        # Only the cluster's zone, from the API; every other name is NXDOMAIN here, so
        # no query ever leaves this machine.
        corefile = f"""{CLUSTER_DOMAIN}:53 {{
    bind {gw}
    errors
    ready 127.0.0.1:{ready}
    kubernetes {CLUSTER_DOMAIN} {{
        kubeconfig {self.cluster.kubeconfig} obs-test
    }}
    cache 5
}}
.:53 {{
    bind {gw}
    errors
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"""
        path = self.workdir / "Corefile"
        path.write_text(corefile)
        process = self._spawn("coredns", [str(k8s_binary("coredns")), "-conf", str(path)])
        url = f"http://127.0.0.1:{ready}/ready"
        self._wait(process, f"ready on {url}", lambda: httpx.get(url, timeout=2).status_code == 200)

    def _expose_api(self) -> None:
        """The API server to the pods: what Fluent Bit's kubernetes filter, Prometheus'
        service discovery and kube-state-metrics use, through the `kubernetes` Service
        (10.96.0.1:443) as on any cluster. The control plane listens on 127.0.0.1 only
        and its endpoint reconciler is off (kube_cluster.py), so a relay on the gateway
        (tcp_relay.py) is that Service's one endpoint."""
        gw, port = gateway(), self.ports["api-relay"]
        target = urllib.parse.urlsplit(self.cluster.server)
        process = self._spawn(
            "api-relay",
            [sys.executable, str(API_RELAY), gw, str(port), target.hostname, str(target.port)],
        )
        self._wait(process, f"listening on {gw}:{port}",
                   lambda: f"listening on {gw}:{port}" in process.tail(5))  # fmt: skip
        slice_ = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {
                    "kubernetes.io/service-name": "kubernetes",
                    "endpointslice.kubernetes.io/managed-by": "obs-stack-test",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [gw], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }
        self.cluster.kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(slice_))

    # --- processes -------------------------------------------------------------------------

    def _spawn(self, name: str, argv: Sequence[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.logs, cwd=self.workdir)
        self.processes[name] = process
        return process

    def _stop_process(self, name: str) -> None:
        process = self.processes.get(name)
        if process:
            process.stop(timeout=20)

    def _wait(self, process: ManagedProcess, what: str, condition, timeout: float = 60) -> None:
        def ready():
            if not process.running():
                raise GiveUp(
                    f"{process.name} exited with code {process.proc.returncode} before {what}\n"
                    f"{process.tail()}"
                )
            return condition()

        try:
            poll_until(ready, f"real node: {process.name}: {what}", timeout)
        except PollTimeout as exc:
            raise ClusterError(f"{exc}\n{process.tail()}") from None
        except GiveUp as exc:
            raise ClusterError(str(exc)) from None

    def _remove_pod_logs(self) -> None:
        # The kubelet removes a deleted pod's folder; a forced deletion may leave it.
        for uid in self._pod_uids:
            for folder in KUBELET_LOGS.glob(f"*_{uid}"):
                shutil.rmtree(folder, ignore_errors=True)

    def _remove_log_links(self) -> None:
        """The kubelet's /var/log/containers links into this node's pod logs, which
        nothing else removes once the node is gone (Fluent Bit tails these links)."""
        for link in CONTAINER_LOG_LINKS.glob("*.log"):
            if link.is_symlink() and not link.exists():
                link.unlink(missing_ok=True)

    @property
    def _pod_uids(self) -> list[str]:
        root = self.workdir / "kubelet" / "pods"
        return [p.name for p in root.iterdir()] if root.is_dir() else []


def normalise(image: str) -> str:
    """The full name containerd stores for an image reference, as the kubelet asks."""
    name = image
    first = name.split("/", 1)[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name}" if "/" in name else f"docker.io/library/{name}"
    return name
