"""Structured JSON logs with a correlation id, and phone numbers (also those inside wamids) masked on the way out.

Support reads these logs next to the message log: the correlation id is `inbound-<message id>` for a
handed-off message or the RQ job id, so one grep follows a message from the webhook to its reply.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

from services.masking import mask_phones_in

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)

def get_correlation_id() -> str | None:
    return _correlation_id.get()


@contextlib.contextmanager
def correlation(cid: str | None) -> Iterator[None]:
    token = _correlation_id.set(cid)
    try:
        yield
    finally:
        _correlation_id.reset(token)


_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        cid = get_correlation_id()
        if cid:
            data["correlation_id"] = cid
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return mask_phones_in(json.dumps(data, ensure_ascii=False, default=str))


def configure_logging(level: str = "INFO") -> None:
    """One JSON handler on the root logger; idempotent so tests and CLI can call it freely."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "_ziraai", False):
            handler.setLevel(level)
            root.setLevel(level)
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._ziraai = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
