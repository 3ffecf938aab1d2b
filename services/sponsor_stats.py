"""A sponsor's statistics: what it bought and what its codes paid for, totals every tier may see.

`compute_statistics` reads them (the admin API caches the result in Redis under `stats_key`); the
cache is dropped when its numbers change: a purchase or revocation (admin API), a redemption
(conversation), a finished analysis (pipeline).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Analysis, SponsorCode, SponsorPurchase, Tier
from services.sponsorship import CODE_STATUSES, TIER_ORDER, effective_status

log = logging.getLogger(__name__)

STATS_DAYS = 30


def stats_key(sponsor_id: int) -> str:
    return f"ziraai:sponsor-stats:{sponsor_id}"


def invalidate_stats(redis: Redis, sponsor_id: int | None) -> None:
    if sponsor_id is None:
        return
    try:
        redis.delete(stats_key(sponsor_id))
    except RedisError:
        log.warning("could not invalidate the statistics cache of sponsor %s", sponsor_id, exc_info=True)


def purchased_tiers(session: Session, sponsor_id: int) -> list[str]:
    """The tiers the sponsor has bought, S..XL: commercial facts, never what it may see of an analysis."""
    bought = set(session.scalars(select(Tier.code).join(SponsorPurchase, SponsorPurchase.tier_id == Tier.id)
                                 .where(SponsorPurchase.sponsor_id == sponsor_id)))
    return [t for t in TIER_ORDER if t in bought]


def compute_statistics(session: Session, sponsor_id: int, now: datetime) -> dict[str, Any]:
    """Totals every tier may see (S included): codes by effective status, analyses per day over the last
    30 days (UTC dates), crops and the health-score distribution of the sponsored analyses (JSON-ready)."""
    counts = Counter({s: 0 for s in CODE_STATUSES})
    rows = session.execute(  # the codes of one purchase share their expiry: few groups
        select(SponsorCode.status, SponsorCode.expires_at, func.count())
        .where(SponsorCode.sponsor_id == sponsor_id).group_by(SponsorCode.status, SponsorCode.expires_at)
    ).all()
    for status, expires_at, n in rows:
        counts[effective_status(status, expires_at, now)] += n
    start = (now - timedelta(days=STATS_DAYS - 1)).date()
    per_day = {(start + timedelta(days=i)).isoformat(): 0 for i in range(STATS_DAYS)}
    since = datetime.combine(start, datetime.min.time(), tzinfo=now.tzinfo)
    for created in session.scalars(select(Analysis.created_at).where(Analysis.sponsor_id == sponsor_id,
                                                                       Analysis.created_at >= since)):
        day = created.date().isoformat()
        if day in per_day:
            per_day[day] += 1
    crops = session.execute(
        select(Analysis.crop, func.count()).where(Analysis.sponsor_id == sponsor_id, Analysis.crop.is_not(None))
        .group_by(Analysis.crop).order_by(func.count().desc(), Analysis.crop)
    ).all()
    health = {str(i): 0 for i in range(1, 11)}
    for score, n in session.execute(
        select(Analysis.health_score, func.count()).where(Analysis.sponsor_id == sponsor_id,
                                                          Analysis.health_score.between(1, 10))
        .group_by(Analysis.health_score)
    ):
        health[str(score)] += n
    total_analyses = session.scalar(select(func.count()).select_from(Analysis)
                                    .where(Analysis.sponsor_id == sponsor_id)) or 0
    return {
        "sponsor_id": sponsor_id,
        "tiers": purchased_tiers(session, sponsor_id),
        "codes": {"bought": sum(counts.values()), **{s: counts[s] for s in CODE_STATUSES}},
        "analyses": {"total": total_analyses,
                     "per_day": [{"date": d, "count": n} for d, n in per_day.items()],
                     "crops": [{"crop": c, "count": n} for c, n in crops],
                     "health_scores": health},
        "generated_at": now.isoformat(),
    }
