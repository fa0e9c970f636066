"""Error types the services report, and the exception that carries one to a response.

Reads no environment variables. Every error a service reports has one of these types:
they become the error_type label of flask_errors_total, the error.type field of log
lines and spans, and the "error" key of the JSON error body. A closed set keeps the
label's cardinality bounded even when a type arrives from another service.
"""

from __future__ import annotations

import json

# What /error picks from, with the status each would really have.
SIMULATED_ERRORS: dict[str, int] = {
    "database_error": 500,
    "validation_error": 400,
    "permission_error": 403,
    "timeout_error": 504,
}

ERROR_TYPES = frozenset(
    {
        *SIMULATED_ERRORS,
        "health_check_failed",
        "not_found",
        "backend_unavailable",
        "upstream_error",
        "internal_error",
    }
)


class AppError(Exception):
    """An error with a type from ERROR_TYPES and the HTTP status to answer with."""

    def __init__(self, error_type: str, message: str, status: int) -> None:
        if error_type not in ERROR_TYPES:
            raise ValueError(f"unknown error type {error_type!r}")
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status

    def to_dict(self) -> dict:
        return {"error": self.error_type, "message": self.message}


def json_object_body() -> dict:
    """The request's JSON object body, or AppError(400) for anything else."""
    from flask import request

    try:
        body = request.get_json(silent=True)
    except RecursionError:
        # Deeply nested arrays ("[[[[...") exhaust the parser's recursion, which Flask's
        # silent mode does not catch; it is bad input, not a server error.
        body = None
    if not isinstance(body, dict):
        raise AppError("validation_error", "body must be a JSON object", 400)
    try:
        # Python's parser accepts NaN, Infinity and 1e400 (read as inf), which are not
        # JSON: relayed to another service they would fail to encode (a 500) or leak.
        json.dumps(body, allow_nan=False)
    except ValueError:
        raise AppError(
            "validation_error", "body must be valid JSON (no NaN or Infinity numbers)", 400
        ) from None
    return body
