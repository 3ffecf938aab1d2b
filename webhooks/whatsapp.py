"""`/webhooks/whatsapp`: Meta's verification handshake and the signed event deliveries.

Only what must happen before Meta gets its answer: check the signature over the raw bytes,
parse, commit the rows (with the error policy's answer to a `failed` status: a fallback template or a
resend, queued for the senders), hand the new inbound messages to the workers (one RPUSH of their ids,
`services.handoff`), answer 200. Anything signed is
acknowledged (a 4xx/5xx makes Meta retry for days); what we cannot understand is stored.
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Response, request

from models import utcnow
from services import context, handoff, metrics
from services.inbox import Recorded, plain_message, record_plain_message, record_webhook
from services.json_input import JsonInputError, may_hold_unstorable, parse_json, storable
from services.problems import problem
from services.signing import META_HEADER, meta_signature_ok
from services.whatsapp.outbox import apply_status_failures
from services.whatsapp.updates import parse_webhook

log = logging.getLogger(__name__)
bp = Blueprint("whatsapp_webhook", __name__)

MAX_BODY_BYTES = 3 * 1024 * 1024
OK_BODY = b'{"status":"ok"}\n'  # what Meta gets for every delivery we keep (jsonify's bytes, built once)


@bp.get("/webhooks/whatsapp")
def verify() -> Response | tuple[str, int, dict[str, str]]:
    """Meta's subscription handshake: the challenge is echoed as plain text, never as something a browser
    would render (it comes from the query string, so anyone can choose it)."""
    mode = request.args.get("hub.mode", "")
    token = request.args.get("hub.verify_token", "")
    challenge = request.args.get("hub.challenge", "")
    expected = context.settings().WHATSAPP_VERIFY_TOKEN
    if mode != "subscribe" or not hmac.compare_digest(token.encode(), expected.encode()):
        log.warning("webhook verification refused", extra={"mode": mode[:20]})
        return problem(403, title="verification failed")
    if not challenge:
        return problem(400, title="hub.challenge is missing")
    return challenge, 200, {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"}


def _too_large(declared: int | None) -> Response:
    log.warning("webhook body refused: too large", extra={"bytes": declared, "chunked": declared is None})
    metrics.webhook("too_large")
    return problem(413, title="body larger than 3 MB")


@bp.post("/webhooks/whatsapp")
def receive() -> Response:
    if (request.content_length or 0) > MAX_BODY_BYTES:  # refused before reading a byte of it
        return _too_large(request.content_length)
    # A body without a Content-Length (chunked) is read up to the limit plus one byte: reading stops at the
    # limit without an error, so only the extra byte tells a body over the limit from one at it.
    request.max_content_length = MAX_BODY_BYTES + 1
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY_BYTES:
        return _too_large(None)
    header = request.headers.get(META_HEADER)
    settings = context.settings()
    if not header:
        log.warning("webhook refused: no signature header")
        metrics.webhook("unsigned")
        return problem(401, title="missing X-Hub-Signature-256")
    if not meta_signature_ok(raw, header, settings.WHATSAPP_APP_SECRET):
        log.warning("webhook refused: wrong signature")
        metrics.webhook("bad_signature")
        return problem(403, title="invalid signature")
    try:
        body = parse_json(raw)
    except JsonInputError as exc:
        log.warning("webhook refused: %s", exc, extra={"bytes": len(raw)})
        metrics.webhook("malformed")
        return problem(400, title=f"body refused: {exc}")
    if may_hold_unstorable(raw):
        body = storable(body)
    now = utcnow()  # when the delivery arrived: no time in it is believed to be much later
    parsed = parse_webhook(body, now)
    our_numbers = settings.phone_number_ids
    plain = plain_message(parsed, our_numbers)
    db, now = context.db(), utcnow()
    try:
        if plain is not None and db.dialect == "postgresql":  # most deliveries: one statement, committed by itself
            with db.driver_autocommit() as conn:
                recorded = record_plain_message(conn, plain, now)
        else:
            with db.session() as session, session.begin():
                recorded = record_webhook(session, parsed, our_numbers, now)
                apply_status_failures(session, recorded.failures, now)
    except Exception:
        metrics.webhook("error")  # the database is down, say: Meta retries, and the operator should know
        raise
    handoff.push(context.redis(), recorded.new_message_ids)
    if (recorded.new_message_ids or recorded.new_statuses or recorded.unhandled) and log.isEnabledFor(logging.INFO):
        log.info("webhook accepted", extra={
            "new_messages": len(recorded.new_message_ids), "duplicates": recorded.duplicate_messages,
            "new_statuses": recorded.new_statuses, "unhandled": recorded.unhandled,
            "wamids": [m.wamid for m in parsed.messages][:10],
        })
    metrics.webhook(_outcome(recorded, had_statuses=bool(parsed.statuses)))
    return Response(OK_BODY, mimetype="application/json")


def _outcome(recorded: Recorded, *, had_statuses: bool) -> str:
    """accepted: something new was stored; else unhandled: something was not understood; else
    duplicate: everything had been seen before."""
    if recorded.new_message_ids or recorded.new_statuses:
        return "accepted"
    if recorded.unhandled:
        return "unhandled"
    if recorded.duplicate_messages or had_statuses:
        return "duplicate"
    return "accepted"
