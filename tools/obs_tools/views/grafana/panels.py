"""The building blocks of the Grafana dashboards: panel layout, Prometheus targets, panels,
thresholds, links between dashboards, template variables and the dashboard envelope, with
the constants they share (datasources, the dashboard schema version, the tag).

Reads no environment variables.
"""

from __future__ import annotations

from ..links import ELASTICSEARCH_UID, PROMETHEUS_UID

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
