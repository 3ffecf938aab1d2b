"""Every error of the admin API is an RFC 9457 `application/problem+json` body.

Raise `ApiError(status, detail, errors=...)` anywhere in a view; `errors` lists field-level problems
as `{"field": ..., "message": ...}`. Unexpected exceptions become a bare 500 that names nothing of
the internals (the traceback goes to the log only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from flask import Blueprint, Response
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from services.problems import problem
from services.staff_auth import LimiterUnavailable, TooManyAttempts

log = logging.getLogger(__name__)

HANDLED_STATUSES = (400, 401, 403, 404, 405, 409, 413, 422, 429)


class ApiError(Exception):
    """A problem to answer with: status, a human-readable detail, optional field errors and headers."""

    def __init__(self, status: int, detail: str | None = None, *, title: str | None = None,
                 errors: Iterable[Mapping[str, str]] | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail or title or HTTP_STATUS_CODES.get(status, "Error"))
        self.status = status
        self.detail = detail
        self.title = title
        self.errors = [dict(e) for e in errors] if errors is not None else None
        self.headers = dict(headers or {})


def field_error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def register_error_handlers(bp: Blueprint) -> None:
    @bp.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return problem(exc.status, exc.detail, title=exc.title, errors=exc.errors, headers=exc.headers)

    @bp.errorhandler(TooManyAttempts)
    def _too_many(exc: TooManyAttempts) -> Response:
        return problem(429, exc.detail, headers={"Retry-After": str(exc.retry_after)})

    @bp.errorhandler(LimiterUnavailable)
    def _limiter_unavailable(exc: LimiterUnavailable) -> Response:
        return problem(503, "Temporarily unavailable, try again shortly.")

    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status >= 500:
            return problem(500, "The server could not complete the request.")
        headers = {}
        if status == 405 and exc.response is None:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
        retry_after = getattr(exc, "retry_after", None)
        if status == 429 and retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return problem(status, exc.description, headers=headers)

    for status in HANDLED_STATUSES:
        bp.register_error_handler(status, _http_error)

    @bp.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):  # statuses without their own handler (e.g. 406, 415)
            return _http_error(exc)
        log.exception("admin API: unhandled error")
        return problem(500, "The server could not complete the request.")
