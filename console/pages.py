"""Rendering console pages: `render` (what every template gets), the navigation registry, `audit_view`,
and the error page.

Every template is rendered with `render(...)`, which adds: `staff` (the signed-in user or None),
`locale`, `_` / `_n` (console text in the page's language), `csrf_field()`, `datetime(value)` /
`date(value)` (Europe/Istanbul, localised), `crop(value)` (a known crop's name as the farmer reads it, in
the page's language; a typed one as typed), `nav` (this role's links), `health_warnings` (the WhatsApp
account banner), `languages`, and `here` (the current path, for the language switch).

A list page reads its page with `page_number()` and slices with a `Pager`; any number in a query string or
form goes through `whole_number` (a bad one is ignored, never a 500).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date as date_type
from datetime import datetime as datetime_type
from typing import Any

from flask import flash, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from bot.replies import crop_name
from console.security import CSRF_REFUSED, csrf_field, release_form
from console.session import app_has_endpoint, current_locale, current_staff
from models import StaffUser
from services.audit import audit
from translations import N_, SUPPORTED_LOCALES, console_ntext, console_text, format_date, format_datetime

log = logging.getLogger(__name__)

LANGUAGE_NAMES = {"tr": "Türkçe", "en": "English"}
ROLE_NAMES = {"admin": N_("Admin"), "support": N_("Support"), "sponsor": N_("Sponsor")}


MAX_PAGE = 100_000


def whole_number(raw: str | None, low: int, high: int) -> int | None:
    """A plain decimal number within [low, high], else None (no sign, no Unicode digits, no huge strings)."""
    raw = (raw or "").strip()
    if not raw or len(raw) > 9 or not (raw.isascii() and raw.isdigit()):
        return None
    value = int(raw)
    return value if low <= value <= high else None


def page_number() -> int:
    """The `page` query argument; anything unusable is page 1 (a list page never fails on its query string)."""
    return whole_number(request.args.get("page"), 1, MAX_PAGE) or 1


@dataclass(frozen=True)
class Pager:
    """One page of `total` rows, `per_page` at a time: what the query slices and `pager()` in the templates shows."""

    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


@dataclass(frozen=True)
class NavItem:
    """A link in the top navigation: the endpoint, its label (an English msgid marked with N_), who sees it."""

    endpoint: str
    label: str
    roles: tuple[str, ...]
    order: int = 100


NAV: list[NavItem] = []


def nav_item(endpoint: str, label: str, *roles: str, order: int = 100) -> None:
    """Add a navigation link for these roles (call at import time; `label` marked with `N_`)."""
    if not any(item.endpoint == endpoint for item in NAV):
        NAV.append(NavItem(endpoint, label, roles, order))


def navigation(role: str | None) -> list[NavItem]:
    if role is None:
        return []
    return sorted((item for item in NAV if role in item.roles and app_has_endpoint(item.endpoint)),
                  key=lambda item: (item.order, item.endpoint))


def text_helpers(locale: str) -> dict[str, Callable[..., str]]:
    """`_`, `_n`, `datetime`, `date`, `crop` bound to one language, for templates."""
    def _(msgid: str, **params: Any) -> str:
        return console_text(locale, msgid, **params)

    def _n(singular: str, plural: str, n: int, **params: Any) -> str:
        return console_ntext(locale, singular, plural, n, **params)

    def show_datetime(value: datetime_type | None) -> str:
        return "" if value is None else format_datetime(value, locale)

    def show_date(value: date_type | datetime_type | None) -> str:
        return "" if value is None else format_date(value, locale, "medium")

    def show_crop(value: str | None) -> str:
        return crop_name(locale, value) if value else ""

    return {"_": _, "_n": _n, "datetime": show_datetime, "date": show_date, "crop": show_crop}


def health_warnings() -> list[str]:
    """What is wrong with the WhatsApp account, translated, for the banner on every page (empty: all well)."""
    from console.health import account_warnings

    try:
        return account_warnings(current_locale())
    except Exception:  # the banner must never take a page down
        log.exception("console: could not read the WhatsApp account health")
        return []


def _base_context(staff: StaffUser | None, locale: str) -> dict[str, Any]:
    return {"staff": staff, "locale": locale, "csrf_field": csrf_field, "role_names": ROLE_NAMES,
            "nav": navigation(staff.role if staff else None),
            "languages": [(code, LANGUAGE_NAMES.get(code, code)) for code in SUPPORTED_LOCALES],
            **text_helpers(locale)}


def render(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    """A console page: the template with everything base.html needs (see the module docstring), answered
    with HTTP `status` (so a template variable cannot be called `status`)."""
    locale = current_locale()
    staff = current_staff()
    warnings = health_warnings() if staff is not None and staff.role != "sponsor" else []
    # where the language switch returns: this page, or (after a POST, whose address may take no GET) the start
    here = request.full_path.rstrip("?") if request.method == "GET" else "/console"
    page = render_template(template, **_base_context(staff, locale), health_warnings=warnings, here=here, **context)
    return page, status


def flash_text(category: str, msgid: str, /, **params: Any) -> None:
    """Flash a console text in the page's language (`success`, `error`, `info`, `warning`): what a view
    says after a POST, before it redirects."""
    flash(console_text(current_locale(), msgid, **params), category)


def refuse(msgid: str, /, **params: Any) -> None:
    """Flash why a POST was refused (it did nothing) before the view redirects: its one-time form token is let
    go (console.security), so the corrected form is done, not taken for a repeat."""
    flash_text("error", msgid, **params)
    release_form()


def audit_view(action: str, target_type: str, target_id: object) -> None:
    """Write that the signed-in person looked at someone's personal data (its own transaction)."""
    audit(action, target_type, target_id, {"via": "console"})


ERROR_TITLES = {
    400: N_("The request could not be used."),
    404: N_("There is no such page."),
    405: N_("This page does not accept that."),
    429: N_("Too many attempts; wait a moment and try again."),
    500: N_("Something went wrong on our side."),
    503: N_("Temporarily unavailable; try again shortly."),
}


def render_error(exc: HTTPException) -> ResponseReturnValue:
    """The error page; it must never fail itself (no banner, and no user when the store is down)."""
    status = exc.code or 500
    locale = current_locale()
    title = ERROR_TITLES.get(status, ERROR_TITLES[500])
    message = console_text(locale, CSRF_REFUSED) if status == 400 and exc.description == CSRF_REFUSED else None
    try:
        staff = current_staff()
    except Exception:  # e.g. Redis or the database is what failed
        staff = None
    page = render_template("console/error.html", **_base_context(staff, locale), health_warnings=[],
                           here="/console", status=status, title=console_text(locale, title), message=message)
    headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
    return page, status, headers
