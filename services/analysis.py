"""The analysis pipeline: photo -> checked, optimised, stored -> N8N -> normalised result -> the farmer.

`run_analysis` (an RQ job, safe to run twice) moves an analysis `queued -> processing` under the
worker's lease (renewed while it runs: if the worker dies, the sweeper queues the analysis again once
the lease has expired, and the farmer was charged once, at submission), prepares
the image once (download within minutes of receipt, validate, optimise, store original and
optimised under unguessable keys), and hands N8N a signed, expiring link. In sync mode the result
comes back in the response; in callback mode it arrives at `POST /webhooks/n8n/<id>` and
`finish_analysis` completes it. Transient N8N errors are retried by RQ (30, 60, 120 s); while the
shared circuit breaker is open the job re-schedules itself for after the cool-down instead of
burning a retry. Anything that ends an analysis as `failed` refunds the charge through the ledger,
tells the farmer kindly, and leaves the job in RQ's failed registry for support.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from flask import current_app
from redis import Redis
from rq import Callback, Retry, get_current_job
from rq.job import Job
from sqlalchemy import func, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from bot import replies
from bot.place import tidy_place
from models import Analysis, AnalysisStatus, Farmer, utcnow
from services import context, leases, quota, runtime_settings
from services.analysis_result import AnalysisResult, annotated, normalise, queryable_columns
from services.circuit import CircuitBreaker
from services.images import ImageRejected
from services.jobs import app_job
from services.n8n import MAX_IMAGES, CircuitOpen, N8NClient, N8NPermanentError, N8NTransientError, build_request
from services.photos import fetch_and_store
from services.queue import ANALYSIS, DEFAULT, get_queue, is_final_attempt, try_enqueue_unique
from services.sponsor_stats import invalidate_stats
from services.storage import sign_media
from services.whatsapp.errors import GraphAPIError, MediaError
from services.whatsapp.messages import Outbound, build_template, template_param_text, to_outbound
from services.whatsapp.outbox import queue_message, send_queued

log = logging.getLogger(__name__)

RUN_ANALYSIS = "services.analysis.run_analysis"
FINISH_ANALYSIS = "services.analysis.finish_analysis"
CHECK_DEADLINE = "services.analysis.check_deadline"
WINDOW = timedelta(hours=24)
DONE = (AnalysisStatus.COMPLETED.value, AnalysisStatus.FAILED.value)
CIRCUIT_WAIT = "waiting for the N8N circuit"  # the lease's holder while the analysis waits for N8N
# A database connection lost while the result is stored: stored again on a new one after these pauses
# (seconds), in the same job, so N8N is not asked again for an answer it already gave.
STORE_PAUSES = (0.5, 2.0)


class AnalysisFailed(Exception):
    """Raised after an analysis was marked failed, so the job lands in RQ's failed registry."""


class Failure(enum.StrEnum):
    """Whose problem ended an analysis: it decides what the farmer is told."""

    OURS = "ours"  # the service, N8N or the model: "a problem on our side, send it again in a while"
    PHOTO_FILE = "photo_file"  # the photo could not be downloaded or read: "send it again as a clear photo"
    PHOTO_CONTENT = "photo_content"  # the analyser could not judge what it shows: what to photograph instead
    WAITED_TOO_LONG = "waited_too_long"  # no result from N8N (unreachable, or silent) within ANALYSIS_MAX_WAIT_SECONDS


# N8N's `error_type` of a failed result (OPERATIONS.md, section 5) that means the photo itself cannot be
# assessed: sending the same photo again would fail again. Any other code is ours.
FAILURE_BY_ERROR_TYPE: dict[str, Failure] = {
    "no_plant_detected": Failure.PHOTO_CONTENT,
    "image_unusable": Failure.PHOTO_CONTENT,
    "not_analysable": Failure.PHOTO_CONTENT,
}


def failure_of(result: AnalysisResult) -> Failure:
    """What a failed result means for the farmer, from N8N's error code."""
    return FAILURE_BY_ERROR_TYPE.get(result.error_type or "", Failure.OURS)


# --- queueing ---------------------------------------------------------------------------------------


def retry_policy() -> Retry:
    base = context.settings().ANALYSIS_RETRY_SECONDS
    return Retry(max=3, interval=[base, base * 2, base * 4])


def enqueue_analysis(redis: Redis, analysis_id: int) -> bool:
    """Queue the pipeline for an analysis, and the check that tells the farmer if it runs late."""
    queued = try_enqueue_unique(redis, ANALYSIS, RUN_ANALYSIS, f"analysis-{analysis_id}", analysis_id,
                                retry=retry_policy(), on_failure=ON_FAILURE)
    deadline = timedelta(minutes=context.settings().ANALYSIS_DEADLINE_MINUTES)
    try:
        if not Job.exists(f"deadline-{analysis_id}", connection=redis):  # queued again: the first deadline holds
            get_queue(DEFAULT, redis).enqueue_in(deadline, CHECK_DEADLINE, analysis_id,
                                                 job_id=f"deadline-{analysis_id}")
    except Exception as exc:
        log.warning("could not schedule the delay notice", extra={"analysis_id": analysis_id, "reason": repr(exc)})
    return queued


@app_job
def on_run_failed(job: Any, connection: Any, exc_type: type, exc_value: BaseException, tb: Any) -> None:
    """RQ calls this after every failed attempt, also for a job that timed out or whose worker died.
    When no retry is left and the pipeline did not already end the analysis, end it: failed,
    refunded, farmer told. (An `AnalysisFailed` was handled before it was raised.)"""
    if job.retries_left or isinstance(exc_value, AnalysisFailed):
        return
    _fail(int(job.args[0]), f"job failed: {exc_type.__name__}: {exc_value}"[:300])


ON_FAILURE = Callback("services.analysis.on_run_failed")


def _no_more_retries() -> None:
    """A permanent failure: RQ must not retry it, but should keep it in the failed registry."""
    job = get_current_job()
    if job is not None:
        job.retries_left = 0


# --- the job ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    id: int
    farmer_id: int
    media_ids: tuple[str, ...]  # every photo, first = media_id
    image_keys: tuple[str, ...]  # the optimised copies already stored (a retry does not download again)
    crop: str | None
    notes: str | None
    location_text: str | None
    latitude: float | None
    longitude: float | None
    waiting_since: datetime  # when the analysis was queued: the bound on waiting for N8N counts from here


def photo_ids(media_id: str | None, media_ids: list[Any] | None) -> tuple[str, ...]:
    """Every photo of an analysis, first = media_id; an older row without `media_ids` has its one photo."""
    ids = [str(m) for m in (media_ids or []) if m]
    if media_id and (not ids or ids[0] != media_id):
        ids = [media_id, *(m for m in ids if m != media_id)]
    return tuple(dict.fromkeys(ids))[:MAX_IMAGES]


def photos_used(a: Analysis) -> int:
    """How many photos an analysis rests on: those stored for it (the ones it was sent with, until then)."""
    return len(stored_keys(a.image_keys, a.image_key)) or len(photo_ids(a.media_id, a.media_ids)) or 1


def stored_keys(keys: list[Any] | None, first: str | None) -> tuple[str, ...]:
    """The stored keys of every photo (`image_keys`), or the one key of an older row."""
    found = tuple(str(k) for k in (keys or []) if k)
    return found or ((first,) if first else ())


@app_job
def run_analysis(analysis_id: int) -> str:
    db = context.db()
    owner = leases.owner_name()
    with db.session() as session, session.begin():
        a = session.get(Analysis, analysis_id)
        if a is None:
            log.warning("analysis job for an unknown analysis", extra={"analysis_id": analysis_id})
            return "missing"
        if a.status in DONE:
            return f"already {a.status}"
        if a.status == AnalysisStatus.PROCESSING and a.n8n_requested_at and context.settings().N8N_MODE == "callback":
            return "awaiting callback"
        if not leases.claim(session, Analysis, analysis_id, Analysis.status.not_in(DONE), owner=owner,
                            taking_over=CIRCUIT_WAIT,
                            values={"status": AnalysisStatus.PROCESSING.value, "attempts": Analysis.attempts + 1,
                                    "processing_at": func.coalesce(Analysis.processing_at, utcnow())}):
            return "running elsewhere"  # a live worker holds it; if that one dies, the sweeper steps in
        snap = _Snapshot(a.id, a.farmer_id, photo_ids(a.media_id, a.media_ids), stored_keys(a.image_keys, a.image_key),
                         a.crop, a.notes, a.location_text, a.latitude, a.longitude,
                         a.queued_at or a.received_at or a.created_at)
    with leases.kept(db, Analysis, analysis_id, owner):
        return _run(analysis_id, snap)


def _run(analysis_id: int, snap: _Snapshot) -> str:
    db = context.db()
    try:
        image_keys = snap.image_keys or _prepare_images(snap)
        raw = _call_n8n(snap, image_keys)
    except ImageRejected as exc:
        return _fail_now(analysis_id, f"image rejected: {exc.reason}", Failure.PHOTO_FILE)
    except MediaError as exc:
        return _fail_now(analysis_id, f"media download failed: {exc}", Failure.PHOTO_FILE)
    except GraphAPIError as exc:
        if exc.retryable and not is_final_attempt():
            raise
        return _fail_now(analysis_id, f"media download failed: Graph API {exc.code} {exc.title}", Failure.PHOTO_FILE)
    except CircuitOpen as exc:
        return _wait_for_circuit(analysis_id, exc.retry_after, snap.waiting_since)
    except N8NTransientError as exc:
        if is_final_attempt():
            _fail(analysis_id, f"N8N unavailable after retries: {exc}")
        raise
    except N8NPermanentError as exc:
        return _fail_now(analysis_id, f"N8N refused the request: {exc}")
    if raw is None:  # callback mode: N8N accepted it and will post the result
        with db.session() as session, session.begin():
            session.execute(update(Analysis).where(Analysis.id == analysis_id)
                            .values(n8n_requested_at=utcnow()))
        return "awaiting callback"
    return complete(analysis_id, raw)


def _prepare_images(snap: _Snapshot) -> tuple[str, ...]:
    """Every photo of the analysis downloaded, checked, optimised and stored (original and optimised copy),
    in the farmer's order. A photo that cannot be read is left out when another one can; when none can,
    the first one's problem ends the analysis. A transient Graph API error retries the whole job."""
    if not snap.media_ids:
        raise MediaError("the analysis has no media id")
    stored: list[tuple[str, str]] = []  # (optimised, original) keys
    problem: ImageRejected | MediaError | GraphAPIError | None = None
    for index, media_id in enumerate(snap.media_ids):
        try:
            stored.append(_prepare_image(snap.id, media_id))
        except (ImageRejected, MediaError, GraphAPIError) as exc:
            if isinstance(exc, GraphAPIError) and exc.retryable and not is_final_attempt():
                raise
            problem = problem or exc
            log.warning("photo left out of the analysis",
                        extra={"analysis_id": snap.id, "photo": index + 1, "reason": str(exc)[:200]})
    if not stored:
        raise problem or MediaError("no photo could be read")
    image_keys = [k for k, _ in stored]
    original_keys = [k for _, k in stored]
    with context.db().session() as session, session.begin():
        session.execute(update(Analysis).where(Analysis.id == snap.id).values(
            image_key=image_keys[0], original_key=original_keys[0], image_keys=image_keys,
            original_keys=original_keys))
    return tuple(image_keys)


def _prepare_image(analysis_id: int, media_id: str) -> tuple[str, str]:
    """One photo, both copies kept (`services.photos`). Returns the (optimised, original) storage keys."""
    stored = fetch_and_store(media_id, current_app.extensions["storage"], "analysis", keep_original=True)
    log.info("image prepared", extra={"analysis_id": analysis_id, "bytes": stored.bytes, "quality": stored.quality,
                                      "original_bytes": stored.original_bytes})
    assert stored.original_key is not None  # keep_original
    return stored.image_key, stored.original_key


def farmer_ref(farmer_id: int) -> str:
    """A stable pseudonym for N8N: never the phone number."""
    secret = context.settings().jwt_keys[0].encode()
    return "F" + hmac.new(secret, f"farmer:{farmer_id}".encode(), hashlib.sha256).hexdigest()[:16]


def n8n_client() -> N8NClient:
    ext = current_app.extensions
    if "n8n" not in ext:
        s = context.settings()
        # A half-open probe may take as long as a whole N8N call before anyone else may probe.
        breaker = CircuitBreaker(context.redis(), "n8n", failure_threshold=s.CIRCUIT_FAILURES,
                                 cooldown_seconds=s.CIRCUIT_COOLDOWN_SECONDS,
                                 probe_seconds=s.N8N_TIMEOUT_SECONDS + 10)
        ext["n8n"] = N8NClient(s.n8n_url, s.n8n_secrets, mode=s.N8N_MODE, timeout=s.N8N_TIMEOUT_SECONDS,
                               breaker=breaker, proxy=s.OUTBOUND_PROXY)
    return cast(N8NClient, ext["n8n"])


def _call_n8n(snap: _Snapshot, image_keys: tuple[str, ...]) -> dict[str, Any] | None:
    s = context.settings()
    base = s.PUBLIC_BASE_URL.rstrip("/")
    secret = current_app.extensions["media_secret"]
    image_urls = [sign_media(key, secret, base) for key in image_keys]  # fresh links on every attempt
    body = build_request(
        analysis_id=snap.id,
        image_url=image_urls[0],
        image_urls=image_urls,
        farmer_ref=farmer_ref(snap.farmer_id),
        crop_type=snap.crop,
        location=tidy_place(snap.location_text) if snap.location_text else None,
        lat=snap.latitude,
        lng=snap.longitude,
        notes=snap.notes,
        callback_url=f"{base}/webhooks/n8n/{snap.id}" if s.N8N_MODE == "callback" else None,
    )
    return n8n_client().submit(body, timeout=runtime_settings.current().n8n_timeout_seconds)


def wait_decision(waiting_since: datetime, now: datetime, retry_after: float | None,
                  max_wait_seconds: int) -> timedelta | None:
    """How long to wait for the open circuit before trying again, or None when the analysis has waited
    long enough (it then fails). The last wait ends at the bound, so the farmer is never kept past it."""
    left = waiting_since + timedelta(seconds=max_wait_seconds) - now
    if left <= timedelta(0):
        return None
    return min(timedelta(seconds=max(1.0, retry_after or 0.0)), left)


def _wait_for_circuit(analysis_id: int, retry_after: float | None, waiting_since: datetime) -> str:
    """N8N is known to be down: wait for the cool-down without using up one of the retries, but not past
    `ANALYSIS_MAX_WAIT_SECONDS` from the submission (then it fails, refunded, the farmer told to send the
    photo again). The lease is handed to the waiting job (it expires a lease's length after the wait is
    over), so the sweeper leaves the analysis alone meanwhile."""
    delay = wait_decision(waiting_since, utcnow(), retry_after, context.settings().ANALYSIS_MAX_WAIT_SECONDS)
    if delay is None:
        return _fail_now(analysis_id, "N8N unavailable (circuit open) for longer than the maximum wait",
                         Failure.WAITED_TOO_LONG)
    get_queue(ANALYSIS, context.redis()).enqueue_in(
        delay, RUN_ANALYSIS, analysis_id, retry=retry_policy(), on_failure=ON_FAILURE,
        job_id=f"analysis-{analysis_id}-wait-{int(utcnow().timestamp())}")
    with context.db().session() as session, session.begin():
        session.execute(update(Analysis).where(Analysis.id == analysis_id).values(
            lease_owner=CIRCUIT_WAIT,
            lease_until=utcnow() + delay + timedelta(seconds=leases.LEASE_SECONDS)))
    log.warning("N8N circuit open: analysis waits",
                extra={"analysis_id": analysis_id, "seconds": round(delay.total_seconds())})
    return "waiting for the circuit"


# --- completing ---------------------------------------------------------------------------------------


@app_job
def finish_analysis(analysis_id: int) -> str:
    """Callback mode: the result was stored by `POST /webhooks/n8n/<id>`; complete the analysis with it."""
    with context.db().reader() as session:
        raw = session.scalar(select(Analysis.result).where(Analysis.id == analysis_id))
    if raw is None:
        return "no result"
    return complete(analysis_id, raw)


def complete(analysis_id: int, raw: Any) -> str:
    """Store the result (or the failure), refund a failure, answer the farmer. A finished analysis is left alone.

    N8N has answered by now, so nothing here asks it again for a fault of ours: a lost database connection
    is tried again on a new one (`STORE_PAUSES`); when the result cannot be stored or its reply cannot be
    written for any other reason (a bug, a value the database refuses), the analysis ends at once, failed,
    refunded and the farmer told, with no retry (if even that fails, the sweeper ends it once it is overdue:
    `end_if_overdue`). Only a database away for longer than the pauses leaves it to RQ's retry, which asks
    N8N again. A summary that cannot be built is replaced by the result template (`_queue_result`)."""
    result = normalise(raw)
    for pause in (*STORE_PAUSES, None):
        try:
            stored = store_result(analysis_id, raw, result)
            break
        except (OperationalError, InterfaceError) as exc:  # the connection, not the statement
            if pause is None:
                raise
            log.warning("could not store the result; trying again on a new connection",
                        extra={"analysis_id": analysis_id, "reason": repr(exc)[:300]})
            time.sleep(pause)
        except Exception as exc:
            log.exception("the result could not be stored or answered", extra={"analysis_id": analysis_id})
            _no_more_retries()
            return _fail_now(analysis_id, f"the result could not be stored or answered: {type(exc).__name__}: {exc}")
    if stored is None:
        return "ignored"
    address, sponsor_id = stored
    send_queued(address)
    invalidate_stats(context.redis(), sponsor_id)
    if not result.ok:
        _no_more_retries()
        raise AnalysisFailed(result.failure_reason)
    log.info("analysis completed", extra={"analysis_id": analysis_id, "health_score": result.health_score})
    return "completed"


def store_result(analysis_id: int, raw: Any, result: AnalysisResult) -> tuple[str, int | None] | None:
    """In one transaction: the raw result and its columns, the status, and the reply (or the failure, refunded).
    The farmer's address and the analysis's sponsor, or None when the analysis had already ended."""
    with context.db().session() as session, session.begin():
        a = session.scalars(select(Analysis).where(Analysis.id == analysis_id).with_for_update()).one_or_none()
        if a is None or a.status in DONE:
            return None
        farmer = session.get_one(Farmer, a.farmer_id)
        a.result = raw if isinstance(raw, dict) else {"raw": raw}
        now = utcnow()
        if result.ok:
            for column, value in queryable_columns(result).items():
                setattr(a, column, value)
            a.status = AnalysisStatus.COMPLETED.value
            a.completed_at = now
            _queue_result(session, farmer, a, result, now)
        else:
            _mark_failed(session, a, farmer, result.failure_reason or "invalid result", failure_of(result))
        return farmer.address, a.sponsor_id


def result_view(a: Analysis, result: AnalysisResult, locale: str, photos: int = 1) -> replies.ResultView:
    """What the chat shows of a result; a finding's severity named by its level in the farmer's language
    (an unknown one left out). `photos`: how many the result rests on (`photos_used`)."""
    def rec(r: Any) -> str:
        return annotated(r.action, r.timeline)

    findings = tuple(annotated(f.name, replies.severity_name(locale, f.severity_level.value))
                     for f in (*result.diseases, *result.pests))
    nutrients = tuple(x for x in (result.nutrients.primary_deficiency, *result.nutrients.secondary_deficiencies) if x)
    return replies.ResultView(
        analysis_id=a.id,
        crop=a.crop or result.crop_type or "",
        health_score=result.health_score,
        primary_concern=result.primary_concern,
        urgent=result.urgent,
        urgent_actions=tuple(rec(r) for r in result.recommendations.immediate),
        summary=result.farmer_summary,
        local_estimate=result.is_local_estimate,
        photos=photos,
        findings=findings,
        nutrients=nutrients,
        short_term=tuple(rec(r) for r in result.recommendations.short_term),
        preventive=tuple(rec(r) for r in result.recommendations.preventive),
        monitoring=tuple(annotated(f"{m.parameter}: {m.frequency}" if m.frequency else m.parameter, m.threshold)
                         for m in result.recommendations.monitoring),
    )


def _in_window(farmer: Farmer, now: datetime) -> bool:
    return farmer.last_inbound_at is not None and now - farmer.last_inbound_at < WINDOW


# Bounds on the result templates' parameters (N8N's and the farmer's words), so the filled-in body stays
# within Meta's 1,024 characters.
NAME_PARAM_MAX = 60
CROP_PARAM_MAX = 60
CONCERN_PARAM_MAX = 300
ACTION_PARAM_MAX = 400


def result_template(farmer: Farmer, a: Analysis, result: AnalysisResult) -> Outbound:
    """`urgent_health_alert_tr` or `analysis_complete_tr`, every parameter from N8N's or the farmer's words
    made valid (`template_param_text`): a line break or a long text in the result never loses the diagnosis."""
    param = template_param_text
    crop = param(replies.crop_name("tr", a.crop or ""), CROP_PARAM_MAX)
    concern = param(result.primary_concern, CONCERN_PARAM_MAX)
    if result.urgent and result.recommendations.immediate:
        action = param(result.recommendations.immediate[0].action, ACTION_PARAM_MAX)
        return build_template("urgent_health_alert_tr", farmer.address, [crop, concern, action])
    score = f"{result.health_score}/10" if result.health_score is not None else "-"
    name = param(farmer.profile_name, NAME_PARAM_MAX, empty="Çiftçimiz")
    return build_template("analysis_complete_tr", farmer.address, [name, crop, score, concern])


def _queue_result(session: Any, farmer: Farmer, a: Analysis, result: AnalysisResult, now: datetime) -> Any:
    """Free text inside the 24-hour window (with the template as fallback), the template outside it."""
    template = result_template(farmer, a, result)
    if not _in_window(farmer, now):
        return queue_message(session, farmer.address, template, now, farmer_id=farmer.id, analysis_id=a.id)
    try:  # built from N8N's words: if the summary cannot be built, the template alone still brings the result
        out = []
        sent, used = len(photo_ids(a.media_id, a.media_ids)), len(stored_keys(a.image_keys, a.image_key))
        if 0 < used < sent:  # photos of the album were left out unread: say the result rests on the others
            out.append(to_outbound(farmer.address, replies.photos_left_out(farmer.locale, sent - used, used)))
        summary = replies.analysis_result(farmer.locale, result_view(a, result, farmer.locale, photos_used(a)))
        out.append(to_outbound(farmer.address, summary))
    except Exception:
        log.exception("the result's summary could not be built: the template is sent instead",
                      extra={"analysis_id": a.id})
        return queue_message(session, farmer.address, template, now, farmer_id=farmer.id, analysis_id=a.id)
    for note in out[:-1]:
        queue_message(session, farmer.address, note, now, farmer_id=farmer.id, analysis_id=a.id)
    return queue_message(session, farmer.address, out[-1], now, farmer_id=farmer.id, fallback=template,
                         analysis_id=a.id)


# --- failing ------------------------------------------------------------------------------------------


# Each says "photo" or "photos" by how many the analysis had (the second argument).
FAILURE_REPLIES: dict[Failure, Callable[[str, int], replies.Reply]] = {
    Failure.OURS: lambda locale, photos: replies.analysis_failed(locale, False, photos),
    Failure.PHOTO_FILE: lambda locale, photos: replies.analysis_failed(locale, True, photos),
    Failure.PHOTO_CONTENT: replies.analysis_photo_unusable,
    Failure.WAITED_TOO_LONG: replies.analysis_gave_up_waiting,
}


def _mark_failed(session: Any, a: Analysis, farmer: Farmer, reason: str, failure: Failure) -> None:
    now = utcnow()
    a.status = AnalysisStatus.FAILED.value
    a.failed_at = now
    a.failure_reason = reason[:300]
    if a.charge_ledger_id is not None:
        quota.refund(session, a.charge_ledger_id, now)
    reply = FAILURE_REPLIES[failure](farmer.locale, len(photo_ids(a.media_id, a.media_ids)) or 1)
    queue_message(session, farmer.address, to_outbound(farmer.address, reply), now, farmer_id=farmer.id,
                  analysis_id=a.id)
    log.warning("analysis failed", extra={"analysis_id": a.id, "reason": reason[:300]})


def _fail(analysis_id: int, reason: str, failure: Failure = Failure.OURS) -> bool:
    """Mark failed (refund, tell the farmer) unless already finished. True if it was this call."""
    with context.db().session() as session, session.begin():
        a = session.scalars(select(Analysis).where(Analysis.id == analysis_id).with_for_update()).one_or_none()
        if a is None or a.status in DONE:
            return False
        farmer = session.get_one(Farmer, a.farmer_id)
        _mark_failed(session, a, farmer, reason, failure)
    send_queued(farmer.address)
    return True


def _fail_now(analysis_id: int, reason: str, failure: Failure = Failure.OURS) -> str:
    _fail(analysis_id, reason, failure)
    _no_more_retries()
    raise AnalysisFailed(reason)


# --- the end of the wait -----------------------------------------------------------------------------

OVERDUE_REASON = "no result from N8N within the maximum wait"


def overdue_since(now: datetime) -> datetime:
    """An analysis queued before this and still `processing`, held by no worker, will get no result: every
    wait on N8N (its retries, an open circuit, a callback) ends within `ANALYSIS_MAX_WAIT_SECONDS`."""
    return now - timedelta(seconds=context.settings().ANALYSIS_MAX_WAIT_SECONDS)


def end_if_overdue(analysis_id: int, now: datetime) -> bool:
    """End an overdue analysis (`overdue_since`): failed, refunded, the farmer told kindly that nothing was
    charged and they may send the photo again (as after a long N8N outage). Checked again under the row's lock,
    so a worker that took it meanwhile, or a result that completed it, wins; a second call does nothing.
    A callback arriving later is ignored. True if this call ended it."""
    with context.db().session() as session, session.begin():
        a = session.scalars(select(Analysis).where(Analysis.id == analysis_id).with_for_update()).one_or_none()
        if a is None or a.status != AnalysisStatus.PROCESSING.value:
            return False
        held = a.lease_owner is not None and a.lease_until is not None and a.lease_until >= now
        waiting_since = a.queued_at or a.received_at or a.created_at
        if held or waiting_since > overdue_since(now):
            return False
        farmer = session.get_one(Farmer, a.farmer_id)
        _mark_failed(session, a, farmer, OVERDUE_REASON, Failure.WAITED_TOO_LONG)
    send_queued(farmer.address)
    return True


# --- the late result notice ---------------------------------------------------------------------------


@app_job
def check_deadline(analysis_id: int) -> str:
    """Still no result after the deadline: say so once, so the farmer is never left wondering."""
    with context.db().session() as session, session.begin():
        a = session.scalars(select(Analysis).where(Analysis.id == analysis_id).with_for_update()).one_or_none()
        if a is None or a.status in DONE or a.delay_notice_at is not None:
            return "nothing to say"
        farmer = session.get_one(Farmer, a.farmer_id)
        now = utcnow()
        a.delay_notice_at = now
        reply = replies.analysis_delayed(farmer.locale)
        queue_message(session, farmer.address, to_outbound(farmer.address, reply), now, farmer_id=farmer.id,
                      analysis_id=a.id)
    send_queued(farmer.address)
    return "notice sent"
