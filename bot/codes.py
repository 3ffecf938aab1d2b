"""Sponsor codes as a farmer types them: recognising and normalising them is pure text work, shared by
the conversation (is this message a code attempt?) and `services.sponsorship` (which code is it?)."""

from __future__ import annotations

import re

PREFIX = "AGRI"
# No 0/O, 1/I/L: nothing a farmer could misread when typing a code from a leaflet.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

_SEP = r"[\s\-\u2010-\u2015_.]"
_GROUP = f"[{ALPHABET}]{{4}}"
_EXACT = re.compile(f"{PREFIX}({_GROUP})({_GROUP})")
_IN_TEXT = re.compile(f"(?<![A-Z0-9]){PREFIX}{_SEP}*({_GROUP}){_SEP}*({_GROUP})(?![A-Z0-9])")
_IN_TEXT_ANY_CASE = re.compile(_IN_TEXT.pattern, re.IGNORECASE)
_LOOSE = re.compile(f"{PREFIX}(?=[A-Z0-9]*[0-9])[A-Z0-9]{{6,10}}")  # a mistyped code still "looks like" one


def _upper(text: str) -> str:
    # Turkish keyboards: `İ` (dotted capital) and `ı` must both read as I.
    return text.replace("İ", "I").replace("\u0307", "").upper()


def normalize_code(text: str | None) -> str | None:
    """The canonical `AGRI-7KQ3-M9XP` for a message that is (or contains) a code, whatever its case,
    spaces or dashes (`agri 7kq3 m9xp`, `AGRI7KQ3M9XP`, `Kodum: agri-7kq3-m9xp`); None otherwise."""
    if not text:
        return None
    upper = _upper(text)
    match = _EXACT.fullmatch(re.sub(f"{_SEP}+", "", upper)) or _IN_TEXT.search(upper)
    return f"{PREFIX}-{match.group(1)}-{match.group(2)}" if match else None


def looks_like_code(text: str | None) -> bool:
    """True for a message the conversation should treat as a code attempt in any state: a valid
    code, or `AGRI` followed by 6-10 letters/digits with at least one digit (a mistyped code, to be
    answered "unknown" rather than taken for a crop or a place such as "Agri merkez")."""
    if not text:
        return False
    return normalize_code(text) is not None or bool(_LOOSE.fullmatch(re.sub(f"{_SEP}+", "", _upper(text))))


_ATTEMPT = re.compile(r"(?=[A-Z0-9]*[0-9])[A-Z0-9]{6,14}")


def is_code_attempt(text: str | None) -> bool:
    """While a code is awaited: is this message meant as one? Anything that looks like a code, starts with
    `AGRI`, or is one run of 6-14 letters and digits with a digit in it (a code typed without its `AGRI`).
    `kodum yok`, `tamam`, `no idea` are words, not codes: they are answered with the way out instead of
    "code not found"."""
    if not text:
        return False
    compact = re.sub(f"{_SEP}+", "", _upper(text.strip()))
    return looks_like_code(text) or compact.startswith(PREFIX) or bool(_ATTEMPT.fullmatch(compact))


def without_code(text: str) -> str:
    """The text with its code taken out (a photo's caption that carried one: what is left is the farmer's note);
    a text that is nothing but a code attempt leaves nothing."""
    same_length = text.replace("İ", "I").replace("ı", "i")  # positions stay those of `text`
    match = _IN_TEXT_ANY_CASE.search(same_length)
    if match is None:
        return "" if is_code_attempt(text) else text
    return " ".join(f"{text[:match.start()]} {text[match.end():]}".split())
