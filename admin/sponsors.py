"""Sponsors, their purchases, codes, statistics and sponsored analyses.

Roles: sponsor CRUD is admin only, and so is recording a purchase (purchases are money: a sponsor
user files a purchase request instead, `admin.purchase_requests`). Everything else under
`/sponsors/<id>/...` is for admins and for a sponsor user of that very sponsor; a sponsor user asking
about another sponsor gets 404 (never 403, which would confirm the id exists). What a sponsor sees of
an analysis is `admin.visibility`'s tier table applied to the tier of the code that paid for that
analysis; admins see what the sponsor sees (their unfiltered view is the support analyses endpoint).
Totals and statistics count everything the sponsor's own purchases paid for.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Response, current_app, g, jsonify, request
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from admin import bp
from admin.audit import audit
from admin.auth import require_roles
from admin.errors import ApiError, field_error
from admin.openapi import _AUTHED_ERRORS, _PAGE_PARAMS, _json, _problem, _query, _ref
from admin.pagination import QueryArgs, page_args, paginate
from admin.validation import MAX_ROW_ID, Body
from admin.visibility import (
    ANALYSIS_TIERS,
    COLUMNS,
    TIER_ORDER,
    analysis_view,
    paying_tier,
    paying_tiers,
    sees_analyses,
)
from bot.codes import normalize_code
from models import Analysis, AnalysisStatus, CodeStatus, Farmer, Sponsor, SponsorCode, SponsorPurchase, Tier, utcnow
from services import context
from services.sponsor_stats import invalidate_stats, stats_key
from services.sponsorship import MAX_QUANTITY, create_purchase, create_sponsor, revoke_code

log = logging.getLogger(__name__)

STATS_TTL_SECONDS = 60
STATS_DAYS = 30
MAX_DAYS = 3650
CODE_STATUSES = tuple(s.value for s in CodeStatus)
TOTALS_ONLY = ("This analysis was not paid for by one of your M, L or XL codes, so you see it only in the totals; "
               "see the statistics.")
ADMINS_RECORD_PURCHASES = ("Purchases are money: only an admin records one, after payment. A sponsor user files a "
                           "purchase request instead: POST /api/v1/sponsors/{sponsor_id}/purchase-requests.")
MAX_ID = MAX_ROW_ID  # larger path ids match nothing (and must not reach the database)


# --- helpers --------------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def sponsor_json(s: Sponsor) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "logo_url": s.logo_url, "contact_email": s.contact_email,
            "contact_phone": s.contact_phone, "created_at": _iso(s.created_at)}


def effective_status(status: str, expires_at: datetime, now: datetime) -> str:
    """An unused code past its validity counts as expired (the database marks it lazily)."""
    if status == CodeStatus.UNUSED.value and expires_at <= now:
        return CodeStatus.EXPIRED.value
    return status


def _status_filter(status: str, now: datetime) -> Any:
    if status == CodeStatus.UNUSED.value:
        return and_(SponsorCode.status == status, SponsorCode.expires_at > now)
    if status == CodeStatus.EXPIRED.value:
        return or_(SponsorCode.status == status,
                   and_(SponsorCode.status == CodeStatus.UNUSED.value, SponsorCode.expires_at <= now))
    return SponsorCode.status == status


def own_sponsor(session: Session, sponsor_id: int) -> Sponsor:
    """The sponsor, if the signed-in user may see it: admins any, a sponsor user only its own; else 404."""
    user = g.staff_user
    sponsor = session.get(Sponsor, sponsor_id) if sponsor_id <= MAX_ID else None
    if sponsor is None or (user.role != "admin" and user.sponsor_id != sponsor_id):
        raise ApiError(404, "No sponsor with this id.")
    return sponsor


def _admin_sponsor(session: Session, sponsor_id: int) -> Sponsor:
    sponsor = session.get(Sponsor, sponsor_id) if sponsor_id <= MAX_ID else None
    if sponsor is None:
        raise ApiError(404, "No sponsor with this id.")
    return sponsor


def purchased_tiers(session: Session, sponsor_id: int) -> list[str]:
    """The tiers the sponsor has bought, S..XL: commercial facts, never what it may see of an analysis."""
    bought = set(session.scalars(select(Tier.code).join(SponsorPurchase, SponsorPurchase.tier_id == Tier.id)
                                 .where(SponsorPurchase.sponsor_id == sponsor_id)))
    return [t for t in TIER_ORDER if t in bought]


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
        if email is not None and ("@" not in email or any(c.isspace() for c in email)):
            body.errors.append(field_error("contact_email", "must be an email address"))
        fields["contact_email"] = email
    present, phone = _optional_text(body, "contact_phone", 20)
    if present:
        if phone is not None and not all(c.isdigit() or c in "+ ()-" for c in phone):
            body.errors.append(field_error("contact_phone", "must be a phone number such as +902121234567"))
        fields["contact_phone"] = phone
    unknown = set(body.data) - {"name", "logo_url", "contact_email", "contact_phone"}
    for name in sorted(unknown):
        body.errors.append(field_error(name, "is not a known field"))
    body.raise_if_errors()
    return fields


def _int_field(body: Body, name: str, minimum: int, maximum: int, default: int | None = None) -> int | None:
    value = body.data.get(name)
    if value is None:
        if default is None:
            body.errors.append(field_error(name, "is required"))
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        body.errors.append(field_error(name, "must be an integer"))
        return None
    if not minimum <= value <= maximum:
        body.errors.append(field_error(name, f"must be {minimum}..{maximum}"))
        return None
    return value


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
    if not isinstance(tier, str) or tier.strip().upper() not in TIER_ORDER:
        body.errors.append(field_error("tier", "must be one of: " + ", ".join(TIER_ORDER)))
        tier = None
    quantity = _int_field(body, "quantity", 1, MAX_QUANTITY)
    valid_days = _int_field(body, "code_valid_days", 1, MAX_DAYS, default=90)
    days = _int_field(body, "subscription_days", 1, MAX_DAYS, default=30)
    if tier is None or quantity is None or valid_days is None or days is None:
        return None
    return PurchaseTerms(tier.strip().upper(), quantity, valid_days, days)


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
        stmt = stmt.where(Sponsor.name.icontains(q, autoescape=True))
    with context.db().reader() as session:
        result = paginate(session, stmt.order_by(Sponsor.id), page, per_page, sponsor_json)
    return jsonify(result)


@bp.get("/sponsors/<int:sponsor_id>")
@require_roles("admin")
def get_sponsor(sponsor_id: int) -> Response:
    with context.db().reader() as session:
        sponsor = _admin_sponsor(session, sponsor_id)
        result = sponsor_json(sponsor)
        result["tiers"] = purchased_tiers(session, sponsor_id)
    return jsonify(result)


@bp.patch("/sponsors/<int:sponsor_id>")
@require_roles("admin")
def update_sponsor(sponsor_id: int) -> Response:
    fields = _sponsor_fields(Body.load(), creating=False)
    with context.db().session() as session, session.begin():
        sponsor = _admin_sponsor(session, sponsor_id)
        for name, value in fields.items():
            setattr(sponsor, name, value)
        audit("sponsor.update", "sponsor", sponsor_id, {"fields": sorted(fields)}, session=session)
        session.flush()
        result = sponsor_json(sponsor)
    return jsonify(result)


# --- purchases (admin) and codes (admin, or the sponsor itself) ----------------------------------------


@bp.post("/sponsors/<int:sponsor_id>/purchases")
@require_roles("admin", refusal=ADMINS_RECORD_PURCHASES)
def create_purchase_view(sponsor_id: int) -> tuple[Response, int]:
    body = Body.load()
    terms = purchase_terms(body)
    with context.db().reader() as session:
        _admin_sponsor(session, sponsor_id)
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
        result = {"id": purchase.id, "sponsor_id": sponsor_id, **asdict(terms), "created_at": _iso(now),
                  "expires_at": _iso(now + timedelta(days=terms.code_valid_days)), "codes": sorted(codes)}
    invalidate_stats(context.redis(), sponsor_id)
    return jsonify(result), 201


def _code_rows(session: Session, sponsor_id: int) -> Any:
    return (select(SponsorCode.code, SponsorCode.status, SponsorCode.expires_at, SponsorCode.redeemed_at,
                   SponsorCode.revoked_at, SponsorCode.created_at, SponsorCode.purchase_id, Tier.code.label("tier"))
            .join(Tier, Tier.id == SponsorCode.tier_id).where(SponsorCode.sponsor_id == sponsor_id))


def _code_json(row: Any, now: datetime) -> dict[str, Any]:
    return {"code": row.code, "tier": row.tier, "status": effective_status(row.status, row.expires_at, now),
            "purchase_id": row.purchase_id, "expires_at": _iso(row.expires_at), "redeemed_at": _iso(row.redeemed_at),
            "revoked_at": _iso(row.revoked_at), "created_at": _iso(row.created_at)}


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
            stmt = stmt.where(_status_filter(status, now))
        stmt = stmt.order_by(SponsorCode.id)
        total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
        rows = session.execute(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    return jsonify({"items": [_code_json(r, now) for r in rows], "page": page, "per_page": per_page, "total": total})


@bp.get("/sponsors/<int:sponsor_id>/codes.csv")
@require_roles("admin", "sponsor")
def export_codes(sponsor_id: int) -> Response:
    """Every code of the sponsor, for distribution: code, tier, status, expires_at, redeemed_at (no farmer)."""
    now = utcnow()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["code", "tier", "status", "expires_at", "redeemed_at"])
    with context.db().reader() as session:
        own_sponsor(session, sponsor_id)
        rows = session.execute(_code_rows(session, sponsor_id).order_by(SponsorCode.id)).all()
    for r in rows:
        writer.writerow([r.code, r.tier, effective_status(r.status, r.expires_at, now), _iso(r.expires_at),
                         _iso(r.redeemed_at) or ""])
    audit("sponsor.codes.export", "sponsor", sponsor_id, {"codes": len(rows)})
    response = Response(out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="sponsor-{sponsor_id}-codes.csv"'
    return response


@bp.post("/sponsors/<int:sponsor_id>/codes/<code>/revoke")
@require_roles("admin", "sponsor")
def revoke_code_view(sponsor_id: int, code: str) -> Response:
    now = utcnow()
    normalized = normalize_code(code)
    with context.db().session() as session, session.begin():
        own_sponsor(session, sponsor_id)
        row = None
        if normalized is not None:
            row = session.execute(select(SponsorCode.id, SponsorCode.status, SponsorCode.expires_at)
                                  .where(SponsorCode.code == normalized, SponsorCode.sponsor_id == sponsor_id)).first()
        if row is None:
            raise ApiError(404, "This sponsor has no such code.")
        current = effective_status(row.status, row.expires_at, now)
        if current != CodeStatus.UNUSED.value or not revoke_code(session, normalized or "", now):
            raise ApiError(409, f"Only an unused code can be revoked; this one is {current}.")
        audit("sponsor.code.revoke", "sponsor_code", row.id, {"sponsor_id": sponsor_id, "code": normalized},
              session=session)
    invalidate_stats(context.redis(), sponsor_id)
    return jsonify({"code": normalized, "status": CodeStatus.REVOKED.value, "revoked_at": _iso(now)})


# --- statistics -------------------------------------------------------------------------------------


def compute_statistics(session: Session, sponsor_id: int, now: datetime) -> dict[str, Any]:
    """Totals every tier may see (S included): codes by effective status, analyses per day over the last
    30 days (UTC dates), crops and the health-score distribution of the sponsored analyses."""
    counts = Counter({s: 0 for s in CODE_STATUSES})
    rows = session.execute(  # the codes of one purchase share their expiry: few groups
        select(SponsorCode.status, SponsorCode.expires_at, func.count())
        .where(SponsorCode.sponsor_id == sponsor_id).group_by(SponsorCode.status, SponsorCode.expires_at)
    ).all()
    for status, expires_at, n in rows:
        counts[effective_status(status, expires_at, now)] += n
    start = (now - timedelta(days=STATS_DAYS - 1)).date()
    per_day = {(start + timedelta(days=i)).isoformat(): 0 for i in range(STATS_DAYS)}
    since = datetime.combine(start, datetime.min.time(), tzinfo=now.tzinfo)
    for created in session.scalars(select(Analysis.created_at).where(Analysis.sponsor_id == sponsor_id,
                                                                       Analysis.created_at >= since)):
        day = created.date().isoformat()
        if day in per_day:
            per_day[day] += 1
    crops = session.execute(
        select(Analysis.crop, func.count()).where(Analysis.sponsor_id == sponsor_id, Analysis.crop.is_not(None))
        .group_by(Analysis.crop).order_by(func.count().desc(), Analysis.crop)
    ).all()
    health = {str(i): 0 for i in range(1, 11)}
    for score, n in session.execute(
        select(Analysis.health_score, func.count()).where(Analysis.sponsor_id == sponsor_id,
                                                          Analysis.health_score.between(1, 10))
        .group_by(Analysis.health_score)
    ):
        health[str(score)] += n
    total_analyses = session.scalar(select(func.count()).select_from(Analysis)
                                    .where(Analysis.sponsor_id == sponsor_id)) or 0
    return {
        "sponsor_id": sponsor_id,
        "tiers": purchased_tiers(session, sponsor_id),
        "codes": {"bought": sum(counts.values()), **{s: counts[s] for s in CODE_STATUSES}},
        "analyses": {"total": total_analyses,
                     "per_day": [{"date": d, "count": n} for d, n in per_day.items()],
                     "crops": [{"crop": c, "count": n} for c, n in crops],
                     "health_scores": health},
        "generated_at": now.isoformat(),
    }


@bp.get("/sponsors/<int:sponsor_id>/statistics")
@require_roles("admin", "sponsor")
def statistics(sponsor_id: int) -> Response:
    redis: Redis = current_app.extensions["redis"]
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


# --- sponsored analyses (tier-filtered) -----------------------------------------------------------------


def _sponsored(sponsor_id: int) -> Any:
    return select(Analysis).where(Analysis.sponsor_id == sponsor_id,
                                  Analysis.status == AnalysisStatus.COMPLETED.value)


def sponsored_analysis(session: Session, sponsor_id: int, analysis_id: int) -> tuple[Analysis, str]:
    """One completed analysis the sponsor paid for, and the tier of the code that paid for it: 404 for
    any other analysis (or an id beyond the columns), 403 when that tier shows totals only."""
    row = None
    if analysis_id <= MAX_ID:
        row = session.execute(_sponsored(sponsor_id).add_columns(paying_tier())
                              .where(Analysis.id == analysis_id)).first()
    if row is None:
        raise ApiError(404, "This sponsor has no such analysis.")
    analysis, tier = row
    if not sees_analyses(tier):
        raise ApiError(403, TOTALS_ONLY)
    return analysis, tier


@bp.get("/sponsors/<int:sponsor_id>/analyses")
@require_roles("admin", "sponsor")
def list_analyses(sponsor_id: int) -> Response:
    """The analyses paid for by the sponsor's M, L and XL codes, each as its own code's tier may see it."""
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    crop = args.text("crop")
    since = args.datetime("since")
    until = args.datetime("until")
    if since is not None and until is not None and since >= until:
        args.add_error("until", "must be later than since")
    with context.db().reader() as session:
        own_sponsor(session, sponsor_id)
        args.raise_if_errors()
        stmt = _sponsored(sponsor_id).where(paying_tier().in_(ANALYSIS_TIERS))
        if crop is not None:
            stmt = stmt.where(Analysis.crop.icontains(crop, autoescape=True))
        if since is not None:
            stmt = stmt.where(Analysis.created_at >= since)
        if until is not None:
            stmt = stmt.where(Analysis.created_at < until)
        stmt = stmt.order_by(Analysis.created_at.desc(), Analysis.id.desc())
        farmers: dict[int, Farmer] = {}
        tiers: dict[int, str | None] = {}

        def load_page(rows: Sequence[Analysis]) -> None:  # two queries per page, not two per row
            ids = {a.farmer_id for a in rows}
            farmers.update((f.id, f) for f in session.scalars(select(Farmer).where(Farmer.id.in_(ids))))
            tiers.update(paying_tiers(session, [a.id for a in rows]))

        result = paginate(session, stmt, page, per_page,
                          lambda a: analysis_view(a, farmers.get(a.farmer_id), tiers.get(a.id)) or {}, load_page)
    audit("sponsor.analyses.read", "sponsor", sponsor_id,
          {"page": page, "total": result["total"], "ids": [i["id"] for i in result["items"]],
           "tiers": [i["tier"] for i in result["items"]]})
    return jsonify(result)


@bp.get("/sponsors/<int:sponsor_id>/analyses/<int:analysis_id>")
@require_roles("admin", "sponsor")
def get_analysis(sponsor_id: int, analysis_id: int) -> Response:
    with context.db().reader() as session:
        own_sponsor(session, sponsor_id)
        analysis, tier = sponsored_analysis(session, sponsor_id, analysis_id)
        view = analysis_view(analysis, session.get(Farmer, analysis.farmer_id), tier) or {}
    audit("sponsor.analysis.read", "analysis", analysis_id, {"sponsor_id": sponsor_id, "tier": tier})
    return jsonify(view)


# --- OpenAPI ----------------------------------------------------------------------------------------------

_SPONSOR_ID = {"name": "sponsor_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0},
               "example": 1}
_NOT_FOUND = _problem("No such sponsor (or another sponsor's: a sponsor user only sees its own).")
_NULLABLE_STR = {"type": ["string", "null"]}
_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
_LOGO_URL = {**_NULLABLE_STR, "maxLength": 500, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
             "description": "An http(s) URL; null or \"\" clears it."}


def _page_of(item: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items", "page", "per_page", "total"],
            "properties": {"items": {"type": "array", "items": _ref(item)}, "page": {"type": "integer", "minimum": 1},
                           "per_page": {"type": "integer", "minimum": 1, "maximum": 100},
                           "total": {"type": "integer", "minimum": 0}}}


def _op(op_id: str, summary: str, responses: dict[str, Any], *, params: list[dict[str, Any]] | None = None,
        body: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": ["sponsors"],
                          "parameters": params or [], "responses": {**_AUTHED_ERRORS, **responses}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return op


_ANALYSIS_PROPS: dict[str, Any] = {
    "id": {"type": "integer"},
    "tier": {"enum": list(ANALYSIS_TIERS), "description": "The tier of the code that paid for this analysis: "
             "it decides what is shown, not the sponsor's highest purchase."},
    "date": _TIMESTAMP, "crop": _NULLABLE_STR, "province": _NULLABLE_STR,
    "health_score": {"type": ["integer", "null"]}, "main_concern": _NULLABLE_STR,
    "diseases": {"type": "array"}, "pests": {"type": "array"},
    "farmer_name": _NULLABLE_STR, "farmer_phone_masked": {**_NULLABLE_STR, "description": "e.g. +90 532 *** ** 67"},
    "recommendations": {"type": ["object", "array", "null"]}, "can_message": {"type": "boolean"},
    "farmer_phone": _NULLABLE_STR, "report": {"type": ["object", "null"]},
}
assert set(_ANALYSIS_PROPS) == set(COLUMNS["XL"])

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Sponsor": {"type": "object", "required": ["id", "name", "created_at"],
                "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "logo_url": _NULLABLE_STR,
                               "contact_email": _NULLABLE_STR, "contact_phone": _NULLABLE_STR,
                               "created_at": {"type": "string", "format": "date-time"},
                               "tiers": {"type": "array", "items": {"enum": list(TIER_ORDER)},
                                         "description": "The tiers the sponsor has bought (commercial; what it "
                                                        "sees of an analysis follows that analysis' code)."}}},
    "SponsorPage": _page_of("Sponsor"),
    "SponsorCreate": {"type": "object", "required": ["name"], "additionalProperties": False,
                      "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200},
                                     "logo_url": _LOGO_URL,
                                     "contact_email": {**_NULLABLE_STR, "maxLength": 254},
                                     "contact_phone": {**_NULLABLE_STR, "maxLength": 20}}},
    "SponsorUpdate": {"type": "object", "additionalProperties": False,
                      "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200},
                                     "logo_url": _LOGO_URL,
                                     "contact_email": {**_NULLABLE_STR, "maxLength": 254},
                                     "contact_phone": {**_NULLABLE_STR, "maxLength": 20}}},
    "PurchaseTerms": {"type": "object", "required": ["tier", "quantity"],
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
                                   "purchase_id": {"type": "integer"}, "expires_at": _TIMESTAMP,
                                   "redeemed_at": _TIMESTAMP, "revoked_at": _TIMESTAMP, "created_at": _TIMESTAMP}},
    "SponsorCodePage": _page_of("SponsorCode"),
    "SponsorStatistics": {
        "type": "object", "required": ["sponsor_id", "codes", "analyses"],
        "properties": {
            "sponsor_id": {"type": "integer"}, "tiers": {"type": "array", "items": {"enum": list(TIER_ORDER)}},
            "codes": {"type": "object", "properties": {k: {"type": "integer"} for k in ("bought", *CODE_STATUSES)}},
            "analyses": {"type": "object", "properties": {
                "total": {"type": "integer"},
                "per_day": {"type": "array", "items": {"type": "object", "properties": {
                    "date": {"type": "string", "format": "date"}, "count": {"type": "integer"}}}},
                "crops": {"type": "array", "items": {"type": "object", "properties": {
                    "crop": {"type": "string"}, "count": {"type": "integer"}}}},
                "health_scores": {"type": "object", "description": "Score 1..10 -> number of analyses.",
                                  "additionalProperties": {"type": "integer"}}}},
            "generated_at": {"type": "string", "format": "date-time"}}},
    "SponsoredAnalysis": {
        "type": "object", "required": list(COLUMNS["M"]), "properties": _ANALYSIS_PROPS,
        "description": "What the tier of the code that paid for this analysis shows. "
                       "M: id, tier, date, crop, province, health_score, main_concern, diseases, pests. "
                       "L adds farmer_name, farmer_phone_masked, recommendations, can_message. "
                       "XL adds farmer_phone and report (the whole raw result)."},
    "SponsoredAnalysisPage": _page_of("SponsoredAnalysis"),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/sponsors": {
        "post": _op("createSponsor", "Create a sponsor (admin). Audited.",
                    {"201": _json("Created.", _ref("Sponsor"))}, body="SponsorCreate"),
        "get": _op("listSponsors", "List sponsors (admin).", {"200": _json("A page of sponsors.", _ref("SponsorPage"))},
                   params=[*_PAGE_PARAMS, _query("q", {"type": "string", "maxLength": 200},
                                                 "Name contains (case-insensitive, literal).")]),
    },
    "/api/v1/sponsors/{sponsor_id}": {
        "get": _op("getSponsor", "A sponsor and the tiers it has bought (admin).",
                   {"200": _json("The sponsor.", _ref("Sponsor")), "404": _NOT_FOUND}, params=[_SPONSOR_ID]),
        "patch": _op("updateSponsor", "Change a sponsor's name or contact (admin). Audited.",
                     {"200": _json("The updated sponsor.", _ref("Sponsor")), "404": _NOT_FOUND},
                     params=[_SPONSOR_ID], body="SponsorUpdate"),
    },
    "/api/v1/sponsors/{sponsor_id}/purchases": {
        "post": _op("createPurchase", "Record a purchase after payment (admin only: a sponsor user files a "
                    "purchase request instead) and create its codes with one bulk insert. Audited.",
                    {"201": _json("The purchase and its codes.", _ref("Purchase")),
                     "403": _problem("Not an admin (a sponsor user is told to file a purchase request)."),
                     "404": _problem("No such sponsor.")},
                    params=[_SPONSOR_ID], body="PurchaseTerms"),
    },
    "/api/v1/sponsors/{sponsor_id}/codes": {
        "get": _op("listSponsorCodes", "The sponsor's codes by status (admin, or the sponsor itself). "
                   "An unused code past its validity is listed as expired.",
                   {"200": _json("A page of codes.", _ref("SponsorCodePage")), "404": _NOT_FOUND},
                   params=[_SPONSOR_ID, *_PAGE_PARAMS,
                           _query("status", {"enum": list(CODE_STATUSES)}, "Only codes in this status.")]),
    },
    "/api/v1/sponsors/{sponsor_id}/codes.csv": {
        "get": _op("exportSponsorCodes", "Every code as CSV: code, tier, status, expires_at, redeemed_at. Audited.",
                   {"200": {"description": "CSV with a header row.",
                            "content": {"text/csv": {"schema": {"type": "string"}}}}, "404": _NOT_FOUND},
                   params=[_SPONSOR_ID]),
    },
    "/api/v1/sponsors/{sponsor_id}/codes/{code}/revoke": {
        "post": _op("revokeSponsorCode", "Revoke an unused code (admin, or the sponsor itself). Audited.",
                    {"200": _json("Revoked.", {"type": "object", "properties": {
                        "code": {"type": "string"}, "status": {"const": "revoked"}, "revoked_at": _TIMESTAMP}}),
                     "404": _problem("No such sponsor or code."),
                     "409": _problem("The code is redeemed, expired or revoked already.")},
                    params=[_SPONSOR_ID, {"name": "code", "in": "path", "required": True,
                                          "schema": {"type": "string", "maxLength": 40},
                                          "example": "AGRI-7KQ3-M9XP"}]),
    },
    "/api/v1/sponsors/{sponsor_id}/statistics": {
        "get": _op("sponsorStatistics", "Totals every tier sees (cached 60 s).",
                   {"200": _json("Statistics.", _ref("SponsorStatistics")), "404": _NOT_FOUND}, params=[_SPONSOR_ID]),
    },
    "/api/v1/sponsors/{sponsor_id}/analyses": {
        "get": _op("listSponsoredAnalyses", "The analyses paid for by the sponsor's M, L and XL codes, each as "
                   "the tier of its own code may see it (those paid for by S codes count in the statistics only). "
                   "Audited.",
                   {"200": _json("A page of analyses.", _ref("SponsoredAnalysisPage")), "404": _NOT_FOUND},
                   params=[_SPONSOR_ID, *_PAGE_PARAMS,
                           _query("crop", {"type": "string", "maxLength": 200}, "Crop contains (literal)."),
                           _query("since", {"type": "string", "format": "date-time"}, "Created at or after."),
                           _query("until", {"type": "string", "format": "date-time"},
                                  "Created before; later than `since`.")]),
    },
    "/api/v1/sponsors/{sponsor_id}/analyses/{analysis_id}": {
        "get": _op("getSponsoredAnalysis", "One sponsored analysis as the tier of the code that paid for it may "
                   "see it. Audited.",
                   {"200": _json("The analysis.", _ref("SponsoredAnalysis")),
                    "403": _problem("The role may not use this endpoint, or an S code paid for this analysis "
                                    "(totals only)."),
                    "404": _problem("No such sponsor, or not this sponsor's analysis.")},
                   params=[_SPONSOR_ID, {"name": "analysis_id", "in": "path", "required": True,
                                         "schema": {"type": "integer", "minimum": 0}, "example": 1}]),
    },
}
