"""A sponsor's message to a farmer it sponsors (L and XL packages), sent as `sponsor_message_tr`.

The rules farmers rely on, checked under the farmer's row lock so two sponsors writing at once
cannot both take the last slot: never to a farmer who opted out (or asked for deletion), at most
`sponsor_message_daily_cap` a day per farmer over all sponsors (Europe/Istanbul days, counting every
message queued that day), and never sent during quiet hours: a message written then waits in the
outbox until they end. Opt-out and quiet hours are checked again when the message is delivered,
since a farmer may write `DUR` while a message waits.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Direction, Farmer, Message
from services.quota import day_start, lock_farmer, next_day_start
from services.runtime_settings import Values
from services.whatsapp.messages import build_template
from services.whatsapp.outbox import PROACTIVE_TEMPLATES, queue_message

TEMPLATE = "sponsor_message_tr"
assert TEMPLATE in PROACTIVE_TEMPLATES  # so delivery re-checks opt-out and quiet hours
MAX_TEXT = 500


class Refusal(enum.StrEnum):
    OPTED_OUT = "opted_out"
    DAILY_CAP = "daily_cap"


@dataclass(frozen=True)
class SponsorMessageResult:
    refusal: Refusal | None
    sent_today: int  # this farmer's sponsor messages today, this one included when queued
    daily_cap: int
    message_id: int | None = None
    send_after: datetime | None = None  # the end of quiet hours when written during them
    retry_after: datetime | None = None  # the next day, when the cap is reached


def one_line(text: str) -> str:
    """WhatsApp template parameters may not hold line breaks, tabs or runs of spaces: collapse them."""
    return " ".join(text.split())


def sent_today(session: Session, farmer_id: int, now: datetime) -> int:
    return session.scalar(
        select(func.count()).select_from(Message).where(
            Message.farmer_id == farmer_id, Message.direction == Direction.OUTBOUND.value,
            Message.template_name == TEMPLATE, Message.created_at >= day_start(now))
    ) or 0


def queue_sponsor_message(session: Session, sponsor_name: str, farmer_id: int, text: str, now: datetime,
                          rs: Values) -> SponsorMessageResult:
    """Queue the message in the caller's transaction (the caller commits, then enqueues delivery)."""
    lock_farmer(session, farmer_id)
    farmer = session.get_one(Farmer, farmer_id)
    session.refresh(farmer)  # the values under the lock, not an earlier read
    cap = rs.sponsor_message_daily_cap
    count = sent_today(session, farmer_id, now)
    if not farmer.accepts_proactive:
        return SponsorMessageResult(Refusal.OPTED_OUT, count, cap)
    if count >= cap:
        return SponsorMessageResult(Refusal.DAILY_CAP, count, cap, retry_after=next_day_start(now))
    out = build_template(TEMPLATE, farmer.address, {"sponsor name": one_line(sponsor_name),
                                                   "message text": one_line(text)})
    row = queue_message(session, farmer.address, out, farmer_id=farmer_id)
    return SponsorMessageResult(None, count + 1, cap, message_id=row.id, send_after=rs.quiet_until(now))
