"""The "Services overview" dashboard: rate, errors and duration of one service, its
restarts and its error logs, with links to its traces in Jaeger and its logs in Kibana.

Reads no environment variables.
"""

from __future__ import annotations

from ..links import JAEGER_URL, KIBANA_URL, SERVICES_DASHBOARD_UID, STACK_DASHBOARD_UID
from .panels import (
    ELASTICSEARCH,
    LAST_VALUE,
    RUNBOOKS_LINK,
    Layout,
    constant,
    dashboard,
    dashboard_link,
    panel,
    prom,
    query_variable,
    thresholds,
)

# Links to the other views, resolved by Grafana from the dashboard's variables and time
# range (${__from} and ${__to} are epoch milliseconds; Jaeger wants microseconds).
JAEGER_SEARCH = (
    "${jaeger_url}/search?service=${service}&start=${__from}000&end=${__to}000"
    "&lookback=custom&limit=20"
)
KIBANA_DISCOVER = (
    "${kibana_url}/app/discover#/view/obs-logs-${service}"
    "?_g=(time:(from:'${__from:date:iso}',to:'${__to:date:iso}'))"
)
TO_JAEGER = {"title": "Traces of ${service} in Jaeger", "url": JAEGER_SEARCH, "targetBlank": True}
TO_KIBANA = {"title": "Logs of ${service} in Kibana", "url": KIBANA_DISCOVER, "targetBlank": True}

# The series of the selected service, and of its selected endpoints.
SVC = 'job="$service"'
SEL = 'job="$service", endpoint=~"$endpoint"'


def _uptime(layout: Layout) -> dict:
    return panel(
        layout,
        "stat",
        "Uptime",
        [prom(f"flask_uptime_seconds{{{SVC}}}", "{{instance}}", instant=True)],
        w=5,
        h=6,
        description="Seconds since the process started (flask_uptime_seconds); "
        "it drops to 0 at each restart.",
        defaults={
            "unit": "dtdurations",
            "color": {"mode": "thresholds"},
            "thresholds": thresholds((None, "red"), (300, "green")),
        },
        options={"reduceOptions": LAST_VALUE, "colorMode": "value", "graphMode": "none"},
    )


def _restarts(layout: Layout) -> dict:
    return panel(
        layout,
        "stat",
        "Restarts",
        [
            prom(
                f"sum(changes(process_start_time_seconds{{{SVC}}}[$__range]))",
                "restarts",
                instant=True,
            )
        ],
        w=5,
        h=6,
        description="Process restarts in the selected time range (changes of "
        "process_start_time_seconds): supervisord locally, the kubelet in Kubernetes. "
        "More than 2 in 5 minutes fires the crash-loop alert.",
        defaults={
            "unit": "short",
            "decimals": 0,
            "color": {"mode": "thresholds"},
            "thresholds": thresholds((None, "green"), (1, "orange"), (3, "red")),
        },
        options={"reduceOptions": LAST_VALUE, "colorMode": "background", "graphMode": "none"},
        links=[TO_KIBANA],
    )


def _active_users(layout: Layout) -> dict:
    return panel(
        layout,
        "stat",
        "Active users",
        [prom(f"sum(active_users{{{SVC}}})", "in flight")],
        w=5,
        h=6,
        description="Requests in flight (active_users), sampled at each scrape.",
        defaults={"unit": "short", "decimals": 0},
        options={"reduceOptions": LAST_VALUE, "graphMode": "area"},
    )


def _error_rate(layout: Layout) -> dict:
    return panel(
        layout,
        "gauge",
        "Error rate",
        [
            # `or vector(0)`: no 5xx series at all is 0%, not "no data".
            prom(
                f'(sum(job_endpoint_status:flask_requests:rate5m{{{SEL}, status=~"5.."}})'
                " or vector(0))"
                f" / sum(job_endpoint_status:flask_requests:rate5m{{{SEL}}})",
                "5xx, last 5 min",
                instant=True,
            ),
            prom(f"max(flask_error_rate{{{SVC}}}) / 100", "all errors since start", instant=True),
        ],
        w=9,
        h=6,
        description="Left: share of requests answered with a 5xx over 5 minutes, what "
        "HighErrorRate alerts on (25%). Right: the course's flask_error_rate, every "
        "error (4xx included) since the process started.",
        defaults={
            "unit": "percentunit",
            "min": 0,
            "max": 1,
            "decimals": 1,
            "color": {"mode": "thresholds"},
            "thresholds": thresholds((None, "green"), (0.05, "orange"), (0.25, "red")),
        },
        options={"reduceOptions": LAST_VALUE, "showThresholdMarkers": True},
    )


def _request_rate(layout: Layout) -> dict:
    return panel(
        layout,
        "timeseries",
        "Request rate by endpoint",
        [
            prom(
                f"sum by (endpoint) (job_endpoint_status:flask_requests:rate5m{{{SEL}}})",
                "{{endpoint}}",
            )
        ],
        w=12,
        h=9,
        description="Requests per second over 5 minutes, by route template "
        "(recording rule job_endpoint_status:flask_requests:rate5m).",
        defaults={"unit": "reqps", "custom": {"stacking": {"mode": "normal"}, "fillOpacity": 20}},
        links=[TO_JAEGER],
    )


def _latency(layout: Layout) -> dict:
    return panel(
        layout,
        "timeseries",
        "Latency p50 / p95 / p99 (dots: exemplars, click to open the trace)",
        [
            prom(
                f"histogram_quantile({q}, sum by (le) (rate("
                f"flask_request_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                f"p{int(q * 100)}",
                exemplar=True,
            )
            for q in (0.5, 0.95, 0.99)
        ],
        w=12,
        h=9,
        description="Quantiles of flask_request_duration_seconds. Each dot is an "
        "exemplar: one real request, whose trace_id opens the trace in Jaeger. "
        "HighLatencyP95 fires above 2.5 s.",
        defaults={"unit": "s", "custom": {"fillOpacity": 0}},
        links=[TO_JAEGER],
    )


def _errors_by_type(layout: Layout) -> dict:
    return panel(
        layout,
        "barchart",
        "Errors by type (selected range)",
        [
            prom(
                f"sum by (error_type) (increase(flask_errors_total{{{SVC}}}[$__range]))",
                "{{error_type}}",
                instant=True,
                format="table",
            )
        ],
        w=12,
        h=9,
        description="The course's sum by (error_type) (flask_errors_total), over the "
        "selected time range.",
        defaults={"unit": "short", "decimals": 0},
        options={
            "xField": "error_type",
            "orientation": "horizontal",
            "legend": {
                "showLegend": False,
                "displayMode": "list",
                "placement": "bottom",
                "calcs": [],
            },
        },
        links=[TO_KIBANA],
    )


def _error_types_query() -> dict:
    """Log lines with an error.type in Elasticsearch, counted by type over time."""
    terms = {"size": "10", "order": "desc", "orderBy": "_count", "min_doc_count": "1"}
    return {
        "datasource": ELASTICSEARCH,
        "query": 'service.name:"$service" AND error.type:*',
        "metrics": [{"id": "1", "type": "count"}],
        "bucketAggs": [
            {"id": "2", "type": "terms", "field": "error.type", "settings": terms},
            {
                "id": "3",
                "type": "date_histogram",
                "field": "@timestamp",
                "settings": {"interval": "auto", "min_doc_count": "0"},
            },
        ],
        "timeField": "@timestamp",
    }


def _error_log_lines(layout: Layout) -> dict:
    return panel(
        layout,
        "timeseries",
        "Error log lines by error.type (Elasticsearch)",
        [_error_types_query()],
        w=12,
        h=9,
        description="Log lines that carry an error.type, counted over time from the "
        "logs in Elasticsearch.",
        defaults={
            "unit": "short",
            "custom": {"drawStyle": "bars", "fillOpacity": 60, "stacking": {"mode": "normal"}},
        },
        links=[TO_KIBANA],
    )


def _error_logs(layout: Layout) -> dict:
    return panel(
        layout,
        "logs",
        "Error logs of ${service} (click a line, then trace.id, to open the trace)",
        [
            {
                "datasource": ELASTICSEARCH,
                "query": 'service.name:"$service" AND log.level:(error OR critical)',
                "metrics": [{"id": "1", "type": "logs", "settings": {"limit": "200"}}],
                "bucketAggs": [],
                "timeField": "@timestamp",
            }
        ],
        w=24,
        h=12,
        description="The service's error lines from Elasticsearch, newest first. The "
        "datasource turns trace.id into a link to the trace in Jaeger.",
        options={
            "showTime": True,
            "wrapLogMessage": True,
            "sortOrder": "Descending",
            "enableLogDetails": True,
            "dedupStrategy": "none",
            "prettifyLogMessage": False,
            "showLabels": False,
            "showCommonLabels": False,
        },
        links=[TO_KIBANA],
    )


def _variables() -> list[dict]:
    return [
        query_variable(
            "service",
            "Service",
            "label_values(flask_requests_total, job)",
            multi=False,
            include_all=False,
        ),
        query_variable(
            "endpoint",
            "Endpoint",
            'label_values(flask_requests_total{job="$service"}, endpoint)',
            multi=True,
            include_all=True,
        ),
        constant("jaeger_url", JAEGER_URL),
        constant("kibana_url", KIBANA_URL),
    ]


def _links() -> list[dict]:
    def external(title: str, url: str) -> dict:
        return {
            "title": title,
            "type": "link",
            "icon": "external link",
            "url": url,
            "targetBlank": True,
            "tooltip": "Same service and time range",
        }

    return [
        external("Traces in Jaeger", JAEGER_SEARCH),
        external("Logs in Kibana", KIBANA_DISCOVER),
        dashboard_link("Stack health", STACK_DASHBOARD_UID),
        RUNBOOKS_LINK,
    ]


# Seed 002's Grafana step (its app.py's metric names), one stat each; the restarts come
# from kube-state-metrics, so that panel has data only in Kubernetes.
SEED_002_QUERIES = (
    ("http_requests_total", f"sum(rate(http_requests_total{{{SVC}}}[5m]))", "reqps"),
    ("active_users", f"sum(active_users{{{SVC}}})", "short"),
    (
        "request_duration_seconds (p95)",
        "histogram_quantile(0.95, sum by (le) "
        f"(rate(request_duration_seconds_bucket{{{SVC}}}[5m])))",
        "s",
    ),
    (
        "kube_pod_container_status_restarts_total",
        'sum(kube_pod_container_status_restarts_total{container="$service"})',
        "short",
    ),
)


def _seed_002_queries(layout: Layout) -> list[dict]:
    return [
        panel(
            layout,
            "stat",
            title,
            [prom(expr, title, instant=True)],
            w=6,
            h=4,
            description="Seed 002's query for this metric (a histogram has no series under "
            "its bare name: its buckets are request_duration_seconds_bucket).",
            defaults={"unit": unit},
            options={"reduceOptions": LAST_VALUE, "graphMode": "none"},
        )
        for title, expr, unit in SEED_002_QUERIES
    ]


def services_overview() -> dict:
    layout = Layout()
    # In this order: the layout numbers the panels and fills the rows as they are made.
    panels = [
        _uptime(layout),
        _restarts(layout),
        _active_users(layout),
        _error_rate(layout),
        _request_rate(layout),
        _latency(layout),
        _errors_by_type(layout),
        _error_log_lines(layout),
        _error_logs(layout),
        *_seed_002_queries(layout),
    ]
    return dashboard(
        SERVICES_DASHBOARD_UID,
        "Services overview",
        "Rate, errors and duration of one service, its restarts and its error logs.",
        panels,
        templating={"list": _variables()},
        links=_links(),
    )
