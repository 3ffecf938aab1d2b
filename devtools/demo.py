"""Demo data for `make run` and `flask seed-demo` (development only, idempotent).

Tiers, a demo sponsor "Demo Tarım A.Ş." with one purchase of 20 M-tier codes, and an admin user
`admin@ziraai.local` whose random password is shown only when the user is created (or when a new one
is asked for with `--new-admin-password`): it is stored only as a hash.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from admin.auth import create_staff_user, hash_password
from models import (
    CannedReply,
    CodeStatus,
    Conversation,
    Farmer,
    Message,
    RefreshToken,
    Sponsor,
    SponsorCode,
    SponsorPurchase,
    StaffUser,
    SupportNote,
    utcnow,
)
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
        seed_support_demo(session, now)
        return DemoSeed(tiers_added, sponsor.id, sponsor_created, codes_created, unused, ADMIN_EMAIL, password)


# --- support: a taken conversation, a deletion request, notes, canned replies ------------------------

SUPPORT_FARMERS = (("+905550000201", "Hasan Çelik"), ("+905550000202", "Zeynep Arslan"))
CANNED_REPLIES = (
    ("Karşılama", "Merhaba, ben ZiraAI destek ekibinden. Size nasıl yardımcı olabilirim?"),
    ("Fotoğraf ipucu", "Daha iyi bir sonuç için yaprağı gün ışığında, yakından ve net çekip tekrar gönderir misiniz?"),
    ("Kapanış", "Başka bir sorunuz olursa buradan yazabilirsiniz. Bol hasatlar dileriz!"),
)


def seed_support_demo(session: Session, now: datetime) -> bool:
    """For the support pages: a conversation taken over by the demo admin (with a note), a farmer who asked
    for their data to be deleted twelve days ago, and the canned replies; once (False when already there)."""
    if session.scalar(select(Farmer.id).where(Farmer.phone == SUPPORT_FARMERS[0][0])) is not None:
        return False
    admin_id = session.scalar(select(StaffUser.id).where(StaffUser.email == ADMIN_EMAIL))
    taken_start, deleting_start = now - timedelta(hours=2), now - timedelta(days=12)
    taken = Farmer(phone=SUPPORT_FARMERS[0][0], profile_name=SUPPORT_FARMERS[0][1], locale="tr",
                   consent_at=taken_start, consent_version="v1", last_inbound_at=now - timedelta(minutes=20),
                   created_at=taken_start)
    deleting = Farmer(phone=SUPPORT_FARMERS[1][0], profile_name=SUPPORT_FARMERS[1][1], locale="tr",
                      consent_at=deleting_start, consent_version="v1", last_inbound_at=deleting_start,
                      deletion_requested_at=deleting_start + timedelta(minutes=3), created_at=deleting_start)
    session.add_all([taken, deleting])
    session.flush()
    script = ((taken, taken_start, (("in", "Merhaba"), ("out", "Merhaba! Ne yapmak istersiniz?"),
                                    ("in", "Biberlerimde yaprak kıvrılması var, ne yapmalıyım?"),
                                    ("out", "Bu konuda sizi bir uzmanımıza bağlıyorum."),
                                    ("in", "Teşekkürler, bekliyorum."))),
              (deleting, deleting_start, (("in", "Merhaba"), ("out", "Merhaba! Ne yapmak istersiniz?"),
                                          ("in", "verilerimi sil"),
                                          ("out", "Verilerinizin silinmesi talebiniz kaydedildi."))))
    for farmer, start, lines in script:
        assert farmer.phone is not None
        for i, (direction, text) in enumerate(lines):
            at = start + timedelta(minutes=i) if farmer is deleting else now - timedelta(minutes=25 - i)
            session.add(Message(direction=direction, wamid=f"wamid.demo.support.{farmer.id}.{i}", phone=farmer.phone,
                                farmer_id=farmer.id, type="text", text=text, created_at=at, attempts=1,
                                status="processed" if direction == "in" else "read",
                                seq=i if direction == "out" else None,
                                read_at=at + timedelta(seconds=30) if direction == "out" else None))
    session.add(Conversation(farmer_id=taken.id, state="start", data={}, updated_at=now, taken_by=admin_id,
                             taken_at=now - timedelta(minutes=10), taken_until=now + timedelta(hours=2)))
    session.add(SupportNote(farmer_id=taken.id, author_id=admin_id, created_at=now - timedelta(minutes=9),
                            text="Biber üreticisi, Mersin. Yaprak kıvrılması için ziraat mühendisine danışılacak."))
    if session.scalar(select(CannedReply.id).limit(1)) is None:
        session.add_all([CannedReply(title=title, text=text, updated_by=admin_id, updated_at=now)
                         for title, text in CANNED_REPLIES])
    session.flush()
    return True
