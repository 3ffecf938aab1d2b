"""Purchase requests: purchases are money, so a sponsor user asks and an admin decides.

A sponsor user files a request for its own sponsor (tier, quantity, code validity, subscription days,
an optional note) and follows its outcome; another sponsor's request is a 404. An admin lists them
(filtered by status and sponsor), approves one (the purchase and its codes are created then, in the
same transaction) or rejects it with a reason; deciding a request that is no longer pending is a 409.
Support has no access: purchases are sponsors' commercial data. Filing and deciding are audited.
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify, request
from sqlalchemy import select
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
from admin.sponsors import MAX_DAYS, SPONSOR_ID, PurchaseTerms, own_sponsor, purchase_terms
from admin.validation import Body, row_or_404
from models import PurchaseRequest, PurchaseRequestStatus, Tier, utcnow
from models.db import MAX_ROW_ID
from services import context
from services.audit import audit
from services.json_input import iso
from services.sponsor_stats import invalidate_stats
from services.sponsorship import (
    MAX_QUANTITY,
    TIER_ORDER,
    approve_purchase_request,
    file_purchase_request,
    reject_purchase_request,
)

MAX_NOTE = 500
NO_REQUEST = "No purchase request with this id."
STATUSES = tuple(s.value for s in PurchaseRequestStatus)
FILED_BY_SPONSORS = ("Purchase requests are filed by sponsor users; an admin records a purchase directly: "
                     "POST /api/v1/sponsors/{sponsor_id}/purchases.")


def _requestjson_response(r: PurchaseRequest, tier_codes: dict[int, str]) -> dict[str, Any]:
    return {"id": r.id, "sponsor_id": r.sponsor_id, "tier": tier_codes.get(r.tier_id), "quantity": r.quantity,
            "code_valid_days": r.code_valid_days, "subscription_days": r.subscription_days, "note": r.note,
            "status": r.status, "created_at": iso(r.created_at), "decided_at": iso(r.decided_at),
            "rejection_reason": r.rejection_reason, "purchase_id": r.purchase_id}


def _tier_codes(session: Session) -> dict[int, str]:
    return {tier_id: code for tier_id, code in session.execute(select(Tier.id, Tier.code))}


def _page(session: Session, args: QueryArgs, sponsor_id: int | None) -> dict[str, Any]:
    page, per_page = page_args(args)
    status = args.choice("status", STATUSES)
    args.raise_if_errors()
    stmt = select(PurchaseRequest)
    if sponsor_id is not None:
        stmt = stmt.where(PurchaseRequest.sponsor_id == sponsor_id)
    if status is not None:
        stmt = stmt.where(PurchaseRequest.status == status)
    tier_codes = _tier_codes(session)
    return paginate(session, stmt.order_by(PurchaseRequest.id.desc()), page, per_page,
                    lambda r: _requestjson_response(r, tier_codes))


def _request_or_404(session: Session, request_id: int, sponsor_id: int | None = None) -> PurchaseRequest:
    found = row_or_404(session, PurchaseRequest, request_id, NO_REQUEST)
    if sponsor_id is not None and found.sponsor_id != sponsor_id:
        raise ApiError(404, NO_REQUEST)
    return found


def _note(body: Body) -> str | None:
    if body.data.get("note") is None:
        return None
    note = body.string("note", max_length=MAX_NOTE, required=False)
    return note.strip() if note is not None else None


# --- the sponsor's side ------------------------------------------------------------------------------


@bp.post("/sponsors/<int:sponsor_id>/purchase-requests")
@require_roles("sponsor", refusal=FILED_BY_SPONSORS)
def file_request(sponsor_id: int) -> tuple[Response, int]:
    body = Body.load()
    terms = purchase_terms(body)
    note = _note(body)
    body.refuse_unknown(("tier", "quantity", "code_valid_days", "subscription_days", "note"))
    with context.db().reader() as session:
        own_sponsor(session, sponsor_id)  # 404 before field errors: do not reveal another sponsor's id
    body.raise_if_errors()
    assert isinstance(terms, PurchaseTerms)
    with context.db().session() as session, session.begin():
        try:
            filed = file_purchase_request(session, sponsor_id, terms.tier, terms.quantity, terms.code_valid_days,
                                          terms.subscription_days, note, g.staff_user.id, utcnow())
        except ValueError as exc:  # e.g. a tier no longer sold
            raise ApiError(400, str(exc), errors=[field_error("tier", str(exc))]) from exc
        audit("sponsor.purchase_request.create", "purchase_request", filed.id,
              {"sponsor_id": sponsor_id, "tier": terms.tier, "quantity": terms.quantity,
               "code_valid_days": terms.code_valid_days, "subscription_days": terms.subscription_days},
              session=session)
        result = _requestjson_response(filed, _tier_codes(session))
    return jsonify(result), 201


@bp.get("/sponsors/<int:sponsor_id>/purchase-requests")
@require_roles("admin", "sponsor")
def list_sponsor_requests(sponsor_id: int) -> Response:
    args = QueryArgs(request.args)
    with context.db().reader() as session:
        own_sponsor(session, sponsor_id)
        result = _page(session, args, sponsor_id)
    return jsonify(result)


@bp.get("/sponsors/<int:sponsor_id>/purchase-requests/<int:request_id>")
@require_roles("admin", "sponsor")
def get_sponsor_request(sponsor_id: int, request_id: int) -> Response:
    with context.db().reader() as session:
        own_sponsor(session, sponsor_id)
        result = _requestjson_response(_request_or_404(session, request_id, sponsor_id), _tier_codes(session))
    return jsonify(result)


# --- the admin's side ----------------------------------------------------------------------------------


@bp.get("/purchase-requests")
@require_roles("admin")
def list_requests() -> Response:
    args = QueryArgs(request.args)
    sponsor_id = args.integer("sponsor_id", minimum=1, maximum=MAX_ROW_ID)
    with context.db().reader() as session:
        result = _page(session, args, sponsor_id)
    return jsonify(result)


@bp.post("/purchase-requests/<int:request_id>/approve")
@require_roles("admin")
def approve_request(request_id: int) -> Response:
    now = utcnow()
    with context.db().session() as session, session.begin():
        found = _request_or_404(session, request_id)
        try:
            approved = approve_purchase_request(session, request_id, g.staff_user.id, now)
        except ValueError as exc:  # the tier was withdrawn since the request was filed: it stays pending
            raise ApiError(409, f"This request cannot be approved now: {exc}.") from exc
        if approved is None:
            session.refresh(found)
            raise ApiError(409, f"Only a pending request can be approved; this one is {found.status}.")
        purchase, codes = approved
        audit("sponsor.purchase_request.approve", "purchase_request", request_id,
              {"sponsor_id": found.sponsor_id, "purchase_id": purchase.id, "codes": len(codes)}, session=session)
        session.refresh(found)
        result = _requestjson_response(found, _tier_codes(session))
    invalidate_stats(context.redis(), result["sponsor_id"])
    return jsonify(result)


@bp.post("/purchase-requests/<int:request_id>/reject")
@require_roles("admin")
def reject_request(request_id: int) -> Response:
    body = Body.load()
    reason = body.string("reason", max_length=MAX_NOTE)
    body.refuse_unknown(("reason",))
    with context.db().session() as session, session.begin():
        found = _request_or_404(session, request_id)
        body.raise_if_errors()
        assert reason is not None
        if not reject_purchase_request(session, request_id, reason, g.staff_user.id, utcnow()):
            session.refresh(found)
            raise ApiError(409, f"Only a pending request can be rejected; this one is {found.status}.")
        audit("sponsor.purchase_request.reject", "purchase_request", request_id,
              {"sponsor_id": found.sponsor_id, "reason": reason.strip()}, session=session)
        session.refresh(found)
        result = _requestjson_response(found, _tier_codes(session))
    return jsonify(result)


# --- OpenAPI ----------------------------------------------------------------------------------------------

_REQUEST_ID = path_param("request_id", ROW_ID, 1)
_STATUS = query_param("status", {"enum": list(STATUSES)}, "Only requests in this status.")


def _op(op_id: str, summary: str, responses: dict[str, Any], params: list[dict[str, Any]],
        body: str | None = None) -> dict[str, Any]:
    return operation(op_id, summary, "purchase requests", responses, params=params, body=body)


SCHEMAS: dict[str, Any] = {
    "PurchaseRequestCreate": {
        "type": "object", "required": ["tier", "quantity"], "additionalProperties": False,
        "properties": {"tier": {"enum": list(TIER_ORDER)},
                       "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY},
                       "code_valid_days": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS, "default": 90},
                       "subscription_days": {"type": "integer", "minimum": 1, "maximum": MAX_DAYS, "default": 30},
                       "note": {**NULLABLE_STR, "maxLength": MAX_NOTE}}},
    "PurchaseRequestRejection": {
        "type": "object", "required": ["reason"], "additionalProperties": False,
        "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": MAX_NOTE,
                                  "description": "Why; the sponsor reads it."}}},
    "PurchaseRequest": {
        "type": "object",
        "required": ["id", "sponsor_id", "tier", "quantity", "code_valid_days", "subscription_days", "status",
                     "created_at"],
        "properties": {"id": {"type": "integer"}, "sponsor_id": {"type": "integer"},
                       "tier": {"type": ["string", "null"]}, "quantity": {"type": "integer"},
                       "code_valid_days": {"type": "integer"}, "subscription_days": {"type": "integer"},
                       "note": NULLABLE_STR, "status": {"enum": list(STATUSES)},
                       "created_at": {"type": "string", "format": "date-time"}, "decided_at": TIMESTAMP,
                       "rejection_reason": NULLABLE_STR,
                       "purchase_id": {"type": ["integer", "null"],
                                       "description": "Set when approved: the purchase that holds the codes."}}},
    "PurchaseRequestPage": page_of("PurchaseRequest"),
}

_NO_REQUEST = problem_response("No such purchase request (or another sponsor's).")
_NOT_PENDING = problem_response("The request is no longer pending (approved or rejected already).")

PATHS: dict[str, Any] = {
    "/api/v1/sponsors/{sponsor_id}/purchase-requests": {
        "post": _op("filePurchaseRequest", "Ask for a purchase (the sponsor itself); an admin approves it, creating "
                    "the codes, or rejects it. Audited.",
                    {"201": json_response("The pending request.", ref("PurchaseRequest")),
                     "403": problem_response("Not a sponsor user (an admin records a purchase directly)."),
                     "404": problem_response("No such sponsor (or another sponsor's).")},
                    [SPONSOR_ID], body="PurchaseRequestCreate"),
        "get": _op("listSponsorPurchaseRequests", "The sponsor's purchase requests and their outcome, newest first "
                   "(admin, or the sponsor itself).",
                   {"200": json_response("A page of requests.", ref("PurchaseRequestPage")),
                    "404": problem_response("No such sponsor (or another sponsor's).")},
                   [SPONSOR_ID, *PAGE_PARAMS, _STATUS]),
    },
    "/api/v1/sponsors/{sponsor_id}/purchase-requests/{request_id}": {
        "get": _op("getSponsorPurchaseRequest", "One of the sponsor's purchase requests (admin, or the sponsor "
                   "itself).", {"200": json_response("The request.", ref("PurchaseRequest")), "404": _NO_REQUEST},
                   [SPONSOR_ID, _REQUEST_ID]),
    },
    "/api/v1/purchase-requests": {
        "get": _op("listPurchaseRequests", "Every sponsor's purchase requests, newest first (admin).",
                   {"200": json_response("A page of requests.", ref("PurchaseRequestPage"))},
                   [*PAGE_PARAMS, _STATUS,
                    query_param("sponsor_id", {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID},
                           "Only this sponsor's requests.")]),
    },
    "/api/v1/purchase-requests/{request_id}/approve": {
        "post": _op("approvePurchaseRequest", "Approve a pending request (admin, after payment): its purchase and "
                    "codes are created in the same transaction. Audited.",
                    {"200": json_response("The approved request, with `purchase_id`.", ref("PurchaseRequest")),
                     "404": _NO_REQUEST,
                     "409": problem_response("Not pending any more, or its tier is no longer sold.")},
                    [_REQUEST_ID]),
    },
    "/api/v1/purchase-requests/{request_id}/reject": {
        "post": _op("rejectPurchaseRequest", "Reject a pending request with a reason the sponsor reads (admin). "
                    "Nothing is created. Audited.",
                    {"200": json_response("The rejected request.", ref("PurchaseRequest")), "404": _NO_REQUEST,
                     "409": _NOT_PENDING},
                    [_REQUEST_ID], body="PurchaseRequestRejection"),
    },
}
declare(PATHS, SCHEMAS)
