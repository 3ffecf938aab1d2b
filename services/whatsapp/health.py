"""Template registry and account standing: what Meta told us, kept, and what it forbids.

`record_account_events` stores the parsed health events (caller commits); `template_refusal` tells the
outbox that a template may not be sent (PAUSED, DISABLED, REJECTED...); `send_block` reads the block the
outbox sets when Meta refuses the account's sends; `snapshot` is what `/health/ready`, `/metrics` and
`flask whatsapp-status` show. A template Meta never reported on is allowed: the registry is seeded
from `translations.templates` as APPROVED with UNKNOWN quality, so nothing is refused before Meta says
so. Meta may deliver out of order: an event older than the latest one of the same kind changes nothing
(a template's status, quality and category are each ordered on their own), but is still kept in the
history.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import WhatsAppAccountEvent, WhatsAppAccountState, WhatsAppTemplate, utcnow
from models.db import dialect_insert
from services.json_input import iso
from services.redis_conn import as_text
from services.whatsapp.account import (
    BLOCKED_STATUSES,
    RESTRICTING,
    AccountEvent,
    AccountStatus,
    AccountUpdate,
    CapabilityUpdate,
    NumberQualityUpdate,
    Quality,
    TemplateCategoryUpdate,
    TemplateQualityUpdate,
    TemplateStatus,
    TemplateStatusUpdate,
)
from translations.templates import TEMPLATES

log = logging.getLogger(__name__)

ACCOUNT_KEY = "account"
VIOLATION_KEY = "violation"  # the latest ACCOUNT_VIOLATION: a warning, kept apart from the standing it does not change
CAPABILITIES_KEY = "capabilities"
NUMBER_PREFIX = "number:"
SEEDED_REASON = "not reported by Meta yet; assumed approved"
SEEDED_AT = datetime(1970, 1, 1, tzinfo=UTC)  # older than any event, so Meta's first word always applies
# Graph errors of a send that tell us a template's status (the webhook usually follows, or came first).
STATUS_BY_SEND_ERROR = {132015: TemplateStatus.PAUSED, 132016: TemplateStatus.DISABLED}
# Sends Meta refuses for the whole account (131042 payment, 368 integrity, 131031 locked): the outbox sets
# this flag (`failures.block_account`) anew at each such refusal, and sends nothing while it lives.
ACCOUNT_BLOCK_KEY = "ziraai:whatsapp:account_blocked"  # "<code>: <title>"
ACCOUNT_BLOCK_SECONDS = 3600  # then sends are tried again (a new refusal sets it again)


class TemplateRefused(Exception):
    """A template Meta would refuse: the outbox records `reason` on the row and does not call Graph."""

    def __init__(self, name: str, language: str, status: str, reason: str | None) -> None:
        self.name, self.language, self.status = name, language, status
        self.reason = f"template {name} ({language}) is {status}" + (f": {reason}" if reason else "")
        super().__init__(self.reason)


# --- writing ------------------------------------------------------------------------------------------


def _upsert(session: Session, model: type, keys: list[str], row: dict[str, Any], changed: list[str],
            stamp: str = "updated_at") -> None:
    """Insert `row`, or set its `changed` columns and their `stamp` when the stored stamp is not newer."""
    table = model.__table__  # type: ignore[attr-defined]
    stmt = dialect_insert(session.get_bind().dialect.name, table).values(**row)
    session.execute(stmt.on_conflict_do_update(
        index_elements=keys, set_={c: stmt.excluded[c] for c in [*changed, stamp]},
        where=table.c[stamp] <= stmt.excluded[stamp]))


def _template_row(name: str, language: str, **values: Any) -> dict[str, Any]:
    """A registry row as seeded (APPROVED, quality UNKNOWN, our category, every stamp SEEDED_AT), with
    `values` (an attribute and its stamp) over it: the attributes Meta did not speak of yield to its first word."""
    return {"name": name[:200], "language": language[:20], "status": TemplateStatus.APPROVED.value,
            "quality": Quality.UNKNOWN.value, "category": _defined_category(name), "reason": None,
            "status_at": SEEDED_AT, "quality_at": SEEDED_AT, "category_at": SEEDED_AT, **values}


def seed_templates(session: Session) -> None:
    """A row for each template we define that Meta has not reported on (APPROVED, quality UNKNOWN)."""
    table = WhatsAppTemplate.__table__
    stmt = dialect_insert(session.get_bind().dialect.name, table).on_conflict_do_nothing(
        index_elements=["name", "language"])
    session.execute(stmt, [_template_row(t.name, t.language, reason=SEEDED_REASON) for t in TEMPLATES.values()])


def set_template_status(session: Session, name: str, language: str, status: TemplateStatus, reason: str | None,
                        when: datetime) -> None:
    """What Meta says (a webhook, or a send it refused with 132015/132016) becomes the template's status,
    unless a status event dated later is stored (quality and category events do not count here)."""
    _upsert(session, WhatsAppTemplate, ["name", "language"],
            _template_row(name, language, status=status.value, reason=(reason or "")[:300] or None, status_at=when),
            ["status", "reason"], "status_at")
    if status in BLOCKED_STATUSES:
        log.critical("WhatsApp template %s: sends of it are refused until Meta approves it again", status.value,
                     extra={"template": name, "language": language, "template_status": status.value,
                            "reason": reason})
    elif status is TemplateStatus.FLAGGED:
        log.error("WhatsApp template flagged for low quality: it will be paused if it does not improve",
                  extra={"template": name, "language": language})


def _defined_category(name: str) -> str | None:
    definition = TEMPLATES.get(name)
    return definition.category if definition else None


def _set_state(session: Session, key: str, status: str, detail: dict[str, Any], when: datetime) -> None:
    _upsert(session, WhatsAppAccountState, ["key"],
            {"key": key[:60], "status": status[:40], "detail": detail, "updated_at": when}, ["status", "detail"])


def _apply(session: Session, event: AccountEvent, when: datetime) -> tuple[str, str, str]:
    """Store one event's effect; returns (field, subject, event name) for its history row."""
    if isinstance(event, TemplateStatusUpdate):
        set_template_status(session, event.name, event.language, event.status, event.reason, when)
        return "message_template_status_update", f"{event.name}:{event.language}", event.status.value
    if isinstance(event, TemplateQualityUpdate):
        _upsert(session, WhatsAppTemplate, ["name", "language"],
                _template_row(event.name, event.language, quality=event.quality.value, quality_at=when), ["quality"],
                "quality_at")
        if event.quality is Quality.RED:
            log.error("WhatsApp template quality is RED: Meta may pause it",
                      extra={"template": event.name, "language": event.language, "previous": event.previous.value})
        return "message_template_quality_update", f"{event.name}:{event.language}", event.quality.value
    if isinstance(event, TemplateCategoryUpdate):
        _upsert(session, WhatsAppTemplate, ["name", "language"],
                _template_row(event.name, event.language, category=event.category.value, category_at=when),
                ["category"], "category_at")
        log.warning("WhatsApp template category changed by Meta (pricing changes with it)",
                    extra={"template": event.name, "previous": event.previous.value, "category": event.category.value})
        return "template_category_update", f"{event.name}:{event.language}", event.category.value
    if isinstance(event, NumberQualityUpdate):
        _set_state(session, NUMBER_PREFIX + event.display_phone_number, event.event,
                   {"current_limit": event.current_limit, "old_limit": event.old_limit,
                    "max_daily_conversations": event.max_daily_conversations}, when)
        level = logging.ERROR if event.event in ("FLAGGED", "DOWNGRADE") else logging.INFO
        log.log(level, "WhatsApp number quality: %s", event.event,
                extra={"current_limit": event.current_limit, "old_limit": event.old_limit})
        return "phone_number_quality_update", event.display_phone_number, event.event
    if isinstance(event, CapabilityUpdate):
        _set_state(session, CAPABILITIES_KEY, "reported",
                   {"max_daily_conversation_per_phone": event.max_daily_conversation_per_phone,
                    "max_phone_numbers_per_business": event.max_phone_numbers_per_business,
                    "max_phone_numbers_per_waba": event.max_phone_numbers_per_waba,
                    "max_daily_conversations_per_business": event.max_daily_conversations_per_business}, when)
        log.info("WhatsApp business capabilities reported")
        return "business_capability_update", CAPABILITIES_KEY, "reported"
    return _apply_account(session, event, when)


def _apply_account(session: Session, event: AccountUpdate, when: datetime) -> tuple[str, str, str]:
    """A violation is stored apart (`VIOLATION_KEY`): it warns, but neither lifts a restriction or a
    disablement nor makes a later-dated lift of them look stale."""
    status = event.status
    if status is AccountStatus.VIOLATION:
        violation = {"event": event.event_name, "violation_type": event.violation_type}
        _set_state(session, VIOLATION_KEY, status.value, violation, when)
        log.error("WhatsApp account policy violation reported", extra=violation)
    elif status is not None:
        detail = {"event": event.event_name, "ban_state": event.ban_state.value if event.ban_state else None,
                  "ban_date": event.ban_date,
                  "restrictions": [{"type": r.type, "expiration": iso(r.expiration)} for r in event.restrictions]}
        _set_state(session, ACCOUNT_KEY, status.value, detail, when)
        if status in RESTRICTING:
            log.critical("WhatsApp account %s: Meta refuses some or all sends", status.value, extra=detail)
        else:
            log.warning("WhatsApp account standing: %s", status.value, extra={"event": event.event_name})
    else:
        log.info("WhatsApp account event", extra={"event": event.event_name})
    return "account_update", ACCOUNT_KEY, event.event_name


def record_account_events(session: Session, events: Iterable[AccountEvent], now: datetime | None = None) -> int:
    """Store each event's effect and its history row (the caller commits). Returns how many were stored."""
    now = now or utcnow()
    count = 0
    for event in events:
        if count == 0:
            seed_templates(session)  # the registry is complete before Meta's first word is applied
        when = event.time or now
        field_name, subject, name = _apply(session, event, when)
        session.add(WhatsAppAccountEvent(field=field_name, subject=subject[:230], event=name[:60], payload=event.raw,
                                         meta_time=event.time, received_at=now))
        count += 1
    return count


# --- reading ------------------------------------------------------------------------------------------


def template_refusal(session: Session, name: str, language: str) -> TemplateRefused | None:
    """Why `name` in `language` may not be sent now, or None (also when Meta never reported on it)."""
    row = session.get(WhatsAppTemplate, (name, language))
    if row is None or TemplateStatus(row.status) not in BLOCKED_STATUSES:
        return None
    return TemplateRefused(name, language, row.status, row.reason)


@dataclass(frozen=True)
class TemplateState:
    name: str
    language: str
    status: str
    quality: str
    category: str | None
    reason: str | None
    status_at: datetime
    quality_at: datetime
    category_at: datetime

    @property
    def blocked(self) -> bool:
        return TemplateStatus(self.status) in BLOCKED_STATUSES

    @property
    def updated_at(self) -> datetime:
        """When Meta last said anything of it (SEEDED_AT: never)."""
        return max(self.status_at, self.quality_at, self.category_at)


@dataclass(frozen=True)
class SendBlock:
    """Every send held because Meta refused the account's (`ACCOUNT_BLOCK_KEY`): what, since, until."""

    reason: str  # "<code>: <title>" of the refusal
    since: datetime | None  # the refusal that set it (None: set by hand, without an expiry)
    until: datetime | None  # when sends are tried again, unless lifted sooner


def send_block(redis: Redis, now: datetime) -> SendBlock | None:
    """The account block, or None. Its age tells when it was set: every setting lives ACCOUNT_BLOCK_SECONDS.
    A RedisError propagates."""
    pipe = redis.pipeline()
    pipe.get(ACCOUNT_BLOCK_KEY)
    pipe.pttl(ACCOUNT_BLOCK_KEY)
    reason, ttl_ms = pipe.execute()
    if reason is None:
        return None
    until = now + timedelta(milliseconds=ttl_ms) if ttl_ms > 0 else None
    return SendBlock(as_text(reason) or "", until - timedelta(seconds=ACCOUNT_BLOCK_SECONDS) if until else None,
                     until)


@dataclass(frozen=True)
class Snapshot:
    """Everything an operator needs to know of the account at one moment."""

    account_status: AccountStatus
    account_detail: dict[str, Any]
    account_updated_at: datetime | None
    templates: list[TemplateState]
    numbers: dict[str, dict[str, Any]] = field(default_factory=dict)  # display number -> event and limits
    capabilities: dict[str, Any] | None = None
    violation: dict[str, Any] | None = None  # a violation Meta reported since the standing's last event
    send_block: SendBlock | None = None

    @property
    def restricted(self) -> bool:
        return self.account_status in RESTRICTING

    @property
    def blocked_templates(self) -> list[TemplateState]:
        return [t for t in self.templates if t.blocked]

    @property
    def ok(self) -> bool:
        return not self.restricted and not self.blocked_templates and self.send_block is None


def _effective_account(status: AccountStatus, detail: dict[str, Any], now: datetime) -> AccountStatus:
    """A restriction whose every expiration has passed no longer holds."""
    if status is not AccountStatus.RESTRICTED:
        return status
    ends = [datetime.fromisoformat(r["expiration"]) for r in detail.get("restrictions") or []
            if isinstance(r, dict) and r.get("expiration")]
    return AccountStatus.OK if ends and max(ends) <= now else status


def snapshot(session: Session, now: datetime | None = None, block: SendBlock | None = None) -> Snapshot:
    """The registry (with our definitions Meta has not reported on), the account, numbers and limits, with
    the send block the caller read (`send_block`)."""
    now = now or utcnow()
    rows = {(t.name, t.language): TemplateState(t.name, t.language, t.status, t.quality, t.category, t.reason,
                                                t.status_at, t.quality_at, t.category_at)
            for t in session.scalars(select(WhatsAppTemplate))}
    for t in TEMPLATES.values():
        rows.setdefault((t.name, t.language), TemplateState(t.name, t.language, TemplateStatus.APPROVED.value,
                                                            Quality.UNKNOWN.value, t.category, SEEDED_REASON,
                                                            SEEDED_AT, SEEDED_AT, SEEDED_AT))
    states = {s.key: s for s in session.scalars(select(WhatsAppAccountState))}
    account = states.get(ACCOUNT_KEY)
    detail = dict(account.detail or {}) if account else {}
    status = _effective_account(AccountStatus(account.status), detail, now) if account else AccountStatus.OK
    since = account.updated_at if account else None
    reported = states.get(VIOLATION_KEY)
    violation = None
    if reported is not None and (account is None or reported.updated_at >= account.updated_at):
        violation = {**(reported.detail or {}), "since": reported.updated_at.isoformat()}
        if status is AccountStatus.OK:  # a restriction or a disablement says more than a warning
            status, since = AccountStatus.VIOLATION, reported.updated_at
    numbers = {key.removeprefix(NUMBER_PREFIX): {"event": s.status, **(s.detail or {}),
                                                  "updated_at": s.updated_at.isoformat()}
               for key, s in states.items() if key.startswith(NUMBER_PREFIX)}
    capabilities = states.get(CAPABILITIES_KEY)
    return Snapshot(status, detail, since, sorted(rows.values(), key=lambda t: (t.name, t.language)), numbers,
                    dict(capabilities.detail or {}) if capabilities else None, violation, block)
