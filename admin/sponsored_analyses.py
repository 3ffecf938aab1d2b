"""`/sponsors/<id>/analyses`: the analyses a sponsor's codes paid for, each as that code's tier may see it.

For admins and for a sponsor user of that very sponsor (`admin.sponsors.own_sponsor`). What a tier
shows is `services.visibility`'s table, applied to the tier of the code that paid for THAT analysis;
analyses paid for by S codes count in the statistics only. Admins see what the sponsor sees (their
unfiltered view is `admin.analyses`). `analyses.csv` is the list's analyses as CSV, each row as its
tier may see it (`services.sponsor_export`). Every read is audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Response, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from admin import bp
from admin.auth import require_roles
from admin.errors import ApiError
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
from admin.pagination import QueryArgs, in_range, page_args, paginate
from admin.sponsors import SPONSOR_ID, SPONSOR_NOT_FOUND, own_sponsor
from bot.crops import CROPS
from models import Analysis, Farmer
from models.db import MAX_ROW_ID
from services import context
from services.audit import audit
from services.sponsor_export import export_sponsored_analyses_csv
from services.visibility import (
    ANALYSIS_TIERS,
    COLUMNS,
    analysis_view,
    crop_matches,
    find_sponsored_analysis,
    paying_tier,
    paying_tiers,
    sees_analyses,
    sponsored_analyses,
)

TOTALS_ONLY = ("This analysis was not paid for by one of your M, L or XL codes, so you see it only in the totals; "
               "see the statistics.")


def sponsored_analysis(session: Session, sponsor_id: int, analysis_id: int) -> tuple[Analysis, str]:
    """One completed analysis the sponsor paid for, and the tier of the code that paid for it: 404 for
    any other analysis (or an id beyond the columns), 403 when that tier shows totals only."""
    found = find_sponsored_analysis(session, sponsor_id, analysis_id) if analysis_id <= MAX_ROW_ID else None
    if found is None:
        raise ApiError(404, "This sponsor has no such analysis.")
    analysis, tier = found
    if tier is None or not sees_analyses(tier):
        raise ApiError(403, TOTALS_ONLY)
    return analysis, tier


@bp.get("/sponsors/<int:sponsor_id>/analyses")
@require_roles("admin", "sponsor")
def list_sponsored_analyses(sponsor_id: int) -> Response:
    """The analyses paid for by the sponsor's M, L and XL codes, each as its own code's tier may see it."""
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    crop = args.text("crop")
    since, until = args.time_range()
    with context.db().reader() as session:
        own_sponsor(session, sponsor_id)
        args.raise_if_errors()
        stmt = sponsored_analyses(sponsor_id).where(paying_tier().in_(ANALYSIS_TIERS))
        if crop is not None:
            stmt = stmt.where(crop_matches(crop))
        stmt = in_range(stmt, Analysis.created_at, since, until)
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


@bp.get("/sponsors/<int:sponsor_id>/analyses.csv")
@require_roles("admin", "sponsor")
def export_sponsored_analyses(sponsor_id: int) -> Response:
    """Every analysis the list would show (same filters, no pages), each row as its own code's tier may see it."""
    args = QueryArgs(request.args)
    crop = args.text("crop")
    since, until = args.time_range()
    with context.db().session() as session, session.begin():
        own_sponsor(session, sponsor_id)
        args.raise_if_errors()
        body = export_sponsored_analyses_csv(session, sponsor_id, crop=crop, since=since, until=until)
    response = Response(body, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="sponsor-{sponsor_id}-analyses.csv"'
    return response


@bp.get("/sponsors/<int:sponsor_id>/analyses/<int:analysis_id>")
@require_roles("admin", "sponsor")
def get_sponsored_analysis(sponsor_id: int, analysis_id: int) -> Response:
    with context.db().reader() as session:
        own_sponsor(session, sponsor_id)
        analysis, tier = sponsored_analysis(session, sponsor_id, analysis_id)
        view = analysis_view(analysis, session.get(Farmer, analysis.farmer_id), tier) or {}
    audit("sponsor.analysis.read", "analysis", analysis_id, {"sponsor_id": sponsor_id, "tier": tier})
    return jsonify(view)


_ANALYSIS_PROPS: dict[str, Any] = {
    "id": {"type": "integer"},
    "tier": {"enum": list(ANALYSIS_TIERS), "description": "The tier of the code that paid for this analysis: "
             "it decides what is shown, not the sponsor's highest purchase."},
    "date": TIMESTAMP,
    "crop": {**NULLABLE_STR, "description": "A machine value, stable: a known crop's key "
             f"({', '.join(key for key, _, _ in CROPS)}), or the crop as the farmer typed it. Show a key by "
             "its name in your reader's language."},
    "province": NULLABLE_STR,
    "health_score": {"type": ["integer", "null"]}, "main_concern": NULLABLE_STR,
    "diseases": {"type": "array"}, "pests": {"type": "array"},
    "farmer_name": NULLABLE_STR, "farmer_phone_masked": {**NULLABLE_STR, "description": "e.g. +90 532 *** ** 67"},
    "recommendations": {
        "type": ["object", "null"], "description": "As the farmer's report reads them: `immediate`, `short_term` "
        "and `preventive` steps (`action`, `details`, `timeline`, `priority` as the AI wrote it, `priority_level` "
        "one of critical, high, medium, low, unknown) and `monitoring` (`parameter`, `frequency`, `threshold`); "
        "null when there are none."},
    "can_message": {"type": "boolean"},
    "farmer_phone": NULLABLE_STR, "report": {"type": ["object", "null"]},
}
assert set(_ANALYSIS_PROPS) == set(COLUMNS["XL"])

SCHEMAS: dict[str, Any] = {
    "SponsoredAnalysis": {
        "type": "object", "required": list(COLUMNS["M"]), "properties": _ANALYSIS_PROPS,
        "description": "What the tier of the code that paid for this analysis shows. "
                       "M: id, tier, date, crop, province, health_score, main_concern, diseases, pests. "
                       "L adds farmer_name, farmer_phone_masked, recommendations, can_message. "
                       "XL adds farmer_phone and report (the whole raw result)."},
    "SponsoredAnalysisPage": page_of("SponsoredAnalysis"),
}

_FILTERS = [query_param("crop", {"type": "string", "maxLength": 200}, "A crop's key, its Turkish or English name, "
                         "or part of one (`salatalik`, `Salatalık`, `Cucumber`, `sala`); case and Turkish letters "
                         "are folded (`MISIR` finds misir)."),
            query_param("since", {"type": "string", "format": "date-time"}, "Created at or after."),
            query_param("until", {"type": "string", "format": "date-time"}, "Created before; later than `since`.")]

PATHS: dict[str, Any] = {
    "/api/v1/sponsors/{sponsor_id}/analyses": {
        "get": operation("listSponsoredAnalyses", "The analyses paid for by the sponsor's M, L and XL codes, each "
                         "as the tier of its own code may see it (those paid for by S codes count in the statistics "
                         "only). Audited.", "sponsors",
                         {"200": json_response("A page of analyses.", ref("SponsoredAnalysisPage")),
                          "404": SPONSOR_NOT_FOUND},
                         params=[SPONSOR_ID, *PAGE_PARAMS, *_FILTERS]),
    },
    "/api/v1/sponsors/{sponsor_id}/analyses.csv": {
        "get": operation("exportSponsoredAnalyses", "The analyses of the list (same filters, every page) as CSV, "
                         "each row as the tier of its own code may see it: the header has the columns of the highest "
                         "tier among the rows, a row leaves the others empty; lists and objects are JSON, text that "
                         "a spreadsheet would run as a formula is prefixed with `'`. Audited.", "sponsors",
                         {"200": {"description": "CSV with a header row.",
                                  "content": {"text/csv": {"schema": {"type": "string"}}}},
                          "404": SPONSOR_NOT_FOUND},
                         params=[SPONSOR_ID, *_FILTERS]),
    },
    "/api/v1/sponsors/{sponsor_id}/analyses/{analysis_id}": {
        "get": operation("getSponsoredAnalysis", "One sponsored analysis as the tier of the code that paid for it "
                         "may see it. Audited.", "sponsors",
                         {"200": json_response("The analysis.", ref("SponsoredAnalysis")),
                          "403": problem_response("The role may not use this endpoint, or an S code paid for this "
                                                  "analysis (totals only)."),
                          "404": problem_response("No such sponsor, or not this sponsor's analysis.")},
                         params=[SPONSOR_ID, path_param("analysis_id", ROW_ID, 1)]),
    },
}
declare(PATHS, SCHEMAS)
