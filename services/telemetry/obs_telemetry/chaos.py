"""Validation shared by the services' chaos endpoints.

Reads no environment variables; limits come from the app config (SLOW_MAX_DELAY_SECONDS).
"""

from __future__ import annotations

import math

from .errors import AppError


def parse_delay(raw: str | None, maximum: float) -> float | None:
    """The ?delay= of /slow in seconds, or None when absent; AppError(400) if invalid."""
    if raw is None or raw == "":
        return None
    try:
        delay = float(raw)
    except ValueError:
        raise AppError(
            "validation_error", f"delay must be a number of seconds, got {raw!r}", 400
        ) from None
    if not math.isfinite(delay) or delay < 0 or delay > maximum:
        raise AppError(
            "validation_error", f"delay must be between 0 and {maximum:g} seconds, got {raw!r}", 400
        )
    return delay
