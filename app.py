"""The Flask app factory, health endpoints and the operator's CLI commands."""

from __future__ import annotations

import hashlib
import hmac
import logging
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from flask import Flask, Response, jsonify, request
from flask_cors import CORS
from redis.exceptions import RedisError
from sqlalchemy import text
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from models.db import Database
from services import context
from services.json_input import StrictJSONProvider
from services.logs import configure_logging
from services.queue import QUEUE_NAMES
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
    from admin.rq_dashboard import bp as rq_dashboard_bp
    from webhooks.media import bp as media_bp
    from webhooks.n8n import bp as n8n_bp
    from webhooks.report import bp as report_bp
    from webhooks.whatsapp import bp as whatsapp_bp

    app.register_blueprint(whatsapp_bp)
    app.register_blueprint(n8n_bp)
    app.register_blueprint(media_bp)
    app.register_blueprint(report_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(rq_dashboard_bp)
    if settings.DEV_TOOLS and not settings.is_production:
        import devtools

        devtools.register(app)
    _register_health(app)
    _register_metrics(app)
    _register_errors(app)
    _register_cli(app)
    _register_operator_cli(app)
    return app


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


def _register_health(app: Flask) -> None:
    @app.get("/health/live")
    def live() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/health/ready")
    def ready() -> tuple[Response, int]:
        from services.whatsapp.outbox import AUTH_ALERT_KEY

        checks: dict[str, dict[str, str]] = {}
        try:
            with context.db().reader() as session:
                session.execute(text("SELECT 1"))
            checks["database"] = {"status": "ok"}
        except Exception as exc:
            checks["database"] = {"status": "error", "error": type(exc).__name__}
        try:
            redis = context.redis()
            redis.ping()
            checks["redis"] = {"status": "ok"}
            auth_error = redis.get(AUTH_ALERT_KEY)
            checks["whatsapp_token"] = (
                {"status": "error", "error": auth_error.decode()} if auth_error else {"status": "ok"}
            )
        except RedisError as exc:
            checks["redis"] = {"status": "error", "error": type(exc).__name__}
        ok = all(c["status"] == "ok" for c in checks.values())
        return jsonify({"status": "ok" if ok else "error", "checks": checks}), 200 if ok else 503


def _register_metrics(app: Flask) -> None:
    @app.get("/metrics")
    def metrics_view() -> Response | tuple[Response, int]:
        """Prometheus exposition; with METRICS_TOKEN set, only for `Authorization: Bearer <token>` (any of
        its comma-separated tokens: new,old while Prometheus is switched over)."""
        from services import metrics

        tokens = [t.strip() for t in app.extensions["settings"].METRICS_TOKEN.split(",") if t.strip()]
        given = request.headers.get("Authorization")
        if tokens and not any([metrics.token_ok(given, token) for token in tokens]):  # every one compared
            response = jsonify({"type": "about:blank", "title": "Unauthorized", "status": 401,
                                "detail": "A valid bearer token is required."})
            response.mimetype = "application/problem+json"
            response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response, 401
        body, content_type = metrics.render(context.redis(), request.headers.get("Accept"))
        return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})


def _register_errors(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        response = jsonify({"type": "about:blank", "title": exc.name, "status": status, "detail": exc.description})
        response.mimetype = "application/problem+json"
        for name, value in exc.get_headers():  # e.g. `Allow` on a 405 (RFC 9110); the body is ours
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status


def _register_cli(app: Flask) -> None:
    @app.cli.command("worker")
    @click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
    @click.option("--queue", "queues", multiple=True, help="Queue(s) to listen on, in priority order.")
    def worker_command(burst: bool, queues: tuple[str, ...]) -> None:
        """Run an RQ worker inside the app's settings (it reconnects when Redis goes away)."""
        from services.worker import run_worker

        run_worker(app, queues or QUEUE_NAMES, burst=burst)

    @app.cli.command("sender")
    def sender_command() -> None:
        """Send the outbox's due messages (run one or more; they share the send rate limit)."""
        from services.worker import run_sender

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            run_sender(app, stop)
        except KeyboardInterrupt:
            stop.set()

    @app.cli.command("scheduler")
    def scheduler_command() -> None:
        """Run periodic jobs (the sweeper). Run exactly one; a second one waits for the lock."""
        from services.scheduler import run_scheduler

        stop = threading.Event()
        try:
            run_scheduler(app, stop)
        except KeyboardInterrupt:
            stop.set()

    @app.cli.command("sweep")
    @click.option("--grace", default=None, type=int, help="Only messages older than this many seconds.")
    def sweep_command(grace: int | None) -> None:
        """Enqueue committed-but-unqueued messages once, now."""
        from services.sweeper import sweep_unqueued

        click.echo(f"queued {sweep_unqueued(grace)}")

    @app.cli.command("sponsor-codes")
    @click.option("--sponsor", "sponsor_name", required=True, help="Sponsor name; created if no sponsor has it.")
    @click.option("--tier", "tier_code", required=True, help="Tier code: S, M, L or XL.")
    @click.option("--quantity", required=True, type=click.IntRange(1, 10_000))
    @click.option("--valid-days", default=90, show_default=True, type=click.IntRange(min=1),
                  help="Days a code can be redeemed.")
    @click.option("--duration-days", default=30, show_default=True, type=click.IntRange(min=1),
                  help="Days of subscription a code gives.")
    def sponsor_codes_command(sponsor_name: str, tier_code: str, quantity: int, valid_days: int,
                              duration_days: int) -> None:
        """Record a sponsor purchase and print its codes, one per line.

        An operator's path, equivalent to an admin's: it records the purchase directly (no purchase
        request), so run it only for a purchase that has been paid for."""
        from sqlalchemy import select

        from models import Sponsor, utcnow
        from services.quota import seed_tiers
        from services.sponsorship import create_purchase, create_sponsor

        now = utcnow()
        with app.extensions["db"].session() as session, session.begin():
            seed_tiers(session)
            sponsor = session.scalars(select(Sponsor).where(Sponsor.name == sponsor_name.strip())
                                      .order_by(Sponsor.id)).first()
            if sponsor is None:
                sponsor = create_sponsor(session, sponsor_name, now)
            try:
                _, codes = create_purchase(session, sponsor.id, tier_code, quantity, valid_days, duration_days, now)
            except ValueError as exc:
                raise click.UsageError(str(exc)) from exc
        click.echo("\n".join(codes))

    @app.cli.command("templates")
    @click.option("--json", "as_json", is_flag=True, help="The JSON of Meta's template-creation API.")
    def templates_command(as_json: bool) -> None:
        """Print the WhatsApp template definitions to register at Meta."""
        import json

        from translations.templates import TEMPLATES

        if as_json:
            click.echo(json.dumps([t.to_meta() for t in TEMPLATES.values()], ensure_ascii=False, indent=2))
        else:
            click.echo("\n\n".join(t.describe() for t in TEMPLATES.values()))

    @app.cli.command("seed-demo")
    @click.option("--new-admin-password", is_flag=True, help="Give admin@ziraai.local a new random password.")
    def seed_demo_command(new_admin_password: bool) -> None:
        """Demo data (idempotent): tiers, sponsor Demo Tarım A.Ş. with 20 M-tier codes, an admin user."""
        from devtools.demo import seed_demo

        if app.extensions["settings"].is_production:
            raise click.UsageError("seed-demo is for development; it refuses to run with APP_ENV=production")
        click.echo("\n".join(seed_demo(app.extensions["db"], new_admin_password=new_admin_password).lines()))

    @app.cli.command("chat")
    @click.option("--url", default=None, help="The running app (default: http://127.0.0.1:PORT).")
    @click.option("--phone", default="+905321234567", show_default=True, help="The farmer's number.")
    @click.option("--name", default="Mehmet Yılmaz", show_default=True, help="The farmer's WhatsApp name.")
    def chat_command(url: str | None, phone: str, name: str) -> None:
        """Chat as a farmer with the running app (same settings): real signed webhooks, replies from the log."""
        from services.terminal_chat import TerminalFarmer, run

        s = app.extensions["settings"]
        farmer = TerminalFarmer(url or f"http://127.0.0.1:{s.PORT}", s.WHATSAPP_APP_SECRET, app.extensions["db"],
                                phone, name, s.WHATSAPP_PHONE_NUMBER_ID)
        run(farmer)

    @app.cli.command("create-staff")
    @click.option("--email", required=True, help="Login email (stored lower-cased).")
    @click.option("--role", required=True, type=click.Choice(["admin", "sponsor", "support"]))
    @click.option("--sponsor-id", type=int, default=None, help="The sponsor a sponsor user belongs to.")
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
                  help="Prompted for when not given (give it only in scripts).")
    def create_staff_command(email: str, role: str, sponsor_id: int | None, password: str) -> None:
        """Create a staff user of the admin API."""
        from admin.auth import create_staff_user

        with app.extensions["db"].session() as session, session.begin():
            try:
                user = create_staff_user(session, email, password, role, sponsor_id)
            except ValueError as exc:
                raise click.UsageError(str(exc)) from exc
        click.echo(f"created {user.role} {user.email} (id {user.id})")


def _register_operator_cli(app: Flask) -> None:
    @app.cli.command("requeue-failed")
    @click.option("--queue", type=click.Choice(QUEUE_NAMES), default=None, help="Only this queue's failed jobs.")
    @click.option("--all", "requeue_all", is_flag=True, help="Every failed job (of --queue, or of all queues).")
    @click.option("--force", is_flag=True, help="Also jobs of failed analyses, which were refunded (run for free).")
    @click.argument("job_ids", nargs=-1)
    def requeue_failed_command(queue: str | None, requeue_all: bool, force: bool, job_ids: tuple[str, ...]) -> None:
        """Move jobs from RQ's failed registry back to their queue: --all, or the JOB_IDs given."""
        from services.failed_jobs import Requeue, failed_ids, requeue

        if requeue_all == bool(job_ids):
            raise click.UsageError("give either --all or one or more JOB_IDs")
        redis = app.extensions["redis"]
        wanted = [job_id for _, job_id in failed_ids(redis, queue)] if requeue_all else list(job_ids)
        done = missing = 0
        for job_id in wanted:
            outcome, found_in = requeue(redis, app.extensions["db"], job_id, queue=queue, force=force)
            if outcome is Requeue.REQUEUED:
                done += 1
                click.echo(f"requeued {job_id} ({found_in})")
            elif outcome is Requeue.REFUNDED:
                click.echo(f"skipped {job_id} ({found_in}): its analysis failed and was refunded; --force runs it "
                           "anyway, for free")
            else:
                missing += 1
                click.echo(f"not found {job_id}: in no failed registry" + (f" of {queue}" if queue else ""))
        click.echo(f"requeued {done} of {len(wanted)} job(s)")
        if missing:
            raise SystemExit(1)

    @app.cli.command("purge-media")
    @click.option("--older-than-days", required=True, type=click.IntRange(min=1),
                  help="Delete photos stored more than this many days ago.")
    @click.option("--dry-run", is_flag=True, help="Count what would be deleted, delete nothing.")
    def purge_media_command(older_than_days: int, dry_run: bool) -> None:
        """Delete stored originals and optimised photos older than N days (analyses keep their rows)."""
        from services.media_purge import purge_media

        report = purge_media(app.extensions["storage"], app.extensions["db"], older_than_days, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        click.echo(f"photos stored before {report.cutoff:%Y-%m-%d %H:%M} UTC:")
        for kind in report.files:
            click.echo(f"  {kind}: {verb} {report.files[kind]} file(s), {report.bytes[kind]} bytes")
        click.echo(f"total: {verb} {sum(report.files.values())} file(s), {sum(report.bytes.values())} bytes")
        if not dry_run:
            click.echo(f"photo keys cleared on analyses: {report.keys_cleared}")
        for store in report.unreachable:
            click.echo(f"could not list {store}; see the log")
        if report.failed:
            click.echo(f"could not delete {report.failed} file(s); see the log, they are tried again next time")
        if report.failed or report.unreachable:
            raise SystemExit(1)
