"""Support and admin operations beyond the message log.

Support and admin: analyses (list and detail), RQ failed jobs (list and retry), a farmer's
subscription and usage ledger. Admin only: tiers, granting a subscription, staff users, the audit log.
View functions are prefixed `ops_` so their endpoint names never collide with other route modules.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Response, current_app, g, jsonify, request
from redis.exceptions import RedisError
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from admin import bp
from admin.audit import audit
from admin.auth import ROLES, create_staff_user, require_roles
from admin.errors import ApiError, field_error
from admin.openapi import _AUTHED_ERRORS, _PAGE_PARAMS, _json, _problem, _query, _ref
from admin.pagination import MAX_PER_PAGE, QueryArgs, page_args, paginate
from admin.validation import MAX_ROW_ID, Body
from models import (
    Analysis,
    AnalysisStatus,
    AuditLog,
    Farmer,
    StaffUser,
    Subscription,
    SubscriptionStatus,
    Tier,
    UsageLedger,
    utcnow,
)
from services import context
from services.masking import mask_phone
from services.queue import QUEUE_NAMES, get_queue
from services.quota import (
    TRIAL,
    add_subscription,
    current_subscription,
    lock_farmer,
    queued_subscriptions,
    quota_status,
    tier_by_code,
)

_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
_ANALYSIS_JOB = re.compile(r"analysis-(\d{1,18})")
_ACTION = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
_TIER_CODE = re.compile(r"[A-Za-z0-9_]{1,10}")
MAX_LIMIT = 1_000_000
MAX_PRICE = Decimal("99999999.99")
MAX_GRANT_DAYS = 3650


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _phone_for_viewer(phone: str | None) -> str | None:
    user = g.get("staff_user")
    return phone if user is not None and user.role == "admin" else mask_phone(phone)


def _int_path(value: int) -> int:
    if value > MAX_ROW_ID:
        raise ApiError(404, "Not found.")
    return value


# --- analyses ------------------------------------------------------------------------------------


def _analysis_json(a: Analysis, phone: str | None, *, detail: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": a.id,
        "farmer_id": a.farmer_id,
        "farmer_phone": _phone_for_viewer(phone),
        "status": a.status,
        "crop": a.crop,
        "health_score": a.health_score,
        "primary_concern": a.primary_concern,
        "failure_reason": a.failure_reason,
        "sponsor_id": a.sponsor_id,
        "subscription_id": a.subscription_id,
        "attempts": a.attempts,
        "created_at": _iso(a.created_at),
        "completed_at": _iso(a.completed_at),
        "failed_at": _iso(a.failed_at),
    }
    if detail:
        body.update({
            "message_id": a.message_id,
            "notes": a.notes,
            "location_text": a.location_text,
            "species": a.species,
            "severity": a.severity,
            "prognosis": a.prognosis,
            "diseases": a.diseases,
            "pests": a.pests,
            "urgent": a.urgent,
            "token_usage": a.token_usage,
            "cost_usd": a.cost_usd,
            "charge_ledger_id": a.charge_ledger_id,
            "received_at": _iso(a.received_at),
            "queued_at": _iso(a.queued_at),
            "processing_at": _iso(a.processing_at),
            "n8n_requested_at": _iso(a.n8n_requested_at),
            "delay_notice_at": _iso(a.delay_notice_at),
            "result": a.result,
        })
    return body


@bp.get("/analyses")
@require_roles("support", "admin")
def ops_list_analyses() -> Response:
    """Analyses, newest first, filtered by status, farmer, time range (`since` inclusive, `until` exclusive), crop."""
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    status = args.choice("status", [s.value for s in AnalysisStatus])
    farmer_id = args.integer("farmer_id", minimum=1, maximum=MAX_ROW_ID)
    since = args.datetime("since")
    until = args.datetime("until")
    crop = args.text("crop", max_length=100)
    if since is not None and until is not None and since >= until:
        args.add_error("until", "must be later than since")
    args.raise_if_errors()

    stmt = select(Analysis)
    if status is not None:
        stmt = stmt.where(Analysis.status == status)
    if farmer_id is not None:
        stmt = stmt.where(Analysis.farmer_id == farmer_id)
    if since is not None:
        stmt = stmt.where(Analysis.created_at >= since)
    if until is not None:
        stmt = stmt.where(Analysis.created_at < until)
    if crop is not None:
        stmt = stmt.where(Analysis.crop.icontains(crop, autoescape=True))
    stmt = stmt.order_by(Analysis.created_at.desc(), Analysis.id.desc())
    with context.db().reader() as session:
        phones: dict[int, str] = {}

        def load_phones(rows: Sequence[Analysis]) -> None:  # one query per page
            ids = {a.farmer_id for a in rows}
            phones.update((fid, phone) for fid, phone in session.execute(
                select(Farmer.id, Farmer.phone).where(Farmer.id.in_(ids))))

        result = paginate(session, stmt, page, per_page, lambda a: _analysis_json(a, phones.get(a.farmer_id)),
                          load_phones)
    filters = {k: v for k, v in {"status": status, "farmer_id": farmer_id, "since": _iso(since),
                                 "until": _iso(until), "crop": crop}.items() if v is not None}
    audit("analyses.search", "analysis", None, {"filters": filters, "page": page, "total": result["total"]})
    return jsonify(result)


@bp.get("/analyses/<int:analysis_id>")
@require_roles("support", "admin")
def ops_get_analysis(analysis_id: int) -> Response:
    """One analysis with the raw result N8N returned, its failure reason and every timestamp."""
    with context.db().reader() as session:
        a = session.get(Analysis, _int_path(analysis_id))
        if a is None:
            raise ApiError(404, "No analysis with this id.")
        phone = session.scalar(select(Farmer.phone).where(Farmer.id == a.farmer_id))
        body = _analysis_json(a, phone, detail=True)
    audit("analysis.read", "analysis", analysis_id)
    return jsonify(body)


# --- failed jobs ---------------------------------------------------------------------------------


def _registries() -> list[FailedJobRegistry]:
    redis = current_app.extensions["redis"]
    return [FailedJobRegistry(queue=get_queue(name, redis)) for name in QUEUE_NAMES]


def _exc_summary(job: Job) -> str | None:
    try:
        result = job.latest_result()
        exc = result.exc_string if result is not None else None
    except Exception:  # a result that cannot be read must not hide the job
        return None
    if not exc:
        return None
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else None


def _safe_repr(value: Any, limit: int = 500) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _job_json(job: Job, queue: str) -> dict[str, Any]:
    try:
        func_name = job.func_name
        args = [_safe_repr(a) for a in job.args]
    except Exception:  # undeserialisable payload
        func_name, args = None, []
    return {
        "id": job.id,
        "queue": queue,
        "function": func_name,
        "args": args,
        "exc_summary": _exc_summary(job),
        "ended_at": _iso(job.ended_at),
        "enqueued_at": _iso(job.enqueued_at),
    }


@bp.get("/jobs/failed")
@require_roles("support", "admin")
def ops_failed_jobs() -> Response:
    """The failed jobs of every queue (queue order, then oldest failure first), paginated."""
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    args.raise_if_errors()
    start, end = (page - 1) * per_page, page * per_page
    items: list[dict[str, Any]] = []
    total = 0
    redis = current_app.extensions["redis"]
    try:
        for registry in _registries():
            count = registry.count
            lo, hi = max(start - total, 0), min(end - total, count)
            if lo < hi:
                ids = registry.get_job_ids(lo, hi - 1)
                for job in Job.fetch_many(ids, connection=redis):
                    if job is not None:
                        items.append(_job_json(job, registry.name))
            total += count
    except RedisError as exc:
        raise ApiError(503, "The job queue is unavailable, try again shortly.") from exc
    return jsonify({"items": items, "page": page, "per_page": per_page, "total": total})


@bp.post("/jobs/failed/<job_id>/retry")
@require_roles("support", "admin")
def ops_retry_failed_job(job_id: str) -> Response:
    """Requeue a failed job. A failed analysis was refunded and the farmer told: retrying it would analyse
    for free, so it is refused (409) unless an admin passes `force=true`."""
    args = QueryArgs(request.args)
    force = args.choice("force", ["true", "false"]) == "true"
    args.raise_if_errors()
    if not _JOB_ID.fullmatch(job_id):
        raise ApiError(404, "No failed job with this id.")
    if force and g.staff_user.role != "admin":
        raise ApiError(403, "Only an admin may force a retry.")
    try:
        registry = next((r for r in _registries() if job_id in r), None)
    except RedisError as exc:
        raise ApiError(503, "The job queue is unavailable, try again shortly.") from exc
    if registry is None:
        raise ApiError(404, "No failed job with this id.")
    match = _ANALYSIS_JOB.fullmatch(job_id)
    if match:
        with context.db().reader() as session:
            status = session.scalar(select(Analysis.status).where(Analysis.id == int(match.group(1))))
        if status == AnalysisStatus.FAILED.value and not force:
            raise ApiError(409, "This analysis ended as failed: its charge was refunded and the farmer was told. "
                                "Ask the farmer to send the photo again instead of retrying the job.")
    try:
        registry.requeue(job_id)
    except (NoSuchJobError, InvalidJobOperation) as exc:
        raise ApiError(404, "No failed job with this id.") from exc
    except RedisError as exc:
        raise ApiError(503, "The job queue is unavailable, try again shortly.") from exc
    audit("job.retry", "job", job_id, {"queue": registry.name, "force": force})
    return jsonify({"id": job_id, "queue": registry.name, "status": "queued"})


# --- a farmer's subscription and ledger ---------------------------------------------------------


def _subscription_json(sub: Subscription, tier: Tier) -> dict[str, Any]:
    return {
        "id": sub.id,
        "tier_code": tier.code,
        "tier_name": tier.name,
        "status": sub.status,
        "starts_at": _iso(sub.starts_at),
        "ends_at": _iso(sub.ends_at),
        "sponsor_id": sub.sponsor_id,
        "code_id": sub.code_id,
        "created_at": _iso(sub.created_at),
    }


def _farmer_subscription(session: Any, farmer_id: int) -> dict[str, Any]:
    now = utcnow()
    status = quota_status(session, farmer_id, now)
    current = current_subscription(session, farmer_id, now)
    queued = queued_subscriptions(session, farmer_id)
    quota = None
    if status is not None:
        quota = {"daily_used": status.daily_used, "daily_limit": status.daily_limit,
                 "monthly_used": status.monthly_used, "monthly_limit": status.monthly_limit,
                 "remaining_today": status.remaining, "day_resets_at": _iso(status.day_resets_at),
                 "month_resets_at": _iso(status.month_resets_at), "sponsor_name": status.sponsor_name}
    return {
        "farmer_id": farmer_id,
        "current": _subscription_json(current, session.get_one(Tier, current.tier_id)) if current else None,
        "queued": [_subscription_json(q, session.get_one(Tier, q.tier_id)) for q in queued],
        "quota": quota,
    }


@bp.get("/farmers/<int:farmer_id>/subscription")
@require_roles("support", "admin")
def ops_farmer_subscription(farmer_id: int) -> Response:
    """The farmer's current and queued subscriptions and how much of the quota is used."""
    with context.db().session() as session, session.begin():  # quota_status brings statuses up to date
        if session.get(Farmer, _int_path(farmer_id)) is None:
            raise ApiError(404, "No farmer with this id.")
        body = _farmer_subscription(session, farmer_id)
    audit("farmer.subscription.read", "farmer", farmer_id)
    return jsonify(body)


def _ledger_json(row: UsageLedger) -> dict[str, Any]:
    return {"id": row.id, "farmer_id": row.farmer_id, "subscription_id": row.subscription_id,
            "analysis_id": row.analysis_id, "kind": row.kind, "day_key": row.day_key, "month_key": row.month_key,
            "refund_of": row.refund_of, "created_at": _iso(row.created_at)}


@bp.get("/farmers/<int:farmer_id>/ledger")
@require_roles("support", "admin")
def ops_farmer_ledger(farmer_id: int) -> Response:
    """The farmer's usage ledger (charges and refunds), newest first."""
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    args.raise_if_errors()
    with context.db().reader() as session:
        if session.get(Farmer, _int_path(farmer_id)) is None:
            raise ApiError(404, "No farmer with this id.")
        stmt = (select(UsageLedger).where(UsageLedger.farmer_id == farmer_id)
                .order_by(UsageLedger.created_at.desc(), UsageLedger.id.desc()))
        result = paginate(session, stmt, page, per_page, _ledger_json)
    audit("farmer.ledger.read", "farmer", farmer_id, {"page": page})
    return jsonify(result)


# --- tiers (admin) -------------------------------------------------------------------------------


def _tier_json(t: Tier) -> dict[str, Any]:
    return {"id": t.id, "code": t.code, "name": t.name, "daily_limit": t.daily_limit,
            "monthly_limit": t.monthly_limit, "price_try": str(t.price_try), "default_days": t.default_days,
            "active": t.active}


@bp.get("/tiers")
@require_roles("admin")
def ops_list_tiers() -> Response:
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    args.raise_if_errors()
    with context.db().reader() as session:
        return jsonify(paginate(session, select(Tier).order_by(Tier.id), page, per_page, _tier_json))


def _body_int(body: Body, name: str, minimum: int, maximum: int) -> int | None:
    if name not in body.data:
        return None
    value = body.data[name]
    if isinstance(value, bool) or not isinstance(value, int):
        body.errors.append(field_error(name, "must be an integer"))
        return None
    if not minimum <= value <= maximum:
        body.errors.append(field_error(name, f"must be between {minimum} and {maximum}"))
        return None
    return value


def _body_price(body: Body, name: str) -> Decimal | None:
    if name not in body.data:
        return None
    value = body.data[name]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        body.errors.append(field_error(name, "must be a number such as 99.99"))
        return None
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        price = None
    if price is None or not price.is_finite() or price < 0 or price > MAX_PRICE or price != price.quantize(
            Decimal("0.01")):
        body.errors.append(field_error(name, f"must be a number from 0 to {MAX_PRICE} with at most 2 decimals"))
        return None
    return price.quantize(Decimal("0.01"))


@bp.patch("/tiers/<code>")
@require_roles("admin")
def ops_update_tier(code: str) -> Response:
    """Change a tier's limits, price or whether new purchases may use it."""
    body = Body.load()
    unknown = sorted(set(body.data) - {"daily_limit", "monthly_limit", "price_try", "active"})
    for name in unknown:
        body.errors.append(field_error(name, "is not a field of a tier"))
    changes: dict[str, Any] = {}
    for name in ("daily_limit", "monthly_limit"):
        value = _body_int(body, name, 0, MAX_LIMIT)
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
    body.raise_if_errors()
    if not _TIER_CODE.fullmatch(code):
        raise ApiError(404, "No tier with this code.")
    with context.db().session() as session, session.begin():
        tier = tier_by_code(session, code)
        if tier is None:
            raise ApiError(404, "No tier with this code.")
        before = _tier_json(tier)
        daily = changes.get("daily_limit", tier.daily_limit)
        monthly = changes.get("monthly_limit", tier.monthly_limit)
        if daily > monthly:
            raise ApiError(400, "Some fields of the request body are invalid.",
                           errors=[field_error("daily_limit", "must not exceed monthly_limit")])
        for name, value in changes.items():
            setattr(tier, name, value)
        session.flush()
        after = _tier_json(tier)
        audit("tier.update", "tier", tier.code,
              {"before": {k: before[k] for k in changes}, "after": {k: after[k] for k in changes}}, session=session)
    return jsonify(after)


# --- granting a subscription (admin) ------------------------------------------------------------


@bp.post("/farmers/<int:farmer_id>/subscriptions")
@require_roles("admin")
def ops_grant_subscription(farmer_id: int) -> tuple[Response, int]:
    """Give the farmer a tier for `days` days: active now (a Trial is replaced), or queued behind an
    active paid subscription, like a redeemed code. A farmer with one queued already gets 409."""
    body = Body.load()
    tier_code = body.string("tier_code", max_length=10)
    days = _body_int(body, "days", 1, MAX_GRANT_DAYS)
    if "days" not in body.data:
        body.errors.append(field_error("days", "is required"))
    body.raise_if_errors()
    assert tier_code is not None and days is not None
    now = utcnow()
    with context.db().session() as session, session.begin():
        if session.get(Farmer, _int_path(farmer_id)) is None:
            raise ApiError(404, "No farmer with this id.")
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


# --- staff (admin) -------------------------------------------------------------------------------


def _staff_json(u: StaffUser) -> dict[str, Any]:
    return {"id": u.id, "email": u.email, "role": u.role, "sponsor_id": u.sponsor_id, "active": u.active,
            "created_at": _iso(u.created_at)}


@bp.get("/staff")
@require_roles("admin")
def ops_list_staff() -> Response:
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


def _staff_error_field(message: str) -> str:
    for name in ("email", "role", "password", "sponsor"):
        if name in message:
            return "sponsor_id" if name == "sponsor" else name
    return "body"


@bp.post("/staff")
@require_roles("admin")
def ops_create_staff() -> tuple[Response, int]:
    body = Body.load()
    email = body.string("email", max_length=254)
    password = body.string("password", max_length=1024)
    role = body.string("role", max_length=10)
    sponsor_id = _body_int(body, "sponsor_id", 1, 2**31 - 1) if body.data.get("sponsor_id") is not None else None
    body.raise_if_errors()
    assert email is not None and password is not None and role is not None
    try:
        with context.db().session() as session, session.begin():
            try:
                user = create_staff_user(session, email, password, role, sponsor_id)
            except ValueError as exc:
                message = str(exc).replace("--sponsor-id", "sponsor_id")
                if "already exists" in message:
                    raise ApiError(409, "A staff user with this email already exists.") from exc
                raise ApiError(400, "Some fields of the request body are invalid.",
                               errors=[field_error(_staff_error_field(message), message)]) from exc
            result = _staff_json(user)
            audit("staff.create", "staff_user", user.id, {"email": user.email, "role": user.role,
                                                          "sponsor_id": user.sponsor_id}, session=session)
    except IntegrityError as exc:  # a concurrent creation with the same email
        raise ApiError(409, "A staff user with this email already exists.") from exc
    return jsonify(result), 201


# --- the audit log (admin) -----------------------------------------------------------------------


def _audit_json(row: AuditLog) -> dict[str, Any]:
    return {"id": row.id, "user_id": row.user_id, "action": row.action, "record_type": row.record_type,
            "record_id": row.record_id, "ip": row.ip, "at": _iso(row.at), "details": row.details}


def _action(value: str) -> str | None:
    return value if _ACTION.fullmatch(value) else None


@bp.get("/audit")
@require_roles("admin")
def ops_audit_log() -> Response:
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


# --- OpenAPI -------------------------------------------------------------------------------------


def _path_param(name: str, schema: dict[str, Any], example: Any) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "example": example}


def _page_of(item: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items", "page", "per_page", "total"],
            "properties": {"items": {"type": "array", "items": _ref(item)},
                           "page": {"type": "integer", "minimum": 1},
                           "per_page": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
                           "total": {"type": "integer", "minimum": 0}}}


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


_TS = {"type": ["string", "null"], "format": "date-time"}
_NINT = {"type": ["integer", "null"]}
_NSTR = {"type": ["string", "null"]}
_ID = {"type": "integer", "minimum": 0}
_STATUSES = [s.value for s in AnalysisStatus]
_BODY_ERRORS = {"400": _problem("Invalid body (`errors` lists each field).")}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Analysis": {
        "type": "object",
        "required": ["id", "farmer_id", "status", "created_at"],
        "properties": {
            "id": {"type": "integer"}, "farmer_id": {"type": "integer"},
            "farmer_phone": {**_NSTR, "description": "Masked (`+90532*****67`) unless the caller is an admin."},
            "status": {"enum": _STATUSES}, "crop": _NSTR, "health_score": _NINT, "primary_concern": _NSTR,
            "failure_reason": _NSTR, "sponsor_id": _NINT, "subscription_id": _NINT, "attempts": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"}, "completed_at": _TS, "failed_at": _TS,
        },
    },
    "AnalysisDetail": {
        "allOf": [_ref("Analysis"), {"type": "object", "properties": {
            "message_id": _NINT, "notes": _NSTR, "location_text": _NSTR, "species": _NSTR, "severity": _NSTR,
            "prognosis": _NSTR, "diseases": {"type": ["array", "null"]}, "pests": {"type": ["array", "null"]},
            "urgent": {"type": "boolean"}, "token_usage": _NINT, "cost_usd": {"type": ["number", "null"]},
            "charge_ledger_id": _NINT, "received_at": _TS, "queued_at": _TS, "processing_at": _TS,
            "n8n_requested_at": _TS, "delay_notice_at": _TS,
            "result": {"description": "The raw JSON the analyser returned, or null."}}}],
    },
    "AnalysisPage": _page_of("Analysis"),
    "FailedJob": {
        "type": "object",
        "required": ["id", "queue"],
        "properties": {"id": {"type": "string"}, "queue": {"enum": list(QUEUE_NAMES)}, "function": _NSTR,
                       "args": {"type": "array", "items": {"type": "string"}},
                       "exc_summary": {**_NSTR, "description": "The last line of the exception."},
                       "ended_at": _TS, "enqueued_at": _TS},
    },
    "FailedJobPage": _page_of("FailedJob"),
    "RequeuedJob": {"type": "object", "required": ["id", "queue", "status"],
                    "properties": {"id": {"type": "string"}, "queue": {"type": "string"},
                                   "status": {"const": "queued"}}},
    "Subscription": {
        "type": "object",
        "required": ["id", "tier_code", "status", "starts_at", "ends_at"],
        "properties": {"id": {"type": "integer"}, "tier_code": {"type": "string"}, "tier_name": {"type": "string"},
                       "status": {"enum": [s.value for s in SubscriptionStatus]},
                       "starts_at": {"type": "string", "format": "date-time"},
                       "ends_at": {"type": "string", "format": "date-time"}, "sponsor_id": _NINT, "code_id": _NINT,
                       "created_at": _TS},
    },
    "FarmerSubscription": {
        "type": "object",
        "required": ["farmer_id", "current", "queued", "quota"],
        "properties": {
            "farmer_id": {"type": "integer"},
            "current": {"oneOf": [_ref("Subscription"), {"type": "null"}]},
            "queued": {"type": "array", "items": _ref("Subscription")},
            "quota": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {
                "daily_used": {"type": "integer"}, "daily_limit": {"type": "integer"},
                "monthly_used": {"type": "integer"}, "monthly_limit": {"type": "integer"},
                "remaining_today": {"type": "integer"}, "day_resets_at": {"type": "string", "format": "date-time"},
                "month_resets_at": {"type": "string", "format": "date-time"}, "sponsor_name": _NSTR}}]},
        },
    },
    "LedgerEntry": {
        "type": "object",
        "required": ["id", "subscription_id", "kind", "created_at"],
        "properties": {"id": {"type": "integer"}, "farmer_id": {"type": "integer"},
                       "subscription_id": {"type": "integer"}, "analysis_id": _NINT,
                       "kind": {"enum": ["charge", "refund"]}, "day_key": {"type": "string"},
                       "month_key": {"type": "string"}, "refund_of": _NINT, "created_at": _TS},
    },
    "LedgerPage": _page_of("LedgerEntry"),
    "Tier": {
        "type": "object",
        "required": ["code", "name", "daily_limit", "monthly_limit", "price_try", "active"],
        "properties": {"id": {"type": "integer"}, "code": {"type": "string"}, "name": {"type": "string"},
                       "daily_limit": {"type": "integer"}, "monthly_limit": {"type": "integer"},
                       "price_try": {"type": "string", "description": "Decimal, e.g. \"99.99\""},
                       "default_days": {"type": "integer"}, "active": {"type": "boolean"}},
    },
    "TierPage": _page_of("Tier"),
    "TierUpdate": {
        "type": "object", "minProperties": 1, "additionalProperties": False,
        "properties": {"daily_limit": {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
                       "monthly_limit": {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
                       "price_try": {"type": ["number", "string"], "minimum": 0, "maximum": 99999999.99,
                                     "pattern": "^[0-9]{1,8}([.][0-9]{1,2})?$",
                                     "description": "0 to 99999999.99, at most 2 decimals, e.g. 99.99 or \"99.99\""},
                       "active": {"type": "boolean"}},
    },
    "SubscriptionGrant": {
        "type": "object", "required": ["tier_code", "days"], "examples": [{"tier_code": "M", "days": 30}],
        "properties": {"tier_code": {"type": "string", "minLength": 1, "maxLength": 10,
                                     "description": "An active paid tier."},
                       "days": {"type": "integer", "minimum": 1, "maximum": MAX_GRANT_DAYS}},
    },
    "StaffUser": {
        "type": "object", "required": ["id", "email", "role", "active"],
        "properties": {"id": {"type": "integer"}, "email": {"type": "string"}, "role": {"enum": list(ROLES)},
                       "sponsor_id": _NINT, "active": {"type": "boolean"}, "created_at": _TS},
    },
    "StaffUserPage": _page_of("StaffUser"),
    "StaffUserCreate": {
        "type": "object", "required": ["email", "password", "role"],
        "properties": {"email": {"type": "string", "format": "email", "maxLength": 254},
                       "password": {"type": "string", "minLength": 10, "maxLength": 1024},
                       "role": {"enum": list(ROLES)},
                       "sponsor_id": {**_NINT, "minimum": 1, "maximum": 2**31 - 1,
                                      "description": "Required for, and only for, a sponsor user."}},
    },
    "AuditEntry": {
        "type": "object", "required": ["id", "action", "at"],
        "properties": {"id": {"type": "integer"}, "user_id": _NINT, "action": {"type": "string"},
                       "record_type": _NSTR, "record_id": _NSTR, "ip": _NSTR, "at": {"type": "string",
                                                                                     "format": "date-time"},
                       "details": {"type": ["object", "null"]}},
    },
    "AuditPage": _page_of("AuditEntry"),
}

_FARMER = _path_param("farmer_id", _ID, 1)
_NO_FARMER = _problem("No farmer with this id.")

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/analyses": {"get": {
        "operationId": "listAnalyses", "tags": ["support"],
        "summary": "Analyses, newest first (roles: support, admin; phones masked for support). Audited.",
        "parameters": [
            *_PAGE_PARAMS,
            _query("status", {"enum": _STATUSES}, "Analysis status."),
            _query("farmer_id", {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID},
                   "Only this farmer's analyses."),
            _query("since", {"type": "string", "format": "date-time"}, "Created at or after (UTC if no offset)."),
            _query("until", {"type": "string", "format": "date-time"},
                   "Created before (UTC if no offset); later than `since`."),
            _query("crop", {"type": "string", "maxLength": 100}, "Crop contains (case-insensitive, literal)."),
        ],
        "responses": {"200": _json("A page of analyses.", _ref("AnalysisPage")), **_AUTHED_ERRORS},
    }},
    "/api/v1/analyses/{analysis_id}": {"get": {
        "operationId": "getAnalysis", "tags": ["support"],
        "summary": "One analysis with its raw result, failure reason and timestamps (roles: support, admin). "
                   "Audited.",
        "parameters": [_path_param("analysis_id", _ID, 1)],
        "responses": {"200": _json("The analysis.", _ref("AnalysisDetail")), **_AUTHED_ERRORS,
                      "404": _problem("No analysis with this id.")},
    }},
    "/api/v1/jobs/failed": {"get": {
        "operationId": "listFailedJobs", "tags": ["support"],
        "summary": "Failed RQ jobs of every queue (roles: support, admin).",
        "parameters": [*_PAGE_PARAMS],
        "responses": {"200": _json("A page of failed jobs.", _ref("FailedJobPage")), **_AUTHED_ERRORS,
                      "503": _problem("Redis unavailable.")},
    }},
    "/api/v1/jobs/failed/{job_id}/retry": {"post": {
        "operationId": "retryFailedJob", "tags": ["support"],
        "summary": "Requeue a failed job (roles: support, admin). A failed analysis's job is refused with 409 "
                   "(it was refunded: ask the farmer to resend) unless an admin passes force=true. Audited.",
        "parameters": [_path_param("job_id", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"}, "analysis-2"),
                       _query("force", {"enum": ["true", "false"]}, "Admin only: retry a failed analysis anyway.")],
        "responses": {"200": _json("Requeued.", _ref("RequeuedJob")), **_AUTHED_ERRORS,
                      "404": _problem("No failed job with this id."),
                      "409": _problem("The analysis ended as failed and was refunded."),
                      "503": _problem("Redis unavailable.")},
    }},
    "/api/v1/farmers/{farmer_id}/subscription": {"get": {
        "operationId": "farmerSubscription", "tags": ["support"],
        "summary": "A farmer's current and queued subscriptions and quota (roles: support, admin). Audited.",
        "parameters": [_FARMER],
        "responses": {"200": _json("The subscriptions.", _ref("FarmerSubscription")), **_AUTHED_ERRORS,
                      "404": _NO_FARMER},
    }},
    "/api/v1/farmers/{farmer_id}/ledger": {"get": {
        "operationId": "farmerLedger", "tags": ["support"],
        "summary": "A farmer's usage ledger, newest first (roles: support, admin). Audited.",
        "parameters": [_FARMER, *_PAGE_PARAMS],
        "responses": {"200": _json("A page of ledger rows.", _ref("LedgerPage")), **_AUTHED_ERRORS,
                      "404": _NO_FARMER},
    }},
    "/api/v1/farmers/{farmer_id}/subscriptions": {"post": {
        "operationId": "grantSubscription", "tags": ["admin"],
        "summary": "Grant a tier for some days: active now, or queued behind an active paid one (role: admin). "
                   "Audited.",
        "parameters": [_FARMER],
        "requestBody": _body("SubscriptionGrant"),
        "responses": {"201": _json("The new subscription.", _ref("Subscription")), **_AUTHED_ERRORS,
                      **_BODY_ERRORS, "404": _NO_FARMER,
                      "409": _problem("The farmer already has a queued subscription.")},
    }},
    "/api/v1/tiers": {"get": {
        "operationId": "listTiers", "tags": ["admin"], "summary": "Every tier (role: admin).",
        "parameters": [*_PAGE_PARAMS],
        "responses": {"200": _json("A page of tiers.", _ref("TierPage")), **_AUTHED_ERRORS},
    }},
    "/api/v1/tiers/{code}": {"patch": {
        "operationId": "updateTier", "tags": ["admin"],
        "summary": "Change a tier's limits, price or active flag (role: admin). Audited.",
        "parameters": [_path_param("code", {"type": "string", "maxLength": 10}, "M")],
        "requestBody": _body("TierUpdate"),
        "responses": {"200": _json("The tier.", _ref("Tier")), **_AUTHED_ERRORS, **_BODY_ERRORS,
                      "404": _problem("No tier with this code.")},
    }},
    "/api/v1/staff": {
        "get": {
            "operationId": "listStaff", "tags": ["admin"], "summary": "Staff users, no password hashes (role: admin).",
            "parameters": [*_PAGE_PARAMS, _query("role", {"enum": list(ROLES)}, "Only this role.")],
            "responses": {"200": _json("A page of staff users.", _ref("StaffUserPage")), **_AUTHED_ERRORS},
        },
        "post": {
            "operationId": "createStaff", "tags": ["admin"], "summary": "Create a staff user (role: admin). Audited.",
            "requestBody": _body("StaffUserCreate"),
            "responses": {"201": _json("The new user.", _ref("StaffUser")), **_AUTHED_ERRORS, **_BODY_ERRORS,
                          "409": _problem("The email is taken.")},
        },
    },
    "/api/v1/audit": {"get": {
        "operationId": "auditLog", "tags": ["admin"], "summary": "The audit log, newest first (role: admin).",
        "parameters": [*_PAGE_PARAMS, _query("user_id", {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID},
                              "Only this staff user."),
                       _query("action", {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,100}$"}, "Only this action.")],
        "responses": {"200": _json("A page of audit rows.", _ref("AuditPage")), **_AUTHED_ERRORS},
    }},
}
