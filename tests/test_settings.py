"""Settings: environment over .env, and production refusing unsafe configurations."""

from __future__ import annotations

import logging
import os
import stat
import time

import jwt
import pytest

import settings as settings_module
from admin.auth import AUDIENCE, ISSUER
from app import create_app
from models import StaffUser
from settings import DEV_SECRETS, GENERATED_SECRETS, SettingsError, check_settings, load_settings
from tests.admin_helpers import make_staff
from tests.helpers import TEST_REDIS_URL, clean_stores

STRONG = {
    "APP_ENV": "production",
    "DATABASE_URL": "postgresql+psycopg://ziraai@db/ziraai",
    "REDIS_URL": "redis://cache:6379/0",
    "WHATSAPP_TOKEN": "EAAG9xk2mZr7QpL4vT8wYbN3cD5fH6jK",
    "WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
    "WHATSAPP_VERIFY_TOKEN": "v3r1fy-7Kq9-Mx2P-Zt8R",
    "WHATSAPP_APP_SECRET": "5f2b8c1d9e7a4b3c6d0e8f1a2b3c4d5e",
    "N8N_SECRET": "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d",
    "JWT_SECRET": "Qm7rT2xW9zL4pK8vN3bH6jF1dS5gA0cY",
    "PUBLIC_BASE_URL": "https://bot.ziraai.example.com",
    "N8N_WEBHOOK_URL": "https://n8n.ziraai.example.com/webhook/plant-analysis",
    "METRICS_TOKEN": "m3tr1cs-Zq8Lw2Xp7Rt4",
}


def test_defaults_are_the_embedded_development_setup():
    s = load_settings(environ={}, dotenv_path=None)
    assert s.APP_ENV == "development" and s.PORT == 8000 and s.WHATSAPP_MAX_MPS == 80
    assert s.embedded_redis
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("instance/ziraai.sqlite3")
    check_settings(s)  # development never refuses


def test_process_environment_wins_over_dotenv(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=9000\nWHATSAPP_MAX_MPS=10\nN8N_MODE=callback\n")
    s = load_settings(environ={"PORT": "8123"}, dotenv_path=env_file)
    assert (s.PORT, s.WHATSAPP_MAX_MPS, s.N8N_MODE) == (8123, 10, "callback")


def test_non_integer_is_a_clear_error():
    with pytest.raises(SettingsError, match="WHATSAPP_MAX_MPS"):
        load_settings(environ={"WHATSAPP_MAX_MPS": "fast"}, dotenv_path=None)


def test_production_with_strong_secrets_starts():
    s = load_settings(environ=STRONG, dotenv_path=None)
    assert s.problems() == []
    assert s.DEV_TOOLS is False  # production never turns the dev tools on by itself


@pytest.mark.parametrize("name", ["WHATSAPP_TOKEN", "WHATSAPP_VERIFY_TOKEN", "WHATSAPP_APP_SECRET", "N8N_SECRET",
                                  "JWT_SECRET", "DATABASE_URL", "REDIS_URL", "PUBLIC_BASE_URL", "N8N_WEBHOOK_URL",
                                  "METRICS_TOKEN"])
def test_production_refuses_a_missing_setting(name):
    env = {k: v for k, v in STRONG.items() if k != name}
    with pytest.raises(SettingsError, match=name):
        check_settings(load_settings(environ=env, dotenv_path=None))


@pytest.mark.parametrize("name,value", [
    ("JWT_SECRET", "dev-jwt-secret-change-me-in-production"),
    ("JWT_SECRET", "short"),
    ("WHATSAPP_APP_SECRET", "change-me"),
    ("N8N_SECRET", "dev-n8n-secret"),
    ("WHATSAPP_TOKEN", "dev-whatsapp-token"),
    ("JWT_SECRET", STRONG["JWT_SECRET"] + ",short"),  # during a rotation every key must be strong
    ("JWT_SECRET", STRONG["JWT_SECRET"] + ",dev-jwt-secret-change-me-in-production"),
    ("METRICS_TOKEN", STRONG["METRICS_TOKEN"] + ",short"),
])
def test_production_refuses_default_or_weak_secrets(name, value):
    with pytest.raises(SettingsError, match=name):
        check_settings(load_settings(environ={**STRONG, name: value}, dotenv_path=None))


def test_production_takes_a_new_and_an_old_jwt_key():
    rotating = load_settings(environ={**STRONG, "JWT_SECRET": "N" * 40 + ", " + STRONG["JWT_SECRET"]},
                             dotenv_path=None)
    assert rotating.problems() == []
    assert rotating.jwt_keys == ("N" * 40, STRONG["JWT_SECRET"])


def test_production_refuses_dev_tools_and_sqlite():
    with pytest.raises(SettingsError, match="DEV_TOOLS"):
        check_settings(load_settings(environ={**STRONG, "DEV_TOOLS": "1"}, dotenv_path=None))
    with pytest.raises(SettingsError, match="PostgreSQL"):
        check_settings(load_settings(environ={**STRONG, "DATABASE_URL": "sqlite:///x.db"}, dotenv_path=None))


@pytest.mark.parametrize("method", ["pbkdf2:sha256:1", "pbkdf2:sha256:100000", "scrypt:16384:8:1", "scrypt:32768:1:1",
                                    "pbkdf2:md5:1000000", "plain", "scrypt:x"])
def test_production_refuses_a_weak_password_hash(method):
    with pytest.raises(SettingsError, match="PASSWORD_HASH"):
        check_settings(load_settings(environ={**STRONG, "PASSWORD_HASH": method}, dotenv_path=None))


@pytest.mark.parametrize("method", ["scrypt", "scrypt:65536:8:1", "pbkdf2", "pbkdf2:sha512:600000"])
def test_production_takes_a_strong_password_hash(method):
    settings = load_settings(environ={**STRONG, "PASSWORD_HASH": method}, dotenv_path=None)
    check_settings(settings)
    assert method == settings.PASSWORD_HASH
    assert load_settings(environ={}, dotenv_path=None).PASSWORD_HASH == "scrypt"


def test_create_app_refuses_unsafe_production():
    with pytest.raises(SettingsError, match="refusing to start"):
        create_app(load_settings(environ={**STRONG, "JWT_SECRET": ""}, dotenv_path=None))


def test_problem_messages_never_contain_the_secret():
    bad = "tooshort1"
    with pytest.raises(SettingsError) as info:
        check_settings(load_settings(environ={**STRONG, "JWT_SECRET": bad}, dotenv_path=None))
    assert bad not in str(info.value)


# --- development secrets ----------------------------------------------------------------------------------
# Found by the adversarial review: `make run` used public constant secrets, so an admin JWT forged with the
# published default worked on any developer's machine.


def test_development_generates_its_secrets_once_and_keeps_them_private(generated_secrets_elsewhere):
    first = load_settings(environ={}, dotenv_path=None)
    again = load_settings(environ={}, dotenv_path=None)
    for name in GENERATED_SECRETS:
        assert getattr(first, name) != DEV_SECRETS[name] and len(getattr(first, name)) >= 32, name
        assert getattr(again, name) == getattr(first, name), name  # every process of the checkout agrees
    assert first.generated_secrets_file == generated_secrets_elsewhere
    assert stat.S_IMODE(os.stat(generated_secrets_elsewhere).st_mode) == 0o600
    assert f"JWT_SECRET={first.JWT_SECRET}" in generated_secrets_elsewhere.read_text()
    check_settings(first)


def test_the_environment_still_wins_over_generated_secrets(generated_secrets_elsewhere):
    generated = load_settings(environ={}, dotenv_path=None)
    mine = load_settings(environ={"JWT_SECRET": "my-own-jwt-secret-of-enough-length-01"}, dotenv_path=None)
    assert mine.JWT_SECRET == "my-own-jwt-secret-of-enough-length-01"
    assert mine.N8N_SECRET == generated.N8N_SECRET
    everything = load_settings(environ={name: f"{name.lower()}-from-the-environment-0123456789"
                                        for name in GENERATED_SECRETS}, dotenv_path=None)
    assert everything.generated_secrets_file is None


def test_tests_and_production_generate_nothing():
    assert load_settings({"APP_ENV": "test"}, environ={}, dotenv_path=None).generated_secrets_file is None
    assert load_settings(environ=STRONG, dotenv_path=None).generated_secrets_file is None


def test_an_admin_token_forged_with_the_published_default_is_refused_in_development(database_url):
    overrides = {"DATABASE_URL": database_url, "REDIS_URL": TEST_REDIS_URL, "EMBEDDED_WORKER": False}
    app = create_app(load_settings(overrides, environ={}, dotenv_path=None))
    clean_stores(app)
    admin_id = make_staff(app, "admin")
    now = int(time.time())
    with app.extensions["db"].reader() as s:
        fingerprint = s.get(StaffUser, admin_id).login_fingerprint
    claims = {"sub": str(admin_id), "role": "admin", "sponsor_id": None, "iat": now, "exp": now + 600,
              "iss": ISSUER, "aud": AUDIENCE, "jti": "f" * 16, "pwf": fingerprint}
    forged = jwt.encode(claims, DEV_SECRETS["JWT_SECRET"], algorithm="HS256")
    response = app.test_client().get("/api/v1/staff", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    real = jwt.encode(claims, app.extensions["settings"].JWT_SECRET, algorithm="HS256")  # the control
    assert app.test_client().get("/api/v1/staff", headers={"Authorization": f"Bearer {real}"}).status_code == 200
    app.extensions["db"].engine.dispose()


def test_where_the_generated_secrets_are_is_logged_once_without_them(caplog, tmp_path, monkeypatch):
    caplog.set_level(logging.WARNING, logger="app")
    secrets_file = tmp_path / "dev-secrets.env"  # a file no app of this process has announced yet
    monkeypatch.setattr(settings_module, "DEV_SECRETS_FILE", secrets_file)
    apps = [create_app(load_settings({"DATABASE_URL": "sqlite://"}, environ={}, dotenv_path=None)) for _ in range(2)]
    said = [r.getMessage() for r in caplog.records if str(secrets_file) in r.getMessage()]
    assert len(said) == 1 and "JWT_SECRET" in said[0]
    for name in GENERATED_SECRETS:
        assert getattr(apps[0].extensions["settings"], name) not in caplog.text
    for one in apps:
        one.extensions["db"].engine.dispose()
