"""The console's protections that hold for every page: the CSRF check, the security headers, and
HTML error pages (the rest of the app answers errors as problem+json). Every console area's blueprint
comes from `console_blueprint`, which puts the first two on its routes; the error pages carry the
headers themselves (a path under /console that no route matches still gets them). Nothing here runs for
requests outside the console.

- CSRF: every POST to a console page must carry the session's token (`csrf_token` form field, written by
  `{{ csrf_field() }}`), compared in constant time; otherwise 400 before any view runs. The cookie is
  also SameSite=Strict: two locks, so neither alone is trusted.
- CSP: scripts, styles, images and fonts from our own origin only; no inline script or style, no
  frames, forms post only to us. `Cache-Control: no-store` (pages hold personal data), no referrer
  (a reset link's token must not leak), no framing, no MIME sniffing.
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, abort, make_response, request, session
from markupsafe import Markup, escape
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import HTTPException

from console.session import csrf_token
from models.db import MAX_ROW_ID
from services.json_input import UNSTORABLE_CHARS, has_unstorable
from translations import N_

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
CSRF_FIELD = "csrf_token"
CSRF_REFUSED = N_("The form has expired or did not come from this site. Reload the page and try again.")


def csrf_field() -> Markup:
    """The hidden input every console form carries."""
    return Markup('<input type="hidden" name="%s" value="%s">') % (CSRF_FIELD, escape(csrf_token()))


def check_csrf() -> None:
    """400 for a POST without the session's token (before the view runs)."""
    if request.method != "POST":
        return
    expected = session.get("csrf")
    given = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        abort(400, description=CSRF_REFUSED)


def add_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/console/static/"):
        response.headers["Cache-Control"] = "no-store"
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def storable_input() -> None:
    """What PostgreSQL cannot take never reaches it: a path id beyond a 32-bit column, or a path value with
    NUL or a lone surrogate, names nothing (404); those characters are dropped from the query string and
    the form (as the text fields drop other control characters), so a filter or a form never fails on them."""
    for value in (request.view_args or {}).values():
        if (isinstance(value, int) and value > MAX_ROW_ID) or (isinstance(value, str) and has_unstorable(value)):
            abort(404)
    for name in ("args", "form"):
        given = getattr(request, name)
        if any(has_unstorable(k) or has_unstorable(v) for k, v in given.items(multi=True)):
            setattr(request, name, ImmutableMultiDict([(UNSTORABLE_CHARS.sub("", k), UNSTORABLE_CHARS.sub("", v))
                                                       for k, v in given.items(multi=True)]))


def console_blueprint(name: str, import_name: str, **options: Any) -> Blueprint:
    """A console area's blueprint: under /console, the input guard and the CSRF check before its views,
    and the security headers on its answers."""
    bp = Blueprint(name, import_name, url_prefix="/console", **options)
    bp.before_request(storable_input)
    bp.before_request(check_csrf)
    bp.after_request(add_headers)
    return bp


def error_page(exc: HTTPException) -> Response:
    """An HTML error page in the console's look and language, with the console's headers (the app's
    handler calls this for any path under /console, routed or not)."""
    from console.pages import render_error

    return add_headers(make_response(render_error(exc)))
