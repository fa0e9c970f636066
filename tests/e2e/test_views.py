"""The users' views against the real backends of the local stack (the session's stack,
shared with test_local_stack.py, which runs first: by now several minutes of traffic and
a crash loop are in Prometheus and Elasticsearch).

- every Grafana panel query returns data from the real Prometheus / Elasticsearch, with
  its variables set to real values, the "Stack health" Fluent Bit panels included (the
  stack's Prometheus scrapes its real Fluent Bit);
- every field named by Grafana's Elasticsearch panels and datasource and by the Kibana
  saved objects exists in the real mapping with a type that fits its use, and every
  saved search finds log lines;
- Jaeger serves the UI config with the link to Kibana; Alertmanager routes Watchdog to
  the receiver that mails nobody and applies the inhibitions.

Breaking an object on purpose yields a message naming it (the *_catches_* tests).
"""

from __future__ import annotations

import copy
import datetime
import json
import re

import httpx
import pytest
import yaml
from obs_tools.localstack.mailcatcher import read_messages

from tests.support import views as v
from tests.support.polling import poll_until

pytestmark = pytest.mark.e2e

DASHBOARDS = {d["title"]: d for d in v.load_dashboards()}
OBJECTS = v.load_saved_objects()
DATASOURCES = yaml.safe_load(v.DATASOURCES.read_text())["datasources"]


class Backends:
    """Query helpers bound to the running stack."""

    def __init__(self, local_stack) -> None:
        self.stack = local_stack

    def query(self, expr: str) -> list:
        response = httpx.get(
            f"{self.stack.url('prometheus')}/api/v1/query", params={"query": expr}, timeout=10
        )
        if response.status_code != 200:
            raise RuntimeError(response.json().get("error", response.text))
        return response.json()["data"]["result"]

    def label_values(self, selector: str, label: str) -> list[str]:
        response = httpx.get(
            f"{self.stack.url('prometheus')}/api/v1/label/{label}/values",
            params={"match[]": selector},
            timeout=10,
        )
        return response.json()["data"]

    def search(self, body: dict) -> dict:
        response = httpx.post(
            f"{self.stack.url('elasticsearch')}/obs-logs-*/_search",
            json=body,
            auth=self.stack.stack.es_auth(),
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def mapping(self) -> dict[str, str]:
        response = httpx.get(
            f"{self.stack.url('elasticsearch')}/obs-logs-*/_mapping",
            auth=self.stack.stack.es_auth(),
            timeout=10,
        )
        merged: dict[str, str] = {}
        for body in response.json().values():
            merged.update(v.mapped_types(body["mappings"]["properties"]))
        return merged

    def check_dashboard(self, dashboard: dict) -> list[str]:
        combos = v.variable_values(dashboard, self.label_values)
        mapping = self.mapping()
        problems = []
        for target in v.targets(dashboard):
            if target.datasource_type == "elasticsearch":
                problems += v.check_es_target(target, combos, mapping, self.search)
            elif v.is_kubernetes_only(target):
                continue  # tests/k8s/test_crash_loop_alert.py queries it
            else:
                problems += v.check_prometheus_target(target, combos, self.query)
        return problems


@pytest.fixture(scope="module")
def backends(local_stack):
    backends = Backends(local_stack)
    # Data from every component the dashboards read: the Elasticsearch exporter's
    # first scrape, Jaeger's span counters and error log lines.
    poll_until(
        lambda: (
            backends.query("elasticsearch_indices_docs_primary")
            and backends.query("otelcol_exporter_sent_spans_total")
            and backends.query("rate(fluentbit_output_proc_records_total[1m]) > 0")
            and backends.search({"size": 0, "query": {"exists": {"field": "error.type"}}})["hits"][
                "total"
            ]["value"]
        ),
        "the Elasticsearch exporter, Jaeger and Fluent Bit metrics and error logs to have data",
        timeout=90,
        interval=2,
        on_timeout=lambda: local_stack.failure_context(
            "prometheus", "elasticsearch-exporter", "log-shipper"
        ),
    )
    return backends


@pytest.mark.parametrize("title", DASHBOARDS)
def test_every_panel_query_returns_real_data(backends, title):
    # A series a few scrapes old may not have a rate yet: retry briefly; on timeout the
    # message lists each failing query by dashboard and panel.
    problems: list[str] = []

    def clean() -> bool:
        problems[:] = backends.check_dashboard(DASHBOARDS[title])
        return not problems

    poll_until(
        clean,
        f'every panel query of "{title}" to return data',
        timeout=60,
        interval=5,
        on_timeout=lambda: "\n".join(problems),
    )


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (
            lambda d: d["panels"][0]["targets"][0].update(expr="flask_uptime_secondz"),
            'panel "Uptime" (refId A): no data from the real Prometheus for '
            "'flask_uptime_secondz'",
        ),
        (
            lambda d: next(p for p in d["panels"] if p["type"] == "logs")["targets"][0].update(
                query='service.name:"$service" AND log.levle:error'
            ),
            "field 'log.levle' is not in the real Elasticsearch mapping",
        ),
        (
            lambda d: next(p for p in d["panels"] if p["title"].startswith("Error log lines"))[
                "targets"
            ][0]["bucketAggs"][0].update(field="message"),
            "field 'message' is text, but its use needs aggregatable",
        ),
    ],
    ids=["misspelt metric", "misspelt log field", "terms on a text field"],
)
def test_a_broken_panel_query_is_reported_by_dashboard_and_panel(backends, breakage, expected):
    broken = copy.deepcopy(DASHBOARDS["Services overview"])
    breakage(broken)
    problems = backends.check_dashboard(broken)
    assert problems and all(
        p.startswith('dashboard "Services overview", panel "') for p in problems
    )
    assert any(expected in p for p in problems), problems


def test_fluent_bit_panels_get_data_from_the_scrape_of_the_real_fluent_bit(backends):
    """The four Fluent Bit panels of "Stack health" read the series that the stack's
    Prometheus scrapes from Fluent Bit's /api/v1/metrics/prometheus; a misspelt metric
    yields no data and is reported by panel."""
    stack = DASHBOARDS["Stack health"]
    fluent = [t for t in v.targets(stack) if v.is_fluent_bit(t)]
    assert len(fluent) == 4
    up = backends.query('up{job="fluent-bit"}')
    assert [s["value"][1] for s in up] == ["1"], up
    combos = v.variable_values(stack, backends.label_values)
    assert all(v.check_prometheus_target(t, combos, backends.query) == [] for t in fluent)
    misspelt = copy.deepcopy(fluent[0])
    misspelt.body["expr"] = misspelt.body["expr"].replace("input_records", "input_recrods")
    (problem,) = v.check_prometheus_target(misspelt, combos, backends.query)
    assert 'panel "Fluent Bit: records read and shipped"' in problem
    assert "no data from the real Prometheus" in problem


def test_datasource_fields_exist_in_the_real_mapping(backends):
    assert v.check_datasource_fields(DATASOURCES, backends.mapping()) == []


def test_every_kibana_field_exists_with_a_fitting_type(backends):
    assert v.check_saved_object_fields(OBJECTS, backends.mapping()) == []


def test_a_misspelt_kibana_field_is_reported(backends):
    broken = copy.deepcopy(OBJECTS)
    search = next(o for o in broken if o["id"] == "obs-logs-slow")
    search["attributes"]["columns"][1] = "http.rout"
    problems = v.check_saved_object_fields(broken, backends.mapping())
    assert problems == [
        "Kibana search \"Slow requests\" (obs-logs-slow): field 'http.rout' is not in the "
        "real Elasticsearch mapping"
    ]


@pytest.mark.parametrize("where, kql", list(v.saved_search_queries(OBJECTS)))
def test_every_saved_search_finds_log_lines(backends, where, kql):
    body = {"size": 0, "query": {"query_string": {"query": v.kql_to_lucene(kql)}}}
    hits = poll_until(
        lambda: backends.search(body)["hits"]["total"]["value"],
        f"{where}: log lines matching {kql!r}",
        timeout=60,
        interval=3,
    )
    assert hits > 0


def test_jaeger_serves_the_ui_config_that_links_traces_to_kibana(local_stack):
    page = httpx.get(f"{local_stack.url('jaeger_query')}/", timeout=10).text
    # The query extension injects the UI config into the UI's index.html, in place of
    # `const JAEGER_CONFIG = DEFAULT_CONFIG;`.
    (served,) = re.findall(r"^\s*const JAEGER_CONFIG = (.*);$", page, flags=re.MULTILINE)
    served = json.loads(served)
    expected = json.loads((v.REPO / "jaeger" / "ui-config.json").read_text())
    assert served == expected


def alertmanager_alerts(local_stack, **labels) -> list[dict]:
    alerts = httpx.get(f"{local_stack.url('alertmanager')}/api/v2/alerts", timeout=10).json()
    return [a for a in alerts if all(a["labels"].get(k) == val for k, val in labels.items())]


def test_watchdog_reaches_alertmanager_and_mails_nobody(local_stack):
    (watchdog,) = poll_until(
        lambda: alertmanager_alerts(local_stack, alertname="Watchdog"),
        "Watchdog to reach Alertmanager",
        timeout=120,
        interval=3,
        on_timeout=lambda: local_stack.failure_context("prometheus", "alertmanager"),
    )
    assert [r["name"] for r in watchdog["receivers"]] == ["watchdog"]
    assert not [m for m in read_messages(local_stack.stack.mail_dir) if "Watchdog" in m.subject]


def test_alertmanager_inhibits_what_follows_from_a_bigger_alert(local_stack):
    # Alerts of a service that does not exist, so that no other test sees their mail.
    service = "inhibition-check"
    now = datetime.datetime.now(datetime.UTC)
    ends = (now + datetime.timedelta(minutes=3)).isoformat()

    def alert(name: str, severity: str) -> dict:
        return {
            "labels": {"alertname": name, "service": service, "severity": severity},
            "annotations": {"summary": name},
            "startsAt": now.isoformat(),
            "endsAt": ends,
        }

    sent = [
        alert("TargetDown", "critical"),
        alert("HighErrorRate", "warning"),
        alert("PodCrashLooping", "critical"),
        alert("ServiceCrashLooping", "critical"),
    ]
    response = httpx.post(f"{local_stack.url('alertmanager')}/api/v2/alerts", json=sent, timeout=10)
    assert response.status_code == 200, response.text

    def states():
        found = alertmanager_alerts(local_stack, service=service)
        if len(found) < len(sent):
            return None
        return {a["labels"]["alertname"]: bool(a["status"]["inhibitedBy"]) for a in found}

    inhibited = poll_until(states, "the four alerts in Alertmanager", timeout=30)
    assert inhibited == {
        # Critical mutes warning; TargetDown mutes HighErrorRate as well.
        "HighErrorRate": True,
        # The crash loop explains the down target.
        "TargetDown": True,
        # In Kubernetes, the kube-state-metrics alert replaces the local one.
        "ServiceCrashLooping": True,
        "PodCrashLooping": False,
    }
