"""Grafana dashboards: "Services overview", "Stack health", and one dashboard per runbook
(docs/runbooks/*.md, so that an alert's runbook_url opens from an e-mail). The panel
helpers are in panels.py, each dashboard in its own module.

Every query reads series that tests/e2e/test_views.py finds in the real Prometheus and
Elasticsearch of the local stack (the Fluent Bit panels from the scrape of its real
Fluent Bit).

Reads no environment variables.
"""

from __future__ import annotations

from pathlib import Path

from .panels import (
    ELASTICSEARCH,
    LAST_VALUE,
    PROMETHEUS,
    RUNBOOKS_LINK,
    SCHEMA_VERSION,
    TAG,
    Layout,
    constant,
    count_stat,
    dashboard,
    dashboard_link,
    graph,
    panel,
    prom,
    query_variable,
    thresholds,
)
from .runbooks import runbook, runbooks
from .services_overview import JAEGER_SEARCH, KIBANA_DISCOVER, services_overview
from .stack_health import KIBANA_ALL_LOGS, TARGET_LABELS, stack_health

__all__ = [
    "ELASTICSEARCH",
    "JAEGER_SEARCH",
    "KIBANA_ALL_LOGS",
    "KIBANA_DISCOVER",
    "LAST_VALUE",
    "PROMETHEUS",
    "RUNBOOKS_LINK",
    "SCHEMA_VERSION",
    "TAG",
    "TARGET_LABELS",
    "Layout",
    "constant",
    "count_stat",
    "dashboard",
    "dashboard_link",
    "dashboards",
    "graph",
    "panel",
    "prom",
    "query_variable",
    "runbook",
    "runbooks",
    "services_overview",
    "stack_health",
    "thresholds",
]


def dashboards(runbooks_dir: Path) -> dict[str, dict]:
    """File name -> dashboard, for grafana/dashboards/."""
    return {
        "services-overview.json": services_overview(),
        "stack-health.json": stack_health(),
        **runbooks(runbooks_dir),
    }
