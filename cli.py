"""The operator's `flask` commands: the worker, sender and scheduler processes, sweeps, sponsor codes,
templates and their status at Meta, lifting a send block, demo data, the terminal chat, staff users, failed
jobs and the media purge.

A blueprint without a command group (`cli_group=None`), so the commands stay top-level (`flask worker`);
`app.create_app` registers it. Commands run inside the app's context (`current_app`); the long-running
ones hand that app to the jobs they run (`services.jobs.bind_app`).
"""

from __future__ import annotations

import signal
import threading

import click
from flask import Blueprint, Flask, current_app

from services import jobs
from services.queue import QUEUE_NAMES

bp = Blueprint("cli", __name__, cli_group=None)


def _worker_app() -> Flask:
    """The app of this command, bound as the one a process's jobs run in (a forked work-horse has no other)."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    jobs.bind_app(app)
    return app


APART = ("the service on its embedded defaults (no REDIS_URL) keeps its queues, jobs and send block in a Redis "
         "inside its own process, which a command started apart cannot reach: it would act on an empty Redis of "
         "its own. ")


def apart_from_the_services_redis() -> bool:
    """No REDIS_URL: this command's Redis is not the running service's. (The tests run commands inside the
    service's own process, where the embedded Redis is the same one.)"""
    settings = current_app.extensions["settings"]
    return settings.embedded_redis and not settings.TESTING


def refuse_without_a_shared_redis(why: str) -> None:
    """Stop a command that acts through Redis when it cannot reach the service's, saying what to do instead."""
    if apart_from_the_services_redis():
        raise click.ClickException("no REDIS_URL: " + APART + why)


@bp.cli.command("worker")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.option("--queue", "queues", multiple=True, help="Queue(s) to listen on, in priority order.")
def worker_command(burst: bool, queues: tuple[str, ...]) -> None:
    """Run an RQ worker inside the app's settings (it reconnects when Redis goes away)."""
    refuse_without_a_shared_redis("It runs its own worker; to run workers apart, give every process one REDIS_URL.")
    from services.worker import run_worker

    run_worker(_worker_app(), queues or QUEUE_NAMES, burst=burst)


@bp.cli.command("sender")
def sender_command() -> None:
    """Send the outbox's due messages (run one or more; they share the send rate limit)."""
    refuse_without_a_shared_redis("It runs its own sender; to run senders apart, give every process one REDIS_URL.")
    from services.worker import run_sender

    app = _worker_app()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run_sender(app, stop)
    except KeyboardInterrupt:
        stop.set()


@bp.cli.command("scheduler")
def scheduler_command() -> None:
    """Run periodic jobs (the sweeper). Run exactly one; a second one waits for the lock."""
    refuse_without_a_shared_redis("It runs its own scheduler; to run one apart, give every process one REDIS_URL.")
    from services.scheduler import run_scheduler

    app = _worker_app()
    stop = threading.Event()
    try:
        run_scheduler(app, stop)
    except KeyboardInterrupt:
        stop.set()


@bp.cli.command("sweep")
@click.option("--grace", default=None, type=int, help="Only messages older than this many seconds.")
def sweep_command(grace: int | None) -> None:
    """Enqueue committed-but-unqueued messages once, now."""
    refuse_without_a_shared_redis("Its own sweeper queues what is waiting every SWEEP_INTERVAL_SECONDS (30 s).")
    from services.sweeper import sweep_unqueued

    click.echo(f"queued {sweep_unqueued(grace)}")


@bp.cli.command("sponsor-codes")
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
    from models import utcnow
    from services.quota import seed_tiers
    from services.sponsorship import create_purchase, create_sponsor, sponsor_named

    if not 1 <= len(sponsor_name.strip()) <= 200:  # as the admin API and the console take a sponsor's name
        raise click.BadParameter("a name of 1 to 200 characters", param_hint="--sponsor")
    now = utcnow()
    with current_app.extensions["db"].session() as session, session.begin():
        seed_tiers(session)
        sponsor = sponsor_named(session, sponsor_name)
        if sponsor is None:
            sponsor = create_sponsor(session, sponsor_name, now)
        try:
            _, codes = create_purchase(session, sponsor.id, tier_code, quantity, valid_days, duration_days, now)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
    click.echo("\n".join(codes))


@bp.cli.command("templates")
@click.option("--json", "as_json", is_flag=True, help="The JSON of Meta's template-creation API.")
def templates_command(as_json: bool) -> None:
    """Print the WhatsApp template definitions to register at Meta."""
    import json

    from translations.templates import TEMPLATES

    if as_json:
        click.echo(json.dumps([t.to_meta() for t in TEMPLATES.values()], ensure_ascii=False, indent=2))
    else:
        click.echo("\n\n".join(t.describe() for t in TEMPLATES.values()))


@bp.cli.command("whatsapp-status")
@click.option("--json", "as_json", is_flag=True, help="The same as /health/ready's whatsapp_account, as JSON.")
def whatsapp_status_command(as_json: bool) -> None:
    """Print what Meta reported: account standing, templates, number quality and limits."""
    import json

    from services.whatsapp.health import SEEDED_AT
    from web.health import account_detail, whatsapp_snapshot

    health = whatsapp_snapshot()
    if as_json:
        click.echo(json.dumps(account_detail(health), ensure_ascii=False, indent=2))
        return
    since = f" since {health.account_updated_at:%Y-%m-%d %H:%M} UTC" if health.account_updated_at else ""
    click.echo(f"account: {health.account_status.value}{since}"
               + (" (RESTRICTED: some or all sends are refused)" if health.restricted else ""))
    detail = health.account_detail
    if detail.get("event"):
        click.echo(f"  last event: {detail['event']}" + (f", ban state {detail['ban_state']}" if detail.get("ban_state")
                                                         else ""))
    if health.violation:
        click.echo(f"  violation: {health.violation.get('violation_type') or '?'} reported {health.violation['since']}")
    for r in detail.get("restrictions") or []:
        click.echo(f"  restriction: {r.get('type')} until {r.get('expiration') or '?'}")
    block = health.send_block
    if apart_from_the_services_redis():
        click.echo("sends: unknown here (no REDIS_URL: the running service keeps its send block in its own "
                   "process; GET /health/ready shows it)")
    elif block:
        click.echo(f"sends: BLOCKED ({block.reason})"
                   + (f" since {block.since:%Y-%m-%d %H:%M} UTC" if block.since else "")
                   + (f", tried again at {block.until:%Y-%m-%d %H:%M} UTC" if block.until else ", until lifted"))
    click.echo("templates:")
    for t in health.templates:
        reported = "never reported" if t.updated_at <= SEEDED_AT else f"{t.updated_at:%Y-%m-%d %H:%M} UTC"
        flag = "  BLOCKED" if t.blocked else ""
        click.echo(f"  {t.name} ({t.language}): {t.status}, quality {t.quality}, {t.category or '?'}, "
                   f"{reported}{flag}" + (f" - {t.reason}" if t.reason and t.blocked else ""))
    click.echo("numbers:" if health.numbers else "numbers: none reported")
    for number, n in health.numbers.items():
        click.echo(f"  {number}: {n.get('event')}, limit {n.get('current_limit') or '?'}"
                   + (f" (was {n['old_limit']})" if n.get("old_limit") else ""))
    caps = health.capabilities
    click.echo("limits: " + (", ".join(f"{k} {v}" for k, v in caps.items() if v is not None) if caps
                             else "none reported"))


@bp.cli.command("whatsapp-unblock")
def whatsapp_unblock_command() -> None:
    """Lift the send block (131042, 368, 131031) once the account is fixed: held replies go now, in order."""
    refuse_without_a_shared_redis("It tries a blocked send again by itself every 5 minutes, and the held replies "
                                  "go once Meta accepts one.")
    from models import utcnow
    from services.whatsapp.outbox import lift_account_block

    with current_app.extensions["db"].session() as session, session.begin():
        released = lift_account_block(session, utcnow())
    click.echo(f"send block lifted; {released} held message(s) due now")


@bp.cli.command("seed-demo")
@click.option("--new-admin-password", is_flag=True, help="Give admin@ziraai.local a new random password.")
def seed_demo_command(new_admin_password: bool) -> None:
    """Demo data (idempotent): tiers, sponsor Demo Tarım A.Ş. with 20 M-tier codes, an admin user."""
    from devtools.demo import seed_demo

    if current_app.extensions["settings"].is_production:
        raise click.UsageError("seed-demo is for development; it refuses to run with APP_ENV=production")
    click.echo("\n".join(seed_demo(current_app.extensions["db"], new_admin_password=new_admin_password).lines()))


@bp.cli.command("chat")
@click.option("--url", default=None, help="The running app (default: http://127.0.0.1:PORT).")
@click.option("--phone", default="+905321234567", show_default=True, help="The farmer's number.")
@click.option("--name", default="Mehmet Yılmaz", show_default=True, help="The farmer's WhatsApp name.")
def chat_command(url: str | None, phone: str, name: str) -> None:
    """Chat as a farmer with the running app (same settings): real signed webhooks, replies from the log."""
    import requests

    from devtools.terminal_chat import TerminalFarmer, run

    s = current_app.extensions["settings"]
    base = url or f"http://127.0.0.1:{s.PORT}"
    farmer = TerminalFarmer(base, s.WHATSAPP_APP_SECRET, current_app.extensions["db"], phone, name,
                            s.phone_number_ids[0])
    try:
        run(farmer)
    except requests.ConnectionError:
        raise click.ClickException(f"cannot reach the app at {base}: is `make run` going? (give --url, or the "
                                   "PORT it runs on)") from None


@bp.cli.command("create-staff")
@click.option("--email", required=True, help="Login email (stored lower-cased).")
@click.option("--role", required=True, type=click.Choice(["admin", "sponsor", "support"]))
@click.option("--sponsor-id", type=int, default=None, help="The sponsor a sponsor user belongs to.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="Prompted for when not given (give it only in scripts).")
def create_staff_command(email: str, role: str, sponsor_id: int | None, password: str) -> None:
    """Create a staff user of the admin API."""
    from models import utcnow
    from services.staff_auth import create_staff_user

    with current_app.extensions["db"].session() as session, session.begin():
        try:
            user = create_staff_user(session, email, password, role, sponsor_id, utcnow())
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
    click.echo(f"created {user.role} {user.email} (id {user.id})")


@bp.cli.command("requeue-failed")
@click.option("--queue", type=click.Choice(QUEUE_NAMES), default=None, help="Only this queue's failed jobs.")
@click.option("--all", "requeue_all", is_flag=True, help="Every failed job (of --queue, or of all queues).")
@click.option("--force", is_flag=True, help="Also jobs of failed analyses, which were refunded (run for free).")
@click.argument("job_ids", nargs=-1)
def requeue_failed_command(queue: str | None, requeue_all: bool, force: bool, job_ids: tuple[str, ...]) -> None:
    """Move jobs from RQ's failed registry back to their queue: --all, or the JOB_IDs given."""
    refuse_without_a_shared_redis("Use the console's failed jobs page (Retry) instead.")
    from services.failed_jobs import Requeue, failed_ids, requeue

    if requeue_all == bool(job_ids):
        raise click.UsageError("give either --all or one or more JOB_IDs")
    redis = current_app.extensions["redis"]
    wanted = [job_id for _, job_id in failed_ids(redis, queue)] if requeue_all else list(job_ids)
    done = missing = 0
    for job_id in wanted:
        outcome, found_in = requeue(redis, current_app.extensions["db"], job_id, queue=queue, force=force)
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


@bp.cli.command("purge-media")
@click.option("--older-than-days", required=True, type=click.IntRange(min=1),
              help="Delete photos stored more than this many days ago.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted, delete nothing.")
def purge_media_command(older_than_days: int, dry_run: bool) -> None:
    """Delete stored originals and optimised photos older than N days (analyses and messages keep their rows)."""
    from services.media_purge import purge_media

    report = purge_media(current_app.extensions["storage"], current_app.extensions["db"], older_than_days,
                         dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"photos stored before {report.cutoff:%Y-%m-%d %H:%M} UTC:")
    for kind in report.files:
        click.echo(f"  {kind}: {verb} {report.files[kind]} file(s), {report.bytes[kind]} bytes")
    click.echo(f"total: {verb} {sum(report.files.values())} file(s), {sum(report.bytes.values())} bytes")
    if not dry_run:
        click.echo(f"photo keys cleared on analyses and messages: {report.keys_cleared}")
    for store in report.unreachable:
        click.echo(f"could not list {store}; see the log")
    if report.failed:
        click.echo(f"could not delete {report.failed} file(s); see the log, they are tried again next time")
    if report.failed or report.unreachable:
        raise SystemExit(1)
