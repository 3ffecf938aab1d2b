"""Parse the account, template and number health fields of a webhook into frozen events (pure: no I/O).

Meta tells us here that a template was paused or rejected, that the number's messaging limit moved,
or that the account was restricted. Each `changes[]` item of one of `ACCOUNT_FIELDS` becomes one event;
values we do not know map to UNKNOWN, and nothing downstream reads the raw dict again (it is kept, for
support, in `raw`). Never raises on shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.enums import LenientStrEnum
from services.json_input import json_object

TEMPLATE_STATUS = "message_template_status_update"
TEMPLATE_QUALITY = "message_template_quality_update"
TEMPLATE_CATEGORY = "template_category_update"
NUMBER_QUALITY = "phone_number_quality_update"
ACCOUNT = "account_update"
CAPABILITY = "business_capability_update"
ACCOUNT_FIELDS = frozenset({TEMPLATE_STATUS, TEMPLATE_QUALITY, TEMPLATE_CATEGORY, NUMBER_QUALITY, ACCOUNT,
                            CAPABILITY})
MAX_TEXT = 300


class TemplateStatus(LenientStrEnum):
    APPROVED = "APPROVED"
    PENDING = "PENDING"
    REJECTED = "REJECTED"
    PAUSED = "PAUSED"
    DISABLED = "DISABLED"
    FLAGGED = "FLAGGED"  # quality dropped: still sendable, paused if it does not improve
    IN_APPEAL = "IN_APPEAL"
    REINSTATED = "REINSTATED"
    PENDING_DELETION = "PENDING_DELETION"
    DELETED = "DELETED"
    ARCHIVED = "ARCHIVED"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    UNKNOWN = "UNKNOWN"


# Meta refuses a send of these (132015 paused, 132016 disabled, 132001 absent): we do not try.
BLOCKED_STATUSES = frozenset({TemplateStatus.PAUSED, TemplateStatus.DISABLED, TemplateStatus.REJECTED,
                              TemplateStatus.PENDING_DELETION, TemplateStatus.DELETED, TemplateStatus.ARCHIVED})


class Quality(LenientStrEnum):
    GREEN = "GREEN"
    YELLOW = "YELLOW"
    RED = "RED"
    UNKNOWN = "UNKNOWN"


class TemplateCategory(LenientStrEnum):
    UTILITY = "UTILITY"
    MARKETING = "MARKETING"
    AUTHENTICATION = "AUTHENTICATION"
    UNKNOWN = "UNKNOWN"


class AccountEventKind(LenientStrEnum):
    VERIFIED_ACCOUNT = "VERIFIED_ACCOUNT"
    DISABLED_UPDATE = "DISABLED_UPDATE"
    ACCOUNT_VIOLATION = "ACCOUNT_VIOLATION"
    ACCOUNT_RESTRICTION = "ACCOUNT_RESTRICTION"
    ACCOUNT_DELETED = "ACCOUNT_DELETED"
    PARTNER_ADDED = "PARTNER_ADDED"
    PARTNER_REMOVED = "PARTNER_REMOVED"
    UNKNOWN = "UNKNOWN"


class BanState(LenientStrEnum):
    SCHEDULE_FOR_DISABLE = "SCHEDULE_FOR_DISABLE"
    DISABLE = "DISABLE"
    REINSTATE = "REINSTATE"
    UNKNOWN = "UNKNOWN"


class AccountStatus(LenientStrEnum):
    """What an operator must know of the account, derived from its latest `account_update`."""

    OK = "ok"
    VIOLATION = "violation"  # a warning: sending still works
    RESTRICTED = "restricted"  # some sends refused until the restrictions expire
    SCHEDULED_FOR_DISABLE = "scheduled_for_disable"
    DISABLED = "disabled"
    UNKNOWN = "unknown"


RESTRICTING = frozenset({AccountStatus.RESTRICTED, AccountStatus.SCHEDULED_FOR_DISABLE, AccountStatus.DISABLED})


@dataclass(frozen=True)
class TemplateStatusUpdate:
    name: str
    language: str
    status: TemplateStatus
    reason: str | None
    template_id: str | None
    time: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class TemplateQualityUpdate:
    name: str
    language: str
    previous: Quality
    quality: Quality
    template_id: str | None
    time: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class TemplateCategoryUpdate:
    name: str
    language: str
    previous: TemplateCategory
    category: TemplateCategory
    template_id: str | None
    time: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class NumberQualityUpdate:
    display_phone_number: str
    event: str  # FLAGGED, UNFLAGGED, UPGRADE, DOWNGRADE, ONBOARDING, THROUGHPUT_UPGRADE, ... (kept as sent)
    current_limit: str | None  # TIER_250, TIER_2K, ..., TIER_UNLIMITED
    old_limit: str | None
    max_daily_conversations: int | None
    time: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Restriction:
    type: str  # RESTRICTED_BIZ_INITIATED_MESSAGING, RESTRICTED_CUSTOMER_INITIATED_MESSAGING, ...
    expiration: datetime | None


@dataclass(frozen=True)
class AccountUpdate:
    event: AccountEventKind
    event_name: str  # as Meta sent it (UNKNOWN kinds keep their name here)
    phone_number: str | None
    ban_state: BanState | None
    ban_date: str | None
    violation_type: str | None
    restrictions: tuple[Restriction, ...]
    time: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def status(self) -> AccountStatus | None:
        """The account's standing after this event; None when the event says nothing about it."""
        if self.event is AccountEventKind.DISABLED_UPDATE:
            return {BanState.DISABLE: AccountStatus.DISABLED, BanState.SCHEDULE_FOR_DISABLE:
                    AccountStatus.SCHEDULED_FOR_DISABLE, BanState.REINSTATE: AccountStatus.OK}.get(
                        self.ban_state or BanState.UNKNOWN, AccountStatus.UNKNOWN)
        if self.event is AccountEventKind.ACCOUNT_RESTRICTION:
            return AccountStatus.RESTRICTED if self.restrictions else AccountStatus.OK
        if self.event is AccountEventKind.ACCOUNT_VIOLATION:
            return AccountStatus.VIOLATION
        if self.event is AccountEventKind.ACCOUNT_DELETED:
            return AccountStatus.DISABLED
        return None


@dataclass(frozen=True)
class CapabilityUpdate:
    max_daily_conversation_per_phone: int | None
    max_phone_numbers_per_business: int | None
    max_phone_numbers_per_waba: int | None
    max_daily_conversations_per_business: str | None  # Meta sends a tier name here (TIER_2K, ...)
    time: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


AccountEvent = (TemplateStatusUpdate | TemplateQualityUpdate | TemplateCategoryUpdate | NumberQualityUpdate
                | AccountUpdate | CapabilityUpdate)


def _text(value: object, max_len: int = MAX_TEXT) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    return value[:max_len] if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    return number if 0 <= number < 2**31 else None


# The times Meta can mean; anything outside is read as no time at all.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def meta_time(value: datetime) -> datetime | None:
    """A time read from Meta's JSON, in UTC (naive: taken as UTC), or None when it lies outside EARLIEST and
    LATEST. A readable ISO time can lie beyond what a datetime holds once in UTC (`9999-12-31T23:59:59-10:00`,
    `0001-01-01T00:00:00+10:00`): storing it would raise and lose the whole delivery."""
    try:
        utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError:
        return None
    return utc if EARLIEST <= utc < LATEST else None


CLOCK_SKEW = timedelta(minutes=5)  # how far Meta's clock may run ahead of ours before we doubt it


def not_after(value: datetime | None, now: datetime | None) -> datetime | None:
    """When Meta says something happened, but never later than when we heard of it (`now`, the delivery's
    arrival) by more than CLOCK_SKEW: a later time is taken as `now`. Trusted as sent, a message dated 2100
    would keep the farmer's 24-hour window open for good and sort after every later message, and an event
    dated 2100 would outrank every later one. Without `now` (a stored message read again), as it is."""
    if value is None or now is None or value <= now + CLOCK_SKEW:
        return value
    return now


def _time(value: object) -> datetime | None:
    """Unix seconds (entry.time) or ISO 8601 (`2026-04-19T13:59:20+0000`); None when unreadable or out of range."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return meta_time(datetime.fromtimestamp(int(value), UTC))
        except (ValueError, OverflowError, OSError):
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return _time(_int(value)) if _int(value) is not None else None
        return meta_time(parsed)
    return None


def _template_key(value: dict[str, Any]) -> tuple[str, str] | None:
    name = _text(value.get("message_template_name"), 200)
    language = _text(value.get("message_template_language"), 20) or "UNKNOWN"
    return (name, language) if name else None


def parse_account_change(field_name: str, value: dict[str, Any], entry_time: object = None,
                         now: datetime | None = None) -> AccountEvent | str:
    """One `changes[]` item of one of ACCOUNT_FIELDS -> its event, or the reason it cannot be used. `now`: when
    the delivery arrived (`not_after`)."""
    when = not_after(_time(entry_time), now)
    if field_name in (TEMPLATE_STATUS, TEMPLATE_QUALITY, TEMPLATE_CATEGORY):
        key = _template_key(value)
        if key is None:
            return f"{field_name} without a template name"
        template_id = _text(value.get("message_template_id"), 100)
        if field_name == TEMPLATE_STATUS:
            other = json_object(value.get("other_info"))
            reason = _text(value.get("reason"))
            if reason in (None, "NONE"):
                reason = _text(other.get("description")) or _text(other.get("title")) or reason
            return TemplateStatusUpdate(*key, TemplateStatus(str(value.get("event"))), reason, template_id, when,
                                        value)
        if field_name == TEMPLATE_QUALITY:
            return TemplateQualityUpdate(*key, Quality(str(value.get("previous_quality_score"))),
                                         Quality(str(value.get("new_quality_score"))), template_id, when, value)
        return TemplateCategoryUpdate(*key, TemplateCategory(str(value.get("previous_category"))),
                                      TemplateCategory(str(value.get("new_category"))), template_id, when, value)
    if field_name == NUMBER_QUALITY:
        number = _text(value.get("display_phone_number"), 30)
        if number is None:
            return f"{field_name} without a display_phone_number"
        limit = _text(value.get("max_daily_conversations_per_business"), 40)
        return NumberQualityUpdate(number, _text(value.get("event"), 40) or "UNKNOWN",
                                   _text(value.get("current_limit"), 40) or limit, _text(value.get("old_limit"), 40),
                                   _int(limit), when, value)
    if field_name == ACCOUNT:
        event_name = _text(value.get("event"), 60) or "UNKNOWN"
        ban = json_object(value.get("ban_info"))
        state = ban.get("waba_ban_state")
        state = state[-1] if isinstance(state, list) and state else state  # sent as a list by some versions
        listed = value.get("restriction_info")
        restrictions = tuple(
            Restriction(_text(r.get("restriction_type"), 80) or "UNKNOWN", _time(r.get("expiration")))
            for r in (listed if isinstance(listed, list) else []) if isinstance(r, dict)
        )
        return AccountUpdate(AccountEventKind(event_name), event_name, _text(value.get("phone_number"), 30),
                             BanState(str(state)) if ban else None, _text(ban.get("waba_ban_date"), 40),
                             _text(json_object(value.get("violation_info")).get("violation_type"), 80), restrictions,
                             when, value)
    if field_name == CAPABILITY:
        return CapabilityUpdate(_int(value.get("max_daily_conversation_per_phone")),
                                _int(value.get("max_phone_numbers_per_business")),
                                _int(value.get("max_phone_numbers_per_waba")),
                                _text(value.get("max_daily_conversations_per_business"), 40), when, value)
    return f"change field {field_name[:50]!r} not handled"
