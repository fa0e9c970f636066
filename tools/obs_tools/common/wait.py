"""Bounded waiting: poll a condition instead of sleeping a fixed time.

Reads no environment variables. Used by the local stack and by the tests.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class PollTimeout(AssertionError):
    """The condition did not become true in time."""


class GiveUp(AssertionError):
    """Raised by a condition that knows it can never become true (a process died)."""


def poll_until(
    condition: Callable[[], T],
    description: str,
    timeout: float = 30.0,
    interval: float = 0.2,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call `condition` until it returns something truthy, and return that.

    Exceptions from `condition` count as "not yet" (a server still starting refuses
    connections), except GiveUp; the last one is reported if time runs out.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except GiveUp:
            raise
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            extra = f"\n{on_timeout()}" if on_timeout else ""
            raise PollTimeout(
                f"timed out after {timeout:g}s waiting for {description}{detail}{extra}"
            )
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
