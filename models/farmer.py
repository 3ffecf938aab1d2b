from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class Farmer(Base):
    """A WhatsApp user, keyed by an E.164 phone number (`+905321234567`)."""

    __tablename__ = "farmers"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)
    profile_name: Mapped[str | None] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(8), default="tr", server_default="tr")
    consent_at: Mapped[datetime | None]
    consent_version: Mapped[str | None] = mapped_column(String(20))
    opted_out_at: Mapped[datetime | None]
    deletion_requested_at: Mapped[datetime | None]
    last_inbound_at: Mapped[datetime | None]
    # Set from Meta's asynchronous failures (and `user_preferences`); see services/whatsapp/outbox.py.
    unreachable_at: Mapped[datetime | None]  # 131026: not on WhatsApp / cannot receive; cleared when they write
    marketing_opt_out_at: Mapped[datetime | None]  # 131050 or `marketing_messages: stop`; cleared by `resume`
    marketing_paused_until: Mapped[datetime | None]  # 131049 / 130472: no marketing message before this
    paced_until: Mapped[datetime | None]  # 131056: at most one message per PACE_SECONDS until this
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def has_consented(self) -> bool:
        return self.consent_at is not None

    @property
    def opted_out(self) -> bool:
        return self.opted_out_at is not None

    @property
    def accepts_proactive(self) -> bool:
        """May we write first (a sponsor's message)? Not after `DUR`, nor after a deletion request, nor
        to a number Meta reports undeliverable, nor after the farmer stopped marketing messages in WhatsApp."""
        return (self.opted_out_at is None and self.deletion_requested_at is None and self.unreachable_at is None
                and self.marketing_opt_out_at is None)
