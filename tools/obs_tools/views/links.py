"""Base URLs of the user-facing views and the ids that links between them rely on.

The addresses are those `make open` port-forwards on the user's machine. To use
others (an Ingress, other ports), change them here and run `make views`; the
generated dashboards then carry them in one hidden constant variable each. The same
addresses are in prometheus/alertmanager/email.tmpl, prometheus/rules/ (Grafana) and
jaeger/ui-config.json (Kibana): tests/config/test_views.py checks that they agree.

Reads no environment variables.
"""

from __future__ import annotations

GRAFANA_URL = "http://localhost:3000"
KIBANA_URL = "http://localhost:5601"
JAEGER_URL = "http://localhost:16686"

# Grafana datasource uids (grafana/datasources.yaml) and dashboard uids.
PROMETHEUS_UID = "prometheus"
JAEGER_UID = "jaeger"
ELASTICSEARCH_UID = "elasticsearch"
SERVICES_DASHBOARD_UID = "obs-services"
STACK_DASHBOARD_UID = "obs-stack-health"
RUNBOOK_UID_PREFIX = "obs-runbook-"

# Kibana saved objects (kibana/saved-objects.ndjson).
DATA_VIEW_ID = "obs-logs"
ALL_LOGS_SEARCH_ID = "obs-logs-all"
SERVICES = ("frontend", "backend")


def service_search_id(service: str) -> str:
    """The saved search of one service's logs; alert e-mails link to it."""
    return f"obs-logs-{service}"
