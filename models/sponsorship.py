"""Sponsors (companies), their purchases, the codes a purchase produces, and their purchase requests."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class CodeStatus(enum.StrEnum):
    """unused -> redeemed | expired | revoked; every change is one conditional UPDATE."""

    UNUSED = "unused"
    REDEEMED = "redeemed"
    EXPIRED = "expired"
    REVOKED = "revoked"


class Sponsor(Base):
    __tablename__ = "sponsors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    logo_url: Mapped[str | None] = mapped_column(String(500))
    contact_email: Mapped[str | None] = mapped_column(String(254))
    contact_phone: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SponsorPurchase(Base):
    """`quantity` codes of one tier; each code is valid `code_valid_days` and gives `subscription_days`."""

    __tablename__ = "sponsor_purchases"

    id: Mapped[int] = mapped_column(primary_key=True)
    sponsor_id: Mapped[int] = mapped_column(ForeignKey("sponsors.id"), index=True)
    tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id"))
    quantity: Mapped[int]
    code_valid_days: Mapped[int]
    subscription_days: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SponsorCode(Base):
    """One code such as `AGRI-7KQ3-M9XP`; `tier_id` and `sponsor_id` are copied from the purchase so
    a sponsor's lists and statistics need no join."""

    __tablename__ = "sponsor_codes"
    __table_args__ = (Index("ix_sponsor_codes_sponsor_status", "sponsor_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    purchase_id: Mapped[int] = mapped_column(ForeignKey("sponsor_purchases.id"), index=True)
    sponsor_id: Mapped[int] = mapped_column(ForeignKey("sponsors.id"))
    tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id"))
    status: Mapped[str] = mapped_column(String(10), default=CodeStatus.UNUSED.value,
                                        server_default=CodeStatus.UNUSED.value)
    expires_at: Mapped[datetime]
    redeemed_by_farmer_id: Mapped[int | None] = mapped_column(ForeignKey("farmers.id", ondelete="SET NULL"),
                                                              index=True)
    redeemed_at: Mapped[datetime | None]
    # subscriptions.code_id points back here: this side is added after both tables exist.
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="SET NULL", use_alter=True)
    )
    revoked_at: Mapped[datetime | None]
    # The first CSV export that held it: the code has been handed out ("distributed" on the dashboard).
    exported_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PurchaseRequestStatus(enum.StrEnum):
    """pending -> approved (the purchase and its codes are created then) | rejected (with a reason)."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class PurchaseRequest(Base):
    """A sponsor user's request for a purchase. Purchases are money, so only an admin turns one into a
    purchase (`purchase_id`), after payment; or rejects it, saying why."""

    __tablename__ = "purchase_requests"
    __table_args__ = (Index("ix_purchase_requests_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sponsor_id: Mapped[int] = mapped_column(ForeignKey("sponsors.id"), index=True)
    tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id"))
    quantity: Mapped[int]
    code_valid_days: Mapped[int]
    subscription_days: Mapped[int]
    note: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(10), default=PurchaseRequestStatus.PENDING.value,
                                        server_default=PurchaseRequestStatus.PENDING.value)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None]
    rejection_reason: Mapped[str | None] = mapped_column(String(500))
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("sponsor_purchases.id"), unique=True)
