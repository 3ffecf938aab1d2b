"""The OpenAPI document matches the code: every /api/v1 route is documented, every documented one exists."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

HTTP_METHODS = {"get", "put", "post", "delete", "patch"}
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _routes(app: Flask) -> dict[tuple[str, str], str]:
    """(OpenAPI path, method) -> endpoint, for every rule under /api/v1."""
    routes = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = _CONVERTER.sub(r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method.lower() in HTTP_METHODS:
                routes[(path, method.lower())] = rule.endpoint
    return routes


def _documented(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(path, method): op for path, item in doc["paths"].items() for method, op in item.items()
            if method in HTTP_METHODS}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_document_is_served_without_auth(client):
    response = client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"].startswith("3.1.")
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"]}
    for name in ("Problem", "LoginRequest", "TokenPair", "Message", "MessagePage"):
        assert name in doc["components"]["schemas"]


def test_every_route_is_documented_and_every_documented_route_exists(app, client):
    doc = client.get("/api/v1/openapi.json").get_json()
    routes = _routes(app)
    documented = _documented(doc)

    assert routes, "the admin blueprint registered no routes"
    assert set(routes) - set(documented) == set(), "routes missing from the OpenAPI document"
    assert set(documented) - set(routes) == set(), "documented operations the app does not have"


def test_security_and_path_parameters_match_the_views(app, client):
    doc = client.get("/api/v1/openapi.json").get_json()
    for (path, method), endpoint in _routes(app).items():
        op = _documented(doc)[(path, method)]
        view = app.view_functions[endpoint]
        protected = bool(getattr(view, "required_roles", ()))
        # An operation is public exactly when it says `security: []`; otherwise the global bearer applies.
        assert (op.get("security") != []) == protected, (path, method)
        if protected:
            assert {"401", "403", "429"} <= op["responses"].keys(), (path, method)
        names = set(re.findall(r"{([^}]+)}", path))
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert names == declared, (path, method)
        assert op["operationId"] and op["responses"]


def test_every_reference_resolves(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in doc["components"]["schemas"], ref


def test_documented_error_bodies_match_a_real_problem(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    problem = client.get("/api/v1/messages").get_json()
    schema = doc["components"]["schemas"]["Problem"]
    assert set(schema["required"]) <= problem.keys() <= schema["properties"].keys()
