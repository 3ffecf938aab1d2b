"""Support endpoints (roles `support` and `admin`): the message log and a farmer's transcript."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, jsonify, request
from sqlalchemy import or_, select

from admin import bp
from admin.audit import audit
from admin.auth import require_roles
from admin.errors import ApiError
from admin.pagination import QueryArgs, page_args, paginate
from admin.validation import MAX_ROW_ID
from models import Direction, Farmer, Message, MessageStatus
from services import context
from services.whatsapp.updates import normalize_phone

_TYPE = re.compile(r"[a-z_]{1,30}")  # inbound: Meta's types (text, image, button_reply...); outbound: ours


def _message_type(value: str) -> str | None:
    return value if _TYPE.fullmatch(value) else None


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def message_json(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "wamid": m.wamid,
        "direction": m.direction,
        "phone": m.phone,
        "farmer_id": m.farmer_id,
        "type": m.type,
        "text": m.text,
        "template_name": m.template_name,
        "status": m.status,
        "error_code": m.error_code,
        "error_title": m.error_title,
        "attempts": m.attempts,
        "analysis_id": m.analysis_id,
        "created_at": _iso(m.created_at),
        "meta_timestamp": _iso(m.meta_timestamp),
        "processed_at": _iso(m.processed_at),
        "sent_at": _iso(m.sent_at),
        "delivered_at": _iso(m.delivered_at),
        "read_at": _iso(m.read_at),
        "failed_at": _iso(m.failed_at),
    }


@bp.get("/farmers/<int:farmer_id>/messages")
@require_roles("support", "admin")
def farmer_messages(farmer_id: int) -> Response:
    """Every message to and from the farmer, oldest first, with delivery status and error."""
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    args.raise_if_errors()
    with context.db().reader() as session:
        farmer = session.get(Farmer, farmer_id) if farmer_id <= MAX_ROW_ID else None
        if farmer is None:
            raise ApiError(404, "No farmer with this id.")
        stmt = (select(Message)
                .where(or_(Message.farmer_id == farmer.id, Message.phone == farmer.phone))
                .order_by(Message.created_at, Message.id))
        result = paginate(session, stmt, page, per_page, message_json)
    audit("farmer.messages.read", "farmer", farmer_id, {"page": page, "per_page": per_page})
    return jsonify(result)


@bp.get("/messages")
@require_roles("support", "admin")
def search_messages() -> Response:
    """The message log, newest first, filtered by any of phone, direction, type, status, error code,
    time range (`since` inclusive, `until` exclusive) and text contained (`q`, case-insensitive)."""
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    phone = args.converted("phone", normalize_phone, "must be a phone number such as +905321234567")
    direction = args.choice("direction", [d.value for d in Direction])
    type_ = args.converted("type", _message_type, "must be a message type such as text, image or template")
    status = args.choice("status", [s.value for s in MessageStatus])
    error_code = args.integer("error_code", minimum=0, maximum=2**31 - 1)
    since = args.datetime("since")
    until = args.datetime("until")
    q = args.text("q")
    if since is not None and until is not None and since >= until:
        args.add_error("until", "must be later than since")
    args.raise_if_errors()

    stmt = select(Message)
    if phone is not None:
        stmt = stmt.where(Message.phone == phone)
    if direction is not None:
        stmt = stmt.where(Message.direction == direction)
    if type_ is not None:
        stmt = stmt.where(Message.type == type_)
    if status is not None:
        stmt = stmt.where(Message.status == status)
    if error_code is not None:
        stmt = stmt.where(Message.error_code == error_code)
    if since is not None:
        stmt = stmt.where(Message.created_at >= since)
    if until is not None:
        stmt = stmt.where(Message.created_at < until)
    if q is not None:
        stmt = stmt.where(Message.text.icontains(q, autoescape=True))
    stmt = stmt.order_by(Message.created_at.desc(), Message.id.desc())
    with context.db().reader() as session:
        result = paginate(session, stmt, page, per_page, message_json)
    filters = {k: v for k, v in {"phone": phone, "direction": direction, "type": type_, "status": status,
                                 "error_code": error_code, "since": _iso(since), "until": _iso(until),
                                 "q": q}.items() if v is not None}
    audit("messages.search", "message", None, {"filters": filters, "page": page, "total": result["total"]})
    return jsonify(result)
