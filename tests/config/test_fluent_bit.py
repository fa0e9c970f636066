"""Fluent Bit cannot run here: its files are cross-checked against what the services
write, what the local forwarder writes, and what the index template maps."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from obs_telemetry.logs import EcsJsonFormatter
from stack import log_forwarder
from stack.components import LocalStack, Ports
from stack.elastic import TEMPLATE_FILE

FLUENT_BIT = Path(__file__).resolve().parents[2] / "fluent-bit"
ENTRY_POINTS = ["fluent-bit-local.conf", "fluent-bit-kubernetes.conf"]


def sections(path: Path) -> list[tuple[str, dict]]:
    """[(section name, {key: value})] of a classic config, following @INCLUDE."""
    found: list[tuple[str, dict]] = []
    current: dict | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@INCLUDE"):
            included = FLUENT_BIT / line.split(None, 1)[1]
            assert included.is_file(), f"{path.name} includes missing {included.name}"
            found += sections(included)
            current = None
        elif line.startswith("["):
            current = {}
            found.append((line.strip("[]").upper(), current))
        else:
            key, _, value = line.partition(" ")
            assert current is not None, f"{path.name}: {line!r} outside a section"
            current[key.lower()] = value.strip()
    return found


def one(entries, kind, **match):
    hits = [s for n, s in entries if n == kind and all(s.get(k) == v for k, v in match.items())]
    assert len(hits) == 1, (kind, match, hits)
    return hits[0]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_parsers_referenced_exist(entry):
    entries = sections(FLUENT_BIT / entry)
    service = one(entries, "SERVICE")
    parsers = sections(FLUENT_BIT / service["parsers_file"])
    names = {s["name"] for n, s in parsers if n == "PARSER"}
    for _, section in entries:
        if "parser" in section:
            assert section["parser"] in names


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_output_matches_the_index_template_and_the_local_forwarder(entry):
    entries = sections(FLUENT_BIT / entry)
    output = one(entries, "OUTPUT", name="es")
    template = json.loads(TEMPLATE_FILE.read_text())
    prefix = output["logstash_prefix"] + "-"
    assert prefix == log_forwarder.INDEX_PREFIX
    assert template["index_patterns"] == [prefix + "*"]
    assert output["logstash_dateformat"] == "%Y.%m.%d"
    assert output["time_key"] == "@timestamp"
    assert output["suppress_type_name"].lower() == "on"
    # Every tag the inputs produce reaches the output.
    for _, section in entries:
        if section.get("name") == "tail":
            assert section["tag"].startswith("obs.")
    assert output["match"] == "obs.*"


def test_parser_time_format_reads_what_the_services_write():
    parser = one(sections(FLUENT_BIT / "parsers.conf"), "PARSER", name="obs_json")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None)
    line = json.loads(EcsJsonFormatter("svc").format(record))
    # Fluent Bit's %L is the fractional second; Python's %f reads the same digits.
    python_format = parser["time_format"].replace("%L", "%f")
    # No zone in the format: Fluent Bit reads it as UTC, which is what the services write.
    parsed = datetime.strptime(line[parser["time_key"]], python_format).replace(tzinfo=UTC)
    assert abs(parsed.timestamp() - record.created) < 1e-3
    assert parser["time_keep"].lower() == "off"


def test_forwarder_writes_the_index_and_fields_fluent_bit_would():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None)
    line = EcsJsonFormatter("svc").format(record).encode() + b"\n"
    action = log_forwarder.to_action(line)
    day = json.loads(line)["@timestamp"][:10].replace("-", ".")
    assert action["_index"] == f"obs-logs-{day}"
    assert action["_source"] == json.loads(line)
    assert action["_op_type"] == "create"
    unparsed = log_forwarder.to_action(b"Traceback (most recent call last):\n")
    # The modify filter's rename: raw lines land in "message", never in "log".
    assert unparsed["_source"]["message"] == "Traceback (most recent call last):"
    assert "log" not in unparsed["_source"]


def test_unparsed_lines_are_renamed_to_message():
    section = one(sections(FLUENT_BIT / "filter-unparsed.conf"), "FILTER", name="modify")
    assert section["rename"].split() == ["log", "message"]


def test_local_entry_point_gets_every_variable_it_uses(tmp_path):
    used = set()
    for name in ("fluent-bit-local.conf", "service.conf", "output-elasticsearch.conf"):
        used |= set(re.findall(r"\$\{([A-Z_]+)\}", (FLUENT_BIT / name).read_text()))
    stack = LocalStack(tmp_path, Ports())
    stack.fluent_bit = "/usr/bin/fluent-bit"  # as if it were installed
    shipper = stack._log_shipper()
    assert used <= set(shipper.env), used - set(shipper.env)


def test_kubernetes_tag_prefix_matches_the_tail_tag():
    entries = sections(FLUENT_BIT / "fluent-bit-kubernetes.conf")
    tail = one(entries, "INPUT", name="tail")
    kube = one(entries, "FILTER", name="kubernetes")
    # Tag obs.kube.* expands to obs.kube.<path with / as .>; the prefix strips up to the file.
    expanded = tail["tag"].replace("*", tail["path"].replace("/", ".").lstrip("."))
    assert expanded.startswith(kube["kube_tag_prefix"])
