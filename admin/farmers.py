"""A farmer's subscriptions and usage ledger (roles support, admin), and granting one (admin only).

All audited. A farmer's messages are `admin.support`'s; the tiers themselves are `admin.tiers`'.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Response, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from admin import bp
from admin.auth import require_roles
from admin.errors import ApiError, field_error
from admin.openapi import (
    AUTHED_ERRORS,
    BODY_ERRORS,
    NULLABLE_INT,
    NULLABLE_STR,
    PAGE_PARAMS,
    ROW_ID,
    TIMESTAMP,
    declare,
    json_body,
    json_response,
    page_of,
    path_param,
    problem_response,
    ref,
)
from admin.pagination import QueryArgs, page_args, paginate
from admin.validation import Body, row_or_404
from models import Farmer, Subscription, SubscriptionStatus, Tier, UsageLedger, utcnow
from services import context
from services.audit import audit
from services.json_input import iso
from services.quota import (
    TRIAL,
    add_subscription,
    current_subscription,
    lock_farmer,
    queued_subscriptions,
    quota_status,
    tier_by_code,
)

MAX_GRANT_DAYS = 3650
NO_FARMER = "No farmer with this id."


def _subscription_json(sub: Subscription, tier: Tier) -> dict[str, Any]:
    return {
        "id": sub.id,
        "tier_code": tier.code,
        "tier_name": tier.name,
        "status": sub.status,
        "starts_at": iso(sub.starts_at),
        "ends_at": iso(sub.ends_at),
        "sponsor_id": sub.sponsor_id,
        "code_id": sub.code_id,
        "created_at": iso(sub.created_at),
    }


def _farmer_subscription(session: Session, farmer_id: int) -> dict[str, Any]:
    now = utcnow()
    status = quota_status(session, farmer_id, now)
    current = current_subscription(session, farmer_id, now)
    queued = queued_subscriptions(session, farmer_id)
    quota = None
    if status is not None:
        quota = {"daily_used": status.daily_used, "daily_limit": status.daily_limit,
                 "monthly_used": status.monthly_used, "monthly_limit": status.monthly_limit,
                 "remaining_today": status.remaining, "day_resets_at": iso(status.day_resets_at),
                 "month_resets_at": iso(status.month_resets_at), "sponsor_name": status.sponsor_name}
    return {
        "farmer_id": farmer_id,
        "current": _subscription_json(current, session.get_one(Tier, current.tier_id)) if current else None,
        "queued": [_subscription_json(q, session.get_one(Tier, q.tier_id)) for q in queued],
        "quota": quota,
    }


@bp.get("/farmers/<int:farmer_id>/subscription")
@require_roles("support", "admin")
def farmer_subscription(farmer_id: int) -> Response:
    """The farmer's current and queued subscriptions and how much of the quota is used."""
    with context.db().session() as session, session.begin():  # quota_status brings statuses up to date
        row_or_404(session, Farmer, farmer_id, NO_FARMER)
        body = _farmer_subscription(session, farmer_id)
    audit("farmer.subscription.read", "farmer", farmer_id)
    return jsonify(body)


def _ledger_json(row: UsageLedger) -> dict[str, Any]:
    return {"id": row.id, "farmer_id": row.farmer_id, "subscription_id": row.subscription_id,
            "analysis_id": row.analysis_id, "kind": row.kind, "day_key": row.day_key, "month_key": row.month_key,
            "refund_of": row.refund_of, "created_at": iso(row.created_at)}


@bp.get("/farmers/<int:farmer_id>/ledger")
@require_roles("support", "admin")
def farmer_ledger(farmer_id: int) -> Response:
    """The farmer's usage ledger (charges and refunds), newest first."""
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    args.raise_if_errors()
    with context.db().reader() as session:
        row_or_404(session, Farmer, farmer_id, NO_FARMER)
        stmt = (select(UsageLedger).where(UsageLedger.farmer_id == farmer_id)
                .order_by(UsageLedger.created_at.desc(), UsageLedger.id.desc()))
        result = paginate(session, stmt, page, per_page, _ledger_json)
    audit("farmer.ledger.read", "farmer", farmer_id, {"page": page})
    return jsonify(result)


@bp.post("/farmers/<int:farmer_id>/subscriptions")
@require_roles("admin")
def grant_subscription(farmer_id: int) -> tuple[Response, int]:
    """Give the farmer a tier for `days` days: active now (a Trial is replaced), or queued behind an
    active paid subscription, like a redeemed code. A farmer with one queued already gets 409."""
    body = Body.load()
    tier_code = body.string("tier_code", max_length=10)
    days = body.integer("days", 1, MAX_GRANT_DAYS, required=True)
    body.refuse_unknown(("tier_code", "days"))
    body.raise_if_errors()
    assert tier_code is not None and days is not None
    now = utcnow()
    with context.db().session() as session, session.begin():
        row_or_404(session, Farmer, farmer_id, NO_FARMER)
        tier = tier_by_code(session, tier_code)
        if tier is None or not tier.active or tier.code == TRIAL:
            raise ApiError(400, "Some fields of the request body are invalid.",
                           errors=[field_error("tier_code", "must be the code of an active paid tier")])
        lock_farmer(session, farmer_id)
        if queued_subscriptions(session, farmer_id):
            raise ApiError(409, "The farmer already has a subscription queued; grant again after it starts.")
        sub = add_subscription(session, farmer_id, tier.id, timedelta(days=days), now)
        status = SubscriptionStatus(sub.status)
        result = _subscription_json(sub, tier)
        audit("subscription.grant", "subscription", sub.id,
              {"farmer_id": farmer_id, "tier_code": tier.code, "days": days, "status": status.value},
              session=session)
    return jsonify(result), 201


SCHEMAS: dict[str, Any] = {
    "Subscription": {
        "type": "object",
        "required": ["id", "tier_code", "status", "starts_at", "ends_at"],
        "properties": {"id": {"type": "integer"}, "tier_code": {"type": "string"}, "tier_name": {"type": "string"},
                       "status": {"enum": [s.value for s in SubscriptionStatus]},
                       "starts_at": {"type": "string", "format": "date-time"},
                       "ends_at": {"type": "string", "format": "date-time"}, "sponsor_id": NULLABLE_INT,
                       "code_id": NULLABLE_INT, "created_at": TIMESTAMP},
    },
    "FarmerSubscription": {
        "type": "object",
        "required": ["farmer_id", "current", "queued", "quota"],
        "properties": {
            "farmer_id": {"type": "integer"},
            "current": {"oneOf": [ref("Subscription"), {"type": "null"}]},
            "queued": {"type": "array", "items": ref("Subscription")},
            "quota": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {
                "daily_used": {"type": "integer"}, "daily_limit": {"type": "integer"},
                "monthly_used": {"type": "integer"}, "monthly_limit": {"type": "integer"},
                "remaining_today": {"type": "integer"}, "day_resets_at": {"type": "string", "format": "date-time"},
                "month_resets_at": {"type": "string", "format": "date-time"}, "sponsor_name": NULLABLE_STR}}]},
        },
    },
    "LedgerEntry": {
        "type": "object",
        "required": ["id", "subscription_id", "kind", "created_at"],
        "properties": {"id": {"type": "integer"}, "farmer_id": {"type": "integer"},
                       "subscription_id": {"type": "integer"}, "analysis_id": NULLABLE_INT,
                       "kind": {"enum": ["charge", "refund"]}, "day_key": {"type": "string"},
                       "month_key": {"type": "string"}, "refund_of": NULLABLE_INT, "created_at": TIMESTAMP},
    },
    "LedgerPage": page_of("LedgerEntry"),
    "SubscriptionGrant": {
        "type": "object", "required": ["tier_code", "days"], "additionalProperties": False,
        "examples": [{"tier_code": "M", "days": 30}],
        "properties": {"tier_code": {"type": "string", "minLength": 1, "maxLength": 10,
                                     "description": "An active paid tier."},
                       "days": {"type": "integer", "minimum": 1, "maximum": MAX_GRANT_DAYS}},
    },
}

_FARMER = path_param("farmer_id", ROW_ID, 1)
_NO_FARMER = problem_response(NO_FARMER)

PATHS: dict[str, Any] = {
    "/api/v1/farmers/{farmer_id}/subscription": {"get": {
        "operationId": "farmerSubscription", "tags": ["support"],
        "summary": "A farmer's current and queued subscriptions and quota (roles: support, admin). Audited.",
        "parameters": [_FARMER],
        "responses": {"200": json_response("The subscriptions.", ref("FarmerSubscription")), **AUTHED_ERRORS,
                      "404": _NO_FARMER},
    }},
    "/api/v1/farmers/{farmer_id}/ledger": {"get": {
        "operationId": "farmerLedger", "tags": ["support"],
        "summary": "A farmer's usage ledger, newest first (roles: support, admin). Audited.",
        "parameters": [_FARMER, *PAGE_PARAMS],
        "responses": {"200": json_response("A page of ledger rows.", ref("LedgerPage")), **AUTHED_ERRORS,
                      "404": _NO_FARMER},
    }},
    "/api/v1/farmers/{farmer_id}/subscriptions": {"post": {
        "operationId": "grantSubscription", "tags": ["admin"],
        "summary": "Grant a tier for some days: active now, or queued behind an active paid one (role: admin). "
                   "Audited.",
        "parameters": [_FARMER],
        "requestBody": json_body("SubscriptionGrant"),
        "responses": {"201": json_response("The new subscription.", ref("Subscription")), **AUTHED_ERRORS,
                      **BODY_ERRORS, "404": _NO_FARMER,
                      "409": problem_response("The farmer already has a queued subscription.")},
    }},
}
declare(PATHS, SCHEMAS)
