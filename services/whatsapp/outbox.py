"""The outbox: every outbound message is a row in the message log before it is sent.

`queue_message` writes the row (status `pending`) in the caller's transaction; after commit the
caller calls `enqueue_delivery`, and the `deliver` job sends it, stores the wamid and applies any
status that arrived first. If Redis is down the row waits for the sweeper. Errors follow the
policy table of WHATSAPP.md: retryable ones are raised for RQ to retry (4^n s backoff), 131047
sends the row's fallback template, the rest mark the row failed where support sees it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from models import Direction, Farmer, Message, MessageStatus, utcnow
from services import context, runtime_settings, whatsapp
from services.inbox import apply_recorded_statuses
from services.jobs import app_job
from services.queue import OUTBOUND, get_queue, is_final_attempt, retry_policy, try_enqueue_unique
from services.whatsapp.errors import GraphAPIError, Policy
from services.whatsapp.messages import Outbound

log = logging.getLogger(__name__)

AUTH_ALERT_KEY = "ziraai:whatsapp:auth_error"
DELIVER = "services.whatsapp.outbox.deliver"
# Messages we write first rather than answers: checked again at delivery for opt-out and quiet hours.
PROACTIVE_TEMPLATES = frozenset({"sponsor_message_tr"})


def queue_message(session: Session, phone: str, out: Outbound, *, farmer_id: int | None = None,
                  fallback: Outbound | None = None, analysis_id: int | None = None) -> Message:
    """Log an outbound message as `pending`; the caller commits, then calls `enqueue_delivery`."""
    row = Message(
        direction=Direction.OUTBOUND.value,
        phone=phone,
        farmer_id=farmer_id,
        type=out.type,
        text=out.text,
        template_name=out.template_name,
        template_params=out.template_params or None,
        payload=out.body,
        fallback=_outbound_to_dict(fallback) if fallback else None,
        status=MessageStatus.PENDING.value,
        analysis_id=analysis_id,
        created_at=utcnow(),
        attempts=0,
    )
    session.add(row)
    session.flush()
    return row


def enqueue_delivery(redis: Redis, message_id: int) -> bool:
    base = context.settings().RETRY_BACKOFF_BASE
    return try_enqueue_unique(redis, OUTBOUND, DELIVER, f"outbound-{message_id}", message_id,
                              retry=retry_policy(base))


def _outbound_to_dict(out: Outbound) -> dict[str, Any]:
    return {"type": out.type, "body": out.body, "text": out.text, "template_name": out.template_name,
            "template_params": out.template_params}


@app_job
def deliver(message_id: int) -> str:
    """The `outbound` job: send one pending message; the last RQ attempt marks a retryable failure final."""
    return send_pending(message_id, final=is_final_attempt())


def send_pending(message_id: int, *, final: bool) -> str:
    """Send one pending outbound message. Safe to run twice: a row with a wamid is not sent again.
    A retryable error is raised; with `final=False` the row stays `pending` for a later attempt."""
    db = context.db()
    with db.session() as session, session.begin():
        row = session.get(Message, message_id)
        if row is None or row.direction != Direction.OUTBOUND:
            log.warning("deliver job for an unknown message", extra={"message_id": message_id})
            return "missing"
        if row.wamid or row.status != MessageStatus.PENDING:
            return "already sent"
        if row.template_name in PROACTIVE_TEMPLATES:
            held = _hold_proactive(session, row)
            if held is not None:
                return held
        row.attempts += 1
        body = row.payload or {}
    try:
        wamid = whatsapp.client().send(body)
    except GraphAPIError as exc:
        return _handle_error(message_id, exc, final=final)
    with db.session() as session, session.begin():
        row = session.get_one(Message, message_id)
        row.wamid = wamid
        row.status = MessageStatus.ACCEPTED.value
        row.error_code = row.error_title = None
        session.flush()
        apply_recorded_statuses(session, wamid)
    _clear_auth_alert()
    log.info("outbound message accepted", extra={"message_id": message_id, "wamid": wamid})
    return "sent"


def _hold_proactive(session: Session, row: Message) -> str | None:
    """A message we write first is withheld from a farmer who opted out meanwhile, and waits out quiet hours."""
    farmer = session.get(Farmer, row.farmer_id) if row.farmer_id is not None else None
    if farmer is not None and not farmer.accepts_proactive:
        row.status, row.failed_at = MessageStatus.FAILED.value, utcnow()
        row.error_title = "withheld: the farmer opted out before delivery"
        log.info("proactive message withheld: farmer opted out", extra={"message_id": row.id})
        return "withheld"
    until = runtime_settings.current().quiet_until(utcnow())
    if until is None:
        return None
    base = context.settings().RETRY_BACKOFF_BASE
    try:  # a distinct job id: this job ("outbound-<id>") is still running
        get_queue(OUTBOUND, context.redis()).enqueue_at(
            until, DELIVER, row.id, job_id=f"outbound-{row.id}-after-{int(until.timestamp())}",
            retry=retry_policy(base), result_ttl=3600, failure_ttl=30 * 86400)
    except RedisError as exc:  # the row stays pending: the sweeper brings it back here later
        log.warning("could not schedule a message after quiet hours", extra={"message_id": row.id,
                                                                               "reason": repr(exc)})
    log.info("proactive message waits for the end of quiet hours",
             extra={"message_id": row.id, "until": until.isoformat()})
    return "deferred"


def _mark_failed(message_id: int, exc: GraphAPIError, *, final: bool) -> Message:
    with context.db().session() as session, session.begin():
        row = session.get_one(Message, message_id)
        row.error_code = exc.code
        row.error_title = exc.title
        if final:
            row.status = MessageStatus.FAILED.value
            row.failed_at = utcnow()
        return row


def _handle_error(message_id: int, exc: GraphAPIError, *, final: bool) -> str:
    extra = {"message_id": message_id, "error_code": exc.code, "http_status": exc.http_status,
             "policy": exc.policy.value}
    if exc.retryable:
        _mark_failed(message_id, exc, final=final)
        log.warning("send failed, %s", "giving up" if final else "will retry", extra=extra)
        raise exc
    row = _mark_failed(message_id, exc, final=True)
    if exc.policy is Policy.TEMPLATE:
        return _send_fallback(row, extra)
    if exc.policy is Policy.AUTH:
        log.critical("WhatsApp token rejected: every send will fail until it is replaced", extra=extra)
        _set_auth_alert(exc)
    elif exc.policy is Policy.ALERT:
        log.error("send refused by Meta; an operator must look",
                  extra={**extra, "template": row.template_name, "template_params": row.template_params})
    else:
        log.warning("send failed, not retried", extra=extra)
    return "failed"


def _send_fallback(row: Message, extra: dict[str, Any]) -> str:
    if not row.fallback:
        log.warning("outside the 24-hour window and no template to fall back to", extra=extra)
        return "needs_template"
    fb = row.fallback
    template = Outbound(fb["type"], fb["body"], fb.get("text"), fb.get("template_name"),
                        fb.get("template_params") or [])
    with context.db().session() as session, session.begin():
        new = queue_message(session, row.phone, template, farmer_id=row.farmer_id, analysis_id=row.analysis_id)
    enqueue_delivery(context.redis(), new.id)
    log.info("outside the 24-hour window: template queued instead", extra={**extra, "fallback_id": new.id})
    return "template"


def _set_auth_alert(exc: GraphAPIError) -> None:
    with contextlib.suppress(RedisError):
        context.redis().set(AUTH_ALERT_KEY, f"{exc.code}: {exc.title}")


def _clear_auth_alert() -> None:
    with contextlib.suppress(RedisError):
        context.redis().delete(AUTH_ALERT_KEY)
