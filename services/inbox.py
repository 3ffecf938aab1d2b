"""Persist a parsed webhook: farmers, inbound messages, status events, and what we did not understand.

Idempotency is the database's job: `messages.wamid` and `message_status_events (wamid, status)` are
unique, inserts skip conflicts, and only rows inserted now come back as work to enqueue. Rows are
written sorted by key so two concurrent deliveries lock in the same order (no deadlock).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from models import (
    OUTBOUND_RANK,
    Direction,
    Farmer,
    Message,
    MessageStatus,
    MessageStatusEvent,
    UnhandledWebhook,
    utcnow,
)
from models.db import dialect_insert, insert_ignoring_conflicts
from services.whatsapp.health import record_account_events
from services.whatsapp.updates import InboundMessage, ParsedWebhook, StatusKind, StatusUpdate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded:
    new_message_ids: list[int]
    duplicate_messages: int
    new_statuses: int
    unhandled: int
    account_events: int = 0


@functools.cache
def _farmer_upsert(dialect_name: str) -> Any:
    """Insert new farmers; for known ones refresh the name and `last_inbound_at` (never backwards)."""
    farmers = Farmer.__table__
    stmt = dialect_insert(dialect_name, farmers)
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[farmers.c.phone],
        set_={
            "profile_name": func.coalesce(new.profile_name, farmers.c.profile_name),
            "last_inbound_at": case(
                (farmers.c.last_inbound_at.is_(None) | (farmers.c.last_inbound_at < new.last_inbound_at),
                 new.last_inbound_at),
                else_=farmers.c.last_inbound_at,
            ),
            "updated_at": new.updated_at,
        },
    ).returning(farmers.c.phone, farmers.c.id)


@functools.cache
def _message_insert(dialect_name: str) -> Any:
    messages = Message.__table__
    stmt = dialect_insert(dialect_name, messages)
    return stmt.on_conflict_do_nothing(index_elements=["wamid"]).returning(messages.c.id, messages.c.wamid)


def _upsert_farmers(session: Session, messages: list[InboundMessage]) -> dict[str, int]:
    """One statement for all senders, returning every id. The webhook's hot path: built once, Core not ORM."""
    latest: dict[str, InboundMessage] = {}
    for m in sorted(messages, key=lambda m: (m.phone, m.timestamp or utcnow())):
        latest[m.phone] = m
    if not latest:
        return {}
    now = utcnow()
    rows = [{"phone": phone, "profile_name": m.profile_name, "locale": "tr", "last_inbound_at": m.timestamp or now,
             "created_at": now, "updated_at": now} for phone, m in latest.items()]
    conn = session.connection()
    return {phone: fid for phone, fid in conn.execute(_farmer_upsert(conn.dialect.name), rows)}


def _message_row(m: InboundMessage, farmer_id: int | None) -> dict[str, Any]:
    return {
        "direction": Direction.INBOUND.value,
        "wamid": m.wamid,
        "phone": m.phone,
        "farmer_id": farmer_id,
        "type": m.type.value,
        "text": m.text,
        "media_id": m.media_id,
        "mime_type": m.mime_type,
        "context_wamid": m.context_wamid,
        "payload": m.raw,
        "status": MessageStatus.RECEIVED.value,
        "error_code": m.error_code,
        "error_title": m.error_title,
        "meta_timestamp": m.timestamp,
        "created_at": utcnow(),
        "attempts": 0,
    }


_TIMESTAMP_COLUMN = {
    StatusKind.SENT: "sent_at",
    StatusKind.DELIVERED: "delivered_at",
    StatusKind.READ: "read_at",
    StatusKind.FAILED: "failed_at",
}


def apply_status(session: Session, wamid: str, status: str, when: datetime | None,
                 error_code: int | None = None, error_title: str | None = None) -> None:
    """Move an outbound message forward to `status`; never backwards (`read` stays `read`)."""
    kind = StatusKind(status)
    if kind is StatusKind.UNKNOWN:
        return
    new_rank = OUTBOUND_RANK[MessageStatus(kind.value)]
    current_rank = case({s.value: r for s, r in OUTBOUND_RANK.items()}, value=Message.status, else_=-1)
    ts_column = getattr(Message, _TIMESTAMP_COLUMN[kind])
    values: dict[str, Any] = {
        "status": case((current_rank < new_rank, kind.value), else_=Message.status),
        _TIMESTAMP_COLUMN[kind]: func.coalesce(ts_column, when or utcnow()),
    }
    if kind is StatusKind.FAILED:
        values.update(error_code=error_code, error_title=error_title)
    session.execute(
        update(Message)
        .where(Message.wamid == wamid, Message.direction == Direction.OUTBOUND.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def apply_recorded_statuses(session: Session, wamid: str) -> None:
    """Statuses that arrived before we stored the wamid of our own send are applied now."""
    events = session.scalars(select(MessageStatusEvent).where(MessageStatusEvent.wamid == wamid))
    for e in events:
        apply_status(session, wamid, e.status, e.meta_timestamp, e.error_code, e.error_title)


def _record_statuses(session: Session, statuses: list[StatusUpdate]) -> int:
    if not statuses:
        return 0
    rows = [
        {
            "wamid": s.wamid,
            "status": s.status.value if s.status is not StatusKind.UNKNOWN else str(s.raw.get("status"))[:20],
            "recipient": s.recipient,
            "meta_timestamp": s.timestamp,
            "error_code": s.error_code,
            "error_title": s.error_title,
            "payload": s.raw,
            "received_at": utcnow(),
        }
        for s in sorted(statuses, key=lambda s: (s.wamid, s.status.value))
    ]
    stmt = insert_ignoring_conflicts(session, MessageStatusEvent, ["wamid", "status"]).returning(
        MessageStatusEvent.wamid, MessageStatusEvent.status
    )
    inserted: set[tuple[str, str]] = set()
    for row in rows:
        inserted |= {(w, st) for w, st in session.execute(stmt.values(**row))}
    for s in statuses:
        if (s.wamid, s.status.value) in inserted:
            apply_status(session, s.wamid, s.status.value, s.timestamp, s.error_code, s.error_title)
            if s.status is StatusKind.FAILED:
                log.warning("outbound message failed at Meta", extra={"wamid": s.wamid, "error_code": s.error_code,
                                                                      "error_title": s.error_title})
    return len(inserted)


def record_webhook(session: Session, parsed: ParsedWebhook) -> Recorded:
    """Write everything in one transaction (the caller commits). Returns the new inbound ids to enqueue."""
    farmer_ids = _upsert_farmers(session, parsed.messages)
    new_ids: list[int] = []
    unique = {m.wamid: m for m in parsed.messages}  # one body may repeat a message
    created: dict[str, int] = {}
    if unique:
        rows = [_message_row(m, farmer_ids.get(m.phone)) for m in sorted(unique.values(), key=lambda m: m.wamid)]
        conn = session.connection()
        created = {wamid: row_id for row_id, wamid in conn.execute(_message_insert(conn.dialect.name), rows)}
    # Enqueue in the order Meta sent them (timestamp, then position in the body).
    for m in parsed.messages:
        if m.wamid in created and created[m.wamid] not in new_ids:
            new_ids.append(created[m.wamid])
    new_statuses = _record_statuses(session, parsed.statuses)
    for problem in parsed.problems:
        log.warning("webhook part not understood: %s", problem.reason)
        session.add(UnhandledWebhook(reason=problem.reason[:300], payload=problem.part))
    account_events = record_account_events(session, parsed.account)
    return Recorded(new_ids, len(unique) - len(created), new_statuses, len(parsed.problems), account_events)
