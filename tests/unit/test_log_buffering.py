"""The stdout log handler: line by line by default, batched in gunicorn workers, and
nothing lost either way (obs_telemetry.logs._StdoutHandler).
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import types

import pytest

from obs_telemetry import logs
from obs_telemetry.logs import EcsJsonFormatter, _StdoutHandler
from tests.support.polling import poll_until


class CountingStdout(io.StringIO):
    """sys.stdout stand-in that counts write() calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def lines(self) -> list[str]:
        return self.getvalue().splitlines()


@pytest.fixture
def stdout(monkeypatch):
    out = CountingStdout()
    # The handler resolves sys.stdout when it writes; pytest swaps sys.stdout itself
    # between a test's phases, so the module's view of sys is replaced instead.
    monkeypatch.setattr(logs, "sys", types.SimpleNamespace(stdout=out, stderr=sys.stderr))
    return out


@pytest.fixture
def handler():
    made = _StdoutHandler()
    made.setFormatter(logging.Formatter("%(message)s"))
    yield made
    made.close()


@pytest.fixture
def logger(handler):
    made = logging.getLogger(f"test_log_buffering.{id(handler)}")
    made.propagate = False
    made.setLevel(logging.INFO)
    made.addHandler(handler)
    yield made
    made.removeHandler(handler)


def test_without_background_flush_each_line_is_written_at_once(stdout, logger):
    logger.info("one")
    assert stdout.lines() == ["one"]
    logger.info("two")
    assert stdout.lines() == ["one", "two"]


def test_background_flush_writes_queued_lines_in_one_write(stdout, handler, logger, monkeypatch):
    # Long enough that the thread cannot write before the test looks.
    monkeypatch.setattr(logs, "FLUSH_INTERVAL_S", 60.0)
    handler.start_background_flush()
    for n in range(5):
        logger.info("line %d", n)
    assert stdout.lines() == [], "a worker's lines were written before their flush"
    handler.flush()
    assert stdout.lines() == [f"line {n}" for n in range(5)]
    assert stdout.writes == 1


def test_flush_thread_writes_within_its_interval(stdout, handler, logger, monkeypatch):
    monkeypatch.setattr(logs, "FLUSH_INTERVAL_S", 0.05)
    handler.start_background_flush()
    logger.info("queued")
    poll_until(lambda: stdout.lines() == ["queued"], "the flush thread to write the line", 5)


def test_no_line_is_lost_or_reordered_with_many_threads(stdout, handler, logger, monkeypatch):
    monkeypatch.setattr(logs, "FLUSH_INTERVAL_S", 0.001)
    handler.start_background_flush()
    threads, per_thread = 8, 2_000

    def log_lines(worker: int) -> None:
        for n in range(per_thread):
            logger.info("%d %d", worker, n)

    workers = [threading.Thread(target=log_lines, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    handler.flush()
    seen: dict[int, list[int]] = {w: [] for w in range(threads)}
    for line in stdout.lines():
        worker, n = map(int, line.split())
        seen[worker].append(n)
    for worker, numbers in seen.items():
        assert numbers == list(range(per_thread)), f"thread {worker}: lines lost or reordered"
    assert stdout.writes < threads * per_thread, "lines were not batched"


def test_a_full_queue_is_written_by_the_thread_that_logs(stdout, handler, logger, monkeypatch):
    monkeypatch.setattr(logs, "FLUSH_INTERVAL_S", 60.0)
    monkeypatch.setattr(logs, "MAX_PENDING_LINES", 10)
    handler.start_background_flush()
    for n in range(10):
        logger.info("line %d", n)
    assert len(stdout.lines()) == 10, "a full queue waited for the flush thread"
    assert stdout.writes == 1, "the lines were not written as one batch"


def test_flush_logs_and_close_write_what_is_queued(stdout, monkeypatch):
    # flush_logs() is what /crash calls before its hard exit; close() is what
    # logging.shutdown() calls at a normal exit.
    monkeypatch.setattr(logs, "FLUSH_INTERVAL_S", 60.0)
    root = logging.getLogger()
    handler = _StdoutHandler()
    handler.setFormatter(EcsJsonFormatter("test"))
    # Only this handler: the module-level helpers act on every root handler, and other
    # tests' apps leave theirs there.
    monkeypatch.setattr(root, "handlers", [handler])
    try:
        logs.start_background_flush()
        logging.getLogger("test_log_buffering.crash").warning("before the crash")
        assert stdout.lines() == []
        logs.flush_logs()
        assert '"message": "before the crash"' in stdout.getvalue()
        logging.getLogger("test_log_buffering.exit").warning("before the exit")
    finally:
        handler.close()
    assert '"message": "before the exit"' in stdout.getvalue()


class BrokenStdout(CountingStdout):
    def write(self, text: str) -> int:
        raise ValueError("I/O operation on closed file.")


def test_a_failing_write_never_reaches_the_app_nor_stops_the_thread(
    stdout, handler, logger, monkeypatch, capsys
):
    monkeypatch.setattr(logs, "FLUSH_INTERVAL_S", 0.01)
    monkeypatch.setattr(logs, "MAX_PENDING_LINES", 5)
    broken = types.SimpleNamespace(stdout=BrokenStdout(), stderr=sys.stderr)
    monkeypatch.setattr(logs, "sys", broken)
    handler.start_background_flush()
    for n in range(20):  # fills the queue several times: emit() writes, and fails
        logger.info("lost %d", n)
    broken.stdout = stdout
    logger.info("after the failure")
    poll_until(
        lambda: "after the failure" in stdout.lines(),
        "the flush thread to write again once stdout works",
        5,
    )
    assert "could not write" in capsys.readouterr().err


def test_a_forked_child_starts_empty_and_line_by_line(stdout, handler, logger, monkeypatch):
    # The queue holds the parent's lines, which the parent writes: a child that wrote
    # them too would duplicate them.
    monkeypatch.setattr(logs, "FLUSH_INTERVAL_S", 60.0)
    handler.start_background_flush()
    logger.info("queued by the parent")
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        ok = len(handler._pending) == 0 and handler._flusher_pid is None
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child kept the parent's queue"
    handler.flush()
    assert stdout.lines() == ["queued by the parent"]
