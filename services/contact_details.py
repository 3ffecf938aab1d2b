"""What counts as an email address or a phone number that staff type (a staff account's email, a sponsor's
contact email and phone), so the admin API, the console and the CLI refuse the same values.

Deliberately simple, no mail or numbering-plan lookup: an email is `local@domain` with an ASCII local part and
a domain of two or more labels (ASCII, or IDNA-encodable like `çiftçi.com.tr`); a phone number is written in
ASCII digits, starts with `+` (or `00`) and a country code, or with the Turkish trunk `0`, and has 7 to 15
digits after that prefix (E.164's at most 15).
"""

from __future__ import annotations

import re

MAX_EMAIL_LENGTH = 254
PHONE_EXAMPLE = "+902121234567"

_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TOP_LABEL = re.compile(r"[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59}")
# Groups of ASCII digits, an optional `+` first, single spaces or dashes between groups, an area code in brackets.
_PHONE_SHAPE = re.compile(r"\+?(\([0-9]{1,6}\)|[0-9]+)([ -]?(\([0-9]{1,6}\)|[0-9]+))*")


def is_email_address(value: str) -> bool:
    """`ayse@ornek.com.tr`, `a.b+c@çiftçi.com.tr`; not `a@b`, `ı@ı.ı`, `a b@c.com` or `a@-b.com`."""
    if len(value) > MAX_EMAIL_LENGTH or value.count("@") != 1:
        return False
    local, domain = value.split("@")
    if len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        return False
    try:
        ascii_domain = domain.encode("idna").decode("ascii")  # the standard library's IDNA (2003) codec
    except UnicodeError:
        return False
    labels = ascii_domain.split(".")
    return (len(labels) >= 2 and all(_LABEL.fullmatch(label) for label in labels)
            and _TOP_LABEL.fullmatch(labels[-1]) is not None)


def is_phone_number(value: str) -> bool:
    """`+902121234567`, `+90 (212) 123-45-67`, `0212 123 45 67`; not `123`, `2026-02-30`, `00012`,
    `((((-)))` or digits other than ASCII (`+90 555 ١١١`)."""
    if not _PHONE_SHAPE.fullmatch(value):
        return False
    digits = re.sub(r"[^0-9]", "", value)
    if value.startswith("+"):
        significant = digits
    elif digits.startswith("00"):
        significant = digits[2:]
    elif digits.startswith("0"):
        significant = digits[1:]
    else:
        return False
    return 7 <= len(significant) <= 15 and significant[0] != "0"
