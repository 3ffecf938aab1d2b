"""A plant analysis as the conversation submits it; the analysis pipeline (services.analysis) moves it forward."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Leased, utcnow


class AnalysisStatus(enum.StrEnum):
    """received -> queued -> processing -> completed | failed."""

    RECEIVED = "received"
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class Analysis(Leased, Base):
    """One photo submitted for analysis. `subscription_id` / `sponsor_id` record who paid at submission
    time (attribution), `charge_ledger_id` the quota charge to refund if we fail. A `processing` analysis
    carries the lease of the worker running it."""

    __tablename__ = "analyses"
    __table_args__ = (
        Index("ix_analyses_farmer_created", "farmer_id", "created_at"),
        Index("ix_analyses_sponsor_created", "sponsor_id", "created_at"),
        Index("ix_analyses_status_lease", "status", "lease_until"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    farmer_id: Mapped[int] = mapped_column(ForeignKey("farmers.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("messages.id", ondelete="SET NULL"), index=True
    )
    media_id: Mapped[str | None] = mapped_column(String(100))  # the first photo (the one the farmer sent first)
    # Every photo of the submission, first = media_id (an album: up to five). None on older rows: [media_id].
    media_ids: Mapped[list[Any] | None]
    crop: Mapped[str | None] = mapped_column(String(100))
    notes: Mapped[str | None] = mapped_column(Text)
    location_text: Mapped[str | None] = mapped_column(String(300))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20), default=AnalysisStatus.RECEIVED.value,
                                        server_default=AnalysisStatus.RECEIVED.value)
    failure_reason: Mapped[str | None] = mapped_column(String(300))
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id", ondelete="SET NULL"),
                                                        index=True)
    sponsor_id: Mapped[int | None] = mapped_column(ForeignKey("sponsors.id", ondelete="SET NULL"))
    charge_ledger_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("usage_ledger.id", ondelete="SET NULL")
    )
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None]
    processing_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any] | None]  # the raw JSON N8N returned, kept whole for support
    health_score: Mapped[int | None]  # 1-10
    primary_concern: Mapped[str | None] = mapped_column(String(300))
    species: Mapped[str | None] = mapped_column(String(200))
    severity: Mapped[str | None] = mapped_column(String(50))
    prognosis: Mapped[str | None] = mapped_column(String(100))
    diseases: Mapped[list[Any] | None]
    pests: Mapped[list[Any] | None]
    urgent: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    token_usage: Mapped[int | None]
    cost_usd: Mapped[float | None] = mapped_column(Float)
    image_key: Mapped[str | None] = mapped_column(String(200))  # optimised JPEG sent to N8N (the first photo)
    original_key: Mapped[str | None] = mapped_column(String(200))  # the farmer's photo, private, for support
    # Every photo's keys in media_ids order (first = image_key / original_key). None on older rows.
    image_keys: Mapped[list[Any] | None]
    original_keys: Mapped[list[Any] | None]
    n8n_requested_at: Mapped[datetime | None]
    delay_notice_at: Mapped[datetime | None]  # when the farmer was told the result is late
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
