"""A place as the farmer's phone names it, said once.

A shared WhatsApp location carries a name and an address that often repeat each other ("Konya" and
"Selçuklu, Konya"); joined as they come they read "Konya, Selçuklu, Konya". Pure text, no I/O.
"""

from __future__ import annotations

from bot.normalize import fold


def tidy_place(*parts: str | None) -> str:
    """The comma-separated pieces of every part, each said once (compared folded: `İzmir` = `izmir`),
    in the order they first appear; empty pieces are dropped."""
    seen: set[str] = set()
    pieces: list[str] = []
    for part in parts:
        for piece in (part or "").split(","):
            piece = " ".join(piece.split())
            key = fold(piece)
            if piece and key not in seen:
                seen.add(key)
                pieces.append(piece)
    return ", ".join(pieces)


# Turkey's 81 provinces as they are officially written, and the short names farmers use for a few.
PROVINCES: tuple[str, ...] = (
    "Adana", "Adıyaman", "Afyonkarahisar", "Ağrı", "Aksaray", "Amasya", "Ankara", "Antalya", "Ardahan", "Artvin",
    "Aydın", "Balıkesir", "Bartın", "Batman", "Bayburt", "Bilecik", "Bingöl", "Bitlis", "Bolu", "Burdur", "Bursa",
    "Çanakkale", "Çankırı", "Çorum", "Denizli", "Diyarbakır", "Düzce", "Edirne", "Elazığ", "Erzincan", "Erzurum",
    "Eskişehir", "Gaziantep", "Giresun", "Gümüşhane", "Hakkari", "Hatay", "Iğdır", "Isparta", "İstanbul", "İzmir",
    "Kahramanmaraş", "Karabük", "Karaman", "Kars", "Kastamonu", "Kayseri", "Kırıkkale", "Kırklareli", "Kırşehir",
    "Kilis", "Kocaeli", "Konya", "Kütahya", "Malatya", "Manisa", "Mardin", "Mersin", "Muğla", "Muş", "Nevşehir",
    "Niğde", "Ordu", "Osmaniye", "Rize", "Sakarya", "Samsun", "Siirt", "Sinop", "Sivas", "Şanlıurfa", "Şırnak",
    "Tekirdağ", "Tokat", "Trabzon", "Tunceli", "Uşak", "Van", "Yalova", "Yozgat", "Zonguldak",
)
_SHORT_NAMES = {"afyon": "Afyonkarahisar", "antep": "Gaziantep", "maras": "Kahramanmaraş", "urfa": "Şanlıurfa",
                "icel": "Mersin", "izmit": "Kocaeli", "adapazari": "Sakarya", "dersim": "Tunceli"}
_PROVINCE_BY_FOLDED = {fold(name): name for name in PROVINCES} | _SHORT_NAMES
# A province's name followed by one of these names a street or a quarter ("Ankara Yolu", "Konya Cad."), not
# the province.
_STREET_WORDS = frozenset({"yolu", "caddesi", "cad", "cd", "sokak", "sokagi", "sk", "bulvari", "blv", "mahallesi",
                           "mah", "mh"})


def province_in(place: str | None) -> str | None:
    """The province a place names, officially written (`"Karaköy Mah. No:5, 42250 Selçuklu/Konya"` ->
    `"Konya"`), else None. Addresses end with the province, so the last one named wins. Only a name from
    the list ever comes back: whatever else the farmer or their phone wrote (a street, a farm's or a
    person's name) stays out of what a sponsor sees."""
    words = fold(place).split()
    for i in reversed(range(len(words))):
        if words[i] in _PROVINCE_BY_FOLDED and (i + 1 == len(words) or words[i + 1] not in _STREET_WORDS):
            return _PROVINCE_BY_FOLDED[words[i]]
    return None
