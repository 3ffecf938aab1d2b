"""Tiers, subscriptions and usage: what a farmer may do, and what they have done, per period."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, Numeric, String, true
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow

LedgerId = BigInteger().with_variant(Integer, "sqlite")


class SubscriptionStatus(enum.StrEnum):
    """queued -> active -> expired; a Trial replaced by a redeemed code becomes cancelled."""

    QUEUED = "queued"
    ACTIVE = "active"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class LedgerKind(enum.StrEnum):
    CHARGE = "charge"
    REFUND = "refund"


class Tier(Base):
    """A package: how many analyses a day and a month. Seeded by migration 0002; editable by admins."""

    __tablename__ = "tiers"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(10), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    daily_limit: Mapped[int]
    monthly_limit: Mapped[int]
    price_try: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    default_days: Mapped[int] = mapped_column(default=30, server_default="30")
    active: Mapped[bool] = mapped_column(default=True, server_default=true())


class Subscription(Base):
    """One period of a tier for one farmer. At most one is `active` and at most one `queued` per farmer."""

    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_farmer_status", "farmer_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    farmer_id: Mapped[int] = mapped_column(ForeignKey("farmers.id", ondelete="CASCADE"))
    tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id"))
    status: Mapped[str] = mapped_column(String(20))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    sponsor_id: Mapped[int | None] = mapped_column(ForeignKey("sponsors.id", ondelete="SET NULL"), index=True)
    code_id: Mapped[int | None] = mapped_column(ForeignKey("sponsor_codes.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsageCounter(Base):
    """Analyses used by a subscription in one period (`D2026-11-22`, `M2026-11`, Istanbul time).
    A new period is a new row, so nothing ever has to be reset."""

    __tablename__ = "usage_counters"

    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"),
                                                 primary_key=True)
    period_key: Mapped[str] = mapped_column(String(12), primary_key=True)
    used: Mapped[int] = mapped_column(default=0, server_default="0")


class UsageLedger(Base):
    """One row per charge and per refund: the audit trail support reads. A refund names its charge
    (`refund_of`, unique), so a charge is refunded at most once."""

    __tablename__ = "usage_ledger"
    __table_args__ = (Index("ix_usage_ledger_farmer_created", "farmer_id", "created_at"),)

    id: Mapped[int] = mapped_column(LedgerId, primary_key=True)
    farmer_id: Mapped[int] = mapped_column(ForeignKey("farmers.id", ondelete="CASCADE"))
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True)
    # analyses.charge_ledger_id points back here: this side is added after both tables exist.
    analysis_id: Mapped[int | None] = mapped_column(
        ForeignKey("analyses.id", ondelete="SET NULL", use_alter=True), index=True
    )
    kind: Mapped[str] = mapped_column(String(10))
    day_key: Mapped[str] = mapped_column(String(12))
    month_key: Mapped[str] = mapped_column(String(12))
    refund_of: Mapped[int | None] = mapped_column(LedgerId, ForeignKey("usage_ledger.id", ondelete="CASCADE"),
                                                  unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
