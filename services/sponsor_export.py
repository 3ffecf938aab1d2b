"""A sponsor's sponsored analyses as CSV, for the admin API and the console alike.

Each row is what the tier of the code that paid for THAT analysis may see (`services.visibility`:
`paying_tier`, `analysis_view`, `COLUMNS`), never more: the header has the columns of the highest
tier among the rows, and a row leaves empty the columns its own tier does not show (its `tier` column
says which). Analyses paid for by S codes are not listed, as in the list. A cell a spreadsheet would
run as a formula (starting with = + - @, a tab or a carriage return) is prefixed with `'`, since
farmers' names and the analysis texts come from outside. The export is audited like a page of the
list, with every analysis id it holds.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.replies import crop_name
from models import Analysis, Farmer
from services.audit import audit
from services.visibility import (
    ANALYSIS_TIERS,
    COLUMNS,
    analysis_view,
    crop_matches,
    paying_tier,
    sponsored_analyses,
    tier_rank,
)

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FARMERS_PER_QUERY = 500


def csv_cell(value: object) -> str:
    """One cell as text: empty for None, JSON for lists, objects and dataclasses, formula-looking text made inert."""
    if value is None:
        return ""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)  # as the API's JSON writes it
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def export_sponsored_analyses_csv(session: Session, sponsor_id: int, *, crop: str | None = None,
                                  since: datetime | None = None, until: datetime | None = None,
                                  via: str | None = None, locale: str | None = None) -> str:
    """The sponsor's M, L and XL analyses (newest first, filtered like the list: `crop_matches`, created
    at or after `since`, before `until`) as CSV, audited in the caller's transaction. `via` names the
    surface in the audit row (the console says so; the API does not). With `locale` (the console's reader)
    a known crop is written by its name in that language; without (the API) by its stable key."""
    stmt = sponsored_analyses(sponsor_id).add_columns(paying_tier()).where(paying_tier().in_(ANALYSIS_TIERS))
    if crop is not None:
        stmt = stmt.where(crop_matches(crop))
    if since is not None:
        stmt = stmt.where(Analysis.created_at >= since)
    if until is not None:
        stmt = stmt.where(Analysis.created_at < until)
    rows: list[tuple[Analysis, str]] = [(a, t) for a, t in session.execute(
        stmt.order_by(Analysis.created_at.desc(), Analysis.id.desc()))]
    farmer_ids = sorted({a.farmer_id for a, _ in rows})
    farmers: dict[int, Farmer] = {}
    for i in range(0, len(farmer_ids), _FARMERS_PER_QUERY):
        chunk = farmer_ids[i:i + _FARMERS_PER_QUERY]
        farmers.update((f.id, f) for f in session.scalars(select(Farmer).where(Farmer.id.in_(chunk))))
    top = max((t for _, t in rows), key=tier_rank, default="M")
    columns = COLUMNS[top]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for analysis, tier in rows:
        view: dict[str, Any] = analysis_view(analysis, farmers.get(analysis.farmer_id), tier) or {}
        if locale is not None and view.get("crop"):
            view["crop"] = crop_name(locale, view["crop"])
        writer.writerow([csv_cell(view[c]) if c in view else "" for c in columns])
    details: dict[str, object] = {"total": len(rows), "ids": [a.id for a, _ in rows], "tiers": [t for _, t in rows],
                                  "crop": crop, "since": since.isoformat() if since else None,
                                  "until": until.isoformat() if until else None}
    if via:
        details["via"] = via
    audit("sponsor.analyses.export", "sponsor", sponsor_id, details, session=session)
    return out.getvalue()
