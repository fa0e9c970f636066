"""Where things are in the repository: the one place that knows its layout.

Reads no environment variables. Every path is absolute, derived from this file's place
(tools/obs_tools/common/), so the tools work from any current directory.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

SCRIPTS = REPO / "scripts"
VERSIONS_ENV = SCRIPTS / "versions.env"
SERVICES = REPO / "services"
K8S = REPO / "k8s"
PROMETHEUS = REPO / "prometheus"
GRAFANA = REPO / "grafana"
KIBANA = REPO / "kibana"
JAEGER = REPO / "jaeger"
FLUENT_BIT = REPO / "fluent-bit"
DOCS = REPO / "docs"
RUNBOOKS = DOCS / "runbooks"
