"""The one rule for showing a phone number to someone who should not have all of it.

`+905321234567` -> `+90 532 *** ** 67`: support can tell farmers apart and read a number back to
them, nobody can call them. The same rule masks numbers inside free text (log lines), and the numbers
carried inside Meta's message ids: a wamid is base64 of a blob that starts with the phone.
"""

from __future__ import annotations

import re

# 11-15 digits, optionally with a leading "+", not part of a longer digit run or a word: a phone number.
# Ten digits (epoch seconds) and shorter ids stay readable.
_PHONE_IN_TEXT = re.compile(r"(?<![\w.+])\+?\d{11,15}(?![\d])")


def mask_phone(phone: str | None) -> str | None:
    """Turkish mobiles as `+90 532 *** ** 67`; other numbers keep two leading and two trailing digits."""
    if not phone:
        return None
    digits = "".join(ch for ch in phone if ch.isdigit())
    if digits.startswith("90") and len(digits) == 12:
        return f"+90 {digits[2:5]} *** ** {digits[-2:]}"
    if len(digits) <= 4:
        return "*" * len(digits)
    return f"+{digits[:2]} {'*' * (len(digits) - 4)}{digits[-2:]}"


# `wamid.` and base64 (standard or URL-safe): Meta's message ids, ours and the farmers'.
_WAMID_IN_TEXT = re.compile(r"wamid\.[A-Za-z0-9+/=_-]+")
WAMID_TAIL = 12


def mask_wamid(wamid: str) -> str:
    """`wamid.HBgMOTA1MzIxMTEwMDgx...Njc4OUFCQ0QA` -> `wamid…Njc4OUFCQ0QA`: its last WAMID_TAIL characters,
    which encode the end of Meta's own message id (the phone is at the blob's start), enough to find the
    message (`wamid LIKE '%Njc4OUFCQ0QA'`) and never enough to decode the farmer's number."""
    return "wamid…" + wamid.removeprefix("wamid.")[-WAMID_TAIL:]


def mask_phones_in(text: str) -> str:
    """Every phone number inside `text` masked by `mask_phone`, and every wamid by `mask_wamid` (for log
    lines and error messages)."""
    text = _WAMID_IN_TEXT.sub(lambda m: mask_wamid(m.group(0)), text)
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)) or "", text)
