"""One-time password reset links for staff: an admin makes one, the person sets a new password with it.

The token (32 random bytes) is shown once, in the link; Redis keeps only its SHA-256, for 24 hours.
Using it takes it (GETDEL: two tabs cannot both use it), and a newer link for the same person voids
the older one. Links live in Redis on purpose: they are short-lived and a flush only means the admin
makes a new one.
"""

from __future__ import annotations

import hashlib
import secrets

from redis import Redis

RESET_SECONDS = 24 * 3600
_TOKEN = "console:reset:"
_USER = "console:reset-user:"


def _token_key(token: str) -> str:
    return _TOKEN + hashlib.sha256(token.encode()).hexdigest()


def issue_reset_token(redis: Redis, user_id: int) -> str:
    """A new link token for `user_id` (returned once); the previous one stops working."""
    token = secrets.token_urlsafe(32)
    key = _token_key(token)
    previous = redis.getset(f"{_USER}{user_id}", key)
    pipe = redis.pipeline()
    if previous:
        pipe.delete(previous.decode() if isinstance(previous, bytes) else str(previous))
    pipe.set(key, str(user_id), ex=RESET_SECONDS)
    pipe.expire(f"{_USER}{user_id}", RESET_SECONDS)
    pipe.execute()
    return token


def peek_reset_token(redis: Redis, token: str) -> int | None:
    """The user a valid token belongs to, without using it (to show the form)."""
    if not token or len(token) > 100:
        return None
    raw = redis.get(_token_key(token))
    return int(raw) if raw else None


def take_reset_token(redis: Redis, token: str) -> int | None:
    """The user of a valid token, which is used up by this call; None for an unknown, used or old one."""
    if not token or len(token) > 100:
        return None
    raw = redis.getdel(_token_key(token))
    if not raw:
        return None
    user_id = int(raw)
    redis.delete(f"{_USER}{user_id}")
    return user_id
