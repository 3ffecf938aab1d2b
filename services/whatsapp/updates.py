"""Parse a WhatsApp Cloud API webhook body into typed, frozen updates (pure: no I/O).

The parser never raises on shape: Meta adds fields and message types over time, and a signed body
we do not understand must still be acknowledged (and kept). Unknown enum values map to UNKNOWN;
anything we cannot use is reported in `problems` with the part of the body it came from.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.enums import LenientStrEnum
from services.whatsapp.account import ACCOUNT_FIELDS, AccountEvent, parse_account_change


class MessageType(LenientStrEnum):
    TEXT = "text"
    IMAGE = "image"
    BUTTON_REPLY = "button_reply"  # interactive reply button
    LIST_REPLY = "list_reply"  # interactive list row
    BUTTON = "button"  # template quick-reply button
    LOCATION = "location"
    AUDIO = "audio"
    VIDEO = "video"
    DOCUMENT = "document"
    STICKER = "sticker"
    REACTION = "reaction"
    CONTACTS = "contacts"
    UNSUPPORTED = "unsupported"
    SYSTEM = "system"
    UNKNOWN = "unknown"


class StatusKind(LenientStrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNKNOWN = "unknown"


_MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")


@dataclass(frozen=True)
class InboundMessage:
    wamid: str
    phone: str  # E.164 with "+"
    type: MessageType
    timestamp: datetime | None
    profile_name: str | None = None
    text: str | None = None  # body, caption, button/list title or reaction emoji
    reply_id: str | None = None  # id of the tapped button / list row / template payload
    media_id: str | None = None
    mime_type: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    location_name: str | None = None
    location_address: str | None = None
    context_wamid: str | None = None
    error_code: int | None = None
    error_title: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class StatusUpdate:
    wamid: str
    status: StatusKind
    timestamp: datetime | None
    recipient: str | None
    error_code: int | None = None
    error_title: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Problem:
    reason: str
    part: Any


@dataclass(frozen=True)
class ParsedWebhook:
    messages: list[InboundMessage]
    statuses: list[StatusUpdate]
    problems: list[Problem]
    account: list[AccountEvent] = field(default_factory=list)  # template, number and account health


_NON_DIGITS = re.compile(r"\D")
# What the message log can hold (column sizes); Meta's own ids are far shorter. An id beyond its
# bound makes the item a problem (kept raw), another field beyond it is left out (the raw keeps it).
MAX_ID = 200
MAX_MEDIA_ID = 100
MAX_NAME = 200
MAX_ERROR_TITLE = 300
_INT32 = 2**31
# Meta batches at most a few hundred messages and statuses in one delivery. A signed body can hold far
# more (300,000 fit in 3 MB) and would keep the writer busy for a minute: the items beyond this many are
# kept together as one problem (stored once, as one unhandled row with the reason), not written one by one.
MAX_ITEMS_PER_DELIVERY = 1000


def normalize_phone(value: object) -> str | None:
    """Any WhatsApp id or typed number -> E.164 with '+' (`905321234567` -> `+905321234567`)."""
    if value is None:
        return None
    digits = _NON_DIGITS.sub("", str(value))
    if digits.startswith("00"):
        digits = digits[2:]
    if not 8 <= len(digits) <= 15:
        return None
    return "+" + digits


def _timestamp(value: object) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(str(value)), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: object, max_len: int | None = None) -> str | None:
    """A string, or None; with `max_len`, also None when longer (an id cut short would be another id)."""
    if not isinstance(value, str) or (max_len is not None and len(value) > max_len):
        return None
    return value


def _float(value: object) -> float | None:
    """A finite number (NaN, infinities and ints too large for a float are not coordinates)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _first_error(errors: object) -> tuple[int | None, str | None]:
    first = _dict(_list(errors)[0]) if _list(errors) else {}
    code = first.get("code")
    usable = isinstance(code, int) and not isinstance(code, bool) and -_INT32 <= code < _INT32
    title = _str(first.get("title"))
    return (code if usable else None), (title[:MAX_ERROR_TITLE] if title is not None else None)


def parse_message(raw: dict[str, Any], names: dict[str, str] | None = None) -> InboundMessage | Problem:
    """One `messages[]` item; also used by the job to read the stored raw message again."""
    names = names or {}
    wamid = _str(raw.get("id"), MAX_ID)
    phone = normalize_phone(raw.get("from"))
    if not wamid or not phone:
        return Problem("message without a usable id or sender", raw)
    meta_type = str(raw.get("type", ""))
    fields: dict[str, Any] = {}
    if meta_type == "text":
        fields["text"] = _str(_dict(raw.get("text")).get("body"))
    elif meta_type in _MEDIA_TYPES:
        media = _dict(raw.get(meta_type))
        fields.update(media_id=_str(media.get("id"), MAX_MEDIA_ID),
                      mime_type=_str(media.get("mime_type"), MAX_MEDIA_ID), text=_str(media.get("caption")))
    elif meta_type == "interactive":
        interactive = _dict(raw.get("interactive"))
        meta_type = str(interactive.get("type", "unknown"))
        reply = _dict(interactive.get(meta_type))
        fields.update(reply_id=_str(reply.get("id")), text=_str(reply.get("title")))
    elif meta_type == "button":
        button = _dict(raw.get("button"))
        fields.update(reply_id=_str(button.get("payload")), text=_str(button.get("text")))
    elif meta_type == "location":
        loc = _dict(raw.get("location"))
        fields.update(latitude=_float(loc.get("latitude")), longitude=_float(loc.get("longitude")),
                      location_name=_str(loc.get("name")), location_address=_str(loc.get("address")))
    elif meta_type == "reaction":
        reaction = _dict(raw.get("reaction"))
        fields.update(text=_str(reaction.get("emoji")), context_wamid=_str(reaction.get("message_id"), MAX_ID))
    elif meta_type == "system":
        fields["text"] = _str(_dict(raw.get("system")).get("body"))
    code, title = _first_error(raw.get("errors"))
    context = _dict(raw.get("context"))
    fields.setdefault("context_wamid", _str(context.get("id"), MAX_ID))
    return InboundMessage(
        wamid=wamid,
        phone=phone,
        type=MessageType(meta_type),
        timestamp=_timestamp(raw.get("timestamp")),
        profile_name=names.get(phone),
        error_code=code,
        error_title=title,
        raw=raw,
        **fields,
    )


def _parse_status(raw: dict[str, Any]) -> StatusUpdate | Problem:
    wamid = _str(raw.get("id"), MAX_ID)
    if not wamid:
        return Problem("status without a usable id", raw)
    code, title = _first_error(raw.get("errors"))
    return StatusUpdate(
        wamid=wamid,
        status=StatusKind(str(raw.get("status"))),
        timestamp=_timestamp(raw.get("timestamp")),
        recipient=normalize_phone(raw.get("recipient_id")),
        error_code=code,
        error_title=title,
        raw=raw,
    )


def parse_webhook(body: Any) -> ParsedWebhook:
    """Every entry x change x message/status, in order. Never raises. At most MAX_ITEMS_PER_DELIVERY items
    (messages, statuses and problems); the rest, in the body's order, is one more problem."""
    messages: list[InboundMessage] = []
    statuses: list[StatusUpdate] = []
    problems: list[Problem] = []
    account: list[AccountEvent] = []
    excess: dict[str, list[Any]] = {}

    def room(kind: str, part: Any) -> bool:
        """Whether one more item fits; if not, the part is put aside with the excess of its kind."""
        if len(messages) + len(statuses) + len(problems) + len(account) < MAX_ITEMS_PER_DELIVERY:
            return True
        excess.setdefault(kind, []).append(part)
        return False

    def problem(reason: str, part: Any) -> None:
        if room("not_understood", part):
            problems.append(Problem(reason, part))

    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        return ParsedWebhook([], [], [Problem("body is not a WhatsApp webhook (no entry list)", body)])
    if body.get("object") != "whatsapp_business_account":
        problem(f"unexpected object {str(body.get('object'))[:50]!r}", {"object": body.get("object")})
    for entry in body["entry"]:
        changes = _dict(entry).get("changes")
        if not isinstance(changes, list):
            problem("entry without a changes list", entry)
            continue
        for part in changes:
            change = _dict(part)
            value = _dict(change.get("value"))
            field_name = change.get("field")
            if isinstance(field_name, str) and field_name in ACCOUNT_FIELDS:
                event = (parse_account_change(field_name, value, _dict(entry).get("time"))
                         if isinstance(change.get("value"), dict) else f"{field_name} without a value object")
                if isinstance(event, str):
                    problem(event, part)
                elif room("account", part):
                    account.append(event)
                continue
            if change.get("field") != "messages" or not (value.get("messages") or value.get("statuses")):
                problem(f"change field {str(change.get('field'))[:50]!r} not handled", part)
                continue
            for key in ("messages", "statuses"):
                if value.get(key) and not isinstance(value.get(key), list):
                    problem(f"{key} is not a list", {key: value.get(key)})
            names = {}
            for contact in _list(value.get("contacts")):
                phone = normalize_phone(_dict(contact).get("wa_id"))
                name = _str(_dict(_dict(contact).get("profile")).get("name"))
                if phone and name:
                    names[phone] = name[:MAX_NAME]
            for raw in _list(value.get("messages")):
                if not room("messages", raw):
                    continue
                message = parse_message(raw, names) if isinstance(raw, dict) else Problem("message not an object", raw)
                if isinstance(message, Problem):
                    problems.append(message)
                else:
                    messages.append(message)
            for raw in _list(value.get("statuses")):
                if not room("statuses", raw):
                    continue
                status = _parse_status(raw) if isinstance(raw, dict) else Problem("status not an object", raw)
                if isinstance(status, Problem):
                    problems.append(status)
                else:
                    statuses.append(status)
    if excess:
        left_out = sum(len(parts) for parts in excess.values())
        problems.append(Problem(f"delivery has more than {MAX_ITEMS_PER_DELIVERY} items: {left_out} left out "
                                "(kept here, not processed)", excess))
    return ParsedWebhook(messages, statuses, problems, account)
