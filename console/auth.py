"""Signing in and out of the console, the start page per role, the language switch, changing one's
password and the page of a one-time reset link.

Sign-in uses the API login's rules (services.staff_auth.check_credentials): the same accounts, password
hashing, failure limits per account and per address (429 page with Retry-After), inactive accounts
refused, and the same `auth.login` audit row (details say `via: console`).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from werkzeug.routing import BuildError

from console.pages import flash_text, render
from console.security import console_blueprint
from console.session import (
    current_locale,
    current_staff,
    safe_next,
    set_locale,
    sign_in,
    sign_out,
    staff_required,
)
from models import StaffUser, utcnow
from services import context
from services.audit import audit
from services.password_reset import peek_reset_token, take_reset_token
from services.staff_auth import (
    LimiterUnavailable,
    TooManyAttempts,
    check_credentials,
    password_problem,
    set_password,
    verify_password,
)
from translations import SUPPORTED_LOCALES, console_text

# Not once-only: these forms act on the session cookie itself, and each is harmless twice (console.security).
bp = console_blueprint("console_auth", __name__, once_only=False, template_folder="templates",
                       static_folder="static", static_url_path="/static")

HOME_ENDPOINTS = {"admin": "console_admin.index", "support": "console_support.index",
                  "sponsor": "console_sponsor.index"}


@dataclass(frozen=True)
class LoginForm:
    email: str
    password: str

    @classmethod
    def parse(cls, form: dict[str, str]) -> LoginForm | None:
        email = form.get("email", "").strip()
        password = form.get("password", "")
        if not email or not password or len(email) > 254 or len(password) > 1024:
            return None
        return cls(email, password)


@bp.get("/")
@bp.get("")
def home() -> ResponseReturnValue:
    """The start page of the signed-in person's role."""
    staff = current_staff()
    if staff is None:
        return redirect(url_for("console_auth.login"))
    try:
        return redirect(url_for(HOME_ENDPOINTS[staff.role]))
    except (BuildError, KeyError):  # that area is not installed: a plain page with the navigation
        return render("console/home.html")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    locale = current_locale()
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if current_staff() is not None:
            return redirect(target or url_for("console_auth.home"))
        notice = console_text(locale, "Your session has ended; sign in again.") if request.args.get("expired") else None
        if session.get("draft"):
            notice = console_text(locale, "Your session has ended; sign in again. What you typed is kept and comes "
                                          "back on its page.")
        return render("console/login.html", next=target, email="", error=None, notice=notice)
    form = LoginForm.parse(request.form.to_dict())
    if form is None:
        return render("console/login.html", status=400, next=target, email=request.form.get("email", "")[:254],
                      error=console_text(locale, "Enter your email and password."), notice=None)
    try:
        user = check_credentials(form.email, form.password)
    except TooManyAttempts as exc:
        page, status = render("console/login.html", status=429, next=target, email=form.email, notice=None,
                              error=console_text(locale, "Too many failed sign-ins. Try again in %(minutes)s min.",
                                                 minutes=max(1, (exc.retry_after + 59) // 60)))
        return page, status, {"Retry-After": str(exc.retry_after)}
    except LimiterUnavailable:
        return render("console/login.html", status=503, next=target, email=form.email, notice=None,
                      error=console_text(locale, "Temporarily unavailable; try again shortly."))
    if user is None:
        return render("console/login.html", status=401, next=target, email=form.email, notice=None,
                      error=console_text(locale, "Invalid email or password."))
    sign_in(user)
    audit("auth.login", "staff_user", user.id, {"via": "console"}, user_id=user.id)
    return redirect(target or url_for("console_auth.home"))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    user_id = sign_out()
    if user_id is not None:
        audit("auth.logout", "staff_user", user_id, {"via": "console"}, user_id=user_id)
    flash_text("info", "You are signed out.")
    return redirect(url_for("console_auth.login"))


@bp.post("/language")
def language() -> ResponseReturnValue:
    """Remember the chosen language in the session cookie and go back to the page."""
    chosen = request.form.get("locale", "")
    if chosen in SUPPORTED_LOCALES:
        set_locale(chosen)
    return redirect(safe_next(request.form.get("next")) or url_for("console_auth.home"))


@dataclass(frozen=True)
class NewPassword:
    """A new password typed twice (what the change and the reset pages both ask for)."""

    password: str
    repeated: str

    def problem(self, locale: str) -> str | None:
        if self.password != self.repeated:
            return console_text(locale, "The two new passwords differ.")
        if password_problem(self.password) is not None:
            return console_text(locale, "The new password must be 10 to 1024 characters long.")
        return None


@bp.route("/password", methods=["GET", "POST"])
@staff_required("admin", "support", "sponsor")
def password() -> ResponseReturnValue:
    """Change one's own password: the current one, then the new one twice. Other sessions end."""
    locale = current_locale()
    if request.method == "GET":
        return render("console/password.html", error=None)
    staff = current_staff()
    assert staff is not None
    current = request.form.get("current_password", "")[:1024]
    new = NewPassword(request.form.get("new_password", "")[:2048], request.form.get("new_password_again", "")[:2048])
    if not verify_password(staff.password_hash, current):
        return render("console/password.html", status=400,
                      error=console_text(locale, "The current password is not right."))
    problem = new.problem(locale)
    if problem is not None:
        return render("console/password.html", status=400, error=problem)
    with context.db().session() as session, session.begin():
        user = session.get(StaffUser, staff.id)
        assert user is not None
        set_password(session, user, new.password, utcnow())  # ends the API logins too
        audit("auth.password_change", "staff_user", user.id, {"via": "console"}, user_id=user.id, session=session)
    with context.db().reader() as session:
        fresh = session.get(StaffUser, staff.id)
    assert fresh is not None
    sign_in(fresh)  # this session goes on with the new password; every other one has ended
    flash_text("success", "Your password has been changed.")
    return redirect(url_for("console_auth.home"))


def _reset_refusal(user_id: int | None) -> ResponseReturnValue | None:
    """The page for a reset link that cannot set a password (unknown, used, too old, or its account deactivated:
    said so, rather than taking a new password and then refusing it); None when it can."""
    if user_id is None:
        return render("console/reset.html", status=404, valid=False, error=None, inactive=False)
    with context.db().reader() as session:
        user = session.get(StaffUser, user_id)
    if user is None or not user.active:
        return render("console/reset.html", status=404, valid=False, error=None, inactive=user is not None)
    return None


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset(token: str) -> ResponseReturnValue:
    """The page of a one-time reset link (made by an admin): set a new password; every session ends."""
    locale = current_locale()
    redis = context.redis()
    refused = _reset_refusal(peek_reset_token(redis, token))
    if refused is not None:
        return refused
    if request.method == "GET":
        return render("console/reset.html", valid=True, error=None)
    new = NewPassword(request.form.get("new_password", "")[:2048], request.form.get("new_password_again", "")[:2048])
    problem = new.problem(locale)
    if problem is not None:
        return render("console/reset.html", status=400, valid=True, error=problem)
    user_id = take_reset_token(redis, token)
    if user_id is None:  # used in another tab a moment ago
        return render("console/reset.html", status=404, valid=False, error=None)
    with context.db().session() as session, session.begin():
        user = session.get(StaffUser, user_id)
        if user is None or not user.active:
            return render("console/reset.html", status=404, valid=False, error=None, inactive=user is not None)
        set_password(session, user, new.password, utcnow())  # ends the API logins too
        audit("auth.password_reset", "staff_user", user.id, {"via": "console"}, user_id=user.id, session=session)
    sign_out()
    flash_text("success", "Your new password is set; sign in with it.")
    return redirect(url_for("console_auth.login"))
