"""The staff console: server-rendered HTML at `/console` for support staff, sponsors and admins.

Same staff accounts, roles and services as the admin API; Turkish by default, English selectable;
every asset is ours (no CDN, no outside JS), pages work without JavaScript; strict CSP.

Modules: `session` (who is signed in, `staff_required`, idle and absolute expiry), `pages` (`render`,
`audit_view`, the navigation registry), `security` (CSRF, headers), `auth` (sign-in, sign-out, password
change, reset links, language), `health` (the WhatsApp account banner on staff pages), `admin` (admin pages);
`support` and `sponsor` (with `charts`, its inline SVG bar charts) are the other areas.

Conventions (how to add...)

- a page: in your area's module (its own `console_blueprint("console_<area>", __name__)` from
  console.security: under /console, with the CSRF check and the security headers; registered below with
  one line), write a view decorated with `@staff_required("support", "admin")`
  (the roles are explicit, as in the API: no session -> redirect to the login page, another role ->
  404, never 403) that returns `render("console/<area>_<page>.html", **context)`. The template
  `{% extends "console/base.html" %}` and fills `{% block title %}` and `{% block content %}`. An area
  whose start page is the endpoint `console_<area>.index` is where `/console` sends that role. Add the
  page to the navigation with `nav_item(...)` (console.pages) at import time. A page that shows a
  farmer's personal data calls `audit_view(action, target_type, target_id)`.
- a list: `Pager(page_number(), PER_PAGE, total)` (console.pages) slices the query; the template shows
  the rows with the macros of `console/_macros.html` (`table` with its empty-state text, `page_nav`);
  a form that is one button is `post_button`. Numbers from a query string or form: `whole_number`.
- text: every visible string goes through `_("English source")` in templates (`_n(singular, plural, n)`
  for plurals, `%(name)s` placeholders as keyword arguments) and `console_text(locale, "...")` in Python
  (`current_locale()` from console.session; a label in a table marked with `N_("...")` and translated
  where shown). Then `make console-messages` and fill every Turkish msgstr in
  `translations/tr/LC_MESSAGES/console.po` (`python -m translations.check` fails on a missing one).
  Dates with `datetime(value)` / `date(value)` in templates: Europe/Istanbul, in the page's language.
- a form: `<form method="post">` with `{{ csrf_field() }}` inside (the CSRF token and a one-time form token);
  every POST to a console page without the session's token is refused with a 400 page before any view runs,
  and a form posted twice is done once (console.security: the second lands where the first did). After a
  successful POST: `flash_text("success", "English source", **params)` (console.pages) and redirect
  (post/redirect/get).
  Parse the form once into a frozen dataclass; a bad field re-renders the form with its message and what was
  typed (`render(..., status=400)`), never a 5xx. A refusal that redirects instead says why with
  `refuse("English source")` (console.pages), which lets the one-time token go (an error flashed by
  `flash_text` would not), so the corrected form is done rather than taken for a repeat. A form with free text (`text`,
  `title`) restores it on its page after a sign-in (`take_draft`, console.session).
- styles: `console/static/console/console.css` only (no inline style attributes: the CSP forbids them);
  inline SVG with presentation attributes (`fill="..."`) is allowed.
"""

from __future__ import annotations

from flask import Flask

from console.session import configure_session

__all__ = ["init_console"]


def init_console(app: Flask) -> None:
    """Register the console's blueprints (each behind the CSRF check, with the security headers) and its
    session cookie."""
    from console.admin import bp as admin_bp
    from console.auth import bp as auth_bp
    from console.sponsor import bp as sponsor_bp
    from console.support import bp as support_bp

    configure_session(app)
    app.register_blueprint(auth_bp)  # first: it carries the templates and static files
    app.register_blueprint(admin_bp)
    app.register_blueprint(sponsor_bp)
    app.register_blueprint(support_bp)
