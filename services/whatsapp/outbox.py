"""The outbox: every outbound message is a row in the message log before it is sent, and leaves in order.

`queue_message` writes the row (`pending`, due at once) in the caller's transaction, numbered in its
recipient's sequence (`seq`). After commit the caller sends what is first in that farmer's line at
once (`send_queued`); the senders (`flask sender`, the embedded sender thread: services/whatsapp/sender.py)
take every other due row, claimed in batches (`take_due`), sent concurrently (`transmit`) and recorded
together (`settle`). The database decides what may go:

- Order: a row is sent only while no earlier row of the same recipient is still pending, so one that
  waits for a retry (Graph 429/5xx, 131056 pair rate) holds back the later replies to that farmer and
  nobody else's. Messages we write first (a sponsor's) have no place in the line: they neither wait
  nor hold anything back.
- One sender at a time: sending takes a lease on the row (`SEND_LEASE_SECONDS`, longer than a send can
  take); a sender that dies mid-send leaves it to expire, then another sender takes the row.
- Never twice from our side: the wamid Graph returns goes to Redis at once, then to the row (retried
  while the database refuses). A row whose wamid is in Redis is recorded, never sent again. What is
  left is a crash between Graph's answer and the Redis write (see docs/OPERATIONS.md).
- Errors follow the policy table in `services/whatsapp/errors.py`: retryable ones wait `RETRY_BACKOFF_BASE ** attempt`
  seconds (4, 16, 64, 256) for at most `RETRIES` retries, 131047 sends the row's fallback template
  in the row's place, the rest mark the row failed where support sees it.
- The same table applies when Meta accepted a send and reports it `failed` later (a status webhook,
  `apply_status_failures`): a fallback template or a resend after the backoff is a new row linked to
  the failed one (`replaces_id`, unique: once however often Meta reports it). What a failure says
  beyond its message (`errors.EFFECT_BY_CODE`: the farmer cannot be reached, stopped marketing, must be
  paced; a template or the account is blocked) is recorded by either path; that, the resend and the
  move to the farmer's phone live in services/whatsapp/failures.py.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Insert,
    Integer,
    ScalarSelect,
    String,
    Update,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from models import REACHED_FARMER, Direction, Farmer, Message, MessageStatus, MessageStatusEvent, utcnow
from models.db import DriverStatement
from services import context, metrics, runtime_settings, whatsapp
from services.inbox import StatusFailure, apply_recorded_statuses
from services.leases import claim, lease_free, let_go, owner_name
from services.redis_conn import as_text, quick
from services.whatsapp import messages as wa
from services.whatsapp.client import WhatsAppClient
from services.whatsapp.errors import POLICY_BY_CODE, GraphAPIError, LimitError, Policy
from services.whatsapp.failures import (
    PACE_SECONDS,
    apply_effect,
    queue_resend,
    retry_delay,
    template_language,
    to_phone,
    to_phone_instead,
)
from services.whatsapp.health import ACCOUNT_BLOCK_KEY, TemplateRefused, template_refusal
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
PACE_KEY = "ziraai:whatsapp:pace:{phone}"  # the farmer's 6-second token while paced
ACCOUNT_RECHECK = timedelta(minutes=5)  # how long a row waits while the account is blocked


# --- writing ------------------------------------------------------------------------------------------


_LOCK_LINE = DriverStatement(select(func.pg_advisory_xact_lock(_SEQ_LOCK, func.hashtext(bindparam("line_phone")))))


def lock_line(session: Session, phone: str) -> None:
    """Take the recipient's line until commit before numbering in it (on SQLite every writer holds the
    database already), so numbers are taken in the order of commits: a sender never sees number 5
    before number 4 is visible. The number itself is read by the next statement, whose snapshot comes
    after the lock. (A `DriverStatement`, as the reply's INSERT and the wamid's record: SQLAlchemy's work
    around a statement costs more than the statement; ORM rows are flushed by the INSERT that numbers them.)"""
    if session.get_bind().dialect.name == "postgresql":
        _LOCK_LINE.rows(session, {"line_phone": phone})


def _seq_after_last(phone: str | ColumnElement[str]) -> ScalarSelect[int]:
    """The recipient's next place in line, as a subquery (written into the row's INSERT: no statement of its own)."""
    return (select(func.coalesce(func.max(Message.seq), 0) + 1)
            .where(Message.phone == phone, Message.direction == Direction.OUTBOUND.value).scalar_subquery())


def next_seq(session: Session, phone: str) -> int:
    """The recipient's next place in line, read under the line's lock (`lock_line`)."""
    lock_line(session, phone)
    return int(session.scalar(select(_seq_after_last(phone))) or 1)


def queue_message(session: Session, phone: str, out: Outbound, now: datetime, *, farmer_id: int | None = None,
                  fallback: Outbound | None = None, analysis_id: int | None = None,
                  seq: int | None = None, replaces_id: int | None = None, from_number: str | None = None) -> Message:
    """Log an outbound message as `pending`, last in its recipient's line (or at `seq`); the caller
    commits, then calls `send_queued`. `phone` is the farmer's address (a user id when that is all we
    know). It goes out from `from_number`, else from the number the farmer last wrote to, else our default."""
    proactive = out.template_name in PROACTIVE_TEMPLATES
    if from_number is None and farmer_id is not None:
        farmer = session.get(Farmer, farmer_id)
        from_number = farmer.our_number_id if farmer is not None else None
    if not proactive and not seq:
        lock_line(session, phone)
    row = Message(
        direction=Direction.OUTBOUND.value,
        phone=phone,
        phone_number_id=from_number,
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
        seq=None if proactive else seq or _seq_after_last(phone),
        attempts=0,
        replaces_id=replaces_id,
    )
    session.add(row)
    session.flush()
    return row


def _outbound_to_dict(out: Outbound) -> dict[str, Any]:
    return {"type": out.type, "body": out.body, "text": out.text, "template_name": out.template_name,
            "template_params": out.template_params}


# --- what may go now ------------------------------------------------------------------------------------


_EARLIER = aliased(Message)
_OTHER = aliased(Message)
# Built once: an alias of the 30-column model costs about a millisecond to make, on every send.
_NOT_HELD_BACK = ~exists().where(_EARLIER.direction == Direction.OUTBOUND.value,
                                 _EARLIER.status == MessageStatus.PENDING.value,
                                 _EARLIER.phone == Message.phone, _EARLIER.seq < Message.seq)


def _sendable(now: datetime | ColumnElement[datetime]) -> list[ColumnElement[bool]]:
    """Pending, due, and first in its recipient's line."""
    return [Message.direction == Direction.OUTBOUND.value, Message.status == MessageStatus.PENDING.value,
            Message.next_attempt_at <= now, _NOT_HELD_BACK]


# The row being updated, as a RETURNING clause's subqueries name it. SQLAlchemy writes the columns of
# SQLite's RETURNING without their table, which inside a subquery would name the subquery's own table;
# written out in full, the reference holds on both databases.
_UPDATED_PHONE = literal_column("messages.phone", String)
_UPDATED_ID = literal_column("messages.id", BigInteger)


def _paced(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """Meta asked us to pace the recipient of the row being claimed (131056) and the pause is not over."""
    return exists().where(Farmer.phone == _UPDATED_PHONE, Farmer.paced_until > now)


def _claim_due_statement(one_recipient: bool) -> Update:
    now: BindParameter[datetime] = bindparam("due_now")
    due = select(Message.id).where(*_sendable(now), lease_free(Message, now))
    if one_recipient:
        due = due.where(Message.phone == bindparam("due_phone"))
    due = (due.order_by(Message.next_attempt_at, Message.id).limit(bindparam("due_limit", type_=Integer))
           .with_for_update(skip_locked=True))
    return (update(Message).where(Message.id.in_(due), lease_free(Message, now))
            .values(lease_owner=bindparam("due_owner"), lease_until=bindparam("due_until"),
                    attempts=Message.attempts + 1)
            .returning(Message, _paced(now)))


# Built once: building this statement costs more CPU than running it.
_CLAIM_DUE = {False: _claim_due_statement(False), True: _claim_due_statement(True)}


def _claim_due(session: Session, now: datetime, owner: str, limit: int,
               phone: str | None = None) -> tuple[list[Message], frozenset[str]]:
    """Take the lease on up to `limit` rows that may go now (to `phone` only, if given), count their
    attempt and learn which of their recipients Meta asked us to pace, in one statement: the first of
    each recipient's line (so a batch never holds two of one farmer's replies), oldest due first. On
    PostgreSQL rows another sender is claiming at the same moment are skipped, not waited for.
    Returns the rows and the paced recipients."""
    params = {"due_now": now, "due_phone": phone, "due_limit": limit, "due_owner": owner,
              "due_until": now + timedelta(seconds=SEND_LEASE_SECONDS)}
    rows = session.execute(_CLAIM_DUE[phone is not None], params,
                           execution_options={"synchronize_session": False}).all()
    paced = frozenset(row.phone for row, is_paced in rows if is_paced)
    return sorted((row for row, _ in rows), key=lambda row: (row.next_attempt_at, row.id)), paced


@dataclass(frozen=True)
class Outgoing:
    """A claimed row that goes now (its attempt counted by the claim): what the send needs outside the
    claim's transaction."""

    message_id: int
    key: str  # sent_key(row): where its wamid goes first
    body: dict[str, Any]
    from_number: str | None


@dataclass(frozen=True)
class Batch:
    """A sender's claim: the rows to send now, and how many others it settled without a send (held,
    refused, recorded from Redis) or found waiting (a paced farmer's token taken)."""

    sends: list[Outgoing]
    settled: int
    waiting: int


def _queue_reply_statement(held: bool) -> Insert:
    """`queue_message`'s INSERT for a reply, built once. Held: the row is taken for its sender at once
    (lease and attempt, as a claim would) when nothing of its recipient's line is still pending."""
    phone: BindParameter[str] = bindparam("reply_phone")
    values: dict[str, Any] = {
        "direction": Direction.OUTBOUND.value, "phone": phone, "phone_number_id": bindparam("reply_from"),
        "farmer_id": bindparam("reply_farmer"), "type": bindparam("reply_type"), "text": bindparam("reply_text"),
        "payload": bindparam("reply_payload", type_=Message.__table__.c.payload.type),
        "status": MessageStatus.PENDING.value, "created_at": bindparam("reply_now"),
        "next_attempt_at": bindparam("reply_now"), "seq": _seq_after_last(phone), "attempts": 0}
    if held:
        first = ~exists().where(_OTHER.phone == phone, _OTHER.direction == Direction.OUTBOUND.value,
                                _OTHER.status == MessageStatus.PENDING.value)
        values |= {"attempts": case((first, 1), else_=0),
                   "lease_owner": case((first, bindparam("reply_holder", type_=String)), else_=None),
                   "lease_until": case((first, bindparam("reply_until", type_=Message.__table__.c.lease_until.type)),
                                       else_=None)}
    return insert(Message).values(values).returning(Message.id, Message.lease_owner)


_QUEUE_REPLY = {held: DriverStatement(_queue_reply_statement(held)) for held in (False, True)}


@dataclass(frozen=True)
class QueuedReply:
    """A reply written to the outbox: its row, and what to send right after commit if the row was
    taken for us (first in its line)."""

    message_id: int
    outgoing: Outgoing | None


def queue_reply(session: Session, farmer: Farmer, out: Outbound, now: datetime, *, take: bool) -> QueuedReply:
    """`queue_message` for an answer to the farmer's message (no template, no fallback), in one prebuilt
    statement. With `take` (see `may_take_now`), a row that is first in the farmer's line is taken for
    this process to send after commit (`send_queued(phone, first=...)`): the claim of the send is part
    of the INSERT. A process that dies before sending leaves it to the senders once the lease expires."""
    if out.template_name:
        raise ValueError("a template goes through queue_message (the claim checks whether it may be sent)")
    lock_line(session, farmer.address)
    params = {"reply_phone": farmer.address, "reply_from": farmer.our_number_id, "reply_farmer": farmer.id,
              "reply_type": out.type, "reply_text": out.text, "reply_payload": out.body, "reply_now": now,
              "reply_holder": owner_name(), "reply_until": now + timedelta(seconds=SEND_LEASE_SECONDS)}
    row = _QUEUE_REPLY[take].rows(session, params)[0]
    if row.lease_owner is None:
        return QueuedReply(row.id, None)
    return QueuedReply(row.id, Outgoing(row.id, _sent_key(row.id, now), dict(out.body), farmer.our_number_id))


def may_take_now(redis: Redis, farmer: Farmer, now: datetime) -> bool:
    """Whether a reply to this farmer may be taken for sending as it is written (`queue_reply`): neither
    the account blocked nor the farmer paced; otherwise, or when Redis does not answer, the claim's
    checks (`_prepare`) decide after commit."""
    if farmer.paced_until is not None and farmer.paced_until > now:
        return False
    try:
        return quick(redis).get(ACCOUNT_BLOCK_KEY) is None
    except RedisError:
        return False


def lift_account_block(session: Session, now: datetime) -> int:
    """The operator's way to resume sending at once (`flask whatsapp-unblock`), once the account is fixed in
    WhatsApp Manager: the block goes, and every reply it held (due again within ACCOUNT_RECHECK) is due now,
    each farmer's line still in its order. A row that was waiting a shorter backoff or a farmer's pace goes
    now too (the claim checks pace and quiet hours again). Returns how many rows were made due. A RedisError
    propagates: the block must never look lifted when it is not."""
    context.redis().delete(ACCOUNT_BLOCK_KEY)
    released = session.scalars(
        update(Message)
        .where(Message.direction == Direction.OUTBOUND.value, Message.status == MessageStatus.PENDING.value,
               Message.next_attempt_at > now, Message.next_attempt_at <= now + ACCOUNT_RECHECK)
        .values(next_attempt_at=now)
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    ).all()
    log.warning("WhatsApp send block lifted by an operator", extra={"released": len(released)})
    return len(released)


def take_due(limit: int = DUE_BATCH) -> Batch:
    """Claim the rows that may go now (at most `limit`, one per recipient) and check each in the same
    transaction, as `send_pending` does one. A RedisError rolls the whole claim back and propagates."""
    now = utcnow()
    redis = quick(context.redis())
    sends: list[Outgoing] = []
    settled = waiting = 0
    with context.db().session() as session, session.begin():
        rows, paced = _claim_due(session, now, owner_name(), limit)
        if not rows:
            return Batch([], 0, 0)
        blocks = _blocks(redis, paced)
        for row in rows:
            prepared = _prepare(session, row, redis, blocks)
            if isinstance(prepared, Outgoing):
                sends.append(prepared)
            elif prepared == "waiting":
                waiting += 1
            else:
                settled += 1
    return Batch(sends, settled, waiting)


def send_queued(phone: str, first: Outgoing | None = None) -> None:
    """Right after a commit that queued replies: send the farmer's line now, in order, as far as it goes
    (also rows other workers queued meanwhile that waited behind ours: nobody else sends those at once),
    starting with `first` when the commit took that row for us (`queue_reply`).
    What cannot go now (an earlier reply waits for its retry, or another worker is sending it, Redis or
    the database fails) is left to the senders; this never raises, the caller's work is already committed.
    A row another worker queues in the instant between our recording of the row before it and that
    commit waits for a sender's next pass (half a second when idle) instead of going at once."""
    try:
        if first is not None and not _send(first):
            return
        for _ in range(20):  # a reply is a handful of messages; anything longer the senders finish
            if not _send_next(phone):
                return
    except (RedisError, SQLAlchemyError) as exc:
        log.warning("could not send right away; the senders will", extra={"reason": repr(exc)[:200]})


def _send_next(phone: str) -> bool:
    """`send_pending` for the first row of the farmer's line that may go now, found and claimed in one
    statement. True when more of the line may go now (the row was settled and others are pending)."""
    redis = quick(context.redis())
    with context.db().session() as session, session.begin():
        rows, paced = _claim_due(session, utcnow(), owner_name(), 1, phone)
        if not rows:
            return False
        prepared = _prepare(session, rows[0], redis, _blocks(redis, paced))
    if not isinstance(prepared, Outgoing):
        return prepared not in ("retry", "waiting")
    return _send(prepared)


def _send(out: Outgoing) -> bool:
    """Send a claimed row and record it. True when more of its recipient's line may go now."""
    sent = transmit(whatsapp.client(), quick(context.redis()), out)
    if sent.wamid is not None:
        return _record_sent({out.message_id: sent.wamid})
    return settle([sent])[0] not in ("retry", "waiting")


# --- sending one row ---------------------------------------------------------------------------------


def sent_key(row: Message) -> str:
    """Where the wamid of a sent row is kept until the row has it. The creation time makes the key
    unique even when row ids start again (a database restored from a backup)."""
    return _sent_key(row.id, row.created_at)


def _sent_key(message_id: int, created_at: datetime) -> str:
    return f"ziraai:outbox:sent:{message_id}:{int(created_at.timestamp() * 1_000_000)}"


def send_pending(message_id: int) -> str:
    """Send one row if it may go now: claim it, send it, record the wamid. Safe to call twice and from
    any number of processes. Returns what happened: `sent`, `already sent`, `retry` (due again later),
    `failed`, `template` (the fallback takes its place), `needs_template`, `refused` (a template Meta
    paused, disabled or rejected; not sent), `free_text` (refused, its text goes instead), `withheld`,
    `deferred` (quiet hours, Meta's marketing pause, a blocked account), `waiting` (not this row's turn,
    another sender has it, or the farmer is paced) or `missing`.
    RedisError propagates (the rate limit and the wamid memory live there); the row is then untouched."""
    owner = owner_name()
    redis = quick(context.redis())
    with context.db().session() as session, session.begin():
        now = utcnow()
        if not claim(session, Message, message_id, *_sendable(now), owner=owner, seconds=SEND_LEASE_SECONDS,
                     values={"attempts": Message.attempts + 1}):
            return _not_claimed(session, message_id)
        row = session.get_one(Message, message_id)
        paced = session.scalars(select(Message.phone).where(Message.id == message_id, _paced(now))).all()
        prepared = _prepare(session, row, redis, _blocks(redis, frozenset(paced)))
    if not isinstance(prepared, Outgoing):
        return prepared
    return settle([transmit(whatsapp.client(), redis, prepared)])[0]


def _prepare(session: Session, row: Message, redis: Redis, blocks: _Blocks) -> Outgoing | str:
    """Inside the claim's transaction: whether a claimed row goes now. Recorded already (its wamid in
    Redis), held (a proactive message, a blocked account, a paced farmer) or refused (a blocked
    template): the outcome, and the attempt the claim counted is taken back. Otherwise it is returned,
    to be sent after the commit. A RedisError propagates (the caller rolls the claim back)."""
    held = _held(session, row, redis, blocks)
    if held is None:
        return Outgoing(row.id, sent_key(row), dict(row.payload or {}), row.phone_number_id)
    row.attempts -= 1
    return held


def _held(session: Session, row: Message, redis: Redis, blocks: _Blocks) -> str | None:
    """Why a claimed row does not go now (settling it), or None."""
    # Only a row tried before can have been sent.
    known = redis.get(sent_key(row)) if row.attempts > 1 else None
    if known is not None:
        _accept(session, row, as_text(known) or "")
        log.warning("sent before, wamid recorded now (not sent again)", extra={"message_id": row.id})
        return "already sent"
    if row.template_name in PROACTIVE_TEMPLATES:
        held = _hold_proactive(session, row)
        if held is not None:
            return held
    held = _hold_blocked(session, row, utcnow(), redis, blocks)
    if held is not None:
        return held
    if row.template_name:
        refusal = template_refusal(session, row.template_name, template_language(row))
        if refusal is not None:
            return _refuse_template(session, row, refusal)
    return None


@dataclass(frozen=True)
class Transmitted:
    """What became of one send: Graph's wamid, Graph's refusal, or not tried at all (`unsent`: the
    shared rate limiter failed, a RedisError, or had no slot in time, a TimeoutError)."""

    outgoing: Outgoing
    wamid: str | None = None
    error: GraphAPIError | None = None
    unsent: Exception | None = None


def transmit(client: WhatsAppClient, redis: Redis, out: Outgoing) -> Transmitted:
    """Send one prepared row (the client takes a slot of the shared rate limit first) and keep the
    wamid Graph answers in Redis at once, before anything else: from then on no sender sends the row
    again. Never raises for Graph or the limiter; `settle` deals with the outcome. Thread-safe: the
    concurrent senders call it from their pool."""
    try:
        wamid = client.send(out.body, out.from_number)
    except GraphAPIError as exc:
        return Transmitted(out, error=exc)
    except (RedisError, TimeoutError) as exc:  # the shared rate limiter: Meta never saw this attempt
        return Transmitted(out, unsent=exc)
    with contextlib.suppress(RedisError):  # one round trip: the wamid kept, and the token shown to work
        pipe = redis.pipeline(transaction=False)
        pipe.set(out.key, wamid, ex=SENT_KEY_TTL)
        pipe.delete(AUTH_ALERT_KEY)
        pipe.execute()
    return Transmitted(out, wamid=wamid)


def settle(results: list[Transmitted]) -> list[str]:
    """After the sends: record the accepted ones (one transaction for all), apply the error policy to
    the refused ones, give the untried ones back (their attempt not counted). Returns each one's
    outcome, in order; then raises the limiter's error if one was not tried, so the sender backs off."""
    accepted = {r.outgoing.message_id: r.wamid for r in results if r.wamid is not None}
    if accepted:
        _record_sent(accepted)
    untried = [r for r in results if r.unsent is not None]
    if untried:
        with context.db().session() as session, session.begin():
            for r in untried:
                row = session.get_one(Message, r.outgoing.message_id)
                row.attempts -= 1
                let_go(row)
    outcomes = ["sent" if r.wamid is not None else _handle_error(r.outgoing.message_id, r.error)
                if r.error is not None else "untried" for r in results]
    if untried:
        raise untried[0].unsent  # type: ignore[misc]
    return outcomes


def _not_claimed(session: Session, message_id: int) -> str:
    row = session.get(Message, message_id)
    if row is None or row.direction != Direction.OUTBOUND:
        log.warning("send asked for an unknown message", extra={"message_id": message_id})
        return "missing"
    return "already sent" if row.wamid or row.status != MessageStatus.PENDING else "waiting"


def _accept(session: Session, row: Message, wamid: str) -> None:
    row.wamid = wamid
    row.status = MessageStatus.ACCEPTED.value
    row.error_code = row.error_title = None
    let_go(row)
    session.flush()
    apply_status_failures(session, apply_recorded_statuses(session, wamid), utcnow())


def _accepted(wamid: str | BindParameter[str], now: datetime | BindParameter[datetime]) -> dict[str, Any]:
    """What a row Graph accepted becomes: its wamid, `accepted`, no error, no lease."""
    return {"wamid": wamid, "status": MessageStatus.ACCEPTED.value, "error_code": None, "error_title": None,
            "lease_owner": None, "lease_until": now}


# Built once, as _NOT_HELD_BACK: another row of the same recipient still waits.
_MORE_PENDING = exists().where(_OTHER.direction == Direction.OUTBOUND.value,
                               _OTHER.status == MessageStatus.PENDING.value,
                               _OTHER.phone == _UPDATED_PHONE, _OTHER.id != _UPDATED_ID)


_ACCEPT_ONE = DriverStatement(
    update(Message).where(Message.id == bindparam("accepted_id"))
    .values(_accepted(bindparam("accepted_wamid"), bindparam("accepted_at")))
    .returning(exists().where(MessageStatusEvent.wamid == bindparam("accepted_wamid")), _MORE_PENDING))


def _accept_one(session: Session, message_id: int, wamid: str, now: datetime) -> bool:
    """`_accept` for one row in one statement (built once), which also tells whether statuses arrived
    before the wamid was known (then they are applied) and whether more of the recipient's line is
    pending. Returns the latter."""
    found = _ACCEPT_ONE.rows(session, {"accepted_id": message_id, "accepted_wamid": wamid, "accepted_at": now})
    if not found:
        return False
    flags = found[0]
    if flags[0]:
        apply_status_failures(session, apply_recorded_statuses(session, wamid), now)
    return bool(flags[1])


def _accept_many(session: Session, wamids: dict[int, str], now: datetime) -> None:
    """`_accept` for many rows at once: one UPDATE by primary key each (one round trip on PostgreSQL),
    then the statuses that arrived before the wamids were known (one query finds them)."""
    session.execute(update(Message), [{"id": message_id, **_accepted(wamid, now)}
                                      for message_id, wamid in wamids.items()])
    early = session.scalars(select(MessageStatusEvent.wamid).distinct()
                            .where(MessageStatusEvent.wamid.in_(list(wamids.values())))).all()
    for wamid in early:
        apply_status_failures(session, apply_recorded_statuses(session, wamid), now)


def _record_sent(wamids: dict[int, str]) -> bool:
    """Graph accepted these rows and their wamids are in Redis (`transmit`): write them to the rows,
    trying again while the database refuses. If every try fails the rows' leases expire and the next
    sender finds the wamids in Redis: recorded, not re-sent. For a row recorded alone, returns whether
    more of its recipient's line is pending (a batch: False; the senders' next claim finds them)."""
    more = False
    for pause in (*RECORD_PAUSES, None):
        try:
            with context.db().session() as session, session.begin():
                if len(wamids) == 1:
                    more = _accept_one(session, *next(iter(wamids.items())), utcnow())
                else:
                    _accept_many(session, wamids, utcnow())
            break
        except (OperationalError, InterfaceError) as exc:  # the connection, not the statement
            if pause is None:
                raise
            log.warning("could not record sent messages' wamids; trying again",
                        extra={"message_ids": sorted(wamids)[:20], "reason": type(exc).__name__})
            time.sleep(pause)
    for message_id, wamid in wamids.items():
        metrics.outbound_send("sent")
        log.info("outbound message accepted", extra={"message_id": message_id, "wamid": wamid})
    return more


def _hold_proactive(session: Session, row: Message) -> str | None:
    """A message we write first is withheld from a farmer who opted out meanwhile, and waits out quiet hours."""
    farmer = session.get(Farmer, row.farmer_id) if row.farmer_id is not None else None
    now = utcnow()
    if farmer is not None and farmer.marketing_paused_until is not None and farmer.marketing_paused_until > now:
        row.next_attempt_at = farmer.marketing_paused_until
        let_go(row)
        log.info("proactive message waits: Meta limits marketing messages to this farmer for now",
                 extra={"message_id": row.id, "until": row.next_attempt_at.isoformat()})
        return "deferred"
    if farmer is not None and not farmer.accepts_proactive:
        row.status, row.failed_at = MessageStatus.FAILED.value, utcnow()
        row.error_title = ("withheld: the farmer opted out before delivery" if farmer.opted_out_at or
                           farmer.deletion_requested_at else "withheld: the farmer cannot receive it (unreachable "
                           "or stopped marketing messages)")
        let_go(row)
        log.info("proactive message withheld: farmer opted out", extra={"message_id": row.id})
        return "withheld"
    until = runtime_settings.current().quiet_until(now)
    if until is None:
        return None
    row.next_attempt_at = until
    let_go(row)
    log.info("proactive message waits for the end of quiet hours",
             extra={"message_id": row.id, "until": until.isoformat()})
    return "deferred"


@dataclass(frozen=True)
class _Blocks:
    """What holds sends back now, read once per claim: the account block, and which of the claimed
    rows' recipients Meta asked us to pace."""

    account: str | None
    paced: frozenset[str]


def _blocks(redis: Redis, paced: frozenset[str]) -> _Blocks:
    account = redis.get(ACCOUNT_BLOCK_KEY)
    return _Blocks(as_text(account) if account is not None else None, paced)


def _hold_blocked(session: Session, row: Message, now: datetime, redis: Redis, blocks: _Blocks) -> str | None:
    """Nothing goes while the account is blocked; a paced farmer gets at most one message per PACE_SECONDS
    (a blocked template is the template registry's: `template_refusal`). A RedisError propagates (the
    caller rolls the claim back)."""
    if blocks.account is not None:
        row.next_attempt_at = now + ACCOUNT_RECHECK
        let_go(row)
        log.warning("send held: the WhatsApp account is blocked", extra={"message_id": row.id,
                                                                         "block": blocks.account})
        return "deferred"
    if row.phone in blocks.paced:
        key = PACE_KEY.format(phone=row.phone)
        if not redis.set(key, "1", nx=True, px=PACE_SECONDS * 1000):
            wait_ms = redis.pttl(key)
            row.next_attempt_at = now + timedelta(milliseconds=wait_ms if wait_ms > 0 else PACE_SECONDS * 1000)
            let_go(row)
            return "waiting"
    return None


def _refuse_template(session: Session, row: Message, refusal: TemplateRefused) -> str:
    """A template Meta would refuse is not sent: the row fails with the reason. Inside the farmer's 24-hour
    window a reply's text goes instead (with its quick replies as buttons when they fit), in its place in
    line; a message we write first (a sponsor's) has no place in line and is only refused."""
    now = utcnow()
    row.status, row.failed_at = MessageStatus.FAILED.value, now
    row.error_code, row.error_title = None, f"not sent: {refusal.reason}"[:300]
    let_go(row)
    metrics.outbound_send("failed")
    extra = {"message_id": row.id, "template": refusal.name, "template_status": refusal.status}
    farmer = session.get(Farmer, row.farmer_id) if row.farmer_id is not None else None
    in_window = (farmer is not None and farmer.last_inbound_at is not None
                 and now - farmer.last_inbound_at < SERVICE_WINDOW)
    if not in_window or not row.text or row.template_name in PROACTIVE_TEMPLATES:
        log.error("template refused and no free-text fallback (outside the 24-hour window)", extra=extra)
        return "refused"
    new = queue_message(session, row.phone, _free_text(row), now, farmer_id=row.farmer_id,
                        analysis_id=row.analysis_id, seq=row.seq, from_number=row.phone_number_id)
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


def _handle_error(message_id: int, exc: GraphAPIError) -> str:
    extra = {"message_id": message_id, "error_code": exc.code, "http_status": exc.http_status,
             "policy": exc.policy.value}
    metrics.whatsapp_error(exc.code if exc.code is not None else f"http_{exc.http_status}" if exc.http_status
                           else "network", "send")
    with context.db().session() as session, session.begin():
        now = utcnow()
        row = session.get_one(Message, message_id)
        row.error_code, row.error_title = exc.code, exc.title
        let_go(row)
        apply_effect(session, row, exc.code, exc.title, now)
        if exc.policy is Policy.USER_ID:
            return to_phone_instead(session, row, extra)
        if exc.policy is Policy.HOLD:  # kept in its place in line, and sent with the rest once the block lifts
            row.next_attempt_at = now + ACCOUNT_RECHECK
            log.error("send refused: the WhatsApp account is blocked; the message is held with the others",
                      extra=extra)
            return "deferred"
        if exc.retryable and row.attempts <= RETRIES:
            row.next_attempt_at = now + retry_delay(row.attempts)
            metrics.outbound_send("retried")
            log.warning("send failed, will retry", extra={**extra, "attempts": row.attempts,
                                                          "next_attempt_at": row.next_attempt_at.isoformat()})
            return "retry"
        row.status, row.failed_at = MessageStatus.FAILED.value, now
        metrics.outbound_send("failed")
        if exc.policy is Policy.TEMPLATE:
            return "template" if _queue_fallback(session, row, extra, now) is not None else "needs_template"
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


def _queue_fallback(session: Session, row: Message, extra: dict[str, Any], now: datetime) -> Message | None:
    """Outside the 24-hour window: the row's template takes its place in the line (same transaction, so
    no later reply can slip in between), linked to the row it replaces."""
    if not row.fallback:
        log.warning("outside the 24-hour window and no template to fall back to", extra=extra)
        return None
    fb = row.fallback
    template = Outbound(fb["type"], fb["body"], fb.get("text"), fb.get("template_name"),
                        fb.get("template_params") or [])
    new = queue_message(session, row.phone, template, now, farmer_id=row.farmer_id, analysis_id=row.analysis_id,
                        seq=row.seq, replaces_id=row.id, from_number=row.phone_number_id)
    log.info("outside the 24-hour window: template queued instead", extra={**extra, "fallback_id": new.id})
    return new


# --- failures Meta reports later, in a `failed` status -------------------------------------------------


def apply_status_failures(session: Session, failures: list[StatusFailure], now: datetime) -> list[int]:
    """The error policy for messages Graph accepted and Meta later reported `failed`, in the caller's
    transaction: the same table as a refused send. Returns the ids of rows queued in the failed ones'
    place (a fallback template, or a resend after the backoff); the senders send them."""
    queued = []
    for failure in failures:
        row = session.scalar(select(Message).where(Message.wamid == failure.wamid,
                                                   Message.direction == Direction.OUTBOUND.value)
                             .execution_options(populate_existing=True))  # the status apply_status just wrote
        if row is None or failure.error_code is None:
            continue  # not ours (or not stored yet: applied when it is), or no code to act on
        if row.status in REACHED_FARMER:  # Meta said delivered or read before: nothing to resend or fall back to
            log.warning("failed status for a message the farmer already received: kept, not acted on",
                        extra={"message_id": row.id, "status": row.status, "error_code": failure.error_code})
            continue
        new = _after_status_failure(session, row, failure.error_code, failure.error_title, now)
        if new is not None:
            queued.append(new.id)
    return queued


def _after_status_failure(session: Session, row: Message, code: int, title: str | None,
                          now: datetime) -> Message | None:
    policy = POLICY_BY_CODE.get(code, Policy.FAIL)  # an unknown code in a status: Meta gave up, so do we
    extra = {"message_id": row.id, "error_code": code, "policy": policy.value, "template": row.template_name}
    apply_effect(session, row, code, title, now)
    if session.scalar(select(Message.id).where(Message.replaces_id == row.id)) is not None:
        log.info("failed status seen again: its replacement is queued already", extra=extra)
        return None
    if policy is Policy.TEMPLATE and row.template_name is None:
        return _queue_fallback(session, row, extra, now)
    if policy in (Policy.RETRY, Policy.RETRY_PAIR) and row.attempts <= RETRIES:
        return queue_resend(session, row, now, extra)
    if policy is Policy.HOLD:  # as on the send path: again in its place once the account block lifts
        return queue_resend(session, row, now, extra, due=now + ACCOUNT_RECHECK)
    if policy is Policy.USER_ID:  # as on the send path: to the phone at once, else support must look
        by_phone = to_phone(session, row, title, extra)
        return queue_resend(session, row, now, extra, payload=by_phone, due=now) if by_phone else None
    if policy is Policy.TEMPLATE:
        log.warning("a template failed outside the 24-hour window: nothing to fall back to", extra=extra)
    elif policy in (Policy.ALERT, Policy.AUTH):
        log.error("message refused by Meta after acceptance; an operator must look", extra=extra)
    else:
        log.warning("message failed at Meta, not retried", extra=extra)
    return None


def _set_auth_alert(exc: GraphAPIError) -> None:
    with contextlib.suppress(RedisError):
        context.redis().set(AUTH_ALERT_KEY, f"{exc.code}: {exc.title}")
