"""The "Stack health" dashboard: scrape health of every target and the monitoring
components' own metrics (Prometheus, Alertmanager, Jaeger, Elasticsearch, Fluent Bit).

Reads no environment variables.
"""

from __future__ import annotations

from ..links import ALL_LOGS_SEARCH_ID, KIBANA_URL, SERVICES_DASHBOARD_UID, STACK_DASHBOARD_UID
from .panels import (
    LAST_VALUE,
    RUNBOOKS_LINK,
    Layout,
    constant,
    count_stat,
    dashboard,
    dashboard_link,
    graph,
    panel,
    prom,
    query_variable,
)

# Resolved by Grafana from the dashboard's variable and time range.
KIBANA_ALL_LOGS = (
    f"${{kibana_url}}/app/discover#/view/{ALL_LOGS_SEARCH_ID}"
    "?_g=(time:(from:'${__from:date:iso}',to:'${__to:date:iso}'))"
)

# The labels that name one scrape target, and the only ones the "Scrape targets" table's
# two queries keep: Grafana's merge transformation joins rows on every field that all of
# its frames have (the label columns and Time), so a label that differs between the two
# queries, such as __name__ (up vs scrape_duration_seconds), would keep every target on
# two rows (tests/config/test_views.py simulates the merge).
TARGET_LABELS = ("job", "instance")

JOB = 'job=~"$job"'
RATE = "[$__rate_interval]"


def _scrape_targets(layout: Layout) -> dict:
    by_target = f"max by ({', '.join(TARGET_LABELS)})"
    return panel(
        layout,
        "table",
        "Scrape targets",
        [
            prom(f"{by_target} (up{{{JOB}}})", instant=True, format="table"),
            prom(f"{by_target} (scrape_duration_seconds{{{JOB}}})", instant=True, format="table"),
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
    )


def _counts(layout: Layout) -> list[dict]:
    return [
        count_stat(
            layout,
            "Targets down",
            prom(f"count(up{{{JOB}}} == 0) or vector(0)", "down", instant=True),
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
    ]


def _prometheus(layout: Layout) -> list[dict]:
    return [
        graph(
            layout,
            "Prometheus: samples ingested per second",
            "ops",
            [prom(f"rate(prometheus_tsdb_head_samples_appended_total{RATE})", "{{instance}}")],
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
                    f"sum(rate(prometheus_rule_evaluation_failures_total{RATE}))",
                    "rule evaluation failures/s",
                ),
                prom(
                    f"sum(rate(prometheus_notifications_dropped_total{RATE}))", "alerts dropped/s"
                ),
            ],
            w=8,
        ),
    ]


def _alertmanager(layout: Layout) -> list[dict]:
    return [
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
                    f"sum by (integration) (rate(alertmanager_notifications_total{RATE}))",
                    "{{integration}} sent/s",
                ),
                prom(
                    f"sum by (integration) (rate(alertmanager_notifications_failed_total{RATE}))",
                    "{{integration}} failed/s",
                ),
            ],
            w=8,
        ),
    ]


def _jaeger(layout: Layout) -> list[dict]:
    """Jaeger v2 is an OpenTelemetry Collector: its metrics are otelcol_*."""
    return [
        graph(
            layout,
            "Jaeger: spans received, refused, stored",
            "ops",
            [
                prom(f"sum(rate(otelcol_receiver_accepted_spans_total{RATE}))", "accepted/s"),
                prom(f"sum(rate(otelcol_receiver_refused_spans_total{RATE}))", "refused/s"),
                prom(f"sum(rate(otelcol_exporter_sent_spans_total{RATE}))", "stored/s"),
                prom(
                    f"sum(rate(otelcol_exporter_send_failed_spans_total{RATE}))", "store failed/s"
                ),
            ],
            w=8,
        ),
    ]


def _elasticsearch_health(layout: Layout) -> dict:
    """The cluster's health from prometheus-elasticsearch-exporter, as 0, 1 or 2."""
    colors = ("red", "yellow", "green")
    return panel(
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
                    "options": {str(i): {"text": c, "color": c} for i, c in enumerate(colors)},
                }
            ],
            "unit": "none",
        },
        options={"colorMode": "background", "graphMode": "none", "reduceOptions": LAST_VALUE},
    )


def _elasticsearch(layout: Layout) -> list[dict]:
    """prometheus-elasticsearch-exporter's metrics."""
    return [
        _elasticsearch_health(layout),
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
    ]


def _fluent_bit(layout: Layout) -> list[dict]:
    """Fluent Bit's /api/v1/metrics/prometheus endpoint."""
    return [
        graph(
            layout,
            "Fluent Bit: records read and shipped",
            "ops",
            [
                prom(f"sum(rate(fluentbit_input_records_total{RATE}))", "read/s"),
                prom(f"sum(rate(fluentbit_output_proc_records_total{RATE}))", "shipped/s"),
            ],
            w=12,
            description="Records read by Fluent Bit's inputs and delivered by its outputs.",
            links=[{"title": "All logs in Kibana", "url": KIBANA_ALL_LOGS, "targetBlank": True}],
        ),
        graph(
            layout,
            "Fluent Bit: output errors and given-up retries",
            "ops",
            [
                prom(f"sum(rate(fluentbit_output_errors_total{RATE}))", "errors/s"),
                prom(
                    f"sum(rate(fluentbit_output_retries_failed_total{RATE}))", "retries given up/s"
                ),
            ],
            w=12,
            description="Retries given up are records lost on the way to Elasticsearch.",
        ),
    ]


def stack_health() -> dict:
    layout = Layout()
    # In this order: the layout numbers the panels and fills the rows as they are made.
    panels = [
        _scrape_targets(layout),
        *_counts(layout),
        *_prometheus(layout),
        *_alertmanager(layout),
        *_jaeger(layout),
        *_elasticsearch(layout),
        *_fluent_bit(layout),
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
