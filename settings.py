"""Typed settings read from the environment.

The process environment always wins over `.env` (python-dotenv never overrides a variable that is
already set). `load_settings()` is the only place that reads `os.environ`; everything else receives
a `Settings` object, so tests build one from a plain dict.

Outside production and tests, the secrets the environment does not give (`GENERATED_SECRETS`) are not
public constants: random ones are generated on the first run and kept in `instance/dev-secrets.env`
(git-ignored, mode 0600), so every process of this checkout (web, worker, `flask chat`, the dev tools'
stand-ins) signs and checks with the same ones, and a forged token made with a published default works
on nobody's machine. Production refuses to start without them; tests pass their own.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from dotenv import dotenv_values

PROJECT_ROOT = Path(__file__).resolve().parent
INSTANCE_DIR = PROJECT_ROOT / "instance"

# Development values: fine on a laptop, refused in production.
DEV_SECRETS = {
    "WHATSAPP_TOKEN": "dev-whatsapp-token",
    "WHATSAPP_VERIFY_TOKEN": "dev-verify-token",
    "WHATSAPP_APP_SECRET": "dev-app-secret",
    "N8N_SECRET": "dev-n8n-secret",
    "JWT_SECRET": "dev-jwt-secret-change-me-in-production",
}
SECRET_NAMES = tuple(DEV_SECRETS)
# Generated on the first run outside production and tests when the environment does not give them, and
# kept in DEV_SECRETS_FILE (the environment still wins). WHATSAPP_TOKEN is Meta's to issue, not ours.
GENERATED_SECRETS = ("JWT_SECRET", "WHATSAPP_APP_SECRET", "N8N_SECRET", "WHATSAPP_VERIFY_TOKEN")
DEV_SECRETS_FILE = INSTANCE_DIR / "dev-secrets.env"
WEAK_SECRET_MARKERS = ("change-me", "changeme", "placeholder", "example", "dev-")
MIN_SECRET_LENGTH = {"JWT_SECRET": 32, "WHATSAPP_APP_SECRET": 16, "N8N_SECRET": 16}
MIN_METRICS_TOKEN_LENGTH = 16
# Staff passwords: werkzeug's method string. The default is scrypt (n=2**15, r=8, p=1); tests use a cheap one.
DEFAULT_PASSWORD_HASH = "scrypt"
MIN_SCRYPT_N, MIN_SCRYPT_R = 2**15, 8
MIN_PBKDF2_ITERATIONS = 600_000  # OWASP's figure for PBKDF2-HMAC-SHA256


class SettingsError(RuntimeError):
    """The configuration cannot run safely; the message lists every problem."""


def _bool(value: str | bool | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    APP_ENV: str = "development"
    PORT: int = 8000
    DATABASE_URL: str = ""
    REDIS_URL: str = ""  # empty: embedded fakeredis + in-process worker thread
    WHATSAPP_API_BASE: str = "https://graph.facebook.com/v21.0"
    WHATSAPP_TOKEN: str = DEV_SECRETS["WHATSAPP_TOKEN"]
    WHATSAPP_PHONE_NUMBER_ID: str = "106540352242922"  # ours; several comma-separated, the first is the default
    WHATSAPP_VERIFY_TOKEN: str = DEV_SECRETS["WHATSAPP_VERIFY_TOKEN"]
    WHATSAPP_APP_SECRET: str = DEV_SECRETS["WHATSAPP_APP_SECRET"]
    WHATSAPP_MAX_MPS: int = 80
    WHATSAPP_SEND_CONCURRENCY: int = 32  # sends in flight per sender process: 74/s x Graph's ~0.3 s, and some
    OUTBOUND_PROXY: str = ""  # proxy URL for the calls to Graph and N8N; HTTP(S)_PROXY in the environment are not read
    N8N_WEBHOOK_URL: str = ""
    N8N_MODE: str = "sync"
    N8N_SECRET: str = DEV_SECRETS["N8N_SECRET"]
    PUBLIC_BASE_URL: str = "http://127.0.0.1:8000"
    JWT_SECRET: str = DEV_SECRETS["JWT_SECRET"]
    # Operational knobs (not secrets).
    DEV_TOOLS: bool = True
    LOG_LEVEL: str = "INFO"
    SWEEP_INTERVAL_SECONDS: int = 30
    SWEEP_GRACE_SECONDS: int = 10
    RETRY_BACKOFF_BASE: int = 4  # outbound retries wait base**n seconds (4, 16, 64, 256)
    ALBUM_WINDOW_SECONDS: int = 5  # photos a farmer sends this soon after the first are one submission (an album)
    N8N_TIMEOUT_SECONDS: int = 120
    ANALYSIS_RETRY_SECONDS: int = 30  # N8N transient errors: retried after 30, 60, 120 s
    ANALYSIS_DEADLINE_MINUTES: int = 15  # no result by then: the farmer is told it is delayed
    # An analysis waits this long for N8N (an open circuit, a callback that never comes), then fails (refunded).
    ANALYSIS_MAX_WAIT_SECONDS: int = 7200
    CIRCUIT_FAILURES: int = 5  # consecutive N8N failures that open the circuit
    CIRCUIT_COOLDOWN_SECONDS: int = 60
    MEDIA_DIR: str = ""  # empty: instance/media
    MEDIA_URL_MAX_AGE: int = 3600  # signed image links handed to N8N expire after this many seconds
    REPORT_URL_MAX_AGE: int = 7 * 24 * 3600  # the farmer's report page link (`Detaylar`) works this many seconds
    MEDIA_S3_BUCKET: str = ""  # optional S3-compatible primary store (needs boto3); MEDIA_DIR is then the fallback
    MEDIA_S3_ENDPOINT: str = ""
    ADMIN_REQUESTS_PER_MINUTE: int = 100  # admin API: requests per staff user per minute, then 429
    ADMIN_LOGIN_FAILURES_PER_ACCOUNT: int = 5  # failures on an account in 5 min, then 429 for failing addresses
    ADMIN_LOGIN_FAILURES_PER_IP: int = 20  # failed logins per client IP in 5 minutes, then 429
    CORS_ORIGINS: str = ""  # comma-separated browser origins allowed to call /api/v1 (empty: none)
    TRUSTED_PROXIES: int = 0  # reverse proxies in front whose X-Forwarded-For/-Proto headers are believed
    METRICS_TOKEN: str = ""  # bearer token for GET /metrics; empty: open (development only)
    CONSOLE_IDLE_MINUTES: int = 30  # the staff console signs out after this long without a request
    CONSOLE_SESSION_HOURS: int = 12  # and after this long whatever happens (sign in again)
    PASSWORD_HASH: str = DEFAULT_PASSWORD_HASH  # how new staff passwords are hashed (werkzeug method string)
    EMBEDDED_WORKER: bool = True
    WORKER_PROCESSES: int = 2  # `make run` with REDIS_URL: how many `flask worker` processes it starts
    TESTING: bool = False
    # Names of settings the environment did not provide (used for the production check).
    missing: frozenset[str] = field(default=frozenset(), compare=False)
    # Where the secrets the environment did not provide were generated and are kept (None: none were).
    generated_secrets_file: Path | None = field(default=None, compare=False)

    @property
    def is_production(self) -> bool:
        return self.APP_ENV == "production"

    @property
    def database_url(self) -> str:
        return self.DATABASE_URL or f"sqlite:///{INSTANCE_DIR / 'ziraai.sqlite3'}"

    @property
    def media_dir(self) -> Path:
        return Path(self.MEDIA_DIR) if self.MEDIA_DIR else INSTANCE_DIR / "media"

    @property
    def n8n_url(self) -> str:
        """N8N's webhook; in development without one, the local analyser of the dev tools."""
        if self.N8N_WEBHOOK_URL or not self.DEV_TOOLS or self.is_production:
            return self.N8N_WEBHOOK_URL
        return self.PUBLIC_BASE_URL.rstrip("/") + "/dev/n8n/analyze"

    @property
    def whatsapp_api_base(self) -> str:
        """The Graph API; in development with none in the environment, the dev tools' stand-in."""
        if "WHATSAPP_API_BASE" not in self.missing or not self.DEV_TOOLS or self.is_production:
            return self.WHATSAPP_API_BASE
        return self.PUBLIC_BASE_URL.rstrip("/") + "/dev/graph/v21.0"

    @property
    def n8n_secrets(self) -> tuple[str, ...]:
        """`N8N_SECRET` as a list: during a rotation `new,old` (requests carry a signature by each, and a
        result signed with either is accepted)."""
        return tuple(s.strip() for s in self.N8N_SECRET.split(",") if s.strip())

    @functools.cached_property
    def phone_number_ids(self) -> tuple[str, ...]:
        """Our WhatsApp numbers (`WHATSAPP_PHONE_NUMBER_ID`, comma-separated): a message written to any other
        number is not ours to answer. The first is where messages we write first go out from. Worked out
        once (every webhook asks)."""
        return tuple(n.strip() for n in self.WHATSAPP_PHONE_NUMBER_ID.split(",") if n.strip())

    @property
    def embedded_redis(self) -> bool:
        return not self.REDIS_URL

    @property
    def jwt_keys(self) -> tuple[str, ...]:
        """JWT_SECRET's keys (comma-separated, new,old for a rotation): the first signs, any verifies."""
        return tuple(k.strip() for k in self.JWT_SECRET.split(",") if k.strip()) or ("",)

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.CORS_ORIGINS.split(",") if o.strip()]

    def problems(self) -> list[str]:
        """Everything that makes this configuration unsafe for production."""
        if not self.is_production:
            return []
        found = []
        for name in SECRET_NAMES:
            # JWT_SECRET and N8N_SECRET may list several (new,old during a rotation): each must be strong.
            values = {"N8N_SECRET": self.n8n_secrets, "JWT_SECRET": self.jwt_keys}.get(name, (getattr(self, name),))
            if name in self.missing or not any(values):
                found.append(f"{name} is not set")
                continue
            for i, value in enumerate(values):
                label = f"{name} (secret {i + 1} of {len(values)})" if len(values) > 1 else name
                if value == DEV_SECRETS[name] or any(m in value.lower() for m in WEAK_SECRET_MARKERS):
                    found.append(f"{label} is a default or placeholder value")
                elif len(value) < MIN_SECRET_LENGTH.get(name, 1):
                    found.append(f"{label} must be at least {MIN_SECRET_LENGTH[name]} characters")
        for name in ("DATABASE_URL", "REDIS_URL", "WHATSAPP_PHONE_NUMBER_ID", "PUBLIC_BASE_URL", "N8N_WEBHOOK_URL"):
            if name in self.missing or not getattr(self, name):
                found.append(f"{name} is not set")
        if self.DATABASE_URL.startswith("sqlite"):
            found.append("DATABASE_URL must point to PostgreSQL in production")
        if self.PUBLIC_BASE_URL and not self.PUBLIC_BASE_URL.startswith("https://"):
            found.append("PUBLIC_BASE_URL must be https in production")
        if self.DEV_TOOLS:
            found.append("DEV_TOOLS must be off in production")
        if self.N8N_MODE not in {"sync", "callback"}:
            found.append("N8N_MODE must be 'sync' or 'callback'")
        if not self.METRICS_TOKEN:
            found.append("METRICS_TOKEN is not set (GET /metrics would be open to anyone)")
        elif any(len(t.strip()) < MIN_METRICS_TOKEN_LENGTH for t in self.METRICS_TOKEN.split(",")):
            found.append(f"METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_LENGTH} characters (each, when "
                         "comma-separated)")
        if not strong_password_hash(self.PASSWORD_HASH):
            found.append(f"PASSWORD_HASH must be scrypt (n >= {MIN_SCRYPT_N}, r >= {MIN_SCRYPT_R}) or pbkdf2:sha256 "
                         f"or pbkdf2:sha512 with at least {MIN_PBKDF2_ITERATIONS} iterations, not "
                         f"{self.PASSWORD_HASH!r}")
        for origin in self.cors_origins:
            if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d{1,5})?", origin):
                found.append(f"CORS_ORIGINS must list exact https origins (https://host[:port]), not {origin!r}")
        return found


def strong_password_hash(method: str) -> bool:
    """Is this werkzeug method string (`scrypt[:n:r:p]`, `pbkdf2[:hash[:iterations]]`) fit for production?"""
    name, *args = method.strip().split(":")
    if name == "scrypt":
        if not args:
            return True
        if len(args) != 3 or not all(a.isdigit() for a in args):
            return False
        n, r, p = map(int, args)
        return n >= MIN_SCRYPT_N and n & (n - 1) == 0 and r >= MIN_SCRYPT_R and p >= 1
    if name == "pbkdf2":
        if not args:
            return True
        if len(args) > 2 or args[0] not in ("sha256", "sha512"):
            return False
        return len(args) == 1 or (args[1].isdigit() and int(args[1]) >= MIN_PBKDF2_ITERATIONS)
    return False


def _coerce(name: str, raw: object, default: object) -> object:
    if isinstance(default, bool):
        return _bool(raw, default)  # type: ignore[arg-type]
    if isinstance(default, int):
        try:
            return int(str(raw).strip())
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    return str(raw).strip()


def load_settings(overrides: Mapping[str, object] | None = None, *, environ: Mapping[str, str] | None = None,
                  dotenv_path: Path | None = PROJECT_ROOT / ".env") -> Settings:
    """Build settings from `.env`, then the process environment (which wins), then explicit overrides.

    `environ` replaces the process environment (tests pass `{}` to ignore the machine's variables);
    `dotenv_path=None` skips the `.env` file.
    """
    file_values = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None} if dotenv_path else {}
    environ = {**file_values, **(os.environ if environ is None else environ)}
    overrides = dict(overrides or {})
    production = str(overrides.get("APP_ENV", environ.get("APP_ENV", "development"))) == "production"
    values: dict[str, object] = {}
    missing = set()
    for f in fields(Settings):
        if f.name in ("missing", "generated_secrets_file"):
            continue
        default = f.default
        if f.name == "DEV_TOOLS" and production:
            default = False  # production never turns the dev tools on by itself
        if f.name in overrides:
            raw = overrides[f.name]
        elif environ.get(f.name, "") != "":
            raw = environ[f.name]
        else:
            missing.add(f.name)
            values[f.name] = default
            continue
        values[f.name] = _coerce(f.name, raw, default)
    if "PUBLIC_BASE_URL" in missing and not production:
        values["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{values['PORT']}"  # follows PORT in development
    generated_file = None
    absent = [name for name in GENERATED_SECRETS if name in missing]
    if absent and not production and values["APP_ENV"] != "test":
        generated_file = DEV_SECRETS_FILE
        values.update(kept_secrets(generated_file, absent))
    return Settings(**values, missing=frozenset(missing), generated_secrets_file=generated_file)  # type: ignore[arg-type]


def kept_secrets(path: Path, names: Sequence[str]) -> dict[str, str]:
    """The values of `names` kept in `path` (a .env file), generating and adding those it lacks. The file
    is created with mode 0600 and locked while read and written, so processes starting together agree."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+", encoding="utf-8") as file:
        fcntl.flock(file, fcntl.LOCK_EX)  # released when the file is closed
        os.fchmod(fd, 0o600)
        kept = {k: v for k, v in dotenv_values(stream=file).items() if v}
        new = {name: secrets.token_urlsafe(32) for name in names if name not in kept}
        if new:
            file.seek(0, os.SEEK_END)
            if file.tell() == 0:
                file.write("# Development secrets generated on the first run (never for production).\n"
                           "# Values set in the environment or .env win over these.\n")
            file.writelines(f"{name}={value}\n" for name, value in new.items())
    return {name: {**kept, **new}[name] for name in names}


def check_settings(settings: Settings) -> None:
    """Refuse to start a production process with an unsafe configuration."""
    problems = settings.problems()
    if problems:
        raise SettingsError("refusing to start in production: " + "; ".join(problems))
