"""Sponsor codes: generating them in bulk, recognising them in a farmer's message, redeeming, revoking;
and purchase requests, which only an admin turns into a purchase (purchases are money).

Every state change of a code (`unused -> redeemed | expired | revoked`) is one conditional UPDATE
on `status = 'unused'`, so two farmers racing for one code cannot both win. Functions never commit:
the caller owns the transaction.
"""

from __future__ import annotations

import csv
import enum
import io
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ColumnElement, String, Table, and_, bindparam, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from bot.codes import ALPHABET, PREFIX, normalize_code
from bot.normalize import fold_letters
from models import (
    CodeStatus,
    PurchaseRequest,
    PurchaseRequestStatus,
    Sponsor,
    SponsorCode,
    SponsorPurchase,
    Subscription,
    SubscriptionStatus,
    Tier,
    utcnow,
)
from models.db import insert_ignoring_conflicts
from services.audit import audit
from services.folding import folded
from services.quota import TRIAL, add_subscription, lock_farmer, queued_subscriptions, tier_by_code

MAX_QUANTITY = 10_000
TIER_ORDER: tuple[str, ...] = ("S", "M", "L", "XL")  # the packages sponsors buy, smallest first
CODE_STATUSES: tuple[str, ...] = tuple(s.value for s in CodeStatus)


class RedeemOutcome(enum.StrEnum):
    OK = "ok"  # active now (replacing a Trial, if any)
    QUEUED = "queued"  # starts when the current subscription ends
    UNKNOWN = "unknown"  # not a code, or no such code
    USED = "used"  # redeemed already (by anyone)
    EXPIRED = "expired"  # past its validity
    REVOKED = "revoked"  # withdrawn by the sponsor or an admin
    NOT_NOW = "not_now"  # the farmer already has a queued subscription; the code stays unused


@dataclass(frozen=True)
class RedeemResult:
    """For `ok`/`queued`: the new subscription. For `not_now`: the subscription already queued, and until when
    the code is valid (`code_expires_at`: it can be redeemed once that package has started, if still valid then).
    Otherwise only `outcome` (and `code` when the text was a well-formed code)."""

    outcome: RedeemOutcome
    code: str | None = None
    tier_code: str | None = None
    tier_name: str | None = None
    daily_limit: int | None = None
    monthly_limit: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    sponsor_name: str | None = None
    subscription_id: int | None = None
    code_expires_at: datetime | None = None  # `not_now`: the code's own validity


# --- codes as text ---------------------------------------------------------------------------------


def generate_code() -> str:
    """`AGRI-XXXX-XXXX` from `secrets`: 31^8 (about 8.5e11) possibilities."""
    chars = "".join(secrets.choice(ALPHABET) for _ in range(8))
    return f"{PREFIX}-{chars[:4]}-{chars[4:]}"


# --- sponsors and purchases -------------------------------------------------------------------------


def create_sponsor(session: Session, name: str, now: datetime | None = None, *, logo_url: str | None = None,
                   contact_email: str | None = None, contact_phone: str | None = None) -> Sponsor:
    """A sponsor company (`now` defaults to the current time: a sponsor's creation is not quota logic)."""
    sponsor = Sponsor(name=name.strip(), logo_url=logo_url, contact_email=contact_email,
                      contact_phone=contact_phone, created_at=now or utcnow())
    session.add(sponsor)
    session.flush()
    return sponsor


def sponsor_named(session: Session, name: str) -> Sponsor | None:
    """The sponsor of this name as people write it, case, Turkish letters and spaces around aside (`test tohum`
    is `Test Tohum`): an operator's typing never makes a second sponsor of the same company."""
    return session.scalars(select(Sponsor).where(folded(Sponsor.name) == fold_letters(name.strip()))
                           .order_by(Sponsor.id)).first()


def purchase_tier(session: Session, tier_code: str, quantity: int, code_valid_days: int,
                  subscription_days: int) -> Tier:
    """The tier of a purchase with these terms, or ValueError: 1..10,000 codes, days at least 1, an
    active tier other than the Trial (an admin may have withdrawn one)."""
    if not 1 <= quantity <= MAX_QUANTITY:
        raise ValueError(f"quantity must be 1..{MAX_QUANTITY}")
    if code_valid_days < 1 or subscription_days < 1:
        raise ValueError("code_valid_days and subscription_days must be at least 1")
    tier = tier_by_code(session, tier_code)
    if tier is None or tier.code == TRIAL or not tier.active:
        raise ValueError(f"no purchasable tier {tier_code!r}")
    return tier


def create_purchase(session: Session, sponsor_id: int, tier_code: str, quantity: int, code_valid_days: int,
                    subscription_days: int, now: datetime) -> tuple[SponsorPurchase, list[str]]:
    """A purchase and its `quantity` codes, written with one bulk INSERT (a collision with an existing
    code is skipped by the database and replaced by a fresh code in another round)."""
    tier = purchase_tier(session, tier_code, quantity, code_valid_days, subscription_days)
    if session.get(Sponsor, sponsor_id) is None:
        raise LookupError(f"no sponsor {sponsor_id}")
    purchase = SponsorPurchase(sponsor_id=sponsor_id, tier_id=tier.id, quantity=quantity,
                               code_valid_days=code_valid_days, subscription_days=subscription_days, created_at=now)
    session.add(purchase)
    session.flush()

    shared = {"purchase_id": purchase.id, "sponsor_id": sponsor_id, "tier_id": tier.id,
              "status": CodeStatus.UNUSED.value, "expires_at": now + timedelta(days=code_valid_days),
              "created_at": now}
    created: list[str] = []
    for _ in range(10):
        batch: set[str] = set()
        while len(batch) < quantity - len(created):
            batch.add(generate_code())
        created.extend(_insert_codes(session, sorted(batch), shared))
        if len(created) == quantity:
            return purchase, created
    raise RuntimeError("could not generate unique codes")  # 10 rounds of collisions: not chance


def _insert_codes(session: Session, codes: list[str], shared: dict[str, object]) -> list[str]:
    """Insert codes that do not exist yet; returns those inserted. PostgreSQL gets one
    `INSERT ... SELECT unnest(:codes)` with one array parameter (10,000 codes: about 0.3 s of database
    work here, a third of what batched multi-row VALUES take); SQLite gets an executemany (in-process)."""
    table = cast(Table, SponsorCode.__table__)
    if session.get_bind().dialect.name == "postgresql":
        source = select(
            func.unnest(bindparam("codes", codes, type_=postgresql.ARRAY(String))),
            *(literal(value, table.c[name].type) for name, value in shared.items()),
        )
        stmt = (postgresql.insert(table).from_select(["code", *shared], source)
                .on_conflict_do_nothing(index_elements=["code"]).returning(table.c.code))
        return list(session.scalars(stmt))
    stmt = insert_ignoring_conflicts(session, SponsorCode, ["code"]).returning(SponsorCode.code)
    return list(session.scalars(stmt, [{"code": c, **shared} for c in codes]))


def revoke_code(session: Session, code: str, now: datetime) -> bool:
    """Withdraw an unused code. False if there is no such code or it is no longer unused."""
    normalized = normalize_code(code)
    if normalized is None:
        return False
    revoked = session.execute(
        update(SponsorCode)
        .where(SponsorCode.code == normalized, SponsorCode.status == CodeStatus.UNUSED.value)
        .values(status=CodeStatus.REVOKED.value, revoked_at=now)
        .returning(SponsorCode.id)
        .execution_options(synchronize_session=False)
    ).first()
    return revoked is not None


def effective_status(status: str, expires_at: datetime, now: datetime) -> str:
    """An unused code past its validity counts as expired (the database marks it lazily)."""
    if status == CodeStatus.UNUSED.value and expires_at <= now:
        return CodeStatus.EXPIRED.value
    return status


def has_effective_status(status: str, now: datetime) -> ColumnElement[bool]:
    """The SQL twin of `effective_status`: codes whose effective status is `status`."""
    if status == CodeStatus.UNUSED.value:
        return and_(SponsorCode.status == status, SponsorCode.expires_at > now)
    if status == CodeStatus.EXPIRED.value:
        return or_(SponsorCode.status == status,
                   and_(SponsorCode.status == CodeStatus.UNUSED.value, SponsorCode.expires_at <= now))
    return SponsorCode.status == status


CSV_COLUMNS: tuple[str, ...] = ("code", "tier", "status", "expires_at", "redeemed_at")


def export_codes_csv(session: Session, sponsor_id: int, now: datetime, *, via: str | None = None) -> str:
    """Every code of the sponsor as CSV for distribution (code, tier, effective status, expiry, redemption;
    never a farmer); stamps `exported_at` on codes never exported before and audits the
    export, in the caller's transaction, since a code in a CSV has been handed out. `via` names the surface
    in the audit row (the console says so; the API does not)."""
    rows = session.execute(
        select(SponsorCode.code, SponsorCode.status, SponsorCode.expires_at, SponsorCode.redeemed_at,
               Tier.code.label("tier"))
        .join(Tier, Tier.id == SponsorCode.tier_id).where(SponsorCode.sponsor_id == sponsor_id)
        .order_by(SponsorCode.id)
    ).all()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([r.code, r.tier, effective_status(r.status, r.expires_at, now), r.expires_at.isoformat(),
                         r.redeemed_at.isoformat() if r.redeemed_at is not None else ""])
    session.execute(update(SponsorCode)
                    .where(SponsorCode.sponsor_id == sponsor_id, SponsorCode.exported_at.is_(None))
                    .values(exported_at=now).execution_options(synchronize_session=False))
    audit("sponsor.codes.export", "sponsor", sponsor_id, _via({"codes": len(rows)}, via), session=session)
    return out.getvalue()


@dataclass(frozen=True)
class Revocation:
    """What `revoke_sponsor_code` did: `code_id` None when the sponsor has no such code; `revoked` False
    when the code is not unused (`status` says what it is)."""

    code: str | None
    code_id: int | None
    status: str | None
    revoked: bool


def revoke_sponsor_code(session: Session, sponsor_id: int, text: str, now: datetime, *,
                        via: str | None = None) -> Revocation:
    """Revoke one of the sponsor's own codes if it is still unused (a sponsor or an admin withdrawing it),
    audited in the caller's transaction when it was revoked."""
    code = normalize_code(text)
    row = None
    if code is not None:
        row = session.execute(select(SponsorCode.id, SponsorCode.status, SponsorCode.expires_at)
                              .where(SponsorCode.code == code, SponsorCode.sponsor_id == sponsor_id)).first()
    if row is None:
        return Revocation(code, None, None, False)
    current = effective_status(row.status, row.expires_at, now)
    if current != CodeStatus.UNUSED.value or not revoke_code(session, code or "", now):
        return Revocation(code, row.id, current, False)
    audit("sponsor.code.revoke", "sponsor_code", row.id, _via({"sponsor_id": sponsor_id, "code": code}, via),
          session=session)
    return Revocation(code, row.id, CodeStatus.REVOKED.value, True)


def _via(details: dict[str, object], via: str | None) -> dict[str, object]:
    return {**details, "via": via} if via else details


# --- purchase requests ---------------------------------------------------------------------------


def file_purchase_request(session: Session, sponsor_id: int, tier_code: str, quantity: int, code_valid_days: int,
                          subscription_days: int, note: str | None, requested_by: int | None,
                          now: datetime) -> PurchaseRequest:
    """A pending request for a purchase; nothing is created until an admin approves it. Its terms are
    checked like a purchase's (ValueError), so an approval fails only if the tier was withdrawn meanwhile."""
    tier = purchase_tier(session, tier_code, quantity, code_valid_days, subscription_days)
    request = PurchaseRequest(sponsor_id=sponsor_id, tier_id=tier.id, quantity=quantity,
                              code_valid_days=code_valid_days, subscription_days=subscription_days, note=note,
                              requested_by=requested_by, created_at=now)
    session.add(request)
    session.flush()
    return request


def _decide(session: Session, request_id: int, status: PurchaseRequestStatus, decided_by: int | None, now: datetime,
            **values: object) -> bool:
    """pending -> `status` as one conditional UPDATE: of two admins deciding at once, exactly one wins."""
    decided = session.execute(
        update(PurchaseRequest)
        .where(PurchaseRequest.id == request_id, PurchaseRequest.status == PurchaseRequestStatus.PENDING.value)
        .values(status=status.value, decided_by=decided_by, decided_at=now, **values)
        .returning(PurchaseRequest.id)
        .execution_options(synchronize_session=False)
    ).first()
    return decided is not None


def approve_purchase_request(session: Session, request_id: int, decided_by: int | None,
                             now: datetime) -> tuple[SponsorPurchase, list[str]] | None:
    """Approve a pending request: its purchase and codes are created in the caller's transaction.
    None if the request is not pending (approved or rejected already); ValueError if its tier is no
    longer sold (the caller rolls back, and the request stays pending)."""
    if not _decide(session, request_id, PurchaseRequestStatus.APPROVED, decided_by, now):
        return None
    request = session.get_one(PurchaseRequest, request_id, populate_existing=True)  # as the UPDATE left it
    tier = session.get_one(Tier, request.tier_id)
    purchase, codes = create_purchase(session, request.sponsor_id, tier.code, request.quantity,
                                      request.code_valid_days, request.subscription_days, now)
    request.purchase_id = purchase.id
    session.flush()
    return purchase, codes


def reject_purchase_request(session: Session, request_id: int, reason: str, decided_by: int | None,
                            now: datetime) -> bool:
    """Reject a pending request, saying why; False if it is not pending. Nothing is created."""
    if not reason.strip():
        raise ValueError("a rejection needs a reason")
    return _decide(session, request_id, PurchaseRequestStatus.REJECTED, decided_by, now,
                   rejection_reason=reason.strip())


# --- redeeming ------------------------------------------------------------------------------------


def _refusal(session: Session, code_id: int, status: str, expires_at: datetime, now: datetime) -> RedeemOutcome | None:
    """Why this code cannot be redeemed now, or None. An unused code past its date is marked expired."""
    if status == CodeStatus.REVOKED.value:
        return RedeemOutcome.REVOKED
    if status == CodeStatus.REDEEMED.value:
        return RedeemOutcome.USED
    if status == CodeStatus.EXPIRED.value:
        return RedeemOutcome.EXPIRED
    if expires_at <= now:
        session.execute(
            update(SponsorCode)
            .where(SponsorCode.id == code_id, SponsorCode.status == CodeStatus.UNUSED.value)
            .values(status=CodeStatus.EXPIRED.value)
            .execution_options(synchronize_session=False)
        )
        return RedeemOutcome.EXPIRED
    return None


def _result(session: Session, outcome: RedeemOutcome, code: str, sub: Subscription) -> RedeemResult:
    tier = session.get_one(Tier, sub.tier_id)
    sponsor_name = session.scalar(select(Sponsor.name).where(Sponsor.id == sub.sponsor_id)) if sub.sponsor_id else None
    return RedeemResult(outcome=outcome, code=code, tier_code=tier.code, tier_name=tier.name,
                        daily_limit=tier.daily_limit, monthly_limit=tier.monthly_limit, starts_at=sub.starts_at,
                        ends_at=sub.ends_at, sponsor_name=sponsor_name, subscription_id=sub.id)


def redeem(session: Session, farmer_id: int, text: str, now: datetime) -> RedeemResult:
    """Redeem the code in `text` for the farmer. No subscription or a Trial: the new one is active now
    (the Trial is cancelled). Another active subscription: the new one is queued to start when it ends.
    Already one queued: `not_now`, and the code stays unused for later (the result says until when it is valid:
    it may expire before the waiting package starts)."""
    code = normalize_code(text)
    if code is None:
        return RedeemResult(RedeemOutcome.UNKNOWN)
    found = session.execute(
        select(SponsorCode.id, SponsorCode.status, SponsorCode.expires_at, SponsorCode.purchase_id)
        .where(SponsorCode.code == code)
    ).first()
    if found is None:
        return RedeemResult(RedeemOutcome.UNKNOWN, code=code)
    refusal = _refusal(session, found.id, found.status, found.expires_at, now)
    if refusal is not None:
        return RedeemResult(refusal, code=code)

    lock_farmer(session, farmer_id)  # one subscription change per farmer at a time
    waiting = queued_subscriptions(session, farmer_id)
    if waiting:
        return replace(_result(session, RedeemOutcome.NOT_NOW, code, waiting[0]), code_expires_at=found.expires_at)

    claimed = session.execute(
        update(SponsorCode)
        .where(SponsorCode.id == found.id, SponsorCode.status == CodeStatus.UNUSED.value, SponsorCode.expires_at > now)
        .values(status=CodeStatus.REDEEMED.value, redeemed_by_farmer_id=farmer_id, redeemed_at=now)
        .returning(SponsorCode.id)
        .execution_options(synchronize_session=False)
    ).first()
    if claimed is None:  # someone else changed it since we looked: say what it is now
        status, expires_at = session.execute(
            select(SponsorCode.status, SponsorCode.expires_at).where(SponsorCode.id == found.id)
        ).one()
        return RedeemResult(_refusal(session, found.id, status, expires_at, now) or RedeemOutcome.USED, code=code)

    purchase = session.get_one(SponsorPurchase, found.purchase_id)
    sub = add_subscription(session, farmer_id, purchase.tier_id, timedelta(days=purchase.subscription_days), now,
                           sponsor_id=purchase.sponsor_id, code_id=found.id)
    outcome = RedeemOutcome.OK if sub.status == SubscriptionStatus.ACTIVE.value else RedeemOutcome.QUEUED
    session.execute(
        update(SponsorCode).where(SponsorCode.id == found.id).values(subscription_id=sub.id)
        .execution_options(synchronize_session=False)
    )
    return _result(session, outcome, code, sub)
