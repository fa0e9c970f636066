"""Local stand-in for Fluent Bit: tails the services' log files and ships each JSON
line to Elasticsearch with the official client's bulk helper.

Usage: python -m obs_tools.localstack.log_forwarder --es-url URL --user U --password-file F
                                     --state-dir DIR FILE [FILE ...]

Reads no environment variables. It writes what fluent-bit/fluent-bit-local.conf
writes: index obs-logs-YYYY.MM.DD (UTC day of the line's @timestamp), the line's own
fields (ECS dotted names, expanded by Elasticsearch), a line that is not JSON as
{"@timestamp", "message"}, and a document id derived from the line so that a resent
line lands on its own document instead of a second one. Offsets are saved only after
Elasticsearch answered a batch: a stop or an outage loses nothing, it is resent.

Where it claims to behave like Fluent Bit, it reads the same settings from
fluent-bit/fluent-bit-local.conf (and the files it includes) rather than repeating them:
  * the tail input's Buffer_Max_Size, with Fluent Bit's unit rules (1MB = 1,000,000
    bytes): a longer line is skipped, the lines after it are shipped (Skip_Long_Lines On);
  * the es output's Write_Operation: with "index" a resent line overwrites its own
    document; with "create" Elasticsearch answers 409 and the line counts as delivered.
A file with no saved offset is read from its first line (Read_from_Head On).
A line Elasticsearch rejects (4xx other than 409 and 429) is logged and skipped, never
retried: retrying cannot change the answer, and it must not hold back the lines after
it. A 429 or 5xx for any line sends the whole batch again (the ids keep it exactly once).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from elasticsearch import Elasticsearch, helpers
from elasticsearch import exceptions as es_errors

from obs_tools.common.paths import REPO

INDEX_PREFIX = "obs-logs-"
BATCH_LINES = 500
FLUSH_SECONDS = 1.0
FLUENT_BIT_CONF = REPO / "fluent-bit" / "fluent-bit-local.conf"

log = logging.getLogger("log_forwarder")


def fluent_bit_sections(path: Path) -> list[tuple[str, dict[str, str]]]:
    """[(SECTION, {lower-case key: value})] of a classic Fluent Bit config, in order,
    following @INCLUDE relative to the file's folder (as Fluent Bit does when run from
    there)."""
    found: list[tuple[str, dict[str, str]]] = []
    current: dict[str, str] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@INCLUDE"):
            found += fluent_bit_sections(path.parent / line.split(None, 1)[1])
            current = None
        elif line.startswith("@"):
            continue  # @SET: variables, not settings this reader needs
        elif line.startswith("["):
            current = {}
            found.append((line.strip("[]").upper(), current))
        elif current is not None:
            key, _, value = line.partition(" ")
            current[key.lower()] = value.strip()
    return found


def fluent_bit_size(text: str) -> int:
    """Bytes in a Fluent Bit unit size, as flb_utils_size_to_bytes reads it: a plain
    number is bytes, K/KB, M/MB and G/GB are powers of 1000 (not 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)B?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a Fluent Bit size: {text!r}")
    factor = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3}[match.group(2).upper()]
    return int(float(match.group(1)) * factor)


def _setting(kind: str, name: str, key: str, default: str) -> str:
    for section, values in fluent_bit_sections(FLUENT_BIT_CONF):
        if section == kind and values.get("name") == name:
            return values.get(key, default)
    raise LookupError(f"{FLUENT_BIT_CONF}: no [{kind}] with Name {name}")


# Fluent Bit's tail default Buffer_Max_Size is 32k; the config sets the real limit.
MAX_LINE_BYTES = fluent_bit_size(_setting("INPUT", "tail", "buffer_max_size", "32k"))
WRITE_OPERATION = _setting("OUTPUT", "es", "write_operation", "create").lower()


def to_action(line: bytes) -> dict:
    """The bulk action for one log line, as Fluent Bit's es output would build it."""
    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("@timestamp"), str):
        # Fluent Bit's modify filter renames the unparsed "log" key to "message".
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        doc = {"@timestamp": now.replace("+00:00", "Z"), "message": text}
    day = doc["@timestamp"][:10].replace("-", ".")
    return {
        "_op_type": WRITE_OPERATION,
        "_index": f"{INDEX_PREFIX}{day}",
        "_id": hashlib.sha1(line).hexdigest(),
        "_source": doc,
    }


class RetryBatch(Exception):
    """Elasticsearch answered the batch with a transient error for some of its lines."""


class Tail:
    """Follow one file across truncation and rotation, by inode and byte offset."""

    def __init__(self, path: Path, inode: int = 0, offset: int = 0) -> None:
        self.path = path
        self.inode = inode
        self.offset = offset
        self._partial = b""

    def read_lines(self, limit: int) -> list[tuple[bytes, int]]:
        """Complete new lines, each with the offset just after it."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        if stat.st_ino != self.inode or stat.st_size < self.offset:
            # Rotated (new inode) or truncated: start from the top of the new file.
            self.inode, self.offset, self._partial = stat.st_ino, 0, b""
        if stat.st_size == self.offset:
            return []
        lines = []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            position = self.offset
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # a line still being written; read it next time
                position += len(raw)
                if len(raw) <= MAX_LINE_BYTES:
                    lines.append((raw, position))
                if len(lines) >= limit:
                    break
        return lines


class Forwarder:
    def __init__(self, client: Elasticsearch, files: list[Path], state_dir: Path) -> None:
        self.client = client
        self.state_file = state_dir / "log-forwarder-offsets.json"
        saved = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        self.tails = [Tail(p, *saved.get(str(p), (0, 0))) for p in files]
        self.stopping = False

    def save(self) -> None:
        state = {str(t.path): (t.inode, t.offset) for t in self.tails}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_file)

    def ship_once(self) -> int:
        """Send what is new; return the number of lines shipped."""
        shipped = 0
        for tail in self.tails:
            lines = tail.read_lines(BATCH_LINES)
            if not lines:
                continue
            actions = [to_action(raw) for raw, _ in lines]
            failed = 0
            for ok, item in helpers.streaming_bulk(
                self.client,
                actions,
                raise_on_error=False,
                raise_on_exception=True,
                max_retries=3,
                initial_backoff=1,
            ):
                result = item.get(WRITE_OPERATION, {})
                # 409 (Write_Operation create only): this exact line was indexed before,
                # a resend after a stop. It is delivered; moving on is what keeps a batch
                # of such lines from being retried for ever.
                status = result.get("status", 0)
                if not ok and (status == 429 or status >= 500):
                    # Elasticsearch could not take it now (overloaded, shard not
                    # ready): send the whole batch again, the ids keep it exactly once.
                    raise RetryBatch(f"{tail.path}: status {status}: {result.get('error')}")
                if not ok and status != 409:
                    failed += 1
                    log.error("rejected line in %s: %s", tail.path, result.get("error"))
            tail.offset = lines[-1][1]
            shipped += len(lines) - failed
            self.save()
        return shipped

    def run(self) -> None:
        delay = FLUSH_SECONDS
        while not self.stopping:
            try:
                if self.ship_once() == 0:
                    time.sleep(FLUSH_SECONDS)
                delay = FLUSH_SECONDS
            except (
                es_errors.ConnectionError,
                es_errors.TransportError,
                es_errors.ApiError,
                RetryBatch,
            ) as exc:
                # Offsets were not advanced: the same lines are sent again after a pause.
                log.warning("Elasticsearch unavailable (%s); retrying in %.0f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30)
        # One last pass so that lines written just before the stop are not left behind.
        try:
            self.ship_once()
        except Exception as exc:
            log.warning("final flush failed, lines stay queued in the files: %s", exc)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m obs_tools.localstack.log_forwarder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--es-url", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-file", required=True, type=Path)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s log_forwarder %(message)s")
    args.state_dir.mkdir(parents=True, exist_ok=True)
    client = Elasticsearch(
        args.es_url,
        basic_auth=(args.user, args.password_file.read_text().strip()),
        request_timeout=30,
    )
    forwarder = Forwarder(client, args.files, args.state_dir)

    def stop(*_):
        forwarder.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "local stand-in for Fluent Bit: shipping %s to %s",
        ", ".join(map(str, args.files)),
        args.es_url,
    )
    forwarder.run()


if __name__ == "__main__":
    main()
