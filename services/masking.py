"""The one rule for showing a phone number to someone who should not have all of it.

`+905321234567` -> `+90 532 *** ** 67`: support can tell farmers apart and read a number back to
them, nobody can call them. The same rule masks numbers inside free text (log lines).
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


def mask_phones_in(text: str) -> str:
    """Every phone number inside `text` masked by `mask_phone` (for log lines and error messages)."""
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)) or "", text)
