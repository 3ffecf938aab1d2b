"""The inbound job's work: run the state machine for a farmer's message and carry out its actions.

One farmer's messages are handled one at a time and in order, whatever the number of workers:
the job locks the farmer's conversation row (`SELECT ... FOR UPDATE` on PostgreSQL; on SQLite
every write transaction is `BEGIN IMMEDIATE`), then handles every earlier message of that farmer
still waiting, oldest first, before its own. State, quota, codes and the replies (as `pending`
outbound rows, in the farmer's line) are written in one transaction; the farmer's line is sent right
after it commits. Running the job twice for a message does nothing the second time. While the job
runs, its message carries the worker's lease: if the worker dies, the sweeper queues the job again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial

from redis.exceptions import RedisError
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from bot import draft, machine, replies, reply_ids
from bot.types import (
    Conversation as ConversationView,
)
from bot.types import (
    Event,
    EventKind,
    ExplainNotPending,
    QuotaBlock,
    RecordConsent,
    RedeemCode,
    Reply,
    RequestDeletion,
    RequestHuman,
    Send,
    SetLocale,
    SetOptOut,
    ShowAnalysis,
    ShowDetails,
    ShowHistory,
    ShowQuota,
    State,
    Step,
    Submit,
)
from models import (
    Analysis,
    Conversation,
    Direction,
    Farmer,
    Message,
    MessageStatus,
    PhotoState,
    SponsorCode,
    Subscription,
    utcnow,
)
from models.db import DriverStatement, insert_ignoring_conflicts
from services import context, leases, metrics, quota, sponsorship, support, whatsapp
from services.queue import is_final_attempt
from services.report_links import report_link
from services.sponsor_stats import invalidate_stats
from services.whatsapp import messages as wa
from services.whatsapp.errors import WhatsAppError
from services.whatsapp.messages import to_outbound
from services.whatsapp.outbox import Outgoing, may_take_now, queue_message, queue_reply, send_queued
from services.whatsapp.updates import InboundMessage, MessageType, parse_message

log = logging.getLogger(__name__)

CONSENT_VERSION = "2026-11"
_EVENT_KIND = {
    MessageType.TEXT: EventKind.TEXT,
    MessageType.IMAGE: EventKind.PHOTO,
    MessageType.BUTTON_REPLY: EventKind.REPLY,
    MessageType.LIST_REPLY: EventKind.REPLY,
    MessageType.BUTTON: EventKind.REPLY,
    MessageType.LOCATION: EventKind.LOCATION,
}


def event_from(message: Message) -> Event:
    """The stored raw message, read again into the bot's event."""
    parsed = parse_message(message.payload or {})
    if not isinstance(parsed, InboundMessage):
        return Event(EventKind.UNSUPPORTED, message.id, message_type=message.type)
    kind = (EventKind.PHOTO if parsed.image_document else EventKind.TEXT if parsed.edited_text
            else _EVENT_KIND.get(parsed.type, EventKind.UNSUPPORTED))
    return Event(kind, message.id, text=parsed.text, reply=reply_ids.parse(parsed.reply_id), media_id=parsed.media_id,
                 latitude=parsed.latitude, longitude=parsed.longitude, location_name=parsed.location_name,
                 location_address=parsed.location_address, message_type=parsed.type.value,
                 sent_at=message.meta_timestamp)


@dataclass
class Outcome:
    phone: str
    reply_ids: list[int]
    analyses_to_queue: list[int]
    last_wamid: str | None
    our_number: str | None = None  # the number the farmer wrote to: marked read from it
    first: Outgoing | None = None  # the first reply, taken for us to send right after commit
    may_take: bool | None = None  # whether replies may be taken as they are written (asked once)
    quota_refusals: list[str] = field(default_factory=list)  # the reason of each analysis the farmer is told is refused
    photos_to_keep: list[int] = field(default_factory=list)  # photos sent during a takeover, downloaded for support


# Built once (building a statement costs more CPU than running it); their values are bound when they run.
# Those that load no ORM object run on the session's connection, the claim on its driver (`DriverStatement`):
# the ORM's handling of a statement costs about half a millisecond more (and nothing is pending to flush first).
_CLAIM = DriverStatement(leases.claim_statement(Message, Message.direction == Direction.INBOUND.value,
                                                Message.status == MessageStatus.RECEIVED.value,
                                                Message.farmer_id.is_not(None)).returning(Message.farmer_id))
_CONVERSATION_AND_FARMER = (select(Conversation, Farmer).join(Farmer, Farmer.id == Conversation.farmer_id)
                            .where(Conversation.farmer_id == bindparam("farmer_id")).with_for_update(of=Conversation))
_WAITING = (select(Message)
            .where(Message.farmer_id == bindparam("farmer_id"), Message.direction == Direction.INBOUND.value,
                   Message.status == MessageStatus.RECEIVED.value, Message.id <= bindparam("up_to"))
            .order_by(Message.meta_timestamp, Message.id))


def handle_inbound(message_id: int) -> str:
    """Entry point of the `inbound` job (see `services.jobs`)."""
    db = context.db()
    owner = leases.owner_name()
    with db.autocommit() as session:  # the claim is one statement: it commits by itself
        claimed = _CLAIM.rows(session, leases.claim_params(message_id, owner))
        farmer_id = claimed[0][0] if claimed else None
        if farmer_id is None:
            return _not_claimed(session.get(Message, message_id), message_id)
    with leases.kept(db, Message, message_id, owner) as lease:
        with db.session() as session, session.begin():
            # The last attempt handles each message on its own, so one message that always fails is marked
            # failed (support sees it) and answered kindly, instead of blocking every later one of the farmer.
            outcome = _handle_waiting(session, farmer_id, message_id, isolate=is_final_attempt())
            lease.release_with(session.get_one(Message, message_id))  # loaded already: no statement of its own
        lease.done()
    _after_commit(outcome)
    return "processed"


def _not_claimed(message: Message | None, message_id: int) -> str:
    """Why the job's message could not be claimed."""
    if message is None or message.direction != Direction.INBOUND or message.farmer_id is None:
        log.warning("inbound job for an unknown message", extra={"message_id": message_id})
        return "missing"
    if message.processed_at is not None or message.status != MessageStatus.RECEIVED:
        return "already processed"
    return "handled elsewhere"  # another worker has it; if that one dies, its lease expires and the sweeper steps in


def _lock_conversation(session: Session, farmer_id: int) -> tuple[Conversation, Farmer]:
    """The farmer's conversation, locked until commit, and the farmer, read in the same statement."""
    new = {"farmer_id": farmer_id, "state": State.START.value, "data": {}, "updated_at": utcnow()}
    session.connection().execute(insert_ignoring_conflicts(session, Conversation, ["farmer_id"]), new)
    row = session.execute(_CONVERSATION_AND_FARMER, {"farmer_id": farmer_id}).one()
    return row.Conversation, row.Farmer


def _handle_waiting(session: Session, farmer_id: int, up_to: int, *, isolate: bool = False) -> Outcome:
    conv, farmer = _lock_conversation(session, farmer_id)
    waiting = session.scalars(_WAITING, {"farmer_id": farmer_id, "up_to": up_to}).all()
    outcome = Outcome(farmer.address, [], [], None)
    taken = support.is_taken(conv, utcnow())
    for message in waiting:
        if taken:  # a person answers this farmer now: the message is kept for them, the bot says nothing
            _keep_for_support(message, outcome)
        elif not isolate:
            _handle_one(session, farmer, conv, message, outcome)
        else:
            done = (len(outcome.reply_ids), len(outcome.analyses_to_queue), outcome.first, len(outcome.quota_refusals))
            try:
                with session.begin_nested():
                    _handle_one(session, farmer, conv, message, outcome)
            except Exception as exc:
                del outcome.reply_ids[done[0]:], outcome.analyses_to_queue[done[1]:], outcome.quota_refusals[done[3]:]
                outcome.first = done[2]
                _give_up(session, farmer, message, exc, outcome)
        outcome.last_wamid, outcome.our_number = message.wamid, message.phone_number_id
    return outcome


def _keep_for_support(message: Message, outcome: Outcome) -> None:
    """During a human takeover: stored, shown in the console, marked handled; no step, no reply. A photo waits
    to be downloaded after the commit (`services.support_photos`): the person who took over must see it."""
    message.status = MessageStatus.PROCESSED.value
    message.processed_at = utcnow()
    message.attempts += 1
    if message.type == MessageType.IMAGE.value and message.media_id and message.photo_state is None:
        message.photo_state = PhotoState.WAITING.value
        outcome.photos_to_keep.append(message.id)


def _give_up(session: Session, farmer: Farmer, message: Message, exc: Exception, outcome: Outcome) -> None:
    """A message that failed on every attempt: `failed` with the reason for support, and a kind word."""
    log.exception("inbound message failed on every attempt; marked failed", extra={"message_id": message.id})
    session.refresh(message)
    message.status = MessageStatus.FAILED.value
    now = utcnow()
    message.failed_at = message.processed_at = now
    message.error_title = f"handling failed: {type(exc).__name__}"[:300]
    message.attempts += 1
    reply = to_outbound(farmer.address, replies.handling_failed(farmer.locale))
    row = queue_message(session, farmer.address, reply, now, farmer_id=farmer.id)
    outcome.reply_ids.append(row.id)


def _view(farmer: Farmer, state: State, data: draft.ConversationData,
          expires_at: datetime | None = None, new_trial: bool = False) -> ConversationView:
    window = timedelta(seconds=context.settings().ALBUM_WINDOW_SECONDS)
    return ConversationView(state, data, farmer.locale, farmer.has_consented, expires_at,
                            opted_out=farmer.opted_out_at is not None, album_window=window, new_trial=new_trial)


def _handle_one(session: Session, farmer: Farmer, conv: Conversation, message: Message, outcome: Outcome) -> None:
    now = utcnow()
    event = event_from(message)
    # The welcome must know whether accepting starts the Trial: read only for a yes before consent.
    new_trial = (not farmer.has_consented and machine.accepts_consent(event)
                 and quota.trial_would_start(session, farmer.id, now))
    view = _view(farmer, State(conv.state), draft.from_json(conv.data), conv.expires_at, new_trial)
    # The photo learns at once if it must wait; a reaction's thanks must not invite a photo that would wait; a
    # submission waiting for a code may go on without one while an analysis is left.
    waits_for_code = view.state is State.AWAIT_CODE and view.data.draft is not None
    if farmer.has_consented and (event.kind is EventKind.PHOTO or event.message_type == "reaction" or waits_for_code):
        event = replace(event, quota=quota.quota_block(session, farmer.id, now))
    step = machine.step(view, event, now)
    out: list[Reply] = []
    step = _carry_out(session, farmer, step, now, outcome, out)
    conv.state = step.state.value
    conv.data = draft.to_json(step.data)
    conv.expires_at = now + machine.IDLE_TIMEOUT
    conv.last_message_id = message.id
    message.status = MessageStatus.PROCESSED.value
    message.processed_at = now
    message.attempts += 1
    for reply in out:
        _queue_reply(session, farmer, to_outbound(farmer.address, reply), outcome, now)
        if reply.quota_refusal is not None:
            outcome.quota_refusals.append(reply.quota_refusal)


def _queue_reply(session: Session, farmer: Farmer, out: wa.Outbound, outcome: Outcome, now: datetime) -> None:
    """Write a reply to the outbox; the first one is taken for sending right after commit, when it may go."""
    take = not outcome.reply_ids
    if take and outcome.may_take is None:
        outcome.may_take = may_take_now(context.redis(), farmer, now)
    queued = queue_reply(session, farmer, out, now, take=take and bool(outcome.may_take))
    outcome.reply_ids.append(queued.message_id)
    if queued.outgoing is not None:
        outcome.first = queued.outgoing


def _carry_out(session: Session, farmer: Farmer, step: Step, now: datetime, outcome: Outcome,
               out: list[Reply]) -> Step:
    """Run the step's actions, collecting the replies in `out`. A code redeemed or a charge refused is told
    back to the machine (it decides what becomes of the waiting photo): the step that results is returned."""
    follow_ups: list[Callable[[ConversationView], Step]] = []
    for action in step.actions:
        match action:
            case Send(reply=reply):
                out.append(reply)
            case RecordConsent(given=True):
                farmer.consent_at, farmer.consent_version = now, CONSENT_VERSION
                quota.start_trial(session, farmer.id, now)
            case RecordConsent(given=False):
                farmer.consent_at = None
            case SetLocale(locale=locale):
                farmer.locale = locale
            case SetOptOut(opted_out=opted_out):
                farmer.opted_out_at = now if opted_out else None
            case RequestDeletion():
                farmer.deletion_requested_at = farmer.deletion_requested_at or now
                log.warning("farmer asked for their data to be deleted", extra={"farmer_id": farmer.id})
            case RequestHuman():
                farmer.human_requested_at = farmer.human_requested_at or now
            case ShowQuota():
                out.append(replies.quota(farmer.locale, quota_view(session, farmer.id, now)))
            case ShowHistory():
                out.append(replies.history(farmer.locale, history_items(session, farmer.id)))
            case ShowAnalysis(analysis_id=analysis_id):
                out.append(_analysis_summary(session, farmer, analysis_id))
            case ShowDetails(analysis_id=analysis_id):
                out.extend(_analysis_details(session, farmer, analysis_id))
            case RedeemCode(text=text):
                out.append(replies.redeem(farmer.locale, redeem_view(session, farmer.id, text, now)))
                block = quota.quota_block(session, farmer.id, now)
                follow_ups.append(partial(machine.after_redeem, quota=block))
            case ExplainNotPending(photo_message_id=number):
                out.append(_not_pending(session, farmer, number))
            case Submit():
                refused = _submit(session, farmer, action, now, outcome, out)
                if refused is not None and action.draft is not None:
                    follow_ups.append(partial(machine.charge_refused, refused=action.draft, quota=refused))
    for follow_up in follow_ups:
        step = follow_up(_view(farmer, step.state, step.data))
        out.extend(a.reply for a in step.actions if isinstance(a, Send))  # the machine answers these with words only
    return step


# --- effects that need the database ----------------------------------------------------------------


def quota_view(session: Session, farmer_id: int, now: datetime) -> replies.QuotaView | None:
    status = quota.quota_status(session, farmer_id, now)
    if status is None:
        return None
    return replies.QuotaView(
        tier_code=status.tier_code, daily_used=status.daily_used, daily_limit=status.daily_limit,
        monthly_used=status.monthly_used, monthly_limit=status.monthly_limit, day_resets_at=status.day_resets_at,
        month_resets_at=status.month_resets_at, ends_at=status.ends_at, sponsor_name=status.sponsor_name,
        queued=tuple((q.tier_code, q.starts_at) for q in status.queued),
    )


def redeem_view(session: Session, farmer_id: int, text: str, now: datetime) -> replies.RedeemView:
    result = sponsorship.redeem(session, farmer_id, text, now)
    if result.outcome is sponsorship.RedeemOutcome.USED and result.code is not None:
        own = _own_code(session, farmer_id, result.code, now)
        if own is not None:
            return own
    if result.outcome.value in ("ok", "queued") and result.subscription_id is not None:
        sponsor_id = session.scalar(select(Subscription.sponsor_id).where(Subscription.id == result.subscription_id))
        invalidate_stats(context.redis(), sponsor_id)  # before commit: at worst one needless recount
    return replies.RedeemView(outcome=result.outcome.value, tier_code=result.tier_code,
                              daily_limit=result.daily_limit, monthly_limit=result.monthly_limit,
                              starts_at=result.starts_at, ends_at=result.ends_at, sponsor_name=result.sponsor_name,
                              code_expires_at=result.code_expires_at)


def _own_code(session: Session, farmer_id: int, code: str, now: datetime) -> replies.RedeemView | None:
    """A code the farmer redeemed themselves: theirs, and what became of its package (None: someone else's)."""
    sub_id = session.scalar(select(SponsorCode.subscription_id).where(SponsorCode.code == code,
                                                                       SponsorCode.redeemed_by_farmer_id == farmer_id))
    sub = session.get(Subscription, sub_id) if sub_id is not None else None
    if sub is None:
        return None
    status = quota.quota_status(session, farmer_id, now)
    if sub.status == "active" and status is not None and status.subscription_id == sub.id:
        return replies.RedeemView(outcome="own_active", tier_code=status.tier_code, ends_at=sub.ends_at)
    if sub.status == "queued":
        tier = next((q.tier_code for q in status.queued if q.starts_at == sub.starts_at), None) if status else None
        return replies.RedeemView(outcome="own_queued", tier_code=tier, starts_at=sub.starts_at)
    return replies.RedeemView(outcome="own_ended")


def history_items(session: Session, farmer_id: int, limit: int = 5) -> list[replies.HistoryItem]:
    rows = session.scalars(
        select(Analysis).where(Analysis.farmer_id == farmer_id, Analysis.status != "received")
        .order_by(Analysis.created_at.desc(), Analysis.id.desc()).limit(limit)
    )
    return [_history_item(a) for a in rows]


def _history_item(a: Analysis) -> replies.HistoryItem:
    return replies.HistoryItem(a.id, a.created_at, a.crop or "", a.status, a.health_score)


def _analysis_summary(session: Session, farmer: Farmer, analysis_id: int) -> Reply:
    analysis = session.get(Analysis, analysis_id)
    if analysis is None or analysis.farmer_id != farmer.id:  # never another farmer's analysis
        return replies.analysis_summary(farmer.locale, None)
    if analysis.status != "completed":
        return replies.analysis_summary(farmer.locale, _history_item(analysis), analysis.primary_concern)
    max_age = timedelta(seconds=context.settings().REPORT_URL_MAX_AGE)
    return replies.analysis_summary(farmer.locale, _history_item(analysis), analysis.primary_concern,
                                    report_url=report_link(analysis.id), report_expires_at=utcnow() + max_age)


def _analysis_details(session: Session, farmer: Farmer, analysis_id: int | None) -> list[Reply]:
    """The rest of a completed result; without an id (a template's button), the latest one."""
    from services.analysis import photos_used, result_view
    from services.analysis_result import normalise

    query = select(Analysis).where(Analysis.farmer_id == farmer.id, Analysis.status == "completed")
    if analysis_id is not None:
        query = query.where(Analysis.id == analysis_id)
    analysis = session.scalars(query.order_by(Analysis.completed_at.desc(), Analysis.id.desc())).first()
    if analysis is None or analysis.result is None:
        return [replies.no_result_yet(farmer.locale)]
    view = result_view(analysis, normalise(analysis.result), farmer.locale, photos_used(analysis))
    return replies.analysis_details(farmer.locale, _with_report_link(view, analysis.id))


def _with_report_link(view: replies.ResultView, analysis_id: int) -> replies.ResultView:
    """The view plus a fresh signed link to the analysis's report page (made here: `bot/` signs nothing)."""
    max_age = timedelta(seconds=context.settings().REPORT_URL_MAX_AGE)
    return replace(view, report_url=report_link(analysis_id), report_expires_at=utcnow() + max_age)


def _sent_status(session: Session, farmer: Farmer, photo_message_id: int) -> str | None:
    """The status of the analysis a submission (keyed by its first photo) became, None if it was never sent."""
    return session.scalar(select(Analysis.status).where(Analysis.message_id == photo_message_id,
                                                        Analysis.farmer_id == farmer.id))


def _not_pending(session: Session, farmer: Farmer, photo_message_id: int) -> Reply:
    """A confirmation's button whose submission no longer waits: sent (where its analysis is), or never sent."""
    sent = _sent_status(session, farmer, photo_message_id)
    if sent is None:
        return replies.submission_not_sent(farmer.locale)
    return replies.already_sent(farmer.locale, sent)


def _submit(session: Session, farmer: Farmer, action: Submit, now: datetime, outcome: Outcome,
            out: list[Reply]) -> QuotaBlock | None:
    """Charge once per submission (keyed by its first photo): the farmer's lock serialises this check and
    the charge. One analysis for all the album's photos. Returns why the charge was refused, if it was."""
    sent = _sent_status(session, farmer, action.photo_message_id)
    if sent is not None:
        out.append(replies.already_sent(farmer.locale, sent))
        return None
    media_ids = list(action.media_ids) or ([action.media_id] if action.media_id else [])
    savepoint = session.begin_nested()
    analysis = Analysis(
        farmer_id=farmer.id, message_id=action.photo_message_id, media_id=action.media_id, crop=action.crop,
        notes=action.notes, location_text=action.location_text, latitude=action.latitude,
        longitude=action.longitude, status="queued", received_at=now, queued_at=now, created_at=now,
        media_ids=media_ids or None,
    )
    session.add(analysis)
    session.flush()
    charge = quota.charge(session, farmer.id, now, analysis_id=analysis.id)
    if not charge.ok:
        savepoint.rollback()
        block = quota.quota_block(session, farmer.id, now) or QuotaBlock(
            str(charge.reason or quota.QuotaReason.NO_SUBSCRIPTION), charge.resets_at)
        if action.draft is None:
            out.append(replies.quota_exhausted(farmer.locale, block))
        return block
    savepoint.commit()
    analysis.subscription_id = charge.subscription_id
    analysis.sponsor_id = charge.sponsor_id  # attribution: whoever paid at submission time
    analysis.charge_ledger_id = charge.ledger_id
    outcome.analyses_to_queue.append(analysis.id)
    out.append(replies.submitted(farmer.locale))
    return None


# --- after commit: queue the analyses, send the farmer's line ----------------------------------------


def _after_commit(outcome: Outcome) -> None:
    from services.analysis import enqueue_analysis  # late: the pipeline imports services.jobs, which imports us

    redis = context.redis()
    for reason in outcome.quota_refusals:  # counted once the farmer's answer is committed, not per attempt
        metrics.quota_rejection(reason)
    for analysis_id in outcome.analyses_to_queue:
        enqueue_analysis(redis, analysis_id)
    if outcome.photos_to_keep:
        from services.support_photos import enqueue_keep  # late, as above

        for message_id in outcome.photos_to_keep:
            enqueue_keep(redis, message_id)
    if outcome.last_wamid:
        _mark_read(outcome.last_wamid, outcome.our_number)
    if outcome.reply_ids:
        send_queued(outcome.phone, outcome.first)


def _mark_read(wamid: str, our_number: str | None = None) -> None:
    """Blue ticks for the farmer. Best effort: a failure here must not cost them their answer."""
    try:
        whatsapp.client().mark_read(wamid, typing=False, from_number=our_number)
    except (WhatsAppError, RedisError, TimeoutError) as exc:
        log.info("mark-read failed", extra={"reason": repr(exc)[:200]})
