"""What a failed send says beyond its message, and the row that goes in the failed one's place.

Both of the outbox's failure paths use it: Graph refusing a send, and Meta reporting a sent message
`failed` later (`outbox.apply_status_failures`). A code may say something about the farmer (cannot be
reached, stopped marketing, must be paced), a template or the whole account (`errors.EFFECT_BY_CODE`,
recorded by `apply_effect`); a retryable failure is sent again after `retry_delay`; one Meta will not
take by user id goes to the farmer's phone (`to_phone`). The outbox imports this module, never the
reverse: a fallback template is queued with `queue_message`, so that and `apply_status_failures`
(which queues one) stay in the outbox.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Direction, Farmer, Message, MessageStatus, utcnow
from services import context, metrics
from services.whatsapp.errors import EFFECT_BY_CODE, Effect
from services.whatsapp.health import ACCOUNT_BLOCK_KEY, ACCOUNT_BLOCK_SECONDS, STATUS_BY_SEND_ERROR, set_template_status
from services.whatsapp.messages import address_field

log = logging.getLogger(__name__)

# What a failure says beyond its message (errors.EFFECT_BY_CODE):
PACE_SECONDS = 6  # 131056: at most one message per this many seconds to that farmer...
PACE_WINDOW = timedelta(hours=1)  # ...for this long after Meta said so
MARKETING_PAUSE = timedelta(hours=24)  # 131049 / 130472: no sponsor message to that farmer before this


def template_language(row: Message) -> str:
    """The language code of a template row's body (the template registry keys templates by name and language)."""
    language = ((row.payload or {}).get("template") or {}).get("language") or {}
    return str(language.get("code") or "tr") if isinstance(language, dict) else "tr"


def retry_delay(attempts: int) -> timedelta:
    """`base ** n` seconds after attempt n (4, 16, 64, 256 for base 4): WhatsApp's advice for 131056,
    and gentle enough for throughput limits and transient errors too."""
    base = context.settings().RETRY_BACKOFF_BASE
    return timedelta(seconds=base**attempts if base else 0)


def queue_resend(session: Session, row: Message, now: datetime, extra: dict[str, Any], *,
                 payload: dict[str, Any] | None = None, due: datetime | None = None) -> Message:
    """The same body (or `payload`) again after the backoff (or at `due`), from the same number of ours
    and in the failed row's place in the line."""
    due = due or now + retry_delay(row.attempts)
    new = Message(direction=Direction.OUTBOUND.value, phone=row.phone, phone_number_id=row.phone_number_id,
                  farmer_id=row.farmer_id, type=row.type, text=row.text, template_name=row.template_name,
                  template_params=row.template_params, payload=payload or row.payload, fallback=row.fallback,
                  status=MessageStatus.PENDING.value, analysis_id=row.analysis_id, created_at=now,
                  next_attempt_at=due, seq=row.seq, attempts=row.attempts, replaces_id=row.id)
    session.add(new)
    session.flush()
    metrics.outbound_send("retried")
    log.warning("message failed at Meta, will resend", extra={**extra, "resend_id": new.id,
                                                              "next_attempt_at": due.isoformat()})
    return new


def apply_effect(session: Session, row: Message, code: int | None, title: str | None, now: datetime) -> None:
    """Record what `errors.EFFECT_BY_CODE` says about the farmer, the template or the account (if anything)."""
    effect = EFFECT_BY_CODE.get(code) if code is not None else None
    if effect is not None:
        _EFFECTS[effect](session, row, code, f"{code}: {title or ''}".strip(), now)


def _farmer_of(session: Session, row: Message) -> Farmer | None:
    if row.farmer_id is not None:
        return session.get(Farmer, row.farmer_id)
    return session.scalar(select(Farmer).where(Farmer.phone == row.phone))


def _unreachable(session: Session, row: Message, code: int | None, reason: str, now: datetime) -> None:
    farmer = _farmer_of(session, row)
    if farmer is not None:
        farmer.unreachable_at = farmer.unreachable_at or now
        log.warning("farmer unreachable on WhatsApp: no proactive messages until they write",
                    extra={"farmer_id": farmer.id, "reason": reason})


def _marketing_paused(session: Session, row: Message, code: int | None, reason: str, now: datetime) -> None:
    farmer = _farmer_of(session, row)
    if farmer is not None:
        farmer.marketing_paused_until = now + MARKETING_PAUSE
        log.info("marketing messages to the farmer paused", extra={"farmer_id": farmer.id, "reason": reason})


def _marketing_opt_out(session: Session, row: Message, code: int | None, reason: str, now: datetime) -> None:
    farmer = _farmer_of(session, row)
    if farmer is not None:
        farmer.marketing_opt_out_at = farmer.marketing_opt_out_at or now
        log.info("farmer stopped marketing messages", extra={"farmer_id": farmer.id, "reason": reason})


def _pace(session: Session, row: Message, code: int | None, reason: str, now: datetime) -> None:
    farmer = _farmer_of(session, row)
    if farmer is not None:
        farmer.paced_until = now + PACE_WINDOW
        log.info("farmer paced: one message per %s s", PACE_SECONDS, extra={"farmer_id": farmer.id})


def _template_blocked(session: Session, row: Message, code: int | None, reason: str, now: datetime) -> None:
    """132015/132016: the template registry marks it PAUSED/DISABLED (and alerts); it is refused before any
    Graph call until Meta approves it again (a `message_template_status_update`)."""
    if row.template_name and code in STATUS_BY_SEND_ERROR:
        set_template_status(session, row.template_name, template_language(row), STATUS_BY_SEND_ERROR[code],
                            f"Meta refused a send ({reason})", now)


def _account_blocked(session: Session, row: Message, code: int | None, reason: str, now: datetime) -> None:
    block_account(reason)


_EFFECTS: dict[Effect, Callable[[Session, Message, int | None, str, datetime], None]] = {
    Effect.UNREACHABLE: _unreachable,
    Effect.MARKETING_PAUSED: _marketing_paused,
    Effect.MARKETING_OPT_OUT: _marketing_opt_out,
    Effect.PACE: _pace,
    Effect.TEMPLATE_BLOCKED: _template_blocked,
    Effect.ACCOUNT_BLOCKED: _account_blocked,
}


def block_account(reason: str) -> None:
    """Stop sending, and alert: Meta refuses this account's messages (payment, integrity, locked). Sends
    wait while the flag lives (ACCOUNT_BLOCK_SECONDS, or until `outbox.lift_account_block`); `/health/ready`,
    `/metrics` and `flask whatsapp-status` show it (`health.send_block`)."""
    log.critical("WhatsApp account blocked: no message is sent until it is resolved", extra={"reason": reason})
    with contextlib.suppress(RedisError):
        context.redis().set(ACCOUNT_BLOCK_KEY, reason[:300], ex=ACCOUNT_BLOCK_SECONDS)


def to_phone_instead(session: Session, row: Message, extra: dict[str, Any]) -> str:
    """131062 on the send path: the same row goes to the farmer's phone at once, or fails (`to_phone`)."""
    by_phone = to_phone(session, row, row.error_title, extra)
    if by_phone is None:
        row.status, row.failed_at = MessageStatus.FAILED.value, utcnow()
        metrics.outbound_send("failed")
        return "failed"
    row.payload = by_phone
    row.next_attempt_at = utcnow()
    return "retry"


def to_phone(session: Session, row: Message, title: str | None, extra: dict[str, Any]) -> dict[str, Any] | None:
    """131062, refused at send or reported later: Meta will not take this message by user id. Returns its
    body addressed to the farmer's phone when one is known; otherwise None, and the row's error says
    support must reach the farmer another way (the support view shows failed rows)."""
    farmer = session.get(Farmer, row.farmer_id) if row.farmer_id is not None else None
    body = dict(row.payload or {})
    if farmer is not None and farmer.phone and "recipient" in body:
        body.pop("recipient")
        log.warning("user id refused for this message; sending to the farmer's phone", extra=extra)
        return {**body, **address_field(farmer.phone)}
    row.error_title = f"{title or 'user id not allowed'} (no phone known: support must reach the farmer)"[:300]
    log.error("user id refused for this message and no phone is known; support must look", extra=extra)
    return None
