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
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from services import context, metrics
from services.inbox import Recorded, record_webhook
from services.logs import correlation
from services.queue import INBOUND, inbound_retry, try_enqueue_unique
from services.sweeper import HANDLE_INBOUND
from services.whatsapp.updates import parse_webhook

log = logging.getLogger(__name__)
bp = Blueprint("whatsapp_webhook", __name__)

MAX_BODY_BYTES = 3 * 1024 * 1024
MAX_DEPTH = 64  # Meta's bodies nest about 8 levels; deeper is refused like malformed JSON


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


def _not_json(name: str) -> float:
    """`NaN` / `Infinity` are not JSON (RFC 8259), and PostgreSQL's jsonb refuses them."""
    raise ValueError(f"{name} is not valid JSON")


# `\u0000` and lone surrogates (`\ud800`..`\udfff`) are valid JSON escapes that no database column
# can hold (PostgreSQL text/jsonb refuse NUL; no UTF-8 encoder takes a lone surrogate). Only bodies
# containing such an escape are walked; Meta's real deliveries never do.
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(0000|[dD][89a-fA-F])")
_UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Checked without recursion, so that everything after it (the sanitising walk, JSON encoding) stays far
    from Python's recursion limit whatever the body."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def storable(value: Any) -> Any:
    """The same JSON value with NUL and lone surrogates replaced by U+FFFD, in keys and strings."""
    if isinstance(value, str):
        return _UNSTORABLE_CHARS.sub("\ufffd", value)
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value


def signature_ok(raw: bytes, header: str, secret: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header.strip().lower().encode(), expected.encode())


@bp.post("/webhooks/whatsapp")
def receive() -> tuple[Response, int]:
    if (request.content_length or 0) > MAX_BODY_BYTES:
        log.warning("webhook body refused: too large", extra={"bytes": request.content_length})
        metrics.webhook("too_large")
        return _error(413, "body larger than 3 MB")
    try:
        raw = request.get_data(cache=True)  # Flask's MAX_CONTENT_LENGTH bounds bodies without a length
    except RequestEntityTooLarge:
        metrics.webhook("too_large")
        return _error(413, "body larger than 3 MB")
    header = request.headers.get("X-Hub-Signature-256")
    if not header:
        log.warning("webhook refused: no signature header")
        metrics.webhook("unsigned")
        return _error(401, "missing X-Hub-Signature-256")
    if not signature_ok(raw, header, context.settings().WHATSAPP_APP_SECRET):
        log.warning("webhook refused: wrong signature")
        metrics.webhook("bad_signature")
        return _error(403, "invalid signature")
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested deeper than Python parses
        log.warning("webhook refused: body is not JSON", extra={"bytes": len(raw)})
        metrics.webhook("malformed")
        return _error(400, "body is not valid JSON")

    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and _nested_deeper_than(body, MAX_DEPTH):
        log.warning("webhook refused: body nested too deeply", extra={"bytes": len(raw)})
        metrics.webhook("malformed")
        return _error(400, f"body nested deeper than {MAX_DEPTH} levels")
    if _UNSTORABLE_ESCAPE.search(raw):
        body = storable(body)
    parsed = parse_webhook(body)
    try:
        with context.db().session() as session, session.begin():
            recorded = record_webhook(session, parsed)
    except Exception:
        metrics.webhook("error")  # the database is down, say: Meta retries, and the operator should know
        raise
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
    metrics.webhook(_outcome(recorded, had_statuses=bool(parsed.statuses)))
    return jsonify({"status": "ok"}), 200


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
