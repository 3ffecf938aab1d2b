"""Sponsor codes: format and recognition, purchases (10,000 codes), every redeem outcome, revoking,
the CLI command, and two farmers racing for one code."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.codes import ALPHABET, looks_like_code, normalize_code
from models import CodeStatus, Farmer, Sponsor, SponsorCode, SponsorPurchase, Subscription, SubscriptionStatus
from services import quota, sponsorship
from services.sponsorship import RedeemOutcome, redeem

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
CODE_FORMAT = re.compile(r"AGRI-[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}")


@pytest.fixture(autouse=True)
def tiers(app):
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)


def do(app, fn, *args, **kwargs):
    """Run one service call in its own committed transaction."""
    with app.extensions["db"].session() as s, s.begin():
        return fn(s, *args, **kwargs)


def new_farmer(app, phone: str = "+905321234567") -> int:
    with app.extensions["db"].session() as s, s.begin():
        farmer = Farmer(phone=phone)
        s.add(farmer)
        s.flush()
        return farmer.id


def buy(app, tier: str = "M", quantity: int = 3, valid_days: int = 90, days: int = 45,
        sponsor: str = "Anadolu Tohum") -> list[str]:
    with app.extensions["db"].session() as s, s.begin():
        sponsor_row = sponsorship.create_sponsor(s, sponsor, NOW, contact_email="info@example.com")
        _, codes = sponsorship.create_purchase(s, sponsor_row.id, tier, quantity, valid_days, days, NOW)
        return codes


def code_row(session, code: str) -> SponsorCode:
    return session.scalars(select(SponsorCode).where(SponsorCode.code == code)).one()


# --- codes as text ----------------------------------------------------------------------------------


def test_generated_codes_use_the_unambiguous_alphabet():
    codes = {sponsorship.generate_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(CODE_FORMAT.fullmatch(c) for c in codes)
    body = "".join(c[5:9] + c[10:] for c in codes)
    assert not set(body) & set("01OIL")
    assert set(body) == set(ALPHABET)


@pytest.mark.parametrize("text", [
    "AGRI-7KQ3-M9XP", "agri 7kq3 m9xp", "agri7kq3m9xp", "  Agri-7kq3 M9XP\n", "AGRİ-7KQ3-M9XP", "agrı 7kq3-m9xp",
    "agri – 7kq3 – m9xp", "Kodum: agri-7kq3-m9xp teşekkürler",
])
def test_codes_are_matched_whatever_the_case_spaces_and_dashes(text):
    assert normalize_code(text) == "AGRI-7KQ3-M9XP"
    assert looks_like_code(text)


@pytest.mark.parametrize("text", ["AGRI-7KQ3-M9X0", "AGRI-7KQ3-M9XPQ", "AGRI-7KQ3", "7KQ3-M9XP", "domates", "", None])
def test_text_of_the_wrong_shape_normalises_to_no_code(text):
    assert normalize_code(text) is None


@pytest.mark.parametrize("text,looks", [
    ("AGRI-7KQ3-M9X0", True),  # a mistyped code: answered "unknown", not taken for something else
    ("agri 7kq3 m9xpq", True),
    ("Agri merkez", False),  # the province Ağrı typed without Turkish letters
    ("agri", False),
    ("domates yaprağında leke", False),
    (None, False),
])
def test_a_mistyped_code_looks_like_one_but_the_word_agri_does_not(text, looks):
    assert looks_like_code(text) is looks


# --- purchases --------------------------------------------------------------------------------------


def test_purchase_of_ten_thousand_codes(app, session):
    codes = buy(app, tier="S", quantity=10_000, valid_days=90, days=30)
    assert len(codes) == len(set(codes)) == 10_000
    assert all(CODE_FORMAT.fullmatch(c) for c in codes)
    purchase = session.scalars(select(SponsorPurchase)).one()
    assert (purchase.quantity, purchase.code_valid_days, purchase.subscription_days) == (10_000, 90, 30)
    rows = session.execute(select(SponsorCode.status, SponsorCode.expires_at, func.count())
                           .group_by(SponsorCode.status, SponsorCode.expires_at)).all()
    assert [tuple(r) for r in rows] == [(CodeStatus.UNUSED, NOW + timedelta(days=90), 10_000)]
    assert set(session.scalars(select(SponsorCode.code))) == set(codes)


@pytest.mark.parametrize("tier,quantity", [("M", 0), ("M", 10_001), ("TRIAL", 5), ("XXL", 5)])
def test_a_purchase_outside_the_limits_or_of_an_unknown_tier_is_refused(app, tier, quantity):
    with pytest.raises(ValueError):
        buy(app, tier=tier, quantity=quantity)


# --- redeeming --------------------------------------------------------------------------------------


def test_redeem_without_a_subscription_is_active_now(app, session):
    farmer = new_farmer(app)
    code = buy(app, tier="M", days=45)[0]
    result = do(app, redeem, farmer, code.lower().replace("-", " "), NOW)
    assert result.outcome is RedeemOutcome.OK
    assert (result.code, result.tier_code, result.tier_name) == (code, "M", "M Paketi")
    assert (result.daily_limit, result.monthly_limit) == (20, 200)
    assert (result.starts_at, result.ends_at) == (NOW, NOW + timedelta(days=45))  # from the purchase
    assert result.sponsor_name == "Anadolu Tohum"

    row = code_row(session, code)
    sub = session.get(Subscription, result.subscription_id)
    assert (row.status, row.redeemed_by_farmer_id, row.redeemed_at, row.subscription_id) == (
        CodeStatus.REDEEMED, farmer, NOW, sub.id)
    assert (sub.status, sub.sponsor_id, sub.code_id) == (SubscriptionStatus.ACTIVE, row.sponsor_id, row.id)
    assert do(app, quota.quota_status, farmer, NOW).sponsor_name == "Anadolu Tohum"


def test_redeem_replaces_a_trial_at_once(app, session):
    farmer = new_farmer(app)
    trial = do(app, quota.start_trial, farmer, NOW)
    later = NOW + timedelta(days=3)
    result = do(app, redeem, farmer, buy(app)[0], later)
    assert result.outcome is RedeemOutcome.OK
    assert result.starts_at == later
    assert session.get(Subscription, trial.id).status == SubscriptionStatus.CANCELLED
    assert do(app, quota.current_subscription, farmer, later).id == result.subscription_id


def test_redeem_while_subscribed_is_queued_until_the_end(app, session):
    farmer = new_farmer(app)
    first, second = buy(app, tier="S", quantity=2, days=30)
    active = do(app, redeem, farmer, first, NOW)
    queued = do(app, redeem, farmer, second, NOW + timedelta(days=10))
    assert queued.outcome is RedeemOutcome.QUEUED
    assert (queued.starts_at, queued.ends_at) == (active.ends_at, active.ends_at + timedelta(days=30))
    assert session.get(Subscription, queued.subscription_id).status == SubscriptionStatus.QUEUED
    assert do(app, quota.current_subscription, farmer, active.ends_at).id == queued.subscription_id


def test_a_second_queued_code_is_not_now_and_stays_unused(app, session):
    farmer = new_farmer(app)
    codes = buy(app, quantity=3)
    do(app, redeem, farmer, codes[0], NOW)
    queued = do(app, redeem, farmer, codes[1], NOW)
    result = do(app, redeem, farmer, codes[2], NOW)
    assert result.outcome is RedeemOutcome.NOT_NOW
    assert (result.subscription_id, result.starts_at) == (queued.subscription_id, queued.starts_at)
    assert code_row(session, codes[2]).status == CodeStatus.UNUSED


def test_a_not_now_code_says_until_when_it_is_valid(app):
    farmer = new_farmer(app)
    codes = buy(app, quantity=2, valid_days=90)
    [short_lived] = buy(app, quantity=1, valid_days=5)
    do(app, redeem, farmer, codes[0], NOW)
    queued = do(app, redeem, farmer, codes[1], NOW)
    result = do(app, redeem, farmer, short_lived, NOW)
    assert result.outcome is RedeemOutcome.NOT_NOW and result.starts_at == queued.starts_at
    assert result.code_expires_at == NOW + timedelta(days=5) < result.starts_at


@pytest.mark.parametrize("text", ["merhaba", "AGRI-2222-3333"])
def test_an_unknown_code_is_answered_unknown(app, text):
    farmer = new_farmer(app)
    buy(app)
    assert do(app, redeem, farmer, text, NOW).outcome is RedeemOutcome.UNKNOWN


def test_a_code_is_redeemed_once_and_then_is_used_for_everyone(app, session):
    one, two = new_farmer(app, "+905321111111"), new_farmer(app, "+905322222222")
    code = buy(app)[0]
    assert do(app, redeem, one, code, NOW).outcome is RedeemOutcome.OK
    assert do(app, redeem, two, code, NOW).outcome is RedeemOutcome.USED
    assert do(app, redeem, one, code, NOW).outcome is RedeemOutcome.USED
    assert session.scalar(select(func.count()).select_from(Subscription)) == 1


def test_expired_code_is_marked_expired(app, session):
    farmer = new_farmer(app)
    code = buy(app, valid_days=10)[0]
    result = do(app, redeem, farmer, code, NOW + timedelta(days=10))
    assert result.outcome is RedeemOutcome.EXPIRED
    assert code_row(session, code).status == CodeStatus.EXPIRED
    assert do(app, redeem, farmer, code, NOW).outcome is RedeemOutcome.EXPIRED  # stays expired
    assert session.scalar(select(func.count()).select_from(Subscription)) == 0


def test_a_revoked_code_is_revoked_once_and_cannot_be_redeemed(app, session):
    farmer = new_farmer(app)
    code = buy(app)[0]
    assert do(app, sponsorship.revoke_code, code.lower(), NOW) is True
    assert do(app, sponsorship.revoke_code, code, NOW) is False
    row = code_row(session, code)
    assert (row.status, row.revoked_at) == (CodeStatus.REVOKED, NOW)
    assert do(app, redeem, farmer, code, NOW).outcome is RedeemOutcome.REVOKED


def test_two_farmers_race_for_one_code(app, session):
    farmers = [new_farmer(app, "+905321111111"), new_farmer(app, "+905322222222")]
    code = buy(app, quantity=1)[0]
    db = app.extensions["db"]
    barrier = threading.Barrier(2)
    outcomes: dict[int, RedeemOutcome] = {}
    errors: list[BaseException] = []

    def attempt(farmer_id: int) -> None:
        try:
            barrier.wait()
            with db.session() as s, s.begin():
                outcomes[farmer_id] = redeem(s, farmer_id, code, NOW).outcome
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(f,)) for f in farmers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(outcomes.values()) == [RedeemOutcome.OK, RedeemOutcome.USED]
    winner = next(f for f, o in outcomes.items() if o is RedeemOutcome.OK)
    assert code_row(session, code).redeemed_by_farmer_id == winner
    assert list(session.scalars(select(Subscription.farmer_id))) == [winner]


# --- CLI --------------------------------------------------------------------------------------------


def test_cli_prints_the_codes_and_reuses_the_sponsor(runner, session):
    args = ["sponsor-codes", "--sponsor", "Anadolu Tohum", "--tier", "M", "--quantity", "3", "--valid-days", "90",
            "--duration-days", "30"]
    first = runner.invoke(args=args)
    assert first.exit_code == 0, first.output
    lines = first.output.splitlines()
    assert len(lines) == 3 and all(CODE_FORMAT.fullmatch(line) for line in lines)
    assert runner.invoke(args=args).exit_code == 0
    assert session.scalar(select(func.count()).select_from(Sponsor)) == 1
    assert session.scalar(select(func.count()).select_from(SponsorCode)) == 6
    purchase = session.scalars(select(SponsorPurchase).order_by(SponsorPurchase.id)).first()
    assert (purchase.quantity, purchase.code_valid_days, purchase.subscription_days) == (3, 90, 30)


def test_cli_finds_the_sponsor_however_its_name_is_typed(runner, session):
    for typed in ("Test Tohum", "test tohum", "  TEST TOHUM "):
        result = runner.invoke(args=["sponsor-codes", "--sponsor", typed, "--tier", "S", "--quantity", "1"])
        assert result.exit_code == 0, result.output
    assert session.scalars(select(Sponsor.name)).all() == ["Test Tohum"]


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_cli_refuses_a_sponsor_name_the_api_would_refuse(runner, session, name):
    result = runner.invoke(args=["sponsor-codes", "--sponsor", name, "--tier", "S", "--quantity", "1"])
    assert result.exit_code == 2 and "--sponsor" in result.output and "1 to 200 characters" in result.output
    assert session.scalar(select(func.count()).select_from(Sponsor)) == 0
    assert session.scalar(select(func.count()).select_from(SponsorCode)) == 0


def test_cli_refuses_an_unknown_tier(runner, session):
    result = runner.invoke(args=["sponsor-codes", "--sponsor", "X", "--tier", "XXL", "--quantity", "1"])
    assert result.exit_code == 2
    assert session.scalar(select(func.count()).select_from(SponsorCode)) == 0


def test_the_cli_says_it_is_an_operators_path_that_records_a_paid_purchase(runner):
    result = runner.invoke(args=["sponsor-codes", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "equivalent to an admin's" in text and "no purchase request" in text and "paid for" in text
