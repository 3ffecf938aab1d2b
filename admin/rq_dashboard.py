"""`/admin/rq`: a small RQ dashboard for admins (queues, workers, failed jobs with a requeue button).

Why not the `rq-dashboard` package: version 0.9.0 opens its own Redis connection from a URL in a
before-request hook on every request and keeps it on the shared app object, so it cannot use the app's
connection (fakeredis in the embedded default) without patching its internals; it also changes state
on GET (`/requeue/<queue>`), which HTTP Basic makes open to cross-site requests, and its requeue would
bypass the refund rule of failed analyses. This page is the part operators need.

Sign-in: HTTP Basic with an admin staff user's email and password, checked like the API's login (same
password hashing, the same per-account and per-IP failure limits, inactive users refused); anything
else, an `Authorization` header that cannot be decoded included, is 401 with `WWW-Authenticate: Basic`.
Page views and requeues are written to the audit log.
Requeue forms carry a token bound to the user, so another site cannot submit them.

Workers: those registered in Redis (`flask worker`), and, in the embedded mode, the worker thread of
this process: it runs RQ in short bursts, registered only while a burst lasts, so the page lists it
itself while the thread is alive (busy when a job of this process is running).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
from typing import Any

from flask import Blueprint, Response, g, redirect, render_template_string, request, url_for
from flask.typing import ResponseReturnValue
from redis.exceptions import RedisError
from rq import Worker
from rq.registry import StartedJobRegistry
from werkzeug.datastructures import Authorization

from admin.auth import enforce_user_rate
from admin.errors import ApiError, register_error_handlers
from models import StaffRole, StaffUser
from services import context, failed_jobs
from services.audit import audit
from services.queue import QUEUE_NAMES, get_queue
from services.staff_auth import check_credentials, normalize_email
from services.worker import embedded_worker_alive

bp = Blueprint("rq_dashboard", __name__, url_prefix="/admin/rq")
register_error_handlers(bp)

FAILED_SHOWN = 50
REALM = 'Basic realm="ZiraAI RQ dashboard", charset="UTF-8"'


def _challenge(detail: str = "Sign in with an admin account.") -> ApiError:
    return ApiError(401, detail, headers={"WWW-Authenticate": REALM})


def _basic_credentials() -> Authorization | None:
    """The request's `Authorization`, or None when there is none or it cannot be read. Werkzeug answers
    None for most undecodable Basic credentials but raises ValueError for non-ASCII text where the base64
    goes; either way they are bad credentials (401), never an error."""
    try:
        return request.authorization
    except ValueError:
        return None


@bp.before_request
def _sign_in() -> None:
    auth = _basic_credentials()
    if auth is None or auth.type != "basic" or not auth.username or not auth.password:
        raise _challenge()
    user = check_credentials(normalize_email(auth.username)[:254], auth.password[:1024])  # the API login's limits
    if user is None:
        raise _challenge("Invalid email or password.")
    if user.role != StaffRole.ADMIN:
        raise _challenge("Only admins may use the RQ dashboard.")
    enforce_user_rate(user.id)
    g.staff_user = user


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = ("default-src 'none'; style-src 'unsafe-inline'; "
                                                   "form-action 'self'; frame-ancestors 'none'")
    return response


def _form_token(user: StaffUser) -> str:
    key = hmac.new(context.settings().jwt_keys[0].encode(), b"ziraai-rq-dashboard", hashlib.sha256).digest()
    return hmac.new(key, f"{user.id}:{user.password_hash}".encode(), hashlib.sha256).hexdigest()


MESSAGES = {
    "requeued": "Job {job} is back in queue {queue}.",
    "not_found": "Job {job} is not in a failed registry (requeued already, or expired).",
    "refunded": "Job {job} belongs to an analysis that ended as failed: its charge was refunded and the farmer "
                "was told. Tick 'force' to run it anyway (the analysis would be free).",
}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>RQ queues · ZiraAI</title>
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
 table{border-collapse:collapse;margin:.5em 0 1.5em}
 th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
 td.n{text-align:right} .msg{background:#eef6ee;border:1px solid #9c9;padding:.5em 1em}
 code{font-size:12px} .exc{max-width:50em;word-break:break-word}
</style></head><body>
<h1>RQ queues</h1>
<p>Signed in as {{ user.email }}. Numbers are read from Redis now; reload to refresh.</p>
{% if message %}<p class="msg">{{ message }}</p>{% endif %}
<table><tr><th>Queue</th><th>Waiting</th><th>Running</th><th>Scheduled</th><th>Failed</th></tr>
{% for q in queues %}<tr><td>{{ q.name }}</td><td class="n">{{ q.waiting }}</td><td class="n">{{ q.running }}</td>
<td class="n">{{ q.scheduled }}</td><td class="n">{{ q.failed }}</td></tr>{% endfor %}
</table>
<h2>Workers ({{ workers|length }})</h2>
{% if workers %}<table><tr><th>Name</th><th>State</th><th>Queues</th><th>Current job</th></tr>
{% for w in workers %}<tr><td>{{ w.name }}</td><td>{{ w.state }}</td><td>{{ w.queues }}</td>
<td>{{ w.job or "" }}</td></tr>{% endfor %}</table>{% else %}<p>No worker is registered.</p>{% endif %}
<h2>Failed jobs</h2>
{% for q in queues if q.failed %}
<h3>{{ q.name }} ({% if q.failed > q.jobs|length %}latest {{ q.jobs|length }} of {% endif %}{{ q.failed }})</h3>
<table><tr><th>Job</th><th>Function</th><th>Failed at (UTC)</th><th>Exception</th><th></th></tr>
{% for j in q.jobs %}<tr><td><code>{{ j.id }}</code></td><td><code>{{ j.function or "?" }}</code></td>
<td>{{ j.ended_at.strftime("%Y-%m-%d %H:%M:%S") if j.ended_at else "" }}</td>
<td class="exc">{{ j.exc_summary or "" }}</td>
<td><form method="post" action="{{ url_for('rq_dashboard.requeue_job', job_id=j.id) }}">
<input type="hidden" name="token" value="{{ token }}">
{% if j.id.startswith("analysis-") %}<label><input type="checkbox" name="force" value="1"> force</label> {% endif %}
<button type="submit">Requeue</button></form></td></tr>{% endfor %}
</table>
{% else %}<p>No failed jobs.</p>{% endfor %}
</body></html>"""


def _queues() -> list[dict[str, Any]]:
    redis = context.redis()
    rows = []
    for name in QUEUE_NAMES:
        queue = get_queue(name, redis)
        failed = queue.failed_job_registry.get_job_count(cleanup=False)
        rows.append({
            "name": name,
            "waiting": queue.count,
            "running": StartedJobRegistry(queue=queue).get_job_count(cleanup=False),
            "scheduled": queue.scheduled_job_registry.get_job_count(cleanup=False),
            "failed": failed,
            "jobs": failed_jobs.latest_failed(redis, name, FAILED_SHOWN) if failed else [],
        })
    return rows


def _workers() -> list[dict[str, Any]]:
    """RQ's registered workers, with the embedded worker thread (no REDIS_URL) shown under one name
    whether or not it is inside one of its short bursts, when RQ registers it."""
    here = socket.gethostname(), os.getpid()
    embedded = embedded_worker_alive()
    embedded_name = f"embedded worker (thread in process {here[1]} on {here[0]})"
    rows = [{"name": embedded_name if embedded and (w.hostname, w.pid) == here else w.name,
             "state": w.get_state(), "queues": ", ".join(w.queue_names()), "job": w.get_current_job_id()}
            for w in Worker.all(connection=context.redis())]
    if embedded and not any(row["name"] == embedded_name for row in rows):
        running = [job for name in QUEUE_NAMES
                   for job in StartedJobRegistry(queue=get_queue(name, context.redis())).get_job_ids(cleanup=False)]
        rows.append({"name": embedded_name, "state": "busy" if running else "idle", "queues": ", ".join(QUEUE_NAMES),
                     "job": running[0] if running else None})
    return rows


@bp.get("/")
def index() -> str:
    done, job, queue = request.args.get("done", ""), request.args.get("job", ""), request.args.get("queue", "")
    valid = done in MESSAGES and failed_jobs.JOB_ID_RE.fullmatch(job) and queue in ("", *QUEUE_NAMES)
    message = MESSAGES[done].format(job=job, queue=queue) if valid else ""
    try:
        queues, workers = _queues(), _workers()
    except RedisError as exc:
        raise ApiError(503, "The job queue is unavailable, try again shortly.") from exc
    audit("rq_dashboard.view", "rq", None)
    return render_template_string(PAGE, user=g.staff_user, queues=queues, workers=workers, message=message,
                                  token=_form_token(g.staff_user))


@bp.post("/jobs/<job_id>/requeue")
def requeue_job(job_id: str) -> ResponseReturnValue:
    if not hmac.compare_digest(request.form.get("token", ""), _form_token(g.staff_user)):
        raise ApiError(403, "The form is stale or did not come from this page; reload it and try again.")
    force = request.form.get("force") == "1"
    try:
        outcome, queue = failed_jobs.requeue(context.redis(), context.db(), job_id, force=force)
    except RedisError as exc:
        raise ApiError(503, "The job queue is unavailable, try again shortly.") from exc
    if outcome is failed_jobs.Requeue.REQUEUED:
        audit("job.retry", "job", job_id, {"queue": queue, "force": force, "via": "rq_dashboard"})
    return redirect(url_for("rq_dashboard.index", done=outcome.value, job=job_id, queue=queue or ""), code=303)
