"""Bring a LocalStack up in order, with progress, and take it down again.

Reads no environment variables. Used by `make demo`, `make services` and the e2e
test fixtures, so the tests exercise exactly what users run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import elastic
from .components import LocalStack
from .supervisor import Supervisor

# Generous: the first Elasticsearch start on a busy 2-core machine takes ~30 s.
READY_TIMEOUT = {"elasticsearch": 180, "jaeger": 60, "prometheus": 60}


class StackError(RuntimeError):
    pass


def start(stack: LocalStack, progress: Callable[[str], None] = print) -> Supervisor:
    """Start every program and return once each one is ready."""
    stack.write_configs()
    if not stack.services_only:
        elastic.prepare(stack)
    programs = stack.programs()
    supervisor = Supervisor(stack, programs)
    started = time.monotonic()
    try:
        supervisor.start()
        for program in programs:
            if not program.autostart:
                continue
            t0 = time.monotonic()
            progress(f"  waiting for {program.name} ...")
            supervisor.wait_ready(program.name, READY_TIMEOUT.get(program.name, 45))
            progress(f"  {program.name:<14} ready in {time.monotonic() - t0:4.1f} s")
        if not stack.services_only:
            # The mappings must exist before the first line is shipped and the first
            # span stored, or Elasticsearch would guess field types from them.
            elastic.apply_index_templates(stack)
            progress(f"  index templates applied ({', '.join(elastic.TEMPLATES)})")
            _start_after_templates(supervisor, "jaeger", progress)
            supervisor.start_program("log-shipper")
            supervisor.wait_ready("log-shipper", 30)
            progress("  log-shipper     ready: Fluent Bit (fluent-bit/fluent-bit-local.conf)")
    except BaseException:
        stop(stack, supervisor)
        raise
    progress(f"  all up in {time.monotonic() - started:.1f} s")
    return supervisor


def _start_after_templates(
    supervisor: Supervisor, name: str, progress: Callable[[str], None]
) -> None:
    t0 = time.monotonic()
    supervisor.start_program(name)
    supervisor.wait_ready(name, READY_TIMEOUT.get(name, 45))
    progress(f"  {name:<14} ready in {time.monotonic() - t0:4.1f} s")


def stop(stack: LocalStack, supervisor: Supervisor) -> None:
    supervisor.stop()
    elastic.cleanup(stack)
