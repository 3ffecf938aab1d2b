"""The crops offered in the list, and the names farmers type for them (folded, Turkish and English)."""

from __future__ import annotations

from bot.intents import is_sentence
from bot.normalize import fold, fold_letters
from bot.place import province_in
from translations import N_, SUPPORTED_LOCALES, gettext

# (key, display name to translate, other names farmers write). The first ten fit one WhatsApp list
# (10 rows at most, "Diğer" included); the rest are still understood when typed or in a caption.
CROPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("domates", N_("Tomato"), ("domates", "tomato", "domatesler")),
    ("biber", N_("Pepper"), ("biber", "pepper", "biberler")),
    ("salatalik", N_("Cucumber"), ("salatalik", "hiyar", "cucumber")),
    ("patlican", N_("Eggplant"), ("patlican", "eggplant", "aubergine")),
    ("bugday", N_("Wheat"), ("bugday", "wheat")),
    ("misir", N_("Maize"), ("misir", "maize", "corn")),
    ("pamuk", N_("Cotton"), ("pamuk", "cotton")),
    ("uzum", N_("Grape"), ("uzum", "asma", "bag", "grape", "vine")),
    ("zeytin", N_("Olive"), ("zeytin", "olive")),
    ("findik", N_("Hazelnut"), ("findik", "hazelnut")),
    ("elma", N_("Apple"), ("elma", "apple")),
    ("narenciye", N_("Citrus"), ("narenciye", "portakal", "limon", "mandalina", "citrus", "orange", "lemon")),
)
LIST_CROPS = CROPS[:9]
OTHER = "diger"
_BY_KEY = {key: name for key, name, _ in CROPS}
_ALIASES = {alias: key for key, _, aliases in CROPS for alias in aliases}
# A crop's emoji names it too (folding drops emoji, so they are looked up as written).
_EMOJI = {"🍅": "domates", "🌶": "biber", "🫑": "biber", "🥒": "salatalik", "🍆": "patlican", "🌾": "bugday",
          "🌽": "misir", "🍇": "uzum", "🫒": "zeytin", "🍎": "elma", "🍏": "elma", "🍊": "narenciye", "🍋": "narenciye"}


def display_name(key: str) -> str | None:
    """The msgid of a known crop's name (translate it), or None for a farmer's own free text."""
    return _BY_KEY.get(key)


def keys_named(text: str) -> list[str]:
    """The known crops whose key, a name farmers write, or displayed name in any language contains `text`,
    folded (`Buğday`, `bugday`, `Wheat`, `salatalık`, `Cucum`): what a search for a crop as people read it
    must also find, since analyses store the key."""
    wanted = fold_letters(text.strip())
    if not wanted:
        return []
    return [key for key, name, aliases in CROPS
            if any(wanted in fold_letters(n)
                   for n in (key, *aliases, *(gettext(locale, name) for locale in SUPPORTED_LOCALES)))]


def find_crop(text: str | None) -> str | None:
    """The crop named anywhere in the text: `domates yaprakları sararıyor` -> `domates`; a word first, else an
    emoji (`🍅`)."""
    words = fold(text).split()
    for word in words:
        if word in _ALIASES:
            return _ALIASES[word]
        # Turkish suffixes: "domatesimde", "biberlerin" start with the crop's name.
        for alias, key in _ALIASES.items():
            if len(alias) >= 4 and word.startswith(alias):
                return key
    return next((_EMOJI[c] for c in text or "" if c in _EMOJI), None)


def looks_like_name(text: str | None) -> bool:
    """Could this be a crop's name the list does not have (`fasulye`, `kiraz`, `şeker pancarı`)? A few words
    of letters only, short; not a sentence, a number or an emoji. (The conversation also leaves out words
    such as `evet` or `merhaba`: `intents.is_small_talk`.)"""
    words = (text or "").split()
    return (0 < len(words) <= 3 and 2 <= len(" ".join(words)) <= 30
            and all(all(c.isalpha() or c in "-'’" for c in word) for word in words) and not never_a_name(text))


# Produce a province's name is often given to (`Antep fıstığı`, `Malatya kayısısı`, `Aydın inciri`, `Rize çayı`):
# after a province, one of these words (folded, bare or with its compound ending) makes the text a crop's name.
REGIONAL_PRODUCE = frozenset({
    "fistik", "fistigi", "kayisi", "kayisisi", "incir", "inciri", "cay", "cayi", "kiraz", "kirazi", "ceviz",
    "cevizi", "kestane", "kestanesi", "nar", "nari", "badem", "bademi", "cilek", "cilegi", "seftali", "seftalisi",
    "armut", "armudu", "kavun", "kavunu", "karpuz", "karpuzu", "sogan", "sogani", "patates", "patatesi", "pirinc",
    "pirinci", "biberi", "domatesi", "elmasi", "uzumu", "zeytini", "findigi", "portakali", "limonu", "mandalinasi",
    "tutun", "tutunu", "lahana", "lahanasi", "havuc", "havucu", "mercimek", "mercimegi", "nohut", "nohudu",
})


def never_a_name(text: str | None) -> bool:
    """Words that are no crop's name, whatever their shape: a sentence (`bunlar aynı bitki`, `same plant`) or a
    text that names a province (`Konya`, `Konya Selçuklu`, `İzmir Bornova`: a place) unless it names a crop too
    (`Amasya elması`, a known crop; `Antep fıstığı`, `Malatya kayısısı`: `REGIONAL_PRODUCE`)."""
    if is_sentence(text):
        return True
    if province_in(text) is None or find_crop(text) is not None:
        return False
    return not any(word in REGIONAL_PRODUCE for word in fold(text).split())
