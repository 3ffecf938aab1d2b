"""`/jobs/failed`: RQ's failed jobs of every queue, and retrying one (roles support, admin).

The registries and the refund rule are `services.failed_jobs`' (shared with `/admin/rq` and
`flask requeue-failed`): a failed analysis was refunded and the farmer told, so retrying its job would
analyse for free; only an admin may force it.
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify, request
from redis.exceptions import RedisError
from rq.job import Job

from admin import bp
from admin.auth import require_roles
from admin.errors import ApiError
from admin.openapi import (
    AUTHED_ERRORS,
    NULLABLE_STR,
    PAGE_PARAMS,
    TIMESTAMP,
    declare,
    json_response,
    page_of,
    path_param,
    problem_response,
    query_param,
    ref,
)
from admin.pagination import QueryArgs, page_args
from services import context, failed_jobs
from services.audit import audit
from services.json_input import iso
from services.queue import QUEUE_NAMES

UNAVAILABLE = "The job queue is unavailable, try again shortly."
NO_SUCH_JOB = "No failed job with this id."


def _job_json(job: failed_jobs.FailedJob) -> dict[str, Any]:
    return {"id": job.id, "queue": job.queue, "function": job.function, "args": list(job.args),
            "exc_summary": job.exc_summary, "ended_at": iso(job.ended_at), "enqueued_at": iso(job.enqueued_at)}


@bp.get("/jobs/failed")
@require_roles("support", "admin")
def list_failed_jobs() -> Response:
    """The failed jobs of every queue (queue order, then oldest failure first), paginated."""
    args = QueryArgs(request.args)
    page, per_page = page_args(args)
    args.raise_if_errors()
    start, end = (page - 1) * per_page, page * per_page
    items: list[dict[str, Any]] = []
    total = 0
    redis = context.redis()
    try:
        for registry in failed_jobs.registries(redis):
            count = registry.count
            lo, hi = max(start - total, 0), min(end - total, count)
            if lo < hi:
                ids = registry.get_job_ids(lo, hi - 1)
                for job in Job.fetch_many(ids, connection=redis):
                    if job is not None:
                        items.append(_job_json(failed_jobs.describe(job, registry.name)))
            total += count
    except RedisError as exc:
        raise ApiError(503, UNAVAILABLE) from exc
    return jsonify({"items": items, "page": page, "per_page": per_page, "total": total})


@bp.post("/jobs/failed/<job_id>/retry")
@require_roles("support", "admin")
def retry_failed_job(job_id: str) -> Response:
    """Requeue a failed job. A failed analysis was refunded and the farmer told: retrying it would analyse
    for free, so it is refused (409) unless an admin passes `force=true`."""
    args = QueryArgs(request.args)
    force = args.choice("force", ["true", "false"]) == "true"
    args.raise_if_errors()
    if not failed_jobs.JOB_ID_RE.fullmatch(job_id):
        raise ApiError(404, NO_SUCH_JOB)
    if force and g.staff_user.role != "admin":
        raise ApiError(403, "Only an admin may force a retry.")
    try:
        outcome, queue = failed_jobs.requeue(context.redis(), context.db(), job_id, force=force)
    except RedisError as exc:
        raise ApiError(503, UNAVAILABLE) from exc
    if outcome is failed_jobs.Requeue.NOT_FOUND:
        raise ApiError(404, NO_SUCH_JOB)
    if outcome is failed_jobs.Requeue.REFUNDED:
        raise ApiError(409, "This analysis ended as failed: its charge was refunded and the farmer was told. "
                            "Ask the farmer to send the photo again instead of retrying the job.")
    audit("job.retry", "job", job_id, {"queue": queue, "force": force})
    return jsonify({"id": job_id, "queue": queue, "status": "queued"})


SCHEMAS: dict[str, Any] = {
    "FailedJob": {
        "type": "object",
        "required": ["id", "queue"],
        "properties": {"id": {"type": "string"}, "queue": {"enum": list(QUEUE_NAMES)}, "function": NULLABLE_STR,
                       "args": {"type": "array", "items": {"type": "string"}},
                       "exc_summary": {**NULLABLE_STR, "description": "The last line of the exception."},
                       "ended_at": TIMESTAMP, "enqueued_at": TIMESTAMP},
    },
    "FailedJobPage": page_of("FailedJob"),
    "RequeuedJob": {"type": "object", "required": ["id", "queue", "status"],
                    "properties": {"id": {"type": "string"}, "queue": {"type": "string"},
                                   "status": {"const": "queued"}}},
}

PATHS: dict[str, Any] = {
    "/api/v1/jobs/failed": {"get": {
        "operationId": "listFailedJobs", "tags": ["support"],
        "summary": "Failed RQ jobs of every queue (roles: support, admin).",
        "parameters": [*PAGE_PARAMS],
        "responses": {"200": json_response("A page of failed jobs.", ref("FailedJobPage")), **AUTHED_ERRORS,
                      "503": problem_response("Redis unavailable.")},
    }},
    "/api/v1/jobs/failed/{job_id}/retry": {"post": {
        "operationId": "retryFailedJob", "tags": ["support"],
        "summary": "Requeue a failed job (roles: support, admin). A failed analysis's job is refused with 409 "
                   "(it was refunded: ask the farmer to resend) unless an admin passes force=true. Audited.",
        "parameters": [path_param("job_id", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"}, "analysis-2"),
                       query_param("force", {"enum": ["true", "false"]},
                                   "Admin only: retry a failed analysis anyway.")],
        "responses": {"200": json_response("Requeued.", ref("RequeuedJob")), **AUTHED_ERRORS,
                      "404": problem_response(NO_SUCH_JOB),
                      "409": problem_response("The analysis ended as failed and was refunded."),
                      "503": problem_response("Redis unavailable.")},
    }},
}
declare(PATHS, SCHEMAS)
