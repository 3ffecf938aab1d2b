"""What the conversation remembers between messages: the submission in progress and the ones waiting for
their `Gönder`. Frozen values for the machine; `to_json`/`from_json` are the one place that knows the JSON
stored on the conversation row. Reading is tolerant, since rows written by older releases (or left
half-way) are still read: unknown keys are ignored, missing or mistyped values take their defaults, and
an entry without a usable photo id is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

MAX_PHOTOS = 5  # photos in one submission (an album), as the source system takes


@dataclass(frozen=True)
class Photo:
    """A photo after the first of a submission: its message (for idempotency) and its media id."""

    message_id: int
    media_id: str | None = None


@dataclass(frozen=True)
class Draft:
    """A submission on its way to an analysis (one photo, or an album of up to `MAX_PHOTOS`), with what the
    farmer has told us about it so far. The first photo names it (`photo_message_id`, its `Gönder`)."""

    photo_message_id: int
    media_id: str | None = None
    notes: str | None = None  # the photos' captions, one a line
    crop: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    location_text: str | None = None
    more_photos: tuple[Photo, ...] = ()  # the album's other photos, in the order they came
    # When the album's first photo was sent (after `Fotoğraf ekle`, the first one added; kept before consent
    # and full, the first photo beyond it): an album's photos come within seconds.
    first_at: datetime | None = None
    limit_said: bool = False  # kept before consent and full: a photo beyond it came and the farmer heard the limit

    @property
    def photo_count(self) -> int:
        return 1 + len(self.more_photos)

    @property
    def media_ids(self) -> tuple[str, ...]:
        """Every photo's media id, the first photo's first."""
        return tuple(m for m in (self.media_id, *(p.media_id for p in self.more_photos)) if m)

    def has_photo(self, message_id: int) -> bool:
        return message_id == self.photo_message_id or any(p.message_id == message_id for p in self.more_photos)

    def with_photo(self, message_id: int, media_id: str | None) -> Draft:
        """One more photo of the album (the caller checks `has_photo` and `MAX_PHOTOS`)."""
        return replace(self, more_photos=(*self.more_photos, Photo(message_id, media_id)))


@dataclass(frozen=True)
class ConversationData:
    draft: Draft | None = None  # the submission being asked about now
    pending: tuple[Draft, ...] = ()  # confirmed, waiting for their `Gönder` (oldest first)
    held_text: str | None = None  # a message written before consent, answered right after it
    # Confirmations that timed out unsent (their first photos' message ids): a later tap on one hears that, not
    # "already sent or cancelled". Kept while the farmer goes on, at most `MAX_PENDING` of them.
    lapsed: tuple[int, ...] = ()

    def pending_draft(self, photo_message_id: int) -> Draft | None:
        return next((d for d in self.pending if d.photo_message_id == photo_message_id), None)

    def keep_pending(self) -> ConversationData:
        """Leaving a flow forgets the half-finished draft but keeps submissions waiting for `Gönder` (and those
        that timed out, for their buttons' answer)."""
        return ConversationData(pending=self.pending, lapsed=self.lapsed)

    def timed_out(self, limit: int) -> ConversationData:
        """After 30 idle minutes: nothing in progress or waiting; the waiting confirmations become lapsed ones (at
        most `limit`, the newest)."""
        lapsed = (*self.lapsed, *(d.photo_message_id for d in self.pending))
        return ConversationData(lapsed=lapsed[max(0, len(lapsed) - limit):])

    def with_pending(self, draft: Draft, limit: int) -> ConversationData:
        """`draft` waiting too (in its old place if it already was), at most `limit`: the oldest are forgotten."""
        ids = [d.photo_message_id for d in self.pending]
        if draft.photo_message_id in ids:
            pending = tuple(draft if d.photo_message_id == draft.photo_message_id else d for d in self.pending)
        else:
            pending = (*self.pending, draft)
        return replace(self, pending=pending[max(0, len(pending) - limit):])

    def without_pending(self, photo_message_id: int) -> ConversationData:
        return replace(self, pending=tuple(d for d in self.pending if d.photo_message_id != photo_message_id))


EMPTY = ConversationData()


def _draft_json(draft: Draft) -> dict[str, Any]:
    out: dict[str, Any] = {
        "photo_message_id": draft.photo_message_id, "media_id": draft.media_id, "notes": draft.notes,
        "crop": draft.crop, "latitude": draft.latitude, "longitude": draft.longitude,
        "location_text": draft.location_text}
    if draft.more_photos:  # only when there is an album: a one-photo draft keeps the older shape
        out["more_photos"] = [[p.message_id, p.media_id] for p in draft.more_photos]
    if draft.first_at is not None:
        out["first_at"] = draft.first_at.isoformat()
    if draft.limit_said:
        out["limit_said"] = True
    return out


def to_json(data: ConversationData) -> dict[str, Any]:
    """`{"draft": {...}, "pending": {"<photo message id>": {...}}, "held_text": "...", "lapsed": [id, ...]}`,
    each key only when it has something."""
    out: dict[str, Any] = {}
    if data.pending:
        out["pending"] = {str(d.photo_message_id): _draft_json(d) for d in data.pending}
    if data.draft is not None:
        out["draft"] = _draft_json(data.draft)
    if data.held_text is not None:
        out["held_text"] = data.held_text
    if data.lapsed:
        out["lapsed"] = list(data.lapsed)
    return out


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _float(value: object) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _id(value: object) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _datetime(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _photos(value: object, first: int) -> tuple[Photo, ...]:
    """The album's other photos: `[[message id, media id], ...]`; malformed or repeated entries are dropped."""
    photos: list[Photo] = []
    seen = {first}
    for entry in value if isinstance(value, list) else ():
        if not isinstance(entry, list) or len(entry) != 2:
            continue
        message_id = _id(entry[0])
        if message_id is None or message_id in seen or len(photos) >= MAX_PHOTOS - 1:
            continue
        seen.add(message_id)
        photos.append(Photo(message_id, _str(entry[1])))
    return tuple(photos)


def _draft_from(value: object, key: object = None) -> Draft | None:
    if not isinstance(value, dict):
        return None
    photo_message_id = _id(key) or _id(value.get("photo_message_id"))
    if photo_message_id is None:
        return None
    return Draft(photo_message_id, media_id=_str(value.get("media_id")), notes=_str(value.get("notes")),
                 crop=_str(value.get("crop")), latitude=_float(value.get("latitude")),
                 longitude=_float(value.get("longitude")), location_text=_str(value.get("location_text")),
                 more_photos=_photos(value.get("more_photos"), photo_message_id),
                 first_at=_datetime(value.get("first_at")), limit_said=value.get("limit_said") is True)


def from_json(raw: object) -> ConversationData:
    """The stored JSON read back; never raises (see the module's docstring)."""
    if not isinstance(raw, dict):
        return EMPTY
    pending: dict[int, Draft] = {}
    stored = raw.get("pending")
    for key, value in (stored.items() if isinstance(stored, dict) else ()):
        draft = _draft_from(value, key)
        if draft is not None and draft.photo_message_id not in pending:
            pending[draft.photo_message_id] = draft
    stored_lapsed = raw.get("lapsed")
    lapsed = (_id(v) for v in (stored_lapsed if isinstance(stored_lapsed, list) else ()))
    return ConversationData(draft=_draft_from(raw.get("draft")), pending=tuple(pending.values()),
                            held_text=_str(raw.get("held_text")), lapsed=tuple(v for v in lapsed if v is not None))
