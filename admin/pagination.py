"""Query-string parsing with field-level errors, and the page envelope every list answers with.

    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    since, until = args.time_range()
    args.raise_if_errors()            # 400 problem+json listing every bad field at once
    stmt = in_range(stmt, Model.created_at, since, until)
    return jsonify(paginate(session, stmt, page, per_page, serialize))

`iso` writes the timestamps of every answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, SQLColumnExpression, func, select
from sqlalchemy.orm import Session

from admin.errors import ApiError, field_error
from admin.validation import parse_datetime

MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 20
MAX_TEXT_LENGTH = 200
MAX_PAGE = 1_000_000  # keeps OFFSET within a 64-bit integer
INTEGER = re.compile(r"-?[0-9]{1,4000}")  # ASCII digits; Python refuses to read longer ones

T = TypeVar("T")


class QueryArgs:
    """Reads typed values from a query string, collecting every problem instead of stopping at the first."""

    def __init__(self, args: Mapping[str, str]) -> None:
        self.args = args
        self.errors: list[dict[str, str]] = []

    def _raw(self, name: str) -> str | None:
        value = self.args.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()  # NUL never gets here (admin.validation refuses it before the view)

    def integer(self, name: str, default: int | None = None, *, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        raw = self._raw(name)
        if raw is None:
            return default
        if INTEGER.fullmatch(raw) is None:  # any length: a huge number is refused (or capped) for its size
            self.errors.append(field_error(name, "must be an integer"))
            return default
        value = int(raw)
        if minimum is not None and value < minimum:
            self.errors.append(field_error(name, f"must be at least {minimum}"))
            return default
        if maximum is not None and value > maximum:
            self.errors.append(field_error(name, f"must be at most {maximum}"))
            return default
        return value

    def text(self, name: str, *, max_length: int = MAX_TEXT_LENGTH) -> str | None:
        raw = self._raw(name)
        if raw is not None and len(raw) > max_length:
            self.errors.append(field_error(name, f"must be at most {max_length} characters"))
            return None
        return raw

    def choice(self, name: str, allowed: Collection[str]) -> str | None:
        raw = self._raw(name)
        if raw is not None and raw not in allowed:
            self.errors.append(field_error(name, "must be one of: " + ", ".join(sorted(allowed))))
            return None
        return raw

    def moment(self, name: str) -> datetime | None:
        """An ISO 8601 date or date-time; without an offset it is taken as UTC."""
        raw = self._raw(name)
        if raw is None:
            return None
        try:
            return parse_datetime(raw)
        except ValueError:
            self.errors.append(field_error(name, "must be an ISO 8601 date-time between years 1 and 9999, "
                                                 "e.g. 2026-11-22T08:30:00Z"))
            return None

    def time_range(self, since: str = "since", until: str = "until") -> tuple[datetime | None, datetime | None]:
        """`since` (inclusive) and `until` (exclusive), each optional; `until` must be later than `since`."""
        start, end = self.moment(since), self.moment(until)
        if start is not None and end is not None and start >= end:
            self.add_error(until, f"must be later than {since}")
        return start, end

    def converted(self, name: str, convert: Callable[[str], T | None], message: str) -> T | None:
        """`convert` returns None for a value it refuses; the field error then says `message`."""
        raw = self._raw(name)
        if raw is None:
            return None
        value = convert(raw)
        if value is None:
            self.errors.append(field_error(name, message))
        return value

    def add_error(self, name: str, message: str) -> None:
        self.errors.append(field_error(name, message))

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ApiError(400, "Some query parameters are invalid.", errors=self.errors)


def in_range(stmt: Select[Any], column: SQLColumnExpression[datetime], since: datetime | None,
             until: datetime | None) -> Select[Any]:
    """`stmt` limited to rows whose `column` is at or after `since` and before `until` (either may be None)."""
    if since is not None:
        stmt = stmt.where(column >= since)
    if until is not None:
        stmt = stmt.where(column < until)
    return stmt


def page_args(args: QueryArgs) -> tuple[int, int]:
    """`page` >= 1 (default 1) and `per_page` 1..100 (default 20; larger values are capped at 100)."""
    page = args.integer("page", 1, minimum=1, maximum=MAX_PAGE) or 1
    per_page = args.integer("per_page", DEFAULT_PER_PAGE, minimum=1) or DEFAULT_PER_PAGE
    return page, min(per_page, MAX_PER_PAGE)


def paginate(session: Session, stmt: Select[Any], page: int, per_page: int,
             serialize: Callable[[Any], dict[str, Any]],
             prepare: Callable[[Sequence[Any]], None] | None = None) -> dict[str, Any]:
    """`{"items", "page", "per_page", "total"}` for an ordered `select(Model)` statement. `prepare` sees
    the page's rows before they are serialized (to load what they refer to in one query, not one each)."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    if prepare is not None:
        prepare(rows)
    return {"items": [serialize(r) for r in rows], "page": page, "per_page": per_page, "total": total}
