"""Prometheus rules and Alertmanager routing, checked by the real promtool and amtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stack.components import LocalStack, Ports

REPO = Path(__file__).resolve().parents[2]
RULE_FILES = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((REPO / "prometheus" / "tests").glob("*.yml"))
ALERTMANAGER = REPO / "prometheus" / "alertmanager" / "alertmanager.yml"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: run `make bootstrap`"
    return path


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_there_are_rules_and_rule_tests():
    assert RULE_FILES and RULE_TESTS
    # Every rule file has a test file beside it, named after it.
    assert {p.stem for p in RULE_FILES} == {p.name.removesuffix(".test.yml") for p in RULE_TESTS}


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_accepts_the_rules(path):
    result = run(tool("promtool"), "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_rule_unit_tests_pass(path):
    result = run(tool("promtool"), "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def alerts():
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    yield pytest.param(rule, id=rule["alert"])


@pytest.mark.parametrize("rule", alerts())
def test_every_alert_is_complete_and_has_a_runbook(rule):
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert re.fullmatch(r"\d+[smh]", rule["for"])
    for key in ("summary", "description", "runbook_url"):
        assert rule["annotations"].get(key), f"{rule['alert']} lacks {key}"
    runbook = REPO / rule["annotations"]["runbook_url"]
    assert runbook.is_file(), f"{rule['alert']}: runbook {runbook} does not exist"
    assert rule["alert"] in runbook.read_text(), f"{runbook} does not mention {rule['alert']}"
    # The e-mail subject and the grouping need a service label on every alert.
    assert '"service"' in rule["expr"]


def test_alertmanager_routing_is_valid():
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_routes_crash_loops_to_email_with_a_naming_subject():
    labels = ["alertname=ServiceCrashLooping", "service=backend", "severity=critical"]
    result = run(
        tool("amtool"), "config", "routes", "test", "--config.file", str(ALERTMANAGER), *labels
    )
    assert result.returncode == 0 and result.stdout.strip() == "email", (
        result.stdout + result.stderr
    )
    config = yaml.safe_load(ALERTMANAGER.read_text())
    subject = config["receivers"][0]["email_configs"][0]["headers"]["Subject"]
    assert ".CommonLabels.alertname" in subject and ".CommonLabels.service" in subject
    assert set(config["route"]["group_by"]) == {"alertname", "service"}


def test_the_local_overlays_are_valid(tmp_path):
    stack = LocalStack(tmp_path, Ports())
    local_am = tmp_path / "alertmanager.yml"
    local_am.write_text(yaml.safe_dump(stack.alertmanager_config()))
    result = run(tool("amtool"), "check-config", str(local_am))
    assert result.returncode == 0, result.stdout + result.stderr
    local_prom = tmp_path / "prometheus.yml"
    local_prom.write_text(yaml.safe_dump(stack.prometheus_config()))
    result = run(tool("promtool"), "check", "config", str(local_prom))
    assert result.returncode == 0, result.stdout + result.stderr
    # Only the SMTP address differs from the repository's routing file.
    original = yaml.safe_load(ALERTMANAGER.read_text())
    overlay = stack.alertmanager_config()
    assert overlay["global"].pop("smtp_smarthost") == "127.0.0.1:1025"
    original["global"].pop("smtp_smarthost")
    assert overlay == original


def test_no_secret_is_committed_in_the_routing():
    text = ALERTMANAGER.read_text()
    assert "smtp_auth_password:" not in text
