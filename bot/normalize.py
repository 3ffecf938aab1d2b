"""Turkish-aware text folding for intent matching.

Farmers write `İPTAL`, `Iptal`, `iptal`, `yardim`, `Kalan hakkım!`. Python's `str.lower()` turns
`İ` into `i̇` (with a combining dot) and `I` into `i`, both wrong for Turkish, so we map the dotted
and dotless capitals first, then fold diacritics (`ı ğ ü ş ö ç` also match `i g u s o c`), drop
punctuation and squeeze spaces. Styled letters from "fancy text" keyboards (`𝐈𝐏𝐓𝐀𝐋`), full-width
forms and ligatures become plain letters first (NFKC). Folding is idempotent: `fold(fold(x)) == fold(x)`.
"""

from __future__ import annotations

import re
import unicodedata

_TURKISH_UPPER = str.maketrans({"İ": "i", "I": "ı"})
_TURKISH_LOWER = str.maketrans({"i": "İ", "ı": "I"})
_FOLD = str.maketrans({"ı": "i", "ğ": "g", "ü": "u", "ş": "s", "ö": "o", "ç": "c", "â": "a", "î": "i", "û": "u"})
_NOT_WORD = re.compile(r"[\W_]+")  # punctuation, spaces and underscores: one space


def turkish_lower(text: str) -> str:
    return text.translate(_TURKISH_UPPER).lower()


def upper_first(text: str, locale: str = "tr") -> str:
    """The first letter capitalised, the rest as written, for a name shown as a heading: in Turkish `i` is `İ`
    and `ı` is `I` (`incir` -> `İncir`; Python's `upper()` would give `Incir`)."""
    if not text:
        return text
    first = text[0].translate(_TURKISH_LOWER) if locale == "tr" else text[0]
    return first.upper() + text[1:]


# `fold_letters` as pairs a database's replace() can apply, around its lower(): Turkish capitals first, then
# the letters lower() may leave (SQLite lowers ASCII only).
FOLD_BEFORE_LOWER: tuple[tuple[str, str], ...] = (("İ", "i"), ("I", "ı"))
FOLD_AFTER_LOWER: tuple[tuple[str, str], ...] = (
    ("ı", "i"), ("ğ", "g"), ("ü", "u"), ("ş", "s"), ("ö", "o"), ("ç", "c"),
    ("Ğ", "g"), ("Ü", "u"), ("Ş", "s"), ("Ö", "o"), ("Ç", "c"),
)


def fold_letters(text: str) -> str:
    """Turkish lower case with `ı ğ ü ş ö ç` read as `i g u s o c`, nothing else changed: `YILMAZ`, `Yılmaz`
    and `yilmaz` -> `yilmaz`, `İbrahim` -> `ibrahim` (for a search the database does the same to, as
    `services.support` does with `FOLD_BEFORE_LOWER` and `FOLD_AFTER_LOWER`)."""
    return turkish_lower(text).translate(_FOLD)


def fold(text: str | None) -> str:
    """`"  KALAN HAKKIM?! "` -> `"kalan hakkim"`; `"İPTAL"` and `"Iptal"` -> `"iptal"`."""
    if not text:
        return ""
    lowered = turkish_lower(unicodedata.normalize("NFKC", text)).translate(_FOLD)
    # Any other accent (é, ñ, a combining dot left by a stray İ): strip the combining marks.
    stripped = "".join(c for c in unicodedata.normalize("NFKD", lowered) if not unicodedata.combining(c))
    return _NOT_WORD.sub(" ", stripped).strip()
