"""Persist a parsed webhook: farmers, inbound messages, status events, and what we did not understand.

Idempotency is the database's job: `messages.wamid` and `message_status_events (wamid, status)` are
unique, inserts skip conflicts, and only rows inserted now come back as work to enqueue. Rows are
written sorted by key so two concurrent deliveries lock in the same order (no deadlock): farmers,
then messages; a message's id still follows its place in the body.

Most deliveries hold one message from a farmer known by phone (`plain_message`); on PostgreSQL those
are one statement (`record_plain_message`), everything else is `record_webhook`'s transaction.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, case, func, or_, select, true, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from models import (
    OUTBOUND_RANK,
    REACHED_FARMER,
    Direction,
    Farmer,
    Message,
    MessageStatus,
    MessageStatusEvent,
    UnhandledWebhook,
    WebhookError,
    utcnow,
)
from models.db import affected_rows, dialect_insert, insert_ignoring_conflicts, psycopg_dialect
from services import farmer_identity, metrics
from services.whatsapp.health import record_account_events
from services.whatsapp.updates import (
    InboundMessage,
    MessageType,
    ParsedWebhook,
    PreferenceUpdate,
    PreferenceValue,
    Problem,
    StatusKind,
    StatusUpdate,
    ValueLevelError,
)

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatusFailure:
    """A `failed` status seen for the first time: the outbox applies the error policy to its message."""

    wamid: str
    error_code: int | None
    error_title: str | None


@dataclass(frozen=True)
class Recorded:
    new_message_ids: list[int]
    duplicate_messages: int
    new_statuses: int
    unhandled: int
    failures: list[StatusFailure] = field(default_factory=list)
    account_events: int = 0


@functools.cache
def _message_insert(dialect_name: str) -> Any:
    messages = Message.__table__
    stmt = dialect_insert(dialect_name, messages)
    return stmt.on_conflict_do_nothing(index_elements=["wamid"]).returning(messages.c.id, messages.c.wamid)


def _message_row(m: InboundMessage, farmer_id: int | None, now: datetime | None = None) -> dict[str, Any]:
    """A message the bot does not answer (a group's, Meta's system notice, a removed reaction) is stored
    as already processed: kept for support, never handed to the conversation."""
    now = now or utcnow()
    return {
        "direction": Direction.INBOUND.value,
        "wamid": m.wamid,
        "phone": m.address,
        "phone_number_id": m.phone_number_id,
        "farmer_id": farmer_id,
        "type": m.meta_type if m.type is MessageType.UNKNOWN and m.meta_type else m.type.value,
        "text": m.text,
        "media_id": m.media_id,
        "mime_type": m.mime_type,
        "context_wamid": m.context_wamid,
        "payload": m.raw,
        "status": (MessageStatus.RECEIVED if m.answered else MessageStatus.PROCESSED).value,
        "processed_at": None if m.answered else now,
        "error_code": m.error_code,
        "error_title": m.error_title,
        "meta_timestamp": m.timestamp,
        "created_at": now,
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
    """Move an outbound message forward to `status`; never backwards (`read` stays `read`). A `failed` for a
    message already delivered or read changes nothing (its event row is what support sees)."""
    kind = StatusKind(status)
    if kind is StatusKind.UNKNOWN:
        return
    reached = (Message.status.notin_(REACHED_FARMER) if kind is StatusKind.FAILED else true())
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
        .where(Message.wamid == wamid, Message.direction == Direction.OUTBOUND.value, reached)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def apply_recorded_statuses(session: Session, wamid: str) -> list[StatusFailure]:
    """Statuses that arrived before we stored the wamid of our own send are applied now; a `failed` one
    is returned for the outbox to apply the error policy to."""
    events = session.scalars(select(MessageStatusEvent).where(MessageStatusEvent.wamid == wamid)).all()
    failures = []
    for e in sorted(events, key=_rank_of_event):  # forward, as Meta sent them: a `failed` after `read` is moot
        apply_status(session, wamid, e.status, e.meta_timestamp, e.error_code, e.error_title)
        if e.status == StatusKind.FAILED.value:
            failures.append(StatusFailure(wamid, e.error_code, e.error_title))
    return failures


def _rank_of_event(event: MessageStatusEvent) -> int:
    kind = StatusKind(event.status)
    return -1 if kind is StatusKind.UNKNOWN else OUTBOUND_RANK[MessageStatus(kind.value)]


def _pricing_columns(s: StatusUpdate) -> dict[str, Any]:
    p = s.pricing
    return {"pricing_billable": p.billable if p else None, "pricing_model": p.pricing_model if p else None,
            "pricing_category": p.category if p else None, "pricing_type": p.type if p else None}


def _record_statuses(session: Session, statuses: list[StatusUpdate], now: datetime) -> tuple[int, list[StatusFailure]]:
    """Store the new status events and move their messages forward; return how many were new and the
    new `failed` ones. A status is matched by wamid alone: its `contacts` or phone may be missing (a
    user id instead of a phone, say)."""
    if not statuses:
        return 0, []
    rows = [
        {
            "wamid": s.wamid,
            "status": s.status.value if s.status is not StatusKind.UNKNOWN else s.status_text,
            "recipient": s.recipient,
            "meta_timestamp": s.timestamp,
            "error_code": s.error_code,
            "error_title": s.error_title,
            **_pricing_columns(s),
            "payload": s.raw,
            "received_at": now,
        }
        for s in sorted(statuses, key=lambda s: (s.wamid, s.status.value))
    ]
    stmt = insert_ignoring_conflicts(session, MessageStatusEvent, ["wamid", "status"]).returning(
        MessageStatusEvent.wamid, MessageStatusEvent.status
    )
    inserted: set[tuple[str, str]] = set()
    for row in rows:
        inserted |= {(w, st) for w, st in session.execute(stmt.values(**row))}
    new, failures = len(inserted), []
    for s in statuses:
        if (s.wamid, s.status.value) in inserted:
            inserted.discard((s.wamid, s.status.value))  # a body repeating a status applies it once
            apply_status(session, s.wamid, s.status.value, s.timestamp, s.error_code, s.error_title)
            if s.error_code is not None:
                metrics.whatsapp_error(s.error_code, "status")
            if s.status is StatusKind.FAILED:
                failures.append(StatusFailure(s.wamid, s.error_code, s.error_title))
                log.warning("outbound message failed at Meta", extra={"wamid": s.wamid, "error_code": s.error_code,
                                                                      "error_title": s.error_title})
    return new, failures


def _record_value_errors(session: Session, errors: list[ValueLevelError]) -> None:
    """Errors about the app or account, not one message: a row each (for support and operators), counted."""
    for e in errors:
        log.error("WhatsApp reported an error in a webhook", extra={"error_code": e.code, "error_title": e.title})
        metrics.whatsapp_error(e.code, "value")
        session.add(WebhookError(code=e.code, title=e.title, details=e.details, phone_number_id=e.phone_number_id,
                                 payload=e.raw))


def _apply_preferences(session: Session, preferences: list[PreferenceUpdate], now: datetime) -> int:
    """`marketing_messages` stop / resume: the same marketing opt-out as a 131050 failure. The newest event by
    its own timestamp wins whatever order they arrive in (a retried or late one older than the last applied
    changes nothing); one without a timestamp counts as made now; at the same second a stop wins over a
    resume. The farmer is matched by phone and by user id, whichever the event names. Returns how many
    farmers changed (a stranger's preference has nothing to change)."""
    applied = 0
    for p in sorted(preferences, key=lambda p: (p.phone or "", p.user_id or "", p.timestamp or now)):
        if p.category != "marketing_messages" or p.value is PreferenceValue.UNKNOWN:
            log.warning("user preference not understood", extra={"category": p.category, "value": p.raw.get("value")})
            continue
        made_at = p.timestamp or now
        stop = p.value is PreferenceValue.STOP
        last = Farmer.marketing_preference_at
        applied += affected_rows(session.execute(
            update(Farmer)
            .where(or_(*([Farmer.phone == p.phone] if p.phone else []),
                       *([Farmer.user_id == p.user_id] if p.user_id else [])),
                   last.is_(None) | ((last <= made_at) if stop else (last < made_at)))
            .values(marketing_opt_out_at=made_at if stop else None, marketing_preference_at=made_at, updated_at=now)
            .execution_options(synchronize_session=False)
        ))
        log.info("farmer's marketing preference", extra={"value": p.value.value})
    return applied


def _ours(m: InboundMessage, our_numbers: Collection[str] | None) -> bool:
    """Written to one of our numbers. Meta always names it in `metadata`; a body without one is taken as
    written to our default number."""
    return our_numbers is None or m.phone_number_id is None or m.phone_number_id in our_numbers


def _not_ours(messages: list[InboundMessage], our_numbers: Collection[str] | None) -> list[Problem]:
    """Messages written to a number that is not one of ours: kept as unhandled, never answered or charged."""
    return [Problem(f"message to phone_number_id {str(m.phone_number_id)[:40]!r}, which is not one of ours "
                    "(WHATSAPP_PHONE_NUMBER_ID): not answered", m.raw)
            for m in messages if not _ours(m, our_numbers)]


def plain_message(parsed: ParsedWebhook, our_numbers: Collection[str] | None = None) -> InboundMessage | None:
    """The delivery's one message when that is all it holds and its sender is a farmer known by phone alone,
    writing to one of our numbers (not a group, not Meta's system notice): most deliveries. Such a delivery
    needs only the sender's upsert and the message's insert (`record_plain_message`); anything else
    (None) takes `record_webhook`."""
    if (len(parsed.messages) != 1 or parsed.statuses or parsed.problems or parsed.errors or parsed.preferences
            or parsed.user_id_changes or parsed.account):
        return None
    m = parsed.messages[0]
    if not m.phone or m.user_id or m.group_id or m.system is not None or not _ours(m, our_numbers):
        return None
    return m


@functools.cache
def _plain_message_sql() -> str:
    """PostgreSQL, one statement, as the driver takes it (built once): `WITH sender AS (INSERT INTO farmers
    ... ON CONFLICT (phone) DO UPDATE ... RETURNING id) INSERT INTO messages (..., farmer_id) VALUES (...,
    (SELECT id FROM sender)) ON CONFLICT (wamid) DO NOTHING RETURNING id`. The sender is upserted whether or
    not the message is new, as in `record_webhook`. Farmer columns are bound as `farmer_<name>`, message
    columns by their own names: the keys of `farmer_identity.sender_row` and `_message_row`."""
    farmers, messages = Farmer.__table__.c, Message.__table__.c
    sample = InboundMessage(wamid="", phone="", type=MessageType.TEXT, timestamp=None)  # for the column names
    sender = farmer_identity.sender_upsert(
        postgresql.insert(Farmer).values({name: bindparam(f"farmer_{name}", type_=farmers[name].type)
                                           for name in farmer_identity.sender_row(sample, utcnow())}),
        "phone",
    ).cte("sender")
    values: dict[str, Any] = {name: bindparam(name, type_=messages[name].type)
                              for name in _message_row(sample, None) if name != "farmer_id"}
    values["farmer_id"] = select(sender.c.id).scalar_subquery()
    stmt = postgresql.insert(Message).values(values).on_conflict_do_nothing(index_elements=["wamid"])
    return str(stmt.returning(messages.id).compile(dialect=psycopg_dialect()))


def _plain_message_params(m: InboundMessage, now: datetime) -> dict[str, Any]:
    """`_plain_message_sql`'s parameters for `m`, as the driver takes them (the JSON payload as text)."""
    params = _message_row(m, None, now)
    params["payload"] = json.dumps(params["payload"])
    del params["farmer_id"]
    for name, value in farmer_identity.sender_row(m, now).items():
        params["farmer_" + name] = value
    return params


def record_plain_message(conn: psycopg.Connection[Any], m: InboundMessage, now: datetime) -> Recorded:
    """What `record_webhook` does for a `plain_message`, as one statement on a psycopg connection in
    autocommit (`Database.driver_autocommit`): one round trip, committed by itself, a statement the
    connection prepares on first use. A wamid stored before inserts nothing: no new id, one duplicate."""
    row = conn.execute(_plain_message_sql(), _plain_message_params(m, now), prepare=True).fetchone()
    new_ids = [row[0]] if row is not None and m.answered else []
    return Recorded(new_ids, 1 if row is None else 0, 0, 0)


def _in_body_order_locked_by_wamid(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A delivery's message rows, given in the body's order, as they are inserted. Their ids must follow the
    body (the workers break a tie of timestamps by id), while on PostgreSQL the inserts go in wamid order, so
    two deliveries holding the same wamids take their locks in the same order and cannot deadlock: there the
    ids are drawn from the sequence first, in the body's order, and the rows then sorted. SQLite lets one
    writer in at a time: rows go as they are, and take their ids in that order."""
    by_wamid = sorted(rows, key=lambda row: row["wamid"])
    if conn.dialect.name != "postgresql" or by_wamid == rows:
        return rows
    for row, row_id in zip(rows, sorted(conn.execute(_NEXT_MESSAGE_IDS, {"n": len(rows)}).scalars()), strict=True):
        row["id"] = row_id
    return by_wamid


_NEXT_MESSAGE_IDS = (select(func.nextval(func.pg_get_serial_sequence(Message.__tablename__, "id")))
                     .select_from(func.generate_series(1, bindparam("n"))))


def record_webhook(session: Session, parsed: ParsedWebhook, our_numbers: Collection[str] | None,
                   now: datetime) -> Recorded:
    """Write everything in one transaction (the caller commits). Returns the new inbound ids to enqueue.
    With `our_numbers`, a message to any other `metadata.phone_number_id` is stored as unhandled only."""
    foreign = _not_ours(parsed.messages, our_numbers)
    problems = [*parsed.problems, *foreign]
    messages = [m for m in parsed.messages if _ours(m, our_numbers)]
    farmer_ids = farmer_identity.upsert_senders(session, [m for m in messages if not m.group_id], now)
    new_ids: list[int] = []
    unique = {m.wamid: m for m in messages}  # one body may repeat a message
    created: dict[str, int] = {}
    if unique:
        conn = session.connection()
        rows = _in_body_order_locked_by_wamid(conn, [_message_row(m, None if m.group_id else farmer_ids.get(m.address),
                                                                  now) for m in unique.values()])
        created = {wamid: row_id for row_id, wamid in conn.execute(_message_insert(conn.dialect.name), rows)}
    # Handed over in the body's order; the workers handle a farmer's messages by timestamp, then id (its place here).
    for m in messages:
        if m.wamid in created and created[m.wamid] not in new_ids and m.answered:
            new_ids.append(created[m.wamid])
        if m.wamid in created and m.system is not None and not m.group_id:
            farmer_identity.apply_system_message(session, m, farmer_ids.get(m.address), now)
    for change in parsed.user_id_changes:
        if farmer_identity.change_user_id(session, None, change.current or "", now, previous=change.previous,
                                          phone=change.phone) is None:
            log.info("user_id_update for a farmer we do not know; nothing to change")
    new_statuses, failures = _record_statuses(session, parsed.statuses, now)
    _record_value_errors(session, parsed.errors)
    _apply_preferences(session, parsed.preferences, now)
    for problem in problems:
        log.warning("webhook part not understood: %s", problem.reason)
        session.add(UnhandledWebhook(reason=problem.reason[:300], payload=problem.part))
    account_events = record_account_events(session, parsed.account, now)
    return Recorded(new_ids, len(unique) - len(created), new_statuses, len(problems), failures, account_events)
