"""RFC 9457 problem+json: the one shape of every error body the service answers with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Response, jsonify
from werkzeug.http import HTTP_STATUS_CODES

PROBLEM_MIMETYPE = "application/problem+json"


def problem(status: int, detail: str | None = None, *, title: str | None = None,
            errors: list[dict[str, str]] | None = None, headers: Mapping[str, str] | None = None) -> Response:
    """The problem+json response for `status` (`type` is `about:blank`: the status says it all)."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
        "detail": detail or HTTP_STATUS_CODES.get(status, "Error"),
    }
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_MIMETYPE
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
