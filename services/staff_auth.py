"""Staff accounts and sign-in checks shared by the admin API, the RQ dashboard and the staff console.

- Passwords: hashed with the `PASSWORD_HASH` setting's method (scrypt by default; production refuses
  a weak one). A stored hash names its own method, so changing the setting never locks anyone out.
  The policy (`password_problem`) is one rule for every place a password is set, and `set_password`
  the one way to set it. A password change or reset and a deactivation (`set_active`) end every login
  of that person, API tokens and console sessions alike (`end_every_login`), so reactivating an account
  brings none of them back.
- Login limits (Redis fixed windows, shared by every process): failed logins per IP, and failed logins
  per account that stop the failing addresses but never the right password from an address that has
  not been failing (`begin_login_attempt`: nobody can lock an account out). Over a limit ->
  `TooManyAttempts` (the caller answers 429 with `Retry-After`); Redis down -> `LimiterUnavailable` (503).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from flask import has_app_context
from redis.exceptions import RedisError
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from models import RefreshToken, Sponsor, StaffRole, StaffUser
from services import context
from services.audit import client_ip
from services.contact_details import is_email_address
from services.json_input import has_unstorable
from settings import DEFAULT_PASSWORD_HASH

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
LOGIN_WINDOW_SECONDS = 5 * 60
ROLES = tuple(r.value for r in StaffRole)


class TooManyAttempts(Exception):
    """Over a rate limit: try again in `retry_after` seconds."""

    def __init__(self, retry_after: int, detail: str) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)
        self.detail = detail


class LimiterUnavailable(Exception):
    """Redis, which holds the limits, did not answer: the caller says 'try again shortly' (503)."""


# --- passwords and accounts ---------------------------------------------------------------------

_dummy_hashes: dict[str, str] = {}


def password_method() -> str:
    """The app's `PASSWORD_HASH`; outside an app (a script seeding users before one exists) the default."""
    return context.settings().PASSWORD_HASH if has_app_context() else DEFAULT_PASSWORD_HASH


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=password_method())


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the account exists: an unknown email is checked against a dummy hash
    made with the same method as new passwords."""
    if password_hash is None:
        method = password_method()
        if method not in _dummy_hashes:
            _dummy_hashes[method] = generate_password_hash(secrets.token_urlsafe(16), method=method)
        check_password_hash(_dummy_hashes[method], password)
        return False
    return check_password_hash(password_hash, password)


def normalize_email(email: str) -> str:
    return email.strip().lower()


def password_problem(password: str) -> str | None:
    """Why this password may not be set (English, for the API; the console translates it), or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"password must be at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"password must be at most {MAX_PASSWORD_LENGTH} characters"
    return None


def create_staff_user(session: Session, email: str, password: str, role: str, sponsor_id: int | None,
                      now: datetime) -> StaffUser:
    """Create a staff account; ValueError names what is wrong (a sponsor user needs an existing sponsor)."""
    email = normalize_email(email)
    if not is_email_address(email):
        raise ValueError("email must be an email address such as name@example.com")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    problem = password_problem(password)
    if problem is not None:
        raise ValueError(problem)
    if role == StaffRole.SPONSOR:
        if sponsor_id is None:
            raise ValueError("a sponsor user needs --sponsor-id")
        if session.get(Sponsor, sponsor_id) is None:
            raise ValueError(f"no sponsor with id {sponsor_id}")
    elif sponsor_id is not None:
        raise ValueError("only sponsor users belong to a sponsor")
    if session.scalars(select(StaffUser.id).where(StaffUser.email == email)).first() is not None:
        raise ValueError(f"a staff user with email {email} already exists")
    user = StaffUser(email=email, password_hash=hash_password(password), role=role, sponsor_id=sponsor_id,
                     active=True, created_at=now)
    session.add(user)
    session.flush()
    return user


def end_every_login(session: Session, user: StaffUser, now: datetime) -> None:
    """End every login of `user`, whoever holds it: the refresh tokens of all their API logins are revoked
    here, and their access tokens and console sessions hold the old `login_fingerprint`, so they are
    refused on their next request, whatever happens to the account afterwards."""
    user.logins_ended += 1
    session.flush()  # the user's row first: a token refresh waits on it (admin.auth.refresh), never a token row
    session.execute(update(RefreshToken).where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
                    .values(revoked_at=now))


def set_password(session: Session, user: StaffUser, password: str, now: datetime) -> None:
    """Give `user` a new password (their own change, or a reset link) and end every login made with the
    old one. ValueError when the policy refuses the password."""
    problem = password_problem(password)
    if problem is not None:
        raise ValueError(problem)
    user.password_hash = hash_password(password)
    end_every_login(session, user, now)


def set_active(session: Session, user: StaffUser, active: bool, now: datetime) -> None:
    """Let an account sign in or not. Deactivating ends every login of it, so reactivating brings none back:
    the person signs in again with their password."""
    user.active = active
    if not active:
        end_every_login(session, user, now)


# --- rate limits --------------------------------------------------------------------------------

_COUNT_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""


def count_in_window(key: str, window_seconds: int) -> tuple[int, int]:
    """Add one to a fixed-window counter: (count in this window, seconds until the window ends)."""
    try:
        n, ttl = context.redis().register_script(_COUNT_SCRIPT)(keys=[key], args=[window_seconds])
    except RedisError as exc:
        raise LimiterUnavailable() from exc
    return int(n), int(ttl)


_REFUND_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0
"""


def refund_in_window(key: str) -> None:
    """Take back one count from a window that still exists (never creates a key without expiry)."""
    try:
        context.redis().register_script(_REFUND_SCRIPT)(keys=[key])
    except RedisError as exc:
        raise LimiterUnavailable() from exc


def current_count(key: str) -> int:
    """A window's count without adding to it (0 when the window is over)."""
    try:
        return int(context.redis().get(key) or 0)
    except RedisError as exc:
        raise LimiterUnavailable() from exc


@dataclass(frozen=True)
class LoginAttempt:
    """The windows one login attempt counts in: failures on the account (all addresses), attempts from
    this address (all accounts), attempts from this address on this account."""

    account_key: str
    ip_key: str
    pair_key: str


def begin_login_attempt(email: str) -> LoginAttempt:
    """TooManyAttempts unless this attempt may have its password checked (API, console and RQ dashboard alike).

    - An address gets ADMIN_LOGIN_FAILURES_PER_IP failures in a window, on all accounts together.
    - An address gets ADMIN_LOGIN_FAILURES_PER_ACCOUNT failures on one account; once the account has had
      that many from all addresses together, an address that failed on it gets no more in the window.
    So guesses against an account are slowed to one per window per new address, while its owner, whose
    address has not been failing, still logs in with the right password: no one can lock an account out.
    Each attempt takes its slots before the password is checked, so parallel guesses cannot overrun them.
    """
    account_key = f"admin:login-fail:account:{hashlib.sha256(email.encode('utf-8')).hexdigest()}"
    ip = client_ip() or "unknown"
    attempt = LoginAttempt(account_key, f"admin:login-fail:ip:{ip}", f"{account_key}:ip:{ip}")
    settings = context.settings()
    ip_count, ip_wait = count_in_window(attempt.ip_key, LOGIN_WINDOW_SECONDS)
    pair_count, pair_wait = count_in_window(attempt.pair_key, LOGIN_WINDOW_SECONDS)
    account_limit = settings.ADMIN_LOGIN_FAILURES_PER_ACCOUNT
    address_done = pair_count > account_limit or (pair_count > 1 and current_count(account_key) >= account_limit)
    ip_done = ip_count > settings.ADMIN_LOGIN_FAILURES_PER_IP
    if ip_done or address_done:
        refund_in_window(attempt.pair_key)  # no password was checked: the attempt does not count
        refund_in_window(attempt.ip_key)
        wait = max(w for w, done in ((ip_wait, ip_done), (pair_wait, address_done)) if done)
        raise TooManyAttempts(wait, "Too many failed logins; try again later.")
    return attempt


def end_login_attempt(attempt: LoginAttempt, *, succeeded: bool) -> None:
    """A success gives its slots back (only failures count); a failure also counts on the account."""
    if succeeded:
        refund_in_window(attempt.pair_key)
        refund_in_window(attempt.ip_key)
    else:
        count_in_window(attempt.account_key, LOGIN_WINDOW_SECONDS)


def check_credentials(email: str, password: str) -> StaffUser | None:
    """The active staff user with this email and password, else None; within the login limits
    (TooManyAttempts when over them), counting a failure. For every sign-in: API, console, RQ dashboard."""
    email = normalize_email(email)
    attempt = begin_login_attempt(email)
    with context.db().reader() as session:  # the slow hash check holds no write lock
        # an address PostgreSQL cannot compare (NUL, a lone surrogate) is nobody's, not an error
        user = None if has_unstorable(email) else session.scalars(
            select(StaffUser).where(StaffUser.email == email)).first()
    if not verify_password(user.password_hash if user else None, password) or user is None or not user.active:
        end_login_attempt(attempt, succeeded=False)
        return None
    end_login_attempt(attempt, succeeded=True)
    return user
