"""The admin REST API under `/api/v1`: JSON in and out, problem+json errors, JWT bearer auth.

Modules: `auth` (login/refresh/logout, `require_roles`), `errors` (problem+json), `pagination`
(query arguments, page envelope), `validation` (JSON bodies), `audit` (the audit log), `support`
(message log and transcripts), `openapi` (the OpenAPI 3.1 document of every route here).
"""

from __future__ import annotations

from flask import Blueprint, Response

from admin.errors import register_error_handlers

bp = Blueprint("admin", __name__, url_prefix="/api/v1")
register_error_handlers(bp)


@bp.after_request
def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


# The route modules register themselves on `bp`.
from admin import (  # noqa: E402
    auth,
    openapi,
    operations,
    purchase_requests,
    runtime_settings,
    sponsor_messages,
    sponsors,
    support,
)

__all__ = ["auth", "bp", "openapi", "operations", "purchase_requests", "runtime_settings", "sponsor_messages",
           "sponsors", "support"]
