"""Turkish folding in SQL: a column as `bot.normalize.fold_letters` would write it, so a search typed as
`YILMAZ`, `yilmaz` or `Yılmaz` finds the same rows (support's farmer search, the sponsor's crop filter)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func

from bot.normalize import FOLD_AFTER_LOWER, FOLD_BEFORE_LOWER


def folded(column: Any) -> Any:
    """`column` as `bot.normalize.fold_letters` would write it, in SQL: `Yılmaz` and `YILMAZ` alike (compare it
    with `fold_letters` of what was typed)."""
    for letter, plain in FOLD_BEFORE_LOWER:
        column = func.replace(column, letter, plain)
    column = func.lower(column)
    for letter, plain in FOLD_AFTER_LOWER:
        column = func.replace(column, letter, plain)
    return column
