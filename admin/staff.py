"""`/staff`: the staff users of the admin API, listed and created by admins (never a password hash)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from admin import bp
from admin.auth import require_roles
from admin.errors import ApiError, field_error
from admin.openapi import (
    AUTHED_ERRORS,
    BODY_ERRORS,
    NULLABLE_INT,
    PAGE_PARAMS,
    TIMESTAMP,
    declare,
    json_body,
    json_response,
    page_of,
    problem_response,
    query_param,
    ref,
)
from admin.pagination import QueryArgs, page_args, paginate
from admin.validation import Body
from models import StaffUser, utcnow
from models.db import MAX_ROW_ID
from services import context
from services.audit import audit
from services.json_input import iso
from services.staff_auth import ROLES, create_staff_user

EMAIL_TAKEN = "A staff user with this email already exists."


def _staff_json(u: StaffUser) -> dict[str, Any]:
    return {"id": u.id, "email": u.email, "role": u.role, "sponsor_id": u.sponsor_id, "active": u.active,
            "created_at": iso(u.created_at)}


@bp.get("/staff")
@require_roles("admin")
def list_staff() -> Response:
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    role = args.choice("role", ROLES)
    args.raise_if_errors()
    stmt = select(StaffUser)
    if role is not None:
        stmt = stmt.where(StaffUser.role == role)
    with context.db().reader() as session:
        result = paginate(session, stmt.order_by(StaffUser.id), page, per_page, _staff_json)
    audit("staff.list", "staff_user", None, {"page": page})
    return jsonify(result)


def _error_field(message: str) -> str:
    """The body field a `create_staff_user` refusal is about."""
    for name in ("email", "role", "password", "sponsor"):
        if name in message:
            return "sponsor_id" if name == "sponsor" else name
    return "body"


@bp.post("/staff")
@require_roles("admin")
def create_staff() -> tuple[Response, int]:
    body = Body.load()
    email = body.string("email", max_length=254)
    password = body.string("password", max_length=1024)
    role = body.string("role", max_length=10)
    sponsor_id = body.integer("sponsor_id", 1, MAX_ROW_ID)
    body.refuse_unknown(("email", "password", "role", "sponsor_id"))  # e.g. `active`: every new account is active
    body.raise_if_errors()
    assert email is not None and password is not None and role is not None
    try:
        with context.db().session() as session, session.begin():
            try:
                user = create_staff_user(session, email, password, role, sponsor_id, utcnow())
            except ValueError as exc:
                message = str(exc).replace("--sponsor-id", "sponsor_id")
                if "already exists" in message:
                    raise ApiError(409, EMAIL_TAKEN) from exc
                raise ApiError(400, "Some fields of the request body are invalid.",
                               errors=[field_error(_error_field(message), message)]) from exc
            result = _staff_json(user)
            audit("staff.create", "staff_user", user.id, {"email": user.email, "role": user.role,
                                                          "sponsor_id": user.sponsor_id}, session=session)
    except IntegrityError as exc:  # a concurrent creation with the same email
        raise ApiError(409, EMAIL_TAKEN) from exc
    return jsonify(result), 201


SCHEMAS: dict[str, Any] = {
    "StaffUser": {
        "type": "object", "required": ["id", "email", "role", "active"],
        "properties": {"id": {"type": "integer"}, "email": {"type": "string"}, "role": {"enum": list(ROLES)},
                       "sponsor_id": NULLABLE_INT, "active": {"type": "boolean"}, "created_at": TIMESTAMP},
    },
    "StaffUserPage": page_of("StaffUser"),
    "StaffUserCreate": {
        "type": "object", "required": ["email", "password", "role"], "additionalProperties": False,
        "properties": {"email": {"type": "string", "format": "email", "maxLength": 254},
                       "password": {"type": "string", "minLength": 10, "maxLength": 1024},
                       "role": {"enum": list(ROLES)},
                       "sponsor_id": {**NULLABLE_INT, "minimum": 1, "maximum": MAX_ROW_ID,
                                      "description": "Required for, and only for, a sponsor user."}},
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/staff": {
        "get": {
            "operationId": "listStaff", "tags": ["admin"], "summary": "Staff users, no password hashes (role: admin).",
            "parameters": [*PAGE_PARAMS, query_param("role", {"enum": list(ROLES)}, "Only this role.")],
            "responses": {"200": json_response("A page of staff users.", ref("StaffUserPage")), **AUTHED_ERRORS},
        },
        "post": {
            "operationId": "createStaff", "tags": ["admin"], "summary": "Create a staff user (role: admin). Audited.",
            "requestBody": json_body("StaffUserCreate"),
            "responses": {"201": json_response("The new user.", ref("StaffUser")), **AUTHED_ERRORS, **BODY_ERRORS,
                          "409": problem_response("The email is taken.")},
        },
    },
}
declare(PATHS, SCHEMAS)
