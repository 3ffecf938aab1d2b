"""Who a farmer is: a phone number, Meta's business-scoped user id, or both, kept on one farmer row.

Meta withholds the phone of a farmer who adopts a username and names them by user id instead; the
same person may later show up with both. Each alias is unique on `farmers`, so a lookup by either
finds the one row; when a message shows a phone and a user id that belong to two rows, the rows are
merged (`merge_farmers`): history, consent, subscriptions and quota move to the row that stays. A number
change (`user_changed_number`) moves the farmer to the new phone, and a user-id change re-points the alias
(never merging two farmers who both have a phone: that is kept for support instead).
Functions take the caller's session; the caller owns the transaction.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, null, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.types import State
from models import (
    Analysis,
    Conversation,
    Direction,
    Farmer,
    Message,
    MessageStatus,
    SponsorCode,
    Subscription,
    SubscriptionStatus,
    SupportNote,
    Tier,
    UnhandledWebhook,
    UsageCounter,
    UsageLedger,
)
from models.db import dialect_insert
from services.whatsapp.messages import address_field
from services.whatsapp.updates import InboundMessage, SystemKind

log = logging.getLogger(__name__)

TRIAL = "TRIAL"  # the tier code of the one free trial (services.quota seeds it)


def sender_row(m: InboundMessage, now: datetime) -> dict[str, Any]:
    """The `farmers` columns a message tells about its sender (the values `sender_upsert` inserts or refreshes)."""
    return {"phone": m.phone, "user_id": None if m.phone else m.user_id, "profile_name": m.profile_name,
            "username": m.username, "parent_user_id": m.parent_user_id, "our_number_id": m.phone_number_id,
            "locale": "tr", "last_inbound_at": m.timestamp or now, "created_at": now, "updated_at": now}


def sender_upsert(stmt: Any, key: str) -> Any:
    """`stmt` (a dialect `INSERT INTO farmers`) made an upsert by `key` (phone or user_id): new farmers are
    inserted; for known ones the name, username, the number they wrote to and `last_inbound_at` (never
    backwards) are refreshed. A farmer who writes is reachable again (an earlier 131026 no longer holds)."""
    farmers = Farmer.__table__
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[farmers.c[key]],
        set_={
            "profile_name": func.coalesce(new.profile_name, farmers.c.profile_name),
            "username": func.coalesce(new.username, farmers.c.username),
            "parent_user_id": func.coalesce(new.parent_user_id, farmers.c.parent_user_id),
            "our_number_id": func.coalesce(new.our_number_id, farmers.c.our_number_id),
            "last_inbound_at": case(
                (farmers.c.last_inbound_at.is_(None) | (farmers.c.last_inbound_at < new.last_inbound_at),
                 new.last_inbound_at),
                else_=farmers.c.last_inbound_at,
            ),
            "unreachable_at": null(),
            "updated_at": new.updated_at,
        },
    ).returning(farmers.c[key], farmers.c.id)


@functools.cache
def _farmer_upsert(dialect_name: str, key: str) -> Any:
    return sender_upsert(dialect_insert(dialect_name, Farmer.__table__), key)


def upsert_senders(session: Session, messages: list[InboundMessage], now: datetime) -> dict[str, int]:
    """Every sender's farmer id by address (phone when known, else user id): one statement per kind of
    key, then the user ids seen next to a phone are linked to that phone's farmer (merging rows)."""
    latest: dict[str, InboundMessage] = {}
    for m in sorted(messages, key=lambda m: (m.address, m.timestamp or now)):
        latest[m.address] = m
    if not latest:
        return {}
    conn = session.connection()
    ids: dict[str, int] = {}
    for key, chosen in (("phone", [m for m in latest.values() if m.phone]),
                        ("user_id", [m for m in latest.values() if not m.phone])):
        if not chosen:
            continue
        rows = [sender_row(m, now) for m in chosen]
        ids.update(dict(conn.execute(_farmer_upsert(conn.dialect.name, key), rows).all()))
    for m in latest.values():
        if m.phone and m.user_id:
            kept = link_user_id(session, ids[m.phone], m.user_id, now)
            for address, farmer_id in ids.items():
                if farmer_id in kept:
                    ids[address] = ids[m.phone]
    return ids


def link_user_id(session: Session, farmer_id: int, user_id: str, now: datetime) -> set[int]:
    """Give the farmer this user id; a row that held it already is merged into the farmer. Returns the ids
    of rows merged away. A row given the user id by a delivery still being written when we looked is seen
    once that delivery commits (the alias is then taken): it is merged too, on a second look."""
    merged: set[int] = set()
    for last_look in (False, True):
        holder = holder_locked(session, Farmer.user_id, user_id)
        if holder == farmer_id:
            break
        if holder is not None:
            merge_farmers(session, keep_id=farmer_id, drop_id=holder)
            merged.add(holder)
        try:
            with session.begin_nested():
                session.execute(update(Farmer).where(Farmer.id == farmer_id)
                                .values(user_id=user_id, updated_at=now)
                                .execution_options(synchronize_session=False))
        except IntegrityError:
            if last_look:
                raise
            continue
        break
    if merged:
        readdress_pending(session, farmer_id)
    return merged


def holder_locked(session: Session, alias: Any, value: str) -> int | None:
    """The farmer whose `alias` column (phone or user id) is `value`, its row locked until the caller commits.
    A merge takes the row it drops this way: a delivery already writing a message of that row commits first
    (so the merge moves the message), and one that comes after waits, then finds the row that stays. Without
    the lock a message could be written to the dropped row and lose its farmer when the row is deleted. The
    lock is the one a delivery's upsert takes (FOR NO KEY UPDATE): rows that only refer to the farmer are
    not held up by it."""
    return session.scalar(select(Farmer.id).where(alias == value).with_for_update(key_share=True))


def merge_farmers(session: Session, *, keep_id: int, drop_id: int) -> None:
    """One person seen as two rows: everything of `drop_id` moves to `keep_id`, which keeps its aliases and
    gains consent, name and settings it lacked, and the newer of their marketing stop / resume; then `drop_id`
    is deleted. Two active subscriptions leave one active (a paid one before a Trial): a second Trial is
    cancelled, any other waits as queued. The caller found `drop_id` with `holder_locked`. A worker answering
    either farmer finishes first (their conversations are locked before anything moves), so what it writes
    moves too."""
    session.execute(select(Conversation.id).where(Conversation.farmer_id.in_((keep_id, drop_id)))
                    .order_by(Conversation.id).with_for_update())
    keep, drop = session.get_one(Farmer, keep_id), session.get_one(Farmer, drop_id)
    for model, column in ((Message, Message.farmer_id), (Analysis, Analysis.farmer_id),
                          (Subscription, Subscription.farmer_id), (UsageLedger, UsageLedger.farmer_id),
                          (SupportNote, SupportNote.farmer_id)):
        session.execute(update(model).where(column == drop_id).values({column.key: keep_id})
                        .execution_options(synchronize_session=False))
    session.execute(update(SponsorCode).where(SponsorCode.redeemed_by_farmer_id == drop_id)
                    .values(redeemed_by_farmer_id=keep_id).execution_options(synchronize_session=False))
    if session.scalar(select(Conversation.id).where(Conversation.farmer_id == keep_id)) is None:
        session.execute(update(Conversation).where(Conversation.farmer_id == drop_id).values(farmer_id=keep_id)
                        .execution_options(synchronize_session=False))
    else:
        session.execute(delete(Conversation).where(Conversation.farmer_id == drop_id)
                        .execution_options(synchronize_session=False))
    if keep.consent_at is None and drop.consent_at is not None:
        keep.consent_at, keep.consent_version, keep.locale = drop.consent_at, drop.consent_version, drop.locale
    if keep.consent_at is not None:  # the conversation that stays may be the unconsented row's: not asked again
        session.execute(update(Conversation)
                        .where(Conversation.farmer_id == keep_id,
                               Conversation.state.in_((State.START.value, State.AWAIT_CONSENT.value)))
                        .values(state=State.MENU.value, data={}, expires_at=None)
                        .execution_options(synchronize_session=False))
    keep.profile_name = keep.profile_name or drop.profile_name
    keep.username = keep.username or drop.username
    keep.parent_user_id = keep.parent_user_id or drop.parent_user_id
    keep.our_number_id = keep.our_number_id or drop.our_number_id
    keep.opted_out_at = keep.opted_out_at or drop.opted_out_at
    keep.deletion_requested_at = keep.deletion_requested_at or drop.deletion_requested_at
    keep.human_requested_at = keep.human_requested_at or drop.human_requested_at
    if drop.marketing_preference_at and (keep.marketing_preference_at is None
                                         or keep.marketing_preference_at < drop.marketing_preference_at):
        keep.marketing_opt_out_at = drop.marketing_opt_out_at  # the newer stop / resume of the two
        keep.marketing_preference_at = drop.marketing_preference_at
    keep.last_inbound_at = max((t for t in (keep.last_inbound_at, drop.last_inbound_at) if t), default=None)
    keep.created_at = min(keep.created_at, drop.created_at)
    alias = drop.user_id if keep.user_id is None else None
    session.delete(drop)
    session.flush()
    if alias is not None:
        keep.user_id = alias
    _one_active_subscription(session, keep_id)
    session.flush()
    log.info("farmer rows merged", extra={"farmer_id": keep_id, "merged_farmer_id": drop_id})


def reattach_orphans(session: Session, stored_before: datetime, now: datetime) -> list[int]:
    """Inbound messages still to answer, stored before `stored_before`, whose farmer row is gone (a deleted
    row sets `farmer_id` to NULL) go to the farmer their sender is known by now: the stored address (a phone,
    else a user id) is an alias of the row a merge kept. A safety net behind `holder_locked`: such a message
    could never be claimed, and would be queued again and again unanswered. One whose sender nobody is
    known by is marked failed, for support. Returns the ids given a farmer."""
    orphans = session.execute(
        select(Message.id, Message.phone)
        .where(Message.direction == Direction.INBOUND.value, Message.status == MessageStatus.RECEIVED.value,
               Message.farmer_id.is_(None), Message.created_at <= stored_before)
        .order_by(Message.id).limit(500)
    ).all()
    moved = []
    for message_id, address in orphans:
        farmer_id = session.scalar(select(Farmer.id).where((Farmer.phone == address) | (Farmer.user_id == address))
                                   .order_by(Farmer.id).limit(1))
        values: dict[str, Any] = {"farmer_id": farmer_id}
        if farmer_id is None:
            log.error("inbound message without a farmer, and nobody is known by its sender: marked failed",
                      extra={"message_id": message_id})
            values = {"status": MessageStatus.FAILED.value, "failed_at": now, "processed_at": now,
                      "error_title": "no farmer is known by its sender"}
        else:
            moved.append(message_id)
        session.execute(update(Message).where(Message.id == message_id, Message.farmer_id.is_(None))
                        .values(values).execution_options(synchronize_session=False))
    if moved:
        log.warning("inbound messages without a farmer given their farmer again", extra={"message_ids": moved[:20]})
    return moved


def readdress_pending(session: Session, farmer_id: int) -> int:
    """Replies still waiting to go to an old address of the farmer (the old number, the user id now that a
    phone is known) go to the farmer's current address instead, at the end of that line, in their order.
    Returns how many moved."""
    from services.whatsapp.outbox import next_seq  # late: the outbox imports the inbox, which imports this

    farmer = session.get_one(Farmer, farmer_id)
    address = farmer.address
    waiting = session.scalars(
        select(Message).where(Message.farmer_id == farmer_id, Message.direction == Direction.OUTBOUND.value,
                              Message.status == MessageStatus.PENDING.value, Message.phone != address)
        .order_by(Message.seq, Message.id)
    ).all()
    for row in waiting:
        body = {k: v for k, v in (row.payload or {}).items() if k not in ("to", "recipient")}
        row.payload = {**body, **address_field(address)}
        row.seq = next_seq(session, address) if row.seq is not None else None
        row.phone = address
        session.flush()
    return len(waiting)


def _one_active_subscription(session: Session, farmer_id: int) -> None:
    active = session.execute(
        select(Subscription, Tier.code).join(Tier, Tier.id == Subscription.tier_id)
        .where(Subscription.farmer_id == farmer_id, Subscription.status == SubscriptionStatus.ACTIVE.value)
        .order_by(Subscription.starts_at, Subscription.id)
    ).all()
    if len(active) < 2:
        return
    ranked = sorted(active, key=lambda row: row[1] == TRIAL)  # stable: paid first, each oldest first
    kept, kept_code = ranked[0]
    for subscription, code in ranked[1:]:
        subscription.status = (SubscriptionStatus.CANCELLED if code == TRIAL else SubscriptionStatus.QUEUED).value
        if code == TRIAL and kept_code == TRIAL:  # one Trial, used as much as both were: a merge adds no quota
            _add_usage(session, kept.id, subscription.id)


def _add_usage(session: Session, to_id: int, from_id: int) -> None:
    """The analyses counted on subscription `from_id`, each period's, counted on `to_id` too."""
    counters = {c.period_key: c
                for c in session.scalars(select(UsageCounter).where(UsageCounter.subscription_id == to_id))}
    for moved in session.scalars(select(UsageCounter).where(UsageCounter.subscription_id == from_id)):
        if moved.period_key in counters:
            counters[moved.period_key].used += moved.used
        else:
            session.add(UsageCounter(subscription_id=to_id, period_key=moved.period_key, used=moved.used))


def change_number(session: Session, farmer_id: int, new_phone: str, now: datetime) -> None:
    """`user_changed_number`: the farmer, with consent, subscriptions, quota and history, now answers at
    `new_phone`; the old number matches nobody. A row already made for the new number is merged in."""
    farmer = session.get_one(Farmer, farmer_id)
    if farmer.phone == new_phone:
        return
    holder = holder_locked(session, Farmer.phone, new_phone)
    if holder is not None:
        merge_farmers(session, keep_id=farmer_id, drop_id=holder)
    farmer.phone = new_phone
    farmer.updated_at = now
    session.flush()
    readdress_pending(session, farmer_id)
    log.info("farmer changed number", extra={"farmer_id": farmer_id})


def change_user_id(session: Session, farmer_id: int | None, new_user_id: str, now: datetime, *,
                   previous: str | None = None, phone: str | None = None) -> int | None:
    """`user_changed_user_id` / `user_id_update`: the farmer (by id, else by the previous user id, else by
    phone) is known by `new_user_id` from now on; a row holding it is merged in only if it has no phone.
    Returns the farmer's id, or None when nobody matches."""
    if farmer_id is None and previous:
        farmer_id = session.scalar(select(Farmer.id).where(Farmer.user_id == previous))
    if farmer_id is None and phone:
        farmer_id = session.scalar(select(Farmer.id).where(Farmer.phone == phone))
    if farmer_id is None:
        return None
    holder = holder_locked(session, Farmer.user_id, new_user_id)
    if holder is not None and holder != farmer_id and _both_have_phones(session, farmer_id, holder):
        _refuse_user_id_change(session, farmer_id, holder, new_user_id)
        return farmer_id
    link_user_id(session, farmer_id, new_user_id, now)
    return farmer_id


def _both_have_phones(session: Session, farmer_id: int, other_id: int) -> bool:
    phones = session.scalars(select(Farmer.phone).where(Farmer.id.in_((farmer_id, other_id)))).all()
    return len(phones) == 2 and all(phones)


def _refuse_user_id_change(session: Session, farmer_id: int, holder_id: int, new_user_id: str) -> None:
    """Two farmers with two known phones are two people: a user-id event naming the other's id moves nothing
    (a merge would give one farmer's history, quota and consent to the other and leave a phone to nobody).
    Kept for support, as a body we could not act on."""
    reason = "user id change refused: the new user id belongs to another farmer with another phone"
    log.error(reason, extra={"farmer_id": farmer_id, "holder_farmer_id": holder_id})
    session.add(UnhandledWebhook(reason=reason, payload={"farmer_id": farmer_id, "holder_farmer_id": holder_id,
                                                         "user_id": new_user_id}))


def apply_system_message(session: Session, m: InboundMessage, farmer_id: int | None, now: datetime) -> None:
    """What Meta tells us in a `system` message, applied once (when the message is first stored)."""
    if farmer_id is None:
        return
    if m.system is SystemKind.USER_CHANGED_NUMBER and m.new_phone:
        change_number(session, farmer_id, m.new_phone, now)
    elif m.system is SystemKind.USER_CHANGED_USER_ID and m.new_user_id:
        change_user_id(session, farmer_id, m.new_user_id, now)
    else:
        log.info("system message not acted on", extra={"farmer_id": farmer_id, "system": str(m.system)})
