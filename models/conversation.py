from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class Conversation(Base):
    """Where a farmer is in the conversation; lives in the database so any worker can continue it."""

    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(primary_key=True)
    farmer_id: Mapped[int] = mapped_column(ForeignKey("farmers.id", ondelete="CASCADE"), unique=True)
    state: Mapped[str] = mapped_column(String(40), default="start", server_default="start")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    expires_at: Mapped[datetime | None]
    last_message_id: Mapped[int | None]
    # Human takeover (services/takeover.py): while `taken_until` is in the future and `taken_by` is set,
    # the bot stays silent for this farmer and a support person answers.
    taken_by: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    taken_at: Mapped[datetime | None]
    taken_until: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
