"""Local stand-in for Fluent Bit: tails the services' log files and ships each JSON
line to Elasticsearch with the official client's bulk helper.

Usage: python -m stack.log_forwarder --es-url URL --user U --password-file F
                                     --state-dir DIR FILE [FILE ...]

Reads no environment variables. It writes what fluent-bit/fluent-bit-local.conf
writes: index obs-logs-YYYY.MM.DD (UTC day of the line's @timestamp), the line's own
fields (ECS dotted names, expanded by Elasticsearch), a line that is not JSON as
{"@timestamp", "message"}, and a document id derived from the line so that a retried
batch is not indexed twice. Offsets are saved only after Elasticsearch accepted a
batch: a stop or an outage loses nothing, it is resent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from elasticsearch import Elasticsearch, helpers
from elasticsearch import exceptions as es_errors

INDEX_PREFIX = "obs-logs-"
BATCH_LINES = 500
FLUSH_SECONDS = 1.0
MAX_LINE_BYTES = 1 << 20

log = logging.getLogger("log_forwarder")


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
        "_op_type": "create",
        "_index": f"{INDEX_PREFIX}{day}",
        "_id": hashlib.sha1(line).hexdigest(),
        "_source": doc,
    }


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
                result = item.get("create", {})
                # 409: this exact line was indexed before (a resend after a stop).
                if not ok and result.get("status") != 409:
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
            except (es_errors.ConnectionError, es_errors.TransportError, es_errors.ApiError) as exc:
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
        prog="python -m stack.log_forwarder",
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
