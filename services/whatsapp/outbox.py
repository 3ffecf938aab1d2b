"""The outbox: every outbound message is a row in the message log before it is sent, and leaves in order.

`queue_message` writes the row (`pending`, due at once) in the caller's transaction, numbered in its
recipient's sequence (`seq`). After commit the caller sends what is first in that farmer's line at
once (`send_queued`); the senders (`send_due`: `flask sender`, the embedded worker) take every other
due row. The database decides what may go:

- Order: a row is sent only while no earlier row of the same recipient is still pending, so one that
  waits for a retry (Graph 429/5xx, 131056 pair rate) holds back the later replies to that farmer and
  nobody else's. Messages we write first (a sponsor's) have no place in the line: they neither wait
  nor hold anything back.
- One sender at a time: sending takes a lease on the row (`SEND_LEASE_SECONDS`, longer than a send can
  take); a sender that dies mid-send leaves it to expire, then another sender takes the row.
- Never twice from our side: the wamid Graph returns goes to Redis at once, then to the row (retried
  while the database refuses). A row whose wamid is in Redis is recorded, never sent again. What is
  left is a crash between Graph's answer and the Redis write (see docs/OPERATIONS.md).
- Errors follow the policy table of WHATSAPP.md: retryable ones wait `RETRY_BACKOFF_BASE ** attempt`
  seconds (4, 16, 64, 256) for at most `RETRIES` retries, 131047 sends the row's fallback template
  in the row's place, the rest mark the row failed where support sees it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from models import Direction, Farmer, Message, MessageStatus, utcnow
from services import context, metrics, runtime_settings, whatsapp
from services.inbox import apply_recorded_statuses
from services.leases import claim, lease_free, owner_name
from services.redis_conn import as_text, quick
from services.whatsapp import messages as wa
from services.whatsapp.errors import GraphAPIError, LimitError, Policy
from services.whatsapp.health import STATUS_BY_SEND_ERROR, TemplateRefused, set_template_status, template_refusal
from services.whatsapp.messages import Outbound
from translations.templates import TEMPLATES

log = logging.getLogger(__name__)

AUTH_ALERT_KEY = "ziraai:whatsapp:auth_error"
# Messages we write first rather than answers: checked again at delivery for opt-out and quiet hours,
# and outside the farmer's line of replies.
PROACTIVE_TEMPLATES = frozenset({"sponsor_message_tr"})
RETRIES = 4  # after the first attempt; then a retryable error is final
SEND_LEASE_SECONDS = 60  # the rate limiter's wait and Graph's timeouts (5 s connect, 20 s read) fit in it
SENT_KEY_TTL = 24 * 3600
RECORD_PAUSES = (0.2, 0.5, 1.0, 2.0, 4.0)  # between tries of writing a wamid the database refused
DUE_BATCH = 100
SERVICE_WINDOW = timedelta(hours=24)  # since the farmer's last message: free-form messages allowed
_SEQ_LOCK = 0x5A1A0  # PostgreSQL advisory locks of recipients' sequences: (this, hash of the phone)


# --- writing ------------------------------------------------------------------------------------------


def next_seq(session: Session, phone: str) -> int:
    """The recipient's next place in line. Numbers are taken under a per-recipient lock held until
    commit (on SQLite every writer holds the database), so their order is also the order of commits:
    a sender never sees number 5 before number 4 is visible."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_SEQ_LOCK, func.hashtext(phone))))
    last = session.scalar(select(func.max(Message.seq)).where(Message.phone == phone,
                                                             Message.direction == Direction.OUTBOUND.value))
    return (last or 0) + 1


def queue_message(session: Session, phone: str, out: Outbound, *, farmer_id: int | None = None,
                  fallback: Outbound | None = None, analysis_id: int | None = None,
                  seq: int | None = None) -> Message:
    """Log an outbound message as `pending`, last in its recipient's line (or at `seq`); the caller
    commits, then calls `send_queued`."""
    proactive = out.template_name in PROACTIVE_TEMPLATES
    now = utcnow()
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
        created_at=now,
        next_attempt_at=now,
        seq=None if proactive else seq or next_seq(session, phone),
        attempts=0,
    )
    session.add(row)
    session.flush()
    return row


def _outbound_to_dict(out: Outbound) -> dict[str, Any]:
    return {"type": out.type, "body": out.body, "text": out.text, "template_name": out.template_name,
            "template_params": out.template_params}


# --- what may go now ------------------------------------------------------------------------------------


def _sendable(now: datetime) -> list[ColumnElement[bool]]:
    """Pending, due, and first in its recipient's line."""
    earlier = aliased(Message)
    held_back = exists().where(earlier.direction == Direction.OUTBOUND.value,
                               earlier.status == MessageStatus.PENDING.value,
                               earlier.phone == Message.phone, earlier.seq < Message.seq)
    return [Message.direction == Direction.OUTBOUND.value, Message.status == MessageStatus.PENDING.value,
            Message.next_attempt_at <= now, ~held_back]


def _due_ids(now: datetime, *, phone: str | None = None, limit: int = DUE_BATCH) -> list[int]:
    """Rows that may be sent now and that no sender holds."""
    query = select(Message.id).where(*_sendable(now), lease_free(Message, now))
    if phone is not None:
        query = query.where(Message.phone == phone)
    with context.db().reader() as session:
        return list(session.scalars(query.order_by(Message.next_attempt_at, Message.id).limit(limit)))


def send_due(limit: int = DUE_BATCH) -> int:
    """One pass of a sender: try every row that may go now (the first of each recipient's line).
    Returns how many were tried; a RedisError (the shared rate limit is unreachable) ends the pass."""
    tried = 0
    for message_id in _due_ids(utcnow(), limit=limit):
        tried += send_pending(message_id) != "waiting"
    return tried


def send_queued(phone: str) -> None:
    """Right after a commit that queued replies: send the farmer's line now, in order, as far as it goes.
    What cannot go now (an earlier reply waits for its retry, Redis or the database fails) is left to
    the senders; this never raises, the caller's work is already committed."""
    try:
        for _ in range(20):  # a reply is a handful of messages; anything longer the senders finish
            due = _due_ids(utcnow(), phone=phone, limit=1)
            if not due or send_pending(due[0]) in ("retry", "waiting"):
                return
    except (RedisError, SQLAlchemyError) as exc:
        log.warning("could not send right away; the senders will", extra={"reason": repr(exc)[:200]})


# --- sending one row ---------------------------------------------------------------------------------


def sent_key(row: Message) -> str:
    """Where the wamid of a sent row is kept until the row has it. The creation time makes the key
    unique even when row ids start again (a database restored from a backup)."""
    return f"ziraai:outbox:sent:{row.id}:{int(row.created_at.timestamp() * 1_000_000)}"


def send_pending(message_id: int) -> str:
    """Send one row if it may go now: claim it, send it, record the wamid. Safe to call twice and from
    any number of processes. Returns what happened: `sent`, `already sent`, `retry` (due again later),
    `failed`, `template` (the fallback takes its place), `needs_template`, `refused` (a template Meta
    paused, disabled or rejected; not sent), `free_text` (refused, its text goes instead), `withheld`, `deferred`
    (quiet hours), `waiting` (not this row's turn, or another sender has it) or `missing`.
    RedisError propagates (the rate limit and the wamid memory live there); the row is then untouched."""
    owner = owner_name()
    with context.db().session() as session, session.begin():
        if not claim(session, Message, message_id, *_sendable(utcnow()), owner=owner, seconds=SEND_LEASE_SECONDS):
            return _not_claimed(session, message_id)
        row = session.get_one(Message, message_id)
        key = sent_key(row)
        # Only a row tried before can have been sent; a RedisError here rolls the claim back.
        known = quick(context.redis()).get(key) if row.attempts else None
        if known is not None:
            _accept(session, row, as_text(known) or "")
            log.warning("sent before, wamid recorded now (not sent again)", extra={"message_id": message_id})
            return "already sent"
        if row.template_name in PROACTIVE_TEMPLATES:
            held = _hold_proactive(session, row)
            if held is not None:
                return held
        if row.template_name:
            refusal = template_refusal(session, row.template_name, _template_language(row))
            if refusal is not None:
                return _refuse_template(session, row, refusal)
        row.attempts += 1
        body = row.payload or {}
    try:
        wamid = whatsapp.client().send(body)
    except GraphAPIError as exc:
        return _handle_error(message_id, exc)
    except (RedisError, TimeoutError):  # the shared rate limiter: Meta never saw this attempt
        with context.db().session() as session, session.begin():
            row = session.get_one(Message, message_id)
            row.attempts -= 1
            _let_go(row)
        raise
    _record_sent(message_id, key, wamid)
    return "sent"


def _not_claimed(session: Session, message_id: int) -> str:
    row = session.get(Message, message_id)
    if row is None or row.direction != Direction.OUTBOUND:
        log.warning("send asked for an unknown message", extra={"message_id": message_id})
        return "missing"
    return "already sent" if row.wamid or row.status != MessageStatus.PENDING else "waiting"


def _let_go(row: Message) -> None:
    row.lease_owner, row.lease_until = None, utcnow()


def _accept(session: Session, row: Message, wamid: str) -> None:
    row.wamid = wamid
    row.status = MessageStatus.ACCEPTED.value
    row.error_code = row.error_title = None
    _let_go(row)
    session.flush()
    apply_recorded_statuses(session, wamid)


def _record_sent(message_id: int, key: str, wamid: str) -> None:
    """Graph accepted the message: remember its wamid in Redis at once, then in the row, trying again
    while the database refuses. If every try fails the row's lease expires and the next sender finds
    the wamid in Redis: recorded, not re-sent."""
    with contextlib.suppress(RedisError):
        quick(context.redis()).set(key, wamid, ex=SENT_KEY_TTL)
    for pause in (*RECORD_PAUSES, None):
        try:
            with context.db().session() as session, session.begin():
                _accept(session, session.get_one(Message, message_id), wamid)
            break
        except (OperationalError, InterfaceError) as exc:  # the connection, not the statement
            if pause is None:
                raise
            log.warning("could not record a sent message's wamid; trying again",
                        extra={"message_id": message_id, "reason": type(exc).__name__})
            time.sleep(pause)
    metrics.outbound_send("sent")
    _clear_auth_alert()
    log.info("outbound message accepted", extra={"message_id": message_id, "wamid": wamid})


def _hold_proactive(session: Session, row: Message) -> str | None:
    """A message we write first is withheld from a farmer who opted out meanwhile, and waits out quiet hours."""
    farmer = session.get(Farmer, row.farmer_id) if row.farmer_id is not None else None
    if farmer is not None and not farmer.accepts_proactive:
        row.status, row.failed_at = MessageStatus.FAILED.value, utcnow()
        row.error_title = "withheld: the farmer opted out before delivery"
        _let_go(row)
        log.info("proactive message withheld: farmer opted out", extra={"message_id": row.id})
        return "withheld"
    until = runtime_settings.current().quiet_until(utcnow())
    if until is None:
        return None
    row.next_attempt_at = until
    _let_go(row)
    log.info("proactive message waits for the end of quiet hours",
             extra={"message_id": row.id, "until": until.isoformat()})
    return "deferred"


def _template_language(row: Message) -> str:
    language = ((row.payload or {}).get("template") or {}).get("language") or {}
    return str(language.get("code") or "tr") if isinstance(language, dict) else "tr"


def _refuse_template(session: Session, row: Message, refusal: TemplateRefused) -> str:
    """A template Meta would refuse is not sent: the row fails with the reason. Inside the farmer's 24-hour
    window a reply's text goes instead (with its quick replies as buttons when they fit), in its place in
    line; a message we write first (a sponsor's) has no place in line and is only refused."""
    row.status, row.failed_at = MessageStatus.FAILED.value, utcnow()
    row.error_code, row.error_title = None, f"not sent: {refusal.reason}"[:300]
    _let_go(row)
    metrics.outbound_send("failed")
    extra = {"message_id": row.id, "template": refusal.name, "template_status": refusal.status}
    farmer = session.get(Farmer, row.farmer_id) if row.farmer_id is not None else None
    in_window = (farmer is not None and farmer.last_inbound_at is not None
                 and utcnow() - farmer.last_inbound_at < SERVICE_WINDOW)
    if not in_window or not row.text or row.template_name in PROACTIVE_TEMPLATES:
        log.error("template refused and no free-text fallback (outside the 24-hour window)", extra=extra)
        return "refused"
    new = queue_message(session, row.phone, _free_text(row), farmer_id=row.farmer_id, analysis_id=row.analysis_id,
                        seq=row.seq)
    log.warning("template refused: its text is sent as a free-form message instead",
                extra={**extra, "fallback_id": new.id})
    return "free_text"


def _free_text(row: Message) -> Outbound:
    """The template's text as a free-form message; its quick replies become reply buttons when they fit."""
    text = row.text or ""
    definition = TEMPLATES.get(row.template_name or "")
    if definition and definition.buttons:
        try:
            return wa.buttons(row.phone, text, [(b.payload, b.text) for b in definition.buttons])
        except LimitError:
            pass
    return wa.text(row.phone, text[:wa.TEXT_BODY_MAX])


# --- errors -------------------------------------------------------------------------------------------


def retry_delay(attempts: int) -> timedelta:
    """`base ** n` seconds after attempt n (4, 16, 64, 256 for base 4): WhatsApp's advice for 131056,
    and gentle enough for throughput limits and transient errors too."""
    base = context.settings().RETRY_BACKOFF_BASE
    return timedelta(seconds=base**attempts if base else 0)


def _handle_error(message_id: int, exc: GraphAPIError) -> str:
    extra = {"message_id": message_id, "error_code": exc.code, "http_status": exc.http_status,
             "policy": exc.policy.value}
    metrics.whatsapp_error(exc.code if exc.code is not None else f"http_{exc.http_status}" if exc.http_status
                           else "network", "send")
    with context.db().session() as session, session.begin():
        row = session.get_one(Message, message_id)
        row.error_code, row.error_title = exc.code, exc.title
        _let_go(row)
        if exc.code in STATUS_BY_SEND_ERROR and row.template_name:
            set_template_status(session, row.template_name, _template_language(row), STATUS_BY_SEND_ERROR[exc.code],
                                f"send refused by Meta ({exc.code}): {exc.title}", utcnow())
        if exc.retryable and row.attempts <= RETRIES:
            row.next_attempt_at = utcnow() + retry_delay(row.attempts)
            metrics.outbound_send("retried")
            log.warning("send failed, will retry", extra={**extra, "attempts": row.attempts,
                                                          "next_attempt_at": row.next_attempt_at.isoformat()})
            return "retry"
        row.status, row.failed_at = MessageStatus.FAILED.value, utcnow()
        metrics.outbound_send("failed")
        if exc.policy is Policy.TEMPLATE:
            return _queue_fallback(session, row, extra)
    if exc.retryable:
        log.warning("send failed, giving up", extra=extra)
    elif exc.policy is Policy.AUTH:
        log.critical("WhatsApp token rejected: every send will fail until it is replaced", extra=extra)
        _set_auth_alert(exc)
    elif exc.policy is Policy.ALERT:
        log.error("send refused by Meta; an operator must look",
                  extra={**extra, "template": row.template_name, "template_params": row.template_params})
    else:
        log.warning("send failed, not retried", extra=extra)
    return "failed"


def _queue_fallback(session: Session, row: Message, extra: dict[str, Any]) -> str:
    """Outside the 24-hour window: the row's template takes its place in the line (same transaction, so
    no later reply can slip in between)."""
    if not row.fallback:
        log.warning("outside the 24-hour window and no template to fall back to", extra=extra)
        return "needs_template"
    fb = row.fallback
    template = Outbound(fb["type"], fb["body"], fb.get("text"), fb.get("template_name"),
                        fb.get("template_params") or [])
    new = queue_message(session, row.phone, template, farmer_id=row.farmer_id, analysis_id=row.analysis_id,
                        seq=row.seq)
    log.info("outside the 24-hour window: template queued instead", extra={**extra, "fallback_id": new.id})
    return "template"


def _set_auth_alert(exc: GraphAPIError) -> None:
    with contextlib.suppress(RedisError):
        context.redis().set(AUTH_ALERT_KEY, f"{exc.code}: {exc.title}")


def _clear_auth_alert() -> None:
    with contextlib.suppress(RedisError):
        context.redis().delete(AUTH_ALERT_KEY)
