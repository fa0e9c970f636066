"""Checks of the users' views (Grafana dashboards, Kibana saved objects) against real
backends: every panel query run on the real Prometheus / Elasticsearch with Grafana's
variables substituted, every field looked up in the real Elasticsearch mapping.

Each check returns a list of problems, each naming the dashboard (or saved object) and
the panel, so that a test can assert that the list is empty, and another that breaking
one object on purpose yields exactly a message naming it. Reads no environment
variables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from obs_tools.common.paths import REPO

DASHBOARDS_DIR = REPO / "grafana" / "dashboards"
SAVED_OBJECTS = REPO / "kibana" / "saved-objects.ndjson"
DATASOURCES = REPO / "grafana" / "datasources.yaml"

# Grafana's built-in variables, with the values the checks use: a 1-hour dashboard
# range on Prometheus scraping every 5 s (the local stack).
BUILTINS = {"__rate_interval": "1m", "__interval": "30s", "__range": "1h", "__range_s": "3600"}
TIME_RANGE = "now-1h"

# What each use of a field needs from its Elasticsearch mapping type.
NUMERIC = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"}
AGGREGATABLE = {"keyword", "date", "boolean", *NUMERIC}


@dataclass
class Target:
    dashboard: str
    panel: str
    body: dict

    @property
    def where(self) -> str:
        return f'dashboard "{self.dashboard}", panel "{self.panel}" (refId {self.body["refId"]})'

    @property
    def datasource_type(self) -> str:
        return self.body["datasource"]["type"]


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def load_saved_objects(path: Path = SAVED_OBJECTS) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def targets(dashboard: dict) -> Iterator[Target]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield Target(dashboard["title"], panel["title"], target)


# -- Grafana variables --------------------------------------------------------------


def substitute(text: str, values: dict[str, str]) -> str:
    """Grafana's $name, ${name}, ${name:format} and [[name]] with the given values."""

    def value(match: re.Match) -> str:
        name = match.group("a") or match.group("b") or match.group("c")
        if name not in values:
            raise KeyError(f"no value for variable ${name}")
        return values[name]

    pattern = r"\$\{(?P<a>\w+)(?::[\w]+)?\}|\[\[(?P<b>\w+)\]\]|\$(?P<c>\w+)"
    return re.sub(pattern, value, text)


def variable_values(dashboard: dict, label_values: Callable[[str, str], list[str]]):
    """Every combination of the dashboard's variables the checks run: each real value of
    a single-value variable, "All" (the allValue regex) for multi-value ones, constants
    as they are. label_values(metric_selector, label) asks the real Prometheus."""
    combos: list[dict[str, str]] = [dict(BUILTINS)]
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable["name"]
        if variable["type"] == "constant":
            for combo in combos:
                combo[name] = variable["query"]
            continue
        if variable.get("includeAll"):
            for combo in combos:
                combo[name] = variable["allValue"]
            continue
        expanded = []
        for combo in combos:
            query = substitute(variable["definition"], combo)
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            assert match, f"{dashboard['title']}: unsupported variable query {query!r}"
            found = label_values(match.group(1), match.group(2))
            assert found, (
                f'dashboard "{dashboard["title"]}": variable ${name} ({query}) has no value '
                "in the real Prometheus"
            )
            expanded += [{**combo, name: v} for v in found]
        combos = expanded
    return combos


# -- Prometheus -----------------------------------------------------------------------

PROMQL_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "rate",
    "increase",
    "changes",
    "histogram_quantile",
    "by",
    "without",
    "on",
    "or",
    "and",
    "unless",
    "vector",
    "label_replace",
    "le",
    "offset",
    "bool",
    "group_left",
    "group_right",
    "max_over_time",
    "irate",
    "delta",
    "abs",
}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (label values and strings removed)."""
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    stripped = re.sub(r"\{[^}]*\}", "{}", stripped)
    stripped = re.sub(r"\[[^\]]*\]", "[]", stripped)
    stripped = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", stripped)
    return {
        name
        for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped)
        if name not in PROMQL_WORDS and not name.isdigit()
    }


def is_fluent_bit(target: Target) -> bool:
    """A Prometheus query that reads Fluent Bit's own metrics only."""
    if target.datasource_type != "prometheus":
        return False
    names = metric_names(target.body["expr"])
    return bool(names) and all(n.startswith("fluentbit_") for n in names)


# kube-state-metrics' series exist only in Kubernetes: the local stack has no pods. The
# panels that read them are checked against a real kube-state-metrics by
# tests/k8s/test_crash_loop_alert.py instead.
KUBERNETES_ONLY_METRICS = {"kube_pod_container_status_restarts_total"}


def is_kubernetes_only(target: Target) -> bool:
    if target.datasource_type != "prometheus":
        return False
    names = metric_names(target.body["expr"])
    return bool(names) and names <= KUBERNETES_ONLY_METRICS


def check_prometheus_target(
    target: Target, combos: list[dict[str, str]], query: Callable[[str], list]
) -> list[str]:
    """The target's PromQL returns a non-empty result for every variable combination."""
    problems = []
    for combo in combos:
        expr = substitute(target.body["expr"], combo)
        try:
            result = query(expr)
        except Exception as exc:  # the real Prometheus rejected it: report, don't crash
            problems.append(f"{target.where}: Prometheus rejected {expr!r}: {exc}")
            continue
        if not result:
            problems.append(f"{target.where}: no data from the real Prometheus for {expr!r}")
    return problems


# -- Elasticsearch --------------------------------------------------------------------


def mapped_types(properties: dict, prefix: str = "") -> dict[str, str]:
    types = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            types.update(mapped_types(spec["properties"], f"{path}."))
        else:
            types[path] = spec["type"]
    return types


def query_fields(query: str) -> set[str]:
    """Field names used in a Lucene or KQL query string (`field:` or `field >=`)."""
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)
    return set(re.findall(r"([@A-Za-z_][\w.@]*)\s*(?::|>=|<=|>|<)", stripped))


def kql_to_lucene(query: str) -> str:
    """The KQL of our saved objects as an equivalent Lucene query_string."""
    lucene = re.sub(r"\b(and|or|not)\b", lambda m: m.group(1).upper(), query)
    return re.sub(r"([\w.@]+)\s*(>=|<=|>|<)\s*", r"\1:\2", lucene) or "*"


def check_field(where: str, field: str, use: str, mapping: dict[str, str]) -> list[str]:
    """`use`: exists, aggregatable, numeric, date, keyword."""
    if field not in mapping:
        return [f"{where}: field {field!r} is not in the real Elasticsearch mapping"]
    kind = mapping[field]
    allowed = {
        "exists": None,
        "aggregatable": AGGREGATABLE,
        "numeric": NUMERIC,
        "date": {"date"},
        "keyword": {"keyword"},
    }[use]
    if allowed is not None and kind not in allowed:
        return [f"{where}: field {field!r} is {kind}, but its use needs {use} ({sorted(allowed)})"]
    return []


def es_request(query: str, bucket_aggs: list[dict], metrics: list[dict], time_field: str):
    """The search Grafana's Elasticsearch datasource sends for one target, simplified."""
    body = {
        "size": 0,
        "query": {
            "bool": {
                "filter": [
                    {"range": {time_field: {"gte": TIME_RANGE}}},
                    {"query_string": {"query": query or "*", "analyze_wildcard": True}},
                ]
            }
        },
    }
    if any(m["type"] == "logs" for m in metrics):
        body["size"] = 10
        body["sort"] = [{time_field: "desc"}]
        return body
    aggs = body
    for bucket in bucket_aggs:
        if bucket["type"] == "terms":
            agg = {"terms": {"field": bucket["field"], "size": 10}}
        elif bucket["type"] == "date_histogram":
            agg = {"date_histogram": {"field": bucket["field"], "fixed_interval": "1m"}}
        else:
            raise ValueError(f"bucket aggregation {bucket['type']} is not checked here")
        aggs["aggs"] = {bucket["id"]: agg}
        aggs = agg
    return body


def es_has_data(response: dict, bucket_aggs: list[dict]) -> bool:
    if response["hits"]["total"]["value"] == 0:
        return False
    if bucket_aggs:
        return bool(response["aggregations"][bucket_aggs[0]["id"]]["buckets"])
    return True


def check_es_target(
    target: Target,
    combos: list[dict[str, str]],
    mapping: dict[str, str],
    search: Callable[[dict], dict],
) -> list[str]:
    body = target.body
    problems = check_field(target.where, body["timeField"], "date", mapping)
    for bucket in body["bucketAggs"]:
        use = "date" if bucket["type"] == "date_histogram" else "aggregatable"
        problems += check_field(target.where, bucket["field"], use, mapping)
    for metric in body["metrics"]:
        if metric.get("field"):
            problems += check_field(target.where, metric["field"], "numeric", mapping)
    for field in query_fields(body["query"]):
        problems += check_field(target.where, field, "exists", mapping)
    if problems:
        return problems
    for combo in combos:
        query = substitute(body["query"], combo)
        request = es_request(query, body["bucketAggs"], body["metrics"], body["timeField"])
        if not es_has_data(search(request), body["bucketAggs"]):
            problems.append(f"{target.where}: no data from the real Elasticsearch for {query!r}")
    return problems


def check_datasource_fields(datasources: list[dict], mapping: dict[str, str]) -> list[str]:
    problems = []
    for ds in datasources:
        if ds["type"] != "elasticsearch":
            continue
        where = f'datasource "{ds["name"]}"'
        data = ds["jsonData"]
        problems += check_field(where, data["timeField"], "date", mapping)
        problems += check_field(where, data["logMessageField"], "exists", mapping)
        problems += check_field(where, data["logLevelField"], "keyword", mapping)
        for link in data.get("dataLinks", []):
            problems += check_field(where, link["field"], "keyword", mapping)
    return problems


# -- Kibana ----------------------------------------------------------------------------


def saved_object_fields(obj: dict) -> list[tuple[str, str]]:
    """(field, use) pairs named by one saved object."""
    attrs = obj["attributes"]
    fields: list[tuple[str, str]] = []
    if obj["type"] == "index-pattern":
        fields.append((attrs["timeFieldName"], "date"))
        fields += [(f, "exists") for f in json.loads(attrs.get("fieldFormatMap") or "{}")]
    if obj["type"] == "search":
        fields += [(c, "exists") for c in attrs["columns"]]
        fields += [(f, "aggregatable") for f, _order in attrs["sort"]]
    if obj["type"] == "visualization":
        for agg in json.loads(attrs["visState"])["aggs"]:
            field = agg["params"].get("field")
            if field:
                uses = {"terms": "aggregatable", "date_histogram": "date"}
                use = uses.get(agg["type"], "numeric")
                fields.append((field, use))
    source = attrs.get("kibanaSavedObjectMeta", {}).get("searchSourceJSON")
    if source:
        query = json.loads(source)["query"]["query"]
        for field in query_fields(query):
            ranged = re.search(rf"{re.escape(field)}\s*(>=|<=|>|<)", query)
            fields.append((field, "numeric" if ranged else "exists"))
    return fields


def check_saved_object_fields(objects: list[dict], mapping: dict[str, str]) -> list[str]:
    problems = []
    for obj in objects:
        where = f'Kibana {obj["type"]} "{obj["attributes"]["title"]}" ({obj["id"]})'
        for field, use in saved_object_fields(obj):
            problems += check_field(where, field, use, mapping)
    return problems


def check_saved_object_references(objects: list[dict]) -> list[str]:
    """Every reference resolves to an object of the file, and every *RefName to a
    reference of its object."""
    ids = {(o["type"], o["id"]) for o in objects}
    problems = []
    for obj in objects:
        where = f'Kibana {obj["type"]} "{obj["attributes"]["title"]}" ({obj["id"]})'
        names = {r["name"] for r in obj["references"]}
        for ref in obj["references"]:
            if (ref["type"], ref["id"]) not in ids:
                problems.append(
                    f"{where}: reference {ref['name']} -> {ref['type']} "
                    f"{ref['id']!r}, which is not in the file"
                )
        ref_names = re.findall(
            r'(?:indexRefName|panelRefName)\\?"\s*:\s*\\?"([^"\\]+)', json.dumps(obj["attributes"])
        )
        for name in ref_names:
            if name not in names:
                problems.append(f"{where}: {name!r} names no reference of the object")
    return problems


def saved_search_queries(objects: list[dict]) -> Iterator[tuple[str, str]]:
    for obj in objects:
        if obj["type"] == "search":
            source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
            where = f'Kibana search "{obj["attributes"]["title"]}" ({obj["id"]})'
            yield where, source["query"]["query"]
