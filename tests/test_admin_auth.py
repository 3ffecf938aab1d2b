"""Admin API authentication: login, JWT checks, refresh rotation and reuse, logout, rate limits, CLI."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace
from typing import Any

import jwt
import pytest
from sqlalchemy import select

import admin.auth
import admin.support
from admin.auth import AUDIENCE, ISSUER, hash_refresh_token
from app import create_app
from models import AuditLog, RefreshToken, StaffUser, utcnow
from services.staff_auth import check_credentials, hash_password, set_active, set_password
from tests.admin_helpers import PASSWORD, bearer, login, make_sponsor, make_staff, token_for

PROBLEM = "application/problem+json"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(user_id: int, role: str = "support", **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": str(user_id), "role": role, "sponsor_id": None, "iat": now, "exp": now + 600,
              "iss": ISSUER, "aud": AUDIENCE, "jti": "0123456789abcdef"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not ...}


def _fingerprint(app, user_id: int) -> str:
    with app.extensions["db"].reader() as s:
        return s.get(StaffUser, user_id).login_fingerprint


def _secret(app) -> str:
    return app.extensions["settings"].JWT_SECRET


def _refresh(client, token: str):
    return client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def test_login_returns_a_pinned_short_lived_jwt_and_a_refresh_token(app, client, session):
    sponsor_id = make_sponsor(app)
    user_id = make_staff(app, "sponsor", "Sponsor@Agro.test", sponsor_id=sponsor_id)

    response = login(client, "  sponsor@agro.TEST ")

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "HS256"
    claims = jwt.decode(body["access_token"], _secret(app), algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert claims["sub"] == str(user_id) and claims["role"] == "sponsor" and claims["sponsor_id"] == sponsor_id
    assert claims["exp"] - claims["iat"] == 900
    # Only the token's hash is stored.
    rows = session.scalars(select(RefreshToken)).all()
    assert len(rows) == 1
    assert rows[0].token_hash == hash_refresh_token(body["refresh_token"]) != body["refresh_token"]
    assert (rows[0].expires_at - rows[0].issued_at).days == 30
    user = session.get(StaffUser, user_id)
    method = app.extensions["settings"].PASSWORD_HASH  # the tests' cheap one; scrypt by default
    assert user.password_hash.startswith(method + "$") and PASSWORD not in user.password_hash
    assert [(a.action, a.user_id) for a in session.scalars(select(AuditLog))] == [("auth.login", user_id)]


def test_wrong_password_and_unknown_email_get_the_same_401(app, client):
    make_staff(app, "support")

    wrong = login(client, "support@ziraai.test", "not the password")
    unknown = login(client, "nobody@ziraai.test", "not the password")

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.mimetype == unknown.mimetype == PROBLEM
    assert wrong.get_json() == unknown.get_json()
    assert wrong.get_json()["detail"] == "Invalid email or password."


def test_inactive_user_cannot_log_in_nor_use_an_earlier_token(app, client):
    token = token_for(app, client, "support")
    with app.extensions["db"].session() as s, s.begin():
        s.scalars(select(StaffUser)).one().active = False

    assert login(client, "support@ziraai.test").status_code == 401
    assert client.get("/api/v1/messages", headers=bearer(token)).status_code == 401


@pytest.mark.parametrize("body", [None, "not json", [], {"email": "a@b.test"}, {"email": 5, "password": []}])
def test_login_body_is_validated_with_field_errors(client, body):
    if body is None or isinstance(body, str):
        response = client.post("/api/v1/auth/login", data=body or "", content_type="text/plain")
    else:
        response = client.post("/api/v1/auth/login", json=body)

    assert response.status_code == 400
    assert response.mimetype == PROBLEM
    problem = response.get_json()
    assert {"type", "title", "status", "detail"} <= problem.keys() and problem["status"] == 400
    if isinstance(body, dict):
        assert {e["field"] for e in problem["errors"]} == {"email", "password"} - set(
            k for k, v in body.items() if isinstance(v, str))


# --- JWT attacks --------------------------------------------------------------------------------


def _attack_tokens(app, user_id: int, valid_token: str) -> dict[str, str]:
    secret = _secret(app)
    header, payload, signature = valid_token.split(".")
    tampered = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    tampered["role"] = "admin"
    now = int(time.time())
    fingerprint = _fingerprint(app, user_id)

    def claims(user_id: int, **overrides: Any) -> dict[str, Any]:  # right but for what each attack changes
        return _claims(user_id, pwf=fingerprint, **overrides)

    return {
        "alg_none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims(user_id)) + ".",
        "alg_none_with_signature": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims(user_id)) + "." + signature,
        "wrong_key": jwt.encode(claims(user_id), "another-secret-of-the-same-length-000000", algorithm="HS256"),
        "hs512_right_key": jwt.encode(claims(user_id), secret + "-padding-for-hs512-length-0123456789",
                                      algorithm="HS512"),
        "expired": jwt.encode(claims(user_id, iat=now - 3600, exp=now - 60), secret, algorithm="HS256"),
        "no_token_id": jwt.encode(claims(user_id, jti=...), secret, algorithm="HS256"),  # cannot be revoked
        "issued_in_the_future": jwt.encode(claims(user_id, iat=now + 3600, exp=now + 4000), secret,
                                           algorithm="HS256"),
        "wrong_aud": jwt.encode(claims(user_id, aud="someone-else"), secret, algorithm="HS256"),
        "wrong_iss": jwt.encode(claims(user_id, iss="evil"), secret, algorithm="HS256"),
        "no_exp": jwt.encode(claims(user_id, exp=...), secret, algorithm="HS256"),
        "no_sub": jwt.encode(claims(user_id, sub=...), secret, algorithm="HS256"),
        "unknown_user": jwt.encode(claims(user_id + 1000), secret, algorithm="HS256"),
        "tampered_role": header + "." + _b64(tampered) + "." + signature,
        "garbage": "not-a-jwt",
    }


def test_jwt_attacks_are_401(app, client):
    sponsor_token = token_for(app, client, "sponsor")
    support_id = make_staff(app, "support")
    # The controls: the real sponsor token is forbidden (403) and a correctly signed support token works.
    assert client.get("/api/v1/messages", headers=bearer(sponsor_token)).status_code == 403
    good = jwt.encode(_claims(support_id, pwf=_fingerprint(app, support_id)), _secret(app), algorithm="HS256")
    assert client.get("/api/v1/messages", headers=bearer(good)).status_code == 200

    sponsor_id = jwt.decode(sponsor_token, options={"verify_signature": False})["sub"]
    attacks = _attack_tokens(app, support_id, sponsor_token)
    attacks["tampered_role"] = _attack_tokens(app, int(sponsor_id), sponsor_token)["tampered_role"]
    for name, token in attacks.items():
        response = client.get("/api/v1/messages", headers=bearer(token))
        assert response.status_code == 401, name
        assert response.mimetype == PROBLEM, name
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), name


@pytest.mark.parametrize("subject", ["99999999999999999999", "2147483648", "0", "-1"])
def test_a_signed_token_naming_an_id_no_row_can_have_is_401(app, client, subject):
    token = jwt.encode(_claims(1, sub=subject), _secret(app), algorithm="HS256")
    response = client.get("/api/v1/messages", headers=bearer(token))
    assert response.status_code == 401 and response.mimetype == PROBLEM


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"])
def test_missing_or_malformed_authorization_is_401(client, header):
    response = client.get("/api/v1/messages", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.mimetype == PROBLEM


def test_set_password_revokes_every_refresh_token_of_that_user_only(app, client, session):
    user_id = make_staff(app, "support")
    make_staff(app, "admin")
    login(client, "support@ziraai.test")
    login(client, "support@ziraai.test")
    login(client, "admin@ziraai.test")
    with app.extensions["db"].session() as s, s.begin():
        set_password(s, s.get(StaffUser, user_id), "a fresh passphrase", utcnow())
    revoked = session.execute(select(RefreshToken.user_id, RefreshToken.revoked_at.is_not(None))).all()
    assert sorted(revoked) == sorted([(user_id, True), (user_id, True), (user_id + 1, False)])
    with app.extensions["db"].session() as s, s.begin(), pytest.raises(ValueError):
        set_password(s, s.get(StaffUser, user_id), "short", utcnow())  # the one policy


def test_deactivating_revokes_every_refresh_token_of_that_user_only_and_activating_revokes_none(app, client,
                                                                                                session):
    user_id = make_staff(app, "support")
    make_staff(app, "admin")
    login(client, "support@ziraai.test")
    login(client, "admin@ziraai.test")
    with app.extensions["db"].session() as s, s.begin():
        set_active(s, s.get(StaffUser, user_id), False, utcnow())
    with app.extensions["db"].session() as s, s.begin():
        set_active(s, s.get(StaffUser, user_id), True, utcnow())
    login(client, "support@ziraai.test")
    with app.extensions["db"].session() as s, s.begin():
        set_active(s, s.get(StaffUser, user_id), True, utcnow())  # already active: nothing ends
    revoked = session.execute(select(RefreshToken.user_id, RefreshToken.revoked_at.is_not(None))).all()
    assert sorted(revoked) == sorted([(user_id, True), (user_id, False), (user_id + 1, False)])


def test_a_login_whose_account_is_deactivated_while_its_password_is_checked_is_refused(app, client, monkeypatch):
    """Its refresh token would have been issued after the deactivation revoked the others, and so have
    outlived it (working again once the account is reactivated)."""
    user_id = make_staff(app, "support")
    real_check = check_credentials

    def check_then_deactivate(email: str, password: str) -> StaffUser | None:
        user = real_check(email, password)
        with app.extensions["db"].session() as s, s.begin():
            set_active(s, s.get(StaffUser, user_id), False, utcnow())
            set_active(s, s.get(StaffUser, user_id), True, utcnow())
        return user

    monkeypatch.setattr(admin.auth, "check_credentials", check_then_deactivate)
    assert login(client, "support@ziraai.test").status_code == 401
    monkeypatch.setattr(admin.auth, "check_credentials", real_check)
    assert login(client, "support@ziraai.test").status_code == 200


def test_an_access_token_of_an_earlier_password_is_401_saying_so(app, client):
    make_staff(app, "support")
    pair = login(client, "support@ziraai.test").get_json()
    with app.extensions["db"].session() as s, s.begin():
        s.scalars(select(StaffUser)).one().password_hash = hash_password("a fresh passphrase")
    refused = client.get("/api/v1/messages", headers=bearer(pair["access_token"]))
    assert refused.status_code == 401 and "login has ended" in refused.get_json()["detail"]


def test_a_token_whose_role_changed_in_the_database_stops_working(app, client):
    token = token_for(app, client, "support")
    with app.extensions["db"].session() as s, s.begin():
        s.scalars(select(StaffUser)).one().role = "admin"
    assert client.get("/api/v1/messages", headers=bearer(token)).status_code == 401


# --- refresh rotation, reuse, logout ------------------------------------------------------------


def test_refresh_rotates_within_the_family(app, client, session):
    make_staff(app, "support")
    first = login(client, "support@ziraai.test").get_json()

    second = _refresh(client, first["refresh_token"])

    assert second.status_code == 200
    pair = second.get_json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert client.get("/api/v1/messages", headers=bearer(pair["access_token"])).status_code == 200
    rows = {r.token_hash: r for r in session.scalars(select(RefreshToken))}
    old, new = rows[hash_refresh_token(first["refresh_token"])], rows[hash_refresh_token(pair["refresh_token"])]
    assert old.family_id == new.family_id
    assert old.used_at is not None and new.used_at is None
    assert old.revoked_at is None and new.revoked_at is None
    third = _refresh(client, pair["refresh_token"])
    assert third.status_code == 200


def test_refresh_reuse_revokes_the_whole_family(app, client, session):
    make_staff(app, "support")
    first = login(client, "support@ziraai.test").get_json()
    other_login = login(client, "support@ziraai.test").get_json()  # another device: another family
    second = _refresh(client, first["refresh_token"]).get_json()

    reuse = _refresh(client, first["refresh_token"])  # a thief replays the spent token

    assert reuse.status_code == 401
    assert reuse.mimetype == PROBLEM
    assert _refresh(client, second["refresh_token"]).status_code == 401  # the legitimate holder is out too
    assert _refresh(client, first["refresh_token"]).status_code == 401
    family = session.scalars(select(RefreshToken).where(
        RefreshToken.token_hash == hash_refresh_token(first["refresh_token"]))).one().family_id
    rows = session.scalars(select(RefreshToken).where(RefreshToken.family_id == family)).all()
    assert len(rows) == 2 and all(r.revoked_at is not None for r in rows)
    assert "auth.refresh_reuse" in session.scalars(select(AuditLog.action)).all()
    # The other family is untouched.
    assert _refresh(client, other_login["refresh_token"]).status_code == 200


@pytest.mark.parametrize("token", ["unknown-token", "x" * 200])
def test_unknown_refresh_token_is_401(client, token):
    assert _refresh(client, token).status_code == 401


def test_expired_refresh_token_is_401(app, client):
    make_staff(app, "support")
    pair = login(client, "support@ziraai.test").get_json()
    with app.extensions["db"].session() as s, s.begin():
        row = s.scalars(select(RefreshToken)).one()
        row.expires_at = row.issued_at
    assert _refresh(client, pair["refresh_token"]).status_code == 401


def test_logout_revokes_the_family(app, client, session):
    make_staff(app, "support")
    first = login(client, "support@ziraai.test").get_json()
    second = _refresh(client, first["refresh_token"]).get_json()

    response = client.post("/api/v1/auth/logout", json={"refresh_token": second["refresh_token"]})

    assert response.status_code == 204
    assert _refresh(client, second["refresh_token"]).status_code == 401
    assert all(r.revoked_at is not None for r in session.scalars(select(RefreshToken)))
    assert client.post("/api/v1/auth/logout", json={"refresh_token": "unknown"}).status_code == 204
    assert client.post("/api/v1/auth/logout", json={}).status_code == 400


# --- rotating JWT_SECRET -------------------------------------------------------------------------


def test_jwt_secret_new_comma_old_signs_with_the_new_key_and_accepts_both(app, client, monkeypatch):
    """A rotation without logging anyone out: set JWT_SECRET=new,old, and drop old after 15 minutes."""
    old = app.extensions["settings"].JWT_SECRET
    old_token = token_for(app, client, "support")
    new = "a-new-jwt-signing-key-0123456789-abcdef"
    monkeypatch.setitem(app.extensions, "settings", replace(app.extensions["settings"], JWT_SECRET=f"{new},{old}"))
    assert client.get("/api/v1/messages", headers=bearer(old_token)).status_code == 200
    fresh = login(client, "support@ziraai.test").get_json()["access_token"]
    assert jwt.decode(fresh, new, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)["role"] == "support"
    monkeypatch.setitem(app.extensions, "settings", replace(app.extensions["settings"], JWT_SECRET=new))
    assert client.get("/api/v1/messages", headers=bearer(fresh)).status_code == 200
    assert client.get("/api/v1/messages", headers=bearer(old_token)).status_code == 401  # the old key is gone


def test_links_signed_with_the_previous_jwt_key_keep_working(database_url):
    from services.report_links import read_report_token, sign_report
    from services.storage import sign_token, unsign_media
    from tests.helpers import make_settings

    old = create_app(make_settings(database_url, JWT_SECRET="the-old-jwt-signing-key-0123456789abc"))
    rotating = create_app(make_settings(database_url, JWT_SECRET="the-new-jwt-signing-key-0123456789abc,"
                                                                 "the-old-jwt-signing-key-0123456789abc"))
    key = "optimized/" + "k" * 24 + ".jpg"
    media, report = sign_token(key, old.extensions["media_secret"]), sign_report(7, old.extensions["media_secret"])
    assert unsign_media(media, rotating.extensions["media_secrets"]) == key
    assert read_report_token(report, rotating.extensions["media_secrets"], 60) == 7
    assert rotating.extensions["media_secret"] != old.extensions["media_secret"]  # new links: the new key
    for one in (old, rotating):
        one.extensions["db"].engine.dispose()


# --- revoked access tokens ----------------------------------------------------------------------
# Found by the adversarial review: an access token stayed valid up to 15 minutes after logout or after its
# login was revoked. Revoked token ids (jti) and login families are kept in Redis until the tokens expire.


def _messages(client, pair) -> int:
    return client.get("/api/v1/messages", headers=bearer(pair["access_token"])).status_code


def test_logout_refuses_the_logins_access_tokens_at_once(app, client):
    make_staff(app, "support")
    first = login(client, "support@ziraai.test").get_json()
    second = _refresh(client, first["refresh_token"]).get_json()
    elsewhere = login(client, "support@ziraai.test").get_json()  # another device: another login
    assert _messages(client, first) == _messages(client, second) == 200

    assert client.post("/api/v1/auth/logout", json={"refresh_token": second["refresh_token"]}).status_code == 204

    assert _messages(client, first) == _messages(client, second) == 401
    assert _messages(client, elsewhere) == 200


def test_logout_with_the_access_token_refuses_that_token(app, client):
    make_staff(app, "support")
    pair = login(client, "support@ziraai.test").get_json()
    response = client.post("/api/v1/auth/logout", json={"refresh_token": "lost"},
                           headers=bearer(pair["access_token"]))
    assert response.status_code == 204
    refused = client.get("/api/v1/messages", headers=bearer(pair["access_token"]))
    assert refused.status_code == 401 and "revoked" in refused.get_json()["detail"]
    jti = jwt.decode(pair["access_token"], options={"verify_signature": False})["jti"]
    assert 0 < app.extensions["redis"].ttl(f"admin:revoked:jti:{jti}") <= 900  # kept only until it expires


def test_logout_with_only_the_access_token_revokes_its_whole_login(app, client):
    make_staff(app, "support")
    first = login(client, "support@ziraai.test").get_json()
    second = _refresh(client, first["refresh_token"]).get_json()
    elsewhere = login(client, "support@ziraai.test").get_json()

    assert client.post("/api/v1/auth/logout", headers=bearer(second["access_token"])).status_code == 204

    assert _messages(client, first) == _messages(client, second) == 401
    assert _refresh(client, second["refresh_token"]).status_code == 401
    assert _messages(client, elsewhere) == 200


def test_logout_with_the_access_token_and_an_empty_object_revokes_its_login(app, client):
    make_staff(app, "support")
    pair = login(client, "support@ziraai.test").get_json()

    assert client.post("/api/v1/auth/logout", json={}, headers=bearer(pair["access_token"])).status_code == 204

    assert _messages(client, pair) == 401
    assert _refresh(client, pair["refresh_token"]).status_code == 401


def test_logout_with_an_empty_object_and_no_access_token_names_the_missing_field(client):
    response = client.post("/api/v1/auth/logout", json={})
    assert response.status_code == 400
    assert [e["field"] for e in response.get_json()["errors"]] == ["refresh_token"]


def test_refresh_reuse_refuses_the_familys_access_tokens_at_once(app, client):
    make_staff(app, "support")
    first = login(client, "support@ziraai.test").get_json()
    second = _refresh(client, first["refresh_token"]).get_json()  # the legitimate holder's
    assert _refresh(client, first["refresh_token"]).status_code == 401  # a thief replays the spent token
    assert _messages(client, first) == _messages(client, second) == 401


# --- rate limits --------------------------------------------------------------------------------


def test_failures_on_an_account_stop_the_failing_addresses_not_its_owner(app, client):
    """Found by the adversarial review: five wrong passwords from anywhere locked the account for everyone, so
    anyone could lock the admin out. Now the addresses that failed are stopped, and the right password from
    an address that has not been failing still works."""
    make_staff(app, "support")
    for i in range(5):
        assert login(client, "support@ziraai.test", f"guess {i}", ip=f"10.0.1.{i}").status_code == 401

    assert login(client, "support@ziraai.test", ip="10.0.2.1").status_code == 200  # the owner, elsewhere

    blocked = login(client, "support@ziraai.test", ip="10.0.1.0")  # an address that failed: no more tries
    assert blocked.status_code == 429
    assert blocked.mimetype == PROBLEM
    assert 1 <= int(blocked.headers["Retry-After"]) <= 300
    assert login(client, "support@ziraai.test", "guess 6", ip="10.0.3.1").status_code == 401  # one try...
    assert login(client, "support@ziraai.test", "guess 7", ip="10.0.3.1").status_code == 429  # ...per address
    make_staff(app, "admin")
    assert login(client, "admin@ziraai.test", ip="10.0.1.0").status_code == 200  # other accounts are not locked


def test_one_address_gets_the_account_limit_of_guesses(app, client):
    make_staff(app, "support")
    for i in range(5):
        assert login(client, "support@ziraai.test", f"guess {i}", ip="10.0.4.1").status_code == 401

    assert login(client, "support@ziraai.test", ip="10.0.4.1").status_code == 429  # even the right password
    assert login(client, "support@ziraai.test", ip="10.0.4.2").status_code == 200


def test_a_right_password_does_not_use_up_the_limits(app, client):
    make_staff(app, "support")
    for _ in range(30):
        assert login(client, "support@ziraai.test", ip="10.0.5.1").status_code == 200


def test_login_brute_force_per_ip_is_429(app, client):
    make_staff(app, "support")
    for i in range(20):
        assert login(client, f"user{i}@ziraai.test", "guess", ip="10.9.9.9").status_code == 401

    blocked = login(client, "support@ziraai.test", ip="10.9.9.9")

    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) >= 1
    assert login(client, "support@ziraai.test", ip="10.9.9.10").status_code == 200


def test_a_few_failures_do_not_lock_the_account(app, client):
    """Four failures then the right password: still allowed (the limit is five)."""
    make_staff(app, "support")
    for _ in range(4):
        login(client, "support@ziraai.test", "wrong")
    assert login(client, "support@ziraai.test").status_code == 200


def test_authenticated_requests_are_limited_per_user(app, client, monkeypatch):
    monkeypatch.setitem(app.extensions, "settings", replace(app.extensions["settings"], ADMIN_REQUESTS_PER_MINUTE=3))
    token = token_for(app, client, "support")
    other = token_for(app, client, "admin")
    for _ in range(3):
        assert client.get("/api/v1/messages", headers=bearer(token)).status_code == 200

    limited = client.get("/api/v1/messages", headers=bearer(token))

    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert client.get("/api/v1/messages", headers=bearer(other)).status_code == 200


# --- errors -------------------------------------------------------------------------------------


def test_unexpected_errors_are_a_bare_500_problem(app, client, monkeypatch):
    token = token_for(app, client, "support")

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals: password=hunter2")

    monkeypatch.setattr(admin.support, "paginate", boom)
    response = client.get("/api/v1/messages", headers=bearer(token))

    assert response.status_code == 500
    assert response.mimetype == PROBLEM
    assert "secret" not in response.get_data(as_text=True)


def test_wrong_method_and_unknown_route_are_problems(client):
    wrong = client.get("/api/v1/auth/login")
    assert wrong.status_code == 405 and wrong.mimetype == PROBLEM
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.mimetype == PROBLEM
    assert wrong.headers["Cache-Control"] == missing.headers["Cache-Control"] == "no-store"


def test_a_page_number_that_is_not_digits_is_a_400_naming_it(app, client):
    token = token_for(app, client, "admin")
    response = client.get("/api/v1/sponsors", query_string={"page": "5.0"}, headers=bearer(token))
    assert response.status_code == 400 and [e["field"] for e in response.get_json()["errors"]] == ["page"]


# --- CLI ----------------------------------------------------------------------------------------


def test_the_create_staff_command_creates_users_and_refuses_bad_ones(app, client, runner, session):
    result = runner.invoke(args=["create-staff", "--email", "Ops@ZiraAI.test", "--role", "support"],
                           input="a long password 1\na long password 1\n")
    assert result.exit_code == 0, result.output
    assert "a long password" not in result.output.split("Repeat for confirmation:")[-1]
    assert login(client, "ops@ziraai.test", "a long password 1").status_code == 200

    duplicate = runner.invoke(args=["create-staff", "--email", "ops@ziraai.test", "--role", "admin",
                                    "--password", "another long one"])
    assert duplicate.exit_code != 0 and "already exists" in duplicate.output

    no_sponsor = runner.invoke(args=["create-staff", "--email", "s@agro.test", "--role", "sponsor",
                                     "--password", "a long password 2"])
    assert no_sponsor.exit_code != 0 and "--sponsor-id" in no_sponsor.output

    sponsor_id = make_sponsor(app)
    ok = runner.invoke(args=["create-staff", "--email", "s@agro.test", "--role", "sponsor",
                             "--sponsor-id", str(sponsor_id), "--password", "a long password 2"])
    assert ok.exit_code == 0, ok.output
    user = session.scalars(select(StaffUser).where(StaffUser.email == "s@agro.test")).one()
    assert user.role == "sponsor" and user.sponsor_id == sponsor_id

    short = runner.invoke(args=["create-staff", "--email", "x@ziraai.test", "--role", "admin", "--password", "short"])
    assert short.exit_code != 0 and "at least" in short.output


def test_parallel_guesses_cannot_overrun_the_limits(app, client):
    from concurrent.futures import ThreadPoolExecutor

    make_staff(app, "support")

    def guess(i: int, ip: str) -> int:
        with app.app_context():
            return login(app.test_client(), "support@ziraai.test", f"guess {i}", ip=ip).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        from_one_address = sorted(pool.map(guess, range(12), ["10.3.0.1"] * 12))
        from_another_account_limit_later = sorted(pool.map(guess, range(12), ["10.3.0.2"] * 12))

    assert from_one_address == [401] * 5 + [429] * 7
    assert from_another_account_limit_later == [401] + [429] * 11  # the account had five failures: one try


def test_a_refresh_racing_a_password_change_leaves_no_token_of_the_old_password(app, client, monkeypatch):
    """The refresh has marked its token used and is about to issue the next one when the password changes:
    the change must wait for it and revoke the new token too (on PostgreSQL, where the two really overlap)."""
    import threading

    user_id = make_staff(app, "support")
    pair = login(client, "support@ziraai.test").get_json()
    issuing, go_on = threading.Event(), threading.Event()
    real_issue = admin.auth.issue_refresh_token

    def slow_issue(*args: Any, **kwargs: Any) -> str:
        issuing.set()
        go_on.wait(10)
        return real_issue(*args, **kwargs)

    monkeypatch.setattr(admin.auth, "issue_refresh_token", slow_issue)
    answers: list[Any] = []

    def refresh_it() -> None:
        with app.app_context():
            answers.append(_refresh(app.test_client(), pair["refresh_token"]))

    def change_password() -> None:
        with app.app_context(), app.extensions["db"].session() as s, s.begin():
            set_password(s, s.get(StaffUser, user_id), "a fresh passphrase", utcnow())

    refreshing = threading.Thread(target=refresh_it)
    refreshing.start()
    assert issuing.wait(10)
    changing = threading.Thread(target=change_password)
    changing.start()
    time.sleep(0.5)  # the change reaches its statements (and waits, on PostgreSQL)
    go_on.set()
    refreshing.join(20)
    changing.join(20)
    monkeypatch.setattr(admin.auth, "issue_refresh_token", real_issue)

    [answer] = answers
    if answer.status_code == 200:  # the refresh went first: what it gave must be dead all the same
        assert _refresh(client, answer.get_json()["refresh_token"]).status_code == 401
        assert _messages(client, answer.get_json()) == 401
    else:
        assert answer.status_code == 401
