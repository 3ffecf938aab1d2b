"""Staff authentication: passwords, access JWTs, rotating refresh tokens, roles and rate limits.

- Access token: JWT, HS256 only (pinned on decode), 15 minutes, claims `sub`, `role`, `sponsor_id`,
  `iat`, `exp`, `iss`, `aud`, `jti` (its id), `fam` (the login it belongs to: its refresh token
  family) and `pwf` (the user's `login_fingerprint`); every request also re-reads the user, so a
  deactivated account, a changed role or a changed password stops it at once, and a password change or
  a deactivation (`services.staff_auth.end_every_login`, which also revokes the user's refresh tokens)
  for good: reactivating the account does not bring it back. It also checks the denylist in Redis, so a
  token whose id or login was revoked (logout, refresh-token reuse) stops working at once too, not
  when it expires.
- Signing keys: `JWT_SECRET` may hold several keys, comma-separated (new,old): tokens are signed with
  the first and accepted with any, so the key can be rotated without logging anyone out.
- Passwords, accounts and the login limits live in `services.staff_auth` (the staff console signs in
  with them too): the API's modules import them from there.
- Refresh token: 32 random bytes, 30 days, stored as its SHA-256 only. Each use marks it used and
  issues the next token of the same family; presenting a used token again (someone copied it)
  revokes the whole family.
- Rate limits (Redis fixed windows, shared by every process): failed logins per IP, failed logins per
  account that stop the failing addresses but never the right password from an address that has not
  been failing (`begin_login_attempt`: nobody can lock an account out), and requests per user on every
  authenticated route; over a limit -> 429 with `Retry-After`. The
  limits are settings (`ADMIN_LOGIN_FAILURES_PER_ACCOUNT`, `ADMIN_LOGIN_FAILURES_PER_IP`,
  `ADMIN_REQUESTS_PER_MINUTE`), so a test or an operator can change them without touching the code.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, TypeVar

import jwt
from flask import Response, g, jsonify, request
from redis.exceptions import RedisError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from admin import bp
from admin.errors import ApiError
from admin.openapi import TOO_MANY, declare, json_body, json_response, problem_response, ref
from admin.validation import Body, refuse_unstorable_arguments
from models import RefreshToken, StaffUser, utcnow
from models.db import MAX_ROW_ID, affected_rows
from services import context
from services.audit import audit
from services.staff_auth import ROLES, TooManyAttempts, check_credentials, count_in_window

ISSUER = "ziraai"
AUDIENCE = "ziraai-admin"
ALGORITHM = "HS256"
ACCESS_TOKEN_SECONDS = 15 * 60
REFRESH_TOKEN_DAYS = 30
INVALID_CREDENTIALS = "Invalid email or password."

F = TypeVar("F", bound=Callable[..., Any])

# --- tokens -------------------------------------------------------------------------------------


def _keys() -> tuple[str, ...]:
    return context.settings().jwt_keys


def issue_access_token(user: StaffUser, now: float | None = None, family_id: str | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "sub": str(user.id),
        "role": user.role,
        "sponsor_id": user.sponsor_id,
        "iat": issued,
        "exp": issued + ACCESS_TOKEN_SECONDS,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": secrets.token_hex(8),
        "pwf": user.login_fingerprint,
    }
    if family_id is not None:
        claims["fam"] = family_id
    return jwt.encode(claims, _keys()[0], algorithm=ALGORITHM)


def _unauthorized(detail: str = "A valid access token is required.") -> ApiError:
    return ApiError(401, detail, headers={"WWW-Authenticate": 'Bearer realm="ziraai-admin"'})


def decode_access_token(token: str) -> dict[str, Any]:
    """The verified claims, or ApiError 401 (bad signature, other algorithm, expired, wrong iss/aud...).
    Signed with any of JWT_SECRET's keys: tokens of the previous key stay valid during a rotation."""
    *previous, last = _keys()
    for key in previous:
        try:
            return _decode(token, key)
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError as exc:
            raise _unauthorized("The access token is invalid or expired.") from exc
    try:
        return _decode(token, last)
    except jwt.InvalidTokenError as exc:
        raise _unauthorized("The access token is invalid or expired.") from exc


def _decode(token: str, key: str) -> dict[str, Any]:
    return jwt.decode(token, key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                      options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]})


# --- the denylist: revoked access tokens, until they expire --------------------------------------

_REVOKED = "admin:revoked:"


def _denylist(**ids: str | None) -> list[str]:
    """The denylist keys of these ids (`jti=...`, `family=...`)."""
    return [f"{_REVOKED}{kind}:{value}" for kind, value in ids.items() if isinstance(value, str) and value]


def deny(seconds: int, **ids: str | None) -> None:
    """Refuse access tokens with these ids (`jti=` one token, `family=` every token of a login) for
    `seconds`: until the last of them has expired."""
    try:
        pipe = context.redis().pipeline()
        for key in _denylist(**ids):
            pipe.set(key, "1", ex=max(1, seconds))
        pipe.execute()
    except RedisError as exc:
        raise ApiError(503, "Temporarily unavailable, try again shortly.") from exc


def is_denied(claims: dict[str, Any]) -> bool:
    keys = _denylist(jti=claims.get("jti"), family=claims.get("fam"))
    try:
        return bool(keys) and int(context.redis().exists(*keys)) > 0
    except RedisError as exc:
        raise ApiError(503, "Temporarily unavailable, try again shortly.") from exc


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_family_id() -> str:
    return secrets.token_hex(16)


def issue_refresh_token(session: Session, user_id: int, family_id: str, now: datetime | None = None) -> str:
    """A new opaque refresh token (returned once; only its hash is stored) of the login `family_id`."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    session.add(RefreshToken(user_id=user_id, family_id=family_id, token_hash=hash_refresh_token(token),
                             issued_at=now, expires_at=now + timedelta(days=REFRESH_TOKEN_DAYS)))
    return token


def revoke_family(session: Session, family_id: str, now: datetime | None = None) -> None:
    """Revoke a login: its refresh tokens (in the caller's transaction) and, at once, its access tokens."""
    deny(ACCESS_TOKEN_SECONDS, family=family_id)
    session.execute(update(RefreshToken)
                    .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
                    .values(revoked_at=now or utcnow()))


def _token_pair(access: str, refresh: str) -> Response:
    response = jsonify({"access_token": access, "token_type": "Bearer", "expires_in": ACCESS_TOKEN_SECONDS,
                        "refresh_token": refresh, "refresh_expires_in": REFRESH_TOKEN_DAYS * 86400})
    response.headers["Cache-Control"] = "no-store"
    return response


# --- rate limits --------------------------------------------------------------------------------

def enforce_user_rate(user_id: int) -> None:
    count, ttl = count_in_window(f"admin:requests:user:{user_id}", 60)
    if count > context.settings().ADMIN_REQUESTS_PER_MINUTE:
        raise TooManyAttempts(ttl, "Too many requests; slow down.")  # 429 by admin.errors


# --- the current user ---------------------------------------------------------------------------


def authenticate() -> tuple[StaffUser, dict[str, Any]]:
    """The user of the request's bearer token (re-read from the database), or ApiError 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized()
    claims = decode_access_token(token.strip())
    if is_denied(claims):
        raise _unauthorized("The access token has been revoked; log in again.")
    try:
        user_id = int(claims["sub"])
    except (TypeError, ValueError) as exc:
        raise _unauthorized("The access token is invalid or expired.") from exc
    if not 1 <= user_id <= MAX_ROW_ID:  # no row can have it; the database would refuse the comparison
        raise _unauthorized("The access token is invalid or expired.")
    with context.db().reader() as session:
        user = session.get(StaffUser, user_id)
    if (user is None or not user.active or claims.get("role") != user.role
            or claims.get("sponsor_id") != user.sponsor_id):
        raise _unauthorized("The access token is invalid or expired.")
    if claims.get("pwf") != user.login_fingerprint:
        raise _unauthorized("This login has ended (the password was changed or the account deactivated); "
                            "log in again.")
    return user, claims


def require_roles(*roles: str, refusal: str = "Your role may not use this endpoint.") -> Callable[[F], F]:
    """Only these roles may call the view: no or bad token -> 401, other role -> 403 saying `refusal`,
    too fast -> 429. Puts the user on `g.staff_user` and the token's claims on `g.jwt_claims`."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user, claims = authenticate()
            enforce_user_rate(user.id)
            if user.role not in roles:
                raise ApiError(403, refusal)
            refuse_unstorable_arguments()
            g.staff_user = user
            g.jwt_claims = claims
            return view(*args, **kwargs)

        wrapper.required_roles = roles  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator


# --- endpoints ----------------------------------------------------------------------------------


@bp.post("/auth/login")
def login() -> Response:
    body = Body.load()
    email = body.string("email", max_length=254)
    password = body.string("password", max_length=1024)
    body.raise_if_errors()
    assert email is not None and password is not None
    user = check_credentials(email, password)
    if user is None:
        raise _unauthorized(INVALID_CREDENTIALS)
    family_id = new_family_id()
    with context.db().session() as session, session.begin():
        # ended while the password was checked (a deactivation, a new password): this login would outlive it
        current = session.get(StaffUser, user.id, with_for_update=True)
        if current is None or not current.active or current.login_fingerprint != user.login_fingerprint:
            raise _unauthorized(INVALID_CREDENTIALS)
        refresh = issue_refresh_token(session, user.id, family_id)
        audit("auth.login", "staff_user", user.id, user_id=user.id, session=session)
    access = issue_access_token(user, family_id=family_id)
    return _token_pair(access, refresh)


def _refresh_body(body: Body | None = None) -> str:
    body = body or Body.load()
    token = body.string("refresh_token", max_length=200)
    body.raise_if_errors()
    assert token is not None
    return token


@bp.post("/auth/refresh")
def refresh() -> Response:
    token_hash = hash_refresh_token(_refresh_body())
    now = utcnow()
    access = new_token = None
    with context.db().session() as session, session.begin():
        row = session.scalars(select(RefreshToken).where(RefreshToken.token_hash == token_hash)).first()
        if row is not None:  # a password change holds the user's row until it has revoked every token: wait
            session.get(StaffUser, row.user_id, with_for_update=True)
            session.refresh(row)
        if row is not None and row.revoked_at is None and row.expires_at > now:
            taken = session.execute(update(RefreshToken)
                                    .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None),
                                           RefreshToken.revoked_at.is_(None))
                                    .values(used_at=now))
            if affected_rows(taken) != 1:  # used before: the token was copied, so no token of this login is safe
                revoke_family(session, row.family_id, now)
                audit("auth.refresh_reuse", "staff_user", row.user_id, {"family_id": row.family_id},
                      user_id=row.user_id, session=session)
            else:
                user = session.get(StaffUser, row.user_id)
                if user is not None and user.active:
                    new_token = issue_refresh_token(session, user.id, row.family_id, now)
                    access = issue_access_token(user, family_id=row.family_id)
    if access is None or new_token is None:
        raise _unauthorized("The refresh token is invalid, expired or revoked.")
    return _token_pair(access, new_token)


@bp.post("/auth/logout")
def logout() -> tuple[str, int]:
    """Revokes a login at once: the refresh token's in the body, or (no body, or `{}`) the one of the access
    token in `Authorization`; the presented access token is refused from now on either way."""
    claims = _presented_access_claims()
    body = Body.load() if claims is None or request.get_data() else None
    if body is not None and (body.data or claims is None):
        token_hash = hash_refresh_token(_refresh_body(body))
        with context.db().session() as session, session.begin():
            row = session.scalars(select(RefreshToken).where(RefreshToken.token_hash == token_hash)).first()
            if row is not None:
                revoke_family(session, row.family_id)
                audit("auth.logout", "staff_user", row.user_id, user_id=row.user_id, session=session)
    elif claims is not None and claims.get("fam"):
        with context.db().session() as session, session.begin():
            revoke_family(session, str(claims["fam"]))
            audit("auth.logout", "staff_user", int(claims["sub"]), user_id=int(claims["sub"]), session=session)
    if claims is not None:
        deny(int(claims["exp"]) - int(time.time()), jti=str(claims["jti"]))
    return "", 204


def _presented_access_claims() -> dict[str, Any] | None:
    """The claims of a valid access token in `Authorization`, else None (logging out still succeeds)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    try:
        return decode_access_token(token.strip())
    except ApiError:
        return None


SCHEMAS: dict[str, Any] = {
    "LoginRequest": {
        "type": "object",
        "required": ["email", "password"],
        "properties": {"email": {"type": "string", "format": "email", "maxLength": 254},
                       "password": {"type": "string", "minLength": 1, "maxLength": 1024}},
    },
    "RefreshRequest": {
        "type": "object",
        "required": ["refresh_token"],
        "properties": {"refresh_token": {"type": "string", "minLength": 1, "maxLength": 200}},
    },
    "TokenPair": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"],
        "properties": {
            "access_token": {"type": "string", "description": "HS256 JWT: sub, role, sponsor_id, iat, exp, iss, "
                                                               "aud, jti, fam, pwf (refused once the password "
                                                               "changes or the account is deactivated)."},
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer", "const": ACCESS_TOKEN_SECONDS},
            "refresh_token": {"type": "string", "description": "Opaque; single use (rotated on refresh)."},
            "refresh_expires_in": {"type": "integer"},
        },
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/auth/login": {
        "post": {
            "operationId": "login", "summary": "Email and password -> access and refresh tokens.", "tags": ["auth"],
            "security": [],
            "requestBody": json_body("LoginRequest"),
            "responses": {
                "200": json_response("Signed in.", ref("TokenPair")),
                "400": problem_response("Malformed body (`errors` lists each field)."),
                "401": problem_response("Wrong email or password (the same answer for an unknown email)."),
                "429": TOO_MANY,
            },
        },
    },
    "/api/v1/auth/refresh": {
        "post": {
            "operationId": "refresh", "tags": ["auth"],
            "summary": "Rotate a refresh token; presenting a used one revokes its whole family.",
            "security": [],
            "requestBody": json_body("RefreshRequest"),
            "responses": {
                "200": json_response("A new token pair; the presented refresh token is spent.", ref("TokenPair")),
                "400": problem_response("Malformed body."),
                "401": problem_response("Unknown, expired, revoked or reused refresh token."),
            },
        },
    },
    "/api/v1/auth/logout": {
        "post": {
            "operationId": "logout", "summary": "Revoke the refresh token's family.", "tags": ["auth"],
            "description": "Revokes the login of the refresh token: its refresh tokens and, at once, the access "
                           "tokens issued with them. An access token sent in `Authorization` is revoked too; "
                           "sent without a body (or with `{}`), it names the login to revoke.",
            "security": [],
            "requestBody": json_body("RefreshRequest", required=False),
            "responses": {"204": {"description": "Signed out (also for an unknown token)."},
                          "400": problem_response("Malformed body.")},
        },
    },
}
declare(PATHS, SCHEMAS)
