"""`POST /webhooks/n8n/<analysis_id>`: N8N posting a result back (callback mode).

Signed like our requests to N8N (`X-ZiraAI-Signature`, HMAC-SHA256 of the raw body). The result
is accepted once: a conditional UPDATE stores it only on an analysis still in progress with no
result yet; a repeat, or a result for an analysis that already ended, is a no-op 200. The work
(normalising, replying, refunding) happens in the `finish_analysis` job.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select, update

from models import Analysis, AnalysisStatus
from services import context
from services.n8n import verify
from services.queue import ANALYSIS, try_enqueue_unique

log = logging.getLogger(__name__)
bp = Blueprint("n8n_webhook", __name__)


def _problem(status: int, title: str) -> tuple[Response, int]:
    response = jsonify({"type": "about:blank", "title": title, "status": status})
    response.mimetype = "application/problem+json"
    return response, status


@bp.post("/webhooks/n8n/<int:analysis_id>")
def receive_result(analysis_id: int) -> tuple[Response, int]:
    raw = request.get_data(cache=True)
    if not verify(raw, request.headers.get("X-ZiraAI-Signature"), context.settings().N8N_SECRET):
        log.warning("N8N callback refused: bad signature", extra={"analysis_id": analysis_id})
        return _problem(403, "invalid signature")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _problem(400, "body is not valid JSON")
    db = context.db()
    with db.session() as session, session.begin():
        if session.scalar(select(Analysis.id).where(Analysis.id == analysis_id)) is None:
            return _problem(404, "unknown analysis")
        stored = session.execute(
            update(Analysis)
            .where(Analysis.id == analysis_id, Analysis.result.is_(None),
                   Analysis.status.in_([AnalysisStatus.QUEUED.value, AnalysisStatus.PROCESSING.value]))
            .values(result=body if isinstance(body, dict) else {"raw": body})
            .execution_options(synchronize_session=False)
        ).rowcount
    if not stored:
        log.info("N8N callback ignored: already answered or analysis ended", extra={"analysis_id": analysis_id})
        return jsonify({"status": "ignored"}), 200
    try_enqueue_unique(context.redis(), ANALYSIS, "services.analysis.finish_analysis", f"finish-{analysis_id}",
                       analysis_id)
    return jsonify({"status": "accepted"}), 200
