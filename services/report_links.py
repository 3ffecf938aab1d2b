"""Links to an analysis's report page (`/r/<token>`, served by `web.report`).

The token is the analysis id signed with the same key as the media links but under its own salt,
so a media token never opens a report and a report token never opens a photo.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import current_app, url_for
from itsdangerous import BadData, SignatureExpired

from models.db import MAX_ROW_ID
from services import context
from services.storage import InvalidKey, link_serializer, sign_token

REPORT_SALT = "ziraai-report"


class ReportLinkInvalid(Exception):
    """Not a report token of ours (tampered, truncated, a media token, another key)."""


class ReportLinkExpired(ReportLinkInvalid):
    """Ours, but older than the allowed age; `analysis_id` says whose page it was."""

    def __init__(self, analysis_id: int | None) -> None:
        super().__init__("report link expired")
        self.analysis_id = analysis_id


def sign_report(analysis_id: int, secret: str) -> str:
    return str(link_serializer(secret, REPORT_SALT).dumps(int(analysis_id)))


def _analysis_id(payload: Any) -> int | None:
    """A row id, or None: an id past the column's range names no analysis (and the database would refuse it)."""
    return payload if isinstance(payload, int) and not isinstance(payload, bool) and 0 < payload <= MAX_ROW_ID \
        else None


def read_report_token(token: str, secret: str | list[str], max_age: int) -> int:
    """The analysis id a token was signed for. Raises ReportLinkExpired or ReportLinkInvalid."""
    serializer = link_serializer(secret, REPORT_SALT)
    try:
        payload = serializer.loads(token, max_age=max_age)
    except SignatureExpired as exc:  # the signature is good, only the age is wrong
        try:
            expired_id = _analysis_id(serializer.load_payload(exc.payload)) if exc.payload else None
        except BadData:
            expired_id = None
        raise ReportLinkExpired(expired_id) from None
    except BadData:
        raise ReportLinkInvalid("report link invalid") from None
    analysis_id = _analysis_id(payload)
    if analysis_id is None:
        raise ReportLinkInvalid("report link invalid")
    return analysis_id


def secret() -> str:
    # The app's link-signing key (derived from JWT_SECRET in create_app); REPORT_SALT keeps the purposes apart.
    return str(current_app.extensions["media_secret"])


def verifying_secrets() -> str | list[str]:
    """Every key a link may have been signed with (the previous JWT_SECRET key during a rotation)."""
    return current_app.extensions.get("media_secrets") or secret()


def report_link(analysis_id: int) -> str:
    """The absolute link to an analysis's page (`PUBLIC_BASE_URL/r/<token>`), for the `Detaylar` reply."""
    base = context.settings().PUBLIC_BASE_URL.rstrip("/")
    return f"{base}/r/{sign_report(analysis_id, secret())}"


def photo_links(keys: Iterable[str]) -> list[str]:
    """Fresh signed `/media/<token>` links to stored photos, in order (relative: the same server, whatever
    host the page was opened on); a key the store could never hold is skipped."""
    links = []
    for key in keys:
        try:
            links.append(url_for("media.serve", token=sign_token(key, secret())))
        except InvalidKey:
            continue
    return links
