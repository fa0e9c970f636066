"""Backend routes: the catalog, orders, and the backend side of /error and /slow.

Reads SLOW_TIMEOUT_RATE, SLOW_MAX_DELAY_SECONDS and SLOW_TIMEOUT_SECONDS through the
app config.
"""

from __future__ import annotations

import itertools
import random
import time

from flask import Blueprint, current_app, jsonify, request

from obs_telemetry import SIMULATED_ERRORS, AppError
from obs_telemetry.chaos import parse_delay
from obs_telemetry.errors import json_object_body

bp = Blueprint("backend", __name__)

# A fixed catalog keeps the demo deterministic; prices are integer cents, never floats.
CATALOG = {
    1: {"id": 1, "name": "Prometheus mug", "price_cents": 1200},
    2: {"id": 2, "name": "Jaeger sticker pack", "price_cents": 450},
    3: {"id": 3, "name": "Grafana hoodie", "price_cents": 4500},
    4: {"id": 4, "name": "Kibana notebook", "price_cents": 800},
    5: {"id": 5, "name": "Fluent Bit keychain", "price_cents": 300},
}
MAX_QUANTITY = 100

_order_ids = itertools.count(1)

_SIMULATED_MESSAGES = {
    "database_error": "simulated database failure: connection pool exhausted",
    "validation_error": "simulated validation failure: payload rejected",
    "permission_error": "simulated permission failure: access denied",
    "timeout_error": "simulated timeout: downstream did not answer in time",
}


@bp.get("/")
def index():
    return jsonify(service="backend", status="ok", items=len(CATALOG))


@bp.get("/api/items")
def list_items():
    return jsonify(items=list(CATALOG.values()))


@bp.get("/api/items/<int:item_id>")
def get_item(item_id: int):
    item = CATALOG.get(item_id)
    if item is None:
        raise AppError("not_found", f"no item with id {item_id}", 404)
    return jsonify(item)


def _positive_int(body: dict, key: str, maximum: int) -> int:
    value = body.get(key)
    # bool is an int subclass in Python; JSON true must not pass as quantity 1.
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise AppError("validation_error", f"{key} must be an integer from 1 to {maximum}", 400)
    return value


@bp.post("/api/orders")
def create_order():
    body = json_object_body()
    item_id = _positive_int(body, "item_id", max(CATALOG))
    quantity = _positive_int(body, "quantity", MAX_QUANTITY)
    # The catalog's ids are 1..max with no gaps, so the range check above found it.
    item = CATALOG[item_id]
    order = {
        "order_id": next(_order_ids),
        "item_id": item_id,
        "quantity": quantity,
        "total_cents": item["price_cents"] * quantity,
    }
    return jsonify(order), 201


@bp.get("/error")
def error():
    error_type = request.args.get("type") or random.choice(list(SIMULATED_ERRORS))
    if error_type not in SIMULATED_ERRORS:
        raise AppError(
            "validation_error", f"type must be one of {', '.join(SIMULATED_ERRORS)}", 400
        )
    raise AppError(error_type, _SIMULATED_MESSAGES[error_type], SIMULATED_ERRORS[error_type])


@bp.get("/slow")
def slow():
    config = current_app.config
    delay = parse_delay(request.args.get("delay"), config["SLOW_MAX_DELAY_SECONDS"])
    if random.random() < config["SLOW_TIMEOUT_RATE"]:
        deadline = config["SLOW_TIMEOUT_SECONDS"]
        time.sleep(deadline)
        raise AppError("timeout_error", f"operation exceeded its {deadline:g} s deadline", 504)
    if delay is None:
        delay = random.uniform(0.1, 1.0)
    time.sleep(delay)
    return jsonify(service="backend", delay_seconds=round(delay, 3))
