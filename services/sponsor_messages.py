"""A sponsor's message to a farmer it sponsors (L and XL packages), sent as `sponsor_message_tr`.

The rules farmers rely on, checked under the farmer's row lock so two sponsors writing at once
cannot both take the last slot: never to a farmer who opted out (or asked for deletion), whose
number WhatsApp reported unreachable or who stopped marketing messages; at most
`sponsor_message_daily_cap` a day per farmer over all sponsors, by the Europe/Istanbul day the farmer
gets them (`going_out_on`: a message written in the evening's quiet hours counts on the morning it is
sent, not on the evening it was written); and never sent during quiet hours or Meta's marketing pause
for that farmer: a message written then waits in the outbox until they end. Opt-out and quiet hours are
checked again when the message is delivered, since a farmer may write `DUR` while a message waits.
What is known when the sponsor writes is refused at once rather than failing later: a template
registry that says Meta paused, disabled or rejected `sponsor_message_tr` refuses every message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models import Direction, Farmer, Message, MessageStatus
from services.quota import day_start, lock_farmer, next_day_start
from services.runtime_settings import Values
from services.whatsapp.health import TemplateRefused, template_refusal
from services.whatsapp.messages import build_template, template_param_text
from services.whatsapp.outbox import PROACTIVE_TEMPLATES, queue_message
from translations.templates import TEMPLATES

TEMPLATE = "sponsor_message_tr"
assert TEMPLATE in PROACTIVE_TEMPLATES  # so delivery re-checks opt-out and quiet hours
MAX_TEXT = 500


class Refusal(enum.StrEnum):
    OPTED_OUT = "opted_out"  # the farmer wrote DUR or asked for their data to be deleted
    UNREACHABLE = "unreachable"  # WhatsApp reported the number cannot receive messages (131026)
    MARKETING_OPT_OUT = "marketing_opt_out"  # the farmer stopped marketing messages in WhatsApp
    TEMPLATE_BLOCKED = "template_blocked"  # Meta paused, disabled or rejected the template: nobody gets one
    DAILY_CAP = "daily_cap"


@dataclass(frozen=True)
class SponsorMessageResult:
    refusal: Refusal | None
    sent_today: int  # this farmer's sponsor messages on the day this one goes out, it included when queued
    daily_cap: int
    message_id: int | None = None
    send_after: datetime | None = None  # when delivery may begin, if not at once (quiet hours, Meta's pause)
    retry_after: datetime | None = None  # when the cap is reached: the start of the day after that day
    template: TemplateRefused | None = None  # why the template may not be sent (TEMPLATE_BLOCKED)


def goes_out_at(farmer: Farmer, due: datetime, now: datetime, rs: Values) -> datetime:
    """When a message due at `due` reaches the farmer, as far as is known now: not before now, then
    after Meta's marketing pause and quiet hours (what the outbox holds it for)."""
    start = max(due, now)
    return send_after(farmer, start, rs) or start


def going_out_on(session: Session, farmer: Farmer, day: datetime, now: datetime, rs: Values) -> int:
    """This farmer's sponsor messages of the Istanbul day holding `day`, by the day the farmer gets them:
    those Graph took that day (`sent_at`, else the time it was due when taken) and those still waiting
    whose `goes_out_at` falls on it. One refused or withheld before Graph took it never reached them."""
    start, end = day_start(day), next_day_start(day)
    rows = session.execute(
        select(Message.status, Message.wamid, Message.sent_at, Message.next_attempt_at).where(
            Message.farmer_id == farmer.id, Message.direction == Direction.OUTBOUND.value,
            Message.template_name == TEMPLATE,
            or_(Message.status == MessageStatus.PENDING.value, Message.sent_at >= start,
                Message.next_attempt_at >= start))).all()
    count = 0
    for status, wamid, sent_at, due in rows:
        if status == MessageStatus.PENDING.value:
            at: datetime | None = goes_out_at(farmer, due or now, now, rs)
        else:
            at = (sent_at or due) if wamid is not None else None
        if at is not None and start <= at < end:
            count += 1
    return count


def counted_against_cap(session: Session, farmer: Farmer, now: datetime, rs: Values) -> int:
    """What the cap holds a message written now against: this farmer's sponsor messages of the Istanbul
    day it would reach them (today, or the morning after the evening's quiet hours)."""
    return going_out_on(session, farmer, goes_out_at(farmer, now, now, rs), now, rs)


def farmer_refusal(farmer: Farmer) -> Refusal | None:
    """Why this farmer gets no message we write first (`Farmer.accepts_proactive`), most lasting reason
    first, or None."""
    if farmer.opted_out_at is not None or farmer.deletion_requested_at is not None:
        return Refusal.OPTED_OUT
    if farmer.unreachable_at is not None:
        return Refusal.UNREACHABLE
    if farmer.marketing_opt_out_at is not None:
        return Refusal.MARKETING_OPT_OUT
    return None


def template_blocked(session: Session) -> TemplateRefused | None:
    """Whether the template registry says Meta would refuse `sponsor_message_tr` now (the outbox would
    fail every such row before any Graph call)."""
    return template_refusal(session, TEMPLATE, TEMPLATES[TEMPLATE].language)


def send_after(farmer: Farmer, now: datetime, rs: Values) -> datetime | None:
    """When a message written now may be delivered, if not at once: after Meta's marketing pause for this
    farmer (131049, 130472), then after quiet hours, the order the outbox holds it in."""
    paused = farmer.marketing_paused_until
    start = paused if paused is not None and paused > now else now
    return rs.quiet_until(start) or (start if start > now else None)


def queue_sponsor_message(session: Session, sponsor_name: str, farmer_id: int, text: str, now: datetime,
                          rs: Values) -> SponsorMessageResult:
    """Queue the message in the caller's transaction (the caller commits, then enqueues delivery), or
    say why not."""
    lock_farmer(session, farmer_id)
    farmer = session.get_one(Farmer, farmer_id)
    session.refresh(farmer)  # the values under the lock, not an earlier read
    cap = rs.sponsor_message_daily_cap
    goes_out = goes_out_at(farmer, now, now, rs)
    count = going_out_on(session, farmer, goes_out, now, rs)
    refusal = farmer_refusal(farmer)
    if refusal is not None:
        return SponsorMessageResult(refusal, count, cap)
    blocked = template_blocked(session)
    if blocked is not None:
        return SponsorMessageResult(Refusal.TEMPLATE_BLOCKED, count, cap, template=blocked)
    if count >= cap:
        # written before the next day starts, it would go out on the same full day
        return SponsorMessageResult(Refusal.DAILY_CAP, count, cap, retry_after=next_day_start(goes_out))
    out = build_template(TEMPLATE, farmer.address, {"sponsor name": template_param_text(sponsor_name),
                                                   "message text": template_param_text(text)})
    row = queue_message(session, farmer.address, out, now, farmer_id=farmer_id)
    return SponsorMessageResult(None, count + 1, cap, message_id=row.id, send_after=send_after(farmer, now, rs))
