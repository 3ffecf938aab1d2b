"""A sponsor's statistics: what it bought and what its codes paid for, totals every tier may see.

`compute_statistics` reads them (the admin API caches the result in Redis under `stats_key`); the
cache is dropped when its numbers change: a purchase or revocation (admin API), a redemption
(conversation), a finished analysis (pipeline). Every analysis figure counts only the completed analyses
the sponsor paid for (`services.visibility.paid_for_by`). `sponsor_figures` and `activity_series` are the
console dashboard's: farmers reached and active, crops, provinces and diseases, and redemptions and
analyses per Istanbul day, week or month.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, and_, distinct, func, select, text, union
from sqlalchemy.orm import Session

from bot.place import province_in
from models import Analysis, AnalysisStatus, CodeStatus, SponsorCode, SponsorPurchase, Tier
from services.quota import ISTANBUL
from services.sponsorship import CODE_STATUSES, TIER_ORDER, effective_status
from services.visibility import paid_for_by

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
    30 days (Istanbul days, as the console's dashboard counts them: a sponsor's day is a Turkish one),
    crops and the health-score distribution of the sponsored analyses (JSON-ready)."""
    counts = Counter({s: 0 for s in CODE_STATUSES})
    rows = session.execute(  # the codes of one purchase share their expiry: few groups
        select(SponsorCode.status, SponsorCode.expires_at, func.count())
        .where(SponsorCode.sponsor_id == sponsor_id).group_by(SponsorCode.status, SponsorCode.expires_at)
    ).all()
    for status, expires_at, n in rows:
        counts[effective_status(status, expires_at, now)] += n
    start = now.astimezone(ISTANBUL).date() - timedelta(days=STATS_DAYS - 1)
    per_day = {start + timedelta(days=i): 0 for i in range(STATS_DAYS)}
    for day, n in per_local_day(session, Analysis.created_at, and_(
            paid_for_by(sponsor_id), Analysis.created_at >= _local_midnight(start))).items():
        if day in per_day:  # not a later one (a clock ahead of ours)
            per_day[day] += n
    crops = session.execute(
        select(Analysis.crop, func.count()).where(paid_for_by(sponsor_id), Analysis.crop.is_not(None))
        .group_by(Analysis.crop).order_by(func.count().desc(), Analysis.crop)
    ).all()
    health = {str(i): 0 for i in range(1, 11)}
    for score, n in session.execute(
        select(Analysis.health_score, func.count()).where(paid_for_by(sponsor_id),
                                                          Analysis.health_score.between(1, 10))
        .group_by(Analysis.health_score)
    ):
        health[str(score)] += n
    total_analyses = session.scalar(select(func.count()).select_from(Analysis)
                                    .where(paid_for_by(sponsor_id))) or 0
    return {
        "sponsor_id": sponsor_id,
        "tiers": purchased_tiers(session, sponsor_id),
        "codes": {"bought": sum(counts.values()), **{s: counts[s] for s in CODE_STATUSES}},
        "analyses": {"total": total_analyses,
                     "per_day": [{"date": d.isoformat(), "count": n} for d, n in per_day.items()],
                     "crops": [{"crop": c, "count": n} for c, n in crops],
                     "health_scores": health},
        "generated_at": now.isoformat(),
    }


# --- the console's dashboard -----------------------------------------------------------------------------

ACTIVE_DAYS = 30
TOP_ROWS = 8  # crops, provinces and diseases shown on the dashboard


class Interval(enum.StrEnum):
    """How the dashboard's time series are bucketed (Istanbul calendar days, ISO weeks, months)."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


BUCKETS: dict[Interval, int] = {Interval.DAY: 30, Interval.WEEK: 12, Interval.MONTH: 12}


@dataclass(frozen=True)
class Bucket:
    start: date  # the first Istanbul day of the bucket
    redemptions: int
    analyses: int


@dataclass(frozen=True)
class SponsorFigures:
    """What the sponsor's dashboard shows beside the charts; every tier may see it (totals only)."""

    codes_bought: int
    codes_distributed: int  # exported in a CSV at least once, or redeemed (a redeemed code was handed out)
    codes_redeemed: int
    codes_expired: int
    codes_unused: int
    codes_revoked: int
    analyses: int
    farmers_reached: int  # redeemed one of its codes or had an analysis it paid for
    farmers_active: int  # had an analysis it paid for in the last ACTIVE_DAYS days
    crops: list[tuple[str, int]] = field(default_factory=list)
    provinces: list[tuple[str, int]] = field(default_factory=list)
    diseases: list[tuple[str, int]] = field(default_factory=list)


def bucket_start(day: date, interval: Interval) -> date:
    """The first day of the bucket holding `day`: itself, its week's Monday, or the 1st of its month."""
    if interval is Interval.WEEK:
        return day - timedelta(days=day.weekday())
    if interval is Interval.MONTH:
        return day.replace(day=1)
    return day


def bucket_starts(today: date, interval: Interval) -> list[date]:
    """The BUCKETS[interval] bucket starts up to and including `today`'s, oldest first."""
    last = bucket_start(today, interval)
    count = BUCKETS[interval]
    if interval is Interval.DAY:
        return [last - timedelta(days=i) for i in reversed(range(count))]
    if interval is Interval.WEEK:
        return [last - timedelta(weeks=i) for i in reversed(range(count))]
    starts = []
    year, month = last.year, last.month
    for _ in range(count):
        starts.append(date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return starts[::-1]


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ISTANBUL).astimezone(UTC)


def per_local_day(session: Session, column: Any, where: ColumnElement[bool]) -> Counter[date]:
    """How many rows matching `where` fall on each Istanbul day of `column`. PostgreSQL groups them itself
    (a year of a big sponsor's analyses is a few hundred rows, not tens of thousands); elsewhere (SQLite,
    development) the timestamps are read and grouped here."""
    if session.get_bind().dialect.name == "postgresql":
        day = func.date(func.timezone(ISTANBUL.key, column))
        return Counter({d: n for d, n in session.execute(select(day, func.count()).where(where).group_by(day))})
    return Counter(t.astimezone(ISTANBUL).date() for t in session.scalars(select(column).where(where))
                   if t is not None)


def activity_series(session: Session, sponsor_id: int, interval: Interval, now: datetime) -> list[Bucket]:
    """Redemptions of the sponsor's codes and analyses it paid for, per Istanbul day, week or month,
    oldest first (empty buckets included, so a chart's x axis is continuous)."""
    starts = bucket_starts(now.astimezone(ISTANBUL).date(), interval)
    since = _local_midnight(starts[0])
    redemptions: Counter[date] = Counter()
    for day, n in per_local_day(session, SponsorCode.redeemed_at, and_(
            SponsorCode.sponsor_id == sponsor_id, SponsorCode.redeemed_at >= since)).items():
        redemptions[bucket_start(day, interval)] += n
    analyses: Counter[date] = Counter()
    for day, n in per_local_day(session, Analysis.created_at, and_(
            paid_for_by(sponsor_id), Analysis.created_at >= since)).items():
        analyses[bucket_start(day, interval)] += n
    return [Bucket(s, redemptions[s], analyses[s]) for s in starts]


def finding_name(item: object) -> str | None:
    """A disease as stored: a name, or an object named by `name` or `type`."""
    if isinstance(item, str):
        return item.strip() or None
    if isinstance(item, dict):
        for key in ("name", "type"):
            value = item.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


# Each disease of the sponsor's completed analyses with how many analyses name it, counted by the database
# (reading every analysis' JSON in Python costs ten times more): an item is a name, or an object named by
# `name` or `type` (`finding_name`'s rule in SQL).
_DISEASES_SQL = {
    "postgresql": """
        SELECT name, count(DISTINCT id) FROM (
            SELECT a.id, btrim(COALESCE(CASE WHEN jsonb_typeof(d) = 'string' THEN d #>> '{}' END,
                                        d ->> 'name', d ->> 'type')) AS name
            FROM analyses a CROSS JOIN LATERAL jsonb_array_elements(
                CASE WHEN jsonb_typeof(a.diseases) = 'array' THEN a.diseases ELSE '[]'::jsonb END) AS d
            WHERE a.sponsor_id = :sponsor_id AND a.status = :status) AS found
        WHERE name <> '' GROUP BY name""",
    "sqlite": """
        SELECT name, count(DISTINCT id) FROM (
            SELECT a.id, trim(CASE WHEN d.type = 'text' THEN d.value
                                   ELSE COALESCE(json_extract(d.value, '$.name'), json_extract(d.value, '$.type'))
                              END) AS name
            FROM analyses a, json_each(CASE WHEN json_type(a.diseases) = 'array' THEN a.diseases ELSE '[]' END) AS d
            WHERE a.sponsor_id = :sponsor_id AND a.status = :status) AS found
        WHERE name IS NOT NULL AND name <> '' GROUP BY name""",
}


def disease_counts(session: Session, sponsor_id: int) -> Counter[str]:
    """How many of the sponsor's completed analyses name each disease."""
    sql = _DISEASES_SQL[session.get_bind().dialect.name]
    rows = session.execute(text(sql), {"sponsor_id": sponsor_id, "status": AnalysisStatus.COMPLETED.value})
    return Counter({str(name): int(n) for name, n in rows})


def _top(counts: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ROWS]


def sponsor_figures(session: Session, sponsor_id: int, now: datetime) -> SponsorFigures:
    """The dashboard's totals: codes by effective status, farmers reached and active, and the most
    frequent crops, provinces and diseases of the analyses the sponsor paid for."""
    counts = Counter({s: 0 for s in CODE_STATUSES})
    distributed = 0
    for status, expires_at, exported, n in session.execute(
        select(SponsorCode.status, SponsorCode.expires_at, SponsorCode.exported_at.is_not(None), func.count())
        .where(SponsorCode.sponsor_id == sponsor_id)
        .group_by(SponsorCode.status, SponsorCode.expires_at, SponsorCode.exported_at.is_not(None))
    ):
        counts[effective_status(status, expires_at, now)] += n
        if exported or status == CodeStatus.REDEEMED.value:
            distributed += n
    reached = session.scalar(select(func.count()).select_from(union(
        select(SponsorCode.redeemed_by_farmer_id.label("farmer_id"))
        .where(SponsorCode.sponsor_id == sponsor_id, SponsorCode.redeemed_by_farmer_id.is_not(None)),
        select(Analysis.farmer_id).where(paid_for_by(sponsor_id)),
    ).subquery())) or 0
    active = session.scalar(select(func.count(distinct(Analysis.farmer_id))).where(
        paid_for_by(sponsor_id), Analysis.created_at >= now - timedelta(days=ACTIVE_DAYS))) or 0
    total = session.scalar(select(func.count()).select_from(Analysis).where(paid_for_by(sponsor_id))) or 0
    crops: Counter[str] = Counter()
    provinces: Counter[str] = Counter()
    for crop, n in session.execute(select(Analysis.crop, func.count()).where(
            paid_for_by(sponsor_id), Analysis.crop.is_not(None)).group_by(Analysis.crop)):
        if crop and crop.strip():
            crops[crop.strip()] += n
    for place, n in session.execute(select(Analysis.location_text, func.count()).where(
            paid_for_by(sponsor_id), Analysis.location_text.is_not(None)).group_by(Analysis.location_text)):
        province = province_in(place)
        if province:
            provinces[province] += n
    return SponsorFigures(
        codes_bought=sum(counts.values()), codes_distributed=distributed,
        codes_redeemed=counts[CodeStatus.REDEEMED.value], codes_expired=counts[CodeStatus.EXPIRED.value],
        codes_unused=counts[CodeStatus.UNUSED.value], codes_revoked=counts[CodeStatus.REVOKED.value],
        analyses=total, farmers_reached=reached, farmers_active=active,
        crops=_top(crops), provinces=_top(provinces), diseases=_top(disease_counts(session, sponsor_id)))
