"""KVKK data deletion: a farmer's request, the queue with its legal 30 days, and the deletion itself.

A farmer asks in chat ("verilerimi sil" / "delete my data": `farmers.deletion_requested_at`), or support
records the request on their behalf. A support person carries it out from the console, or the scheduler
does on the last day (`erase_due`). Deleting removes what identifies the farmer and keeps what the
business must keep, without identity:

- removed: the text, media ids and raw payloads of their messages (both directions) and the address on
  them; the recipient on the status events; their photos in storage; the notes, location and raw result
  of their analyses; the copies of photos kept for support during a takeover (and their keys on the
  messages); their conversation state and support's notes on them; name, phone, user id,
  parent user id and username on the farmer row.
- ended: their inbound messages not yet handled (marked processed) and their analyses not yet finished
  (failed and refunded, as any analysis that failed on our side; a result arriving later is ignored).
- kept: the farmer row itself (an id with no identity, `deleted_at` set), the quota ledger,
  subscriptions, codes redeemed, analyses' crop/diagnosis figures (sponsor statistics), delivery
  statuses and the audit log.

Before the phone is gone the farmer is told in chat (a catalog text, in their language) when the
24-hour window is open; outside it no free text may go and no template says this, so they are not
told (the audit row records `told: false`). The goodbye is the one row that keeps the address until it
has left: `forget_goodbyes` (after the console's send, and on every scheduler pass) blanks it then.
Photos are deleted from storage after the commit (`delete_photos`); one that fails to delete is
logged and left for `flask purge-media`, its key already gone from the database.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from bot import replies
from models import (
    Analysis,
    AnalysisStatus,
    Conversation,
    Direction,
    Farmer,
    Message,
    MessageStatus,
    MessageStatusEvent,
    SupportNote,
)
from models.db import Database
from services.audit import audit
from services.quota import lock_farmer, refund
from services.storage import Storage
from services.support import window_left
from services.whatsapp import messages as wa
from services.whatsapp.outbox import queue_message, send_queued

log = logging.getLogger(__name__)

DELETION_DAYS = 30  # KVKK: a request is carried out within 30 days
AUTO_DELETE_BEFORE = timedelta(days=1)  # the scheduler deletes on the last day of the 30
FINISHED = (AnalysisStatus.COMPLETED.value, AnalysisStatus.FAILED.value)


def due_at(requested_at: datetime) -> datetime:
    return requested_at + timedelta(days=DELETION_DAYS)


def days_left(requested_at: datetime, now: datetime) -> int:
    """Whole days left of the legal 30 (0 on the last day or later)."""
    return max(0, math.ceil((due_at(requested_at) - now) / timedelta(days=1)) - 1)


def anonymous_address(farmer_id: int) -> str:
    """What stands in the messages' address column once the farmer's is gone (never a WhatsApp address)."""
    return f"deleted:{farmer_id}"


def request_deletion(session: Session, farmer_id: int, staff_id: int | None, now: datetime) -> bool:
    """Record a request on the farmer's behalf (as if they had written it). False if one is already open."""
    lock_farmer(session, farmer_id)
    farmer = session.get_one(Farmer, farmer_id)
    session.refresh(farmer)
    if farmer.deletion_requested_at is not None or farmer.deleted_at is not None:
        return False
    farmer.deletion_requested_at = now
    audit("farmer.deletion.request", "farmer", farmer_id, user_id=staff_id, session=session)
    return True


def queue(session: Session) -> list[Farmer]:
    """Open requests, the oldest (the least time left) first."""
    return list(session.scalars(select(Farmer).where(Farmer.deletion_requested_at.is_not(None),
                                                     Farmer.deleted_at.is_(None))
                                .order_by(Farmer.deletion_requested_at, Farmer.id)))


@dataclass
class Erased:
    farmer_id: int
    told: bool
    goodbye_address: str | None  # send_queued(this) after commit, then forget_goodbyes
    photo_keys: list[str] = field(default_factory=list)  # delete_photos(these) after commit


def erase(session: Session, farmer_id: int, staff_id: int | None, now: datetime) -> Erased | None:
    """Delete the farmer's personal data in the caller's transaction (None: already deleted).
    `staff_id` None means the scheduler did it."""
    lock_farmer(session, farmer_id)
    farmer = session.get_one(Farmer, farmer_id)
    session.refresh(farmer)
    if farmer.deleted_at is not None:
        return None
    aliases = [a for a in (farmer.phone, farmer.user_id) if a]
    placeholder = anonymous_address(farmer_id)
    mine = or_(Message.farmer_id == farmer_id, Message.phone.in_(aliases))
    # Nothing of ours still waiting may go out any more.
    session.execute(update(Message).where(mine, Message.direction == Direction.OUTBOUND.value,
                                          Message.status == MessageStatus.PENDING.value)
                    .values(status=MessageStatus.FAILED.value, failed_at=now,
                            error_title="withheld: the farmer's data was deleted")
                    .execution_options(synchronize_session=False))
    # Nothing of theirs still waiting is handled any more: their messages are done, their analyses end
    # (refunded, as any analysis that failed on our side; a result arriving later is ignored).
    session.execute(update(Message).where(mine, Message.direction == Direction.INBOUND.value,
                                          Message.status == MessageStatus.RECEIVED.value)
                    .values(status=MessageStatus.PROCESSED.value, processed_at=now)
                    .execution_options(synchronize_session=False))
    for analysis in session.scalars(select(Analysis).where(Analysis.farmer_id == farmer_id,
                                                           Analysis.status.not_in(FINISHED)).with_for_update()):
        analysis.status, analysis.failed_at = AnalysisStatus.FAILED.value, now
        analysis.failure_reason = "the farmer's data was deleted"
        if analysis.charge_ledger_id is not None:
            refund(session, analysis.charge_ledger_id, now)
    goodbye_id, address = None, None
    if aliases and window_left(farmer, now) is not None:
        address = farmer.address
        row = queue_message(session, address, wa.text(address, replies.data_deleted(farmer.locale).text), now,
                            farmer_id=farmer_id)
        goodbye_id = row.id
    wamids = list(session.scalars(select(Message.wamid).where(mine, Message.wamid.is_not(None))))
    # The copies of photos kept for support during a takeover. Their rows are locked first: a download that
    # stored its copy meanwhile is read here, one that finishes later finds its photo no longer waiting and
    # drops its copy (services.support_photos.settle).
    kept = [key for key in session.scalars(select(Message.photo_key).where(mine, Message.photo_state.is_not(None))
                                           .with_for_update()) if key]
    session.execute(update(Message).where(mine, Message.id != (goodbye_id or 0))
                    .values(text=None, payload=None, media_id=None, template_params=None, fallback=None,
                            context_wamid=None, phone=placeholder, farmer_id=farmer_id, photo_key=None,
                            photo_state=None)
                    .execution_options(synchronize_session=False))
    for i in range(0, len(wamids), 500):
        session.execute(update(MessageStatusEvent).where(MessageStatusEvent.wamid.in_(wamids[i:i + 500]))
                        .values(recipient=None, payload=None).execution_options(synchronize_session=False))
    if aliases:
        session.execute(update(MessageStatusEvent).where(MessageStatusEvent.recipient.in_(aliases))
                        .values(recipient=None, payload=None).execution_options(synchronize_session=False))
    keys = sorted({*_photo_keys(session, farmer_id), *kept})
    session.execute(update(Analysis).where(Analysis.farmer_id == farmer_id)
                    .values(notes=None, location_text=None, latitude=None, longitude=None, result=None,
                            media_id=None, media_ids=None, image_key=None, original_key=None, image_keys=None,
                            original_keys=None)
                    .execution_options(synchronize_session=False))
    session.execute(delete(Conversation).where(Conversation.farmer_id == farmer_id)
                    .execution_options(synchronize_session=False))
    session.execute(delete(SupportNote).where(SupportNote.farmer_id == farmer_id)
                    .execution_options(synchronize_session=False))
    farmer.phone = farmer.user_id = farmer.parent_user_id = farmer.username = farmer.profile_name = None
    farmer.consent_at = farmer.consent_version = farmer.human_requested_at = None
    farmer.opted_out_at = farmer.opted_out_at or now
    farmer.deletion_requested_at = farmer.deletion_requested_at or now
    farmer.deleted_at = now
    audit("farmer.deletion.done", "farmer", farmer_id,
          {"automatic": staff_id is None, "told": goodbye_id is not None, "photos": len(keys)},
          user_id=staff_id, session=session)
    log.warning("farmer's personal data deleted", extra={"farmer_id": farmer_id, "automatic": staff_id is None})
    return Erased(farmer_id, goodbye_id is not None, address, keys)


def _photo_keys(session: Session, farmer_id: int) -> list[str]:
    keys: set[str] = set()
    for a in session.scalars(select(Analysis).where(Analysis.farmer_id == farmer_id)):
        for key in (a.image_key, a.original_key, *(a.image_keys or []), *(a.original_keys or [])):
            if isinstance(key, str) and key:
                keys.add(key)
    return sorted(keys)


def delete_photos(storage: Storage, keys: Iterable[str]) -> int:
    """Remove the photos from storage (after the commit that forgot their keys). Returns how many went."""
    deleted = 0
    for key in keys:
        try:
            storage.delete(key)
            deleted += 1
        except Exception as exc:  # one store out of reach must not stop the rest
            log.warning("could not delete a deleted farmer's photo; purge-media will", extra={
                "error": type(exc).__name__})
    return deleted


def forget_goodbyes(session: Session) -> int:
    """The goodbye of a deleted farmer keeps their address only while it waits to be sent."""
    rows = session.execute(
        select(Message.id, Farmer.id).join(Farmer, Farmer.id == Message.farmer_id)
        .where(Farmer.deleted_at.is_not(None), Message.direction == Direction.OUTBOUND.value,
               Message.status != MessageStatus.PENDING.value, ~Message.phone.startswith("deleted:"))
    ).all()
    for message_id, farmer_id in rows:
        session.execute(update(Message).where(Message.id == message_id)
                        .values(phone=anonymous_address(farmer_id), payload=None)
                        .execution_options(synchronize_session=False))
    return len(rows)


def erase_due(db: Database, storage: Storage, now: datetime) -> int:
    """The scheduler's task: carry out every request on its last day (or later), each in its own
    transaction; then forget the addresses of goodbyes that have left. Returns how many farmers."""
    cutoff = now - timedelta(days=DELETION_DAYS) + AUTO_DELETE_BEFORE
    with db.reader() as session:
        due = list(session.scalars(select(Farmer.id).where(Farmer.deletion_requested_at <= cutoff,
                                                           Farmer.deleted_at.is_(None))))
    done = 0
    for farmer_id in due:
        with db.session() as session, session.begin():
            erased = erase(session, farmer_id, None, now)
        if erased is None:
            continue
        done += 1
        delete_photos(storage, erased.photo_keys)
        if erased.goodbye_address:
            send_queued(erased.goodbye_address)
    with db.session() as session, session.begin():
        forget_goodbyes(session)
    return done
