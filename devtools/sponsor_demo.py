"""Demo activity for a sponsor's console pages (development only, idempotent): farmers who redeemed its
codes over the last twelve weeks, and the analyses those codes paid for, with crops, provinces and
diseases, so the dashboard's charts and the analyses list have something to show.

The codes come from purchases of S, M, L and XL (one each, bought twelve weeks ago), so the analyses
page shows every tier's view side by side; one farmer has opted out of messages. Seeded with a fixed
random generator: the same figures on every machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.crops import find_crop
from models import Analysis, AnalysisStatus, Farmer
from services.sponsorship import create_purchase, redeem

DEMO_PHONE_PREFIX = "+9055500010"  # + two digits: the demo farmers' numbers (no real line starts 555 0001)
WEEKS = 12
CODES_PER_TIER = 10  # one purchase of each tier, S to XL
# (name, province with a district, tier of the code they redeemed); an S code's analyses count in totals only.
FARMERS: tuple[tuple[str, str, str], ...] = (
    ("Ayşe Demir", "Kumluca, Antalya", "XL"),
    ("Mehmet Kaya", "Serik, Antalya", "L"),
    ("Fatma Şahin", "Selçuklu, Konya", "L"),
    ("Ali Yıldız", "Ereğli, Konya", "M"),
    ("Zeynep Arslan", "Menemen, İzmir", "M"),
    ("Hasan Çelik", "Ödemiş, İzmir", "L"),
    ("Elif Koç", "Merkez, Mersin", "M"),
    ("Mustafa Aydın", "Tarsus, Mersin", "XL"),
    ("Emine Öztürk", "Akşehir, Konya", "S"),
    ("İbrahim Kurt", "Nilüfer, Bursa", "L"),
)
# What the demo farmers answered to the crop question; stored as the bot stores it (`crop_as_stored`).
CROPS: tuple[str, ...] = ("domates", "biber", "buğday", "üzüm", "salatalık", "patates")
DISEASES: tuple[str, ...] = ("Erken yanıklık", "Külleme", "Mildiyö", "Pas", "Kurşuni küf", "Yaprak lekesi")
PESTS: tuple[str, ...] = ("Yaprak biti", "Beyaz sinek", "Kırmızı örümcek")


def crop_as_stored(typed: str) -> str:
    """A crop as the bot stores what a farmer typed: a known crop's key (`buğday` -> `bugday`), any other name as
    typed (`patates`), so the dashboard names the demo's crops in the page's language and its filter finds them."""
    return find_crop(typed) or typed


@dataclass(frozen=True)
class SponsorDemo:
    farmers: int
    analyses: int

    def lines(self) -> list[str]:
        if not self.farmers:
            return ["sponsor demo activity: already there"]
        return [f"sponsor demo activity: {self.farmers} farmers, {self.analyses} analyses over {WEEKS} weeks"]


def _result(rng: random.Random, crop: str, diseases: list[str]) -> dict[str, Any]:
    return {"plant_identification": {"species": crop},
            "summary": {"overall_health_score": rng.randint(3, 9)},
            "recommendations": {"immediate": [{"action": "Bakırlı ilaç uygula", "priority": "high"}] if diseases
                                else [],
                                "preventive": ["Sulamayı sabah yap", "Yaprakları kuru tut"]}}


def seed_sponsor_activity(session: Session, sponsor_id: int, now: datetime) -> SponsorDemo:
    """Add the demo farmers, their redemptions and their analyses to `sponsor_id` in the caller's
    transaction, once (a second run, which finds the first demo farmer, changes nothing). `seed_demo`
    calls it after `seed_demo_activity`."""
    rng = random.Random(7)
    start = now - timedelta(weeks=WEEKS)
    if session.scalar(select(Farmer.id).where(Farmer.phone == f"{DEMO_PHONE_PREFIX}00")) is not None:
        return SponsorDemo(0, 0)
    codes: dict[str, list[str]] = {}
    for tier in ("S", "M", "L", "XL"):
        _, bought = create_purchase(session, sponsor_id, tier, CODES_PER_TIER, 365, 120, start)
        codes[tier] = sorted(bought)
    analyses = 0
    for i, (name, place, tier) in enumerate(FARMERS):
        redeemed_at = start + timedelta(days=rng.randint(1, 7 * WEEKS - 14), hours=rng.randint(7, 18))
        farmer = Farmer(phone=f"{DEMO_PHONE_PREFIX}{i:02d}", profile_name=name, created_at=redeemed_at,
                        updated_at=redeemed_at, consent_at=redeemed_at, consent_version="demo",
                        last_inbound_at=redeemed_at,
                        opted_out_at=redeemed_at if i == len(FARMERS) - 1 else None)
        session.add(farmer)
        session.flush()
        result = redeem(session, farmer.id, codes[tier].pop(), redeemed_at)
        crop = crop_as_stored(CROPS[i % len(CROPS)])
        for _ in range(rng.randint(2, 9)):
            when = redeemed_at + timedelta(days=rng.uniform(0, (now - redeemed_at).days or 1))
            when = min(when, now - timedelta(minutes=5))
            found = rng.sample(DISEASES, rng.choice((0, 1, 1, 2)))
            session.add(Analysis(
                farmer_id=farmer.id, sponsor_id=sponsor_id, subscription_id=result.subscription_id,
                crop=crop, location_text=place, status=AnalysisStatus.COMPLETED.value,
                health_score=rng.randint(3, 9) if found else rng.randint(8, 10),
                primary_concern=found[0] if found else None, diseases=found,
                pests=rng.sample(PESTS, rng.choice((0, 0, 1))), result=_result(rng, crop, found),
                media_id=f"demo-{i}-{analyses}", received_at=when, created_at=when,
                completed_at=when + timedelta(seconds=40)))
            analyses += 1
    return SponsorDemo(len(FARMERS), analyses)
