"""Hypothesis strategies for what only an attacker (or a broken client) sends: lone surrogates and NUL in
strings, JSON nested far deeper than anyone needs, numbers beyond a float or beyond Python's digit limit,
dates at the ends of the calendar in far-away time zones, and request headers no client would send
(credentials that cannot be decoded). Shared by the parser fuzzing (tests/test_fuzz_parsers.py) and the
admin API fuzzing (tests/test_admin_fuzz.py).

Raw JSON is built as text, because `json.dumps` cannot write `1e400` or 5,000 levels of nesting:
`raw_json(value)` writes a value whose `Raw` parts go into the text as they are.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from services.json_input import MAX_DEPTH

# --- strings ----------------------------------------------------------------------------------------

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
NUL = st.just("\x00")
# Text with at least one character no database column stores, anywhere in it.
unstorable_text = st.builds(lambda before, bad, after: before + bad + after,
                            st.text(max_size=12), SURROGATES | NUL, st.text(st.characters(exclude_categories=()),
                                                                            max_size=12))


# --- raw JSON -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A piece of JSON text written as it is (a number token, a deep nest...)."""

    text: str
    acceptable: bool  # whether a strict reader (services.json_input.parse_json) should take it


def raw_json(value: Any) -> bytes:
    """`value` as JSON text, with every `Raw` inside it written verbatim."""
    pieces: list[Raw] = []

    def mark(item: Any) -> Any:
        if isinstance(item, Raw):
            pieces.append(item)
            return f"@@raw{len(pieces) - 1}@@"
        if isinstance(item, dict):
            return {k: mark(v) for k, v in item.items()}
        if isinstance(item, list):
            return [mark(v) for v in item]
        return item

    text = json.dumps(mark(value))
    for i, piece in enumerate(pieces):
        text = text.replace(f'"@@raw{i}@@"', piece.text, 1)
    return text.encode("utf-8", "surrogatepass")


def acceptable(value: Any) -> bool:
    """Whether every `Raw` in `value` is one a strict reader takes (the rest of `value` is plain JSON)."""
    if isinstance(value, Raw):
        return value.acceptable
    if isinstance(value, dict):
        return all(acceptable(v) for v in value.values())
    if isinstance(value, list):
        return all(acceptable(v) for v in value)
    return True


# Numbers JSON can write that a float or Python cannot hold (refused), and edge numbers that are fine.
refused_numbers = st.sampled_from(["1e400", "-1e400", "1e309", "-2.5E+999", "NaN", "Infinity", "-Infinity"]).map(
    lambda t: Raw(t, False)) | st.integers(4301, 6000).map(lambda n: Raw("9" * n, False))
edge_numbers = st.sampled_from(["1e308", "-1.7976931348623157e308", "5e-324", "1e-400", "-0", "0.0",
                                str(2**63), str(-(2**63) - 1), str(2**64), str(2**31), "1" + "0" * 300]).map(
    lambda t: Raw(t, True)) | st.integers().map(lambda n: Raw(str(n), True))


SHALLOW = 40  # a nest this deep is taken wherever it is put, in a body up to 20 levels deep


@st.composite
def nests(draw: st.DrawFn) -> Raw:
    """Arrays and objects nested around a value: shallow (taken) or beyond the depth limit (refused), up to
    far beyond Python's own recursion limit."""
    depth = draw(st.integers(1, SHALLOW) | st.integers(MAX_DEPTH + 1, 200) | st.integers(900, 20_000))
    kinds = draw(st.sampled_from(["array", "object", "mixed"]))
    opening, closing = [], []
    for level in range(depth):
        as_array = kinds == "array" or (kinds == "mixed" and level % 2 == 0)
        opening.append("[" if as_array else '{"k":')
        closing.append("]" if as_array else "}")
    # The empty list inside is one more level.
    return Raw("".join(opening) + "[]" + "".join(reversed(closing)), depth <= SHALLOW)


hostile_scalars = unstorable_text | refused_numbers | edge_numbers
hostile_values = hostile_scalars | nests() | st.lists(hostile_scalars, min_size=1, max_size=3) | st.dictionaries(
    unstorable_text | st.text(max_size=8), hostile_scalars, min_size=1, max_size=3)


def is_finite_json(value: Any) -> bool:
    """No NaN or infinity anywhere in a parsed value."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(is_finite_json(v) for v in value.values())
    if isinstance(value, list):
        return all(is_finite_json(v) for v in value)
    return True


# --- dates --------------------------------------------------------------------------------------------

offsets = st.builds(timezone, st.timedeltas(min_value=-timedelta(hours=23, minutes=59),
                                            max_value=timedelta(hours=23, minutes=59)).map(
    lambda d: timedelta(minutes=round(d.total_seconds() / 60))))
# Anywhere in the calendar, most often at its two ends, in any offset: converting to UTC can overflow.
calendar_ends = st.sampled_from([datetime.min, datetime.max, datetime(1, 1, 1, 0, 30), datetime(9999, 12, 31, 23)])
any_dates = (calendar_ends | st.datetimes()).flatmap(
    lambda d: st.sampled_from([d.isoformat(), d.date().isoformat()])
    | offsets.map(lambda tz: d.replace(tzinfo=tz).isoformat())
    | st.just(d.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")))


# --- headers ------------------------------------------------------------------------------------------

# A header's bytes as a WSGI server hands them over: Latin-1 text, so `Basic \\xc3\\xa9` from curl is
# "Basic Ã©" (gunicorn refuses control characters, so none here).
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
# Base64 that decodes, to bytes that may not be UTF-8 (a lone surrogate's bytes, Latin-1) or hold NUL.
_encoded = (st.binary(max_size=30) | (unstorable_text | st.text(max_size=12)).map(
    lambda t: t.encode("utf-8", "surrogatepass"))).map(lambda b: base64.b64encode(b).decode())
# The credentials part: Latin-1 text where the base64 goes (werkzeug raised ValueError on it), base64 of
# anything, base64 with its padding or alphabet wrong.
_credentials = header_text | _encoded | _encoded.map(lambda t: t.rstrip("=") + "=" * 3) | st.sampled_from(
    ["\u00c3\u00a9", "\u00e9", "//79", "=", "", "Og==", "A", "-_-_", "a b c", "e30.e30.", "x.y.z"])
authorization_headers = st.builds(lambda scheme, gap, rest: scheme + gap + rest,
                                  st.sampled_from(["Basic", "basic", "BASIC", "Bearer", "bearer", "Digest", "",
                                                   "\u00c3\u00a9"]),
                                  st.sampled_from([" ", "", "  ", "\t"]), _credentials)
# Headers the app, Flask or werkzeug read: credentials, the console's cookie, content negotiation,
# conditional and partial requests (static files), the proxy's and the browsers' headers, signatures.
PARSED_HEADERS = ("Cookie", "Accept", "Accept-Language", "Accept-Encoding", "If-Modified-Since", "If-None-Match",
                  "If-Range", "Range", "X-Forwarded-For", "X-Forwarded-Proto", "Origin", "Referer",
                  "Sec-Fetch-Site", "Sec-Fetch-Mode", "X-Hub-Signature-256", "X-ZiraAI-Signature", "Content-Type")
hostile_headers = st.fixed_dictionaries({"Authorization": authorization_headers}, optional={
    name: header_text | st.sampled_from(["ziraai_console=" + "\u00e9" * 8, "bytes=-0-", "bytes=9-1,", "W/\"\u00e9",
                                         "Thu, 01 Jan 0000 00:00:00 GMT", "*;q=NaN", "tr;q=1e400,en"])
    for name in PARSED_HEADERS})
