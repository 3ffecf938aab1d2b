"""Quota: Istanbul periods, the Trial, charging to the daily and monthly limits, refunds, queued
subscriptions, and one farmer's last units charged by 20 workers at once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from bot.types import QuotaBlock
from models import (
    Analysis,
    Farmer,
    LedgerKind,
    Sponsor,
    Subscription,
    SubscriptionStatus,
    Tier,
    UsageCounter,
    UsageLedger,
)
from services import quota
from services.quota import QuotaReason, charge, current_subscription, quota_status, refund, start_trial
from tests.helpers import migrate

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)  # 12:00 in Istanbul


@pytest.fixture(autouse=True)
def tiers(app):
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)


def new_farmer(app, phone: str = "+905321234567") -> int:
    with app.extensions["db"].session() as s, s.begin():
        farmer = Farmer(phone=phone)
        s.add(farmer)
        s.flush()
        return farmer.id


def give(app, farmer_id: int, tier_code: str, starts_at: datetime, days: int = 30,
         status: str = SubscriptionStatus.ACTIVE.value, sponsor_id: int | None = None) -> int:
    with app.extensions["db"].session() as s, s.begin():
        tier = quota.tier_by_code(s, tier_code)
        assert tier is not None
        sub = Subscription(farmer_id=farmer_id, tier_id=tier.id, status=status, starts_at=starts_at,
                           ends_at=starts_at + timedelta(days=days), sponsor_id=sponsor_id)
        s.add(sub)
        s.flush()
        return sub.id


def new_analysis(app, farmer_id: int) -> int:
    with app.extensions["db"].session() as s, s.begin():
        analysis = Analysis(farmer_id=farmer_id, crop="domates", received_at=NOW)
        s.add(analysis)
        s.flush()
        return analysis.id


def do(app, fn, *args):
    """Run one service call in its own committed transaction, as a worker would."""
    with app.extensions["db"].session() as s, s.begin():
        return fn(s, *args)


def counters(session, subscription_id: int) -> dict[str, int]:
    rows = session.execute(select(UsageCounter.period_key, UsageCounter.used)
                           .where(UsageCounter.subscription_id == subscription_id))
    return {key: used for key, used in rows}


# --- periods ----------------------------------------------------------------------------------------


def test_day_changes_at_istanbul_midnight():
    before, after = datetime(2026, 11, 22, 20, 59, tzinfo=UTC), datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
    assert quota.day_key(before) == "D2026-11-22"
    assert quota.day_key(after) == "D2026-11-23"
    assert quota.next_day_start(before) == after
    assert quota.next_day_start(after) == datetime(2026, 11, 23, 21, 0, tzinfo=UTC)
    assert quota.next_day_start(before).utcoffset() == timedelta(0)


def test_month_changes_at_istanbul_midnight_of_the_first():
    before, after = datetime(2026, 11, 30, 20, 59, tzinfo=UTC), datetime(2026, 11, 30, 21, 0, tzinfo=UTC)
    assert quota.month_key(before) == "M2026-11"
    assert quota.month_key(after) == "M2026-12"
    assert quota.next_month_start(before) == after
    assert quota.next_month_start(after) == datetime(2026, 12, 31, 21, 0, tzinfo=UTC)
    new_year = datetime(2026, 12, 31, 21, 0, tzinfo=UTC)
    assert (quota.day_key(new_year), quota.month_key(new_year)) == ("D2027-01-01", "M2027-01")
    assert quota.next_month_start(new_year) == datetime(2027, 1, 31, 21, 0, tzinfo=UTC)


def test_periods_refuse_naive_datetimes():
    with pytest.raises(ValueError):
        quota.day_key(datetime(2026, 11, 22, 12, 0))


# --- tiers ------------------------------------------------------------------------------------------


def test_tiers_are_seeded_once_with_the_domain_values(app, session):
    assert do(app, quota.seed_tiers) == 0
    tiers = {t.code: (t.daily_limit, t.monthly_limit, t.price_try, t.default_days, t.active)
             for t in session.scalars(select(Tier))}
    assert tiers == {
        "TRIAL": (1, 30, Decimal("0.00"), 30, True),
        "S": (5, 50, Decimal("99.99"), 30, True),
        "M": (20, 200, Decimal("299.99"), 30, True),
        "L": (50, 500, Decimal("599.99"), 30, True),
        "XL": (200, 2000, Decimal("1499.99"), 30, True),
    }


def test_migration_seeds_the_tiers(tmp_path):
    from sqlalchemy import create_engine

    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    migrate(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        codes = conn.execute(select(Tier.code, Tier.daily_limit, Tier.monthly_limit).order_by(Tier.id)).all()
    engine.dispose()
    assert [tuple(r) for r in codes] == [("TRIAL", 1, 30), ("S", 5, 50), ("M", 20, 200), ("L", 50, 500),
                                         ("XL", 200, 2000)]


# --- the Trial --------------------------------------------------------------------------------------


def test_trial_starts_once(app, session):
    farmer = new_farmer(app)
    trial = do(app, start_trial, farmer, NOW)
    assert trial.status == SubscriptionStatus.ACTIVE
    assert (trial.starts_at, trial.ends_at) == (NOW, NOW + timedelta(days=30))
    assert session.get(Tier, trial.tier_id).code == "TRIAL"

    assert do(app, start_trial, farmer, NOW + timedelta(hours=1)).id == trial.id
    later = NOW + timedelta(days=31)  # expired: still no second Trial
    assert do(app, current_subscription, farmer, later) is None
    again = do(app, start_trial, farmer, later)
    assert again.id == trial.id
    assert again.status == SubscriptionStatus.EXPIRED
    assert session.scalar(select(func.count()).select_from(Subscription)) == 1


def test_no_trial_for_a_farmer_with_a_paid_subscription(app, session):
    farmer = new_farmer(app)
    give(app, farmer, "S", NOW)
    assert do(app, start_trial, farmer, NOW) is None
    assert session.scalar(select(func.count()).select_from(Subscription)) == 1


def test_unknown_farmer_is_an_error(app):
    with pytest.raises(LookupError):
        do(app, start_trial, 999, NOW)


# --- charging ---------------------------------------------------------------------------------------


def test_no_subscription_no_charge(app, session):
    farmer = new_farmer(app)
    result = do(app, charge, farmer, NOW)
    assert (result.ok, result.reason, result.resets_at, result.ledger_id) == (False, "no_subscription", None, None)
    assert session.scalar(select(func.count()).select_from(UsageLedger)) == 0


def test_charge_until_the_daily_limit_then_wait_for_istanbul_midnight(app, session):
    farmer = new_farmer(app)
    sub = give(app, farmer, "S", NOW)
    evening = datetime(2026, 11, 22, 20, 30, tzinfo=UTC)  # 23:30 in Istanbul
    analyses = [new_analysis(app, farmer) for _ in range(6)]
    results = [do(app, charge, farmer, evening, analysis) for analysis in analyses]
    assert [r.ok for r in results] == [True] * 5 + [False]
    assert all(r.subscription_id == sub and r.ledger_id for r in results[:5])
    refused = results[5]
    assert refused.reason is QuotaReason.DAILY
    assert refused.resets_at == datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
    assert refused.ledger_id is None
    assert counters(session, sub) == {"D2026-11-22": 5, "M2026-11": 5}

    after_midnight = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
    assert do(app, charge, farmer, after_midnight).ok
    assert counters(session, sub) == {"D2026-11-22": 5, "D2026-11-23": 1, "M2026-11": 6}
    ledger = list(session.scalars(select(UsageLedger).order_by(UsageLedger.id)))
    assert [(row.kind, row.day_key, row.analysis_id) for row in ledger[:2]] == [
        (LedgerKind.CHARGE, "D2026-11-22", analyses[0]), (LedgerKind.CHARGE, "D2026-11-22", analyses[1])]
    assert len(ledger) == 6


def test_monthly_limit_and_its_reset(app, session):
    farmer = new_farmer(app)
    sub = give(app, farmer, "S", datetime(2026, 11, 1, tzinfo=UTC), days=60)
    for day in range(10):  # 5 a day for 10 days: the month's 50
        when = datetime(2026, 11, 1, 9, tzinfo=UTC) + timedelta(days=day)
        assert all(do(app, charge, farmer, when).ok for _ in range(5))
    eleventh = datetime(2026, 11, 11, 9, tzinfo=UTC)
    refused = do(app, charge, farmer, eleventh)
    assert (refused.ok, refused.reason) == (False, QuotaReason.MONTHLY)
    assert refused.resets_at == datetime(2026, 11, 30, 21, 0, tzinfo=UTC)
    # The day's unit taken before the month refused was given back (savepoint rolled back).
    assert counters(session, sub)["D2026-11-11"] == 0
    assert counters(session, sub)["M2026-11"] == 50

    status = do(app, quota_status, farmer, eleventh)
    assert (status.daily_used, status.monthly_used, status.remaining) == (0, 50, 0)
    assert do(app, charge, farmer, datetime(2026, 11, 30, 21, 0, tzinfo=UTC)).ok  # 1 December, Istanbul


def test_both_limits_spent_reports_the_month(app, session):
    farmer = new_farmer(app)
    sub = give(app, farmer, "S", NOW)
    with app.extensions["db"].session() as s, s.begin():
        s.add_all([UsageCounter(subscription_id=sub, period_key="D2026-11-22", used=5),
                   UsageCounter(subscription_id=sub, period_key="M2026-11", used=50)])
    refused = do(app, charge, farmer, NOW)
    assert (refused.reason, refused.resets_at) == (QuotaReason.MONTHLY, datetime(2026, 11, 30, 21, tzinfo=UTC))


def test_refund_gives_the_unit_back_once(app, session):
    farmer = new_farmer(app)
    sub = give(app, farmer, "S", NOW)
    analysis = new_analysis(app, farmer)
    charges = [do(app, charge, farmer, NOW, analysis) for _ in range(5)]
    assert not do(app, charge, farmer, NOW).ok

    assert do(app, refund, charges[0].ledger_id, NOW + timedelta(minutes=1)) is True
    assert counters(session, sub) == {"D2026-11-22": 4, "M2026-11": 4}
    assert do(app, refund, charges[0].ledger_id, NOW + timedelta(minutes=2)) is False  # idempotent
    assert counters(session, sub) == {"D2026-11-22": 4, "M2026-11": 4}
    refund_row = session.scalars(select(UsageLedger).where(UsageLedger.kind == LedgerKind.REFUND)).one()
    assert refund_row.refund_of == charges[0].ledger_id
    assert (refund_row.analysis_id, refund_row.subscription_id) == (analysis, sub)
    assert do(app, refund, refund_row.id, NOW) is False  # a refund is not a charge
    assert do(app, refund, 424242, NOW) is False

    assert do(app, charge, farmer, NOW).ok  # the refunded unit can be used again
    assert not do(app, charge, farmer, NOW).ok


def test_refund_never_goes_below_zero(app, session):
    farmer = new_farmer(app)
    sub = give(app, farmer, "S", NOW)
    charged = do(app, charge, farmer, NOW)
    with app.extensions["db"].session() as s, s.begin():  # e.g. an admin reset the counters
        s.execute(update(UsageCounter).values(used=0))
    assert do(app, refund, charged.ledger_id, NOW) is True
    assert counters(session, sub) == {"D2026-11-22": 0, "M2026-11": 0}


# --- current and queued subscriptions ---------------------------------------------------------------


def test_queued_subscription_becomes_active_when_the_current_one_ends(app, session):
    farmer = new_farmer(app)
    with app.extensions["db"].session() as s, s.begin():
        sponsor = Sponsor(name="Tarım A.Ş.")
        s.add(sponsor)
        s.flush()
        sponsor_id = sponsor.id
    first = give(app, farmer, "S", NOW, days=30)
    ends = NOW + timedelta(days=30)
    second = give(app, farmer, "M", ends, days=45, status=SubscriptionStatus.QUEUED.value, sponsor_id=sponsor_id)

    status = do(app, quota_status, farmer, ends - timedelta(seconds=1))
    assert (status.subscription_id, status.tier_code, status.ends_at, status.sponsor_name) == (first, "S", ends, None)
    assert [(q.tier_code, q.starts_at, q.ends_at) for q in status.queued] == [("M", ends, ends + timedelta(days=45))]

    status = do(app, quota_status, farmer, ends)
    assert (status.subscription_id, status.tier_code) == (second, "M")
    assert (status.daily_limit, status.monthly_limit) == (20, 200)
    assert status.sponsor_name == "Tarım A.Ş."
    assert status.queued == ()
    assert session.get(Subscription, first).status == SubscriptionStatus.EXPIRED
    assert session.get(Subscription, second).status == SubscriptionStatus.ACTIVE
    assert do(app, charge, farmer, ends).sponsor_id == sponsor_id  # attribution follows the paying subscription


def test_queued_subscription_that_also_ended_expires_too(app, session):
    farmer = new_farmer(app)
    first = give(app, farmer, "S", NOW, days=30)
    second = give(app, farmer, "M", NOW + timedelta(days=30), days=30, status=SubscriptionStatus.QUEUED.value)
    assert do(app, current_subscription, farmer, NOW + timedelta(days=61)) is None
    assert {session.get(Subscription, i).status for i in (first, second)} == {SubscriptionStatus.EXPIRED}
    assert do(app, quota_status, farmer, NOW + timedelta(days=61)) is None


def test_quota_status_counts_and_resets(app):
    farmer = new_farmer(app)
    do(app, start_trial, farmer, NOW)
    do(app, charge, farmer, NOW)
    status = do(app, quota_status, farmer, NOW)
    assert (status.tier_code, status.tier_name) == ("TRIAL", "Deneme")
    assert (status.daily_used, status.daily_limit, status.monthly_used, status.monthly_limit) == (1, 1, 1, 30)
    assert status.day_resets_at == datetime(2026, 11, 22, 21, tzinfo=UTC)
    assert status.month_resets_at == datetime(2026, 11, 30, 21, tzinfo=UTC)
    assert status.ends_at == NOW + timedelta(days=30)
    assert status.remaining == 0


# --- concurrency ------------------------------------------------------------------------------------


def test_twenty_workers_race_for_five_units(app, session):
    farmer = new_farmer(app)
    sub = give(app, farmer, "S", NOW)
    db = app.extensions["db"]
    barrier = threading.Barrier(20)
    results: list[quota.ChargeResult] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            with db.session() as s, s.begin():
                results.append(charge(s, farmer, NOW))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r.ok for r in results) == 5
    assert {r.reason for r in results if not r.ok} == {QuotaReason.DAILY}
    assert counters(session, sub) == {"D2026-11-22": 5, "M2026-11": 5}
    assert session.scalar(select(func.count()).select_from(UsageLedger)) == 5


# --- what blocks a charge, as the farmer hears it ---------------------------------------------------------


def use_today(app, farmer_id: int, times: int = 1) -> None:
    with app.extensions["db"].session() as s, s.begin():
        for _ in range(times):
            assert charge(s, farmer_id, NOW).ok


def block(app, farmer_id: int):
    with app.extensions["db"].session() as s, s.begin():
        return quota.quota_block(s, farmer_id, NOW)


def test_a_trial_out_of_analyses_renews_at_midnight_and_a_code_would_help_now(app):
    farmer_id = new_farmer(app)
    give(app, farmer_id, "TRIAL", NOW - timedelta(days=3))
    assert block(app, farmer_id) is None
    use_today(app, farmer_id)
    assert block(app, farmer_id) == QuotaBlock("daily", datetime(2026, 11, 22, 21, 0, tzinfo=UTC), code_helps=True)


def test_on_the_packages_last_day_the_limit_does_not_renew_the_package_ends(app):
    farmer_id = new_farmer(app)
    give(app, farmer_id, "TRIAL", NOW - timedelta(days=30) + timedelta(hours=3))  # its 30th day, ends at 12:00
    use_today(app, farmer_id)
    found = block(app, farmer_id)
    assert found is not None and found.reason == "daily" and found.resets_at is None
    assert found.package_ends_at == NOW + timedelta(hours=3) and found.code_helps


def test_on_a_paid_package_a_code_would_only_queue(app):
    farmer_id = new_farmer(app)
    give(app, farmer_id, "S", NOW - timedelta(days=3))
    use_today(app, farmer_id, 5)
    found = block(app, farmer_id)
    assert found is not None and found.reason == "daily" and not found.code_helps
    assert found.resets_at == datetime(2026, 11, 22, 21, 0, tzinfo=UTC)


def test_a_queued_package_starting_before_the_renewal_is_when_analyses_come_back(app):
    farmer_id = new_farmer(app)
    give(app, farmer_id, "S", NOW - timedelta(days=30) + timedelta(hours=2))  # ends at 11:00 UTC today
    give(app, farmer_id, "M", NOW + timedelta(hours=2), status=SubscriptionStatus.QUEUED.value)
    use_today(app, farmer_id, 5)
    found = block(app, farmer_id)
    assert found is not None and found.resets_at == NOW + timedelta(hours=2) and found.package_ends_at is None
    assert not found.code_helps
