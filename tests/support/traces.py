"""Traces through the services and back out of Jaeger's query API, for the e2e tests.

Reads no environment variables.
"""

from __future__ import annotations

import secrets

import httpx


def traced_get(url: str) -> tuple[str, httpx.Response]:
    """GET `url` as part of a new sampled trace; (its trace id, the response)."""
    trace_id = secrets.token_hex(16)
    header = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    return trace_id, httpx.get(url, headers={"traceparent": header}, timeout=15)


def jaeger_trace(query_url: str, trace_id: str) -> dict | None:
    """The trace as Jaeger's query API (`query_url`) returns it, or None if unknown."""
    response = httpx.get(f"{query_url}/api/traces/{trace_id}", timeout=10)
    if response.status_code != 200:
        return None
    data = response.json().get("data") or []
    return data[0] if data else None


def services_of(trace: dict) -> set[str]:
    return {trace["processes"][s["processID"]]["serviceName"] for s in trace["spans"]}
