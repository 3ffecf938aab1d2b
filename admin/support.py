"""Support endpoints (roles `support` and `admin`): the message log and a farmer's transcript. Audited."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, jsonify, request
from sqlalchemy import or_, select

from admin import bp
from admin.auth import require_roles
from admin.openapi import (
    AUTHED_ERRORS,
    NULLABLE_INT,
    NULLABLE_STR,
    PAGE_PARAMS,
    ROW_ID,
    TIMESTAMP,
    declare,
    json_response,
    page_of,
    path_param,
    problem_response,
    query_param,
    ref,
)
from admin.pagination import QueryArgs, in_range, page_args, paginate
from admin.validation import row_or_404
from models import Direction, Farmer, Message, MessageStatus
from services import context
from services.audit import audit
from services.json_input import iso
from services.whatsapp.updates import normalize_phone, user_id

_TYPE = re.compile(r"[a-z_]{1,30}")  # inbound: Meta's types (text, image, button_reply...); outbound: ours
MAX_ERROR_CODE = 2**31 - 1  # the column is a 32-bit integer


def _message_type(value: str) -> str | None:
    return value if _TYPE.fullmatch(value) else None


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
        "created_at": iso(m.created_at),
        "meta_timestamp": iso(m.meta_timestamp),
        "processed_at": iso(m.processed_at),
        "sent_at": iso(m.sent_at),
        "delivered_at": iso(m.delivered_at),
        "read_at": iso(m.read_at),
        "failed_at": iso(m.failed_at),
    }


def farmer_reach_json(farmer: Farmer) -> dict[str, Any]:
    """What Meta told us about reaching the farmer: support sees why a message did not arrive."""
    return {
        "id": farmer.id,
        "phone": farmer.phone,
        "unreachable_at": iso(farmer.unreachable_at),
        "marketing_opt_out_at": iso(farmer.marketing_opt_out_at),
        "marketing_paused_until": iso(farmer.marketing_paused_until),
        "paced_until": iso(farmer.paced_until),
        "accepts_proactive": farmer.accepts_proactive,
    }


@bp.get("/farmers/<int:farmer_id>/messages")
@require_roles("support", "admin")
def farmer_messages(farmer_id: int) -> Response:
    """Every message to and from the farmer, oldest first, with delivery status and error."""
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    args.raise_if_errors()
    with context.db().reader() as session:
        farmer = row_or_404(session, Farmer, farmer_id, "No farmer with this id.")
        aliases = [a for a in (farmer.phone, farmer.user_id) if a]  # none once the farmer's data is deleted
        stmt = (select(Message)
                .where(or_(Message.farmer_id == farmer.id, Message.phone.in_(aliases)))
                .order_by(Message.created_at, Message.id))
        result = paginate(session, stmt, page, per_page, message_json)
        result["farmer"] = farmer_reach_json(farmer)
    audit("farmer.messages.read", "farmer", farmer_id, {"page": page, "per_page": per_page})
    return jsonify(result)


@bp.get("/messages")
@require_roles("support", "admin")
def search_messages() -> Response:
    """The message log, newest first, filtered by any of phone, direction, type, status, error code,
    time range (`since` inclusive, `until` exclusive) and text contained (`q`, case-insensitive)."""
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    phone = args.converted("phone", lambda v: normalize_phone(v) or user_id(v),
                           "must be a phone number such as +905321234567 or a user id such as TR.1234")
    direction = args.choice("direction", [d.value for d in Direction])
    type_ = args.converted("type", _message_type, "must be a message type such as text, image or template")
    status = args.choice("status", [s.value for s in MessageStatus])
    error_code = args.integer("error_code", minimum=0, maximum=MAX_ERROR_CODE)
    since, until = args.time_range()
    q = args.text("q")
    args.raise_if_errors()

    stmt = in_range(select(Message), Message.created_at, since, until)
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
    if q is not None:
        stmt = stmt.where(Message.text.icontains(q, autoescape=True))
    stmt = stmt.order_by(Message.created_at.desc(), Message.id.desc())
    with context.db().reader() as session:
        result = paginate(session, stmt, page, per_page, message_json)
    filters = {k: v for k, v in {"phone": phone, "direction": direction, "type": type_, "status": status,
                                 "error_code": error_code, "since": iso(since), "until": iso(until),
                                 "q": q}.items() if v is not None}
    audit("messages.search", "message", None, {"filters": filters, "page": page, "total": result["total"]})
    return jsonify(result)


MESSAGE_STATUSES = [s.value for s in MessageStatus]

SCHEMAS: dict[str, Any] = {
    "Message": {
        "type": "object",
        "required": ["id", "direction", "phone", "type", "status", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "wamid": NULLABLE_STR,
            "direction": {"enum": ["in", "out"]},
            "phone": {"type": "string", "description": "E.164, e.g. +905321234567; for a farmer known only by "
                                                       "Meta's user id, that id (TR.1234...)"},
            "farmer_id": NULLABLE_INT,
            "type": {"type": "string"},
            "text": NULLABLE_STR,
            "template_name": NULLABLE_STR,
            "status": {"enum": MESSAGE_STATUSES},
            "error_code": NULLABLE_INT,
            "error_title": NULLABLE_STR,
            "attempts": {"type": "integer"},
            "analysis_id": NULLABLE_INT,
            "created_at": {"type": "string", "format": "date-time"},
            "meta_timestamp": TIMESTAMP,
            "processed_at": TIMESTAMP,
            "sent_at": TIMESTAMP,
            "delivered_at": TIMESTAMP,
            "read_at": TIMESTAMP,
            "failed_at": TIMESTAMP,
        },
    },
    "MessagePage": page_of("Message"),
    "FarmerReach": {
        "type": "object",
        "required": ["id", "phone", "accepts_proactive"],
        "properties": {
            "id": {"type": "integer"},
            "phone": {"type": "string", "description": "E.164"},
            "unreachable_at": {**TIMESTAMP, "description": "Meta reported the number undeliverable (131026); "
                                                           "cleared when the farmer writes. No sponsor messages."},
            "marketing_opt_out_at": {**TIMESTAMP, "description": "The farmer stopped marketing messages in "
                                                                 "WhatsApp (131050 or a user_preferences event)."},
            "marketing_paused_until": {**TIMESTAMP, "description": "Meta limits marketing messages to the farmer "
                                                                   "(131049, 130472) until then."},
            "paced_until": {**TIMESTAMP, "description": "At most one message per 6 s until then (131056)."},
            "accepts_proactive": {"type": "boolean", "description": "Whether a sponsor message may be sent."},
        },
    },
}
SCHEMAS["TranscriptPage"] = {**page_of("Message"), "required": [*page_of("Message")["required"], "farmer"],
                             "properties": {**page_of("Message")["properties"], "farmer": ref("FarmerReach")}}

PATHS: dict[str, Any] = {
    "/api/v1/messages": {
        "get": {
            "operationId": "searchMessages", "tags": ["support"],
            "summary": "Search the message log, newest first (roles: support, admin). Audited.",
            "parameters": [
                *PAGE_PARAMS,
                query_param("phone", {"type": "string"},
                            "The farmer's number in ASCII digits (normalised to E.164) or user id."),
                query_param("direction", {"enum": ["in", "out"]}, "in (from farmers) or out (ours)."),
                query_param("type", {"type": "string", "pattern": "^[a-z_]{1,30}$"}, "Message type: text, image..."),
                query_param("status", {"enum": MESSAGE_STATUSES}, "Message status."),
                query_param("error_code", {"type": "integer", "minimum": 0, "maximum": MAX_ERROR_CODE},
                            "Meta's error code of a failed message."),
                query_param("since", {"type": "string", "format": "date-time"},
                            "Created at or after (UTC if no offset)."),
                query_param("until", {"type": "string", "format": "date-time"},
                            "Created before (UTC if no offset); later than `since`."),
                query_param("q", {"type": "string", "maxLength": 200}, "Text contains (case-insensitive, literal)."),
            ],
            "responses": {"200": json_response("A page of messages.", ref("MessagePage")), **AUTHED_ERRORS},
        },
    },
    "/api/v1/farmers/{farmer_id}/messages": {
        "get": {
            "operationId": "farmerTranscript", "tags": ["support"],
            "summary": "A farmer's transcript, oldest first, with statuses and errors (roles: support, admin). "
                       "Audited.",
            "parameters": [path_param("farmer_id", ROW_ID, 1), *PAGE_PARAMS],
            "responses": {"200": json_response("A page of messages, and what Meta told us about reaching the "
                                               "farmer.", ref("TranscriptPage")), **AUTHED_ERRORS,
                          "404": problem_response("No farmer with this id.")},
        },
    },
}
declare(PATHS, SCHEMAS)
