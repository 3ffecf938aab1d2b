"""`POST /webhooks/n8n/<analysis_id>`: N8N posting a result back (callback mode).

Signed with version 2 of `X-ZiraAI-Signature` (`services.signing`): purpose `result`, the analysis in
the path, within 5 minutes; the body's `analysis_id` must be the path's. A bad, stale or misdirected
signature is a 403 (the reason goes to the log), a body that is not a storable JSON object a 400, an
id no analysis can have or has a 404. The result is accepted once: a conditional UPDATE stores it only
on an analysis still in progress with no result yet; a repeat, or a result for an analysis that
already ended, is a no-op 200. The work (normalising, replying, refunding) happens in the
`finish_analysis` job.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select, update
from werkzeug.exceptions import RequestEntityTooLarge

from models import Analysis, AnalysisStatus
from models.db import affected_rows
from services import context, signing
from services.n8n import InvalidResult, parse_result
from services.problems import problem
from services.queue import ANALYSIS, try_enqueue_unique
from services.signing import Purpose

log = logging.getLogger(__name__)
bp = Blueprint("n8n_webhook", __name__)

MAX_ANALYSIS_ID = 2**31 - 1  # analyses.id is a PostgreSQL integer: a larger id names no analysis


@bp.post("/webhooks/n8n/<int:analysis_id>")
def receive_result(analysis_id: int) -> Response | tuple[Response, int]:
    ref = {"analysis_id": analysis_id}
    if not 0 < analysis_id <= MAX_ANALYSIS_ID:
        return problem(404, title="unknown analysis")
    try:
        raw = request.get_data(cache=True)  # Flask's MAX_CONTENT_LENGTH bounds the body
    except RequestEntityTooLarge:
        return problem(413, title="body too large")
    refusal = signing.verify(raw, request.headers.get(signing.HEADER), purpose=Purpose.RESULT,
                             analysis_id=analysis_id, secrets=context.settings().n8n_secrets, now=time.time())
    if refusal is not None:
        log.warning("N8N callback refused: signature", extra={**ref, "reason": refusal.value})
        return problem(403, title="invalid signature")
    try:
        body = parse_result(raw)
    except InvalidResult as exc:
        log.warning("N8N callback refused: invalid result", extra={**ref, "reason": str(exc)})
        return problem(400, title=f"invalid result: {exc}")
    if signing.check_body_id(body, analysis_id) is not None:
        log.warning("N8N callback refused: signature", extra={**ref, "reason": signing.Refusal.WRONG_ID.value})
        return problem(403, title="invalid signature")
    db = context.db()
    with db.session() as session, session.begin():
        if session.scalar(select(Analysis.id).where(Analysis.id == analysis_id)) is None:
            return problem(404, title="unknown analysis")
        stored = affected_rows(session.execute(
            update(Analysis)
            .where(Analysis.id == analysis_id, Analysis.result.is_(None),
                   Analysis.status.in_([AnalysisStatus.QUEUED.value, AnalysisStatus.PROCESSING.value]))
            .values(result=body)
            .execution_options(synchronize_session=False)
        ))
    if not stored:
        log.info("N8N callback ignored: already answered or analysis ended", extra=ref)
        return jsonify({"status": "ignored"}), 200
    try_enqueue_unique(context.redis(), ANALYSIS, "services.analysis.finish_analysis", f"finish-{analysis_id}",
                       analysis_id)
    return jsonify({"status": "accepted"}), 200
