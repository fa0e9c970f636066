"""services/*/openapi.yaml describe exactly the routes Flask serves, so they cannot drift."""

from __future__ import annotations

import copy

import pytest

from tests.resilience.openapi import differences, load_spec

pytestmark = pytest.mark.parametrize("service", ["frontend", "backend"])


def app_of(service, frontend_app, backend_app):
    return frontend_app if service == "frontend" else backend_app


def test_openapi_describes_every_route_and_nothing_else(service, frontend_app, backend_app):
    spec = load_spec(service)
    assert spec["openapi"].startswith("3.")
    assert differences(spec, app_of(service, frontend_app, backend_app)) == []


def test_every_operation_documents_its_error_shape(service):
    spec = load_spec(service)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert "405" in operation["responses"], f"{method} {path}"
            for status, response in operation["responses"].items():
                if int(status) >= 400 and path not in ("/readyz",):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, f"{method} {path}"


def test_a_drifted_spec_is_caught(service, frontend_app, backend_app):
    app = app_of(service, frontend_app, backend_app)
    spec = load_spec(service)
    missing = copy.deepcopy(spec)
    removed = next(iter(missing["paths"]))
    del missing["paths"][removed]
    assert any(removed in problem for problem in differences(missing, app))
    extra = copy.deepcopy(spec)
    extra["paths"]["/no-such-route"] = {"get": {"responses": {}}}
    assert any("/no-such-route" in problem for problem in differences(extra, app))
    wrong_method = copy.deepcopy(spec)
    wrong_method["paths"]["/stats"]["post"] = wrong_method["paths"]["/stats"].pop("get")
    assert len(differences(wrong_method, app)) == 2
