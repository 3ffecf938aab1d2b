"""Prometheus metrics: the series operators watch, and what `GET /metrics` serves.

Two modes, chosen from the process environment when this module is first imported (prometheus-client
decides then, so `PROMETHEUS_MULTIPROC_DIR` must be in the environment, not only in `.env`):

- Unset (embedded default, tests): plain in-process metrics, served by the process that counted them.
- Set: every process of the machine (gunicorn workers, RQ workers, senders, the scheduler) writes its
  counts to files in that directory, and `/metrics` in any web process serves their sum. Empty the
  directory before the machine's processes start, never while they run.

Our RQ workers do not fork (`services.worker`): each writes its own files, like any process, so the
files grow with the processes, not with the jobs.

Gauges of shared state (queue depths, failed-job registries, the N8N circuit) are read from Redis at
scrape time, so they are right whichever process serves `/metrics`. No label holds personal data:
queue names, outcomes, error codes and reasons only. Recording never raises: a metric must not cost a
farmer an answer.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import requests
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
N8N_CIRCUIT = "n8n"  # the breaker name services.analysis.n8n_client uses

# --- multiprocess mode: one file per process ----------------------------------------------------------

if MULTIPROC_DIR:
    os.makedirs(MULTIPROC_DIR, exist_ok=True)
    values.ValueClass = values.MultiProcessValue()

# --- the series --------------------------------------------------------------------------------------

WEBHOOK_OUTCOMES = ("accepted", "duplicate", "unhandled", "unsigned", "bad_signature", "malformed", "too_large",
                    "error")
JOB_OUTCOMES = ("succeeded", "retried", "failed")

WEBHOOKS = Counter("ziraai_webhooks_total", "WhatsApp webhook deliveries (POST), one outcome per request.",
                   ["outcome"])
JOBS = Counter("ziraai_jobs_total", "RQ job attempts by queue and outcome (retried: failed, RQ tries again).",
               ["queue", "outcome"])
JOB_DURATION = Histogram("ziraai_job_duration_seconds", "Time one RQ job attempt ran, by queue.", ["queue"],
                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
N8N_DURATION = Histogram("ziraai_n8n_request_duration_seconds", "N8N webhook calls by outcome (no call while the "
                         "circuit is open).", ["outcome"],
                         buckets=(0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180))
GRAPH_ERRORS = Counter("ziraai_graph_api_errors_total", "WhatsApp Graph API errors by Meta error code "
                       "(http_<status> without one, network without a response).", ["code"])
OUTBOUND_SENDS = Counter("ziraai_outbound_sends_total", "Outbound message send attempts by outcome: sent (Graph "
                         "accepted it), retried (failed, due again later), failed (given up).", ["outcome"])
WHATSAPP_ERRORS = Counter("ziraai_whatsapp_errors_total", "WhatsApp errors by Meta error code and where Meta "
                          "reported it: send (Graph refused a send), status (a failed status webhook), value "
                          "(errors of a webhook value).", ["code", "where"])
WHATSAPP_ERROR_WHERE = ("send", "status", "value")
QUOTA_REJECTIONS = Counter("ziraai_quota_rejections_total", "Analyses refused by the quota, counted as the farmer is "
                           "told (at the photo or at Gönder), by reason.", ["reason"])


def _quietly(record: Callable[[], None]) -> None:
    try:
        record()
    except Exception:  # a full disk in multiprocess mode, say: log it, never break the caller
        log.warning("could not record a metric", exc_info=True)


def webhook(outcome: str) -> None:
    """Count one POST /webhooks/whatsapp with one of WEBHOOK_OUTCOMES."""
    _quietly(lambda: _webhook_series(outcome).inc())


@functools.cache
def _webhook_series(outcome: str) -> Any:
    """The labelled child of WEBHOOKS, looked up once per outcome (the webhook's path counts every request)."""
    return WEBHOOKS.labels(outcome)


def job(queue: str, outcome: str, seconds: float) -> None:
    """Count one job attempt with one of JOB_OUTCOMES and its duration."""
    def record() -> None:
        JOBS.labels(queue, outcome).inc()
        JOB_DURATION.labels(queue).observe(seconds)

    _quietly(record)


def graph_api_error(code: int | None, http_status: int | None) -> None:
    """Count a Graph API error under Meta's code, else `http_<status>`, else `network`."""
    label = str(code) if code is not None else f"http_{http_status}" if http_status else "network"
    _quietly(lambda: GRAPH_ERRORS.labels(label).inc())


def outbound_send(outcome: str) -> None:
    """Count one send attempt of the outbox: `sent`, `retried` or `failed`."""
    _quietly(lambda: OUTBOUND_SENDS.labels(outcome).inc())


def whatsapp_error(code: int | str | None, where: str) -> None:
    """Count one WhatsApp error by Meta's code (`none` without one) and where it came from (WHATSAPP_ERROR_WHERE)."""
    _quietly(lambda: WHATSAPP_ERRORS.labels(str(code) if code is not None else "none", where).inc())


def quota_rejection(reason: str) -> None:
    """Count one analysis the farmer was told the quota refuses (`daily`, `monthly`, `no_subscription`)."""
    _quietly(lambda: QUOTA_REJECTIONS.labels(str(reason)).inc())


def n8n_outcome(exc: BaseException | None) -> str:
    """ok | timeout | connection_error | http_4xx | http_5xx | invalid_response (2xx, not a JSON object) | error."""
    if exc is None:
        return "ok"
    cause = exc.__cause__
    if isinstance(cause, requests.Timeout):
        return "timeout"
    if isinstance(cause, requests.ConnectionError):
        return "connection_error"
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return "invalid_response" if 200 <= status < 300 else f"http_{status // 100}xx"
    return "error"


def timed_n8n_call(func: F) -> F:
    """Decorate the N8N client's submit: observe each call's duration by outcome. A call the open
    circuit refused made no request and is not observed."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from services.n8n import CircuitOpen  # late: n8n imports this module

        started = time.perf_counter()
        try:
            result = func(*args, **kwargs)
        except CircuitOpen:
            raise
        except Exception as exc:
            _observe_n8n(n8n_outcome(exc), time.perf_counter() - started)
            raise
        _observe_n8n("ok", time.perf_counter() - started)
        return result

    return wrapper  # type: ignore[return-value]


def _observe_n8n(outcome: str, seconds: float) -> None:
    _quietly(lambda: N8N_DURATION.labels(outcome).observe(seconds))


# --- scrape time -------------------------------------------------------------------------------------


class SharedStateCollector(Collector):
    """Queue depths, failed-job registry sizes and the N8N circuit, read from Redis at each scrape.
    `ziraai_redis_up` is 0 (and the others are left out) when Redis cannot be read."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from services.circuit import CLOSED, CircuitBreaker
        from services.handoff import HANDOFF_KEY
        from services.queue import INBOUND, QUEUE_NAMES, get_queue

        up = GaugeMetricFamily("ziraai_redis_up", "1 when /metrics could read the queues from Redis.")
        depth = GaugeMetricFamily("ziraai_queue_depth", "Jobs waiting in each RQ queue (inbound: "
                                  "with the messages handed off by the webhook).", labels=["queue"])
        failed = GaugeMetricFamily("ziraai_failed_jobs", "Jobs in each queue's RQ failed registry.", labels=["queue"])
        circuit = GaugeMetricFamily("ziraai_n8n_circuit_open", "1 while the shared N8N circuit breaker is not "
                                    "closed (open, or half-open waiting for its probe).")
        try:
            for name in QUEUE_NAMES:
                queue = get_queue(name, self.redis)
                handed_off = int(self.redis.llen(HANDOFF_KEY)) if name == INBOUND else 0
                depth.add_metric([name], queue.count + handed_off)
                failed.add_metric([name], queue.failed_job_registry.get_job_count(cleanup=False))
            state = CircuitBreaker(self.redis, N8N_CIRCUIT).state()
            circuit.add_metric([], 0 if state == CLOSED else 1)
        except RedisError as exc:
            log.warning("metrics: Redis unavailable", extra={"reason": type(exc).__name__})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield from (up, depth, failed, circuit)


class WhatsAppHealthCollector(Collector):
    """Template statuses, the account's standing and the send block, read at each scrape from what `read`
    returns: `(templates, restricted, sends_blocked)` with templates as (name, language, current status).
    Nothing is yielded when it raises (the database is down: readiness says so)."""

    STATUSES = ("APPROVED", "PAUSED", "DISABLED", "REJECTED")  # always present, 0 unless current

    def __init__(self, read: Callable[[], tuple[list[tuple[str, str, str]], bool, bool]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            templates, restricted, sends_blocked = self.read()
        except Exception as exc:
            log.warning("metrics: WhatsApp health unavailable", extra={"reason": type(exc).__name__})
            return
        status = GaugeMetricFamily("ziraai_whatsapp_template_status", "1 for each template's current status at "
                                   "Meta (APPROVED until Meta reports otherwise).",
                                   labels=["template", "language", "status"])
        for name, language, current in templates:
            for value in dict.fromkeys((*self.STATUSES, current)):
                status.add_metric([name, language, value], 1 if value == current else 0)
        account = GaugeMetricFamily("ziraai_whatsapp_account_restricted", "1 while Meta restricts, disables or "
                                    "is about to disable the WhatsApp Business account, or refuses its sends "
                                    "(ziraai_whatsapp_sends_blocked).")
        account.add_metric([], 1 if restricted or sends_blocked else 0)
        blocked = GaugeMetricFamily("ziraai_whatsapp_sends_blocked", "1 while every send is held because Meta "
                                    "refused the account's sends (131042 payment, 368 integrity, 131031 locked).")
        blocked.add_metric([], 1 if sends_blocked else 0)
        yield from (status, account, blocked)


class _Forward(Collector):
    """The process's own registry as one collector of a per-scrape registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        return iter(self.registry.collect())


def render(redis: Redis, accept: str | None = None, *extra: Collector) -> tuple[bytes, str]:
    """The exposition body and its content type (Prometheus text, or OpenMetrics when asked for), with the
    `extra` collectors of state read at scrape time."""
    registry = CollectorRegistry()
    if MULTIPROC_DIR:
        MultiProcessCollector(registry, path=MULTIPROC_DIR)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(SharedStateCollector(redis))
    for collector in extra:
        registry.register(collector)
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def token_ok(authorization: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
