"""Who is signed in to the console: a server-side session in Redis named by a signed cookie.

The cookie (Flask's signed session, `ziraai_console`, path /console, HttpOnly, SameSite=Strict, Secure
in production) carries only a random session id, the CSRF token and the chosen language. What the id
means lives in Redis (`console:session:<sha256 of the id>`: the user, when it started, a fingerprint of
the password hash), so:
- signing out deletes it at once (a copied cookie is worthless afterwards);
- it expires after `CONSOLE_IDLE_MINUTES` without a request (each request renews the key's TTL) and
  after `CONSOLE_SESSION_HOURS` whatever happens;
- a password change or reset ends every other session of that person, and a deactivation every one of
  them, for good (`StaffUser.login_fingerprint` no longer matches; the same rule refuses the person's
  API tokens), and a deactivated account or a changed role counts at once (the user is re-read each
  request).
The cookie's signing key is derived from JWT_SECRET (never used as is), so production's strong-secret
check covers it and a JWT_SECRET rotation (new,old) keeps people signed in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from flask import Flask, Request, abort, current_app, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException, ServiceUnavailable

from models import StaffUser
from services import context
from services.audit import record_via
from services.staff_auth import ROLES
from translations import resolve_locale

F = TypeVar("F", bound=Callable[..., Any])

COOKIE_NAME = "ziraai_console"
_KEY = "console:session:"
_DRAFT_KEY = "console:draft:"
DRAFT_SECONDS = 3600  # how long a form's text waits for its writer to sign in again
DRAFT_TEXT = ("text", "title")  # the free text a form may carry (a reply, a note, a message, a canned reply)
DRAFT_FIELDS = (*DRAFT_TEXT, "id")  # kept when a session has ended, with the row the form was for (a canned reply)
_STAFF = "ziraai.console.staff"
_EXPIRED = "ziraai.console.expired"


def is_console_path(path: str) -> bool:
    return path == "/console" or path.startswith("/console/")


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, opened only under /console. The cookie's path is /console, so a
    browser never sends it anywhere else, and nothing else uses a session: elsewhere (the webhooks, the
    API, health) a request gets Flask's null session (read as empty; writing to it raises) and pays
    nothing for one: no serializer built, no cookie parsed, nothing saved."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not is_console_path(request.path):
            return None  # Flask then uses its null session, which it never saves
        return super().open_session(app, request)


def configure_session(app: Flask) -> None:
    """The session cookie's key and flags (the console is the only user of Flask's session)."""
    app.session_interface = ConsoleSessionInterface()
    settings = app.extensions["settings"]
    keys = [hmac.new(key.encode(), b"ziraai-console-session", hashlib.sha256).hexdigest()
            for key in settings.jwt_keys]
    app.secret_key = keys[0]
    app.config.update(
        SECRET_KEY_FALLBACKS=keys[1:],
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.is_production,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.CONSOLE_SESSION_HOURS),
    )


def _unavailable() -> ServiceUnavailable:
    """Redis down: a 503 page, never a pass (raised `from` the Redis error, which stays in the traceback)."""
    return ServiceUnavailable("The session store is unavailable; try again shortly.")


def _key(sid: str) -> str:
    return _KEY + hashlib.sha256(sid.encode()).hexdigest()


def current_locale() -> str:
    """The language chosen on the page (kept in the cookie), Turkish by default."""
    return resolve_locale(session.get("locale"))


def set_locale(locale: str) -> None:
    session["locale"] = resolve_locale(locale)


def csrf_token() -> str:
    """The session's CSRF token, made on first use (also before signing in: the login form has one)."""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def sign_in(user: StaffUser, now: float | None = None) -> None:
    """Start a new session for `user` (a new id and CSRF token: nothing from before survives)."""
    settings = context.settings()
    locale, draft = session.get("locale"), session.get("draft")
    session.clear()
    sid = secrets.token_urlsafe(32)
    try:
        pipe = context.redis().pipeline()  # one MULTI: never a session key without its expiry
        pipe.hset(_key(sid), mapping={"user_id": user.id, "started": int(now or time.time()),
                                      "password": user.login_fingerprint})
        pipe.expire(_key(sid), settings.CONSOLE_IDLE_MINUTES * 60)
        pipe.execute()
    except RedisError as exc:
        raise _unavailable() from exc
    session.permanent = True
    if isinstance(draft, str) and _draft_owned_by(draft, user.id):  # typed before signing in again: its page shows it
        session["draft"] = draft
    session["sid"] = sid
    session["uid"] = user.id  # whose session it was, once it has ended: a draft kept then is theirs only
    session["csrf"] = secrets.token_urlsafe(32)
    if locale:
        session["locale"] = locale
    request.environ[_STAFF] = user
    g.staff_user = user


def sign_out() -> int | None:
    """End the session here and in Redis; the user id it belonged to, if any."""
    sid = session.get("sid")
    user_id = None
    if isinstance(sid, str):
        try:
            raw = context.redis().hget(_key(sid), "user_id")
            context.redis().delete(_key(sid))
        except RedisError as exc:
            raise _unavailable() from exc
        user_id = int(raw) if raw else None
    locale, csrf, uid = session.get("locale"), session.get("csrf"), session.get("uid")
    session.clear()
    if locale:
        session["locale"] = locale
    if uid:  # a form then posted from another tab is kept for this person only
        session["uid"] = uid
    if csrf:  # a form still open in another tab then reaches its page, which keeps its text through the sign-in
        session["csrf"] = csrf
    request.environ[_STAFF] = None
    g.pop("staff_user", None)
    return user_id


def current_staff() -> StaffUser | None:
    """The signed-in staff user of this request, re-read from the database; None when there is none,
    the session expired (idle or absolute), the password changed or the account was deactivated."""
    if _STAFF in request.environ:  # once per request (kept on the request: an app context may outlive it)
        return request.environ[_STAFF]  # type: ignore[no-any-return]
    request.environ[_STAFF] = user = _load_staff(time.time())
    if user is not None:
        g.staff_user = user  # services.audit writes rows for this user
    else:
        g.pop("staff_user", None)
    return user


def _load_staff(now: float) -> StaffUser | None:
    sid = session.get("sid")
    if not isinstance(sid, str):
        return None
    settings = context.settings()
    try:
        record = context.redis().hgetall(_key(sid))
    except RedisError as exc:
        raise _unavailable() from exc
    fields = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
              for k, v in record.items()}
    user = None
    if fields and now - int(fields.get("started", 0)) < settings.CONSOLE_SESSION_HOURS * 3600:
        with context.db().reader() as db:
            user = db.get(StaffUser, int(fields["user_id"]))
        if user is not None and (not user.active or user.login_fingerprint != fields.get("password")):
            user = None
    if user is None:
        _forget(sid)
        request.environ[_EXPIRED] = True
        return None
    try:
        context.redis().expire(_key(sid), settings.CONSOLE_IDLE_MINUTES * 60)  # idle time starts again
    except RedisError as exc:
        raise _unavailable() from exc
    return user


def _forget(sid: str) -> None:
    try:
        context.redis().delete(_key(sid))
    except RedisError as exc:
        raise _unavailable() from exc
    session.pop("sid", None)


def safe_next(target: str | None) -> str | None:
    """A `next` address to go back to after signing in: a path under /console on this site, else None."""
    if not target or "\\" in target or any(ord(c) < 32 for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not (parts.path == "/console" or parts.path.startswith("/console/")):
        return None
    if any(segment in (".", "..") for segment in unquote(parts.path).split("/")):  # /console/../dev: not under it
        return None
    return target


def form_page() -> str:
    """Where to return after signing in when a form was posted without a session (its address takes a POST,
    not a GET): the page the form was on. That is the Referer when the browser sent one of ours, else
    `page_above(the form's address)`."""
    referer = urlsplit(request.headers.get("Referer", ""))
    if referer.netloc == request.host:
        back = safe_next(referer.path + (f"?{referer.query}" if referer.query else ""))
        if back:
            return back
    return page_above(request.path)


def page_above(path: str) -> str:
    """The page a form's address belongs to: the address itself if it shows a page (takes a GET), else the
    nearest address above it that does (`/console/support/farmers/14/reply` -> `/console/support/farmers/14`),
    else the console's start. The sign-in's `next` and a repeated form's landing both follow this rule."""
    adapter = current_app.create_url_adapter(request)
    while adapter is not None and is_console_path(path) and path != "/console":
        try:
            adapter.match(path, method="GET")
            return path
        except HTTPException:  # no page here (405, 404, a redirect): one step up
            path = path.rsplit("/", 1)[0]
    return "/console"


def keep_draft(page: str) -> None:
    """Keep a posted form's free text (DRAFT_FIELDS) for `page`, where it is shown again once the person signed
    in again (`take_draft`): a reply being written is not lost to a session that ended meanwhile. In Redis for
    DRAFT_SECONDS, named by a random id in the cookie; it belongs to the person whose session ended (`uid`), and
    the sign-in of anyone else drops it."""
    owner = session.get("uid")
    fields = {name: request.form[name][:10_000] for name in DRAFT_FIELDS if request.form.get(name, "").strip()}
    if not isinstance(owner, int) or not fields.keys() & set(DRAFT_TEXT):
        return  # nothing typed, or nobody known to give it back to
    token = secrets.token_urlsafe(16)
    draft = {"page": urlsplit(page).path, "action": request.path, "fields": fields, "owner": owner}
    try:
        context.redis().set(_DRAFT_KEY + token, json.dumps(draft), ex=DRAFT_SECONDS)
    except RedisError as exc:
        raise _unavailable() from exc
    session["draft"] = token


def _draft_owned_by(token: str, user_id: int) -> bool:
    """Whether the kept draft is this person's; someone else's is deleted (never shown to another staff user
    signing in in the same browser)."""
    try:
        raw = context.redis().get(_DRAFT_KEY + token)
        if raw and json.loads(raw).get("owner") == user_id:
            return True
        context.redis().delete(_DRAFT_KEY + token)
    except RedisError as exc:
        raise _unavailable() from exc
    return False


def take_draft(page: str) -> dict[str, Any] | None:
    """The text kept for this page (`{"action": the form's address, "fields": {name: text}}`), once; None if
    there is none, or it is for another page (it waits for that one)."""
    token = session.get("draft")
    if not isinstance(token, str):
        return None
    try:
        raw = context.redis().get(_DRAFT_KEY + token)
        draft = json.loads(raw) if raw else None
        if draft is not None and draft.get("page") != page:
            return None
        context.redis().delete(_DRAFT_KEY + token)
    except RedisError as exc:
        raise _unavailable() from exc
    session.pop("draft", None)
    return draft


def staff_required(*roles: str) -> Callable[[F], F]:
    """Only these roles see the page. Not signed in (or expired) -> the login page, then back here;
    another role -> 404, so nobody learns which pages other roles have."""
    unknown = set(roles) - set(ROLES)
    if not roles or unknown:
        raise ValueError(f"staff_required needs known roles, got {roles!r}")

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_staff()
            if user is None:
                target = request.full_path.rstrip("?") if request.method == "GET" else form_page()
                if request.method == "POST":
                    keep_draft(target)
                expired = "1" if request.environ.get(_EXPIRED) else None
                return redirect(url_for("console_auth.login", next=target, expired=expired))
            if user.role not in roles:
                abort(404)
            record_via("console")  # what a service audits for this view says it came from the console
            return view(*args, **kwargs)

        wrapper.console_roles = roles  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


def app_has_endpoint(endpoint: str) -> bool:
    return endpoint in current_app.view_functions
