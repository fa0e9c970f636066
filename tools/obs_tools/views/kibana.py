"""Kibana saved objects (kibana/saved-objects.ndjson), for Kibana's import API
(POST /api/saved_objects/_import?overwrite=true): a data view over the log indices,
saved searches, two visualizations and a small logs dashboard. Ids are fixed, so a
second import overwrites instead of duplicating, and links (alert e-mails, Grafana,
Jaeger) can name them.

Objects carry no migration version: Kibana migrates them on import from the oldest
format, and every reference uses the *RefName form that those migrations expect.

Reads no environment variables.
"""

from __future__ import annotations

import json

from .links import ALL_LOGS_SEARCH_ID, DATA_VIEW_ID, JAEGER_URL, SERVICES, service_search_id

INDEX_PATTERN = "obs-logs-*"
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"
# One second, in the unit of ECS event.duration (nanoseconds).
SLOW_NS = 1_000_000_000


def _search_source(query: str) -> dict:
    source = {
        "query": {"query": query, "language": "kuery"},
        "filter": [],
        "indexRefName": INDEX_REF,
    }
    return {"searchSourceJSON": json.dumps(source, sort_keys=True)}


def _index_reference() -> list[dict]:
    return [{"name": INDEX_REF, "type": "index-pattern", "id": DATA_VIEW_ID}]


def data_view() -> dict:
    field_formats = {
        # trace.id opens the trace in Jaeger: the link from a log line to its trace.
        "trace.id": {
            "id": "url",
            "params": {
                "type": "a",
                "urlTemplate": f"{JAEGER_URL}/trace/{{{{value}}}}",
                "labelTemplate": "{{value}}",
                "openLinkInCurrentTab": False,
            },
        },
        # ECS event.duration is in nanoseconds.
        "event.duration": {
            "id": "duration",
            "params": {
                "inputFormat": "nanoseconds",
                "outputFormat": "humanizePrecise",
                "outputPrecision": 1,
            },
        },
    }
    return {
        "type": "index-pattern",
        "id": DATA_VIEW_ID,
        "attributes": {
            "title": INDEX_PATTERN,
            "name": "obs-stack logs",
            "timeFieldName": "@timestamp",
            "fieldFormatMap": json.dumps(field_formats, sort_keys=True),
        },
        "references": [],
    }


def saved_search(
    object_id: str,
    title: str,
    description: str,
    query: str,
    columns: list[str],
    sort: list[list[str]] | None = None,
) -> dict:
    return {
        "type": "search",
        "id": object_id,
        "attributes": {
            "title": title,
            "description": description,
            "columns": columns,
            "sort": sort or [["@timestamp", "desc"]],
            "grid": {},
            "hideChart": False,
            "kibanaSavedObjectMeta": _search_source(query),
        },
        "references": _index_reference(),
    }


ACCESS_COLUMNS = [
    "service.name",
    "log.level",
    "http.route",
    "http.response.status_code",
    "message",
    "trace.id",
]
ERROR_COLUMNS = ["service.name", "error.type", "message", "http.route", "trace.id"]
ERROR_QUERY = "log.level:(error or critical)"


def searches() -> list[dict]:
    objects = [
        saved_search(
            ALL_LOGS_SEARCH_ID, "All logs", "Every log line of both services.", "", ACCESS_COLUMNS
        ),
        saved_search(
            "obs-logs-errors",
            "Errors",
            "Error and critical lines of both services; trace.id opens the trace.",
            ERROR_QUERY,
            ERROR_COLUMNS,
        ),
        saved_search(
            "obs-logs-slow",
            "Slow requests",
            "Requests that took 1 s or more (event.duration), slowest first.",
            f"event.duration >= {SLOW_NS}",
            [
                "service.name",
                "http.route",
                "event.duration",
                "http.response.status_code",
                "trace.id",
            ],
            sort=[["event.duration", "desc"]],
        ),
    ]
    for service in SERVICES:
        objects.append(
            saved_search(
                service_search_id(service),
                f"{service} logs",
                f"Every log line of the {service}. Alert e-mails link here.",
                f'service.name:"{service}"',
                ACCESS_COLUMNS,
            )
        )
        objects.append(
            saved_search(
                f"obs-logs-{service}-errors",
                f"{service} errors",
                f"Error and critical lines of the {service}.",
                f'service.name:"{service}" and {ERROR_QUERY}',
                ERROR_COLUMNS,
            )
        )
    return objects


def _visualization(
    object_id: str, title: str, description: str, vis_state: dict, query: str
) -> dict:
    vis_state = {"title": title, **vis_state}
    return {
        "type": "visualization",
        "id": object_id,
        "attributes": {
            "title": title,
            "description": description,
            "visState": json.dumps(vis_state, sort_keys=True),
            "uiStateJSON": "{}",
            "version": 1,
            "kibanaSavedObjectMeta": _search_source(query),
        },
        "references": _index_reference(),
    }


def _terms(agg_id: str, field: str, schema: str, **params) -> dict:
    """A terms bucket aggregation on `field`, ordered by the count (agg 1)."""
    return {
        "id": agg_id,
        "enabled": True,
        "type": "terms",
        "schema": schema,
        "params": {
            "field": field,
            "size": 10,
            "order": "desc",
            "orderBy": "1",
            "otherBucketLabel": "Other",
            "missingBucket": False,
            "missingBucketLabel": "Missing",
            **params,
        },
    }


def errors_over_time() -> dict:
    axis = {"show": True, "style": {}, "title": {}}
    params = {
        "type": "histogram",
        "grid": {"categoryLines": False},
        "categoryAxes": [
            {
                **axis,
                "id": "CategoryAxis-1",
                "type": "category",
                "position": "bottom",
                "scale": {"type": "linear"},
                "labels": {"show": True, "filter": True, "truncate": 100},
            }
        ],
        "valueAxes": [
            {
                **axis,
                "id": "ValueAxis-1",
                "name": "LeftAxis-1",
                "type": "value",
                "position": "left",
                "scale": {"type": "linear", "mode": "normal"},
                "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                "title": {"text": "Error lines"},
            }
        ],
        "seriesParams": [
            {
                "show": True,
                "type": "histogram",
                "mode": "stacked",
                "data": {"label": "Error lines", "id": "1"},
                "valueAxis": "ValueAxis-1",
                "drawLinesBetweenPoints": True,
                "lineWidth": 2,
                "showCircles": True,
            }
        ],
        "addTooltip": True,
        "addLegend": True,
        "legendPosition": "right",
        "times": [],
        "addTimeMarker": False,
        "labels": {"show": False},
    }
    aggs = [
        {"id": "1", "enabled": True, "type": "count", "schema": "metric", "params": {}},
        {
            "id": "2",
            "enabled": True,
            "type": "date_histogram",
            "schema": "segment",
            "params": {
                "field": "@timestamp",
                "interval": "auto",
                "min_doc_count": 1,
                "extended_bounds": {},
            },
        },
        _terms("3", "error.type", "group", otherBucket=True),
    ]
    return _visualization(
        "obs-logs-errors-over-time",
        "Errors over time by error.type",
        "Log lines with an error.type, per time bucket, stacked by type.",
        {"type": "histogram", "params": params, "aggs": aggs},
        "error.type:*",
    )


def top_routes() -> dict:
    params = {
        "perPage": 10,
        "showPartialRows": False,
        "showMetricsAtAllLevels": False,
        "showTotal": False,
        "totalFunc": "sum",
        "percentageCol": "",
    }
    aggs = [
        {
            "id": "1",
            "enabled": True,
            "type": "count",
            "schema": "metric",
            "params": {"customLabel": "Requests"},
        },
        {
            "id": "2",
            "enabled": True,
            "type": "avg",
            "schema": "metric",
            "params": {"field": "event.duration", "customLabel": "Average duration"},
        },
        {
            "id": "3",
            "enabled": True,
            "type": "max",
            "schema": "metric",
            "params": {"field": "event.duration", "customLabel": "Slowest"},
        },
        _terms("4", "http.route", "bucket", otherBucket=False, customLabel="Route"),
    ]
    return _visualization(
        "obs-logs-top-routes",
        "Top routes",
        "The busiest routes, with their average and slowest duration.",
        {"type": "table", "params": params, "aggs": aggs},
        "http.route:*",
    )


def logs_dashboard(panels: list[tuple[str, str, dict]]) -> dict:
    """panels: (saved object type, id, gridData) in display order."""
    panels_json = []
    references = []
    for index, (kind, object_id, grid) in enumerate(panels, start=1):
        ref = f"panel_{index}"
        panels_json.append(
            {
                "type": kind,
                "gridData": {**grid, "i": str(index)},
                "panelIndex": str(index),
                "embeddableConfig": {},
                "panelRefName": ref,
            }
        )
        references.append({"name": ref, "type": kind, "id": object_id})
    return {
        "type": "dashboard",
        "id": "obs-logs-dashboard",
        "attributes": {
            "title": "obs-stack logs",
            "description": "Errors over time by type, the busiest routes, the latest errors "
            "and the slowest requests. trace.id opens the trace in Jaeger.",
            "panelsJSON": json.dumps(panels_json, sort_keys=True),
            "optionsJSON": json.dumps(
                {"useMargins": True, "hidePanelTitles": False, "syncColors": False}, sort_keys=True
            ),
            "timeRestore": True,
            "timeFrom": "now-1h",
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 30000},
            "version": 1,
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": json.dumps(
                    {"query": {"query": "", "language": "kuery"}, "filter": []}, sort_keys=True
                )
            },
        },
        "references": references,
    }


def saved_objects() -> list[dict]:
    over_time, routes = errors_over_time(), top_routes()
    dashboard = logs_dashboard(
        [
            ("visualization", over_time["id"], {"x": 0, "y": 0, "w": 30, "h": 15}),
            ("visualization", routes["id"], {"x": 30, "y": 0, "w": 18, "h": 15}),
            ("search", "obs-logs-errors", {"x": 0, "y": 15, "w": 48, "h": 15}),
            ("search", "obs-logs-slow", {"x": 0, "y": 30, "w": 48, "h": 15}),
        ]
    )
    # Referenced objects first, so that a reader meets each id before its use.
    return [data_view(), *searches(), over_time, routes, dashboard]


def ndjson(objects: list[dict]) -> str:
    return "".join(json.dumps(o, sort_keys=True) + "\n" for o in objects)
