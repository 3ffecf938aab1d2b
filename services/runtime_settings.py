"""Runtime settings: a few values admins change through the API while every process keeps running.

The database holds the overrides (`runtime_settings`, one row per changed setting; no row = the
default). Each process caches the values and, at most once a second, reads one Redis key, a version
number that every change increments: a changed version means reload. So a change made by one web
process reaches the other web processes within about a second, and every worker at the start of its
next job (`start_of_job`). If Redis is unreachable the cache is reloaded
from the database every `FALLBACK_SECONDS` instead, so a change is never lost, only slower.

Environment settings stay the defaults (`N8N_TIMEOUT_SECONDS`); a runtime override wins.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models import RuntimeSetting, utcnow
from services import context
from services.json_input import json_integer
from services.quota import ISTANBUL
from settings import Settings

log = logging.getLogger(__name__)

VERSION_KEY = "ziraai:runtime-settings:version"
CHECK_SECONDS = 1.0
FALLBACK_SECONDS = 30.0
_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


@dataclass(frozen=True)
class Spec:
    """One runtime setting: its type, bounds, default (possibly from the environment) and meaning."""

    name: str
    kind: str  # "integer" or "time" (HH:MM, Europe/Istanbul)
    default: Callable[[Settings], Any]
    description: str
    minimum: int | None = None
    maximum: int | None = None

    def check(self, value: Any) -> str | None:
        """None if `value` is acceptable, else what is wrong (for a field error)."""
        if self.kind == "integer":
            number = json_integer(value)
            if number is None:
                return "must be an integer"
            if self.minimum is not None and self.maximum is not None and not self.minimum <= number <= self.maximum:
                return f"must be {self.minimum}..{self.maximum}"
            return None
        if not isinstance(value, str) or not _HHMM.fullmatch(value):
            return "must be a time of day as HH:MM (00:00..23:59)"
        return None


SPECS: dict[str, Spec] = {s.name: s for s in (
    Spec("image_max_upload_kb", "integer", lambda _: 5120,
         "Largest photo accepted from a farmer, in KB (WhatsApp itself allows at most 5 MB).", 100, 5120),
    Spec("image_max_width", "integer", lambda _: 800, "Width the photo is fitted into before N8N sees it (px).",
         160, 4000),
    Spec("image_max_height", "integer", lambda _: 600, "Height the photo is fitted into before N8N sees it (px).",
         120, 4000),
    Spec("image_target_kb", "integer", lambda _: 100, "Size the optimised photo must fit in (KB); quality is "
         "lowered step by step until it does.", 10, 2000),
    Spec("image_quality", "integer", lambda _: 70, "JPEG quality the optimisation starts from (it goes down to "
         "20 if the photo does not fit otherwise).", 20, 95),
    Spec("n8n_timeout_seconds", "integer", lambda s: int(s.N8N_TIMEOUT_SECONDS),
         "How long one N8N call may take before it counts as failed and is retried.", 5, 600),
    Spec("quiet_hours_start", "time", lambda _: "21:00", "Proactive messages (sponsor messages) are not sent from "
         "this time (Europe/Istanbul)...; equal start and end mean no quiet hours."),
    Spec("quiet_hours_end", "time", lambda _: "08:00", "...until this time; a message written meanwhile waits."),
    Spec("sponsor_message_daily_cap", "integer", lambda _: 10,
         "Sponsor messages one farmer may receive per day (all sponsors together, Europe/Istanbul days).", 0, 10),
    Spec("support_takeover_minutes", "integer", lambda _: 120,
         "How long a support person's takeover of a conversation lasts unless they choose otherwise; the bot "
         "stays silent for that farmer meanwhile.", 5, 1440),
)}


@dataclass(frozen=True)
class Values:
    """The current value of every runtime setting, as attributes."""

    image_max_upload_kb: int
    image_max_width: int
    image_max_height: int
    image_target_kb: int
    image_quality: int
    n8n_timeout_seconds: int
    quiet_hours_start: str
    quiet_hours_end: str
    sponsor_message_daily_cap: int
    support_takeover_minutes: int

    def quiet_until(self, now: datetime) -> datetime | None:
        """When the quiet hours around `now` end (UTC), or None if `now` is not in quiet hours."""
        start, end = _clock(self.quiet_hours_start), _clock(self.quiet_hours_end)
        if start == end:
            return None
        local = now.astimezone(ISTANBUL)
        t = local.timetz().replace(tzinfo=None)
        inside = start <= t < end if start < end else (t >= start or t < end)
        if not inside:
            return None
        ends = datetime.combine(local.date(), end, tzinfo=ISTANBUL)
        if ends <= local:
            ends += timedelta(days=1)
        return ends.astimezone(now.tzinfo)


def _clock(hhmm: str) -> clock:
    hours, minutes = hhmm.split(":")
    return clock(int(hours), int(minutes))


def load(session: Session, settings: Settings) -> tuple[Values, dict[str, RuntimeSetting]]:
    """The values (defaults overlaid with the stored overrides) and the override rows by name.
    A stored value that no longer passes its check (bounds changed in code) is ignored, with a log line."""
    rows = {r.name: r for r in session.scalars(select(RuntimeSetting))}
    values: dict[str, Any] = {}
    for name, spec in SPECS.items():
        row = rows.get(name)
        if row is not None and spec.check(row.value) is None:
            values[name] = row.value
        else:
            if row is not None:
                log.warning("runtime setting %s: stored value ignored (%s)", name, spec.check(row.value))
            values[name] = spec.default(settings)
    return Values(**values), rows


def save(session: Session, changes: Mapping[str, Any], user_id: int | None, now: datetime | None = None) -> None:
    """Store already-checked changes in the caller's transaction; None returns a setting to its default.
    The caller calls `announce()` after commit."""
    now = now or utcnow()
    for name, value in changes.items():
        if name not in SPECS:
            raise KeyError(name)
        row = session.get(RuntimeSetting, name)
        if value is None:
            if row is not None:
                session.execute(delete(RuntimeSetting).where(RuntimeSetting.name == name))
        elif row is None:
            session.add(RuntimeSetting(name=name, value=value, updated_at=now, updated_by=user_id))
        else:
            row.value, row.updated_at, row.updated_by = value, now, user_id
    session.flush()


def announce() -> None:
    """Tell every process (through the version key) to reload; without Redis they reload within
    `FALLBACK_SECONDS` anyway."""
    try:
        context.redis().incr(VERSION_KEY)
    except RedisError as exc:
        log.warning("runtime settings changed but Redis is unreachable: other processes see the change within "
                    "%d s", FALLBACK_SECONDS, extra={"reason": repr(exc)})
    cache = current_app.extensions.get("runtime_settings")
    if cache is not None:
        cache.invalidate()


class Cache:
    """One per app (per process): the values, reloaded when the shared version moves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Values | None = None
        self._version: bytes | str | None = None
        self._checked = 0.0
        self._loaded = 0.0

    def invalidate(self) -> None:
        with self._lock:
            self._values = None

    def check_at_next_use(self) -> None:
        """Ask Redis for the version at the next read, however recent the last check was."""
        with self._lock:
            self._checked = 0.0

    def get(self) -> Values:
        now = time.monotonic()
        with self._lock:
            if self._values is not None and now - self._checked < CHECK_SECONDS:
                return self._values
            self._checked = now
            stale = self._values is None
            try:
                version = context.redis().get(VERSION_KEY)
                stale = stale or version != self._version
            except RedisError:
                version = self._version
                stale = stale or now - self._loaded >= FALLBACK_SECONDS
            if stale:
                with context.db().reader() as session:
                    self._values, _ = load(session, context.settings())
                self._version, self._loaded = version, now
            assert self._values is not None
            return self._values


def start_of_job() -> None:
    """A job starts with the settings as they are now (one Redis GET), not as a previous job in this
    long-lived worker process saw them up to a second ago."""
    cache: Cache = current_app.extensions.setdefault("runtime_settings", Cache())
    cache.check_at_next_use()


def current() -> Values:
    """The runtime settings as this process knows them (at most about a second old)."""
    cache: Cache = current_app.extensions.setdefault("runtime_settings", Cache())
    return cache.get()
