"""`make bench` compares the rows issue #18 asks for, each a configuration the services accept.

Reads no environment variables. The bench itself (wrk against the real Jaeger, about 13
minutes) is not run here; this checks its variant table: the default, the semconv
opt-in, sampling at 10 % with parentbased_traceidratio, and that every variant is set
only through TELEMETRY_SIGNALS and standard OTEL_* variables the services accept.
"""

from __future__ import annotations

import re

import pytest
from obs_tools.bench.run import VARIANTS

from obs_telemetry.settings import common_settings
from obs_telemetry.tracing import build_tracer_provider, export_timeout_seconds

BY_NAME = {variant.name: variant for variant in VARIANTS}


def test_the_default_and_the_sampled_rows_are_benched():
    # The default: no variable at all, so the row measures what a copy of the package
    # gets out of the box.
    assert BY_NAME["full"].env == {}
    assert BY_NAME["full"].otlp == "jaeger"
    assert BY_NAME["full-sampled-10"].env == {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    }
    assert BY_NAME["full-semconv-http"].env == {"OTEL_SEMCONV_STABILITY_OPT_IN": "http"}
    assert BY_NAME["bare"].env == {"TELEMETRY_SIGNALS": "none"}


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_every_variant_is_a_valid_standard_configuration(variant, monkeypatch):
    for name in variant.env:
        assert name == "TELEMETRY_SIGNALS" or name.startswith("OTEL_"), name
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", **variant.env}
    common_settings(environ)
    export_timeout_seconds(environ)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    build_tracer_provider("bench", "0.0.0").shutdown()


def test_the_seed002_cost_removes_exactly_seed002s_series_and_is_reported():
    """#16: `make bench` shows what seed 002's duplicate request series cost."""
    from obs_tools.bench.report import seed002_lines
    from obs_tools.bench.run import populated_app, seed002_cost

    cost = seed002_cost(repetitions=2, calls=200, rounds=1)
    app, _ = populated_app()
    body = app.test_client().get("/metrics").get_data(as_text=True)
    app.extensions["backend_client"].close()
    seed002 = [
        line for line in body.splitlines()
        if re.fullmatch(r"(http_requests_(total|created)|request_duration_seconds_"
                        r"(bucket|count|sum|created))(\{.*)? .*", line)
    ]  # fmt: skip
    assert seed002, "the app exposes none of seed 002's request series"
    assert cost["render_with"]["samples"] - cost["render_without"]["samples"] == len(seed002)
    result = {"seed002_cost": cost, "variants": [
        {"name": "full", "summary": {"cpu_us_per_request": 1000.0}}]}  # fmt: skip
    text = "\n".join(seed002_lines(result))
    assert f"+{len(seed002)} |" in text
    share = 100 * 2 * cost["seed002_updates_us"] / 1000
    assert f"{share:.1f} % of the 1000 us of CPU a request costs in `full`" in text
