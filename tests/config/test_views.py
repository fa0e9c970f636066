"""The users' views as files: Grafana provisioning and dashboards, Kibana saved objects,
Jaeger's UI config, and the links between them and the alerts. No backend needed;
tests/e2e/test_views.py runs the same objects against the real Prometheus and
Elasticsearch.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
import yaml
from obs_tools.common.paths import REPO
from obs_tools.views import cli as generator
from obs_tools.views import links

from tests.support import views as v

GRAFANA = REPO / "grafana"
DATASOURCES = yaml.safe_load((GRAFANA / "datasources.yaml").read_text())["datasources"]
PROVIDERS = yaml.safe_load((GRAFANA / "dashboard-providers.yaml").read_text())["providers"]
DASHBOARDS = {p.name: json.loads(p.read_text()) for p in sorted(v.DASHBOARDS_DIR.glob("*.json"))}
OBJECTS = v.load_saved_objects()
EMAIL_TEMPLATE = (REPO / "prometheus" / "alertmanager" / "email.tmpl").read_text()
JAEGER_UI = json.loads((REPO / "jaeger" / "ui-config.json").read_text())

# Panel types and units that Grafana ships (no plugin needed). Panel types: the core
# panels of public/app/plugins/panel/; units: the ids of
# packages/grafana-data/src/valueFormats/categories.ts that fit this stack (Misc,
# Data, Time, Throughput).
PANEL_TYPES = {
    "timeseries",
    "stat",
    "gauge",
    "bargauge",
    "barchart",
    "table",
    "logs",
    "text",
    "state-timeline",
    "status-history",
    "piechart",
    "heatmap",
    "histogram",
    "traces",
    "nodeGraph",
    "row",
    "dashlist",
    "alertlist",
    "news",
    "xychart",
    "candlestick",
    "canvas",
    "flamegraph",
    "geomap",
    "trend",
    "datagrid",
    "annolist",
}
UNITS = {
    "none",
    "string",
    "short",
    "percent",
    "percentunit",
    "sci",
    "locale",
    "bits",
    "bytes",
    "kbytes",
    "mbytes",
    "gbytes",
    "decbits",
    "decbytes",
    "pps",
    "bps",
    "Bps",
    "hertz",
    "ns",
    "µs",
    "ms",
    "s",
    "m",
    "h",
    "d",
    "dtdurationms",
    "dtdurations",
    "dthms",
    "dtdhms",
    "clockms",
    "clocks",
    "cps",
    "ops",
    "reqps",
    "rps",
    "wps",
    "iops",
    "cpm",
    "opm",
    "rpm",
    "wpm",
    "dateTimeAsIso",
    "dateTimeFromNow",
}


def lint(dashboard: dict, datasource_uids: set[str]) -> list[str]:
    """Problems of one dashboard, each naming it and the panel."""
    title = dashboard["title"]
    problems = []
    ids = [p["id"] for p in dashboard["panels"]]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f'dashboard "{title}": panel id {dup} is used twice')
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        where = f'dashboard "{title}", panel "{panel["title"]}"'
        pos = panel["gridPos"]
        if not (
            pos["w"] >= 1
            and pos["h"] >= 1
            and pos["x"] >= 0
            and pos["y"] >= 0
            and pos["x"] + pos["w"] <= 24
        ):
            problems.append(f"{where}: gridPos {pos} is outside the 24-column grid")
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                if (x, y) in cells and cells[(x, y)] != panel["title"]:
                    problems.append(f'{where}: overlaps panel "{cells[(x, y)]}"')
                    break
                cells[(x, y)] = panel["title"]
            else:
                continue
            break
        if panel["type"] not in PANEL_TYPES:
            problems.append(f"{where}: panel type {panel['type']!r} is not one Grafana ships")
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if unit is not None and unit not in UNITS:
            problems.append(f"{where}: unit {unit!r} is not one Grafana ships")
        refs = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
        for ref in filter(None, refs):
            if ref["uid"] not in datasource_uids:
                problems.append(f"{where}: datasource uid {ref['uid']!r} is not provisioned")
    for variable in dashboard.get("templating", {}).get("list", []):
        ref = variable.get("datasource")
        if ref and ref["uid"] not in datasource_uids:
            problems.append(
                f'dashboard "{title}", variable ${variable["name"]}: datasource uid '
                f"{ref['uid']!r} is not provisioned"
            )
    return problems


UIDS = {d["uid"] for d in DATASOURCES}


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_lint(name):
    assert lint(DASHBOARDS[name], UIDS) == []


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda d: d["panels"][1].update(id=d["panels"][0]["id"]), "is used twice"),
        (
            lambda d: d["panels"][1]["gridPos"].update(x=d["panels"][0]["gridPos"]["x"]),
            'overlaps panel "Uptime"',
        ),
        (lambda d: d["panels"][1]["gridPos"].update(w=30), "outside the 24-column grid"),
        (lambda d: d["panels"][1].update(type="graphh"), "'graphh' is not one Grafana ships"),
        (lambda d: d["panels"][1]["fieldConfig"]["defaults"].update(unit="secs"), "unit 'secs'"),
        (
            lambda d: d["panels"][1]["targets"][0]["datasource"].update(uid="promethues"),
            "'promethues' is not provisioned",
        ),
    ],
    ids=["duplicate id", "overlap", "grid", "panel type", "unit", "datasource uid"],
)
def test_dashboard_lint_catches_a_broken_dashboard(breakage, expected):
    broken = copy.deepcopy(DASHBOARDS["services-overview.json"])
    breakage(broken)
    problems = lint(broken, UIDS)
    assert problems and all('dashboard "Services overview"' in p for p in problems)
    assert any(expected in p for p in problems), problems


def test_regenerating_the_views_changes_nothing():
    # The committed JSON and NDJSON are exactly what `make views` writes.
    assert generator.stale_files(generator.render()) == []


def test_a_hand_edit_or_a_leftover_file_is_detected(tmp_path, monkeypatch):
    monkeypatch.setattr(generator, "DASHBOARDS_DIR", tmp_path)
    expected = {p: text for p, text in generator.render().items() if p.parent == tmp_path}
    for path, text in expected.items():
        path.write_text(text)
    assert generator.stale_files(expected) == []
    edited = tmp_path / "services-overview.json"
    edited.write_text(edited.read_text().replace("flask_uptime_seconds", "flask_uptime_secs"))
    (tmp_path / "old-dashboard.json").write_text("{}")
    stale = [Path(s).name for s in generator.stale_files(expected)]
    assert stale == ["old-dashboard.json", "services-overview.json"]


def test_datasources_have_fixed_uids_and_link_to_each_other():
    by_uid = {d["uid"]: d for d in DATASOURCES}
    assert set(by_uid) == {links.PROMETHEUS_UID, links.JAEGER_UID, links.ELASTICSEARCH_UID}
    prometheus = by_uid[links.PROMETHEUS_UID]["jsonData"]
    (exemplar,) = prometheus["exemplarTraceIdDestinations"]
    # The services' exemplars carry the label trace_id (services/telemetry).
    assert exemplar == {**exemplar, "name": "trace_id", "datasourceUid": links.JAEGER_UID}
    es = by_uid[links.ELASTICSEARCH_UID]
    assert es["jsonData"]["index"] == "obs-logs-*"
    assert es["jsonData"]["timeField"] == "@timestamp"
    (link,) = es["jsonData"]["dataLinks"]
    assert link["field"] == "trace.id" and link["datasourceUid"] == links.JAEGER_UID
    to_logs = by_uid[links.JAEGER_UID]["jsonData"]["tracesToLogsV2"]
    assert to_logs["datasourceUid"] == links.ELASTICSEARCH_UID


def test_datasources_hold_no_secret_and_escape_grafana_macros():
    text = (GRAFANA / "datasources.yaml").read_text()
    es = next(d for d in DATASOURCES if d["type"] == "elasticsearch")
    # The password is Grafana's environment variable, filled in from a Secret.
    assert es["secureJsonData"] == {"basicAuthPassword": "$ELASTICSEARCH_GRAFANA_PASSWORD"}
    # Grafana expands ${...} in provisioning files: its own macros must be written $${...}.
    assert not re.search(r"(?<!\$)\$\{__", text)
    for path in GRAFANA.rglob("*"):
        if path.is_file():
            content = path.read_text().lower()
            assert "admin_password" not in content and "admin:admin" not in content, path


def test_provider_loads_the_mounted_dashboards_read_only():
    (provider,) = PROVIDERS
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert provider["allowUiUpdates"] is False


def test_kustomizations_ship_every_file_and_stay_under_a_configmap_limit():
    grafana = yaml.safe_load((GRAFANA / "kustomization.yaml").read_text())
    generators = {g["name"]: g["files"] for g in grafana["configMapGenerator"]}
    assert set(generators) == {
        "grafana-datasources",
        "grafana-dashboard-providers",
        "grafana-dashboards",
    }
    assert generators["grafana-datasources"] == ["datasources.yaml"]
    assert generators["grafana-dashboard-providers"] == ["dashboard-providers.yaml"]
    assert sorted(generators["grafana-dashboards"]) == sorted(
        f"dashboards/{name}" for name in DASHBOARDS
    )
    assert "disableNameSuffixHash" not in json.dumps(grafana)
    kibana = yaml.safe_load((REPO / "kibana" / "kustomization.yaml").read_text())
    (objects,) = kibana["configMapGenerator"]
    assert objects == {"name": "kibana-saved-objects", "files": ["saved-objects.ndjson"]}
    for name, files in generators.items():
        size = sum((GRAFANA / f).stat().st_size for f in files)
        assert size < 900 * 1024, f"ConfigMap {name} is {size} bytes, near the 1 MiB limit"
    assert v.SAVED_OBJECTS.stat().st_size < 900 * 1024


def test_every_runbook_is_a_dashboard():
    uids = {d["uid"] for d in DASHBOARDS.values()}
    for path in (REPO / "docs" / "runbooks").glob("*.md"):
        assert f"{links.RUNBOOK_UID_PREFIX}{path.stem}" in uids, path


# -- Kibana --------------------------------------------------------------------------


def test_saved_object_ids_are_unique_and_importable_types():
    keys = [(o["type"], o["id"]) for o in OBJECTS]
    assert len(keys) == len(set(keys))
    assert {o["type"] for o in OBJECTS} <= {"index-pattern", "search", "visualization", "dashboard"}


def test_every_reference_in_the_ndjson_resolves():
    assert v.check_saved_object_references(OBJECTS) == []


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (
            lambda objs: objs[1]["references"][0].update(id="obs-logz"),
            "reference kibanaSavedObjectMeta.searchSourceJSON.index -> index-pattern 'obs-logz'",
        ),
        (
            lambda objs: objs[-1]["references"][0].update(name="panel_9"),
            "'panel_1' names no reference",
        ),
    ],
    ids=["misspelt id", "misspelt reference name"],
)
def test_a_broken_reference_is_reported(breakage, expected):
    broken = copy.deepcopy(OBJECTS)
    breakage(broken)
    problems = v.check_saved_object_references(broken)
    assert any(expected in p for p in problems), problems


def test_data_view_links_trace_ids_to_jaeger():
    (data_view,) = [o for o in OBJECTS if o["type"] == "index-pattern"]
    assert data_view["id"] == links.DATA_VIEW_ID
    attrs = data_view["attributes"]
    assert attrs["title"] == "obs-logs-*" and attrs["timeFieldName"] == "@timestamp"
    trace = json.loads(attrs["fieldFormatMap"])["trace.id"]
    assert trace["id"] == "url"
    assert trace["params"]["urlTemplate"] == f"{links.JAEGER_URL}/trace/{{{{value}}}}"


def test_saved_searches_cover_errors_slow_requests_and_each_service():
    searches = {o["id"]: o["attributes"] for o in OBJECTS if o["type"] == "search"}
    queries = {
        i: json.loads(a["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
        for i, a in searches.items()
    }
    assert "log.level:" in queries["obs-logs-errors"] and "error" in queries["obs-logs-errors"]
    assert queries["obs-logs-slow"].startswith("event.duration >=")
    assert searches["obs-logs-slow"]["sort"] == [["event.duration", "desc"]]
    for service in links.SERVICES:
        assert queries[links.service_search_id(service)] == f'service.name:"{service}"'


# -- Links between the views and the alerts -------------------------------------------


def test_links_open_saved_searches_that_exist():
    search_ids = {o["id"] for o in OBJECTS if o["type"] == "search"}
    # Grafana links (`obs-logs-${service}`), Jaeger's link pattern, the alert e-mail.
    grafana_ids = {
        i.replace("${service}", s)
        for text in map(json.dumps, DASHBOARDS.values())
        for i in re.findall(r"/app/discover#/view/([\w${}-]+)\?", text)
        for s in links.SERVICES
    }
    jaeger_ids = set(re.findall(r"/app/discover#/view/([\w-]+)\?", json.dumps(JAEGER_UI)))
    email_ids = {
        i.replace("{{ .Labels.service }}", s)
        for i in re.findall(r"/app/discover#/view/([^?]+)\?", EMAIL_TEMPLATE)
        for s in links.SERVICES
    }
    for ids in (grafana_ids, jaeger_ids, email_ids):
        assert ids and ids <= search_ids, ids - search_ids


def test_every_base_url_agrees_across_file_types():
    assert f'{{{{ define "obs.kibana.url" }}}}{links.KIBANA_URL}{{{{ end }}}}' in EMAIL_TEMPLATE
    assert f'{{{{ define "obs.jaeger.url" }}}}{links.JAEGER_URL}{{{{ end }}}}' in EMAIL_TEMPLATE
    assert all(p["url"].startswith(f"{links.KIBANA_URL}/") for p in JAEGER_UI["linkPatterns"])
    for dashboard in DASHBOARDS.values():
        constants = {
            c["name"]: c["query"]
            for c in dashboard["templating"]["list"]
            if c["type"] == "constant"
        }
        assert constants.get("jaeger_url", links.JAEGER_URL) == links.JAEGER_URL
        assert constants.get("kibana_url", links.KIBANA_URL) == links.KIBANA_URL
        # Each base URL lives in its constant only; links use ${kibana_url}/${jaeger_url}.
        text = json.dumps({k: v for k, v in dashboard.items() if k != "templating"})
        assert links.KIBANA_URL not in text and links.JAEGER_URL not in text


def test_jaeger_ui_links_a_trace_to_its_logs():
    (pattern,) = JAEGER_UI["linkPatterns"]
    assert pattern["type"] == "traces"
    assert "trace.id:#{traceID}" in pattern["url"]
    config = yaml.safe_load((REPO / "jaeger" / "config.yaml").read_text())
    ui = config["extensions"]["jaeger_query"]["ui"]
    assert ui["config_file"] == "${env:JAEGER_UI_CONFIG:-/etc/jaeger/ui-config.json}"


# -- "Scrape targets": Grafana's merge of the two table queries -------------------------------

# The table frame Grafana's Prometheus datasource makes of an instant query with format
# "table" (packages/grafana-prometheus/src/result_transformer.ts, transformDFToTable): a
# Time field, one field per label of the series, sorted, __name__ included when the series
# has it, and "Value #<refId>" when the panel has several queries. The merge
# transformation (packages/grafana-data/src/transformations/transformers/merge.ts) joins
# the rows whose values agree on every field that all frames have; a label only one query
# returns, or returns with other values, leaves rows unjoined. Read in grafana/grafana (the
# stored copy, not at the pinned tag).
# The labels of a scrape target: the local stack's static targets, and the Kubernetes
# jobs' (relabelled namespace and pod, prometheus/prometheus-kubernetes.yml).
TARGET_LABEL_SETS = {
    "local": ("job", "instance"),
    "kubernetes": ("job", "instance", "namespace", "pod"),
}
# The queries of the panel before issue #15: plain selectors, so __name__ differs.
OLD_SCRAPE_QUERIES = ['up{job=~"$job"}', 'scrape_duration_seconds{job=~"$job"}']


def series_labels(expr: str, target: dict[str, str]) -> dict[str, str]:
    """The labels of the series `expr` returns for one target: an aggregation keeps its
    `by` labels; a selector keeps the target's labels and the metric name."""
    aggregation = re.fullmatch(r"\w+ by \(([\w, ]+)\) \((.+)\)", expr)
    if aggregation:
        kept = [name.strip() for name in aggregation.group(1).split(",")]
        return {name: target[name] for name in kept if name in target}
    selector = re.fullmatch(r"([a-zA-Z_:][\w:]*)\{[^}]*\}", expr)
    assert selector, f"series_labels does not know the shape of {expr!r}"
    return {**target, "__name__": selector.group(1)}


def table_frame(ref_id: str, expr: str, targets: list[dict[str, str]]) -> list[dict]:
    """A table frame as rows (field name -> value), every row with every field."""
    series = [series_labels(expr, t) for t in targets]
    names = sorted({name for labels in series for name in labels})
    return [
        {"Time": 1700000000000, **{n: s.get(n, "") for n in names}, f"Value #{ref_id}": 1.0}
        for s in series
    ]


def grafana_merge(frames: list[list[dict]]) -> list[dict]:
    """merge.ts on rows: the key is the values of the fields every frame has; a row joins an
    earlier one of the same key if no field they share differs."""
    fields = [set(frame[0]) for frame in frames if frame]
    key_fields = sorted(set.intersection(*fields))
    merged: dict[tuple, list[dict]] = {}
    order: list[tuple[tuple, int]] = []
    for frame in frames:
        for row in frame:
            key = tuple(row[f] for f in key_fields)
            rows = merged.setdefault(key, [])
            for existing in rows:
                if all(existing[f] == row[f] for f in row if existing.get(f) is not None):
                    existing.update(row)
                    break
            else:
                rows.append(dict(row))
                order.append((key, len(rows) - 1))
    return [merged[key][index] for key, index in order]


def scrape_targets_queries() -> list[str]:
    dashboard = DASHBOARDS["stack-health.json"]
    (table,) = [p for p in dashboard["panels"] if p["title"] == "Scrape targets"]
    assert [t["id"] for t in table["transformations"]][:1] == ["merge"]
    assert [t["refId"] for t in table["targets"]] == ["A", "B"]
    return [t["expr"] for t in table["targets"]]


def merged_scrape_targets(queries: list[str], label_names: tuple[str, ...]) -> list[dict]:
    targets = [{name: f"{name}-{i}" for name in label_names} for i in range(3)]
    frames = [table_frame(ref, expr, targets) for ref, expr in zip("AB", queries, strict=True)]
    return grafana_merge(frames)


@pytest.mark.parametrize("where", TARGET_LABEL_SETS)
def test_the_scrape_targets_table_joins_up_and_scrape_duration_per_target(where):
    rows = merged_scrape_targets(scrape_targets_queries(), TARGET_LABEL_SETS[where])
    assert len(rows) == 3, rows
    assert all({"Value #A", "Value #B", "job", "instance"} <= set(row) for row in rows), rows


@pytest.mark.parametrize("where", TARGET_LABEL_SETS)
def test_the_merge_simulation_shows_why_plain_selectors_do_not_join(where):
    rows = merged_scrape_targets(OLD_SCRAPE_QUERIES, TARGET_LABEL_SETS[where])
    assert len(rows) == 6 and not any({"Value #A", "Value #B"} <= set(r) for r in rows)


# -- Jaeger -> Kibana: the link's time window brackets the trace -------------------------------

# jaeger-ui v1.76.0's rules for a "traces" link pattern, replayed
# (packages/jaeger-ui/src/model/link-patterns.tsx computeTraceLink,
# src/utils/stringSupplant.tsx encodedStringSupplant, src/utils/link-formatting.tsx):
# every #{name | fn args | ...} names a number or string field of the trace (startTime,
# endTime and duration in microseconds); computeTraceLink stores each parameter's
# formatted value under its bare name (so a later format of the same name overwrites an
# earlier one), then the template formats that stored value again (a format function
# returns a value of the wrong type unchanged) and URL-encodes it with
# encodeURIComponent.
JAEGER_PARAMETER = re.compile(r"#\{([^{}]*)\}")


def jaeger_format(value, function: str, *args: str):
    if function == "add":
        return value + int(args[0]) if isinstance(value, int) else value
    if function == "epoch_micros_to_date_iso":
        if not isinstance(value, int):
            return value
        moment = datetime.datetime.fromtimestamp(value / 1e6, tz=datetime.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    raise AssertionError(f"jaeger-ui v1.76.0 has no format function {function!r}")


def jaeger_parameter(text: str):
    """(name, formatter or None), as getParameterAndFormatter splits `name | fn args`."""
    name, *formats = [part.strip() for part in text.split("|")]

    def apply(value):
        for spec in formats:
            function, *args = re.split(r" +", spec)
            value = jaeger_format(value, function, *args)
        return value

    return name, (apply if formats else None)


def jaeger_trace_link(url: str, trace: dict) -> str:
    values = {}
    for parameter in dict.fromkeys(JAEGER_PARAMETER.findall(url)):
        name, formatter = jaeger_parameter(parameter)
        assert isinstance(trace.get(name), (int, str)), f"the trace has no field {name!r}"
        values[name] = formatter(trace[name]) if formatter else trace[name]

    def supplant(match: re.Match) -> str:
        name, formatter = jaeger_parameter(match.group(1))
        value = values[name]
        value = formatter(value) if formatter and value else value
        return quote(str(value), safe="-_.!~*'()")

    return JAEGER_PARAMETER.sub(supplant, url)


def kibana_window(url: str) -> tuple[datetime.datetime, datetime.datetime]:
    global_state = re.search(r"_g=\(time:\(from:'([^']+)',to:'([^']+)'\)\)", url)
    assert global_state, f"no absolute time window in {url}"
    start, end = (unquote(t).replace("Z", "+00:00") for t in global_state.groups())
    return datetime.datetime.fromisoformat(start), datetime.datetime.fromisoformat(end)


def a_trace(start: datetime.datetime, seconds: float) -> dict:
    micros = int(start.timestamp() * 1e6)
    duration = int(seconds * 1e6)
    return {
        "traceID": "4bf92f3577b34da6a3ce929d0e0e4736", "traceName": "frontend: GET /items",
        "startTime": micros, "endTime": micros + duration, "duration": duration,
    }  # fmt: skip


@pytest.mark.parametrize("seconds", [0.004, 2.5, 600.0])
def test_the_kibana_link_of_a_trace_opens_on_a_window_around_it(seconds):
    (pattern,) = JAEGER_UI["linkPatterns"]
    start = datetime.datetime(2026, 3, 1, 23, 59, 58, 123000, tzinfo=datetime.UTC)
    trace = a_trace(start, seconds)
    url = jaeger_trace_link(pattern["url"], trace)
    assert f"trace.id:{trace['traceID']}" in url
    window_start, window_end = kibana_window(url)
    end = start + datetime.timedelta(seconds=seconds)
    # The whole trace, a little more, and not days of unrelated logs.
    margin = datetime.timedelta(minutes=15)
    assert start - margin <= window_start < start, (window_start, start)
    assert end < window_end <= end + margin, (window_end, end)


def test_the_replayed_rules_give_jaeger_uis_own_example():
    """link-patterns.test.js of v1.76.0: startTime 1000 and endTime 3000000000000 through
    epoch_micros_to_date_iso."""
    url = jaeger_trace_link(
        "http://example.com/?startTime=#{startTime | epoch_micros_to_date_iso}"
        "&endTime=#{endTime | epoch_micros_to_date_iso}",
        {"startTime": 1000, "endTime": 3000000000000},
    )
    assert url == (
        "http://example.com/?startTime=1970-01-01T00%3A00%3A00.001Z"
        "&endTime=1970-02-04T17%3A20%3A00.000Z"
    )
    # Why each bound of the Kibana window has its own parameter and ends on a string: a
    # second format of #{startTime} replaces the first one's value, and a format that
    # ends on a number is applied a second time when the template is filled.
    iso = "epoch_micros_to_date_iso"
    both = f"#{{startTime | add -1000000 | {iso}}}/#{{startTime | add 1000000 | {iso}}}"
    last = "1970-01-01T00%3A00%3A06.000Z"
    assert jaeger_trace_link(both, {"startTime": 5000000}) == f"{last}/{last}"
    assert jaeger_trace_link("#{startTime | add 1000}", {"startTime": 5000}) == "7000"


# -- Dashboard schema version: Grafana 12.2's, and its migrations change nothing ---------------

# The schema version Grafana 12.2 writes (see SCHEMA_VERSION in
# tools/obs_tools/views/grafana/panels.py for where it was read).
GRAFANA_12_2_SCHEMA_VERSION = 42


def grafana_migrations_40_to_42(dashboard: dict) -> dict:
    """What grafana/grafana's apps/dashboard/pkg/migration/schemaversion v40.go, v41.go and
    v42.go do to a dashboard (the stored copy; the repository is too large to fetch)."""
    migrated = copy.deepcopy(dashboard)
    # v40: refresh becomes a string ("" when missing or of another type).
    if not isinstance(migrated.get("refresh"), str):
        migrated["refresh"] = ""
    # v41: timepicker.time_options is dropped.
    if isinstance(migrated.get("timepicker"), dict):
        migrated["timepicker"].pop("time_options", None)

    # v42: an override hiding a field from the visualization hides it from tooltips too.
    def hide_from(panel: dict) -> None:
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override.get("properties", []):
                value = prop.get("value")
                hidden = isinstance(value, dict) and value.get("viz") is True
                if prop.get("id") == "custom.hideFrom" and hidden:
                    value["tooltip"] = True
        for nested in panel.get("panels", []):
            hide_from(nested)

    for panel in migrated.get("panels", []):
        hide_from(panel)
    return migrated


def test_dashboards_are_at_the_schema_version_grafana_12_2_writes():
    assert {d["schemaVersion"] for d in DASHBOARDS.values()} == {GRAFANA_12_2_SCHEMA_VERSION}


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_the_migrations_from_39_do_not_change_the_dashboards(name):
    dashboard = DASHBOARDS[name]
    assert grafana_migrations_40_to_42(dashboard) == dashboard


def test_the_migration_replay_sees_what_it_would_change():
    dashboard = copy.deepcopy(DASHBOARDS["stack-health.json"])
    dashboard["refresh"] = False
    dashboard["timepicker"] = {"time_options": ["5m"]}
    override = {"id": "custom.hideFrom", "value": {"viz": True, "legend": False}}
    dashboard["panels"][0]["fieldConfig"]["overrides"] = [{"properties": [override]}]
    migrated = grafana_migrations_40_to_42(dashboard)
    assert migrated["refresh"] == "" and migrated["timepicker"] == {}
    (prop,) = migrated["panels"][0]["fieldConfig"]["overrides"][0]["properties"]
    assert prop["value"] == {"viz": True, "legend": False, "tooltip": True}
