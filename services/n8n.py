"""The N8N contract (docs/ANALYSIS.md, "The contract with N8N"): the request body, its signature, and the HTTP client.

The body is serialised once and those exact bytes are signed (`services.signing`, version 2: purpose
`request`, this analysis) and sent, so N8N verifies the MAC over the raw body it received. A sync
answer is parsed strictly (`parse_result`); if N8N signs it, the signature must be a `result` one for
this analysis. The client never retries: the RQ job retries with backoff on `N8NTransientError` (a
`CircuitOpen` among them, which makes no HTTP call at all). It never logs the secret, the signature or
the (capability-bearing) image URL.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from redis.exceptions import RedisError

from services import metrics, signing
from services.circuit import CircuitBreaker
from services.http import http_session
from services.json_input import JsonInputError, parse_json, unstorable_paths
from services.signing import Purpose

log = logging.getLogger(__name__)

MODES = ("sync", "callback")
MAX_IMAGES = 5  # photos of one analysis (an album), as the source system takes them
CONNECT_TIMEOUT = 5.0
_BODY_SNIPPET = 200
# A farmer reference that is only digits, `+`, spaces, dashes and brackets, with 7 or more digits,
# is a phone number, which must never reach N8N (docs/ANALYSIS.md: pseudonymous, never the phone).
_PHONE_LIKE = re.compile(r"^[+\d\s().-]*$")


class N8NError(Exception):
    """Base of the client's errors. `status` is the HTTP status when there was a response."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class N8NTransientError(N8NError):
    """Timeout, connection error, HTTP 5xx, 408 or 429: retry later. `retry_after` (seconds) is the
    server's Retry-After when it sent one (or the breaker's wait for `CircuitOpen`), else None."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class N8NPermanentError(N8NError):
    """Any other 4xx (and 3xx), or a sync answer that is not a JSON object: retrying will not help."""


class CircuitOpen(N8NTransientError):
    """The shared breaker denied the call; no HTTP request was made."""


def build_request(
    *,
    analysis_id: int,
    image_url: str,
    farmer_ref: str,
    crop_type: str | None,
    location: str | None,
    lat: float | None,
    lng: float | None,
    notes: str | None,
    urgency_level: str = "normal",
    callback_url: str | None = None,
    language: str = "tr",
    image_urls: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The snake_case body N8N receives. `farmer_ref` is a pseudonymous reference (ValueError if it
    looks like a phone number); `gps_coordinates` is null unless both lat and lng are given;
    `callback_url` is present only when given (callback mode). `image_urls` is every photo of the
    analysis (1-5, the first is `image_url`; omitted: just `image_url`), so a workflow that reads only
    `image_url` still sees the first photo."""
    if not image_url:
        raise ValueError("image_url must not be empty")
    urls = [image_url] if image_urls is None else list(image_urls)
    if not urls or urls[0] != image_url:
        raise ValueError("image_urls must start with image_url")
    if len(urls) > MAX_IMAGES or not all(urls):
        raise ValueError(f"image_urls holds 1-{MAX_IMAGES} non-empty links")
    if not farmer_ref:
        raise ValueError("farmer_ref must not be empty")
    if _PHONE_LIKE.match(farmer_ref) and sum(c.isdigit() for c in farmer_ref) >= 7:
        raise ValueError("farmer_ref looks like a phone number; N8N gets a pseudonymous reference only")
    gps = {"lat": float(lat), "lng": float(lng)} if lat is not None and lng is not None else None
    body: dict[str, Any] = {
        "analysis_id": analysis_id,
        "image_url": image_url,
        "farmer_id": farmer_ref,
        "crop_type": crop_type,
        "location": location,
        "gps_coordinates": gps,
        "notes": notes,
        "language": language,
        "urgency_level": urgency_level,
        "image_urls": urls,
    }
    if callback_url:
        body["callback_url"] = callback_url
    return body


def serialise(body: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (Turkish letters as themselves, not `\\u` escapes)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class InvalidResult(ValueError):
    """A result body that is not one JSON object we can store; the message says why."""


def parse_result(raw: bytes) -> dict[str, Any]:
    """The JSON object of a result (a callback or a sync answer), or InvalidResult: what the strict reader
    refuses (`NaN`, `1e400`, deep nesting, not UTF-8), NUL or lone surrogates in keys or strings, and
    anything but an object are never stored (PostgreSQL's jsonb holds none of them)."""
    try:
        value = parse_json(raw)
    except JsonInputError as exc:
        raise InvalidResult(str(exc)) from None
    if not isinstance(value, dict):
        raise InvalidResult(f"JSON that is not an object ({type(value).__name__})")
    if next(unstorable_paths(value), None) is not None:
        raise InvalidResult("a string holds NUL or a lone surrogate")
    return value


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(0.0, seconds)


def _snippet(response: requests.Response) -> str:
    text = response.content[:_BODY_SNIPPET].decode("utf-8", "replace")
    # It ends up in the analysis' failure reason: no NUL or other control character (PostgreSQL refuses NUL).
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


class N8NClient:
    def __init__(
        self,
        url: str,
        secrets: Sequence[str],
        *,
        mode: str = "sync",
        timeout: float = 120.0,
        breaker: CircuitBreaker | None = None,
        session: requests.Session | None = None,
        proxy: str = "",
    ) -> None:
        if not url:
            raise ValueError("the N8N webhook URL must not be empty")
        if isinstance(secrets, str):
            raise TypeError("secrets is a sequence (Settings.n8n_secrets), not one string")
        if not secrets or not all(secrets):
            raise ValueError("the N8N secrets must not be empty")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.url = url
        self.mode = mode
        self.timeout = timeout
        self.breaker = breaker
        self.session = session or http_session(proxy)
        self._secrets = tuple(secrets)

    def __repr__(self) -> str:
        return f"N8NClient(url={self.url!r}, mode={self.mode!r}, timeout={self.timeout!r})"

    @metrics.timed_n8n_call
    def submit(self, body: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any] | None:
        """POST the body. Sync mode: the parsed JSON object. Callback mode: None on any 2xx.
        Raises `CircuitOpen` (no HTTP call), `N8NTransientError` or `N8NPermanentError`.
        `timeout` (seconds) overrides the client's for this call (a runtime setting)."""
        raw = serialise(body)
        analysis_id = int(body["analysis_id"])
        ref = {"analysis_id": analysis_id, "n8n_mode": self.mode}
        self._check_breaker(ref)
        headers = {  # signed after the breaker's wait, just before sending
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
            signing.HEADER: signing.sign(raw, purpose=Purpose.REQUEST, analysis_id=analysis_id,
                                         secrets=self._secrets, now=time.time()),
        }
        started = time.monotonic()
        try:
            response = self.session.post(
                self.url, data=raw, headers=headers, timeout=(CONNECT_TIMEOUT, timeout or self.timeout),
                allow_redirects=False
            )
        except requests.Timeout as exc:
            self._failed(ref)
            raise N8NTransientError(f"N8N timed out ({type(exc).__name__})") from exc
        except requests.ConnectionError as exc:
            self._failed(ref)
            raise N8NTransientError(f"N8N connection failed ({type(exc).__name__})") from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as exc:
            raise N8NPermanentError(f"N8N webhook URL is invalid ({type(exc).__name__})") from exc
        except requests.RequestException as exc:
            self._failed(ref)
            raise N8NTransientError(f"N8N request failed ({type(exc).__name__})") from exc
        elapsed_ms = round((time.monotonic() - started) * 1000)
        return self._handle(response, analysis_id,
                            {**ref, "status": response.status_code, "elapsed_ms": elapsed_ms})

    def _handle(self, response: requests.Response, analysis_id: int, ref: dict[str, Any]) -> dict[str, Any] | None:
        status = response.status_code
        if status >= 500 or status in (408, 429):
            self._failed(ref)
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise N8NTransientError(
                f"N8N answered HTTP {status}: {_snippet(response)}", status=status, retry_after=retry_after
            )
        # Any other answer means N8N is up: the breaker only tracks availability.
        self._succeeded(ref)
        if not 200 <= status < 300:
            log.warning("n8n refused the request", extra=ref)
            raise N8NPermanentError(f"N8N answered HTTP {status}: {_snippet(response)}", status=status)
        if self.mode == "callback":
            log.info("n8n accepted the analysis; the result will be called back", extra=ref)
            return None
        header = response.headers.get(signing.HEADER)
        if header is not None:  # N8N signed its answer: it must be a result for this very analysis
            refusal = signing.verify(response.content, header, purpose=Purpose.RESULT, analysis_id=analysis_id,
                                     secrets=self._secrets, now=time.time())
            if refusal is not None:
                log.warning("n8n answer refused: signature", extra={**ref, "reason": refusal.value})
                raise N8NPermanentError(f"N8N answered {status} with a refused signature ({refusal})", status=status)
        try:
            result = parse_result(response.content)
        except InvalidResult as exc:
            raise N8NPermanentError(f"N8N answered {status} with an invalid result ({exc}): {_snippet(response)}",
                                    status=status) from exc
        if header is not None and signing.check_body_id(result, analysis_id) is not None:
            raise N8NPermanentError(f"N8N answered {status} with a signed result for another analysis", status=status)
        log.info("n8n returned a result", extra=ref)
        return result

    def _check_breaker(self, ref: dict[str, Any]) -> None:
        if self.breaker is None:
            return
        try:
            allowed, wait = self.breaker.acquire()
        except RedisError:
            # The breaker protects N8N; it must not become a second point of failure.
            log.warning("circuit breaker unavailable (Redis); calling N8N anyway", extra=ref, exc_info=True)
            return
        if not allowed:
            log.info("n8n circuit open; not calling", extra={**ref, "retry_after": wait})
            raise CircuitOpen(f"N8N circuit {self.breaker.name} is open; retry in {wait:.1f} s", retry_after=wait)

    def _failed(self, ref: dict[str, Any]) -> None:
        log.warning("n8n call failed (transient)", extra=ref)
        if self.breaker is not None:
            try:
                self.breaker.record_failure()
            except RedisError:
                log.warning("could not record the failure in the circuit breaker", extra=ref, exc_info=True)

    def _succeeded(self, ref: dict[str, Any]) -> None:
        if self.breaker is not None:
            try:
                self.breaker.record_success()
            except RedisError:
                log.warning("could not record the success in the circuit breaker", extra=ref, exc_info=True)
