"""Settings: environment over .env, and production refusing unsafe configurations."""

from __future__ import annotations

import pytest

from app import create_app
from settings import SettingsError, check_settings, load_settings

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


def test_create_app_refuses_unsafe_production():
    with pytest.raises(SettingsError, match="refusing to start"):
        create_app(load_settings(environ={**STRONG, "JWT_SECRET": ""}, dotenv_path=None))


def test_problem_messages_never_contain_the_secret():
    bad = "tooshort1"
    with pytest.raises(SettingsError) as info:
        check_settings(load_settings(environ={**STRONG, "JWT_SECRET": bad}, dotenv_path=None))
    assert bad not in str(info.value)
