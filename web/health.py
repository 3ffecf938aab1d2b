"""`/health/live`, `/health/ready` and `/metrics`: what load balancers, orchestrators and Prometheus ask."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request
from redis.exceptions import RedisError
from sqlalchemy import text

from models import utcnow
from services import context, metrics
from services.json_input import iso
from services.problems import problem
from services.redis_conn import as_text, quick
from services.whatsapp.health import SendBlock, Snapshot, send_block, snapshot
from services.whatsapp.outbox import AUTH_ALERT_KEY
from services.worker import embedded_worker_alive, workers_present

bp = Blueprint("health", __name__)


@bp.get("/health/live")
def live() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/health/ready")
def ready() -> tuple[Response, int]:
    """200 when the database and Redis answer and Meta has not refused our token; else 503, with each check.
    `whatsapp_account` (restrictions, blocked templates) and `workers` (who runs the jobs) inform operators
    without changing the answer: a web server without workers still takes and stores every message."""
    checks: dict[str, dict[str, str]] = {}
    try:
        with context.db().reader() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = {"status": "ok"}
    except Exception as exc:
        checks["database"] = {"status": "error", "error": type(exc).__name__}
    try:
        redis = quick(context.redis())  # a frozen Redis: a 503 in a fraction of a second, not after timeouts
        redis.ping()
        checks["redis"] = {"status": "ok"}
        auth_error = redis.get(AUTH_ALERT_KEY)
        checks["whatsapp_token"] = (
            {"status": "error", "error": as_text(auth_error) or ""} if auth_error else {"status": "ok"}
        )
    except RedisError as exc:
        checks["redis"] = {"status": "error", "error": type(exc).__name__}
    ok = all(c["status"] == "ok" for c in checks.values())
    workers = _workers() if checks["redis"]["status"] == "ok" else {"status": "unknown", "error": "redis"}
    body = {"status": "ok" if ok else "error", "checks": checks, "whatsapp_account": _whatsapp_account(),
            "workers": workers}
    return jsonify(body), 200 if ok else 503


def _workers() -> dict[str, Any]:
    """The embedded worker thread (no REDIS_URL), else the `flask worker` processes heard from in the last
    15 s (each says so every 5 s; a killed one stops at once)."""
    if context.settings().embedded_redis:
        alive = embedded_worker_alive()
        return {"status": "ok" if alive else "error", "mode": "embedded", "count": int(alive)}
    try:
        count = workers_present(quick(context.redis()), time.time())
    except RedisError as exc:
        return {"status": "unknown", "mode": "processes", "error": type(exc).__name__}
    return {"status": "ok" if count else "error", "mode": "processes", "count": count}


def _whatsapp_account() -> dict[str, Any]:
    """Meta's word on the account, templates and numbers: for operators, never a reason to leave the load
    balancer (a restricted account still answers farmers inside the 24-hour window)."""
    try:
        health = whatsapp_snapshot()
    except Exception as exc:
        return {"status": "unknown", "error": type(exc).__name__}
    return account_detail(health)


def whatsapp_snapshot() -> Snapshot:
    """What Meta reported (the database) with the send block of the error policy (Redis; none shown when
    Redis does not answer: the `redis` check says so, and nothing is sent then anyway)."""
    now = utcnow()
    block: SendBlock | None = None
    with contextlib.suppress(RedisError):
        block = send_block(quick(context.redis()), now)
    with context.db().reader() as session:
        return snapshot(session, now, block)


def account_detail(health: Snapshot) -> dict[str, Any]:
    """The `/health/ready` view of a snapshot: `error` while the account is restricted, its sends are
    blocked or a template is blocked."""
    block = health.send_block
    return {
        "status": "ok" if health.ok else "error",
        "account": health.account_status.value,
        **({"account_event": health.account_detail.get("event"),
            "restrictions": health.account_detail.get("restrictions") or [],
            "since": iso(health.account_updated_at)}
           if health.account_detail else {}),
        **({"violation": health.violation} if health.violation else {}),
        "send_block": {"reason": block.reason, "since": iso(block.since),
                       "until": iso(block.until)} if block else None,
        "blocked_templates": [{"template": t.name, "language": t.language, "status": t.status, "reason": t.reason}
                              for t in health.blocked_templates],
        "numbers": health.numbers,
        "capabilities": health.capabilities,
    }


def _template_statuses() -> tuple[list[tuple[str, str, str]], bool, bool]:
    health = whatsapp_snapshot()
    return [(t.name, t.language, t.status) for t in health.templates], health.restricted, health.send_block is not None


@bp.get("/metrics")
def metrics_view() -> Response:
    """Prometheus exposition; with METRICS_TOKEN set, only for `Authorization: Bearer <token>` (any of
    its comma-separated tokens: new,old while Prometheus is switched over)."""
    tokens = [t.strip() for t in context.settings().METRICS_TOKEN.split(",") if t.strip()]
    given = request.headers.get("Authorization")
    if tokens and not any([metrics.token_ok(given, token) for token in tokens]):  # every one compared
        return problem(401, "A valid bearer token is required.",
                       headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body, content_type = metrics.render(context.redis(), request.headers.get("Accept"),
                                        metrics.WhatsAppHealthCollector(_template_statuses))
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})
