"""What this tooling expects of the k8s/ render, in one place. Reads no environment variables.

`kubectl apply -k k8s/` deploys everything; every object carries PART_OF; the
namespaces, images and UIs below must match the manifests, and the images' tags the
services' versions (image_tag, read from services/*/pyproject.toml).
"""

from __future__ import annotations

from dataclasses import dataclass

from obs_tools.common.paths import REPO

PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF = "obs-stack"
SELECTOR = f"{PART_OF_LABEL}={PART_OF}"

NAMESPACES = ("obs-apps", "obs-monitoring", "obs-logging")
# Kinds whose readiness `make up` waits for and `make status` shows.
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


@dataclass(frozen=True)
class Image:
    service: str
    name: str  # as the manifests' `image:` names it, without tag
    dockerfile: str  # relative to the build context, services/


IMAGES = (
    Image("frontend", "obs-frontend", "frontend/Dockerfile"),
    Image("backend", "obs-backend", "backend/Dockerfile"),
)


def image_tag(service: str) -> str:
    """The services' version (their pyproject.toml) tags their images."""
    text = (REPO / "services" / service / "pyproject.toml").read_text()
    return next(
        line.split("=", 1)[1].strip().strip('"')
        for line in text.splitlines()
        if line.startswith("version")
    )


@dataclass(frozen=True)
class UI:
    title: str
    namespace: str
    service: str
    port: int  # the Service's port; `make open` forwards 127.0.0.1:port to it
    path: str = "/"


UIS = (
    UI("Grafana", "obs-monitoring", "grafana", 3000),
    UI("Kibana", "obs-monitoring", "kibana", 5601),
    UI("Jaeger", "obs-monitoring", "jaeger", 16686),
    UI("Prometheus", "obs-monitoring", "prometheus", 9090),
    UI("Alertmanager", "obs-monitoring", "alertmanager", 9093),
    UI("Mail catcher (Mailpit)", "obs-monitoring", "mailcatcher", 8025),
    UI("frontend", "obs-apps", "frontend", 5000),
)
