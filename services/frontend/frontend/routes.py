"""Frontend routes: the user-facing API. Every route here crosses into the backend.

Reads SLOW_MAX_DELAY_SECONDS through the app config (to reject a bad ?delay= before
it costs a backend call).
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from obs_telemetry import AppError
from obs_telemetry.chaos import parse_delay
from obs_telemetry.errors import json_object_body

from .backend_client import backend

bp = Blueprint("frontend", __name__)


@bp.get("/")
def index():
    status, _ = backend().call("GET", "/")
    return jsonify(service="frontend", status="ok", backend=status)


@bp.get("/items")
def list_items():
    body, _ = backend().call("GET", "/api/items")
    return jsonify(body)


@bp.get("/items/<int:item_id>")
def get_item(item_id: int):
    body, _ = backend().call("GET", f"/api/items/{item_id}")
    return jsonify(body)


@bp.post("/orders")
def create_order():
    payload = json_object_body()
    body, status = backend().call("POST", "/api/orders", json=payload)
    return jsonify(body), status


@bp.get("/error")
def error():
    params = {"type": request.args["type"]} if "type" in request.args else None
    backend().call("GET", "/error", params=params)
    # The backend's /error always fails; reaching this line means it misbehaved.
    raise AppError("upstream_error", "backend /error unexpectedly succeeded", 502)


@bp.get("/slow")
def slow():
    raw = request.args.get("delay")
    delay = parse_delay(raw, current_app.config["SLOW_MAX_DELAY_SECONDS"])
    params = {"delay": raw} if delay is not None else None
    body, _ = backend().call("GET", "/slow", params=params)
    return jsonify(service="frontend", backend=body)
