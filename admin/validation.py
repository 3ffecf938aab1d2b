"""Request bodies: a JSON object, with field-level errors collected and answered as one 400."""

from __future__ import annotations

from typing import Any

from flask import request

from admin.errors import ApiError, field_error

# Row ids (farmers, sponsors, analyses, staff users...) are INTEGER columns on PostgreSQL: a larger id in a
# path or a filter matches nothing and must not reach the database, which answers "integer out of range".
MAX_ROW_ID = 2**31 - 1


class Body:
    """`Body.load()` reads the JSON object of the request; `string(name)` etc. collect field errors."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.errors: list[dict[str, str]] = []

    @classmethod
    def load(cls) -> Body:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ApiError(400, "The request body must be a JSON object (Content-Type: application/json).")
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
        if "\x00" in value:  # PostgreSQL cannot store NUL characters
            self.errors.append(field_error(name, "must not contain NUL characters"))
            return None
        return value

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ApiError(400, "Some fields of the request body are invalid.", errors=self.errors)
