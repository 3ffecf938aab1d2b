"""Browsers may call the admin API only from the configured origins; client IPs come from proxy headers
only when the proxies are declared trusted (login limits and the audit log depend on them)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app import create_app
from models import AuditLog
from settings import SettingsError, check_settings, load_settings
from tests.admin_helpers import make_staff
from tests.helpers import make_settings
from tests.test_settings import STRONG

PANEL = "https://panel.ziraai.test"


def preflight(client, path: str, origin: str):
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": "GET",
                                         "Access-Control-Request-Headers": "Authorization"})


@pytest.fixture
def cors_app(database_url):
    app = create_app(make_settings(database_url, CORS_ORIGINS=f"{PANEL}, https://ops.ziraai.test"))
    yield app
    app.extensions["db"].engine.dispose()


def test_no_origins_configured_means_no_cross_origin_access(client):
    response = preflight(client, "/api/v1/sponsors", PANEL)
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Origin" not in client.get("/api/v1/openapi.json", headers={"Origin": PANEL}).headers


def test_a_configured_origin_may_call_the_admin_api(cors_app):
    client = cors_app.test_client()
    response = preflight(client, "/api/v1/sponsors", PANEL)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == PANEL
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in response.headers  # bearer tokens, never cookies
    actual = client.get("/api/v1/openapi.json", headers={"Origin": PANEL})
    assert actual.headers["Access-Control-Allow-Origin"] == PANEL
    assert "Retry-After" in actual.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("origin", ["https://evil.test", "http://panel.ziraai.test", "https://panel.ziraai.test.evil"])
def test_other_origins_get_nothing(cors_app, origin):
    client = cors_app.test_client()
    assert "Access-Control-Allow-Origin" not in preflight(client, "/api/v1/sponsors", origin).headers
    assert "Access-Control-Allow-Origin" not in client.get("/api/v1/openapi.json", headers={"Origin": origin}).headers


def test_only_the_admin_api_is_cross_origin(cors_app):
    client = cors_app.test_client()
    for path in ("/webhooks/whatsapp", "/health/ready"):
        assert "Access-Control-Allow-Origin" not in client.get(path, headers={"Origin": PANEL}).headers


@pytest.mark.parametrize("value", ["*", "http://panel.ziraai.test", "https://panel.ziraai.test/path"])
def test_production_wants_exact_https_origins(value):
    with pytest.raises(SettingsError, match="CORS_ORIGINS"):
        check_settings(load_settings(environ={**STRONG, "CORS_ORIGINS": value}, dotenv_path=None))
    assert load_settings(environ={**STRONG, "CORS_ORIGINS": PANEL}, dotenv_path=None).problems() == []


def login_from(client, forwarded_for: str, password: str = "wrong password!"):
    return client.post("/api/v1/auth/login", json={"email": "admin@ziraai.test", "password": password},
                       headers={"X-Forwarded-For": forwarded_for}, environ_base={"REMOTE_ADDR": "10.0.0.9"})


def test_behind_a_trusted_proxy_the_client_ip_is_the_forwarded_one(database_url, session):
    app = create_app(make_settings(database_url, TRUSTED_PROXIES=1, ADMIN_LOGIN_FAILURES_PER_IP=3,
                                   ADMIN_LOGIN_FAILURES_PER_ACCOUNT=100))
    make_staff(app, "admin", "admin@ziraai.test")
    client = app.test_client()
    for _ in range(3):
        assert login_from(client, "203.0.113.7").status_code == 401
    assert login_from(client, "203.0.113.7").status_code == 429  # that client is limited...
    assert login_from(client, "198.51.100.4").status_code == 401  # ...not everyone behind the same proxy
    assert login_from(client, "198.51.100.4", "correct horse battery staple").status_code == 200
    assert session.scalar(select(AuditLog.ip).where(AuditLog.action == "auth.login")) == "198.51.100.4"
    app.extensions["db"].engine.dispose()


def test_without_trusted_proxies_forwarded_headers_are_ignored(database_url, session):
    app = create_app(make_settings(database_url, ADMIN_LOGIN_FAILURES_PER_IP=3, ADMIN_LOGIN_FAILURES_PER_ACCOUNT=100))
    make_staff(app, "admin", "admin@ziraai.test")
    client = app.test_client()
    for i in range(3):  # a client forging a new X-Forwarded-For each time is still one address
        assert login_from(client, f"203.0.113.{i}").status_code == 401
    assert login_from(client, "203.0.113.99").status_code == 429
    app.extensions["db"].engine.dispose()
