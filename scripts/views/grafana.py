"""Grafana dashboards: "Services overview", "Stack health", and one dashboard per runbook
(docs/runbooks/*.md, so that an alert's runbook_url opens from an e-mail).

Every query reads series that tests/e2e/test_views.py finds in the real Prometheus and
Elasticsearch of the local stack, except the Fluent Bit panels (Fluent Bit cannot run
here; their metric names are checked against Fluent Bit's documentation instead).

Reads no environment variables.
"""

from __future__ import annotations

from pathlib import Path

from .links import (
    ALL_LOGS_SEARCH_ID,
    ELASTICSEARCH_UID,
    JAEGER_URL,
    KIBANA_URL,
    PROMETHEUS_UID,
    RUNBOOK_UID_PREFIX,
    SERVICES_DASHBOARD_UID,
    STACK_DASHBOARD_UID,
)

PROMETHEUS = {"type": "prometheus", "uid": PROMETHEUS_UID}
ELASTICSEARCH = {"type": "elasticsearch", "uid": ELASTICSEARCH_UID}
# The dashboard JSON model version that the deployed Grafana (12.2, k8s/monitoring/
# grafana.yaml) writes: 42, the default of the dashboard schema in the @grafana/schema
# packages that the 12.2.1 and 12.2.10 releases published to npm
# (dist/esm/raw/dashboard/x/dashboard_types.gen.mjs, defaultDashboard.schemaVersion), and
# LATEST_VERSION of apps/dashboard/pkg/migration/schemaversion/migrations.go in
# grafana/grafana (the stored copy at 01ec8e3a: the repository is too large to fetch at the
# tag). Older dashboards are migrated when loaded; the steps from 39 (v40.go: refresh as a
# string, v41.go: drop timepicker.time_options, v42.go: hideFrom.viz also hides the
# tooltip) touch nothing these dashboards have (tests/config/test_views.py replays them).
SCHEMA_VERSION = 42
TAG = "obs-stack"

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
KIBANA_ALL_LOGS = (
    f"${{kibana_url}}/app/discover#/view/{ALL_LOGS_SEARCH_ID}"
    "?_g=(time:(from:'${__from:date:iso}',to:'${__to:date:iso}'))"
)


class Layout:
    """Hands out panel ids and grid positions row by row (24 columns wide)."""

    def __init__(self) -> None:
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_height = 0

    def place(self, width: int, height: int) -> tuple[int, dict]:
        if self.x + width > 24:
            self.newline()
        pos = {"h": height, "w": width, "x": self.x, "y": self.y}
        self.x += width
        self.row_height = max(self.row_height, height)
        panel_id = self.next_id
        self.next_id += 1
        return panel_id, pos

    def newline(self) -> None:
        if self.x:
            self.y += self.row_height
        self.x = 0
        self.row_height = 0


def prom(expr: str, legend: str = "", *, instant: bool = False, exemplar: bool = False, **extra):
    target = {
        "datasource": PROMETHEUS,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
    }
    if exemplar:
        target["exemplar"] = True
    target.update(extra)
    return target


def panel(layout: Layout, kind: str, title: str, targets: list, *, w: int, h: int, **opts):
    panel_id, pos = layout.place(w, h)
    datasource = targets[0]["datasource"] if targets else None
    for index, target in enumerate(targets):
        target["refId"] = chr(ord("A") + index)
    body = {
        "id": panel_id,
        "type": kind,
        "title": title,
        "gridPos": pos,
        "datasource": datasource,
        "targets": targets,
        "fieldConfig": {"defaults": opts.pop("defaults", {}), "overrides": []},
        "options": opts.pop("options", {}),
    }
    if "description" in opts:
        body["description"] = opts.pop("description")
    if "links" in opts:
        body["links"] = opts.pop("links")
    body.update(opts)
    return body


def thresholds(*steps: tuple[float | None, str]) -> dict:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


LAST_VALUE = {"calcs": ["lastNotNull"], "fields": "", "values": False}


def count_stat(layout: Layout, title: str, target: dict, *, w: int, **opts):
    """A stat of a count that is fine at 0 and bad from 1: green, then red."""
    return panel(
        layout,
        "stat",
        title,
        [target],
        w=w,
        h=9,
        defaults={
            "unit": "short",
            "decimals": 0,
            "color": {"mode": "thresholds"},
            "thresholds": thresholds((None, "green"), (1, "red")),
        },
        options={"colorMode": "background", "graphMode": "none", "reduceOptions": LAST_VALUE},
        **opts,
    )


def graph(layout: Layout, title: str, unit: str, targets: list, *, w: int, **opts):
    """A time series panel of the stack's own metrics, 8 rows high."""
    defaults = {"unit": unit, "custom": {"fillOpacity": 10}}
    return panel(layout, "timeseries", title, targets, w=w, h=8, defaults=defaults, **opts)


# Every dashboard's drop-down of the runbook dashboards (tag "runbook").
RUNBOOKS_LINK = {
    "title": "Runbooks",
    "type": "dashboards",
    "tags": ["runbook"],
    "asDropdown": True,
    "icon": "doc",
}


def dashboard_link(title: str, uid: str) -> dict:
    """A link to another dashboard, on the same time range."""
    return {
        "title": title,
        "type": "link",
        "icon": "dashboard",
        "url": f"/d/{uid}",
        "keepTime": True,
    }


def constant(name: str, value: str) -> dict:
    """A hidden constant variable: the one place in a dashboard naming a base URL."""
    return {"type": "constant", "name": name, "query": value, "hide": 2, "skipUrlSync": True}


def query_variable(name: str, label: str, query: str, *, multi: bool, include_all: bool):
    variable = {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": PROMETHEUS,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "current": {},
        "options": [],
    }
    if include_all:
        # A regex that matches every value, instead of a long alternation of them.
        variable["allValue"] = ".*"
    return variable


def dashboard(uid: str, title: str, description: str, panels: list, **extra) -> dict:
    body = {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": [TAG],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "annotations": {"list": []},
        "templating": {"list": []},
        "links": [],
        "panels": panels,
    }
    body.update(extra)
    return body


def services_overview() -> dict:
    layout = Layout()
    svc = 'job="$service"'
    sel = 'job="$service", endpoint=~"$endpoint"'
    to_jaeger = {
        "title": "Traces of ${service} in Jaeger",
        "url": JAEGER_SEARCH,
        "targetBlank": True,
    }
    to_kibana = {
        "title": "Logs of ${service} in Kibana",
        "url": KIBANA_DISCOVER,
        "targetBlank": True,
    }
    panels = [
        panel(
            layout,
            "stat",
            "Uptime",
            [prom(f"flask_uptime_seconds{{{svc}}}", "{{instance}}", instant=True)],
            w=5,
            h=6,
            description="Seconds since the process started (flask_uptime_seconds); "
            "it drops to 0 at each restart.",
            defaults={
                "unit": "dtdurations",
                "color": {"mode": "thresholds"},
                "thresholds": thresholds((None, "red"), (300, "green")),
            },
            options={
                "reduceOptions": LAST_VALUE,
                "colorMode": "value",
                "graphMode": "none",
            },
        ),
        panel(
            layout,
            "stat",
            "Restarts",
            [
                prom(
                    f"sum(changes(process_start_time_seconds{{{svc}}}[$__range]))",
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
            options={
                "reduceOptions": LAST_VALUE,
                "colorMode": "background",
                "graphMode": "none",
            },
            links=[to_kibana],
        ),
        panel(
            layout,
            "stat",
            "Active users",
            [prom(f"sum(active_users{{{svc}}})", "in flight")],
            w=5,
            h=6,
            description="Requests in flight (active_users), sampled at each scrape.",
            defaults={"unit": "short", "decimals": 0},
            options={
                "reduceOptions": LAST_VALUE,
                "graphMode": "area",
            },
        ),
        panel(
            layout,
            "gauge",
            "Error rate",
            [
                # `or vector(0)`: no 5xx series at all is 0%, not "no data".
                prom(
                    f'(sum(job_endpoint_status:flask_requests:rate5m{{{sel}, status=~"5.."}})'
                    " or vector(0))"
                    f" / sum(job_endpoint_status:flask_requests:rate5m{{{sel}}})",
                    "5xx, last 5 min",
                    instant=True,
                ),
                prom(
                    f"max(flask_error_rate{{{svc}}}) / 100", "all errors since start", instant=True
                ),
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
            options={
                "reduceOptions": LAST_VALUE,
                "showThresholdMarkers": True,
            },
        ),
        panel(
            layout,
            "timeseries",
            "Request rate by endpoint",
            [
                prom(
                    f"sum by (endpoint) (job_endpoint_status:flask_requests:rate5m{{{sel}}})",
                    "{{endpoint}}",
                )
            ],
            w=12,
            h=9,
            description="Requests per second over 5 minutes, by route template "
            "(recording rule job_endpoint_status:flask_requests:rate5m).",
            defaults={
                "unit": "reqps",
                "custom": {"stacking": {"mode": "normal"}, "fillOpacity": 20},
            },
            links=[to_jaeger],
        ),
        panel(
            layout,
            "timeseries",
            "Latency p50 / p95 / p99 (dots: exemplars, click to open the trace)",
            [
                prom(
                    f"histogram_quantile({q}, sum by (le) (rate("
                    f"flask_request_duration_seconds_bucket{{{sel}}}[$__rate_interval])))",
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
            links=[to_jaeger],
        ),
        panel(
            layout,
            "barchart",
            "Errors by type (selected range)",
            [
                prom(
                    f"sum by (error_type) (increase(flask_errors_total{{{svc}}}[$__range]))",
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
            links=[to_kibana],
        ),
        panel(
            layout,
            "timeseries",
            "Error log lines by error.type (Elasticsearch)",
            [
                {
                    "datasource": ELASTICSEARCH,
                    "query": 'service.name:"$service" AND error.type:*',
                    "metrics": [{"id": "1", "type": "count"}],
                    "bucketAggs": [
                        {
                            "id": "2",
                            "type": "terms",
                            "field": "error.type",
                            "settings": {
                                "size": "10",
                                "order": "desc",
                                "orderBy": "_count",
                                "min_doc_count": "1",
                            },
                        },
                        {
                            "id": "3",
                            "type": "date_histogram",
                            "field": "@timestamp",
                            "settings": {"interval": "auto", "min_doc_count": "0"},
                        },
                    ],
                    "timeField": "@timestamp",
                }
            ],
            w=12,
            h=9,
            description="Log lines that carry an error.type, counted over time from the "
            "logs in Elasticsearch.",
            defaults={
                "unit": "short",
                "custom": {"drawStyle": "bars", "fillOpacity": 60, "stacking": {"mode": "normal"}},
            },
            links=[to_kibana],
        ),
        panel(
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
            links=[to_kibana],
        ),
    ]
    return dashboard(
        SERVICES_DASHBOARD_UID,
        "Services overview",
        "Rate, errors and duration of one service, its restarts and its error logs.",
        panels,
        templating={
            "list": [
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
        },
        links=[
            {
                "title": "Traces in Jaeger",
                "type": "link",
                "icon": "external link",
                "url": JAEGER_SEARCH,
                "targetBlank": True,
                "tooltip": "Same service and time range",
            },
            {
                "title": "Logs in Kibana",
                "type": "link",
                "icon": "external link",
                "url": KIBANA_DISCOVER,
                "targetBlank": True,
                "tooltip": "Same service and time range",
            },
            dashboard_link("Stack health", STACK_DASHBOARD_UID),
            RUNBOOKS_LINK,
        ],
    )


# The labels that name one scrape target, and the only ones the "Scrape targets" table's
# two queries keep: Grafana's merge transformation joins rows on every field that all of
# its frames have (the label columns and Time), so a label that differs between the two
# queries, such as __name__ (up vs scrape_duration_seconds), would keep every target on
# two rows (tests/config/test_views.py simulates the merge).
TARGET_LABELS = ("job", "instance")


def stack_health() -> dict:
    layout = Layout()
    job = 'job=~"$job"'
    rate = "[$__rate_interval]"
    by_target = f"max by ({', '.join(TARGET_LABELS)})"
    panels = [
        panel(
            layout,
            "table",
            "Scrape targets",
            [
                prom(f"{by_target} (up{{{job}}})", instant=True, format="table"),
                prom(
                    f"{by_target} (scrape_duration_seconds{{{job}}})", instant=True, format="table"
                ),
            ],
            w=14,
            h=9,
            description="Every target Prometheus scrapes: up (1 = scraped, 0 = down, "
            "TargetDown fires after 1 minute) and how long its last scrape took.",
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "renameByName": {"Value #A": "up", "Value #B": "scrape seconds"},
                    },
                },
            ],
            defaults={"custom": {"align": "auto"}},
        ),
        count_stat(
            layout,
            "Targets down",
            prom(f"count(up{{{job}}} == 0) or vector(0)", "down", instant=True),
            w=4,
        ),
        count_stat(
            layout,
            "Firing alerts",
            prom(
                'count(ALERTS{alertstate="firing", alertname!="Watchdog"}) or vector(0)',
                "firing",
                instant=True,
            ),
            w=6,
            description="Alerts Prometheus is firing, Watchdog (always firing) excepted.",
        ),
        # Prometheus
        graph(
            layout,
            "Prometheus: samples ingested per second",
            "ops",
            [prom(f"rate(prometheus_tsdb_head_samples_appended_total{rate})", "{{instance}}")],
            w=8,
        ),
        graph(
            layout,
            "Prometheus: series in the head block",
            "short",
            [prom("prometheus_tsdb_head_series", "{{instance}}")],
            w=8,
        ),
        graph(
            layout,
            "Prometheus: rule evaluation failures and alerts dropped",
            "ops",
            [
                prom(
                    f"sum(rate(prometheus_rule_evaluation_failures_total{rate}))",
                    "rule evaluation failures/s",
                ),
                prom(
                    f"sum(rate(prometheus_notifications_dropped_total{rate}))", "alerts dropped/s"
                ),
            ],
            w=8,
        ),
        # Alertmanager
        graph(
            layout,
            "Alertmanager: alerts by state",
            "short",
            [prom("sum by (state) (alertmanager_alerts)", "{{state}}")],
            w=8,
        ),
        graph(
            layout,
            "Alertmanager: notifications sent and failed",
            "ops",
            [
                prom(
                    f"sum by (integration) (rate(alertmanager_notifications_total{rate}))",
                    "{{integration}} sent/s",
                ),
                prom(
                    f"sum by (integration) (rate(alertmanager_notifications_failed_total{rate}))",
                    "{{integration}} failed/s",
                ),
            ],
            w=8,
        ),
        # Jaeger (an OpenTelemetry Collector: otelcol_* metrics)
        graph(
            layout,
            "Jaeger: spans received, refused, stored",
            "ops",
            [
                prom(f"sum(rate(otelcol_receiver_accepted_spans_total{rate}))", "accepted/s"),
                prom(f"sum(rate(otelcol_receiver_refused_spans_total{rate}))", "refused/s"),
                prom(f"sum(rate(otelcol_exporter_sent_spans_total{rate}))", "stored/s"),
                prom(
                    f"sum(rate(otelcol_exporter_send_failed_spans_total{rate}))", "store failed/s"
                ),
            ],
            w=8,
        ),
        # Elasticsearch (prometheus-elasticsearch-exporter)
        panel(
            layout,
            "stat",
            "Elasticsearch: cluster health",
            [
                prom(
                    'max(elasticsearch_cluster_health_status{color="green"}) * 2'
                    ' + max(elasticsearch_cluster_health_status{color="yellow"})',
                    "health",
                    instant=True,
                )
            ],
            w=4,
            h=8,
            description="green: all shards allocated; yellow: replicas missing (normal "
            "on one node); red: primary shards missing, logs are being lost.",
            defaults={
                "mappings": [
                    {
                        "type": "value",
                        "options": {
                            "0": {"text": "red", "color": "red"},
                            "1": {"text": "yellow", "color": "yellow"},
                            "2": {"text": "green", "color": "green"},
                        },
                    }
                ],
                "unit": "none",
            },
            options={
                "colorMode": "background",
                "graphMode": "none",
                "reduceOptions": LAST_VALUE,
            },
        ),
        graph(
            layout,
            "Elasticsearch: log documents by index",
            "short",
            [
                prom(
                    'sum by (index) (elasticsearch_indices_docs_primary{index=~"obs-logs-.*"})',
                    "{{index}}",
                )
            ],
            w=10,
        ),
        graph(
            layout,
            "Elasticsearch: JVM heap used",
            "bytes",
            [
                prom('elasticsearch_jvm_memory_used_bytes{area="heap"}', "used {{name}}"),
                prom('elasticsearch_jvm_memory_max_bytes{area="heap"}', "max {{name}}"),
            ],
            w=10,
        ),
        # Fluent Bit (its /api/v1/metrics/prometheus endpoint)
        graph(
            layout,
            "Fluent Bit: records read and shipped",
            "ops",
            [
                prom(f"sum(rate(fluentbit_input_records_total{rate}))", "read/s"),
                prom(f"sum(rate(fluentbit_output_proc_records_total{rate}))", "shipped/s"),
            ],
            w=12,
            description="Records read by Fluent Bit's inputs and delivered by its outputs. "
            "Empty in the local stack, which ships logs with a stand-in forwarder.",
            links=[{"title": "All logs in Kibana", "url": KIBANA_ALL_LOGS, "targetBlank": True}],
        ),
        graph(
            layout,
            "Fluent Bit: output errors and given-up retries",
            "ops",
            [
                prom(f"sum(rate(fluentbit_output_errors_total{rate}))", "errors/s"),
                prom(
                    f"sum(rate(fluentbit_output_retries_failed_total{rate}))", "retries given up/s"
                ),
            ],
            w=12,
            description="Retries given up are records lost on the way to Elasticsearch.",
        ),
    ]
    return dashboard(
        STACK_DASHBOARD_UID,
        "Stack health",
        "Scrape health of every target and the monitoring components' own metrics.",
        panels,
        templating={
            "list": [
                query_variable("job", "Job", "label_values(up, job)", multi=True, include_all=True),
                constant("kibana_url", KIBANA_URL),
            ]
        },
        links=[
            dashboard_link("Services overview", SERVICES_DASHBOARD_UID),
            RUNBOOKS_LINK,
        ],
    )


def runbook(path: Path) -> dict:
    """docs/runbooks/NAME.md as a dashboard with one Markdown text panel."""
    text = path.read_text()
    title = text.splitlines()[0].lstrip("# ").strip()
    layout = Layout()
    body = panel(
        layout,
        "text",
        title,
        [],
        w=24,
        h=30,
        options={
            "mode": "markdown",
            "content": text,
            "code": {"language": "plaintext", "showLineNumbers": False, "showMiniMap": False},
        },
    )
    del body["datasource"], body["targets"]
    return dashboard(
        f"{RUNBOOK_UID_PREFIX}{path.stem}",
        title,
        f"docs/runbooks/{path.name}, rendered. Alerts link here (runbook_url).",
        [body],
        tags=[TAG, "runbook"],
        refresh="",
        links=[
            dashboard_link("Services overview", SERVICES_DASHBOARD_UID),
            dashboard_link("Stack health", STACK_DASHBOARD_UID),
            RUNBOOKS_LINK,
        ],
    )


def dashboards(runbooks_dir: Path) -> dict[str, dict]:
    """File name -> dashboard, for grafana/dashboards/."""
    files = {
        "services-overview.json": services_overview(),
        "stack-health.json": stack_health(),
    }
    for path in sorted(runbooks_dir.glob("*.md")):
        files[f"runbook-{path.stem}.json"] = runbook(path)
    return files
