"""Changing a subscription tier (admin API and console alike): the bounds of its fields and the one
rule between them, so both places refuse the same values."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.orm import Session

from models import Tier
from services.quota import tier_by_code

MAX_LIMIT = 1_000_000
MAX_PRICE = Decimal("99999999.99")
PRICE_PATTERN = "^[0-9]{1,8}([.][0-9]{1,2})?$"  # a price as text (the OpenAPI document's `pattern` too)
DAILY_OVER_MONTHLY = "must not exceed monthly_limit"


def parse_price(value: object) -> Decimal | None:
    """A price in TRY from 0 to MAX_PRICE with at most two decimals, else None. A text is read only when written
    as PRICE_PATTERN says (ASCII digits and a point: no sign, exponent, `_` or spaces, which Decimal() would
    take); a JSON number is taken at its value."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, str) and not re.fullmatch(PRICE_PATTERN, value):
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        return None
    if not price.is_finite() or price < 0 or price > MAX_PRICE or price != price.quantize(Decimal("0.01")):
        return None
    return abs(price).quantize(Decimal("0.01"))  # abs: a JSON -0.0 is stored as 0.00


def tier_values(t: Tier) -> dict[str, Any]:
    return {"id": t.id, "code": t.code, "name": t.name, "daily_limit": t.daily_limit,
            "monthly_limit": t.monthly_limit, "price_try": str(t.price_try), "default_days": t.default_days,
            "active": t.active}


def change_tier(session: Session, code: str, changes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Apply checked `changes` (daily_limit, monthly_limit, price_try, active) in the caller's transaction:
    (before, after), None for an unknown tier; ValueError(DAILY_OVER_MONTHLY) when the day would allow more
    than the month."""
    tier = tier_by_code(session, code)
    if tier is None:
        return None
    before = tier_values(tier)
    if changes.get("daily_limit", tier.daily_limit) > changes.get("monthly_limit", tier.monthly_limit):
        raise ValueError(DAILY_OVER_MONTHLY)
    for name, value in changes.items():
        setattr(tier, name, value)
    session.flush()
    return before, tier_values(tier)
