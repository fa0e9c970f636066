"""HTTP client for the backend, with timeouts, tracing and error mapping.

Reads BACKEND_URL, BACKEND_CONNECT_TIMEOUT and BACKEND_READ_TIMEOUT through the app
config. Every call carries the W3C traceparent of the current span, so a user request
is one trace across both services.
"""

from __future__ import annotations

import httpx
from flask import Flask, current_app

from obs_telemetry import AppError, instrument_http_client
from obs_telemetry.errors import ERROR_TYPES

EXTENSION_KEY = "backend_client"


class BackendClient:
    def __init__(self, app: Flask) -> None:
        config = app.config
        timeout = httpx.Timeout(
            connect=config["BACKEND_CONNECT_TIMEOUT"],
            read=config["BACKEND_READ_TIMEOUT"],
            write=config["BACKEND_CONNECT_TIMEOUT"],
            pool=config["BACKEND_CONNECT_TIMEOUT"],
        )
        # One pooled client per app, so calls reuse keep-alive connections instead of
        # paying a TCP handshake each. No cap on connections: gunicorn's thread count
        # already bounds concurrent calls, and a cap would queue them behind each other.
        self.http = httpx.Client(
            base_url=config["BACKEND_URL"],
            timeout=timeout,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
        )
        instrument_http_client(self.http, app)
        app.extensions[EXTENSION_KEY] = self

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs) -> tuple[dict, int]:
        """(JSON body, status) of a successful call; AppError for any failure."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            kind = "connect" if isinstance(exc, httpx.ConnectTimeout) else "read"
            raise AppError("timeout_error", f"backend {kind} timeout on {path}", 504) from exc
        except httpx.TransportError as exc:
            raise AppError(
                "backend_unavailable", f"backend unreachable: {type(exc).__name__}", 502
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise AppError("upstream_error", f"backend sent a non-JSON answer to {path}", 502)
        if response.status_code >= 400:
            # Relay the backend's own error type and status, so both services' metrics
            # and the trace agree on what went wrong; unknown types are not trusted.
            error_type = body.get("error")
            if error_type not in ERROR_TYPES:
                error_type = "upstream_error"
            message = f"backend: {body.get('message', 'no message')}"
            raise AppError(error_type, message, response.status_code)
        return body, response.status_code


def backend() -> BackendClient:
    return current_app.extensions[EXTENSION_KEY]
