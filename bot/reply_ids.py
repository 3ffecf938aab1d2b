"""The ids of our buttons and list rows (and template quick-reply payloads) as typed values.

WhatsApp gives a tapped id back as a string, so every id we send is built by `encode` and read by `parse`
here and nowhere else. The wire strings (`menu:analyze`, `history:42`, ...) are what farmers' phones and
approved templates already hold: they must keep parsing as long as an old message can still be tapped.
An id comes back from the phone, so anyone can forge one: `parse` returns None for anything that is not
an id we could have sent (numbers: ASCII digits naming a possible row) and never raises.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

MAX_ID_NUMBER = 2**31 - 1  # analyses' ids (INTEGER columns)
MAX_MESSAGE_NUMBER = 2**63 - 1  # messages' ids (BIGINT columns): a photo's `Gönder`
MAX_LENGTH = 256  # Meta's limit for a button or row id
_ROW_NUMBER = re.compile(r"[0-9]{1,10}")  # as read since the first release: `history:007` is analysis 7
_MESSAGE_NUMBER = re.compile(r"[1-9][0-9]{0,18}")  # canonical, as the pending submissions are keyed
_PHOTO_COUNT = re.compile(r"[1-9]")  # photos a confirmation showed (an album has at most five)
_KEY = re.compile(r"[a-z0-9_]{1,32}")  # crop keys, language codes


class MenuChoice(enum.StrEnum):
    ANALYZE = "analyze"
    QUOTA = "quota"
    CODE = "code"
    HISTORY = "history"
    HELP = "help"
    LANGUAGE = "language"


@dataclass(frozen=True)
class Consent:
    """`consent:yes` / `consent:no`: the privacy notice's buttons."""

    given: bool


@dataclass(frozen=True)
class Menu:
    """`menu:<choice>`: a row of the menu list, or a template's quick reply."""

    choice: MenuChoice


@dataclass(frozen=True)
class Crop:
    """`crop:<key>`: a row of the crop list (`crop:diger`: the farmer types it). The key's shape only: whether
    it is a crop we know is the conversation's question."""

    key: str


@dataclass(frozen=True)
class SkipLocation:
    """`location:skip`."""


@dataclass(frozen=True)
class SendPending:
    """`submit:<photo message id>:<photo count>`: the `Gönder` of a confirmation, tappable as long as it is
    pending; the count is what that confirmation showed (`submit:<id>`, as sent before: not known)."""

    photo_message_id: int
    photo_count: int | None = None


@dataclass(frozen=True)
class AddPhoto:
    """`photo:add:<photo message id>`: the `Fotoğraf ekle` of a confirmation (one more photo of the album)."""

    photo_message_id: int


@dataclass(frozen=True)
class CancelConfirm:
    """`confirm:cancel:<photo message id>`: the `İptal` of a confirmation, naming the submission it cancels
    (`confirm:cancel`, as sent before: the submission in progress)."""

    photo_message_id: int | None = None


@dataclass(frozen=True)
class Details:
    """`result:details:<analysis id>` under a result; `result:details` (a template's button): the latest."""

    analysis_id: int | None


@dataclass(frozen=True)
class NewAnalysis:
    """`result:new`."""


@dataclass(frozen=True)
class BackToMenu:
    """`result:menu`."""


@dataclass(frozen=True)
class HistoryPick:
    """`history:<analysis id>`: a row of the recent-analyses list."""

    analysis_id: int


@dataclass(frozen=True)
class Language:
    """`lang:<code>`. The code's shape only: whether we speak it is the conversation's question."""

    code: str


ReplyId = (Consent | Menu | Crop | SkipLocation | SendPending | AddPhoto | CancelConfirm | Details | NewAnalysis
           | BackToMenu | HistoryPick | Language)


def encode(reply: ReplyId) -> str:
    """The wire string of an id (what the button carries and the webhook brings back)."""
    match reply:
        case Consent(given=given):
            return "consent:yes" if given else "consent:no"
        case Menu(choice=choice):
            return f"menu:{choice.value}"
        case Crop(key=key):
            return f"crop:{key}"
        case SkipLocation():
            return "location:skip"
        case SendPending(photo_message_id=number, photo_count=None):
            return f"submit:{number}"
        case SendPending(photo_message_id=number, photo_count=count):
            return f"submit:{number}:{count}"
        case AddPhoto(photo_message_id=number):
            return f"photo:add:{number}"
        case CancelConfirm(photo_message_id=None):
            return "confirm:cancel"
        case CancelConfirm(photo_message_id=number):
            return f"confirm:cancel:{number}"
        case Details(analysis_id=None):
            return "result:details"
        case Details(analysis_id=number):
            return f"result:details:{number}"
        case NewAnalysis():
            return "result:new"
        case BackToMenu():
            return "result:menu"
        case HistoryPick(analysis_id=number):
            return f"history:{number}"
        case Language(code=code):
            return f"lang:{code}"
    raise TypeError(f"not a reply id: {reply!r}")


_FIXED: dict[str, ReplyId] = {
    "consent:yes": Consent(True),
    "consent:no": Consent(False),
    "location:skip": SkipLocation(),
    "confirm:cancel": CancelConfirm(),
    "result:details": Details(None),
    "result:new": NewAnalysis(),
    "result:menu": BackToMenu(),
    **{f"menu:{c.value}": Menu(c) for c in MenuChoice},
}


def _number(text: str, shape: re.Pattern[str], limit: int) -> int | None:
    if not shape.fullmatch(text):
        return None
    number = int(text)
    return number if 0 < number <= limit else None


def parse(text: object) -> ReplyId | None:
    """The id a tapped button or row brought back; None for anything we could not have sent."""
    if not isinstance(text, str) or len(text) > MAX_LENGTH:
        return None
    if text in _FIXED:
        return _FIXED[text]
    prefix, _, rest = text.partition(":")
    if prefix == "result" and rest.startswith("details:"):
        number = _number(rest.removeprefix("details:"), _ROW_NUMBER, MAX_ID_NUMBER)
        return Details(number) if number is not None else None
    if prefix == "history":
        number = _number(rest, _ROW_NUMBER, MAX_ID_NUMBER)
        return HistoryPick(number) if number is not None else None
    if prefix == "submit":
        rest, colon, shown = rest.partition(":")
        number = _number(rest, _MESSAGE_NUMBER, MAX_MESSAGE_NUMBER)
        if number is None or (colon and not _PHOTO_COUNT.fullmatch(shown)):
            return None
        return SendPending(number, int(shown) if shown else None)
    if prefix == "photo" and rest.startswith("add:"):
        number = _number(rest.removeprefix("add:"), _MESSAGE_NUMBER, MAX_MESSAGE_NUMBER)
        return AddPhoto(number) if number is not None else None
    if prefix == "confirm" and rest.startswith("cancel:"):
        number = _number(rest.removeprefix("cancel:"), _MESSAGE_NUMBER, MAX_MESSAGE_NUMBER)
        return CancelConfirm(number) if number is not None else None
    if prefix == "crop" and _KEY.fullmatch(rest):
        return Crop(rest)
    if prefix == "lang" and _KEY.fullmatch(rest):
        return Language(rest)
    return None
