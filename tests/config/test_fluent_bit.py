"""Fast checks of fluent-bit/*.conf without running Fluent Bit: against what the services
write, what the index template maps, and Fluent Bit's documented semantics
(tests/config/fluent_bit_checks.py says which). What a run proves (every line once,
CRI and docker lines, lines before the start, a 40 KB line, an outage and a restart) is
tested with the real Fluent Bit in tests/e2e/test_fluent_bit.py and
tests/k8s/test_fluent_bit_kubernetes.py instead. Breaking the config on purpose makes the
checks fail (test_a_broken_config_is_reported).

Reads no environment variables.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

import pytest
from obs_tools.localstack.components import LocalStack, Ports
from obs_tools.localstack.elastic import INDEX_PREFIX, TEMPLATE_FILE

from obs_telemetry.logs import EcsJsonFormatter
from tests.config.fluent_bit_checks import (
    FLUENT_BIT,
    K8S_ENTRY,
    LOCAL_ENTRY,
    es_bulk_delivered,
    kubernetes_problems,
    local_problems,
    texts,
)
from tests.config.fluent_bit_checks import sections as parse

ENTRY_POINTS = [LOCAL_ENTRY, K8S_ENTRY]
# The environment the DaemonSet gives the container (k8s/ follows the same contract).
K8S_ENV = {
    "ES_HOST",
    "ES_PORT",
    "ES_USER",
    "ES_PASSWORD",
    "FLUENT_BIT_HTTP_LISTEN",
    "FLUENT_BIT_HTTP_PORT",
}


def sections(path):
    return parse(path.name, texts())


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
def test_output_matches_the_index_template_and_the_local_stack(entry):
    entries = sections(FLUENT_BIT / entry)
    output = one(entries, "OUTPUT", name="es")
    template = json.loads(TEMPLATE_FILE.read_text())
    prefix = output["logstash_prefix"] + "-"
    assert prefix == INDEX_PREFIX
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


def test_unparsed_lines_are_renamed_to_message():
    section = one(sections(FLUENT_BIT / "filter-unparsed.conf"), "FILTER", name="modify")
    assert section["rename"].split() == ["log", "message"]


def test_local_entry_point_gets_every_variable_it_uses(tmp_path):
    used = set()
    for name in ("fluent-bit-local.conf", "service.conf", "output-elasticsearch.conf"):
        used |= set(re.findall(r"\$\{([A-Z_]+)\}", (FLUENT_BIT / name).read_text()))
    stack = LocalStack(tmp_path, Ports())
    shipper = stack._log_shipper()
    assert used <= set(shipper.env), used - set(shipper.env)


def test_kubernetes_tag_prefix_matches_the_tail_tag():
    entries = sections(FLUENT_BIT / "fluent-bit-kubernetes.conf")
    tail = one(entries, "INPUT", name="tail")
    kube = one(entries, "FILTER", name="kubernetes")
    # Tag obs.kube.* expands to obs.kube.<path with / as .>; the prefix strips up to the file.
    expanded = tail["tag"].replace("*", tail["path"].replace("/", ".").lstrip("."))
    assert expanded.startswith(kube["kube_tag_prefix"])


def test_kubernetes_entry_point_has_no_known_defect():
    assert kubernetes_problems(texts()) == []


def test_local_entry_point_has_no_known_defect():
    assert local_problems(texts()) == []


# (file, text as shipped, broken text, what the check must say). Each one is a defect
# that was measured with a real Fluent Bit 4.2.8 or follows from its documented
# semantics.
MUTATIONS = [
    (K8S_ENTRY, "_obs-apps_", "_obs-stack_", "tail Path"),
    (K8S_ENTRY, "    storage.type      filesystem\n", "", "storage.type is not filesystem"),
    ("service.conf", "    storage.max_chunks_up     16\n", "", "storage.max_chunks_up"),
    ("service.conf", "HTTP_Server   On", "HTTP_Server   Off", "HTTP_Server Off"),
    ("service.conf", "    scheduler.cap             60\n", "", "scheduler.cap"),
    (K8S_ENTRY, "@SET OBS_STATE_DIR=/var/fluent-bit/state", "@SET OBS_STATE_DIR=/tmp", "DB"),
    (K8S_ENTRY, "Buffer_Max_Size   1MB", "Buffer_Max_Size   32k", "Buffer_Max_Size"),
    (LOCAL_ENTRY, "    Buffer_Max_Size   1MB\n", "", "Buffer_Max_Size"),
    (K8S_ENTRY, "Skip_Long_Lines   On", "Skip_Long_Lines   Off", "Skip_Long_Lines Off"),
    (K8S_ENTRY, "Labels              Off", "Labels              On", "conflict"),
    ("output-elasticsearch.conf", "Write_Operation    index", "Write_Operation    create", "409"),
    ("output-elasticsearch.conf", "    Write_Operation    index\n", "", "retried for ever"),
    ("output-elasticsearch.conf", "Trace_Error        On", "Trace_Error        Off", "Trace"),
    ("output-elasticsearch.conf", "Generate_ID        On", "Generate_ID        Off", "twice"),
    ("output-elasticsearch.conf", "Suppress_Type_Name On", "Suppress_Type_Name Off", "_type"),
    ("output-elasticsearch.conf", "Retry_Limit        False", "Retry_Limit        5", "outage"),
    ("output-elasticsearch.conf", "storage.total_limit_size 1G", "", "total_limit_size"),
    ("output-elasticsearch.conf", "Buffer_Size        False", "Buffer_Size 512KB", "cut"),
]


@pytest.mark.parametrize(
    ("name", "good", "bad", "expected"), MUTATIONS, ids=[f"{m[0]}:{m[3]}" for m in MUTATIONS]
)
def test_a_broken_config_is_reported(name, good, bad, expected):
    files = texts()
    assert files[name].count(good) == 1, f"{name} no longer contains {good!r}"
    files[name] = files[name].replace(good, bad)
    problems = kubernetes_problems(files) + local_problems(files)
    assert any(expected in p for p in problems), problems


def test_kubernetes_entry_point_uses_only_the_daemonset_environment():
    text = "\n".join(texts()[n] for n in (K8S_ENTRY, "service.conf", "output-elasticsearch.conf"))
    set_here = set(re.findall(r"^@SET ([A-Z_]+)=", texts()[K8S_ENTRY], re.MULTILINE))
    used = set(re.findall(r"\$\{([A-Z_]+)\}", text))
    assert used - set_here <= K8S_ENV, used - set_here - K8S_ENV


def _item(op, status):
    return {op: {"_index": "obs-logs-2026.01.02", "_id": "x", "status": status}}


@pytest.mark.parametrize(
    ("items", "delivered"),
    [
        ([_item("create", 201), _item("create", 201)], True),
        ([_item("create", 409), _item("create", 409)], False),  # wedge with create
        ([_item("index", 200), _item("index", 200)], True),  # the same resend with index
        ([_item("index", 201), _item("index", 400)], True),  # the 400 line is lost
        ([_item("index", 400)], False),
    ],
)
def test_model_of_the_es_output_success_rule(items, delivered):
    assert es_bulk_delivered({"errors": True, "items": items}) is delivered
    assert es_bulk_delivered({"errors": False, "items": items}) is True


def test_index_template_keeps_lines_that_elasticsearch_could_reject():
    template = json.loads(TEMPLATE_FILE.read_text())["template"]
    assert template["mappings"]["dynamic"] is False
    assert template["settings"]["mapping"]["ignore_malformed"] is True
