"""What a sponsor may see of its sponsored analyses: THE one implementation of DOMAIN.md's tier table.

| tier | sees |
|---|---|
| S  | totals only (statistics) |
| M  | + each sponsored analysis: date, crop, province, health score, main concern, diseases/pests |
| L  | + farmer's name, masked phone (`+90 532 *** ** 67`), full recommendations; may message farmers |
| XL | + full phone number and the whole raw report |

A sponsor's tier is the highest tier among its purchases. The list, detail, export and statistics
endpoints all go through `sponsor_tier`, `analysis_view` and `mask_phone` here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Analysis, Farmer, SponsorPurchase, Tier

TIER_ORDER: tuple[str, ...] = ("S", "M", "L", "XL")

# The keys of `analysis_view` for each tier (S sees no analysis at all).
M_COLUMNS: tuple[str, ...] = ("id", "date", "crop", "province", "health_score", "main_concern", "diseases", "pests")
L_COLUMNS: tuple[str, ...] = (*M_COLUMNS, "farmer_name", "farmer_phone_masked", "recommendations", "can_message")
XL_COLUMNS: tuple[str, ...] = (*L_COLUMNS, "farmer_phone", "report")
COLUMNS: dict[str, tuple[str, ...]] = {"S": (), "M": M_COLUMNS, "L": L_COLUMNS, "XL": XL_COLUMNS}


def tier_rank(tier: str | None) -> int:
    """-1 for no tier (or an unknown one), then 0..3 for S..XL."""
    return TIER_ORDER.index(tier) if tier in TIER_ORDER else -1


def sees_analyses(tier: str | None) -> bool:
    return tier_rank(tier) >= tier_rank("M")


def sees_identity(tier: str | None) -> bool:
    """Farmer's name and masked phone, full recommendations, and messaging (L and above)."""
    return tier_rank(tier) >= tier_rank("L")


def sees_full_report(tier: str | None) -> bool:
    return tier_rank(tier) >= tier_rank("XL")


def sponsor_tier(session: Session, sponsor_id: int) -> str | None:
    """The highest tier among the sponsor's purchases (S < M < L < XL); None without purchases."""
    codes = session.scalars(
        select(Tier.code).join(SponsorPurchase, SponsorPurchase.tier_id == Tier.id)
        .where(SponsorPurchase.sponsor_id == sponsor_id).distinct()
    ).all()
    known = [c for c in codes if c in TIER_ORDER]
    return max(known, key=TIER_ORDER.index) if known else None


def mask_phone(e164: str | None) -> str | None:
    """`+905321234567` -> `+90 532 *** ** 67`; other numbers keep country prefix and last two digits."""
    if not e164:
        return None
    digits = "".join(ch for ch in e164 if ch.isdigit())
    if digits.startswith("90") and len(digits) == 12:
        return f"+90 {digits[2:5]} *** ** {digits[-2:]}"
    if len(digits) <= 4:
        return "*" * len(digits)
    return f"+{digits[:2]} {'*' * (len(digits) - 4)}{digits[-2:]}"


def _recommendations(result: dict[str, Any] | None) -> Any:
    if isinstance(result, dict):
        value = result.get("recommendations")
        if isinstance(value, (dict, list)):
            return value
    return None


def analysis_view(analysis: Analysis, farmer: Farmer | None, tier: str | None) -> dict[str, Any] | None:
    """The analysis as `tier` may see it (keys exactly `COLUMNS[tier]`), or None for S / no tier."""
    if not sees_analyses(tier):
        return None
    when = analysis.completed_at or analysis.created_at
    view: dict[str, Any] = {
        "id": analysis.id,
        "date": when.isoformat() if when is not None else None,
        "crop": analysis.crop,
        "province": analysis.location_text,
        "health_score": analysis.health_score,
        "main_concern": analysis.primary_concern,
        "diseases": list(analysis.diseases or []),
        "pests": list(analysis.pests or []),
    }
    if sees_identity(tier):
        phone = farmer.phone if farmer is not None else None
        view.update({
            "farmer_name": farmer.profile_name if farmer is not None else None,
            "farmer_phone_masked": mask_phone(phone),
            "recommendations": _recommendations(analysis.result),
            "can_message": farmer is not None and farmer.accepts_proactive,
        })
    if sees_full_report(tier):
        view.update({
            "farmer_phone": farmer.phone if farmer is not None else None,
            "report": analysis.result,
        })
    return view
