"""Subscriptions and quota: which subscription is current, how much of it is used, charging and refunding.

Every function takes the session and an explicit aware `now` and never commits: the caller owns the
transaction (so a charge and the analysis row it pays for commit together, or not at all).

Usage is counted per period key (`D2026-11-22`, `M2026-11`, calendar day and month in Europe/Istanbul)
in `usage_counters`, so nothing is ever reset: a new day is a new row. A charge is one conditional
`UPDATE ... SET used = used + 1 WHERE used < limit` per period inside a savepoint: two workers can
both try, only as many as the limit allows get a row back (PostgreSQL re-checks the condition after
waiting for the row lock; on SQLite `BEGIN IMMEDIATE` serialises the transactions).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.types import QuotaBlock
from models import (
    Farmer,
    LedgerKind,
    Sponsor,
    Subscription,
    SubscriptionStatus,
    Tier,
    UsageCounter,
    UsageLedger,
)
from models.db import insert_ignoring_conflicts

ISTANBUL = ZoneInfo("Europe/Istanbul")
TRIAL = "TRIAL"

# The tiers (docs/CONVERSATION.md, "Packages"). Migration 0002 seeds the same rows (it must not import app code).
TIERS: tuple[dict[str, object], ...] = (
    {"code": "TRIAL", "name": "Deneme", "daily_limit": 1, "monthly_limit": 30, "price_try": Decimal("0.00")},
    {"code": "S", "name": "S Paketi", "daily_limit": 5, "monthly_limit": 50, "price_try": Decimal("99.99")},
    {"code": "M", "name": "M Paketi", "daily_limit": 20, "monthly_limit": 200, "price_try": Decimal("299.99")},
    {"code": "L", "name": "L Paketi", "daily_limit": 50, "monthly_limit": 500, "price_try": Decimal("599.99")},
    {"code": "XL", "name": "XL Paketi", "daily_limit": 200, "monthly_limit": 2000, "price_try": Decimal("1499.99")},
)


class QuotaReason(enum.StrEnum):
    """Why a charge was refused (compares equal to the plain strings)."""

    NO_SUBSCRIPTION = "no_subscription"
    DAILY = "daily"
    MONTHLY = "monthly"


@dataclass(frozen=True)
class ChargeResult:
    ok: bool
    reason: QuotaReason | None = None  # None when ok
    resets_at: datetime | None = None  # UTC moment the exhausted limit resets (daily/monthly only)
    subscription_id: int | None = None
    sponsor_id: int | None = None  # attribution: the sponsor whose subscription paid
    ledger_id: int | None = None  # the `charge` ledger row; pass it to `refund`


@dataclass(frozen=True)
class QueuedSubscription:
    tier_code: str
    tier_name: str
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True)
class QuotaStatus:
    subscription_id: int
    tier_code: str
    tier_name: str
    daily_used: int
    daily_limit: int
    monthly_used: int
    monthly_limit: int
    day_resets_at: datetime  # UTC
    month_resets_at: datetime  # UTC
    ends_at: datetime  # UTC, end of the active subscription
    sponsor_name: str | None
    queued: tuple[QueuedSubscription, ...]

    @property
    def remaining(self) -> int:
        """Analyses still possible today: the smaller of what the day and the month leave."""
        return max(0, min(self.daily_limit - self.daily_used, self.monthly_limit - self.monthly_used))


# --- periods ------------------------------------------------------------------------------------


def _local(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("naive datetime: pass an aware datetime")
    return now.astimezone(ISTANBUL)


def _local_midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ISTANBUL).astimezone(UTC)


def day_key(now: datetime) -> str:
    """`D2026-11-22`: the calendar day in Istanbul, whatever the server's time zone."""
    return f"D{_local(now).date().isoformat()}"


def month_key(now: datetime) -> str:
    """`M2026-11`: the calendar month in Istanbul."""
    return f"M{_local(now):%Y-%m}"


def day_start(now: datetime) -> datetime:
    """The Istanbul midnight that began `now`'s day, returned in UTC."""
    return _local_midnight_utc(_local(now).date())


def next_day_start(now: datetime) -> datetime:
    """When the daily limit resets: the next Istanbul midnight, returned in UTC."""
    return _local_midnight_utc(_local(now).date() + timedelta(days=1))


def next_month_start(now: datetime) -> datetime:
    """When the monthly limit resets: Istanbul midnight of the 1st of next month, returned in UTC."""
    local = _local(now)
    first = date(local.year + 1, 1, 1) if local.month == 12 else date(local.year, local.month + 1, 1)
    return _local_midnight_utc(first)


# --- tiers and subscriptions --------------------------------------------------------------------


def seed_tiers(session: Session) -> int:
    """Insert the tiers whose code is missing (existing rows, maybe edited by admins, are kept).
    Returns how many were inserted."""
    stmt = insert_ignoring_conflicts(session, Tier, ["code"]).returning(Tier.code)
    inserted = 0
    for row in TIERS:
        inserted += len(session.execute(stmt.values(**row, default_days=30, active=True)).all())
    return inserted


def tier_by_code(session: Session, code: str) -> Tier | None:
    return session.scalars(select(Tier).where(Tier.code == code.strip().upper())).first()


def lock_farmer(session: Session, farmer_id: int) -> None:
    """Serialise changes to one farmer's subscriptions (row lock on PostgreSQL; SQLite's writers are
    serialised already). Raises LookupError for an unknown farmer."""
    found = session.execute(select(Farmer.id).where(Farmer.id == farmer_id).with_for_update()).first()
    if found is None:
        raise LookupError(f"no farmer {farmer_id}")


def start_trial(session: Session, farmer_id: int, now: datetime) -> Subscription | None:
    """Start the farmer's one Trial (TRIAL tier, its `default_days`) and return it. Idempotent: a farmer
    who ever had a Trial gets that one back (whatever its status), never a second one. A farmer who
    already has an active or queued subscription (a redeemed code) gets no Trial: returns None."""
    lock_farmer(session, farmer_id)
    tier = tier_by_code(session, TRIAL)
    if tier is None:
        raise LookupError("tier TRIAL missing: run the migrations or seed_tiers")
    existing = _trial_of(session, farmer_id, tier.id)
    if existing is not None:
        return existing
    if current_subscription(session, farmer_id, now) is not None or queued_subscriptions(session, farmer_id):
        return None
    trial = Subscription(farmer_id=farmer_id, tier_id=tier.id, status=SubscriptionStatus.ACTIVE.value,
                         starts_at=now, ends_at=now + timedelta(days=tier.default_days), created_at=now)
    session.add(trial)
    session.flush()
    return trial


def _trial_of(session: Session, farmer_id: int, tier_id: int) -> Subscription | None:
    return session.scalars(
        select(Subscription).where(Subscription.farmer_id == farmer_id, Subscription.tier_id == tier_id)
        .order_by(Subscription.id)
    ).first()


def trial_would_start(session: Session, farmer_id: int, now: datetime) -> bool:
    """Would `start_trial` start a new Trial now (none ever, no package active or waiting)? Read before consent, so
    the welcome names the Trial only when accepting starts it."""
    tier = tier_by_code(session, TRIAL)
    if tier is None or _trial_of(session, farmer_id, tier.id) is not None:
        return False
    return current_subscription(session, farmer_id, now) is None and not queued_subscriptions(session, farmer_id)


def _move(session: Session, subscription_id: int, old: str, new: str) -> None:
    """One conditional status change: a concurrent worker that got there first makes this a no-op."""
    session.execute(
        update(Subscription).where(Subscription.id == subscription_id, Subscription.status == old)
        .values(status=new).execution_options(synchronize_session=False)
    )


def queued_subscriptions(session: Session, farmer_id: int) -> list[Subscription]:
    """The farmer's queued subscriptions, the next to start first (at most one by the redeem rules)."""
    return list(session.scalars(
        select(Subscription)
        .where(Subscription.farmer_id == farmer_id, Subscription.status == SubscriptionStatus.QUEUED.value)
        .order_by(Subscription.starts_at, Subscription.id)
        .execution_options(populate_existing=True)
    ))


def _active(session: Session, farmer_id: int) -> Subscription | None:
    return session.scalars(
        select(Subscription)
        .where(Subscription.farmer_id == farmer_id, Subscription.status == SubscriptionStatus.ACTIVE.value)
        .order_by(Subscription.starts_at, Subscription.id)
        .execution_options(populate_existing=True)
    ).first()


def current_subscription(session: Session, farmer_id: int, now: datetime) -> Subscription | None:
    """The farmer's active subscription at `now`, or None. Brings statuses up to date on the way:
    ended ones become `expired`, and the next queued one whose start has come becomes `active`."""
    live = list(session.scalars(
        select(Subscription)
        .where(Subscription.farmer_id == farmer_id,
               Subscription.status.in_([SubscriptionStatus.ACTIVE.value, SubscriptionStatus.QUEUED.value]))
        .order_by(Subscription.starts_at, Subscription.id)
        .execution_options(populate_existing=True)
    ))
    changed = False
    for sub in live:
        if sub.ends_at <= now:
            _move(session, sub.id, sub.status, SubscriptionStatus.EXPIRED.value)
            changed = True
    running = [s for s in live if s.status == SubscriptionStatus.ACTIVE.value and s.ends_at > now]
    if not running:
        due = [s for s in live if s.status == SubscriptionStatus.QUEUED.value and s.starts_at <= now < s.ends_at]
        if due:
            _move(session, due[0].id, SubscriptionStatus.QUEUED.value, SubscriptionStatus.ACTIVE.value)
            changed = True
    if changed:
        return _active(session, farmer_id)
    return running[0] if running else None


# --- quota ---------------------------------------------------------------------------------------


def add_subscription(session: Session, farmer_id: int, tier_id: int, duration: timedelta, now: datetime, *,
                     sponsor_id: int | None = None, code_id: int | None = None) -> Subscription:
    """A new subscription (a redeemed code, an admin's grant): active now, replacing a Trial, or queued
    to start when the active paid subscription ends. The caller holds the farmer's lock (`lock_farmer`)
    and has checked that none is queued already (a farmer has at most one waiting)."""
    active = current_subscription(session, farmer_id, now)
    replaces_trial = active is not None and session.get_one(Tier, active.tier_id).code == TRIAL
    if active is not None and replaces_trial:
        session.execute(
            update(Subscription)
            .where(Subscription.id == active.id, Subscription.status == SubscriptionStatus.ACTIVE.value)
            .values(status=SubscriptionStatus.CANCELLED.value, ends_at=now)
            .execution_options(synchronize_session=False)
        )
        session.expire(active)
    if active is None or replaces_trial:
        status, starts_at = SubscriptionStatus.ACTIVE, now
    else:
        status, starts_at = SubscriptionStatus.QUEUED, active.ends_at
    sub = Subscription(farmer_id=farmer_id, tier_id=tier_id, status=status.value, starts_at=starts_at,
                       ends_at=starts_at + duration, sponsor_id=sponsor_id, code_id=code_id, created_at=now)
    session.add(sub)
    session.flush()
    return sub


def _used(session: Session, subscription_id: int, period_key: str) -> int:
    used = session.scalar(select(UsageCounter.used).where(UsageCounter.subscription_id == subscription_id,
                                                          UsageCounter.period_key == period_key))
    return used or 0


def quota_status(session: Session, farmer_id: int, now: datetime) -> QuotaStatus | None:
    """What the farmer has and has used, for the `kota` answer; None without an active subscription."""
    sub = current_subscription(session, farmer_id, now)
    if sub is None:
        return None
    tier = session.get_one(Tier, sub.tier_id)
    sponsor_name = session.scalar(select(Sponsor.name).where(Sponsor.id == sub.sponsor_id)) if sub.sponsor_id else None
    queued = []
    for q in queued_subscriptions(session, farmer_id):
        q_tier = session.get_one(Tier, q.tier_id)
        queued.append(QueuedSubscription(q_tier.code, q_tier.name, q.starts_at, q.ends_at))
    return QuotaStatus(
        subscription_id=sub.id,
        tier_code=tier.code,
        tier_name=tier.name,
        daily_used=_used(session, sub.id, day_key(now)),
        daily_limit=tier.daily_limit,
        monthly_used=_used(session, sub.id, month_key(now)),
        monthly_limit=tier.monthly_limit,
        day_resets_at=next_day_start(now),
        month_resets_at=next_month_start(now),
        ends_at=sub.ends_at,
        sponsor_name=sponsor_name,
        queued=tuple(queued),
    )


def code_starts_now(status: QuotaStatus | None) -> bool:
    """Would a sponsor code redeemed now start at once? With no package, or the Trial (which it replaces);
    on top of any other package it is only queued, and with one queued already it is refused for now
    (`services.sponsorship.redeem`)."""
    return status is None or (status.tier_code == TRIAL and not status.queued)


def quota_block(session: Session, farmer_id: int, now: datetime) -> QuotaBlock | None:
    """What would refuse a charge now (looked up without charging); None when an analysis is possible.
    Says when analyses come back: the limit's renewal, or the queued package's start when that is sooner;
    when the package ends first and nothing follows, that it ends (a renewal time would be untrue)."""
    status = quota_status(session, farmer_id, now)
    if status is None:
        return QuotaBlock(QuotaReason.NO_SUBSCRIPTION.value)
    if status.monthly_used >= status.monthly_limit:
        reason, resets_at = QuotaReason.MONTHLY, status.month_resets_at
    elif status.daily_used >= status.daily_limit:
        reason, resets_at = QuotaReason.DAILY, status.day_resets_at
    else:
        return None
    helps = code_starts_now(status)
    if status.queued:
        return QuotaBlock(reason.value, min(resets_at, status.queued[0].starts_at), code_helps=helps)
    if status.ends_at <= resets_at:
        return QuotaBlock(reason.value, None, package_ends_at=status.ends_at, code_helps=helps)
    return QuotaBlock(reason.value, resets_at, code_helps=helps)


def _increment(session: Session, subscription_id: int, period_key: str, limit: int) -> int | None:
    """`used + 1` if still under the limit; the new value, or None when the limit is reached."""
    return session.execute(
        update(UsageCounter)
        .where(UsageCounter.subscription_id == subscription_id, UsageCounter.period_key == period_key,
               UsageCounter.used < limit)
        .values(used=UsageCounter.used + 1)
        .returning(UsageCounter.used)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()


def charge(session: Session, farmer_id: int, now: datetime, analysis_id: int | None = None) -> ChargeResult:
    """Take one analysis from the current subscription's day and month, atomically, and write a
    `charge` ledger row. A refusal says which limit (the month when both are spent) and when it resets."""
    sub = current_subscription(session, farmer_id, now)
    if sub is None:
        return ChargeResult(ok=False, reason=QuotaReason.NO_SUBSCRIPTION)
    tier = session.get_one(Tier, sub.tier_id)
    day, month = day_key(now), month_key(now)
    # Both counter rows exist before anyone updates them (D... sorts before M...: one lock order for all).
    session.execute(insert_ignoring_conflicts(session, UsageCounter, ["subscription_id", "period_key"]),
                    [{"subscription_id": sub.id, "period_key": day, "used": 0},
                     {"subscription_id": sub.id, "period_key": month, "used": 0}])

    def refused(reason: QuotaReason, resets_at: datetime) -> ChargeResult:
        return ChargeResult(False, reason, resets_at, subscription_id=sub.id, sponsor_id=sub.sponsor_id)

    savepoint = session.begin_nested()
    if _increment(session, sub.id, day, tier.daily_limit) is None:
        savepoint.rollback()
        if _used(session, sub.id, month) >= tier.monthly_limit:
            return refused(QuotaReason.MONTHLY, next_month_start(now))
        return refused(QuotaReason.DAILY, next_day_start(now))
    if _increment(session, sub.id, month, tier.monthly_limit) is None:
        savepoint.rollback()  # gives the day's unit back
        return refused(QuotaReason.MONTHLY, next_month_start(now))
    ledger = UsageLedger(farmer_id=farmer_id, subscription_id=sub.id, analysis_id=analysis_id,
                         kind=LedgerKind.CHARGE.value, day_key=day, month_key=month, created_at=now)
    session.add(ledger)
    session.flush()
    savepoint.commit()
    return ChargeResult(ok=True, subscription_id=sub.id, sponsor_id=sub.sponsor_id, ledger_id=ledger.id)


def refund(session: Session, charge_ledger_id: int, now: datetime) -> bool:
    """Give a charge back (a failure that was ours): both counters of the charge's periods go down by
    one (never below 0) and a `refund` row names the charge. False if unknown or already refunded."""
    charged = session.get(UsageLedger, charge_ledger_id)
    if charged is None or charged.kind != LedgerKind.CHARGE.value:
        return False
    row = {"farmer_id": charged.farmer_id, "subscription_id": charged.subscription_id,
           "analysis_id": charged.analysis_id, "kind": LedgerKind.REFUND.value, "day_key": charged.day_key,
           "month_key": charged.month_key, "refund_of": charged.id, "created_at": now}
    stmt = insert_ignoring_conflicts(session, UsageLedger, ["refund_of"]).returning(UsageLedger.id)
    if session.execute(stmt.values(**row)).first() is None:
        return False  # refunded before (`refund_of` is unique)
    for key in (charged.day_key, charged.month_key):  # the same lock order as `charge`
        session.execute(
            update(UsageCounter)
            .where(UsageCounter.subscription_id == charged.subscription_id, UsageCounter.period_key == key,
                   UsageCounter.used > 0)
            .values(used=UsageCounter.used - 1)
            .execution_options(synchronize_session=False)
        )
    return True
