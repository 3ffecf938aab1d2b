"""Turkish folding in SQL: a column as `bot.normalize.fold_letters` would write it, so a search typed as
`YILMAZ`, `yilmaz` or `Yılmaz` finds the same rows (support's farmer search, the sponsor's crop filter, the
sponsor name search)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func

from bot.normalize import FOLD_AFTER_LOWER, FOLD_BEFORE_LOWER, fold_letters


def folded(column: Any) -> Any:
    """`column` as `bot.normalize.fold_letters` would write it, in SQL: `Yılmaz` and `YILMAZ` alike (compare it
    with `fold_letters` of what was typed)."""
    for letter, plain in FOLD_BEFORE_LOWER:
        column = func.replace(column, letter, plain)
    column = func.lower(column)
    for letter, plain in FOLD_AFTER_LOWER:
        column = func.replace(column, letter, plain)
    return column


def contains_folded(column: Any, typed: str) -> Any:
    """`column` contains `typed` (literally: `%` and `_` are not wildcards), Turkish letters and case folded:
    `TARIM` finds `Tarım`."""
    return folded(column).contains(fold_letters(typed), autoescape=True)
