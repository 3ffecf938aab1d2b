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
