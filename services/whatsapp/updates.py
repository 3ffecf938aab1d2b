"""Parse a WhatsApp Cloud API webhook body into typed, frozen updates (pure: no I/O).

The parser never raises on shape: Meta adds fields and message types over time, and a signed body
we do not understand must still be acknowledged (and kept). Unknown enum values map to UNKNOWN;
anything we cannot use is reported in `problems` with the part of the body it came from.

The dataclasses are frozen and slotted: every delivery builds them on the webhook's hot path, and a
frozen class with slots is built in about two thirds of the time of one without.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.enums import LenientStrEnum
from services.json_input import json_object
from services.whatsapp.account import ACCOUNT_FIELDS, AccountEvent, meta_time, not_after, parse_account_change


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


class SystemKind(LenientStrEnum):
    """What a `system` message reports: Meta speaks here, not the farmer (never answered)."""

    USER_CHANGED_NUMBER = "user_changed_number"
    USER_CHANGED_USER_ID = "user_changed_user_id"
    UNKNOWN = "unknown"


IMAGE_DOCUMENT_TYPES = frozenset({"image/jpeg", "image/png"})  # a photo sent as a file is still a photo


@dataclass(frozen=True, slots=True)
class Sender:
    """Who wrote, as Meta names them: a phone (when not withheld), a business-scoped user id, or both."""

    phone: str | None = None  # E.164 with "+"
    user_id: str | None = None
    parent_user_id: str | None = None
    username: str | None = None
    name: str | None = None

    @property
    def key(self) -> str | None:
        """The farmer's address: the phone when known, else the user id."""
        return self.phone or self.user_id


@dataclass(frozen=True, slots=True)
class InboundMessage:
    wamid: str
    phone: str | None  # E.164 with "+"; None when Meta withholds it (a username) and names only the user id
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
    user_id: str | None = None  # Meta's business-scoped user id (`TR.1234...`)
    parent_user_id: str | None = None
    username: str | None = None
    phone_number_id: str | None = None  # which of our numbers it was written to (`metadata`)
    group_id: str | None = None  # written in a group: not a conversation with us
    meta_type: str = ""  # Meta's own type (`order`, `nfm_reply`, `edit`, ...), kept when ours is UNKNOWN
    system: SystemKind | None = None
    new_phone: str | None = None  # user_changed_number: the number the farmer moved to
    new_user_id: str | None = None  # user_changed_user_id: the user id Meta gives them now
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def sender(self) -> Sender:
        return Sender(self.phone, self.user_id, self.parent_user_id, self.username, self.profile_name)

    @property
    def address(self) -> str:
        """The sender's key: phone when known, else user id (one of them is always there)."""
        return self.phone or self.user_id or ""

    @property
    def edited_text(self) -> bool:
        """An edit (`type: edit`) that carries text (a message's new body or a photo's new caption): read as a
        new text message from the farmer. The original's wamid is in `context_wamid`."""
        return self.meta_type == "edit" and bool(self.text)

    @property
    def reaction_removed(self) -> bool:
        """A reaction taken back arrives as a reaction without an emoji: nothing to answer."""
        return self.type is MessageType.REACTION and not self.text

    @property
    def image_document(self) -> bool:
        """A JPEG or PNG sent as a document: handled as a photo (same size limit)."""
        return self.type is MessageType.DOCUMENT and (self.mime_type or "").lower() in IMAGE_DOCUMENT_TYPES

    @property
    def answered(self) -> bool:
        """Whether the bot answers it: not a group's message, Meta's system notice or a removed reaction."""
        return not (self.group_id or self.type is MessageType.SYSTEM or self.reaction_removed)


@dataclass(frozen=True, slots=True)
class UserIdChange:
    """`user_id_update`: Meta gave a farmer a new business-scoped user id."""

    previous: str | None
    current: str | None
    phone: str | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


class PreferenceValue(LenientStrEnum):
    STOP = "stop"
    RESUME = "resume"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Pricing:
    """What Meta charges (or not) for a message: kept on the status row for cost reports."""

    billable: bool | None
    pricing_model: str | None  # CBP, PMP, ...
    category: str | None  # service, utility, marketing, authentication, ...
    type: str | None  # regular, free_customer_service, free_entry_point, ...


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    wamid: str
    status: StatusKind
    timestamp: datetime | None
    recipient: str | None  # a phone only; a business-scoped user id stays in `raw`
    status_text: str  # Meta's word as sent (at most 20 characters, the column's), stored for an UNKNOWN one
    error_code: int | None = None
    error_title: str | None = None
    pricing: Pricing | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class ValueLevelError:
    """An `errors[]` entry of a change's value: about the app or account, not about one message."""

    code: int | None
    title: str | None
    details: str | None
    phone_number_id: str | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class PreferenceUpdate:
    """A `user_preferences` item: the farmer stopped or resumed marketing messages in WhatsApp. The farmer is
    named by phone (`wa_id`), by business-scoped user id (`user_id`, a username without a phone), or both."""

    phone: str | None
    user_id: str | None
    category: str | None
    value: PreferenceValue
    timestamp: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class Problem:
    reason: str
    part: Any


@dataclass(frozen=True, slots=True)
class ParsedWebhook:
    messages: list[InboundMessage]
    statuses: list[StatusUpdate]
    problems: list[Problem]
    errors: list[ValueLevelError] = field(default_factory=list)
    preferences: list[PreferenceUpdate] = field(default_factory=list)
    user_id_changes: list[UserIdChange] = field(default_factory=list)
    account: list[AccountEvent] = field(default_factory=list)  # template, number and account health


_NON_DIGITS = re.compile(r"[^0-9]")
_PHONE_SHAPED = re.compile(r"\+?[0-9 ()-]{8,24}")
_PHONE_CHARACTERS = re.compile(r"[+0-9\s().-]+", re.ASCII)
_USER_ID = re.compile(r"[A-Z]{2}\.(ENT\.)?[A-Za-z0-9]{1,128}")
# What the message log can hold (column sizes); Meta's own ids are far shorter. An id beyond its
# bound makes the item a problem (kept raw), another field beyond it is left out (the raw keeps it).
MAX_ID = 200
MAX_MEDIA_ID = 100
MAX_NAME = 200
MAX_ERROR_TITLE = 300
MAX_ERROR_NUMBER_ID = 50
_INT32 = 2**31
_INT64 = 2**63
# Meta batches at most a few hundred messages and statuses in one delivery. A signed body can hold far
# more (300,000 fit in 3 MB) and would keep the writer busy for a minute: the items beyond this many are
# kept together as one problem (stored once, as one unhandled row with the reason), not written one by one.
MAX_ITEMS_PER_DELIVERY = 1000


def normalize_phone(value: object) -> str | None:
    """A WhatsApp phone id or typed number -> E.164 with '+' (`905321234567` -> `+905321234567`). Only
    phone numbers: anything with letters (a user id, a group's base64 id) is None, never digits picked out; so
    is a number in other digits (`٩٠٥...`, `９０５...`): Meta sends ASCII digits, and such a number would be a
    second farmer beside the same number in ASCII."""
    if type(value) is str and value.isascii() and value.isdigit() and 8 <= len(value) <= 15 and value[:2] != "00":
        return "+" + value  # Meta's own form (digits only): the same answer as below, without the regexes
    if value is None or isinstance(value, bool) or not _PHONE_CHARACTERS.fullmatch(str(value)):
        return None
    digits = _NON_DIGITS.sub("", str(value))
    if digits.startswith("00"):
        digits = digits[2:]
    if not 8 <= len(digits) <= 15:
        return None
    return "+" + digits


def user_id(value: object) -> str | None:
    """A business-scoped user id (`TR.1234abc`, parent ids `TR.ENT.1234`) as Meta sends it, else None."""
    return value if isinstance(value, str) and _USER_ID.fullmatch(value) else None


def _timestamp(value: object, now: datetime | None) -> datetime | None:
    """Unix seconds as Meta sends them; None when unreadable or out of range (`meta_time`); never much later
    than `now` (`not_after`)."""
    try:
        return not_after(meta_time(datetime.fromtimestamp(int(str(value)), UTC)), now)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _number_id(value: object) -> str | None:
    """`metadata.phone_number_id`: None only when absent. Meta sends a string; a JSON number is read as its
    decimal digits, and any other value as a text that names none of our numbers (never our default)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value[:MAX_ID]
    if isinstance(value, int) and not isinstance(value, bool) and -_INT64 < value < _INT64:
        return str(value)
    return f"<{type(value).__name__}>"


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
    if not errors:  # most messages and statuses
        return None, None
    first = json_object(_list(errors)[0]) if _list(errors) else {}
    code = first.get("code")
    usable = isinstance(code, int) and not isinstance(code, bool) and -_INT32 <= code < _INT32
    title = _str(first.get("title"))
    return (code if usable else None), (title[:MAX_ERROR_TITLE] if title is not None else None)


def parse_message(raw: dict[str, Any], names: dict[str, str] | None = None, *,
                  senders: dict[str, Sender] | None = None, phone_number_id: str | None = None,
                  now: datetime | None = None) -> InboundMessage | Problem:
    """One `messages[]` item; also used by the job to read the stored raw message again. `senders` are the
    delivery's `contacts[]` by phone and by user id; the sender is known by `from`, `from_user_id` or both.
    `now`: when the delivery arrived (a later timestamp is not believed, `not_after`)."""
    names = names or {}
    senders = senders or {}
    wamid = _str(raw.get("id"), MAX_ID)
    phone = normalize_phone(raw.get("from"))
    uid = user_id(raw.get("from_user_id"))
    contact = senders.get(phone or "") or senders.get(uid or "") or Sender()
    uid = uid or contact.user_id
    phone = phone or contact.phone
    if not wamid or not (phone or uid):
        return Problem("message without a usable id or sender", raw)
    meta_type = str(raw.get("type", ""))[:30]
    fields: dict[str, Any] = {}
    if meta_type == "text":
        fields["text"] = _str(json_object(raw.get("text")).get("body"))
    elif meta_type in _MEDIA_TYPES:
        media = json_object(raw.get(meta_type))
        fields.update(media_id=_str(media.get("id"), MAX_MEDIA_ID),
                      mime_type=_str(media.get("mime_type"), MAX_MEDIA_ID), text=_str(media.get("caption")))
    elif meta_type == "interactive":
        interactive = json_object(raw.get("interactive"))
        meta_type = str(interactive.get("type", "unknown"))[:30]
        reply = json_object(interactive.get(meta_type))
        fields.update(reply_id=_str(reply.get("id")), text=_str(reply.get("title")))
    elif meta_type == "button":
        button = json_object(raw.get("button"))
        fields.update(reply_id=_str(button.get("payload")), text=_str(button.get("text")))
    elif meta_type == "location":
        loc = json_object(raw.get("location"))
        fields.update(latitude=_float(loc.get("latitude")), longitude=_float(loc.get("longitude")),
                      location_name=_str(loc.get("name")), location_address=_str(loc.get("address")))
    elif meta_type == "reaction":
        reaction = json_object(raw.get("reaction"))
        fields.update(text=_str(reaction.get("emoji")), context_wamid=_str(reaction.get("message_id"), MAX_ID))
    elif meta_type == "edit":  # the farmer changed an earlier message: its new text, linked to the original
        edit = json_object(raw.get("edit"))
        edited = json_object(edit.get("message"))
        content = json_object(edited.get(str(edited.get("type", ""))))
        fields.update(text=_str(content.get("body") or content.get("caption")),
                      context_wamid=_str(edit.get("original_message_id"), MAX_ID))
    elif meta_type == "system":
        system = json_object(raw.get("system"))
        fields.update(text=_str(system.get("body")), system=SystemKind(str(system.get("type", ""))),
                      new_phone=normalize_phone(system.get("wa_id") or system.get("new_wa_id")),
                      new_user_id=user_id(system.get("user_id") or system.get("new_user_id")))
    code, title = _first_error(raw.get("errors"))
    context = json_object(raw.get("context"))
    fields.setdefault("context_wamid", _str(context.get("id"), MAX_ID))
    return InboundMessage(
        wamid=wamid,
        phone=phone,
        type=MessageType(meta_type),
        timestamp=_timestamp(raw.get("timestamp"), now),
        profile_name=names.get(phone or "") or contact.name,
        error_code=code,
        error_title=title,
        user_id=uid,
        parent_user_id=user_id(raw.get("from_parent_user_id")) or contact.parent_user_id,
        username=contact.username,
        phone_number_id=phone_number_id,
        group_id=_str(raw.get("group_id"), MAX_ID),
        meta_type=meta_type,
        raw=raw,
        **fields,
    )


def _phone_only(value: object) -> str | None:
    """A recipient that is a phone number, normalised; a user id (`TR.abc123...`) or a group id is not one."""
    return normalize_phone(value) if isinstance(value, str) and _PHONE_SHAPED.fullmatch(value) else None


def _pricing(value: object) -> Pricing | None:
    raw = json_object(value)
    if not raw:
        return None
    billable = raw.get("billable")

    def short(key: str, limit: int) -> str | None:
        text = _str(raw.get(key))
        return text[:limit] if text is not None else None

    return Pricing(billable=billable if isinstance(billable, bool) else None,
                   pricing_model=short("pricing_model", 30), category=short("category", 50), type=short("type", 50))


def _sender(contact: dict[str, Any]) -> Sender:
    profile = json_object(contact.get("profile"))
    name, username = _str(profile.get("name")), _str(profile.get("username"))
    return Sender(phone=normalize_phone(contact.get("wa_id")), user_id=user_id(contact.get("user_id")),
                  parent_user_id=user_id(contact.get("parent_user_id")),
                  username=username[:100] if username else None, name=name[:MAX_NAME] if name else None)


def _user_id_change(raw: dict[str, Any]) -> UserIdChange | Problem:
    """One `user_id_update` item: `user_id` {previous, current} (or flat `previous_user_id` / `user_id`)."""
    ids = raw.get("user_id")
    previous = user_id(json_object(ids).get("previous") if isinstance(ids, dict) else raw.get("previous_user_id"))
    current = user_id(json_object(ids).get("current") if isinstance(ids, dict) else ids)
    if not current:
        return Problem("user_id_update without a usable new user id", raw)
    return UserIdChange(previous, current, normalize_phone(raw.get("wa_id")), raw)


def _parse_status(raw: dict[str, Any], now: datetime | None) -> StatusUpdate | Problem:
    wamid = _str(raw.get("id"), MAX_ID)
    if not wamid:
        return Problem("status without a usable id", raw)
    code, title = _first_error(raw.get("errors"))
    return StatusUpdate(
        wamid=wamid,
        status=StatusKind(str(raw.get("status"))),
        status_text=str(raw.get("status"))[:20],
        timestamp=_timestamp(raw.get("timestamp"), now),
        recipient=None if raw.get("recipient_type") == "group" else _phone_only(raw.get("recipient_id")),
        error_code=code,
        error_title=title,
        pricing=_pricing(raw.get("pricing")),
        raw=raw,
    )


def _value_error(item: dict[str, Any], phone_number_id: str | None) -> ValueLevelError:
    code, title = _first_error([item])
    details = _str(json_object(item.get("error_data")).get("details")) or _str(item.get("message"))
    return ValueLevelError(code, title, details[:2000] if details else None, phone_number_id, item)


def _preference(raw: object, now: datetime | None) -> PreferenceUpdate | Problem:
    item = json_object(raw)
    phone, uid = _phone_only(item.get("wa_id")), user_id(item.get("user_id"))
    if phone is None and uid is None:
        return Problem("user preference without a usable wa_id or user_id", raw)
    return PreferenceUpdate(phone=phone, user_id=uid, category=_str(item.get("category"), 50),
                            value=PreferenceValue(_str(item.get("value")) or ""),
                            timestamp=_timestamp(item.get("timestamp"), now), raw=item)


# The keys of a change's value that a delivery of messages alone holds (anything more takes the full walk).
_MESSAGES_ONLY_KEYS = frozenset({"messaging_product", "metadata", "contacts", "messages"})


def parse_webhook(body: Any, now: datetime | None = None) -> ParsedWebhook:
    """Every entry x change x message/status (and value-level error, user preference), in order. Never
    raises. At most MAX_ITEMS_PER_DELIVERY items (of all kinds, problems included); the rest, in the
    body's order, is one more problem. Most deliveries are one message: read directly
    (`parse_single_message`), the same result as the full walk (`parse_every_change`) without it. `now`
    is when the delivery arrived: no time in it is believed to be much later (`not_after`)."""
    return parse_single_message(body, now) or parse_every_change(body, now)


def parse_single_message(body: Any, now: datetime | None = None) -> ParsedWebhook | None:
    """A delivery of exactly one entry, one `messages` change and one message (and its contacts), nothing
    else, parsed as `parse_every_change` parses it but without its walk; None for any other body, and for
    a message that is a problem (the full walk reports it)."""
    entries = body.get("entry") if type(body) is dict and body.get("object") == "whatsapp_business_account" else None
    if type(entries) is not list or len(entries) != 1 or type(entries[0]) is not dict:
        return None
    changes = entries[0].get("changes")
    if type(changes) is not list or len(changes) != 1 or type(changes[0]) is not dict:
        return None
    change = changes[0]
    value = change.get("value")
    if change.get("field") != "messages" or type(value) is not dict or not _MESSAGES_ONLY_KEYS.issuperset(value):
        return None
    items = value.get("messages")
    if type(items) is not list or len(items) != 1 or type(items[0]) is not dict:
        return None
    names, senders = _contacts(value)
    our_number = _number_id(json_object(value.get("metadata")).get("phone_number_id"))
    message = parse_message(items[0], names, senders=senders, phone_number_id=our_number, now=now)
    return None if isinstance(message, Problem) else ParsedWebhook([message], [], [])


def _contacts(value: dict[str, Any]) -> tuple[dict[str, str], dict[str, Sender]]:
    """A change's `contacts[]`: the profile names by phone, and the senders by phone and by user id."""
    names: dict[str, str] = {}
    senders: dict[str, Sender] = {}
    for contact in _list(value.get("contacts")):
        sender = _sender(json_object(contact))
        if sender.phone and sender.name:
            names[sender.phone] = sender.name
        for alias in (sender.phone, sender.user_id):
            if alias:
                senders[alias] = sender
    return names, senders


def parse_every_change(body: Any, now: datetime | None = None) -> ParsedWebhook:
    """`parse_webhook` for any body: every entry and change walked."""
    messages: list[InboundMessage] = []
    statuses: list[StatusUpdate] = []
    problems: list[Problem] = []
    errors: list[ValueLevelError] = []
    preferences: list[PreferenceUpdate] = []
    user_id_changes: list[UserIdChange] = []
    account: list[AccountEvent] = []
    excess: dict[str, list[Any]] = {}

    def room(kind: str, part: Any) -> bool:
        """Whether one more item fits; if not, the part is put aside with the excess of its kind."""
        if (len(messages) + len(statuses) + len(problems) + len(errors) + len(preferences)
                + len(user_id_changes) + len(account)) < MAX_ITEMS_PER_DELIVERY:
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
        changes = json_object(entry).get("changes")
        if not isinstance(changes, list):
            problem("entry without a changes list", entry)
            continue
        for part in changes:
            change = json_object(part)
            value = json_object(change.get("value"))
            field_name = change.get("field")
            if isinstance(field_name, str) and field_name in ACCOUNT_FIELDS:
                event = (parse_account_change(field_name, value, json_object(entry).get("time"), now)
                         if isinstance(change.get("value"), dict) else f"{field_name} without a value object")
                if isinstance(event, str):
                    problem(event, part)
                elif room("account", part):
                    account.append(event)
                continue
            if change.get("field") in ("messages", "user_preferences") and value.get("errors"):
                if not isinstance(value["errors"], list):
                    problem("errors is not a list", {"errors": value["errors"]})
                phone_number_id = _number_id(json_object(value.get("metadata")).get("phone_number_id"))
                phone_number_id = phone_number_id[:MAX_ERROR_NUMBER_ID] if phone_number_id else None
                for item in _list(value.get("errors")):
                    if not room("errors", item):
                        continue
                    if isinstance(item, dict):
                        errors.append(_value_error(item, phone_number_id))
                    else:
                        problems.append(Problem("error not an object", item))
            if change.get("field") == "user_preferences" and isinstance(value.get("user_preferences"), list):
                for item in value["user_preferences"]:
                    if not room("user_preferences", item):
                        continue
                    pref = _preference(item, now)
                    if isinstance(pref, Problem):
                        problems.append(pref)
                    else:
                        preferences.append(pref)
                continue
            if change.get("field") == "messages" and value.get("errors") and not (
                    value.get("messages") or value.get("statuses")):
                continue  # errors alone: kept above, nothing else to read
            if change.get("field") == "user_id_update" and _list(value.get("user_id_update")):
                for raw in _list(value.get("user_id_update")):
                    if room("user_id_update", raw):
                        update = _user_id_change(json_object(raw))
                        if isinstance(update, Problem):
                            problems.append(update)
                        else:
                            user_id_changes.append(update)
                continue
            if change.get("field") != "messages" or not (value.get("messages") or value.get("statuses")):
                problem(f"change field {str(change.get('field'))[:50]!r} not handled", part)
                continue
            for key in ("messages", "statuses"):
                if value.get(key) and not isinstance(value.get(key), list):
                    problem(f"{key} is not a list", {key: value.get(key)})
            names, senders = _contacts(value)
            our_number = _number_id(json_object(value.get("metadata")).get("phone_number_id"))
            for raw in _list(value.get("messages")):
                if not room("messages", raw):
                    continue
                message = (parse_message(raw, names, senders=senders, phone_number_id=our_number, now=now)
                           if isinstance(raw, dict) else Problem("message not an object", raw))
                if isinstance(message, Problem):
                    problems.append(message)
                else:
                    messages.append(message)
            for raw in _list(value.get("statuses")):
                if not room("statuses", raw):
                    continue
                status = _parse_status(raw, now) if isinstance(raw, dict) else Problem("status not an object", raw)
                if isinstance(status, Problem):
                    problems.append(status)
                else:
                    statuses.append(status)
    if excess:
        left_out = sum(len(parts) for parts in excess.values())
        problems.append(Problem(f"delivery has more than {MAX_ITEMS_PER_DELIVERY} items: {left_out} left out "
                                "(kept here, not processed)", excess))
    return ParsedWebhook(messages, statuses, problems, errors, preferences, user_id_changes, account)
