"""`/analyses`: every analysis, for support and admins (roles support, admin; audited).

Support sees farmers' phones masked (`services.masking`), admins in full. Sponsors see their own
analyses through `admin.sponsored_analyses` instead, filtered by tier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Response, g, jsonify, request
from sqlalchemy import select

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
from models import Analysis, AnalysisStatus, Farmer
from models.db import MAX_ROW_ID
from services import context
from services.analysis import photo_ids, stored_keys
from services.audit import audit
from services.json_input import iso
from services.masking import mask_phone
from services.report_links import photo_links

STATUSES = [s.value for s in AnalysisStatus]


def _phone_for_viewer(phone: str | None) -> str | None:
    user = g.get("staff_user")
    return phone if user is not None and user.role == "admin" else mask_phone(phone)


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
        "created_at": iso(a.created_at),
        "completed_at": iso(a.completed_at),
        "failed_at": iso(a.failed_at),
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
            "received_at": iso(a.received_at),
            "queued_at": iso(a.queued_at),
            "processing_at": iso(a.processing_at),
            "n8n_requested_at": iso(a.n8n_requested_at),
            "delay_notice_at": iso(a.delay_notice_at),
            "media_ids": list(photo_ids(a.media_id, a.media_ids)),
            # Every photo of the submission, in the farmer's order: fresh signed links (MEDIA_URL_MAX_AGE).
            "photo_urls": photo_links(stored_keys(a.image_keys, a.image_key)),
            "original_photo_urls": photo_links(stored_keys(a.original_keys, a.original_key)),
            "result": a.result,
        })
    return body


@bp.get("/analyses")
@require_roles("support", "admin")
def list_analyses() -> Response:
    """Analyses, newest first, filtered by status, farmer, time range (`since` inclusive, `until` exclusive), crop."""
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    status = args.choice("status", STATUSES)
    farmer_id = args.integer("farmer_id", minimum=1, maximum=MAX_ROW_ID)
    since, until = args.time_range()
    crop = args.text("crop", max_length=100)
    args.raise_if_errors()

    stmt = in_range(select(Analysis), Analysis.created_at, since, until)
    if status is not None:
        stmt = stmt.where(Analysis.status == status)
    if farmer_id is not None:
        stmt = stmt.where(Analysis.farmer_id == farmer_id)
    if crop is not None:
        stmt = stmt.where(Analysis.crop.icontains(crop, autoescape=True))
    stmt = stmt.order_by(Analysis.created_at.desc(), Analysis.id.desc())
    with context.db().reader() as session:
        phones: dict[int, str | None] = {}

        def load_phones(rows: Sequence[Analysis]) -> None:  # one query per page
            ids = {a.farmer_id for a in rows}
            phones.update((fid, phone) for fid, phone in session.execute(
                select(Farmer.id, Farmer.phone).where(Farmer.id.in_(ids))))

        result = paginate(session, stmt, page, per_page, lambda a: _analysis_json(a, phones.get(a.farmer_id)),
                          load_phones)
    filters = {k: v for k, v in {"status": status, "farmer_id": farmer_id, "since": iso(since),
                                 "until": iso(until), "crop": crop}.items() if v is not None}
    audit("analyses.search", "analysis", None, {"filters": filters, "page": page, "total": result["total"]})
    return jsonify(result)


@bp.get("/analyses/<int:analysis_id>")
@require_roles("support", "admin")
def get_analysis(analysis_id: int) -> Response:
    """One analysis with the raw result N8N returned, its failure reason and every timestamp."""
    with context.db().reader() as session:
        a = row_or_404(session, Analysis, analysis_id, "No analysis with this id.")
        phone = session.scalar(select(Farmer.phone).where(Farmer.id == a.farmer_id))
        body = _analysis_json(a, phone, detail=True)
    audit("analysis.read", "analysis", analysis_id)
    return jsonify(body)


SCHEMAS: dict[str, Any] = {
    "Analysis": {
        "type": "object",
        "required": ["id", "farmer_id", "status", "created_at"],
        "properties": {
            "id": {"type": "integer"}, "farmer_id": {"type": "integer"},
            "farmer_phone": {**NULLABLE_STR,
                             "description": "Masked (`+90 532 *** ** 67`) unless the caller is an admin."},
            "status": {"enum": STATUSES}, "crop": NULLABLE_STR, "health_score": NULLABLE_INT,
            "primary_concern": NULLABLE_STR, "failure_reason": NULLABLE_STR, "sponsor_id": NULLABLE_INT,
            "subscription_id": NULLABLE_INT, "attempts": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"}, "completed_at": TIMESTAMP, "failed_at": TIMESTAMP,
        },
    },
    "AnalysisDetail": {
        "allOf": [ref("Analysis"), {"type": "object", "properties": {
            "message_id": NULLABLE_INT, "notes": NULLABLE_STR, "location_text": NULLABLE_STR, "species": NULLABLE_STR,
            "severity": NULLABLE_STR, "prognosis": NULLABLE_STR, "diseases": {"type": ["array", "null"]},
            "pests": {"type": ["array", "null"]}, "urgent": {"type": "boolean"}, "token_usage": NULLABLE_INT,
            "cost_usd": {"type": ["number", "null"]}, "charge_ledger_id": NULLABLE_INT, "received_at": TIMESTAMP,
            "queued_at": TIMESTAMP, "processing_at": TIMESTAMP, "n8n_requested_at": TIMESTAMP,
            "delay_notice_at": TIMESTAMP,
            "media_ids": {"type": "array", "items": {"type": "string"},
                          "description": "WhatsApp media ids of every photo (an album), first = the first photo."},
            "photo_urls": {"type": "array", "items": {"type": "string"},
                           "description": "Signed, expiring `/media/` links to the optimised copy of every photo."},
            "original_photo_urls": {"type": "array", "items": {"type": "string"},
                                    "description": "Signed, expiring `/media/` links to every photo as the farmer "
                                                   "sent it."},
            "result": {"description": "The raw JSON the analyser returned, or null."}}}],
    },
    "AnalysisPage": page_of("Analysis"),
}

PATHS: dict[str, Any] = {
    "/api/v1/analyses": {"get": {
        "operationId": "listAnalyses", "tags": ["support"],
        "summary": "Analyses, newest first (roles: support, admin; phones masked for support). Audited.",
        "parameters": [
            *PAGE_PARAMS,
            query_param("status", {"enum": STATUSES}, "Analysis status."),
            query_param("farmer_id", {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID},
                        "Only this farmer's analyses."),
            query_param("since", {"type": "string", "format": "date-time"}, "Created at or after (UTC if no offset)."),
            query_param("until", {"type": "string", "format": "date-time"},
                        "Created before (UTC if no offset); later than `since`."),
            query_param("crop", {"type": "string", "maxLength": 100}, "Crop contains (case-insensitive, literal)."),
        ],
        "responses": {"200": json_response("A page of analyses.", ref("AnalysisPage")), **AUTHED_ERRORS},
    }},
    "/api/v1/analyses/{analysis_id}": {"get": {
        "operationId": "getAnalysis", "tags": ["support"],
        "summary": "One analysis with its raw result, failure reason and timestamps (roles: support, admin). "
                   "Audited.",
        "parameters": [path_param("analysis_id", ROW_ID, 1)],
        "responses": {"200": json_response("The analysis.", ref("AnalysisDetail")), **AUTHED_ERRORS,
                      "404": problem_response("No analysis with this id.")},
    }},
}
declare(PATHS, SCHEMAS)
