"""One base for the enums we read from outside (Meta's webhook, stored rows): a value we do not know
is not an error but the enum's fallback member, so `MessageType(value)` never raises."""

from __future__ import annotations

import enum
from typing import Any, Self


class LenientStrEnum(enum.StrEnum):
    """A `StrEnum` whose unknown values (any type, even unhashable) read as its fallback member:
    `UNKNOWN` unless the subclass names another by overriding `_fallback`."""

    @classmethod
    def _fallback(cls) -> Self:
        return cls["UNKNOWN"]

    @classmethod
    def _missing_(cls, value: Any) -> Self:
        return cls._fallback()
