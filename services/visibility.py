"""What a sponsor may see of its sponsored analyses: THE one implementation of the tier table in docs/ADMIN_API.md.

| tier | sees |
|---|---|
| S  | totals only (statistics) |
| M  | + each sponsored analysis: date, crop, province, health score, main concern, diseases/pests |
| L  | + farmer's name, masked phone (`+90 532 *** ** 67`), full recommendations; may message farmers |
| XL | + full phone number and the whole raw report |

The tier that counts is the one of the code that paid for THAT analysis (`paying_tier`: the
subscription charged at submission -> the code redeemed for it -> the code's purchase -> its tier),
never the sponsor's highest purchase: buying an XL package later reveals nothing of the farmers who
redeemed its S or M codes. The admin API and the console both go through `paying_tier`,
`sponsored_analyses`, `find_sponsored_analysis` and `analysis_view` here (lists, details and
messaging alike); phones are masked by `services.masking`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, Select, and_, or_, select
from sqlalchemy.orm import Session

from bot.crops import keys_named
from bot.place import province_in
from models import (
    Analysis,
    AnalysisStatus,
    Farmer,
    SponsorCode,
    SponsorPurchase,
    StaffRole,
    StaffUser,
    Subscription,
    Tier,
)
from services.analysis_result import Recommendations, recommendations_of
from services.folding import contains_folded
from services.json_input import iso
from services.masking import mask_phone
from services.sponsorship import TIER_ORDER

# The keys of `analysis_view` for each tier (S sees no analysis at all).
M_COLUMNS: tuple[str, ...] = ("id", "tier", "date", "crop", "province", "health_score", "main_concern", "diseases",
                              "pests")
L_COLUMNS: tuple[str, ...] = (*M_COLUMNS, "farmer_name", "farmer_phone_masked", "recommendations", "can_message")
XL_COLUMNS: tuple[str, ...] = (*L_COLUMNS, "farmer_phone", "report")
COLUMNS: dict[str, tuple[str, ...]] = {"S": (), "M": M_COLUMNS, "L": L_COLUMNS, "XL": XL_COLUMNS}


def may_see_sponsor(user: StaffUser | None, sponsor_id: int) -> bool:
    """An admin sees any sponsor, a sponsor user only its own: the one rule of the API and the console (each
    answers a refusal its own way)."""
    return user is not None and (user.role == StaffRole.ADMIN.value or user.sponsor_id == sponsor_id)


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


ANALYSIS_TIERS: tuple[str, ...] = tuple(t for t in TIER_ORDER if sees_analyses(t))  # M, L, XL


def paying_tier() -> ScalarSelect[str]:
    """The tier code of the code that paid for `Analysis`, as a correlated subquery (for WHERE and
    SELECT alike); NULL when no code of the analysis' own sponsor paid for it."""
    return (
        select(Tier.code)
        .select_from(Subscription)
        .join(SponsorCode, SponsorCode.id == Subscription.code_id)
        .join(SponsorPurchase, SponsorPurchase.id == SponsorCode.purchase_id)
        .join(Tier, Tier.id == SponsorPurchase.tier_id)
        .where(Subscription.id == Analysis.subscription_id, SponsorPurchase.sponsor_id == Analysis.sponsor_id)
        .correlate(Analysis)
        .scalar_subquery()
    )


def paid_for_by(sponsor_id: int) -> ColumnElement[bool]:
    """The analyses the sponsor paid for: its completed ones. A failed analysis was refunded and one in
    progress may still be, so neither counts anywhere a sponsor looks (lists, pages, figures, statistics)."""
    return and_(Analysis.sponsor_id == sponsor_id, Analysis.status == AnalysisStatus.COMPLETED.value)


def sponsored_analyses(sponsor_id: int) -> Select[Any]:
    """The sponsor's completed analyses (every tier: filter on `paying_tier()` for what may be listed)."""
    return select(Analysis).where(paid_for_by(sponsor_id))


def crop_matches(text: str) -> ColumnElement[bool]:
    """The crop filter of the sponsor's lists and CSVs: an analysis stores a known crop by its key
    (`salatalik`) and shows its name (`Salatalık`, `Cucumber`), so any of them finds it, whatever the case
    and Turkish letters; a crop the farmer typed is found by what it contains, folded the same way."""
    return or_(contains_folded(Analysis.crop, text),
               Analysis.crop.in_(keys_named(text)))


def find_sponsored_analysis(session: Session, sponsor_id: int,
                            analysis_id: int) -> tuple[Analysis, str | None] | None:
    """One completed analysis of the sponsor and the tier of the code that paid for it; None when it is
    not the sponsor's (the caller decides what a tier below M is told)."""
    row = session.execute(sponsored_analyses(sponsor_id).add_columns(paying_tier())
                          .where(Analysis.id == analysis_id)).first()
    if row is None:
        return None
    analysis, tier = row
    return analysis, tier


def paying_tiers(session: Session, analysis_ids: Iterable[int]) -> dict[int, str | None]:
    """analysis id -> the tier of the code that paid for it (None: no code of its sponsor did)."""
    ids = list(analysis_ids)
    if not ids:
        return {}
    rows = session.execute(select(Analysis.id, paying_tier()).where(Analysis.id.in_(ids)))
    return {analysis_id: tier for analysis_id, tier in rows}


def _recommendations(analysis: Analysis) -> Recommendations | None:
    """The recommendations as `services.analysis_result` reads them (any key spelling, a plain step as an
    action), so the API and the console show what the farmer's report shows; None when there are none."""
    found = recommendations_of(analysis.result)
    return found if found != Recommendations() else None


def analysis_view(analysis: Analysis, farmer: Farmer | None, tier: str | None) -> dict[str, Any] | None:
    """The analysis as `tier` (the tier of the code that paid for it) may see it, keys exactly
    `COLUMNS[tier]`; None for S or no tier."""
    if not sees_analyses(tier):
        return None
    when = analysis.completed_at or analysis.created_at
    view: dict[str, Any] = {
        "id": analysis.id,
        "tier": tier,
        "date": iso(when),
        "crop": analysis.crop,
        "province": province_in(analysis.location_text),
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
            "recommendations": _recommendations(analysis),
            "can_message": farmer is not None and farmer.accepts_proactive,
        })
    if sees_full_report(tier):
        view.update({
            "farmer_phone": farmer.phone if farmer is not None else None,
            "report": analysis.result,
        })
    return view
