"""Run a container of the k8s/ render as a local process, "as deployed": its ConfigMap and
Secret volumes written under a scratch root at their mount paths, its arguments and the
mounted files' own paths relocated under that root, its env as the manifest sets it.
Used to start the real Prometheus, Alertmanager, Jaeger and kube-state-metrics binaries
on exactly the configuration the cluster would give them.

Reads no environment variables.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path

from .render import containers, find, pod_spec


@dataclass
class Materialized:
    root: Path
    # mount path in the container -> local directory
    mounts: dict[str, Path] = field(default_factory=dict)

    def relocate(self, text: str) -> str:
        """Every mount path in `text` (a whole path or a path's leading directories, not
        a substring of another path) pointed at its local copy; one pass, longest first."""
        if not self.mounts:
            return text
        alternatives = "|".join(re.escape(m) for m in sorted(self.mounts, key=len, reverse=True))
        pattern = re.compile(rf"(?<![\w./])({alternatives})(?![\w.-])")
        return pattern.sub(lambda m: str(self.mounts[m[1]]), text)

    def local(self, path: str) -> Path:
        return Path(self.relocate(path))


def container(workload: dict, name: str) -> dict:
    for candidate in containers(pod_spec(workload)):
        if candidate["name"] == name:
            return candidate
    raise KeyError(f"no container {name} in {workload['metadata']['name']}")


def materialize(
    docs: list[dict],
    workload: dict,
    container_name: str,
    root: Path,
    secrets: dict[tuple[str, str], dict[str, str]],
) -> Materialized:
    """Write the container's ConfigMap/Secret volumes under `root` at their mount paths
    (files relocated to point at each other), empty directories for the rest."""
    namespace = workload["metadata"]["namespace"]
    spec = pod_spec(workload)
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    result = Materialized(root)
    files: dict[Path, str] = {}
    for mount in container(workload, container_name).get("volumeMounts", []):
        local = root / mount["mountPath"].lstrip("/")
        local.mkdir(parents=True, exist_ok=True)
        result.mounts[mount["mountPath"]] = local
        volume = volumes.get(mount["name"], {})
        data: dict[str, str] = {}
        items = None
        if "configMap" in volume:
            config_map = find(docs, "ConfigMap", volume["configMap"]["name"], namespace)
            data = dict(config_map.get("data", {}))
            items = volume["configMap"].get("items")
        elif "secret" in volume:
            data = dict(secrets[(namespace, volume["secret"]["secretName"])])
            items = volume["secret"].get("items")
        if items:
            data = {item["path"]: data[item["key"]] for item in items}
        for name, text in data.items():
            files[local / name] = text
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.relocate(text))
    return result


def env_of(workload: dict, container_name: str, secrets) -> dict[str, str]:
    """The container's env as the kubelet would set it (fieldRefs left out)."""
    namespace = workload["metadata"]["namespace"]
    env = {}
    for entry in container(workload, container_name).get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[(namespace, ref["name"])][ref["key"]]
    return env


def decoded(secret_manifest: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret_manifest["data"].items()}
