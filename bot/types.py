"""What the conversation takes in (events) and gives back (actions, replies). Frozen and typed."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.draft import ConversationData, Draft
from bot.enums import LenientStrEnum
from bot.reply_ids import ReplyId

ALBUM_WINDOW = timedelta(seconds=5)  # the default; the job passes the setting


class State(LenientStrEnum):
    START = "start"  # never consented (or refused): only the privacy notice is shown
    AWAIT_CONSENT = "await_consent"
    MENU = "menu"  # idle: the menu was shown, anything may come
    AWAIT_PHOTO = "await_photo"
    AWAIT_CROP = "await_crop"
    AWAIT_CROP_TEXT = "await_crop_text"
    AWAIT_LOCATION = "await_location"
    CONFIRM = "confirm"
    AWAIT_MORE_PHOTO = "await_more_photo"  # `Fotoğraf ekle` tapped: the next photo joins the confirmed submission
    AWAIT_CODE = "await_code"
    HISTORY = "history"
    AWAIT_LANGUAGE = "await_language"

    @classmethod
    def _fallback(cls) -> State:
        return cls.MENU  # a state from an older release: start again from the menu


class EventKind(enum.StrEnum):
    TEXT = "text"
    PHOTO = "photo"
    REPLY = "reply"  # tapped reply button, list row or template quick reply
    LOCATION = "location"
    UNSUPPORTED = "unsupported"  # audio, video, document, sticker, reaction, contacts, ...


@dataclass(frozen=True)
class QuotaBlock:
    """Why the farmer cannot be charged for an analysis now (looked up without charging), for the photo."""

    reason: str  # `daily`, `monthly` or `no_subscription`
    resets_at: datetime | None = None  # when analyses are possible again: the limit renews or the next package starts
    package_ends_at: datetime | None = None  # the package ends before the limit renews (and none follows it)
    code_helps: bool = True  # a redeemed code starts at once (no package, or the Trial); False: it would only queue


@dataclass(frozen=True)
class Event:
    kind: EventKind
    message_id: int
    text: str | None = None  # text body, caption, or the tapped title
    reply: ReplyId | None = None  # the tapped id, read by `reply_ids.parse`; None also when it did not parse
    media_id: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    location_name: str | None = None
    location_address: str | None = None
    message_type: str | None = None  # Meta's type, for unsupported messages
    sent_at: datetime | None = None  # when the farmer sent it (Meta's timestamp): an album's photos come together
    # A photo, a reaction, anything while a submission waits for a code: no analysis left now (None: there is, or
    # the job did not look: other events).
    quota: QuotaBlock | None = None


@dataclass(frozen=True)
class Conversation:
    """The farmer's conversation as the state machine sees it (loaded from the database by the job)."""

    state: State
    data: ConversationData
    locale: str
    consented: bool
    expires_at: datetime | None = None
    opted_out: bool = False
    album_window: timedelta = ALBUM_WINDOW  # photos sent this soon after the first are one album
    new_trial: bool = True  # before consent: accepting would start the free Trial (never had one, no package)


@dataclass(frozen=True)
class Button:
    id: ReplyId
    title: str


@dataclass(frozen=True)
class ListRow:
    id: ReplyId
    title: str
    description: str | None = None


@dataclass(frozen=True)
class Reply:
    """A message to the farmer, already in their language. Buttons XOR list rows."""

    text: str
    buttons: tuple[Button, ...] = ()
    rows: tuple[ListRow, ...] = ()
    list_button: str | None = None
    # The reply turns an analysis away: the quota's reason (`QuotaBlock.reason`), for the operators' count of
    # refusals, taken where the farmer is told rather than where a charge fails (most never reach one).
    quota_refusal: str | None = None


# --- actions: what the job must do after the state machine has decided ----------------------------


@dataclass(frozen=True)
class Send:
    reply: Reply


@dataclass(frozen=True)
class RecordConsent:
    given: bool


@dataclass(frozen=True)
class SetLocale:
    locale: str


@dataclass(frozen=True)
class SetOptOut:
    opted_out: bool


@dataclass(frozen=True)
class RequestDeletion:
    pass


@dataclass(frozen=True)
class RequestHuman:
    """The farmer asked for a person: support sees it among the conversations that need a human."""


@dataclass(frozen=True)
class ShowQuota:
    pass


@dataclass(frozen=True)
class ShowHistory:
    pass


@dataclass(frozen=True)
class ShowAnalysis:
    analysis_id: int


@dataclass(frozen=True)
class ShowDetails:
    """The rest of an analysis result; None: the farmer's latest completed one (template button)."""

    analysis_id: int | None


@dataclass(frozen=True)
class RedeemCode:
    """Redeem the code; then the job asks `machine.after_redeem` whether a waiting photo continues."""

    text: str


@dataclass(frozen=True)
class Submit:
    """Charge one analysis and queue it. Keyed by the photo's message id: a second tap is a no-op."""

    photo_message_id: int
    media_id: str | None
    crop: str | None
    notes: str | None
    location_text: str | None
    latitude: float | None
    longitude: float | None
    media_ids: tuple[str, ...] = ()  # every photo of the submission, first = `media_id`
    draft: Draft | None = None  # the submission itself: it waits again if the charge is refused


@dataclass(frozen=True)
class ExplainNotPending:
    """A confirmation's button (`Gönder`, `Fotoğraf ekle`, `İptal`) whose submission no longer waits: the job
    looks up whether it was sent (and how far its analysis got) or never sent, and says so."""

    photo_message_id: int


Action = (Send | RecordConsent | SetLocale | SetOptOut | RequestDeletion | RequestHuman | ShowQuota | ShowHistory
          | ShowAnalysis | ShowDetails | RedeemCode | Submit | ExplainNotPending)


@dataclass(frozen=True)
class Step:
    state: State
    data: ConversationData
    actions: tuple[Action, ...] = field(default_factory=tuple)
