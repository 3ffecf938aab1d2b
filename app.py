"""The Flask app factory: settings, extensions, blueprints (webhooks/, web/, admin/, the staff console of
console/, the `flask` commands of cli.py, and devtools/ in development) and the error handler (problem+json;
HTML pages under /console)."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, request
from flask_cors import CORS
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from console import init_console
from console.security import error_page as console_error_page
from console.session import is_console_path
from models.db import Database
from services.json_input import StrictJSONProvider
from services.logs import configure_logging
from services.problems import problem
from services.redis_conn import connect
from services.storage import storage_from_settings
from settings import GENERATED_SECRETS, Settings, check_settings, load_settings

log = logging.getLogger(__name__)


class ZiraAIApp(Flask):
    def log_exception(self, exc_info: Any) -> None:
        """Flask's "Exception on <path>" line, with the route pattern instead of the path: a path can hold a
        working report or media token (`/r/<token>`), which must never reach the log."""
        rule = request.url_rule.rule if request.url_rule is not None else "(no route)"
        self.logger.error("Exception on %s [%s]", rule, request.method, exc_info=exc_info)

    def handle_user_exception(self, e: Exception) -> Any:
        """A body gunicorn cannot parse (a bad chunk size, a chunk without its CRLF, the client gone mid-body)
        is the client's mistake: a 400 wherever the body was read, never a 500 with a traceback. Mapped here,
        before any blueprint's catch-all handler sees it."""
        if isinstance(e, ParseException | NoMoreData):
            rule = request.url_rule.rule if request.url_rule is not None else "(no route)"
            log.warning("request body refused: %s", str(e)[:200], extra={"route": rule, "method": request.method})
            e = BadRequest("The request body could not be read: it is not valid HTTP (e.g. a malformed chunk).")
        return super().handle_user_exception(e)


def create_app(config: Mapping[str, Any] | Settings | None = None) -> Flask:
    """Build the app from the environment; `config` (a dict of setting names, or Settings) wins."""
    settings = config if isinstance(config, Settings) else load_settings(config)
    configure_logging(settings.LOG_LEVEL)
    check_settings(settings)
    _announce_generated_secrets(settings)

    app = ZiraAIApp(__name__)
    app.json = StrictJSONProvider(app)  # request.get_json() refuses what services.json_input refuses
    app.config.update(TESTING=settings.TESTING, MAX_CONTENT_LENGTH=3 * 1024 * 1024, JSON_SORT_KEYS=False)
    if settings.TRUSTED_PROXIES > 0:  # client IPs (login limits, audit log) from the trusted proxies' headers
        n = settings.TRUSTED_PROXIES
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=0, x_port=0, x_prefix=0)  # type: ignore[method-assign]
    if settings.cors_origins:  # browsers on these origins only, and only the admin API
        CORS(app, resources={r"/api/v1/*": {"origins": settings.cors_origins}}, supports_credentials=False,
             allow_headers=["Authorization", "Content-Type"], expose_headers=["Retry-After", "Content-Disposition"],
             methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"], max_age=600)
    app.extensions["settings"] = settings
    app.extensions["db"] = Database(settings.database_url)
    app.extensions["redis"] = connect(settings.REDIS_URL)
    app.extensions["storage"] = storage_from_settings(settings.media_dir, settings.MEDIA_S3_BUCKET,
                                                      settings.MEDIA_S3_ENDPOINT)
    # Its own key for media and report links, derived so the JWT signing key is never used for anything else;
    # `media_secrets` in itsdangerous' order (the last signs, any verifies): links signed with the previous
    # JWT_SECRET key keep working during a rotation.
    link_keys = [hmac.new(key.encode(), b"ziraai-media-links", hashlib.sha256).hexdigest()
                 for key in reversed(settings.jwt_keys)]
    app.extensions["media_secret"] = link_keys[-1]
    app.extensions["media_secrets"] = link_keys
    app.extensions["media_max_age"] = settings.MEDIA_URL_MAX_AGE

    from admin import bp as admin_bp
    from admin.api_docs import bp as api_docs_bp
    from admin.rq_dashboard import bp as rq_dashboard_bp
    from cli import bp as cli_bp
    from web.health import bp as health_bp
    from web.icon import bp as icon_bp
    from web.media import bp as media_bp
    from web.report import bp as report_bp
    from webhooks.n8n import bp as n8n_bp
    from webhooks.whatsapp import bp as whatsapp_bp

    for bp in (whatsapp_bp, n8n_bp, media_bp, report_bp, admin_bp, api_docs_bp, rq_dashboard_bp, health_bp,
               icon_bp, cli_bp):
        app.register_blueprint(bp)
    init_console(app)
    if settings.DEV_TOOLS and not settings.is_production:
        import devtools

        devtools.register(app)
    app.register_error_handler(HTTPException, _http_error)
    return app


def _http_error(exc: HTTPException) -> Any:
    """Every HTTP error as problem+json, with the exception's own headers (e.g. `Allow` on a 405, RFC 9110);
    under /console an HTML page for people."""
    if is_console_path(request.path):
        return console_error_page(exc)
    headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
    headers.setdefault("Cache-Control", "no-store")  # as every answer of the API: no route's after_request ran
    return problem(exc.code or 500, exc.description, title=exc.name, headers=headers)


_announced: set[Path] = set()


def _announce_generated_secrets(settings: Settings) -> None:
    """Say once per process where the generated development secrets are (never their values)."""
    path = settings.generated_secrets_file
    if path is None or path in _announced:
        return
    _announced.add(path)
    names = [name for name in GENERATED_SECRETS if name in settings.missing]
    log.warning("%s not set: using development values generated once and kept in %s (set them in the "
                "environment or .env to choose your own; Meta's webhooks need the app's real WHATSAPP_APP_SECRET)",
                ", ".join(names), path, extra={"file": str(path)})


