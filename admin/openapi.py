"""The OpenAPI 3.1 document of the admin API, served at `/api/v1/openapi.json`.

Written by hand next to the code; `tests/test_admin_openapi.py` checks that every route of the
blueprint is documented and every documented operation exists.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from admin import bp
from admin.auth import ACCESS_TOKEN_SECONDS
from admin.pagination import DEFAULT_PER_PAGE, MAX_PAGE, MAX_PER_PAGE


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref("Problem")}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_TOO_MANY = {"description": "Rate limit reached; retry after `Retry-After` seconds.",
             "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
             "content": {"application/problem+json": {"schema": _ref("Problem")}}}
_AUTHED_ERRORS = {
    "400": _problem("Invalid query parameters (`errors` lists each field)."),
    "401": _problem("Missing, invalid or expired access token."),
    "403": _problem("The role may not use this endpoint."),
    "429": _TOO_MANY,
}
# Every query parameter is optional, and an empty one (`?crop=`) is the same as leaving it out.
_PAGE_PARAMS = [
    {"name": "page", "in": "query", "allowEmptyValue": True,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}},
    {"name": "per_page", "in": "query", "allowEmptyValue": True,
     "description": f"Values above {MAX_PER_PAGE} are capped at {MAX_PER_PAGE}.",
     "schema": {"type": "integer", "minimum": 1, "default": DEFAULT_PER_PAGE}},
]


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "allowEmptyValue": True, "schema": schema,
            "description": description}


_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_STR = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
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
    "LoginRequest": {
        "type": "object",
        "required": ["email", "password"],
        "properties": {"email": {"type": "string", "format": "email", "maxLength": 254},
                       "password": {"type": "string", "minLength": 1, "maxLength": 1024}},
    },
    "RefreshRequest": {
        "type": "object",
        "required": ["refresh_token"],
        "properties": {"refresh_token": {"type": "string", "minLength": 1, "maxLength": 200}},
    },
    "TokenPair": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"],
        "properties": {
            "access_token": {"type": "string", "description": "HS256 JWT: sub, role, sponsor_id, iat, exp, iss, aud."},
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer", "const": ACCESS_TOKEN_SECONDS},
            "refresh_token": {"type": "string", "description": "Opaque; single use (rotated on refresh)."},
            "refresh_expires_in": {"type": "integer"},
        },
    },
    "Message": {
        "type": "object",
        "required": ["id", "direction", "phone", "type", "status", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "wamid": _NULLABLE_STR,
            "direction": {"enum": ["in", "out"]},
            "phone": {"type": "string", "description": "E.164, e.g. +905321234567"},
            "farmer_id": _NULLABLE_INT,
            "type": {"type": "string"},
            "text": _NULLABLE_STR,
            "template_name": _NULLABLE_STR,
            "status": {"enum": ["received", "processed", "pending", "accepted", "sent", "delivered", "read",
                                "failed"]},
            "error_code": _NULLABLE_INT,
            "error_title": _NULLABLE_STR,
            "attempts": {"type": "integer"},
            "analysis_id": _NULLABLE_INT,
            "created_at": {"type": "string", "format": "date-time"},
            "meta_timestamp": _TIMESTAMP,
            "processed_at": _TIMESTAMP,
            "sent_at": _TIMESTAMP,
            "delivered_at": _TIMESTAMP,
            "read_at": _TIMESTAMP,
            "failed_at": _TIMESTAMP,
        },
    },
    "MessagePage": {
        "type": "object",
        "required": ["items", "page", "per_page", "total"],
        "properties": {
            "items": {"type": "array", "items": _ref("Message")},
            "page": {"type": "integer", "minimum": 1},
            "per_page": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
            "total": {"type": "integer", "minimum": 0},
        },
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/openapi.json": {
        "get": {
            "operationId": "openapi", "summary": "This document.", "tags": ["meta"], "security": [],
            "responses": {"200": {"description": "The OpenAPI 3.1 document.",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}},
        },
    },
    "/api/v1/auth/login": {
        "post": {
            "operationId": "login", "summary": "Email and password -> access and refresh tokens.", "tags": ["auth"],
            "security": [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("LoginRequest")}}},
            "responses": {
                "200": _json("Signed in.", _ref("TokenPair")),
                "400": _problem("Malformed body (`errors` lists each field)."),
                "401": _problem("Wrong email or password (the same answer for an unknown email)."),
                "429": _TOO_MANY,
            },
        },
    },
    "/api/v1/auth/refresh": {
        "post": {
            "operationId": "refresh", "tags": ["auth"],
            "summary": "Rotate a refresh token; presenting a used one revokes its whole family.",
            "security": [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("RefreshRequest")}}},
            "responses": {
                "200": _json("A new token pair; the presented refresh token is spent.", _ref("TokenPair")),
                "400": _problem("Malformed body."),
                "401": _problem("Unknown, expired, revoked or reused refresh token."),
            },
        },
    },
    "/api/v1/auth/logout": {
        "post": {
            "operationId": "logout", "summary": "Revoke the refresh token's family.", "tags": ["auth"],
            "description": "Revokes the login of the refresh token: its refresh tokens and, at once, the access "
                           "tokens issued with them. An access token sent in `Authorization` is revoked too; "
                           "sent without a body, it names the login to revoke.",
            "security": [],
            "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("RefreshRequest")}}},
            "responses": {"204": {"description": "Signed out (also for an unknown token)."},
                          "400": _problem("Malformed body.")},
        },
    },
    "/api/v1/messages": {
        "get": {
            "operationId": "searchMessages", "tags": ["support"],
            "summary": "Search the message log, newest first (roles: support, admin). Audited.",
            "parameters": [
                *_PAGE_PARAMS,
                _query("phone", {"type": "string"}, "The farmer's number; any formatting, normalised to E.164."),
                _query("direction", {"enum": ["in", "out"]}, "in (from farmers) or out (ours)."),
                _query("type", {"type": "string", "pattern": "^[a-z_]{1,30}$"}, "Message type: text, image..."),
                _query("status", {"enum": ["received", "processed", "pending", "accepted", "sent", "delivered",
                                           "read", "failed"]}, "Message status."),
                _query("error_code", {"type": "integer", "minimum": 0}, "Meta's error code of a failed message."),
                _query("since", {"type": "string", "format": "date-time"}, "Created at or after (UTC if no offset)."),
                _query("until", {"type": "string", "format": "date-time"},
                       "Created before (UTC if no offset); later than `since`."),
                _query("q", {"type": "string", "maxLength": 200}, "Text contains (case-insensitive, literal)."),
            ],
            "responses": {"200": _json("A page of messages.", _ref("MessagePage")), **_AUTHED_ERRORS},
        },
    },
    "/api/v1/farmers/{farmer_id}/messages": {
        "get": {
            "operationId": "farmerTranscript", "tags": ["support"],
            "summary": "A farmer's transcript, oldest first, with statuses and errors (roles: support, admin). "
                       "Audited.",
            "parameters": [{"name": "farmer_id", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 0}, "example": 1}, *_PAGE_PARAMS],
            "responses": {"200": _json("A page of messages.", _ref("MessagePage")), **_AUTHED_ERRORS,
                          "404": _problem("No farmer with this id.")},
        },
    },
}


def document() -> dict[str, Any]:
    """The paths and schemas here, plus those each route module declares (`OPENAPI_PATHS`, `OPENAPI_SCHEMAS`)."""
    from admin import operations, purchase_requests, runtime_settings, sponsor_messages, sponsors

    modules = (sponsors, sponsor_messages, purchase_requests, operations, runtime_settings)
    paths = {**PATHS, **{p: ops for m in modules for p, ops in m.OPENAPI_PATHS.items()}}
    schemas = {**SCHEMAS, **{n: s for m in modules for n, s in m.OPENAPI_SCHEMAS.items()}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ZiraAI admin API", "version": "1.0.0",
                 "description": "Sponsors, support and admins. Errors are application/problem+json (RFC 9457); "
                                "every list is paginated (`page`, `per_page` <= 100)."},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                               "description": "Access token from /api/v1/auth/login."}},
            "schemas": schemas,
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document())
