"""Prometheus rules and Alertmanager routing, checked by the real promtool and amtool.

Every check that runs a tool runs twice: with Debian's promtool/amtool (Prometheus 2.42,
Alertmanager 0.25: what `make demo` runs) and with the releases deployed on Kubernetes
(PROMETHEUS_RELEASE and ALERTMANAGER_VERSION in scripts/versions.env, built by
`scripts/bootstrap.sh k8s`), since both run these files.

Reads CI: with CI=true a missing pinned binary fails; elsewhere its cases are skipped
with the command that builds it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from obs_tools.common.paths import REPO
from obs_tools.common.versions import VERSIONS, amtool_binary, promtool_binary
from obs_tools.localstack.components import LocalStack, Ports
from obs_tools.views import links

from tests.support.requirements import unavailable

RULE_FILES = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((REPO / "prometheus" / "tests").glob("*.yml"))
ALERTMANAGER = REPO / "prometheus" / "alertmanager" / "alertmanager.yml"
DASHBOARD_UIDS = {
    json.loads(p.read_text())["uid"] for p in (REPO / "grafana" / "dashboards").glob("*.json")
}


@dataclass(frozen=True)
class Tools:
    promtool: str
    amtool: str


def debian_tools() -> Tools:
    found = {name: shutil.which(name) for name in ("promtool", "amtool")}
    for name, path in found.items():
        assert path, f"{name} is not installed: run `make bootstrap`"
    return Tools(**found)


def pinned_tools() -> Tools:
    paths = {"promtool": promtool_binary(), "amtool": amtool_binary()}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        unavailable(f"not built: {', '.join(missing)}; run `scripts/bootstrap.sh k8s`")
    return Tools(**{name: str(path) for name, path in paths.items()})


PINNED_ID = f"prometheus-{VERSIONS['PROMETHEUS_RELEASE']}-am-{VERSIONS['ALERTMANAGER_VERSION']}"


@pytest.fixture(scope="module", params=["debian", PINNED_ID])
def tools(request) -> Tools:
    """Debian's promtool and amtool, then the pinned releases deployed on Kubernetes."""
    return debian_tools() if request.param == "debian" else pinned_tools()


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_there_are_rules_and_rule_tests():
    assert RULE_FILES and RULE_TESTS
    # Every rule file has a test file beside it, named after it.
    assert {p.stem for p in RULE_FILES} == {p.name.removesuffix(".test.yml") for p in RULE_TESTS}


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_accepts_the_rules(path, tools):
    result = run(tools.promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_rule_unit_tests_pass(path, tools):
    result = run(tools.promtool, "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def alert_rules() -> list[dict]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def alerts():
    for rule in alert_rules():
        yield pytest.param(rule, id=rule["alert"])


def dashboard_uid(url: str) -> str:
    match = re.fullmatch(rf"{re.escape(links.GRAFANA_URL)}/d/([\w-]+)(\?.*)?", url)
    assert match, f"{url} is not a Grafana dashboard link on {links.GRAFANA_URL}"
    return match.group(1)


@pytest.mark.parametrize("rule", alerts())
def test_every_alert_is_complete_and_has_a_runbook(rule):
    name = rule["alert"]
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert re.fullmatch(r"\d+[smh]", rule["for"])
    for key in ("summary", "description", "runbook_url", "dashboard_url"):
        assert rule["annotations"].get(key), f"{name} lacks {key}"
    # Absolute links that open from an e-mail: the runbook is docs/runbooks/<stem>.md,
    # served by Grafana as the generated dashboard obs-runbook-<stem>.
    runbook_uid = dashboard_uid(rule["annotations"]["runbook_url"])
    assert runbook_uid in DASHBOARD_UIDS, f"{name}: no Grafana dashboard {runbook_uid}"
    stem = runbook_uid.removeprefix(links.RUNBOOK_UID_PREFIX)
    runbook = REPO / "docs" / "runbooks" / f"{stem}.md"
    assert runbook.is_file(), f"{name}: runbook {runbook} does not exist"
    assert name in runbook.read_text(), f"{runbook} does not mention {name}"
    dashboard = dashboard_uid(rule["annotations"]["dashboard_url"])
    assert dashboard in DASHBOARD_UIDS, f"{name}: no Grafana dashboard {dashboard}"
    # The e-mail subject and the grouping need a service label on every alert that
    # concerns one; Watchdog concerns the pipeline as a whole.
    if name != "Watchdog":
        assert '"service"' in rule["expr"]


def test_every_link_in_the_rules_uses_one_grafana_address():
    text = "\n".join(p.read_text() for p in RULE_FILES)
    bases = set(re.findall(r"(https?://[^/\s]+)/", text))
    assert bases == {links.GRAFANA_URL}


def promtool_cases() -> dict[str, dict[str, int]]:
    """Per alert, how many promtool checks expect it firing and how many silent."""
    counts: dict[str, dict[str, int]] = {}
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for check in test.get("alert_rule_test", []):
                kind = "firing" if check["exp_alerts"] else "silent"
                entry = counts.setdefault(check["alertname"], {"firing": 0, "silent": 0})
                entry[kind] += 1
    return counts


@pytest.mark.parametrize("rule", alerts())
def test_every_alert_has_a_firing_and_a_silent_promtool_case(rule):
    cases = promtool_cases().get(rule["alert"], {"firing": 0, "silent": 0})
    assert cases["firing"] >= 1 and cases["silent"] >= 1, (rule["alert"], cases)


def test_alertmanager_routing_is_valid(tools):
    result = run(tools.amtool, "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr


def routed_receiver(amtool: str, labels: dict[str, str]) -> subprocess.CompletedProcess:
    pairs = [f"{k}={v}" for k, v in labels.items()]
    return run(amtool, "config", "routes", "test", "--config.file", str(ALERTMANAGER), *pairs)


@pytest.mark.parametrize("rule", alerts())
def test_alertmanager_routes_every_alert(rule, tools):
    labels = {"alertname": rule["alert"], **rule["labels"]}
    if rule["alert"] != "Watchdog":
        labels["service"] = "backend"
    expected = "watchdog" if rule["alert"] == "Watchdog" else "email"
    result = routed_receiver(tools.amtool, labels)
    assert result.returncode == 0 and result.stdout.strip() == expected, (
        result.stdout + result.stderr
    )


def test_the_watchdog_receiver_notifies_nobody_and_the_email_names_alert_and_service():
    config = yaml.safe_load(ALERTMANAGER.read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["watchdog"] == {"name": "watchdog"}
    (email,) = receivers["email"]["email_configs"]
    assert email["send_resolved"] is True
    assert email["headers"]["Subject"] == '{{ template "obs.subject" . }}'
    template = (ALERTMANAGER.parent / "email.tmpl").read_text()
    subject = template[template.index('define "obs.subject"') :].split("{{- end }}")[0]
    for label in ("alertname", "service", "severity"):
        assert f".CommonLabels.{label}" in subject
    assert set(config["route"]["group_by"]) == {"alertname", "service"}
    assert config["templates"] == ["*.tmpl"]


def test_the_local_overlays_are_valid(tmp_path, tools):
    stack = LocalStack(tmp_path, Ports())
    local_am = tmp_path / "alertmanager.yml"
    local_am.write_text(yaml.safe_dump(stack.alertmanager_config()))
    result = run(tools.amtool, "check-config", str(local_am))
    assert result.returncode == 0, result.stdout + result.stderr
    local_prom = tmp_path / "prometheus.yml"
    local_prom.write_text(yaml.safe_dump(stack.prometheus_config()))
    result = run(tools.promtool, "check", "config", str(local_prom))
    assert result.returncode == 0, result.stdout + result.stderr
    # Only the SMTP address and the template path (absolute, to the repository's
    # template) differ from the repository's routing file.
    original = yaml.safe_load(ALERTMANAGER.read_text())
    overlay = stack.alertmanager_config()
    assert overlay["global"].pop("smtp_smarthost") == "127.0.0.1:1025"
    assert overlay.pop("templates") == [str(ALERTMANAGER.parent / "*.tmpl")]
    original["global"].pop("smtp_smarthost")
    original.pop("templates")
    assert overlay == original


def test_no_secret_is_committed_in_the_routing():
    text = ALERTMANAGER.read_text()
    assert "smtp_auth_password:" not in text


# -- The alert e-mail links only to logs and traces that exist -------------------------------

EMAIL_TEMPLATE = ALERTMANAGER.parent / "email.tmpl"
SAVED_OBJECTS = REPO / "kibana" / "saved-objects.ndjson"
KIBANA_SEARCH_LINK = re.compile(rf"{re.escape(links.KIBANA_URL)}/app/discover#/view/([^?\"]+)\?")
JAEGER_SEARCH_LINK = re.compile(rf"{re.escape(links.JAEGER_URL)}/search\?service=([^&\"]*)&")


def target_down_jobs() -> list[str]:
    """Every job TargetDown can fire for: the scrape jobs of the Kubernetes config and of
    the local stack's generated config."""
    kubernetes = yaml.safe_load((REPO / "prometheus" / "prometheus-kubernetes.yml").read_text())
    local = LocalStack(Path("/nonexistent"), Ports()).prometheus_config()
    return sorted(
        {j["job_name"] for config in (kubernetes, local) for j in config["scrape_configs"]}
    )


def saved_search_ids() -> set[str]:
    objects = [json.loads(line) for line in SAVED_OBJECTS.read_text().splitlines() if line]
    return {o["id"] for o in objects if o["type"] == "search"}


def traced_services() -> set[str]:
    """The services that send spans to Jaeger: OTEL_SERVICE_NAME of the containers (k8s/apps/)
    and programs (the local stack) that export traces. Jaeger traces nothing of its own (no
    service.telemetry.traces) and Prometheus neither (no tracing: section)."""
    names = set()
    for path in (REPO / "k8s" / "apps").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc["kind"] != "Deployment":
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                if "OTEL_EXPORTER_OTLP_ENDPOINT" in env:
                    names.add(env["OTEL_SERVICE_NAME"])
    for program in LocalStack(Path("/nonexistent"), Ports()).services():
        if program.env.get("OTEL_TRACES_EXPORTER") != "none":
            names.add(program.env["OTEL_SERVICE_NAME"])
    jaeger = yaml.safe_load((REPO / "jaeger" / "config.yaml").read_text())
    assert "traces" not in jaeger["service"]["telemetry"]
    kubernetes = yaml.safe_load((REPO / "prometheus" / "prometheus-kubernetes.yml").read_text())
    assert "tracing" not in kubernetes
    assert "tracing" not in LocalStack(Path("/nonexistent"), Ports()).prometheus_config()
    return names


def target_down_data(job: str) -> dict:
    """Alertmanager's template data for one firing TargetDown of `job`, its labels and
    annotations as the rule makes them."""
    (rule,) = [r for r in alert_rules() if r["alert"] == "TargetDown"]
    # The rule copies the job into `service`, unchanged.
    assert re.fullmatch(
        r'label_replace\(up == 0, "service", "\$1", "job", "\(\.\*\)"\)', rule["expr"].strip()
    ), rule["expr"]
    labels = {
        "alertname": "TargetDown", "job": job, "service": job,
        "instance": "10.0.0.7:9999", **rule["labels"],
    }  # fmt: skip
    annotations = {
        key: value.replace("{{ $labels.job }}", job)
        .replace("{{ $labels.service }}", job)
        .replace("{{ $labels.instance }}", labels["instance"])
        for key, value in rule["annotations"].items()
    }
    alert = {
        "status": "firing", "labels": labels, "annotations": annotations,
        "startsAt": "2026-01-01T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://localhost:9090/graph", "fingerprint": "0123456789abcdef",
    }  # fmt: skip
    common = {k: labels[k] for k in ("alertname", "service", "severity")}
    return {
        "receiver": "email", "status": "firing", "alerts": [alert],
        "groupLabels": {"alertname": "TargetDown", "service": job}, "commonLabels": common,
        "commonAnnotations": annotations, "externalURL": "http://localhost:9093",
    }  # fmt: skip


def render_email(amtool: str, data: dict, tmp_path: Path) -> dict[str, str]:
    """The text and HTML parts of the e-mail, rendered by amtool from email.tmpl."""
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    parts = {}
    for part, kind in (("obs.text", "text"), ("obs.html", "html")):
        result = run(
            amtool, "template", "render", f"--template.glob={EMAIL_TEMPLATE}",
            f'--template.text={{{{ template "{part}" . }}}}', f"--template.type={kind}",
            f"--template.data={data_file}",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        parts[kind] = result.stdout
    return parts


def test_target_down_can_fire_for_the_stack_and_the_services():
    jobs = target_down_jobs()
    assert {"frontend", "backend", "prometheus", "jaeger", "kube-state-metrics"} <= set(jobs)
    assert traced_services() == set(links.SERVICES)


@pytest.mark.parametrize("job", target_down_jobs())
def test_the_target_down_mail_links_only_to_logs_and_traces_that_exist(job, tools, tmp_path):
    parts = render_email(tools.amtool, target_down_data(job), tmp_path)
    searches, traced = saved_search_ids(), traced_services()
    for kind, text in parts.items():
        for search in KIBANA_SEARCH_LINK.findall(text):
            assert search in searches, f"{kind} part: no saved search {search!r} for {job}"
        for service in JAEGER_SEARCH_LINK.findall(text):
            assert service in traced, f"{kind} part: {service!r} sends no traces ({job})"
        # Where logs and traces exist, the mail does link to them.
        if links.service_search_id(job) in searches:
            assert KIBANA_SEARCH_LINK.findall(text) == [links.service_search_id(job)], kind
        if job in traced:
            assert JAEGER_SEARCH_LINK.findall(text) == [job], kind
