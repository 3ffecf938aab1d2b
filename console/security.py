"""The console's protections that hold for every page: the CSRF check, the security headers, and
HTML error pages (the rest of the app answers errors as problem+json). Every console area's blueprint
comes from `console_blueprint`, which puts the first two on its routes; the error pages carry the
headers themselves (a path under /console that no route matches still gets them). Nothing here runs for
requests outside the console.

- CSRF: every POST to a console page must carry the session's token (`csrf_token` form field, written by
  `{{ csrf_field() }}`), compared in constant time; otherwise 400 before any view runs. The cookie is
  also SameSite=Strict: two locks, so neither alone is trusted.
- Once only: every form also carries a one-time form token (`form_nonce`, a fresh random value each time
  the form is rendered, by the same `{{ csrf_field() }}`). Before the view runs, the token is claimed in
  Redis (`SET NX` with an expiry, keyed by the session's CSRF token and the nonce); a second post of the
  same form (a double click, a resubmission from the browser's history) does nothing: it waits for the
  first to finish and lands where the first one did (when that is not known, or was not a redirect: the
  page the form's address belongs to, `console.session.page_above`), with a note that it was already done
  (or the view's own, `note_for_repeat`). A first post that was refused did nothing and lets the token go,
  so the corrected form can be sent: an answer of 400 or more (a wrong field re-rendered), or a refusal
  that redirects with its reason flashed (`console.pages.refuse`, which calls `release_form`). A post
  without a token (a page rendered before tokens existed) still works. The sign-in pages' forms
  (`console_auth`: signing in and out, the language, the password, a reset link) act on the session cookie
  itself and are harmless twice, so they are not claimed: a second answer carrying the note would put the
  old cookie back over the new session's.
- CSP: scripts, styles, images and fonts from our own origin only; no inline script or style, no
  frames, forms post only to us. `Cache-Control: no-store` (pages hold personal data), no referrer
  (a reset link's token must not leak), no framing, no MIME sniffing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from typing import Any

from flask import Blueprint, Response, abort, flash, make_response, redirect, request, session
from markupsafe import Markup, escape
from redis.exceptions import RedisError
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import HTTPException, ServiceUnavailable
from werkzeug.wrappers import Response as BaseResponse

from console.session import csrf_token, current_locale, page_above
from models.db import MAX_ROW_ID
from services import context
from services.json_input import UNSTORABLE_CHARS, has_unstorable
from translations import N_, console_text

log = logging.getLogger(__name__)

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
NONCE_FIELD = "form_nonce"
ALREADY_DONE = N_("This form was already sent; it was not done a second time.")
_CLAIM_KEY = "console:form:"
_PENDING = "-"
WAIT_FOR_FIRST = 10.0  # seconds a second post waits for the first one's answer to learn where it landed
_CLAIM = "ziraai.console.form_claim"
_REFUSED = "ziraai.console.form_refused"
_NOTE = "ziraai.console.form_note"


def csrf_field() -> Markup:
    """The hidden inputs every console form carries: the session's CSRF token and a one-time form token."""
    return (Markup('<input type="hidden" name="%s" value="%s">') % (CSRF_FIELD, escape(csrf_token()))
            + Markup('<input type="hidden" name="%s" value="%s">') % (NONCE_FIELD, secrets.token_urlsafe(16)))


def check_csrf() -> None:
    """400 for a POST without the session's token (before the view runs)."""
    if request.method != "POST":
        return
    expected = session.get("csrf")
    given = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        abort(400, description=CSRF_REFUSED)


def _claim_key(nonce: str) -> str:
    """One form of one session (the CSRF token is the session's; hashed, so neither is stored)."""
    return _CLAIM_KEY + hashlib.sha256(f"{session.get('csrf')}:{nonce}".encode()).hexdigest()


def release_form() -> None:
    """This post was refused and did nothing, though it answers with a redirect (a flashed reason): its token is
    let go, as for an answer of 400 or more, so the corrected form can be sent (console.pages' `refuse`)."""
    request.environ[_REFUSED] = True


def note_for_repeat(msgid: str) -> None:
    """What a repeated post of this form is told where it lands, instead of ALREADY_DONE (an English msgid
    marked with N_): for a form whose first answer cannot be shown again (a reset link, shown once)."""
    request.environ[_NOTE] = msgid


def claim_form() -> BaseResponse | None:
    """Claim this post's one-time form token before the view runs; for a token already claimed, the
    redirect to where its first post landed (after waiting for that post's answer), with a note."""
    nonce = request.form.get(NONCE_FIELD, "") if request.method == "POST" else ""
    if not nonce:
        return None
    key = _claim_key(nonce)
    redis = context.redis()
    deadline = time.monotonic() + WAIT_FOR_FIRST
    try:
        while True:
            if redis.set(key, _PENDING, nx=True, ex=context.settings().CONSOLE_SESSION_HOURS * 3600):
                request.environ[_CLAIM] = key
                return None
            raw = redis.get(key)
            landing = raw.decode() if isinstance(raw, bytes) else raw
            if landing is None:
                continue  # the first post failed and let the token go: this one may do the work
            if landing != _PENDING or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    except RedisError as exc:
        raise ServiceUnavailable("The session store is unavailable; try again shortly.") from exc
    landing, _, note = (landing if landing != _PENDING else page_above(request.path)).partition("\n")
    flash(console_text(current_locale(), note or ALREADY_DONE), "info")
    return redirect(landing)


def record_form(response: Response) -> Response:
    """After the claimed post's answer: where it landed (and what to say there, `note_for_repeat`), for a
    repeated post; or, when it failed (400 or more, or a refusal marked by `release_form`: nothing was done),
    the token let go so the form can be sent again."""
    key = request.environ.pop(_CLAIM, None)
    if key is None:
        return response
    try:
        if response.status_code >= 400 or request.environ.get(_REFUSED):
            context.redis().delete(key)
        else:
            landing = response.location if 300 <= response.status_code < 400 and response.location else None
            note = request.environ.get(_NOTE)
            landing = (landing or page_above(request.path)) + (f"\n{note}" if note else "")
            context.redis().set(key, landing, xx=True, keepttl=True)
    except RedisError:
        log.warning("console: could not record the outcome of a form", exc_info=True)
    return response


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


def console_blueprint(name: str, import_name: str, *, once_only: bool = True, **options: Any) -> Blueprint:
    """A console area's blueprint: under /console, the input guard, the CSRF check and (unless `once_only`
    is False) the one-time form token before its views, and the security headers on its answers."""
    bp = Blueprint(name, import_name, url_prefix="/console", **options)
    bp.before_request(storable_input)
    bp.before_request(check_csrf)
    if once_only:
        bp.before_request(claim_form)
        bp.after_request(record_form)
    bp.after_request(add_headers)
    return bp


def error_page(exc: HTTPException) -> Response:
    """An HTML error page in the console's look and language, with the console's headers (the app's
    handler calls this for any path under /console, routed or not)."""
    from console.pages import render_error

    return add_headers(make_response(render_error(exc)))
