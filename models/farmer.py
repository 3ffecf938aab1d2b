from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow

USER_ID_MAX = 150  # two-letter country, a dot, up to 128 alphanumerics (parent ids add `ENT.`)


class Farmer(Base):
    """A WhatsApp user: known by an E.164 phone number (`+905321234567`), by Meta's business-scoped user id
    (`TR.1234...`, when the phone is withheld behind a username), or both. Each alias is unique, so one
    person is one row; a message that shows both joins them (`services.farmer_identity`)."""

    __tablename__ = "farmers"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    user_id: Mapped[str | None] = mapped_column(String(USER_ID_MAX), unique=True)
    parent_user_id: Mapped[str | None] = mapped_column(String(USER_ID_MAX))
    username: Mapped[str | None] = mapped_column(String(100))
    our_number_id: Mapped[str | None] = mapped_column(String(30))  # our phone_number_id they last wrote to
    profile_name: Mapped[str | None] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(8), default="tr", server_default="tr")
    consent_at: Mapped[datetime | None]
    consent_version: Mapped[str | None] = mapped_column(String(20))
    opted_out_at: Mapped[datetime | None]
    deletion_requested_at: Mapped[datetime | None]
    human_requested_at: Mapped[datetime | None]  # asked for a person; cleared when support takes over or replies
    deleted_at: Mapped[datetime | None]  # personal data removed (services/deletion.py); the row stays for the ledger
    last_inbound_at: Mapped[datetime | None]
    # Set from Meta's failures (and `user_preferences`); see services/whatsapp/failures.py.
    unreachable_at: Mapped[datetime | None]  # 131026: not on WhatsApp / cannot receive; cleared when they write
    marketing_opt_out_at: Mapped[datetime | None]  # 131050 or `marketing_messages: stop`; cleared by `resume`
    marketing_preference_at: Mapped[datetime | None]  # when the last `user_preferences` event applied was made
    marketing_paused_until: Mapped[datetime | None]  # 131049 / 130472: no marketing message before this
    paced_until: Mapped[datetime | None]  # 131056: at most one message per PACE_SECONDS until this
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def address(self) -> str:
        """Where replies go: the phone when known (Meta prefers it), else the user id."""
        address = self.phone or self.user_id
        if address is None:
            raise ValueError(f"farmer {self.id} has neither a phone nor a user id")
        return address

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
