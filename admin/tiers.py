"""`/tiers`: the subscription tiers, their limits, prices and whether new purchases may use them (admin only).

A change is audited with the values before and after.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from flask import Response, jsonify, request
from sqlalchemy import select

from admin import bp
from admin.auth import require_roles
from admin.errors import ApiError, field_error
from admin.openapi import (
    AUTHED_ERRORS,
    BODY_ERRORS,
    PAGE_PARAMS,
    declare,
    json_body,
    json_response,
    page_of,
    path_param,
    problem_response,
    ref,
)
from admin.pagination import QueryArgs, page_args, paginate
from admin.validation import Body
from models import Tier
from services import context
from services.audit import audit
from services.tiers import (
    DAILY_OVER_MONTHLY,
    MAX_LIMIT,
    MAX_PRICE,
    PRICE_PATTERN,
    change_tier,
    parse_price,
    tier_values,
)

_TIER_CODE = re.compile(r"[A-Za-z0-9_]{1,10}")
FIELDS = ("daily_limit", "monthly_limit", "price_try", "active")


@bp.get("/tiers")
@require_roles("admin")
def list_tiers() -> Response:
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    args.raise_if_errors()
    with context.db().reader() as session:
        return jsonify(paginate(session, select(Tier).order_by(Tier.id), page, per_page, tier_values))


def _body_price(body: Body, name: str) -> Decimal | None:
    if name not in body.data:
        return None
    value = body.data[name]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        body.errors.append(field_error(name, "must be a number such as 99.99"))
        return None
    price = parse_price(value)
    if price is None:
        body.errors.append(field_error(name, f"must be a number from 0 to {MAX_PRICE} with at most 2 decimals"))
    return price


def _changes(body: Body) -> dict[str, Any]:
    """The fields of the body to change, field errors in `body.errors`."""
    body.refuse_unknown(FIELDS, "is not a field of a tier")
    changes: dict[str, Any] = {}
    for name in ("daily_limit", "monthly_limit"):
        if name in body.data:  # present, a null is refused
            value = body.integer(name, 0, MAX_LIMIT, required=True)
            if value is not None:
                changes[name] = value
    price = _body_price(body, "price_try")
    if price is not None:
        changes["price_try"] = price
    if "active" in body.data:
        if isinstance(body.data["active"], bool):
            changes["active"] = body.data["active"]
        else:
            body.errors.append(field_error("active", "must be true or false"))
    if not body.data:
        body.errors.append(field_error("body", "give at least one of daily_limit, monthly_limit, price_try, active"))
    return changes


@bp.patch("/tiers/<code>")
@require_roles("admin")
def update_tier(code: str) -> Response:
    """Change a tier's limits, price or whether new purchases may use it."""
    body = Body.load()
    changes = _changes(body)
    body.raise_if_errors()
    if not _TIER_CODE.fullmatch(code):
        raise ApiError(404, "No tier with this code.")
    with context.db().session() as session, session.begin():
        try:
            changed = change_tier(session, code, changes)
        except ValueError as exc:
            raise ApiError(400, "Some fields of the request body are invalid.",
                           errors=[field_error("daily_limit", DAILY_OVER_MONTHLY)]) from exc
        if changed is None:
            raise ApiError(404, "No tier with this code.")
        before, after = changed
        audit("tier.update", "tier", after["code"],
              {"before": {k: before[k] for k in changes}, "after": {k: after[k] for k in changes}}, session=session)
    return jsonify(after)


SCHEMAS: dict[str, Any] = {
    "Tier": {
        "type": "object",
        "required": ["code", "name", "daily_limit", "monthly_limit", "price_try", "active"],
        "properties": {"id": {"type": "integer"}, "code": {"type": "string"}, "name": {"type": "string"},
                       "daily_limit": {"type": "integer"}, "monthly_limit": {"type": "integer"},
                       "price_try": {"type": "string", "description": "Decimal, e.g. \"99.99\""},
                       "default_days": {"type": "integer"}, "active": {"type": "boolean"}},
    },
    "TierPage": page_of("Tier"),
    "TierUpdate": {
        "type": "object", "minProperties": 1, "additionalProperties": False,
        "properties": {"daily_limit": {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
                       "monthly_limit": {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
                       "price_try": {"type": ["number", "string"], "minimum": 0, "maximum": 99999999.99,
                                     "pattern": PRICE_PATTERN,
                                     "description": "0 to 99999999.99, at most 2 decimals, e.g. 99.99 or \"99.99\""},
                       "active": {"type": "boolean"}},
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/tiers": {"get": {
        "operationId": "listTiers", "tags": ["admin"], "summary": "Every tier (role: admin).",
        "parameters": [*PAGE_PARAMS],
        "responses": {"200": json_response("A page of tiers.", ref("TierPage")), **AUTHED_ERRORS},
    }},
    "/api/v1/tiers/{code}": {"patch": {
        "operationId": "updateTier", "tags": ["admin"],
        "summary": "Change a tier's limits, price or active flag (role: admin). Audited.",
        "parameters": [path_param("code", {"type": "string", "maxLength": 10}, "M")],
        "requestBody": json_body("TierUpdate"),
        "responses": {"200": json_response("The tier.", ref("Tier")), **AUTHED_ERRORS, **BODY_ERRORS,
                      "404": problem_response("No tier with this code.")},
    }},
}
declare(PATHS, SCHEMAS)
