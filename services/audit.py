"""The audit log: who read personal data or changed state, which record, when, from where.

Shared by the admin API and the staff console (both sit above services/): the writer lives here once."""

from __future__ import annotations

import re
from typing import Any

from flask import g, has_request_context, request
from sqlalchemy.orm import Session

from models import AuditLog, utcnow
from services import context

# What an action name may be (`sponsor.analysis.read`): the one check of a filter of the log by action.
ACTION_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


def client_ip() -> str | None:
    """The address the request came from (the proxy's, unless a trusted ProxyFix rewrote it)."""
    return request.remote_addr if has_request_context() else None


_VIA = "ziraai_audit_via"


def record_via(channel: str) -> None:
    """Every audit row of this request says where the action was done (`"via": channel` in its details), also
    those a service writes on the caller's behalf (a reply, a takeover, a deletion): the console calls this for
    each of its requests."""
    g.setdefault(_VIA, channel)


def audit(action: str, record_type: str | None, record_id: object | None, details: dict[str, Any] | None = None,
          *, user_id: int | None = None, session: Session | None = None) -> AuditLog:
    """Write one audit row for the signed-in user (`g.staff_user`, or `user_id`) and the request's IP.

    With `session` the row joins the caller's transaction; otherwise it is committed at once in its
    own (do not hold another write transaction open on SQLite when calling it that way)."""
    if user_id is None:
        user = g.get("staff_user") if has_request_context() else None
        user_id = user.id if user is not None else None
    via = g.get(_VIA) if has_request_context() else None
    if via is not None and "via" not in (details or {}):
        details = {**(details or {}), "via": via}
    row = AuditLog(action=action, record_type=record_type, record_id=None if record_id is None else str(record_id),
                   ip=client_ip(), at=utcnow(), details=details, user_id=user_id)
    if session is not None:
        session.add(row)
        return row
    with context.db().session() as own, own.begin():
        own.add(row)
    return row
