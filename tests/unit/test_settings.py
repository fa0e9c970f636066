"""Configuration from the environment: defaults, and clear errors for bad values."""

from __future__ import annotations

import subprocess
import sys

import pytest

from backend.settings import load_settings as backend_settings
from frontend.settings import load_settings as frontend_settings
from obs_telemetry import ConfigError


def test_defaults_match_the_readme():
    settings = frontend_settings({})
    assert settings["HEALTH_FAILURE_RATE"] == 0.2
    assert settings["SLOW_TIMEOUT_RATE"] == 0.3
    assert settings["CHAOS_CRASH_ENABLED"] is False
    assert settings["BACKEND_URL"] == "http://localhost:5001"
    assert settings["BACKEND_CONNECT_TIMEOUT"] == 1.0
    assert settings["BACKEND_READ_TIMEOUT"] == 10.0
    assert backend_settings({})["SLOW_MAX_DELAY_SECONDS"] == 5.0


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"HEALTH_FAILURE_RATE": "lots"}, "HEALTH_FAILURE_RATE"),
        ({"HEALTH_FAILURE_RATE": "1.5"}, "HEALTH_FAILURE_RATE"),
        ({"SLOW_TIMEOUT_RATE": "-0.1"}, "SLOW_TIMEOUT_RATE"),
        ({"CHAOS_CRASH_ENABLED": "maybe"}, "CHAOS_CRASH_ENABLED"),
        ({"SLOW_MAX_DELAY_SECONDS": "60"}, "SLOW_MAX_DELAY_SECONDS"),
        ({"BACKEND_URL": "backend:5001"}, "BACKEND_URL"),
        ({"BACKEND_READ_TIMEOUT": "2"}, "BACKEND_READ_TIMEOUT"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ],
)
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(ConfigError, match=needle):
        frontend_settings(env)


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on"])
def test_boolean_spellings(raw):
    assert backend_settings({"CHAOS_CRASH_ENABLED": raw})["CHAOS_CRASH_ENABLED"] is True


def test_importing_the_package_has_no_side_effects():
    code = (
        "import logging, obs_telemetry, obs_telemetry.ops, obs_telemetry.extension\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "assert not isinstance(trace.get_tracer_provider(), TracerProvider)\n"
        "assert logging.getLogger().handlers == []\n"
        "print('clean')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip() == "clean", result.stderr
