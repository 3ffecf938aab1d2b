"""Staff accounts of the admin API, their refresh tokens and the audit log of what they did."""

from __future__ import annotations

import enum
import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, true
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow

_BigId = BigInteger().with_variant(Integer, "sqlite")


class StaffRole(enum.StrEnum):
    ADMIN = "admin"
    SPONSOR = "sponsor"
    SUPPORT = "support"


class StaffUser(Base):
    """Someone who logs in to the admin API. A `sponsor` user is bound to one sponsor."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-cased
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(10))
    sponsor_id: Mapped[int | None] = mapped_column(ForeignKey("sponsors.id", ondelete="SET NULL"), index=True)
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    logins_ended: Mapped[int] = mapped_column(default=0, server_default="0")  # `staff_auth.end_every_login`

    @property
    def login_fingerprint(self) -> str:
        """Changes whenever the password does (a new hash has a new salt, even for the same password) and
        whenever every login is ended (`logins_ended`): console sessions and API access tokens hold it, so
        those made before stop matching. Never ended: the password hash alone, as before that count existed."""
        basis = f"{self.password_hash}#{self.logins_ended}" if self.logins_ended else self.password_hash
        return hashlib.sha256(basis.encode()).hexdigest()[:32]


class RefreshToken(Base):
    """One opaque refresh token (only its SHA-256 is stored). Tokens rotated from one login share a
    `family_id`: presenting a used token revokes the whole family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditLog(Base):
    """Who read personal data or changed state, which record, when and from where."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_record", "record_type", "record_id"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(String(100))
    record_type: Mapped[str | None] = mapped_column(String(50))
    record_id: Mapped[str | None] = mapped_column(String(100))
    ip: Mapped[str | None] = mapped_column(String(45))
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    details: Mapped[dict[str, Any] | None]
