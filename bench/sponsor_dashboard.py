"""How the sponsor dashboard's statistics scale: `sponsor_figures` and `activity_series` (day, week, month)
for one sponsor with many analyses, against the admin API's `compute_statistics` on the same data in the
same run (the baseline: the totals a sponsor already reads).

TRUNCATES the PostgreSQL database and FLUSHES the Redis db it is given (`--database-url`, `--redis-url`):
never point it at data you keep. Prints the figures; asserts nothing about time.

    .venv/bin/python bench/sponsor_dashboard.py --database-url URL --redis-url URL [--analyses 20000] [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, machine_info, reset_stores, write_results
from models import Analysis, Farmer, utcnow
from models.db import Database
from services.sponsor_stats import Interval, activity_series, compute_statistics, sponsor_figures
from services.sponsorship import create_purchase, create_sponsor

CROPS = ("domates", "biber", "buğday", "üzüm", "salatalık", "patates", "mısır", "elma")
PLACES = ("Kumluca, Antalya", "Selçuklu, Konya", "Menemen, İzmir", "Tarsus, Mersin", "Nilüfer, Bursa")
DISEASES = ("Erken yanıklık", "Külleme", "Mildiyö", "Pas", "Kurşuni küf", "Yaprak lekesi")


def seed(db: Database, analyses: int, farmers: int) -> int:
    """One sponsor, its codes, `farmers` farmers and `analyses` completed analyses over the last year."""
    rng = random.Random(3)
    now = utcnow()
    with db.session() as session, session.begin():
        sponsor = create_sponsor(session, "Bench Tarım", now)
        create_purchase(session, sponsor.id, "M", min(10_000, farmers * 2), 365, 30, now - timedelta(days=360))
        ids = []
        for i in range(farmers):
            farmer = Farmer(phone=f"+90555{i:07d}", profile_name=f"Çiftçi {i}", created_at=now, updated_at=now)
            session.add(farmer)
            session.flush()
            ids.append(farmer.id)
        rows = []
        for _ in range(analyses):
            when = now - timedelta(minutes=rng.randint(5, 365 * 24 * 60))
            rows.append({"farmer_id": rng.choice(ids), "sponsor_id": sponsor.id, "status": "completed",
                         "crop": rng.choice(CROPS), "location_text": rng.choice(PLACES),
                         "health_score": rng.randint(1, 10), "diseases": rng.sample(DISEASES, rng.randint(0, 2)),
                         "pests": [], "created_at": when, "received_at": when, "completed_at": when})
        session.execute(Analysis.__table__.insert(), rows)  # type: ignore[attr-defined]
        return sponsor.id


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """The median of `repeat` runs, in milliseconds."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--analyses", type=int, default=20_000)
    parser.add_argument("--farmers", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="2,000 analyses, 3 runs each")
    args = parser.parse_args(argv)
    if args.quick:
        args.analyses, args.farmers, args.repeat = 2_000, 200, 3
    reset_stores(args.database_url, args.redis_url)
    db = Database(args.database_url)
    try:
        sponsor_id = seed(db, args.analyses, args.farmers)
        now = utcnow()
        with db.reader() as session:
            figures: dict[str, float] = {
                "baseline compute_statistics": timed(lambda: compute_statistics(session, sponsor_id, now),
                                                     args.repeat),
                "sponsor_figures": timed(lambda: sponsor_figures(session, sponsor_id, now), args.repeat),
            }
            for interval in Interval:
                def series(interval: Interval = interval) -> Any:
                    return activity_series(session, sponsor_id, interval, now)
                figures[f"activity_series {interval.value}"] = timed(series, args.repeat)
    finally:
        db.engine.dispose()
    baseline = figures["baseline compute_statistics"]
    print(f"sponsor dashboard, {args.analyses} analyses of {args.farmers} farmers, median of {args.repeat}:")
    for name, ms in figures.items():
        print(f"  {name:32s} {ms:8.1f} ms   {ms / baseline:5.2f} x baseline")
    dashboard = figures["sponsor_figures"] + figures["activity_series week"]
    print(f"  a dashboard page's statistics (figures + weeks): {dashboard:.1f} ms, {dashboard / baseline:.2f} x")
    write_results("sponsor_dashboard", {"analyses": args.analyses, "farmers": args.farmers, "repeat": args.repeat,
                                        "ms": figures, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
