"""JSON from outside (webhook deliveries, admin API bodies, the development tools): parsed once, strictly.

Every body anyone can send goes through `parse_json`, so the same rules hold everywhere:
- JSON (RFC 8259) in UTF-8, or UTF-16/32 as `json.loads` recognises them from the first bytes: `NaN`,
  `Infinity` and numbers beyond a float (`1e400`) are refused, like
  integers of more digits than Python converts; PostgreSQL's jsonb could not store them anyway.
- At most `MAX_DEPTH` levels of arrays and objects (Meta's deliveries nest about 8), checked without
  recursion, so that nothing after parsing (walks, encoding, the database driver) comes near Python's
  recursion limit; deeper than Python itself parses is refused the same way.

What a string may contain is the caller's decision: `\\u0000` and lone surrogates (`\\ud800`) are valid
JSON escapes that no database column can hold (PostgreSQL refuses NUL; no UTF-8 encoder takes a lone
surrogate). The admin API refuses them (`unstorable_paths`); a signed webhook, which must be kept
whatever it says, replaces them (`storable`).

After parsing, `json_object` reads a section that must be an object (anything else is empty), and the
JSON we write shows a timestamp one way: `iso`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flask.json.provider import DefaultJSONProvider

MAX_DEPTH = 64

UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")
# The raw bytes of a body that can hold an unstorable string: only such bodies need a walk.
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(0000|[dD][89a-fA-F])")


class JsonInputError(ValueError):
    """The body is not JSON we accept; the message says why (safe to show the sender)."""


def _refuse_constant(name: str) -> Any:
    raise JsonInputError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonInputError(f"the number {text[:20]} is out of range")
    return value


def nested_deeper_than(value: Any, limit: int) -> bool:
    """True when arrays/objects nest more than `limit` levels; iterative, whatever the depth."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


# One decoder for every call, as `json.loads` keeps one for calls without options (it is stateless between
# calls); with options, `json.loads` would build a new one each time, which costs a webhook more than parsing it.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def parse_json(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of `raw`, or JsonInputError saying why it is refused."""
    try:
        # bytes are decoded as json.loads decodes them
        text = raw.decode(json.detect_encoding(raw), "surrogatepass") if isinstance(raw, bytes) else raw
        value = _DECODER.decode(text)
    except JsonInputError:
        raise
    except RecursionError:
        raise JsonInputError(f"nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError:
        raise JsonInputError("not UTF-8") from None
    except ValueError as exc:  # json.JSONDecodeError, or an integer of too many digits
        raise JsonInputError("not valid JSON" if isinstance(exc, json.JSONDecodeError)
                             else "a number has too many digits") from None
    opening = (b"{", b"[") if isinstance(raw, bytes) else ("{", "[")
    if raw.count(opening[0]) + raw.count(opening[1]) > max_depth and nested_deeper_than(value, max_depth):  # type: ignore[arg-type]
        raise JsonInputError(f"nested deeper than {max_depth} levels")
    return value


def may_hold_unstorable(raw: bytes) -> bool:
    """Whether `raw` has a `\\u0000` or surrogate escape (cheap: real deliveries never have one)."""
    return _UNSTORABLE_ESCAPE.search(raw) is not None


def storable(value: Any) -> Any:
    """The same JSON value with NUL and lone surrogates replaced by U+FFFD, in keys and strings."""
    if isinstance(value, str):
        return UNSTORABLE_CHARS.sub("\ufffd", value)
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value


def has_unstorable(text: str) -> bool:
    return UNSTORABLE_CHARS.search(text) is not None


def unstorable_paths(value: Any) -> Iterator[tuple[Any, ...]]:
    """The path (keys and indexes from the top) of every key or string holding NUL or a lone surrogate."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if has_unstorable(item):
                yield path
        elif isinstance(item, dict):
            for key, child in item.items():
                if has_unstorable(str(key)):
                    yield (*path, key)
                stack.append((child, (*path, key)))
        elif isinstance(item, list):
            stack.extend((child, (*path, i)) for i, child in enumerate(item))


def json_integer(value: object) -> int | None:
    """An integer as JSON Schema counts one, as an int: `141`, and `141.0` too (a number whose fraction is
    zero is an integer there); None for a boolean, `141.5`, `"141"` or anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def json_object(value: object) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one: a missing or malformed section reads as empty."""
    return value if isinstance(value, dict) else {}


def iso(value: datetime | None) -> str | None:
    """A timestamp as our JSON writes it (ISO 8601; Flask's provider would write an HTTP date), None as null."""
    return value.isoformat() if value is not None else None


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON with `parse_json` for reading: `request.get_json()` follows the same rules everywhere
    (a refused body is a 400 from Flask, never a RecursionError)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return parse_json(s)
