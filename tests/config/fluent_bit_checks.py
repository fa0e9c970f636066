"""Checks of the Fluent Bit configuration (fluent-bit/*.conf) against Fluent Bit's
documented semantics and the Kubernetes contract, on the config text, so that a test
can break the text on purpose and see the check fail.

Reads no environment variables. What a run of the real Fluent Bit proves is not
checked here but in tests/e2e/test_fluent_bit.py and test_fluent_bit_kubernetes.py:
both container log formats (multiline.parser docker, cri), lines written before the
start (Read_from_Head), a 40 KB line, and the filesystem buffer under the state folder
(a restart during an Elasticsearch outage loses nothing). What these checks rely on,
and where it is documented:
  * tail: a line longer than Buffer_Max_Size is skipped with Skip_Long_Lines On, and
    stops the monitoring of that file with it Off.
  * sizes are read by flb_utils_size_to_bytes (src/flb_utils.c): K, M, G are powers
    of 1000.
  * buffering: storage.type filesystem on an input writes its chunks under the
    [SERVICE] storage.path, and they are loaded again after a restart; an output's
    storage.total_limit_size bounds its queue on disk and discards the oldest chunk
    when full (docs: administration/buffering-and-storage).
  * es output: plugins/out_es/es.c elasticsearch_error_check and cb_es_flush (model in
    es_bulk_delivered below).
"""

from __future__ import annotations

import re

from obs_tools.common.paths import REPO

FLUENT_BIT = REPO / "fluent-bit"
K8S_ENTRY = "fluent-bit-kubernetes.conf"
LOCAL_ENTRY = "fluent-bit-local.conf"
# Where the DaemonSet (k8s/) mounts the node directory /var/lib/fluent-bit (hostPath).
K8S_STATE_DIR = "/var/fluent-bit/state"
K8S_TAIL_PATH = "/var/log/containers/*_obs-apps_*.log"
# A Python traceback logged as one JSON line measured 40 KB; the limit must keep it.
LONGEST_EXPECTED_LINE = 40_000

TRUE = {"on", "true", "yes", "1"}
FALSE = {"off", "false", "no", "0"}


def texts() -> dict[str, str]:
    """The config files as they are in the repository, by file name."""
    return {p.name: p.read_text() for p in FLUENT_BIT.glob("*.conf")}


def sections(
    entry: str, files: dict[str, str], variables: dict[str, str] | None = None
) -> list[tuple[str, dict[str, str]]]:
    """[(SECTION, {lower-case key: value})] of a classic config in order, following
    @INCLUDE; @SET variables are collected into `variables` and expanded in values
    (environment variables stay as ${NAME})."""
    variables = {} if variables is None else variables
    found: list[tuple[str, dict[str, str]]] = []
    current: dict[str, str] | None = None
    assert entry in files, f"missing file fluent-bit/{entry}"
    for raw in files[entry].splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@INCLUDE"):
            found += sections(line.split(None, 1)[1], files, variables)
            current = None
        elif line.startswith("@SET"):
            name, _, value = line.split(None, 1)[1].partition("=")
            variables[name.strip()] = value.strip()
        elif line.startswith("["):
            current = {}
            found.append((line.strip("[]").upper(), current))
        else:
            key, _, value = line.partition(" ")
            assert current is not None, f"{entry}: {line!r} outside a section"
            value = re.sub(
                r"\$\{([A-Za-z_]+)\}", lambda m: variables.get(m[1], m[0]), value.strip()
            )
            current[key.lower()] = value
    return found


def find(entries, kind: str, name: str | None = None) -> list[dict[str, str]]:
    return [s for n, s in entries if n == kind and (name is None or s.get("name") == name)]


def size(text: str) -> int:
    """flb_utils_size_to_bytes: plain bytes, or K/KB, M/MB, G/GB in powers of 1000."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?)B?", text.strip(), re.IGNORECASE)
    assert match, f"not a Fluent Bit size: {text!r}"
    return int(float(match[1]) * {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}[match[2].upper()])


def flag(section: dict[str, str], key: str, default: bool) -> bool:
    value = section.get(key.lower())
    if value is None:
        return default
    assert value.lower() in TRUE | FALSE, f"{key} {value!r} is not a boolean"
    return value.lower() in TRUE


def es_bulk_delivered(reply: dict) -> bool:
    """Whether Fluent Bit 4.2's es output counts a bulk reply as delivered (FLB_OK) or
    retries the whole chunk (FLB_RETRY): plugins/out_es/es.c, elasticsearch_error_check
    sets SUCCESS for "errors": false or for any item with status 200/201, and
    cb_es_flush retries unless SUCCESS is set. A 409 item is neither success nor error;
    an item rejected with 400 does not stop the rest from counting as delivered."""
    if not reply.get("errors"):
        return True
    return any(
        item_body.get("status") in (200, 201)
        for item in reply.get("items", [])
        for item_body in item.values()
    )


def _common_problems(entry: str, files: dict[str, str], state_dir: str) -> list[str]:
    """What both entry points must get right; state_dir is where offsets and the
    filesystem buffer must live (after @SET expansion)."""
    problems = []
    entries = sections(entry, files)
    (service,) = find(entries, "SERVICE")
    tails = find(entries, "INPUT", "tail")
    (output,) = find(entries, "OUTPUT", "es")
    state = state_dir.rstrip("/") + "/"

    if not service.get("storage.max_chunks_up"):
        problems.append(f"{entry}: [SERVICE] storage.max_chunks_up unset (memory unbounded)")
    if int(service.get("scheduler.cap", "2000")) > 300:
        problems.append(
            f"{entry}: [SERVICE] scheduler.cap {service.get('scheduler.cap', '2000')} s: "
            "after an outage, logs wait that long for their next retry"
        )
    if not flag(service, "HTTP_Server", False):
        problems.append(f"{entry}: [SERVICE] HTTP_Server Off: nothing for Prometheus to scrape")
    if not flag(service, "storage.metrics", False):
        problems.append(f"{entry}: [SERVICE] storage.metrics Off: buffer use not scraped")

    for tail in tails:
        if tail.get("storage.type", "memory").lower() != "filesystem":
            problems.append(f"{entry}: tail storage.type is not filesystem")
        if not tail.get("db", "").startswith(state):
            problems.append(
                f"{entry}: tail DB {tail.get('db')!r} is not under {state}: offsets "
                "are lost with the pod and lines are re-read or skipped"
            )
        limit = size(tail.get("buffer_max_size", "32k"))
        if limit < LONGEST_EXPECTED_LINE:
            problems.append(
                f"{entry}: tail Buffer_Max_Size {limit} bytes drops a "
                f"{LONGEST_EXPECTED_LINE}-byte traceback line"
            )
        if not flag(tail, "Skip_Long_Lines", False):
            problems.append(
                f"{entry}: tail Skip_Long_Lines Off: one long line stops that file for good"
            )

    if not flag(output, "Suppress_Type_Name", False):
        problems.append(f"{entry}: es Suppress_Type_Name Off: Elasticsearch 8 rejects _type")
    if not flag(output, "Generate_ID", False):
        problems.append(f"{entry}: es Generate_ID Off: a resent chunk is indexed twice")
    if not flag(output, "Trace_Error", False):
        problems.append(f"{entry}: es Trace_Error Off: a failed batch's reason is not logged")
    retry_limit = output.get("retry_limit", "1").lower()
    unlimited = retry_limit in ("false", "no_limits")
    if not unlimited:
        problems.append(
            f"{entry}: es Retry_Limit {retry_limit}: chunks are dropped after a long outage"
        )
    operation = output.get("write_operation", "create").lower()
    if operation != "index" and unlimited:
        problems.append(
            f"{entry}: es Write_Operation {operation}: a chunk whose lines are all "
            "indexed already gets only 409s, never counts as delivered, and is "
            "retried for ever (Retry_Limit unlimited)"
        )
    if output.get("buffer_size", "512KB").lower() != "false":
        problems.append(
            f"{entry}: es Buffer_Size {output.get('buffer_size', '512KB')}: a bulk reply "
            "longer than that is cut, judged failed, and its chunk retried for ever"
        )
    if not output.get("storage.total_limit_size"):
        problems.append(f"{entry}: es storage.total_limit_size unset: disk use unbounded")
    return problems


def kubernetes_problems(files: dict[str, str]) -> list[str]:
    entries = sections(K8S_ENTRY, files)
    problems = _common_problems(K8S_ENTRY, files, K8S_STATE_DIR)
    (tail,) = find(entries, "INPUT", "tail")
    if tail.get("path") != K8S_TAIL_PATH:
        problems.append(f"{K8S_ENTRY}: tail Path {tail.get('path')!r} != {K8S_TAIL_PATH}")
    if tail.get("db") != f"{K8S_STATE_DIR}/tail.db":
        problems.append(f"{K8S_ENTRY}: tail DB is not {K8S_STATE_DIR}/tail.db (contract)")
    (service,) = find(entries, "SERVICE")
    if service.get("storage.path", "").rstrip("/") != f"{K8S_STATE_DIR}/storage":
        problems.append(f"{K8S_ENTRY}: storage.path is not {K8S_STATE_DIR}/storage/ (contract)")
    (kube,) = find(entries, "FILTER", "kubernetes")
    (output,) = find(entries, "OUTPUT", "es")
    if flag(kube, "Labels", True) and not flag(output, "Replace_Dots", False):
        problems.append(
            f"{K8S_ENTRY}: kubernetes Labels On with Replace_Dots Off: pod labels app "
            "and app.kubernetes.io/name conflict in the Elasticsearch mapping"
        )
    return problems


def local_problems(files: dict[str, str]) -> list[str]:
    return _common_problems(LOCAL_ENTRY, files, "${OBS_STATE_DIR}")
