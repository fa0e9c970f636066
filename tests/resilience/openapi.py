"""Read the services' OpenAPI descriptions and compare them with the Flask routes.

Reads no environment variables.
"""

from __future__ import annotations

import re

import yaml
from obs_tools.common.paths import REPO

IMPLICIT_METHODS = {"HEAD", "OPTIONS"}


def load_spec(service: str) -> dict:
    return yaml.safe_load((REPO / "services" / service / "openapi.yaml").read_text())


def spec_operations(spec: dict) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace")
    }


def flask_operations(app) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every route: <int:item_id> becomes {item_id}."""
    operations = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        operations |= {(path, method) for method in rule.methods - IMPLICIT_METHODS}
    return operations


def integer_path_parameters(app) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        for name, converter in rule._converters.items():
            if type(converter).__name__ == "IntegerConverter":
                path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
                found.add((path, name))
    return found


def spec_integer_path_parameters(spec: dict) -> set[tuple[str, str]]:
    found = set()
    for path, item in spec["paths"].items():
        for operation in item.values():
            for param in operation.get("parameters", []):
                if param["in"] == "path" and param["schema"]["type"] == "integer":
                    found.add((path, param["name"]))
    return found


def differences(spec: dict, app) -> list[str]:
    in_spec, in_app = spec_operations(spec), flask_operations(app)
    problems = [f"route {m} {p} is not in openapi.yaml" for p, m in sorted(in_app - in_spec)]
    problems += [f"openapi.yaml has {m} {p}, no such route" for p, m in sorted(in_spec - in_app)]
    if integer_path_parameters(app) != spec_integer_path_parameters(spec):
        problems.append(
            f"integer path parameters differ: routes {sorted(integer_path_parameters(app))}, "
            f"spec {sorted(spec_integer_path_parameters(spec))}"
        )
    return problems
