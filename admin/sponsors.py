"""Sponsors, their purchases, codes and statistics.

Roles: sponsor CRUD is admin only, and so is recording a purchase (purchases are money: a sponsor
user files a purchase request instead, `admin.purchase_requests`). Everything else under
`/sponsors/<id>/...` is for admins and for a sponsor user of that very sponsor; a sponsor user asking
about another sponsor gets 404 (never 403, which would confirm the id exists). What a sponsor sees of
an analysis is `services.visibility`'s tier table applied to the tier of the code that paid for that
analysis (`admin.sponsored_analyses`). Totals and statistics (`services.sponsor_stats`, cached here
for a minute) count everything the sponsor's own purchases paid for.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Response, g, jsonify, request
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from admin import bp
from admin.auth import require_roles
from admin.errors import ApiError, field_error
from admin.openapi import (
    NULLABLE_STR,
    PAGE_PARAMS,
    ROW_ID,
    TIMESTAMP,
    declare,
    json_response,
    operation,
    page_of,
    path_param,
    problem_response,
    query_param,
    ref,
)
from admin.pagination import QueryArgs, page_args, paginate
from admin.validation import Body, row_or_404
from models import CodeStatus, Sponsor, SponsorCode, Tier, utcnow
from services import context
from services.audit import audit
from services.contact_details import PHONE_EXAMPLE, is_email_address, is_phone_number
from services.folding import contains_folded
from services.json_input import iso
from services.sponsor_stats import compute_statistics, invalidate_stats, purchased_tiers, stats_key
from services.sponsorship import (
    CODE_STATUSES,
    MAX_QUANTITY,
    TIER_ORDER,
    create_purchase,
    create_sponsor,
    effective_status,
    export_codes_csv,
    has_effective_status,
    revoke_sponsor_code,
)
from services.visibility import may_see_sponsor

log = logging.getLogger(__name__)

STATS_TTL_SECONDS = 60
MAX_DAYS = 3650
NO_SPONSOR = "No sponsor with this id."
ADMINS_RECORD_PURCHASES = ("Purchases are money: only an admin records one, after payment. A sponsor user files a "
                           "purchase request instead: POST /api/v1/sponsors/{sponsor_id}/purchase-requests.")


# --- helpers --------------------------------------------------------------------------------------


def sponsor_json(s: Sponsor) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "logo_url": s.logo_url, "contact_email": s.contact_email,
            "contact_phone": s.contact_phone, "created_at": iso(s.created_at)}


def own_sponsor(session: Session, sponsor_id: int) -> Sponsor:
    """The sponsor, if the signed-in user may see it: admins any, a sponsor user only its own; else 404."""
    if not may_see_sponsor(g.staff_user, sponsor_id):
        raise ApiError(404, NO_SPONSOR)
    return row_or_404(session, Sponsor, sponsor_id, NO_SPONSOR)


def _optional_text(body: Body, name: str, max_length: int) -> tuple[bool, str | None]:
    """(present, value): an absent field is not present; null or "" clears it."""
    if name not in body.data:
        return False, None
    value = body.data[name]
    if value is None or (isinstance(value, str) and not value.strip()):
        return True, None
    if not isinstance(value, str):
        body.errors.append(field_error(name, "must be a string or null"))
        return True, None
    value = value.strip()
    if len(value) > max_length:
        body.errors.append(field_error(name, f"must be at most {max_length} characters"))
        return True, None
    return True, value


def _sponsor_fields(body: Body, *, creating: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if creating or "name" in body.data:
        name = body.string("name", max_length=200)
        if name is not None:
            fields["name"] = name.strip()
    present, logo = _optional_text(body, "logo_url", 500)
    if present:
        if logo is not None and not logo.lower().startswith(("https://", "http://")):
            body.errors.append(field_error("logo_url", "must be an http(s) URL"))
        fields["logo_url"] = logo
    present, email = _optional_text(body, "contact_email", 254)
    if present:
        if email is not None and not is_email_address(email):
            body.errors.append(field_error("contact_email", "must be an email address such as name@example.com"))
        fields["contact_email"] = email
    present, phone = _optional_text(body, "contact_phone", 20)
    if present:
        if phone is not None and not is_phone_number(phone):
            body.errors.append(field_error("contact_phone", f"must be a phone number such as {PHONE_EXAMPLE}"))
        fields["contact_phone"] = phone
    body.refuse_unknown(("name", "logo_url", "contact_email", "contact_phone"))
    body.raise_if_errors()
    return fields


@dataclass(frozen=True)
class PurchaseTerms:
    """What a purchase (or a purchase request) buys."""

    tier: str
    quantity: int
    code_valid_days: int
    subscription_days: int


def purchase_terms(body: Body) -> PurchaseTerms | None:
    """`tier`, `quantity` (1..10,000), `code_valid_days` (default 90) and `subscription_days` (default 30)
    from the body; None, with the field errors in `body.errors`, when one is wrong."""
    tier = body.data.get("tier")
    if tier not in TIER_ORDER:  # exactly as the schema's enum: "XL", not "xl" or " XL"
        body.errors.append(field_error("tier", "must be one of: " + ", ".join(TIER_ORDER)))
        tier = None
    quantity = body.integer("quantity", 1, MAX_QUANTITY, required=True)
    valid_days = body.integer("code_valid_days", 1, MAX_DAYS, default=90)
    days = body.integer("subscription_days", 1, MAX_DAYS, default=30)
    if tier is None or quantity is None or valid_days is None or days is None:
        return None
    return PurchaseTerms(tier, quantity, valid_days, days)


# --- sponsors (admin) -----------------------------------------------------------------------------


@bp.post("/sponsors")
@require_roles("admin")
def create_sponsor_view() -> tuple[Response, int]:
    fields = _sponsor_fields(Body.load(), creating=True)
    with context.db().session() as session, session.begin():
        sponsor = create_sponsor(session, fields.pop("name"), **fields)
        audit("sponsor.create", "sponsor", sponsor.id, {"name": sponsor.name}, session=session)
        result = sponsor_json(sponsor)
    return jsonify(result), 201


@bp.get("/sponsors")
@require_roles("admin")
def list_sponsors() -> Response:
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    q = args.text("q")
    args.raise_if_errors()
    stmt = select(Sponsor)
    if q is not None:
        stmt = stmt.where(contains_folded(Sponsor.name, q))
    with context.db().reader() as session:
        result = paginate(session, stmt.order_by(Sponsor.id), page, per_page, sponsor_json)
    return jsonify(result)


@bp.get("/sponsors/<int:sponsor_id>")
@require_roles("admin")
def get_sponsor(sponsor_id: int) -> Response:
    with context.db().reader() as session:
        sponsor = row_or_404(session, Sponsor, sponsor_id, NO_SPONSOR)
        result = sponsor_json(sponsor)
        result["tiers"] = purchased_tiers(session, sponsor_id)
    return jsonify(result)


@bp.patch("/sponsors/<int:sponsor_id>")
@require_roles("admin")
def update_sponsor(sponsor_id: int) -> Response:
    fields = _sponsor_fields(Body.load(), creating=False)
    with context.db().session() as session, session.begin():
        sponsor = row_or_404(session, Sponsor, sponsor_id, NO_SPONSOR)
        for name, value in fields.items():
            setattr(sponsor, name, value)
        audit("sponsor.update", "sponsor", sponsor_id, {"fields": sorted(fields)}, session=session)
        session.flush()
        result = sponsor_json(sponsor)
    return jsonify(result)


# --- purchases (admin) and codes (admin, or the sponsor itself) -----------------------------------


@bp.post("/sponsors/<int:sponsor_id>/purchases")
@require_roles("admin", refusal=ADMINS_RECORD_PURCHASES)
def create_purchase_view(sponsor_id: int) -> tuple[Response, int]:
    body = Body.load()
    terms = purchase_terms(body)
    body.refuse_unknown(("tier", "quantity", "code_valid_days", "subscription_days"))
    with context.db().reader() as session:
        row_or_404(session, Sponsor, sponsor_id, NO_SPONSOR)
    body.raise_if_errors()
    assert terms is not None
    now = utcnow()
    with context.db().session() as session, session.begin():
        try:
            purchase, codes = create_purchase(session, sponsor_id, terms.tier, terms.quantity, terms.code_valid_days,
                                              terms.subscription_days, now)
        except ValueError as exc:  # e.g. the tier was deactivated by an admin
            raise ApiError(400, str(exc), errors=[field_error("tier", str(exc))]) from exc
        audit("sponsor.purchase.create", "sponsor_purchase", purchase.id,
              {"sponsor_id": sponsor_id, **asdict(terms)}, session=session)
        result = {"id": purchase.id, "sponsor_id": sponsor_id, **asdict(terms), "created_at": iso(now),
                  "expires_at": iso(now + timedelta(days=terms.code_valid_days)), "codes": sorted(codes)}
    invalidate_stats(context.redis(), sponsor_id)
    return jsonify(result), 201


def _code_rows(session: Session, sponsor_id: int) -> Any:
    return (select(SponsorCode.code, SponsorCode.status, SponsorCode.expires_at, SponsorCode.redeemed_at,
                   SponsorCode.revoked_at, SponsorCode.created_at, SponsorCode.purchase_id, Tier.code.label("tier"))
            .join(Tier, Tier.id == SponsorCode.tier_id).where(SponsorCode.sponsor_id == sponsor_id))


def _code_json(row: Any, now: datetime) -> dict[str, Any]:
    return {"code": row.code, "tier": row.tier, "status": effective_status(row.status, row.expires_at, now),
            "purchase_id": row.purchase_id, "expires_at": iso(row.expires_at), "redeemed_at": iso(row.redeemed_at),
            "revoked_at": iso(row.revoked_at), "created_at": iso(row.created_at)}


@bp.get("/sponsors/<int:sponsor_id>/codes")
@require_roles("admin", "sponsor")
def list_codes(sponsor_id: int) -> Response:
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    status = args.choice("status", CODE_STATUSES)
    now = utcnow()
    with context.db().reader() as session:
        own_sponsor(session, sponsor_id)
        args.raise_if_errors()
        stmt = _code_rows(session, sponsor_id)
        if status is not None:
            stmt = stmt.where(has_effective_status(status, now))
        stmt = stmt.order_by(SponsorCode.id)
        total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
        rows = session.execute(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    return jsonify({"items": [_code_json(r, now) for r in rows], "page": page, "per_page": per_page, "total": total})


@bp.get("/sponsors/<int:sponsor_id>/codes.csv")
@require_roles("admin", "sponsor")
def export_codes(sponsor_id: int) -> Response:
    """Every code of the sponsor, for distribution: code, tier, status, expires_at, redeemed_at (no farmer)."""
    now = utcnow()
    with context.db().session() as session, session.begin():
        own_sponsor(session, sponsor_id)
        body = export_codes_csv(session, sponsor_id, now)
    response = Response(body, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="sponsor-{sponsor_id}-codes.csv"'
    return response


@bp.post("/sponsors/<int:sponsor_id>/codes/<code>/revoke")
@require_roles("admin", "sponsor")
def revoke_code_view(sponsor_id: int, code: str) -> Response:
    now = utcnow()
    with context.db().session() as session, session.begin():
        own_sponsor(session, sponsor_id)
        done = revoke_sponsor_code(session, sponsor_id, code, now)
        if done.code_id is None:
            raise ApiError(404, "This sponsor has no such code.")
        if not done.revoked:
            raise ApiError(409, f"Only an unused code can be revoked; this one is {done.status}.")
    invalidate_stats(context.redis(), sponsor_id)
    return jsonify({"code": done.code, "status": CodeStatus.REVOKED.value, "revoked_at": iso(now)})


# --- statistics -------------------------------------------------------------------------------------


@bp.get("/sponsors/<int:sponsor_id>/statistics")
@require_roles("admin", "sponsor")
def statistics(sponsor_id: int) -> Response:
    """The sponsor's statistics, cached for STATS_TTL_SECONDS (dropped sooner when they change)."""
    redis = context.redis()
    with context.db().reader() as session:
        own_sponsor(session, sponsor_id)
        try:
            cached = redis.get(stats_key(sponsor_id))
        except RedisError:
            cached = None
        if cached is not None:
            return jsonify(json.loads(cached))
        result = compute_statistics(session, sponsor_id, utcnow())
    try:
        redis.set(stats_key(sponsor_id), json.dumps(result), ex=STATS_TTL_SECONDS)
    except RedisError:
        log.warning("could not cache the statistics of sponsor %s", sponsor_id, exc_info=True)
    return jsonify(result)


# --- OpenAPI ----------------------------------------------------------------------------------------------

SPONSOR_ID = path_param("sponsor_id", ROW_ID, 1)
SPONSOR_NOT_FOUND = problem_response("No such sponsor (or another sponsor's: a sponsor user only sees its own).")
_LOGO_URL = {**NULLABLE_STR, "maxLength": 500, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
             "description": "An http(s) URL; null or \"\" clears it."}


def _op(op_id: str, summary: str, responses: dict[str, Any], *, params: list[dict[str, Any]] | None = None,
        body: str | None = None) -> dict[str, Any]:
    return operation(op_id, summary, "sponsors", responses, params=params, body=body)


_CONTACT_EMAIL = {**NULLABLE_STR, "format": "email", "maxLength": 254,
                  "description": "local@domain: an ASCII local part, a domain of two or more labels (IDNA allowed)."}
_CONTACT_PHONE = {**NULLABLE_STR, "maxLength": 20, "pattern": r"^[+(0-9][0-9 ()+-]*$",
                  "description": f"ASCII digits, e.g. {PHONE_EXAMPLE}, +90 (212) 123-45-67 or 0212 123 45 67: `+` "
                                 "(or 00) and a country code, or the trunk 0, then 7-15 digits."}

SCHEMAS: dict[str, Any] = {
    "Sponsor": {"type": "object", "required": ["id", "name", "created_at"],
                "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "logo_url": NULLABLE_STR,
                               "contact_email": NULLABLE_STR, "contact_phone": NULLABLE_STR,
                               "created_at": {"type": "string", "format": "date-time"},
                               "tiers": {"type": "array", "items": {"enum": list(TIER_ORDER)},
                                         "description": "The tiers the sponsor has bought (commercial; what it "
                                                        "sees of an analysis follows that analysis' code)."}}},
    "SponsorPage": page_of("Sponsor"),
    "SponsorCreate": {"type": "object", "required": ["name"], "additionalProperties": False,
                      "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200},
                                     "logo_url": _LOGO_URL,
                                     "contact_email": _CONTACT_EMAIL, "contact_phone": _CONTACT_PHONE}},
    "SponsorUpdate": {"type": "object", "additionalProperties": False,
                      "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200},
                                     "logo_url": _LOGO_URL,
                                     "contact_email": _CONTACT_EMAIL, "contact_phone": _CONTACT_PHONE}},
    "PurchaseTerms": {"type": "object", "required": ["tier", "quantity"], "additionalProperties": False,
                      "properties": {"tier": {"enum": list(TIER_ORDER)},
                                     "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY},
                                     "code_valid_days": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS,
                                                         "default": 90},
                                     "subscription_days": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS,
                                                           "default": 30}}},
    "Purchase": {"type": "object",
                 "required": ["id", "sponsor_id", "tier", "quantity", "code_valid_days", "subscription_days",
                              "created_at", "expires_at", "codes"],
                 "properties": {"id": {"type": "integer"}, "sponsor_id": {"type": "integer"},
                                "tier": {"enum": list(TIER_ORDER)}, "quantity": {"type": "integer"},
                                "code_valid_days": {"type": "integer"}, "subscription_days": {"type": "integer"},
                                "created_at": {"type": "string", "format": "date-time"},
                                "expires_at": {"type": "string", "format": "date-time"},
                                "codes": {"type": "array", "items": {"type": "string"}}}},
    "SponsorCode": {"type": "object", "required": ["code", "tier", "status", "expires_at"],
                    "properties": {"code": {"type": "string", "examples": ["AGRI-7KQ3-M9XP"]},
                                   "tier": {"type": "string"}, "status": {"enum": list(CODE_STATUSES)},
                                   "purchase_id": {"type": "integer"}, "expires_at": TIMESTAMP,
                                   "redeemed_at": TIMESTAMP, "revoked_at": TIMESTAMP, "created_at": TIMESTAMP}},
    "SponsorCodePage": page_of("SponsorCode"),
    "SponsorStatistics": {
        "type": "object", "required": ["sponsor_id", "codes", "analyses"],
        "properties": {
            "sponsor_id": {"type": "integer"}, "tiers": {"type": "array", "items": {"enum": list(TIER_ORDER)}},
            "codes": {"type": "object", "properties": {k: {"type": "integer"} for k in ("bought", *CODE_STATUSES)}},
            "analyses": {"type": "object", "properties": {
                "total": {"type": "integer", "description": "Completed analyses its codes paid for (as every "
                          "figure here: a failed analysis was refunded, one in progress may still be)."},
                "per_day": {"type": "array", "description": "The last 30 days, oldest first, each an Istanbul "
                            "calendar day (as the console's dashboard counts them).",
                            "items": {"type": "object", "properties": {
                    "date": {"type": "string", "format": "date"}, "count": {"type": "integer"}}}},
                "crops": {"type": "array", "items": {"type": "object", "properties": {
                    "crop": {"type": "string", "description": "As a sponsored analysis' `crop`: a known crop's "
                             "key (stable) or the farmer's own text."},
                    "count": {"type": "integer"}}}},
                "health_scores": {"type": "object", "description": "Score 1..10 -> number of analyses.",
                                  "additionalProperties": {"type": "integer"}}}},
            "generated_at": {"type": "string", "format": "date-time"}}},
}

PATHS: dict[str, Any] = {
    "/api/v1/sponsors": {
        "post": _op("createSponsor", "Create a sponsor (admin). Audited.",
                    {"201": json_response("Created.", ref("Sponsor"))}, body="SponsorCreate"),
        "get": _op("listSponsors", "List sponsors (admin).",
                   {"200": json_response("A page of sponsors.", ref("SponsorPage"))},
                   params=[*PAGE_PARAMS, query_param(
                       "q", {"type": "string", "maxLength": 200},
                       "Name contains (literal; case and Turkish letters folded: `TARIM` finds `Tarım`).")]),
    },
    "/api/v1/sponsors/{sponsor_id}": {
        "get": _op("getSponsor", "A sponsor and the tiers it has bought (admin).",
                   {"200": json_response("The sponsor.", ref("Sponsor")), "404": SPONSOR_NOT_FOUND},
                   params=[SPONSOR_ID]),
        "patch": _op("updateSponsor", "Change a sponsor's name or contact (admin). Audited.",
                     {"200": json_response("The updated sponsor.", ref("Sponsor")), "404": SPONSOR_NOT_FOUND},
                     params=[SPONSOR_ID], body="SponsorUpdate"),
    },
    "/api/v1/sponsors/{sponsor_id}/purchases": {
        "post": _op("createPurchase", "Record a purchase after payment (admin only: a sponsor user files a "
                    "purchase request instead) and create its codes with one bulk insert. Audited.",
                    {"201": json_response("The purchase and its codes.", ref("Purchase")),
                     "403": problem_response("Not an admin (a sponsor user is told to file a purchase request)."),
                     "404": problem_response("No such sponsor.")},
                    params=[SPONSOR_ID], body="PurchaseTerms"),
    },
    "/api/v1/sponsors/{sponsor_id}/codes": {
        "get": _op("listSponsorCodes", "The sponsor's codes by status (admin, or the sponsor itself). "
                   "An unused code past its validity is listed as expired.",
                   {"200": json_response("A page of codes.", ref("SponsorCodePage")), "404": SPONSOR_NOT_FOUND},
                   params=[SPONSOR_ID, *PAGE_PARAMS,
                           query_param("status", {"enum": list(CODE_STATUSES)}, "Only codes in this status.")]),
    },
    "/api/v1/sponsors/{sponsor_id}/codes.csv": {
        "get": _op("exportSponsorCodes", "Every code as CSV: code, tier, status, expires_at, redeemed_at. Audited.",
                   {"200": {"description": "CSV with a header row.",
                            "content": {"text/csv": {"schema": {"type": "string"}}}}, "404": SPONSOR_NOT_FOUND},
                   params=[SPONSOR_ID]),
    },
    "/api/v1/sponsors/{sponsor_id}/codes/{code}/revoke": {
        "post": _op("revokeSponsorCode", "Revoke an unused code (admin, or the sponsor itself). Audited.",
                    {"200": json_response("Revoked.", {"type": "object", "properties": {
                        "code": {"type": "string"}, "status": {"const": "revoked"}, "revoked_at": TIMESTAMP}}),
                     "404": problem_response("No such sponsor or code."),
                     "409": problem_response("The code is redeemed, expired or revoked already.")},
                    params=[SPONSOR_ID, path_param("code", {"type": "string", "maxLength": 40}, "AGRI-7KQ3-M9XP")]),
    },
    "/api/v1/sponsors/{sponsor_id}/statistics": {
        "get": _op("sponsorStatistics", "Totals every tier sees (cached 60 s).",
                   {"200": json_response("Statistics.", ref("SponsorStatistics")), "404": SPONSOR_NOT_FOUND},
                   params=[SPONSOR_ID]),
    },
}
declare(PATHS, SCHEMAS)
