"""Demo data for `make run` and `flask seed-demo` (development only, idempotent).

Tiers, a demo sponsor "Demo Tarım A.Ş." with one purchase of 20 M-tier codes, and an admin user
`admin@ziraai.local` whose random password is shown only when the user is created (or when a new one
is asked for with `--new-admin-password`): it is stored only as a hash.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update

from admin.auth import create_staff_user, hash_password
from models import CodeStatus, RefreshToken, Sponsor, SponsorCode, SponsorPurchase, StaffUser, utcnow
from models.db import Database
from services.quota import seed_tiers
from services.sponsorship import create_purchase, create_sponsor

SPONSOR_NAME = "Demo Tarım A.Ş."
ADMIN_EMAIL = "admin@ziraai.local"
CODE_TIER = "M"
CODE_QUANTITY = 20
CODE_VALID_DAYS = 365
SUBSCRIPTION_DAYS = 30
CODES_SHOWN = 3


@dataclass(frozen=True)
class DemoSeed:
    tiers_added: int
    sponsor_id: int
    sponsor_created: bool
    codes_created: int
    unused_codes: list[str] = field(default_factory=list)  # a few, to try in the chat
    admin_email: str = ADMIN_EMAIL
    admin_password: str | None = None  # only when created or replaced just now

    def lines(self) -> list[str]:
        """What the operator reads after seeding (the password only when it was just set)."""
        lines = [
            f"tiers: {self.tiers_added} added" if self.tiers_added else "tiers: already there",
            f"sponsor {SPONSOR_NAME} (id {self.sponsor_id}): "
            + (f"{self.codes_created} {CODE_TIER}-tier codes created" if self.codes_created else "already there"),
        ]
        if self.unused_codes:
            lines.append("unused demo codes: " + "  ".join(self.unused_codes))
        if self.admin_password:
            lines.append(f"admin login: {self.admin_email} / {self.admin_password}  (shown once: save it)")
        else:
            lines.append(f"admin login: {self.admin_email} (password shown when it was created; "
                         "`flask --app app:create_app seed-demo --new-admin-password` sets a new one)")
        return lines


def seed_demo(db: Database, now: datetime | None = None, *, new_admin_password: bool = False) -> DemoSeed:
    """Create what is missing, in one transaction; a second run changes nothing (unless asked for a password)."""
    now = now or utcnow()
    with db.session() as session, session.begin():
        tiers_added = seed_tiers(session)
        sponsor = session.scalars(select(Sponsor).where(Sponsor.name == SPONSOR_NAME).order_by(Sponsor.id)).first()
        sponsor_created = sponsor is None
        if sponsor is None:
            sponsor = create_sponsor(session, SPONSOR_NAME, now, contact_email="demo@ziraai.local")
        codes_created = 0
        has_purchase = session.scalar(select(SponsorPurchase.id).where(SponsorPurchase.sponsor_id == sponsor.id)
                                      .limit(1)) is not None
        if not has_purchase:
            _, codes = create_purchase(session, sponsor.id, CODE_TIER, CODE_QUANTITY, CODE_VALID_DAYS,
                                       SUBSCRIPTION_DAYS, now)
            codes_created = len(codes)
        unused = list(session.scalars(
            select(SponsorCode.code).where(SponsorCode.sponsor_id == sponsor.id,
                                           SponsorCode.status == CodeStatus.UNUSED.value,
                                           SponsorCode.expires_at > now)
            .order_by(SponsorCode.id).limit(CODES_SHOWN)))

        password: str | None = None
        admin = session.scalars(select(StaffUser).where(StaffUser.email == ADMIN_EMAIL)).first()
        if admin is None:
            password = secrets.token_urlsafe(12)
            create_staff_user(session, ADMIN_EMAIL, password, "admin")
        elif new_admin_password:
            password = secrets.token_urlsafe(12)
            admin.password_hash = hash_password(password)
            admin.active = True
            session.execute(update(RefreshToken).where(RefreshToken.user_id == admin.id,
                                                       RefreshToken.revoked_at.is_(None)).values(revoked_at=now))
        return DemoSeed(tiers_added, sponsor.id, sponsor_created, codes_created, unused, ADMIN_EMAIL, password)
