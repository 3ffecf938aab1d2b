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
_FOLD = str.maketrans({"ı": "i", "ğ": "g", "ü": "u", "ş": "s", "ö": "o", "ç": "c", "â": "a", "î": "i", "û": "u"})
_NOT_WORD = re.compile(r"[\W_]+")  # punctuation, spaces and underscores: one space


def turkish_lower(text: str) -> str:
    return text.translate(_TURKISH_UPPER).lower()


def fold(text: str | None) -> str:
    """`"  KALAN HAKKIM?! "` -> `"kalan hakkim"`; `"İPTAL"` and `"Iptal"` -> `"iptal"`."""
    if not text:
        return ""
    lowered = turkish_lower(unicodedata.normalize("NFKC", text)).translate(_FOLD)
    # Any other accent (é, ñ, a combining dot left by a stray İ): strip the combining marks.
    stripped = "".join(c for c in unicodedata.normalize("NFKD", lowered) if not unicodedata.combining(c))
    return _NOT_WORD.sub(" ", stripped).strip()
