"""What support does for a farmer: take over the conversation, reply, keep notes and canned replies.

Human takeover: a support person takes a farmer's conversation for a while (`taken_until`, by default
the runtime setting `support_takeover_minutes`). While it is taken the bot stays silent for that farmer:
their messages are stored and marked processed (services/conversation.py skips the state machine), and
nothing automatic is sent. An analysis already queued or running still finishes and its result is sent:
the farmer paid for it, and it is a result, not a conversation. The takeover ends when the person
releases it, or by itself when `taken_until` passes (it is only ever read against the clock).

Replies go through the outbox like the bot's (order, limits, retries, delivery statuses) and record
who wrote them (`messages.staff_user_id`). Free text only inside WhatsApp's 24-hour customer-service
window; outside it only an approved template.

Every function takes the session and `now`; the caller owns the transaction, then calls
`services.whatsapp.outbox.send_queued(address)` after commit to send at once.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from bot.types import State
from models import CannedReply, Conversation, Direction, Farmer, Message, MessageStatus, SupportNote
from models.db import insert_ignoring_conflicts
from services.audit import audit
from services.folding import contains_folded
from services.quota import lock_farmer
from services.whatsapp import messages as wa
from services.whatsapp.errors import LimitError
from services.whatsapp.health import template_refusal
from services.whatsapp.outbox import PROACTIVE_TEMPLATES, SERVICE_WINDOW, queue_message
from translations.templates import TEMPLATES, Template

NOTE_MAX = 2000
CANNED_TITLE_MAX = 100


# --- takeover ----------------------------------------------------------------------------------------


def is_taken(conv: Conversation | None, now: datetime) -> bool:
    """Is a person answering this farmer now? An expired takeover is over without anyone releasing it."""
    return (conv is not None and conv.taken_by is not None and conv.taken_until is not None
            and conv.taken_until > now)


def conversation_of(session: Session, farmer_id: int) -> Conversation:
    """The farmer's conversation row, created when they never wrote (support may take over first)."""
    session.execute(insert_ignoring_conflicts(session, Conversation, ["farmer_id"]),
                    [{"farmer_id": farmer_id, "state": State.START.value, "data": {}}])
    return session.scalars(select(Conversation).where(Conversation.farmer_id == farmer_id)
                           .with_for_update()).one()


def conversation_row(session: Session, farmer_id: int) -> Conversation | None:
    """The farmer's conversation as it is (None: they never wrote and nobody took over)."""
    return session.scalars(select(Conversation).where(Conversation.farmer_id == farmer_id)).first()


def take_over(session: Session, farmer_id: int, staff_id: int, now: datetime, minutes: int) -> Conversation:
    """Take (or extend, or take from a colleague) the farmer's conversation until now + minutes."""
    if not 1 <= minutes <= 24 * 60:
        raise ValueError("minutes must be 1..1440")
    conv = conversation_of(session, farmer_id)
    previous = conv.taken_by if is_taken(conv, now) else None
    conv.taken_by, conv.taken_until = staff_id, now + timedelta(minutes=minutes)
    conv.taken_at = conv.taken_at if previous is not None else now
    _answered(session, farmer_id)
    audit("farmer.takeover", "farmer", farmer_id, {"until": conv.taken_until.isoformat(), "from": previous},
          user_id=staff_id, session=session)
    return conv


def _answered(session: Session, farmer_id: int) -> None:
    """A person has the farmer now: their request for one is met."""
    farmer = session.get(Farmer, farmer_id)
    if farmer is not None:
        farmer.human_requested_at = None


def release(session: Session, farmer_id: int, staff_id: int, now: datetime) -> bool:
    """Give the conversation back to the bot. False when it was not taken (or had expired)."""
    conv = session.scalars(select(Conversation).where(Conversation.farmer_id == farmer_id)
                           .with_for_update()).first()
    was_taken = is_taken(conv, now)
    if conv is not None:
        conv.taken_by = conv.taken_at = conv.taken_until = None
    if was_taken:
        audit("farmer.takeover.release", "farmer", farmer_id, user_id=staff_id, session=session)
    return was_taken


# --- replies -----------------------------------------------------------------------------------------


def opted_out_themselves(farmer: Farmer) -> bool:
    """The farmer said DUR. Deleting their data also sets `opted_out_at` (so nothing is ever sent to them), but
    that is not an opt-out of theirs: only one before the deletion counts."""
    if farmer.opted_out_at is None:
        return False
    return farmer.deleted_at is None or farmer.opted_out_at < farmer.deleted_at


def window_left(farmer: Farmer, now: datetime) -> timedelta | None:
    """What is left of the 24-hour customer-service window (None: closed, only a template may go)."""
    if farmer.last_inbound_at is None:
        return None
    left = farmer.last_inbound_at + SERVICE_WINDOW - now
    return left if left > timedelta(0) else None


class ReplyRefusal(enum.StrEnum):
    EMPTY = "empty"
    TOO_LONG = "too_long"
    WINDOW_CLOSED = "window_closed"  # free text outside the 24-hour window
    UNKNOWN_TEMPLATE = "unknown_template"  # not a template support may send now
    BAD_PARAMS = "bad_params"
    NO_ADDRESS = "no_address"  # the farmer's data was deleted


@dataclass(frozen=True)
class ReplyResult:
    refusal: ReplyRefusal | None
    message_id: int | None = None
    address: str | None = None  # where to `send_queued` after commit


def sendable_templates(session: Session) -> list[Template]:
    """Templates support may send outside the window: ours, not a sponsor's, and not refused by Meta's
    registry (paused, disabled, rejected...)."""
    return [t for t in TEMPLATES.values()
            if t.name not in PROACTIVE_TEMPLATES and template_refusal(session, t.name, t.language) is None]


def _queue(session: Session, farmer: Farmer, out: wa.Outbound, staff_id: int, action: str,
           details: dict[str, Any], now: datetime) -> ReplyResult:
    row = queue_message(session, farmer.address, out, now, farmer_id=farmer.id)
    row.staff_user_id = staff_id
    farmer.human_requested_at = None
    audit(action, "farmer", farmer.id, {"message_id": row.id, **details}, user_id=staff_id, session=session)
    return ReplyResult(None, row.id, farmer.address)


def _reachable(session: Session, farmer_id: int) -> Farmer | None:
    lock_farmer(session, farmer_id)
    farmer = session.get_one(Farmer, farmer_id)
    session.refresh(farmer)
    return None if farmer.deleted_at is not None or (farmer.phone is None and farmer.user_id is None) else farmer


def reply_text(session: Session, farmer_id: int, staff_id: int, text: str, now: datetime) -> ReplyResult:
    """Queue a free-text reply; refused outside the 24-hour window (Meta would refuse it with 131047)."""
    text = text.strip()
    if not text:
        return ReplyResult(ReplyRefusal.EMPTY)
    if len(text) > wa.TEXT_BODY_MAX:
        return ReplyResult(ReplyRefusal.TOO_LONG)
    farmer = _reachable(session, farmer_id)
    if farmer is None:
        return ReplyResult(ReplyRefusal.NO_ADDRESS)
    if window_left(farmer, now) is None:
        return ReplyResult(ReplyRefusal.WINDOW_CLOSED)
    return _queue(session, farmer, wa.text(farmer.address, text), staff_id, "farmer.reply", {}, now)


def reply_template(session: Session, farmer_id: int, staff_id: int, name: str, params: Sequence[str],
                   now: datetime) -> ReplyResult:
    """Queue an approved template (allowed inside the window too)."""
    if name not in {t.name for t in sendable_templates(session)}:
        return ReplyResult(ReplyRefusal.UNKNOWN_TEMPLATE)
    farmer = _reachable(session, farmer_id)
    if farmer is None:
        return ReplyResult(ReplyRefusal.NO_ADDRESS)
    try:
        out = wa.build_template(name, farmer.address, [wa.one_line(p) for p in params])
    except LimitError:
        return ReplyResult(ReplyRefusal.BAD_PARAMS)
    return _queue(session, farmer, out, staff_id, "farmer.reply.template", {"template": name}, now)


# --- notes and canned replies ------------------------------------------------------------------------


def add_note(session: Session, farmer_id: int, staff_id: int, text: str, now: datetime) -> SupportNote | None:
    """A private note; None for an empty one. Longer text is refused by the caller's form check (NOTE_MAX)."""
    text = text.strip()
    if not text or len(text) > NOTE_MAX:
        return None
    note = SupportNote(farmer_id=farmer_id, author_id=staff_id, text=text, created_at=now)
    session.add(note)
    session.flush()
    return note


def notes_of(session: Session, farmer_id: int) -> list[SupportNote]:
    return list(session.scalars(select(SupportNote).where(SupportNote.farmer_id == farmer_id)
                                .order_by(SupportNote.created_at.desc(), SupportNote.id.desc())))


def canned_replies(session: Session) -> list[CannedReply]:
    return list(session.scalars(select(CannedReply).order_by(CannedReply.title, CannedReply.id)))


def save_canned(session: Session, canned_id: int | None, title: str, text: str, staff_id: int,
                now: datetime) -> CannedReply | None:
    """Create (no id) or change a canned reply; None when the title or text is empty or too long, or the id unknown."""
    title, text = title.strip(), text.strip()
    if not title or not text or len(title) > CANNED_TITLE_MAX or len(text) > wa.TEXT_BODY_MAX:
        return None
    row = CannedReply() if canned_id is None else session.get(CannedReply, canned_id)
    if row is None:
        return None
    row.title, row.text, row.updated_by, row.updated_at = title, text, staff_id, now
    session.add(row)
    session.flush()
    return row


def delete_canned(session: Session, canned_id: int) -> bool:
    row = session.get(CannedReply, canned_id)
    if row is None:
        return False
    session.delete(row)
    return True


def transcript(session: Session, farmer: Farmer, limit: int = 500) -> list[Message]:
    """The farmer's messages in order (the latest `limit`), both directions."""
    rows = session.scalars(select(Message).where(Message.farmer_id == farmer.id)
                           .order_by(Message.created_at.desc(), Message.id.desc()).limit(limit))
    return list(reversed(list(rows)))


# --- the conversations list --------------------------------------------------------------------------


class ListFilter(enum.StrEnum):
    NEEDS_HUMAN = "human"  # asked for a person, taken over, or a message the bot failed to handle
    FAILED = "failed"  # a reply that did not reach the farmer
    DELETION = "deletion"  # asked for their data to be deleted (not yet done)
    OPTED_OUT = "opted_out"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class ConversationRow:
    farmer: Farmer
    last: Message | None
    conversation: Conversation | None


_PHONE_AS_WRITTEN = re.compile(r"\+?[0-9\s().-]+", re.ASCII)
PHONE_FRAGMENT_DIGITS = 4  # fewer digits than this would match nearly every number


def _search(q: str) -> Any:
    """A farmer by phone (as people write it too: `0555 000 01 02`, `+90 555 000 01 02`, or a piece of it such as
    `0532 12`: a query of digits, spaces, `+()-` with at least PHONE_FRAGMENT_DIGITS digits), user id, username,
    name (whatever its case and Turkish letters: `YILMAZ` finds Yılmaz, `ibrahim` İbrahim), id, or the text
    of a message."""
    m = aliased(Message)  # not the outer query's latest message
    by_text = exists().where(m.farmer_id == Farmer.id, m.text.icontains(q, autoescape=True))
    conditions = [Farmer.phone.icontains(q, autoescape=True), Farmer.user_id.icontains(q, autoescape=True),
                  Farmer.username.icontains(q, autoescape=True),
                  contains_folded(Farmer.profile_name, q), by_text]
    digits = re.sub(r"[^0-9]", "", q).lstrip("0")  # a national number's trunk 0, an international call's 00
    if _PHONE_AS_WRITTEN.fullmatch(q) and len(digits) >= PHONE_FRAGMENT_DIGITS:
        conditions.append(Farmer.phone.contains(digits, autoescape=True))
    if q.isascii() and q.isdigit() and len(q) <= 9:
        conditions.append(Farmer.id == int(q))
    return or_(*conditions)


def _filter(kind: ListFilter, now: datetime) -> Any:
    m = aliased(Message)
    if kind is ListFilter.NEEDS_HUMAN:
        c = aliased(Conversation)
        taken = exists().where(c.farmer_id == Farmer.id, c.taken_by.is_not(None), c.taken_until > now)
        stuck = exists().where(m.farmer_id == Farmer.id, m.direction == Direction.INBOUND.value,
                               m.status == MessageStatus.FAILED.value)
        return or_(taken, stuck, Farmer.human_requested_at.is_not(None))
    if kind is ListFilter.FAILED:
        return exists().where(m.farmer_id == Farmer.id, m.direction == Direction.OUTBOUND.value,
                              m.status == MessageStatus.FAILED.value)
    if kind is ListFilter.DELETION:
        return and_(Farmer.deletion_requested_at.is_not(None), Farmer.deleted_at.is_(None))
    if kind is ListFilter.OPTED_OUT:  # a deleted farmer is silenced by the deletion, not by a DUR of theirs
        return and_(Farmer.opted_out_at.is_not(None), Farmer.deleted_at.is_(None))
    return Farmer.unreachable_at.is_not(None)


def conversations(session: Session, now: datetime, *, q: str | None = None, kind: ListFilter | None = None,
                  page: int = 1, per_page: int = 25) -> tuple[list[ConversationRow], int]:
    """Farmers by their latest message, newest first (farmers who never wrote last); and how many match."""
    latest = (select(Message.farmer_id, func.max(Message.id).label("last_id"))
              .where(Message.farmer_id.is_not(None)).group_by(Message.farmer_id).subquery())
    stmt = (select(Farmer, Message, Conversation)
            .outerjoin(latest, latest.c.farmer_id == Farmer.id)
            .outerjoin(Message, Message.id == latest.c.last_id)
            .outerjoin(Conversation, Conversation.farmer_id == Farmer.id))
    conditions = []
    if q:
        conditions.append(_search(q))
    if kind is not None:
        conditions.append(_filter(kind, now))
    stmt = stmt.where(*conditions)
    total = session.scalar(select(func.count()).select_from(Farmer).where(*conditions)) or 0
    stmt = stmt.order_by(latest.c.last_id.desc().nulls_last(), Farmer.id.desc())
    rows = session.execute(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    return [ConversationRow(f, m, c) for f, m, c in rows], total
