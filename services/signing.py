"""Signature version 2 between the service and N8N, both directions: one header binds the time, the
direction and the analysis to the exact bytes sent.

    X-ZiraAI-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<purpose>.<analysis_id>." + raw body)>

A signature over the body alone could be replayed: a callback captured for analysis 7 posted to
`/webhooks/n8n/8`, or our own request to N8N posted back to us as a result. Here:
- `purpose` is `request` on our call to N8N and `result` on what N8N sends back (its callback, or a
  signed sync answer); `analysis_id` is the decimal id, and the body's `analysis_id` must equal it;
- `t` is covered exactly as written in the header, and is refused more than `TOLERANCE_SECONDS` from
  the receiver's clock, in either direction;
- every secret of the configured list signs (one `v1=` each, the first is the current one) and any
  one may match: a rotation runs `new,old` on one side while the other still has only one of them.

Nothing here logs or raises with a secret or a MAC in it; a refusal is a `Refusal` the caller logs.

Meta's signature is here too, so there is one place that signs: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256
(app secret, raw body)>` on every webhook delivery (`meta_signature`, checked by `meta_signature_ok`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

HEADER = "X-ZiraAI-Signature"
TOLERANCE_SECONDS = 300
MAX_MACS = 8  # v1 values one header may carry: a rotation needs two

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_MAC = re.compile(r"[0-9a-fA-F]{64}")


META_HEADER = "X-Hub-Signature-256"


def meta_signature(raw: bytes, secret: str) -> str:
    """The `X-Hub-Signature-256` value Meta sends with `raw`: `sha256=` and the hex HMAC-SHA256 by the app secret."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def meta_signature_ok(raw: bytes, header: str, secrets: str | Sequence[str]) -> bool:
    """Whether `header` is Meta's signature of `raw` by the secret (or by any one of several, every one
    compared in constant time). Surrounding blanks and the hex digits' case do not matter."""
    given = header.strip().lower().encode()
    found = False
    for secret in [secrets] if isinstance(secrets, str) else secrets:
        found |= hmac.compare_digest(given, meta_signature(raw, secret).encode())
    return found


class Purpose(StrEnum):
    REQUEST = "request"  # the service's call to N8N
    RESULT = "result"  # N8N's answer: its callback, or a signed sync answer


class Refusal(StrEnum):
    """Why a signature was refused: the reason an operator reads in the log (the sender gets a 403)."""

    NO_SECRET = "no_secret"  # the receiver has no secret configured: it fails closed
    MISSING = "missing"  # no header
    MALFORMED = "malformed"  # not `t=<digits>,v1=<64 hex>[,v1=...]`
    STALE = "stale"  # `t` more than TOLERANCE_SECONDS from the receiver's clock
    WRONG_PURPOSE = "wrong_purpose"  # a valid signature for the other direction (our request replayed as a result)
    WRONG_ID = "wrong_id"  # a valid signature for another analysis, or a body whose analysis_id differs
    BAD_MAC = "bad_mac"  # none of the MACs matches any of our secrets


def mac(secret: str, t: str, purpose: Purpose, analysis_id: int, raw: bytes) -> str:
    """The hex HMAC-SHA256 over `"<t>.<purpose>.<analysis_id>." + raw`."""
    message = f"{t}.{purpose.value}.{int(analysis_id)}.".encode("ascii") + raw
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(raw: bytes, *, purpose: Purpose, analysis_id: int, secrets: Sequence[str], now: float) -> str:
    """The header value for `raw`: `t=<now>` and one `v1=` per secret, the current (first) one first."""
    if isinstance(secrets, str) or not secrets or not all(secrets):
        raise ValueError("secrets must be a non-empty sequence of non-empty secrets")
    t = str(int(now))
    return ",".join([f"t={t}", *(f"v1={mac(s, t, purpose, analysis_id, raw)}" for s in secrets)])


def parse_header(header: str) -> tuple[str, list[str]] | None:
    """`(t, [v1 values in lower case])`, or None when the header is malformed. Unknown keys are ignored
    (a later version may add its own values beside `v1`)."""
    t: str | None = None
    macs: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return None
        if key == "t":
            if t is not None or not _TIMESTAMP.fullmatch(value):
                return None
            t = value
        elif key == "v1":
            if not _HEX_MAC.fullmatch(value):
                return None
            macs.append(value.lower())
    if t is None or not macs or len(macs) > MAX_MACS:
        return None
    return t, macs


def _matches(given: list[str], secrets: Sequence[str], t: str, purpose: Purpose, analysis_id: int,
             raw: bytes) -> bool:
    expected = [mac(s, t, purpose, analysis_id, raw).encode("ascii") for s in secrets]
    found = False
    for candidate in given:  # every pair compared in constant time, no early exit
        for e in expected:
            found |= hmac.compare_digest(candidate.encode("ascii"), e)
    return found


def verify(raw: bytes, header: str | None, *, purpose: Purpose, analysis_id: int, secrets: Sequence[str],
           now: float) -> Refusal | None:
    """None when `header` signs `raw` for this purpose and analysis with one of `secrets`, else why not.

    On a wrong MAC it tells a replay apart from a forgery for the log: a signature that is valid for the
    other purpose is WRONG_PURPOSE; one valid for the analysis id the body names is WRONG_ID.
    """
    if isinstance(secrets, str):
        raise TypeError("secrets is a sequence of secrets, not one string")
    secrets = [s for s in secrets if s]
    if not secrets:
        return Refusal.NO_SECRET
    if not header or not header.strip():
        return Refusal.MISSING
    parsed = parse_header(header)
    if parsed is None:
        return Refusal.MALFORMED
    t, given = parsed
    if abs(now - int(t)) > TOLERANCE_SECONDS:
        return Refusal.STALE
    if _matches(given, secrets, t, purpose, analysis_id, raw):
        return None
    other = Purpose.RESULT if purpose is Purpose.REQUEST else Purpose.REQUEST
    if _matches(given, secrets, t, other, analysis_id, raw):
        return Refusal.WRONG_PURPOSE
    claimed = _claimed_id(raw)
    if claimed is not None and claimed != analysis_id and _matches(given, secrets, t, purpose, claimed, raw):
        return Refusal.WRONG_ID
    return Refusal.BAD_MAC


def body_id(body: Any) -> int | None:
    """The body's `analysis_id` as an int: a JSON integer or its decimal string; None when absent or other."""
    value = body.get("analysis_id") if isinstance(body, dict) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def check_body_id(body: Any, analysis_id: int) -> Refusal | None:
    """WRONG_ID unless the (already verified and parsed) body's `analysis_id` is the signed id."""
    return None if body_id(body) == analysis_id else Refusal.WRONG_ID


def _claimed_id(raw: bytes) -> int | None:
    """The analysis id an unverified body names, only to label a refusal; None when it names none."""
    try:
        return body_id(json.loads(raw))
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses
        return None
