"""What the admin API accepts from outside, in one place: JSON bodies, query arguments, path values.

- Every body is read by `Body.load()`: strict JSON (`services.json_input.parse_json`: no NaN/Infinity,
  no number beyond a float, at most 64 levels deep), a JSON object, and no key or string anywhere in
  it holding NUL or a lone surrogate (no database column can store one, and hashing one fails); each
  such field is named in one 400.
- Every query argument and path value is checked before the view runs, once the caller is known to be
  allowed (`refuse_unstorable_arguments`, called by `admin.auth.require_roles`): NUL in a query argument
  is a 400 naming it, in a path value a 404 (no row can have it).
- Dates (`parse_datetime`) must stay within what a datetime can hold once converted to UTC.
- A row named by a path id is read by `row_or_404`: an id beyond the column (`MAX_ROW_ID`) never
  reaches the database.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import request
from sqlalchemy.orm import Session

from admin.errors import ApiError, field_error
from models.db import MAX_ROW_ID
from services.json_input import (
    JsonInputError,
    has_unstorable,
    json_integer,
    parse_json,
    storable,
    unstorable_paths,
)

UNSTORABLE = "must not contain NUL characters or lone surrogates (\\u0000, \\ud800-\\udfff)"
NOT_AN_OBJECT = "The request body must be a JSON object (Content-Type: application/json)."

M = TypeVar("M")


def row_or_404(session: Session, model: type[M], row_id: int, detail: str) -> M:
    """The row of `model` with this id, or a 404 saying `detail` (also for an id no row can have)."""
    row = session.get(model, row_id) if row_id <= MAX_ROW_ID else None
    if row is None:
        raise ApiError(404, detail)
    return row


class Body:
    """`Body.load()` reads the JSON object of the request; `string(name)` etc. collect field errors."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.errors: list[dict[str, str]] = []

    @classmethod
    def load(cls) -> Body:
        if not request.is_json:
            raise ApiError(400, NOT_AN_OBJECT)
        try:
            data = parse_json(request.get_data(cache=True))
        except JsonInputError as exc:
            raise ApiError(400, f"The request body is not usable JSON: {exc}.") from None
        if not isinstance(data, dict):
            raise ApiError(400, NOT_AN_OBJECT)
        fields = sorted({storable(str(path[0])) for path in unstorable_paths(data)})
        if fields:
            raise ApiError(400, "Some fields of the request body are invalid.",
                           errors=[field_error(name, UNSTORABLE) for name in fields])
        return cls(data)

    def string(self, name: str, *, max_length: int = 1000, required: bool = True) -> str | None:
        value = self.data.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.errors.append(field_error(name, "is required"))
            return None
        if not isinstance(value, str):
            self.errors.append(field_error(name, "must be a string"))
            return None
        if len(value) > max_length:
            self.errors.append(field_error(name, f"must be at most {max_length} characters"))
            return None
        return value

    def integer(self, name: str, minimum: int, maximum: int, *, default: int | None = None,
                required: bool = False) -> int | None:
        """An integer within minimum..maximum (`141.0` counts, as in JSON Schema; a boolean does not); absent
        gives `default`, or the field error "is required" when `required`. Null is what absent is, except for a
        field with a default: the schema says integer there, so null is refused rather than read as the default."""
        raw = self.data.get(name)
        if raw is None:
            if required:
                self.errors.append(field_error(name, "is required"))
            elif default is not None and name in self.data:
                self.errors.append(field_error(name, f"must be an integer; leave it out for the default {default}"))
                return None
            return default
        value = json_integer(raw)
        if value is None:
            self.errors.append(field_error(name, "must be an integer"))
            return None
        if not minimum <= value <= maximum:
            self.errors.append(field_error(name, f"must be between {minimum} and {maximum}"))
            return None
        return value

    def refuse_unknown(self, known: Collection[str], message: str = "is not a known field") -> None:
        """A field error for each field of the body not in `known` (a typo must not pass silently)."""
        self.errors.extend(field_error(name, message) for name in sorted(set(self.data) - set(known)))

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ApiError(400, "Some fields of the request body are invalid.", errors=self.errors)


def refuse_unstorable_arguments() -> None:
    """NUL in a path value or a query argument: PostgreSQL can neither store nor compare it (a 500 once)."""
    if any(isinstance(v, str) and has_unstorable(v) for v in (request.view_args or {}).values()):
        raise ApiError(404, "Nothing exists at this address.")
    names = sorted({storable(name) for name, value in request.args.items(multi=True)
                    if has_unstorable(name) or has_unstorable(value)})
    if names:
        raise ApiError(400, "Some query parameters are invalid.", errors=[field_error(n, UNSTORABLE) for n in names])


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 date or date-time in UTC (without an offset it is taken as UTC). ValueError when it is
    not one, or lies beyond what a datetime holds once converted (`0001-01-01T00:00:00+01:00`)."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None
