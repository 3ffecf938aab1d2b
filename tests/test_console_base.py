"""The console's foundation: sign-in and out, sessions (idle and absolute expiry, revocation), CSRF,
security headers, roles (404 for pages of other roles), language switch and the error pages."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from models import AuditLog
from tests.admin_helpers import PASSWORD, make_staff
from tests.console_helpers import console_login, csrf, form_fields, post, signed_in
from tests.helpers import make_settings


def test_the_login_form_has_the_fields_email_password_and_csrf_token(client: FlaskClient) -> None:
    page = client.get("/console/login")
    assert page.status_code == 200
    assert {"email", "password", "csrf_token"} <= form_fields(page.get_data(as_text=True))


def test_the_console_speaks_turkish_by_default(client: FlaskClient) -> None:
    html = client.get("/console/login").get_data(as_text=True)
    assert 'lang="tr"' in html and "Giriş yap" in html


def test_an_admin_signs_in_and_lands_on_the_admin_start_page(app: Flask, client: FlaskClient) -> None:
    signed_in(app, client, "admin")
    home = client.get("/console")
    assert home.status_code == 302 and home.headers["Location"].endswith("/console/admin")
    assert client.get("/console/admin").status_code == 200


def test_signing_in_is_audited_like_the_api_login(app: Flask, client: FlaskClient, session) -> None:
    user_id = signed_in(app, client, "support")
    row = session.scalars(select(AuditLog).where(AuditLog.action == "auth.login")).one()
    assert row.user_id == user_id and row.details == {"via": "console"} and row.ip == "10.0.0.1"


def test_a_wrong_password_is_refused_with_the_same_words_as_an_unknown_email(app: Flask, client: FlaskClient) -> None:
    make_staff(app, "admin", "admin@ziraai.test")
    wrong = console_login(client, "admin@ziraai.test", "not the password")
    unknown = console_login(client, "nobody@ziraai.test", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "E-posta veya parola hatalı." in wrong.get_data(as_text=True)
    assert "E-posta veya parola hatalı." in unknown.get_data(as_text=True)
    assert client.get("/console/admin").status_code == 302


def test_an_inactive_account_cannot_sign_in(app: Flask, client: FlaskClient) -> None:
    from models import StaffUser

    user_id = make_staff(app, "admin", "old@ziraai.test")
    with app.extensions["db"].session() as s, s.begin():
        s.get(StaffUser, user_id).active = False
    assert console_login(client, "old@ziraai.test").status_code == 401


def test_repeated_failures_lock_the_failing_address_out_with_retry_after(database_url: str) -> None:
    from app import create_app
    from tests.helpers import clean_stores

    app = create_app(make_settings(database_url, ADMIN_LOGIN_FAILURES_PER_ACCOUNT=2))
    clean_stores(app)
    with app.app_context():
        make_staff(app, "admin", "admin@ziraai.test")
        client = app.test_client()
        for _ in range(2):
            assert console_login(client, "admin@ziraai.test", "wrong password!", ip="10.9.9.9").status_code == 401
        locked = console_login(client, "admin@ziraai.test", "wrong password!", ip="10.9.9.9")
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
        assert "Çok fazla başarısız giriş" in locked.get_data(as_text=True)
        # the owner, from an address that has not been failing, still gets in
        assert console_login(app.test_client(), "admin@ziraai.test", PASSWORD, ip="10.1.1.1").status_code == 302
    app.extensions["db"].engine.dispose()


def test_a_page_without_a_session_sends_to_the_login_page_and_back(app: Flask, client: FlaskClient) -> None:
    make_staff(app, "admin", "admin@ziraai.test")
    first = client.get("/console/admin?x=1")
    assert first.status_code == 302 and "/console/login?next=" in first.headers["Location"]
    client.get("/console/login")
    back = post(client, "/console/login", {"email": "admin@ziraai.test", "password": PASSWORD,
                                           "next": "/console/admin?x=1"})
    assert back.headers["Location"] == "/console/admin?x=1"


def test_next_never_leads_off_the_console(app: Flask, client: FlaskClient) -> None:
    make_staff(app, "admin", "admin@ziraai.test")
    client.get("/console/login")
    for target in ("https://evil.example/", "//evil.example/console", "/api/v1/staff", "/\\evil.example",
                   "/console/../dev/chat", "/console/%2e%2e/api/v1/staff", "/console/./../dev"):
        response = post(client, "/console/login", {"email": "admin@ziraai.test", "password": PASSWORD,
                                                   "next": target})
        assert response.headers["Location"] == "/console", target
        post(client, "/console/logout")


def test_nul_in_a_sign_in_form_is_dropped_like_any_console_form_not_an_error(app: Flask, client: FlaskClient) -> None:
    make_staff(app, "admin", "admin@ziraai.test")
    client.get("/console/login")
    email = "admin\x00@ziraai.test"
    assert post(client, "/console/login", {"email": email, "password": "wrong\x00"}).status_code == 401
    assert post(client, "/console/login", {"email": email, "password": PASSWORD}).status_code == 302


def test_console_input_postgresql_cannot_take_never_reaches_it(app: Flask, client: FlaskClient, session) -> None:
    from models import Sponsor

    signed_in(app, client, "admin")
    for path in ("/console/admin/sponsors/2147483648", "/console/admin/sponsors/99999999999999999999"):
        assert client.get(path).status_code == 404, path
    for path in ("/console/admin/staff/2147483648/deactivate", "/console/admin/purchase-requests/2147483648/approve",
                 "/console/support/canned/99999999999999999999/delete"):
        assert post(client, path, {}).status_code == 404, path
    for query in ("/console/admin/sponsors?q=%00", "/console/admin/audit?actor=%00", "/console/support?q=a%00b"):
        assert client.get(query).status_code == 200, query
    assert post(client, "/console/admin/sponsors", {"name": "Tohum\x00 A.Ş."}).status_code == 302
    assert session.scalar(select(Sponsor.name).where(Sponsor.name == "Tohum A.Ş.")) == "Tohum A.Ş."


def test_a_sponsor_gets_404_on_admin_pages(app: Flask, client: FlaskClient) -> None:
    signed_in(app, client, "sponsor")
    response = client.get("/console/admin")
    assert response.status_code == 404
    assert "text/html" in response.headers["Content-Type"]


def test_support_gets_404_on_admin_pages(app: Flask, client: FlaskClient) -> None:
    signed_in(app, client, "support")
    assert client.get("/console/admin").status_code == 404


def test_a_post_without_the_csrf_token_is_refused(app: Flask, client: FlaskClient) -> None:
    make_staff(app, "admin", "admin@ziraai.test")
    client.get("/console/login")
    refused = client.post("/console/login", data={"email": "admin@ziraai.test", "password": PASSWORD})
    assert refused.status_code == 400
    assert "text/html" in refused.headers["Content-Type"]
    forged = client.post("/console/login", data={"email": "admin@ziraai.test", "password": PASSWORD,
                                                 "csrf_token": "x" * 43})
    assert forged.status_code == 400
    assert client.get("/console/admin").status_code == 302  # nobody signed in


def test_a_post_from_a_client_without_a_session_is_refused(client: FlaskClient) -> None:
    assert client.post("/console/logout", data={"csrf_token": ""}).status_code == 400


def test_signing_out_ends_the_session_even_for_a_copied_cookie(app: Flask, client: FlaskClient) -> None:
    signed_in(app, client, "admin")
    copied = client.get_cookie("ziraai_console", path="/console")
    assert copied is not None
    assert post(client, "/console/logout").status_code == 302
    thief = app.test_client()
    thief.set_cookie(copied.key, copied.value, path="/console")
    assert thief.get("/console/admin").status_code == 302


def test_an_idle_session_expires(app: Flask, client: FlaskClient) -> None:
    signed_in(app, client, "admin")
    redis = app.extensions["redis"]
    keys = list(redis.scan_iter("console:session:*"))
    assert len(keys) == 1
    assert 0 < redis.ttl(keys[0]) <= 30 * 60  # renewed on each request, gone after 30 idle minutes
    redis.delete(keys[0])  # what the TTL does after 30 idle minutes
    response = client.get("/console/admin")
    assert response.status_code == 302 and "expired=1" in response.headers["Location"]
    assert "Oturumunuz sona erdi" in client.get(response.headers["Location"]).get_data(as_text=True)


@pytest.mark.parametrize(("action", "referer", "page"), [
    ("/console/admin/staff/5/deactivate", None, "/console/admin/staff"),
    ("/console/admin/settings", None, "/console/admin/settings"),
    ("/console/admin/staff/5/deactivate", "http://localhost/console/admin/staff?x=1", "/console/admin/staff?x=1"),
    ("/console/admin/staff/5/deactivate", "http://elsewhere.example/console/admin/tiers", "/console/admin/staff"),
])
def test_a_form_posted_without_a_session_signs_in_to_the_page_the_form_was_on(
        app: Flask, client: FlaskClient, action: str, referer: str | None, page: str) -> None:
    headers = {"Referer": referer} if referer else {}
    response = post(client, action, headers=headers)
    assert response.status_code == 302
    assert parse_qs(urlsplit(response.headers["Location"]).query)["next"] == [page]


def test_a_session_ends_after_its_absolute_lifetime_even_when_busy(app: Flask, client: FlaskClient,
                                                                    monkeypatch) -> None:
    signed_in(app, client, "admin")
    assert client.get("/console/admin").status_code == 200
    later = time.time() + 12 * 3600 + 1
    monkeypatch.setattr(time, "time", lambda: later)  # console.session reads time.time()
    assert client.get("/console/admin").status_code == 302


def test_the_session_cookie_is_httponly_strict_and_scoped_to_the_console(app: Flask, client: FlaskClient) -> None:
    make_staff(app, "admin", "admin@ziraai.test")
    client.get("/console/login")
    response = post(client, "/console/login", {"email": "admin@ziraai.test", "password": PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # development and tests run on http; production sets Secure


def test_production_marks_the_session_cookie_secure(app: Flask) -> None:
    from flask import Flask as FlaskApp

    from console.session import configure_session

    production = FlaskApp("x")
    production.extensions["settings"] = make_settings("sqlite://", APP_ENV="production")
    configure_session(production)
    assert production.config["SESSION_COOKIE_SECURE"] is True
    assert production.config["SESSION_COOKIE_SAMESITE"] == "Strict"


def test_console_pages_carry_a_strict_csp_and_no_store(client: FlaskClient) -> None:
    response = client.get("/console/login")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_a_console_path_no_page_answers_still_gets_the_console_headers(client: FlaskClient) -> None:
    response = client.get("/console/no-such-page")
    assert response.status_code == 404 and "text/html" in response.headers["Content-Type"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"


def test_the_console_headers_and_csrf_check_stay_out_of_the_api(client: FlaskClient) -> None:
    live = client.get("/health/live")
    assert live.status_code == 200 and "Content-Security-Policy" not in live.headers
    refused = client.post("/webhooks/whatsapp", data=b"{}", content_type="application/json")
    assert refused.status_code == 401 and refused.headers["Content-Type"] == "application/problem+json"


def test_the_stylesheet_is_served_by_us(client: FlaskClient) -> None:
    html = client.get("/console/login").get_data(as_text=True)
    assert "/console/static/console/console.css" in html and "http" not in html.split("console.css")[0][-80:]
    css = client.get("/console/static/console/console.css")
    assert css.status_code == 200 and "text/css" in css.headers["Content-Type"]


def test_the_language_switch_is_remembered(app: Flask, client: FlaskClient) -> None:
    signed_in(app, client, "admin")
    switched = post(client, "/console/language", {"locale": "en", "next": "/console/admin"})
    assert switched.headers["Location"] == "/console/admin"
    html = client.get("/console/admin").get_data(as_text=True)
    assert 'lang="en"' in html and "Sign out" in html
    post(client, "/console/language", {"locale": "tr", "next": "/console/admin"})
    assert "Çıkış yap" in client.get("/console/admin").get_data(as_text=True)


def test_the_language_survives_signing_in_and_out(app: Flask, client: FlaskClient) -> None:
    make_staff(app, "admin", "admin@ziraai.test")
    post(client, "/console/language", {"locale": "en", "next": "/console/login"})
    console_login(client, "admin@ziraai.test")
    assert "Sign out" in client.get("/console/admin").get_data(as_text=True)
    post(client, "/console/logout")
    assert "Sign in" in client.get("/console/login").get_data(as_text=True)


def test_signing_in_gives_a_new_csrf_token(app: Flask, client: FlaskClient) -> None:
    make_staff(app, "admin", "admin@ziraai.test")
    before = csrf(client)
    post(client, "/console/login", {"email": "admin@ziraai.test", "password": PASSWORD})
    assert csrf(client) != before


def test_an_unknown_console_page_is_an_html_404(client: FlaskClient) -> None:
    response = client.get("/console/no-such-page")
    assert response.status_code == 404 and "Böyle bir sayfa yok." in response.get_data(as_text=True)


def test_the_api_still_answers_problem_json(client: FlaskClient) -> None:
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404 and response.headers["Content-Type"] == "application/problem+json"


def test_changing_the_password_ends_other_sessions_and_keeps_this_one(app: Flask, client: FlaskClient) -> None:
    signed_in(app, client, "support")
    other = app.test_client()
    console_login(other, "support@ziraai.test")
    changed = post(client, "/console/password", {"current_password": PASSWORD, "new_password": "a new passphrase",
                                                 "new_password_again": "a new passphrase"})
    assert changed.status_code == 302
    assert client.get("/console/password").status_code == 200
    assert other.get("/console/password").status_code == 302
    assert console_login(app.test_client(), "support@ziraai.test", "a new passphrase").status_code == 302


def test_a_password_change_needs_the_current_password_and_the_same_new_one_twice(app: Flask,
                                                                                  client: FlaskClient) -> None:
    signed_in(app, client, "admin")
    wrong = post(client, "/console/password", {"current_password": "nope", "new_password": "a new passphrase",
                                               "new_password_again": "a new passphrase"})
    differ = post(client, "/console/password", {"current_password": PASSWORD, "new_password": "a new passphrase",
                                                "new_password_again": "another passphrase"})
    short = post(client, "/console/password", {"current_password": PASSWORD, "new_password": "short",
                                               "new_password_again": "short"})
    assert (wrong.status_code, differ.status_code, short.status_code) == (400, 400, 400)
    assert console_login(app.test_client(), "admin@ziraai.test", PASSWORD).status_code == 302


def test_without_redis_a_signed_in_page_is_a_503_never_a_pass(app: Flask, client: FlaskClient, monkeypatch) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    signed_in(app, client, "admin")

    def down(*args, **kwargs):
        raise RedisConnectionError("down")

    monkeypatch.setattr(app.extensions["redis"], "hgetall", down)
    response = client.get("/console/admin")
    assert response.status_code == 503
    assert "Geçici olarak kullanılamıyor" in response.get_data(as_text=True)


def test_the_console_catalog_is_complete_and_the_check_catches_a_missing_turkish_text(tmp_path) -> None:
    import shutil

    from translations.check import PROJECT_ROOT, check_console

    assert check_console(PROJECT_ROOT) == []
    shutil.copy(PROJECT_ROOT / "babel-console.cfg", tmp_path / "babel-console.cfg")
    (tmp_path / "console").mkdir()
    (tmp_path / "console" / "page.py").write_text('console_text(locale, "A brand new sentence.")\n')
    for locale in ("tr", "en"):
        folder = tmp_path / "translations" / locale / "LC_MESSAGES"
        folder.mkdir(parents=True)
        folder.joinpath("console.po").write_text(
            'msgid ""\nmsgstr ""\n"Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n"Content-Type: text/plain; '
            'charset=utf-8\\n"\n\nmsgid "A brand new sentence."\nmsgstr ""\n', encoding="utf-8")
    problems = check_console(tmp_path)
    assert problems == ["tr (console.po): 'A brand new sentence.': not translated"]


def test_the_console_imports_nothing_from_admin_web_or_above() -> None:
    """console/ sits beside admin/ and web/: what it shares with them lives in services/."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    forbidden = {"admin", "web", "webhooks", "devtools", "app", "cli", "tests", "bench"}
    found = []
    for path in (root / "console").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            found += [f"{path.name}: {name}" for name in names if name.split(".")[0] in forbidden]
    assert found == []


def test_every_console_refusal_that_redirects_lets_its_form_be_sent_again() -> None:
    """A view says why it refused with `refuse` (which lets the one-time form token go), never with a bare error
    flash, which would leave the token used and swallow the corrected form."""
    console = Path(__file__).resolve().parent.parent / "console"
    bare = [f"{path.name}:{n}" for path in console.glob("*.py") if path.name != "pages.py"
            for n, line in enumerate(path.read_text().splitlines(), 1) if 'flash_text("error"' in line]
    assert bare == []
