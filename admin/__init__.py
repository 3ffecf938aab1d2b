"""The admin REST API under `/api/v1`: JSON in and out, problem+json errors, JWT bearer auth.

Shared parts (no routes of their own):
- `errors`: `ApiError` and the handlers that answer every error as problem+json (`services.problems`).
- `validation`: JSON bodies (`Body`), path ids (`row_or_404`), arguments no database can store.
- `pagination`: query arguments (`QueryArgs`, time ranges), the page envelope.
- `openapi`: the helpers every route module documents its operations with, and `/openapi.json`.

Route modules (each declares its OpenAPI paths and schemas next to its views):
- `auth`: login, refresh, logout, access tokens, `require_roles`, the per-user request limit (passwords,
  accounts and login limits are `services.staff_auth`'s).
- `support`: the message log and a farmer's transcript.
- `analyses`: every analysis, for support and admins.
- `jobs`: RQ's failed jobs, and retrying one.
- `farmers`: a farmer's subscriptions and usage ledger; granting a subscription.
- `tiers`: the subscription tiers (admin).
- `staff`: staff users (admin).
- `audit_log`: reading the audit log (admin).
- `sponsors`: sponsors, purchases, codes and statistics.
- `sponsored_analyses`: a sponsor's analyses, as the tier of each one's code may see them.
- `sponsor_messages`: a sponsor writing to the farmer of one of its analyses.
- `purchase_requests`: sponsors ask to buy, admins approve or reject.
- `runtime_settings`: the settings admins change while the service runs.

Two separate blueprints, HTML pages: `rq_dashboard` (`/admin/rq`, for operators) and `api_docs` (Swagger UI
at `/api/v1/docs`, reading `/openapi.json`).
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


# The route modules register their views on `bp` and their operations with `openapi.declare`.
from admin import (  # noqa: E402
    analyses,
    audit_log,
    auth,
    farmers,
    jobs,
    openapi,
    purchase_requests,
    runtime_settings,
    sponsor_messages,
    sponsored_analyses,
    sponsors,
    staff,
    support,
    tiers,
)

__all__ = ["analyses", "audit_log", "auth", "bp", "farmers", "jobs", "openapi", "purchase_requests",
           "runtime_settings", "sponsor_messages", "sponsored_analyses", "sponsors", "staff", "support", "tiers"]
