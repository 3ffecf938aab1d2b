"""`/audit`: reading the audit log, newest first, by user and action (admin only).

Rows are written by `services.audit.audit`.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from sqlalchemy import select

from admin import bp
from admin.auth import require_roles
from admin.openapi import (
    AUTHED_ERRORS,
    NULLABLE_INT,
    NULLABLE_STR,
    PAGE_PARAMS,
    declare,
    json_response,
    page_of,
    query_param,
    ref,
)
from admin.pagination import QueryArgs, page_args, paginate
from models import AuditLog
from models.db import MAX_ROW_ID
from services import context
from services.audit import ACTION_PATTERN
from services.json_input import iso


def _audit_json(row: AuditLog) -> dict[str, Any]:
    return {"id": row.id, "user_id": row.user_id, "action": row.action, "record_type": row.record_type,
            "record_id": row.record_id, "ip": row.ip, "at": iso(row.at), "details": row.details}


def _action(value: str) -> str | None:
    return value if ACTION_PATTERN.fullmatch(value) else None


@bp.get("/audit")
@require_roles("admin")
def audit_log() -> Response:
    """The audit log, newest first, filtered by user and action."""
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    user_id = args.integer("user_id", minimum=1, maximum=MAX_ROW_ID)
    action = args.converted("action", _action, "must be an action name such as analysis.read")
    args.raise_if_errors()
    stmt = select(AuditLog)
    if user_id is not None:
        stmt = stmt.where(AuditLog.user_id == user_id)
    if action is not None:
        stmt = stmt.where(AuditLog.action == action)
    with context.db().reader() as session:
        result = paginate(session, stmt.order_by(AuditLog.at.desc(), AuditLog.id.desc()), page, per_page, _audit_json)
    return jsonify(result)


SCHEMAS: dict[str, Any] = {
    "AuditEntry": {
        "type": "object", "required": ["id", "action", "at"],
        "properties": {"id": {"type": "integer"}, "user_id": NULLABLE_INT, "action": {"type": "string"},
                       "record_type": NULLABLE_STR, "record_id": NULLABLE_STR, "ip": NULLABLE_STR,
                       "at": {"type": "string", "format": "date-time"}, "details": {"type": ["object", "null"]}},
    },
    "AuditPage": page_of("AuditEntry"),
}

PATHS: dict[str, Any] = {
    "/api/v1/audit": {"get": {
        "operationId": "auditLog", "tags": ["admin"], "summary": "The audit log, newest first (role: admin).",
        "parameters": [*PAGE_PARAMS,
                       query_param("user_id", {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID},
                                   "Only this staff user."),
                       query_param("action", {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,100}$"},
                                   "Only this action.")],
        "responses": {"200": json_response("A page of audit rows.", ref("AuditPage")), **AUTHED_ERRORS},
    }},
}
declare(PATHS, SCHEMAS)
