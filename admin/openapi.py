"""The OpenAPI 3.1 document of the admin API, served at `/api/v1/openapi.json`.

Written by hand next to the code: each route module builds its `PATHS` (and `SCHEMAS`) with the
helpers here and hands them to `declare()`; `document()` assembles what was declared.
`tests/test_admin_openapi.py` checks that every route of the blueprint is documented and every
documented operation exists.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from admin import bp
from admin.pagination import DEFAULT_PER_PAGE, MAX_PAGE, MAX_PER_PAGE


def ref(name: str) -> dict[str, str]:
    """A reference to the schema `name` of the document's components."""
    return {"$ref": f"#/components/schemas/{name}"}


def problem_response(description: str) -> dict[str, Any]:
    """A response whose body is a Problem (application/problem+json)."""
    return {"description": description, "content": {"application/problem+json": {"schema": ref("Problem")}}}


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def json_body(schema: str, *, required: bool = True) -> dict[str, Any]:
    """A JSON request body of the schema named `schema`."""
    return {"required": required, "content": {"application/json": {"schema": ref(schema)}}}


def query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An optional query parameter; an empty one (`?crop=`) is the same as leaving it out."""
    return {"name": name, "in": "query", "required": False, "allowEmptyValue": True, "schema": schema,
            "description": description}


def path_param(name: str, schema: dict[str, Any], example: Any) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "example": example}


def page_of(item: str) -> dict[str, Any]:
    """The page envelope (`admin.pagination.paginate`) of the schema named `item`."""
    return {"type": "object", "required": ["items", "page", "per_page", "total"],
            "properties": {"items": {"type": "array", "items": ref(item)},
                           "page": {"type": "integer", "minimum": 1},
                           "per_page": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
                           "total": {"type": "integer", "minimum": 0}}}


TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
NULLABLE_INT = {"type": ["integer", "null"]}
NULLABLE_STR = {"type": ["string", "null"]}
ROW_ID = {"type": "integer", "minimum": 0}  # a path id: larger than a row id matches nothing (404)

TOO_MANY = {"description": "Rate limit reached; retry after `Retry-After` seconds.",
            "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
            "content": {"application/problem+json": {"schema": ref("Problem")}}}
AUTHED_ERRORS = {
    "400": problem_response("Invalid query parameters (`errors` lists each field)."),
    "401": problem_response("Missing, invalid or expired access token."),
    "403": problem_response("The role may not use this endpoint."),
    "429": TOO_MANY,
}
BODY_ERRORS = {"400": problem_response("Invalid body (`errors` lists each field).")}
# Every query parameter is optional, and an empty one (`?crop=`) is the same as leaving it out.
PAGE_PARAMS = [
    {"name": "page", "in": "query", "allowEmptyValue": True,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}},
    {"name": "per_page", "in": "query", "allowEmptyValue": True,
     "description": f"Values above {MAX_PER_PAGE} are capped at {MAX_PER_PAGE}.",
     "schema": {"type": "integer", "minimum": 1, "default": DEFAULT_PER_PAGE}},
]


def operation(op_id: str, summary: str, tag: str, responses: dict[str, Any], *,
              params: list[dict[str, Any]] | None = None, body: str | None = None) -> dict[str, Any]:
    """An authenticated operation: its responses include `AUTHED_ERRORS` (which `responses` may refine)."""
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": [tag], "parameters": params or [],
                          "responses": {**AUTHED_ERRORS, **responses}}
    if body is not None:
        op["requestBody"] = json_body(body)
    return op


_PATHS: dict[str, dict[str, Any]] = {}
_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
        },
    },
}


def declare(paths: dict[str, dict[str, Any]], schemas: dict[str, Any] | None = None) -> None:
    """Add a route module's operations and schemas to the document (each module calls it once, on import).
    Two modules may share a path, never an operation or a schema name."""
    for path, operations in paths.items():
        known = _PATHS.setdefault(path, {})
        assert not known.keys() & operations.keys(), f"{path} declared twice"
        known.update(operations)
    for name, schema in (schemas or {}).items():
        assert name not in _SCHEMAS, f"schema {name} declared twice"
        _SCHEMAS[name] = schema


def document() -> dict[str, Any]:
    """The whole document: the paths and schemas every route module declared."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "ZiraAI admin API", "version": "1.0.0",
                 "description": "Sponsors, support and admins. Errors are application/problem+json (RFC 9457); "
                                "every list is paginated (`page`, `per_page` <= 100)."},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": {path: dict(operations) for path, operations in _PATHS.items()},
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                               "description": "Access token from /api/v1/auth/login."}},
            "schemas": dict(_SCHEMAS),
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document())


declare({
    "/api/v1/openapi.json": {
        "get": {
            "operationId": "openapi", "summary": "This document.", "tags": ["meta"], "security": [],
            "responses": {"200": {"description": "The OpenAPI 3.1 document.",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}},
        },
    },
})
