"""What Meta told us about our templates, numbers and account (`services.whatsapp_health` keeps them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class WhatsAppTemplate(Base):
    """The template registry: one row per template and language, as Meta last reported it. A template
    without a row has never been reported on and may be sent."""

    __tablename__ = "whatsapp_templates"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    language: Mapped[str] = mapped_column(String(20), primary_key=True)
    status: Mapped[str] = mapped_column(String(30))
    quality: Mapped[str] = mapped_column(String(20), default="UNKNOWN")
    category: Mapped[str | None] = mapped_column(String(30))
    reason: Mapped[str | None] = mapped_column(String(300))
    # When Meta dated each attribute's latest word: an older event of that attribute changes nothing,
    # whatever Meta said of the others since (it may deliver out of order).
    status_at: Mapped[datetime] = mapped_column(default=utcnow)
    quality_at: Mapped[datetime] = mapped_column(default=utcnow)
    category_at: Mapped[datetime] = mapped_column(default=utcnow)


class WhatsAppAccountState(Base):
    """The latest standing of one thing Meta reports on: `account`, `capabilities`, or `number:<display
    number>`, with the details of the event that set it."""

    __tablename__ = "whatsapp_account_state"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    status: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict[str, Any] | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WhatsAppAccountEvent(Base):
    """Every account, template and number event, kept as received (the history behind the state)."""

    __tablename__ = "whatsapp_account_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    field: Mapped[str] = mapped_column(String(60))
    subject: Mapped[str] = mapped_column(String(230))  # template name:language, number, or `account`
    event: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict[str, Any] | None]
    meta_time: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
