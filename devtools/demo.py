"""Demo data for `make run` and `flask seed-demo` (development only, idempotent).

Tiers, a demo sponsor "Demo Tarım A.Ş." with one purchase of 20 M-tier codes, and an admin user
`admin@ziraai.local` whose random password is shown only when the user is created (or when a new one
is asked for with `--new-admin-password`): it is stored only as a hash.

`seed_demo_activity` (called by `seed_demo`) gives the staff console something to show on a fresh
machine: three farmers with conversations (messages in and out with their delivery states, one
delivery failed with Meta's code 131026), two of them on the sponsor's codes with completed
analyses, a second purchase of S-tier codes, and one pending purchase request. Other areas add their
own demo rows in their own functions.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from devtools.sponsor_demo import seed_sponsor_activity
from models import (
    Analysis,
    AnalysisStatus,
    CannedReply,
    CodeStatus,
    Conversation,
    Farmer,
    Message,
    MessageStatusEvent,
    Sponsor,
    SponsorCode,
    SponsorPurchase,
    StaffUser,
    SupportNote,
    utcnow,
)
from models.db import Database
from services import quota
from services.analysis_result import normalise, queryable_columns
from services.quota import seed_tiers
from services.sponsorship import create_purchase, create_sponsor, file_purchase_request, redeem
from services.staff_auth import create_staff_user, set_password

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
            create_staff_user(session, ADMIN_EMAIL, password, "admin", None, now)
        elif new_admin_password:
            password = secrets.token_urlsafe(12)
            set_password(session, admin, password, now)
            admin.active = True
        seed_demo_activity(session, sponsor.id, now)
        seed_sponsor_activity(session, sponsor.id, now)
        seed_support_demo(session, now)
        return DemoSeed(tiers_added, sponsor.id, sponsor_created, codes_created, unused, ADMIN_EMAIL, password)


# --- activity for the staff console ---------------------------------------------------------------

# (phone, name, sponsored?, the farmer's crop). Phone numbers of a range no real subscriber has, in the form
# every farmer's phone is stored in (E.164 with "+"), so the simulator reaches the same farmers.
DEMO_FARMERS = (("+905550000101", "Ayşe Demir", True, "domates"),
                ("+905550000102", "Mehmet Yılmaz", True, "biber"),
                ("+905550000103", "Fatma Kaya", False, None))
UNDELIVERABLE = (131026, "Message undeliverable")
ACTIVITY_TIER, ACTIVITY_CODES = "S", 10  # a second purchase, so the sponsor has two tiers to show


def _result(crop: str, score: int, concern: str) -> dict[str, Any]:
    """A small N8N result in the shape the pipeline reads (services.analysis_result)."""
    return {"Success": True,
            "PlantIdentification": {"Species": {"domates": "Solanum lycopersicum"}.get(crop, "Capsicum annuum"),
                                    "Confidence": 0.9},
            "HealthAssessment": {"VigorScore": score, "Severity": "orta" if score > 4 else "yüksek"},
            "Summary": {"OverallHealthScore": score, "PrimaryConcern": concern, "Prognosis": "iyi"},
            "recommendations": {"immediate": [{"action": "Hastalıklı yaprakları toplayın", "priority": "yüksek"}]},
            "FarmerFriendlySummary": f"{concern}. Hastalıklı yaprakları toplayıp imha edin."}


def _messages(session: Session, farmer: Farmer, start: datetime, n: int, *, fail_last: bool = False) -> None:
    """A short exchange: the farmer writes, the bot answers; outbound rows with their delivery states and
    the status events Meta sent for them."""
    script = (("in", "text", "Merhaba"), ("out", "text", "Merhaba! Ne yapmak istersiniz?"),
              ("in", "image", None), ("out", "text", "Fotoğrafınızı aldım, inceliyorum."),
              ("out", "text", "Sonuç hazır: ayrıntılar için Detaylar'a dokunun."))
    assert farmer.phone is not None
    for i, (direction, kind, text) in enumerate(script):
        at = start + timedelta(minutes=2 * i)
        wamid = f"wamid.demo.{farmer.phone}.{n}.{i}"
        last = i == len(script) - 1
        row = Message(direction=direction, wamid=wamid, phone=farmer.phone, farmer_id=farmer.id, type=kind,
                      text=text, media_id=f"demo-media-{farmer.id}-{n}" if kind == "image" else None,
                      mime_type="image/jpeg" if kind == "image" else None, created_at=at,
                      status="processed" if direction == "in" else "read", seq=i if direction == "out" else None,
                      attempts=1 if direction == "out" else 0)
        if direction == "out":
            if fail_last and last:
                row.status, row.error_code, row.error_title, row.failed_at = "failed", *UNDELIVERABLE, at
                farmer.unreachable_at = at  # what the error policy does with a 131026
                states: tuple[str, ...] = ("failed",)
            else:
                row.delivered_at, row.read_at = at + timedelta(seconds=5), at + timedelta(seconds=40)
                states = ("sent", "delivered", "read")
            for state in states:
                code, title = UNDELIVERABLE if state == "failed" else (None, None)
                session.add(MessageStatusEvent(wamid=wamid, status=state, recipient=farmer.phone, error_code=code,
                                               error_title=title, received_at=at + timedelta(seconds=5)))
        session.add(row)


def seed_demo_activity(session: Session, sponsor_id: int, now: datetime) -> bool:
    """Farmers, conversations, redemptions, analyses, a failed delivery, a second purchase and a pending
    request, once (False when the demo farmers are there already)."""
    if session.scalar(select(Farmer.id).where(Farmer.phone == DEMO_FARMERS[0][0])) is not None:
        return False
    create_purchase(session, sponsor_id, ACTIVITY_TIER, ACTIVITY_CODES, CODE_VALID_DAYS, SUBSCRIPTION_DAYS,
                    now - timedelta(days=20))
    file_purchase_request(session, sponsor_id, "L", 50, CODE_VALID_DAYS, SUBSCRIPTION_DAYS,
                          "Bahar kampanyası için", None, now - timedelta(hours=3))
    for index, (phone, name, sponsored, crop) in enumerate(DEMO_FARMERS):
        start = now - timedelta(days=6 - 2 * index, hours=index)
        farmer = Farmer(phone=phone, profile_name=name, locale="tr", consent_at=start, consent_version="v1",
                        last_inbound_at=start + timedelta(days=1), created_at=start)
        session.add(farmer)
        session.flush()
        session.add(Conversation(farmer_id=farmer.id, state="start", data={}, updated_at=start))
        _messages(session, farmer, start, 1)
        _messages(session, farmer, start + timedelta(days=1), 2, fail_last=not sponsored)
        if not sponsored or crop is None:
            continue
        code = session.scalars(select(SponsorCode.code).where(SponsorCode.sponsor_id == sponsor_id,
                                                              SponsorCode.status == CodeStatus.UNUSED.value)
                               .order_by(SponsorCode.id.desc())).first()
        assert code is not None
        redeem(session, farmer.id, code, start)
        for day, (score, concern) in enumerate(((4, "Erken yaprak yanıklığı"), (7, "Hafif besin eksikliği"))):
            at = start + timedelta(days=day, minutes=5)
            charged = quota.charge(session, farmer.id, at)
            raw = _result(crop, score, concern)
            analysis = Analysis(farmer_id=farmer.id, crop=crop, status=AnalysisStatus.COMPLETED.value,
                                media_id=f"demo-media-{farmer.id}-{day + 1}", received_at=at, queued_at=at,
                                completed_at=at + timedelta(seconds=40), result=raw, location_text="Antalya",
                                sponsor_id=charged.sponsor_id, subscription_id=charged.subscription_id,
                                charge_ledger_id=charged.ledger_id, **queryable_columns(normalise(raw)))
            session.add(analysis)
    session.flush()
    return True


# --- support: a taken conversation, a deletion request, notes, canned replies ------------------------

CANNED_REPLIES = (
    ("Karşılama", "Merhaba, ben ZiraAI destek ekibinden. Size nasıl yardımcı olabilirim?"),
    ("Fotoğraf ipucu", "Daha iyi bir sonuç için yaprağı gün ışığında, yakından ve net çekip tekrar gönderir misiniz?"),
    ("Kapanış", "Başka bir sorunuz olursa buradan yazabilirsiniz. Bol hasatlar dileriz!"),
)
TAKEN_OVER = DEMO_FARMERS[1][0]  # Mehmet Yılmaz asks about his peppers; the demo admin took over
DELETING = DEMO_FARMERS[2][0]  # Fatma Kaya asked for her data to be deleted


def seed_support_demo(session: Session, now: datetime) -> bool:
    """For the support pages, on the demo farmers: a question twenty minutes ago that the demo admin took over
    (with a note), a deletion request, and the canned replies; once (False when already there)."""
    taken = session.scalars(select(Farmer).where(Farmer.phone == TAKEN_OVER)).first()
    deleting = session.scalars(select(Farmer).where(Farmer.phone == DELETING)).first()
    if taken is None or deleting is None or session.scalar(
            select(SupportNote.id).where(SupportNote.farmer_id == taken.id).limit(1)) is not None:
        return False
    admin_id = session.scalar(select(StaffUser.id).where(StaffUser.email == ADMIN_EMAIL))
    lines = (("in", "Biberlerimde yaprak kıvrılması var, ne yapmalıyım?"),
             ("out", "Bu konuda sizi bir uzmanımıza bağlıyorum."), ("in", "Teşekkürler, bekliyorum."))
    for i, (direction, text) in enumerate(lines):
        at = now - timedelta(minutes=25 - 2 * i)
        session.add(Message(direction=direction, wamid=f"wamid.demo.support.{taken.id}.{i}", phone=TAKEN_OVER,
                            farmer_id=taken.id, type="text", text=text, created_at=at, attempts=1,
                            status="processed" if direction == "in" else "read",
                            seq=100 + i if direction == "out" else None,
                            read_at=at + timedelta(seconds=30) if direction == "out" else None))
    taken.last_inbound_at = now - timedelta(minutes=21)
    conv = session.scalars(select(Conversation).where(Conversation.farmer_id == taken.id)).first()
    if conv is None:
        conv = Conversation(farmer_id=taken.id, state="start", data={}, updated_at=now)
        session.add(conv)
    conv.taken_by, conv.taken_at, conv.taken_until = admin_id, now - timedelta(minutes=10), now + timedelta(hours=2)
    session.add(SupportNote(farmer_id=taken.id, author_id=admin_id, created_at=now - timedelta(minutes=9),
                            text="Biber üreticisi, Mersin. Yaprak kıvrılması için ziraat mühendisine danışılacak."))
    deleting.deletion_requested_at = max(deleting.created_at + timedelta(hours=1), now - timedelta(days=12))
    if session.scalar(select(CannedReply.id).limit(1)) is None:
        session.add_all([CannedReply(title=title, text=text, updated_by=admin_id, updated_at=now)
                         for title, text in CANNED_REPLIES])
    session.flush()
    return True
