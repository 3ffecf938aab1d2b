from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, Leased, utcnow


class Direction(enum.StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"


class MessageStatus(enum.StrEnum):
    """Inbound: received -> processed | failed.
    Outbound: pending -> accepted -> sent -> delivered -> read, or failed."""

    RECEIVED = "received"
    PROCESSED = "processed"
    PENDING = "pending"
    ACCEPTED = "accepted"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


# Outbound statuses only ever move forward; Meta may deliver `read` before `delivered`.
OUTBOUND_RANK = {
    MessageStatus.PENDING: 0,
    MessageStatus.ACCEPTED: 1,
    MessageStatus.SENT: 2,
    MessageStatus.DELIVERED: 3,
    MessageStatus.READ: 4,
    MessageStatus.FAILED: 5,
}
class PhotoState(enum.StrEnum):
    """A farmer's photo kept for support during a takeover (`messages.photo_state`; None: not kept, as a
    photo outside a takeover: only its analysis downloads it). waiting -> stored | not_downloaded | rejected;
    stored -> purged when the retention purge deletes the copy."""

    WAITING = "waiting"
    STORED = "stored"
    NOT_DOWNLOADED = "not_downloaded"
    REJECTED = "rejected"
    PURGED = "purged"


# A message Meta reported delivered or read reached the farmer: a later `failed` for it is kept as an event only.
REACHED_FARMER = (MessageStatus.DELIVERED.value, MessageStatus.READ.value)


class Message(Leased, Base):
    """One WhatsApp message, in or out: the log support reads and the outbox senders send from.

    Outbound rows leave in `seq` order per recipient (`phone`); `next_attempt_at` is when a pending one
    may be tried (again). The lease marks an inbound message being handled or an outbound one being sent."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_phone_created", "phone", "created_at"),
        Index("ix_messages_unprocessed", "direction", "status", "created_at"),
        Index("ix_messages_phone_seq", "phone", "seq"),
        # Partial: almost no message has a photo kept for support (the purge and the sweeper look these up).
        Index("ix_messages_photo_key", "photo_key", postgresql_where=sql_text("photo_key IS NOT NULL"),
              sqlite_where=sql_text("photo_key IS NOT NULL")),
        Index("ix_messages_photo_waiting", "id", postgresql_where=sql_text("photo_state = 'waiting'"),
              sqlite_where=sql_text("photo_state = 'waiting'")),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    direction: Mapped[str] = mapped_column(String(3))
    wamid: Mapped[str | None] = mapped_column(String(200), unique=True)
    phone: Mapped[str] = mapped_column(String(150))  # the farmer's phone, or their user id when that is all we know
    phone_number_id: Mapped[str | None] = mapped_column(String(30))  # ours: written to (in), sent from (out)
    farmer_id: Mapped[int | None] = mapped_column(ForeignKey("farmers.id", ondelete="SET NULL"), index=True)
    type: Mapped[str] = mapped_column(String(30))
    text: Mapped[str | None] = mapped_column(Text)
    media_id: Mapped[str | None] = mapped_column(String(100))
    mime_type: Mapped[str | None] = mapped_column(String(100))
    template_name: Mapped[str | None] = mapped_column(String(100))
    template_params: Mapped[list[Any] | None]
    context_wamid: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[dict[str, Any] | None]  # inbound: Meta's message object; outbound: the body we POST
    fallback: Mapped[dict[str, Any] | None]  # outbound: the template to send instead if outside 24 h (131047)
    # outbound: the failed row this one takes the place of (its fallback template, or a resend after an
    # asynchronous throughput error); unique, so a failure is answered once however often Meta reports it
    replaces_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("messages.id", ondelete="SET NULL"), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    error_code: Mapped[int | None]
    error_title: Mapped[str | None] = mapped_column(String(300))
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    seq: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))  # outbound: order per phone
    next_attempt_at: Mapped[datetime | None]  # outbound pending: not before this
    analysis_id: Mapped[int | None] = mapped_column(index=True)  # FK added with the analyses table
    # outbound: the support person who wrote it in the console (None: the bot)
    staff_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"))
    meta_timestamp: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    # inbound photo sent during a takeover: what became of the copy kept for support (`PhotoState`), and the
    # optimised copy's storage key once stored
    photo_state: Mapped[str | None] = mapped_column(String(20))
    photo_key: Mapped[str | None] = mapped_column(String(200))


class MessageStatusEvent(Base):
    """Every status webhook, kept as received; `(wamid, status)` makes a re-delivery a no-op."""

    __tablename__ = "message_status_events"
    __table_args__ = (UniqueConstraint("wamid", "status", name="uq_message_status_events_wamid_status"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    wamid: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str | None] = mapped_column(String(20))
    meta_timestamp: Mapped[datetime | None]
    error_code: Mapped[int | None]
    error_title: Mapped[str | None] = mapped_column(String(300))
    # Meta's `pricing` of the message, for cost reports (usually on `sent`, sometimes on later statuses)
    pricing_billable: Mapped[bool | None] = mapped_column(Boolean)
    pricing_model: Mapped[str | None] = mapped_column(String(30))
    pricing_category: Mapped[str | None] = mapped_column(String(50))
    pricing_type: Mapped[str | None] = mapped_column(String(50))
    payload: Mapped[dict[str, Any] | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookError(Base):
    """An `errors[]` entry Meta put in a webhook's value (next to messages or statuses, or alone): a
    problem of the app or account, not of one message. Kept and counted, never taken for a shape we
    did not understand."""

    __tablename__ = "webhook_errors"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    code: Mapped[int | None]
    title: Mapped[str | None] = mapped_column(String(300))
    details: Mapped[str | None] = mapped_column(Text)
    phone_number_id: Mapped[str | None] = mapped_column(String(50))
    payload: Mapped[Any] = mapped_column(JSONType, nullable=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class UnhandledWebhook(Base):
    """A signed body (or part of one) we could not understand: kept for support, never lost."""

    __tablename__ = "unhandled_webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    reason: Mapped[str] = mapped_column(String(300))
    payload: Mapped[Any] = mapped_column(JSONType, nullable=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
