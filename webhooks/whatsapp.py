"""`/webhooks/whatsapp`: Meta's verification handshake and the signed event deliveries.

Only what must happen before Meta gets its answer: check the signature over the raw bytes,
parse, commit the rows, enqueue one job per new inbound message, answer 200. Anything signed is
acknowledged (a 4xx/5xx makes Meta retry for days); what we cannot understand is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

from flask import Blueprint, Response, jsonify, request

from services import context
from services.inbox import record_webhook
from services.logs import correlation
from services.queue import INBOUND, inbound_retry, try_enqueue_unique
from services.sweeper import HANDLE_INBOUND
from services.whatsapp.updates import parse_webhook

log = logging.getLogger(__name__)
bp = Blueprint("whatsapp_webhook", __name__)

MAX_BODY_BYTES = 3 * 1024 * 1024


def _error(status: int, title: str) -> tuple[Response, int]:
    response = jsonify({"type": "about:blank", "title": title, "status": status})
    response.mimetype = "application/problem+json"
    return response, status


@bp.get("/webhooks/whatsapp")
def verify() -> tuple[Response | str, int, dict[str, str]] | tuple[Response, int]:
    mode = request.args.get("hub.mode", "")
    token = request.args.get("hub.verify_token", "")
    challenge = request.args.get("hub.challenge", "")
    expected = context.settings().WHATSAPP_VERIFY_TOKEN
    if mode != "subscribe" or not hmac.compare_digest(token.encode(), expected.encode()):
        log.warning("webhook verification refused", extra={"mode": mode[:20]})
        return _error(403, "verification failed")
    return challenge, 200, {"Content-Type": "text/plain; charset=utf-8"}


def signature_ok(raw: bytes, header: str, secret: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header.strip().lower().encode(), expected.encode())


@bp.post("/webhooks/whatsapp")
def receive() -> tuple[Response, int]:
    if (request.content_length or 0) > MAX_BODY_BYTES:
        log.warning("webhook body refused: too large", extra={"bytes": request.content_length})
        return _error(413, "body larger than 3 MB")
    raw = request.get_data(cache=True)  # Flask's MAX_CONTENT_LENGTH bounds bodies without a length
    header = request.headers.get("X-Hub-Signature-256")
    if not header:
        log.warning("webhook refused: no signature header")
        return _error(401, "missing X-Hub-Signature-256")
    if not signature_ok(raw, header, context.settings().WHATSAPP_APP_SECRET):
        log.warning("webhook refused: wrong signature")
        return _error(403, "invalid signature")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        log.warning("webhook refused: body is not JSON", extra={"bytes": len(raw)})
        return _error(400, "body is not valid JSON")

    parsed = parse_webhook(body)
    with context.db().session() as session, session.begin():
        recorded = record_webhook(session, parsed)
    redis = context.redis()
    for message_id in recorded.new_message_ids:
        with correlation(f"inbound-{message_id}"):
            try_enqueue_unique(redis, INBOUND, HANDLE_INBOUND, f"inbound-{message_id}", message_id,
                               retry=inbound_retry())
    if recorded.new_message_ids or recorded.new_statuses or recorded.unhandled:
        log.info("webhook accepted", extra={
            "new_messages": len(recorded.new_message_ids), "duplicates": recorded.duplicate_messages,
            "new_statuses": recorded.new_statuses, "unhandled": recorded.unhandled,
            "wamids": [m.wamid for m in parsed.messages][:10],
        })
    return jsonify({"status": "ok"}), 200
