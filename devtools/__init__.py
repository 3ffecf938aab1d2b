"""Development tools: stand-ins for outside services, so the whole flow runs on a fresh machine.

They exist for development and demos only. They are NOT part of the product and make no product
claim: the app factory registers them only when `settings.DEV_TOOLS` is on and the app is not in
production (`APP_ENV=production` refuses to start with `DEV_TOOLS` on).

- `devtools.local_analyser`: a local stand-in for the N8N plant-analysis webhook
  (`POST /dev/n8n/analyze`). It speaks the same HTTP contract as the real workflow (signature
  version 2 in `X-ZiraAI-Signature`, sync and callback modes, see `docs/ANALYSIS.md`), so the production client code
  is what runs against it. Its result has the real result's schema but is computed from the photo's
  own colours (shares of healthy green, yellowed and browned leaf area). Every result it produces is
  marked `processing_metadata.source == "local-estimate"`, and its `farmer_friendly_summary` says in
  Turkish that it is an automatic local estimate. Point `N8N_WEBHOOK_URL` at
  `<base URL>/dev/n8n/analyze` to use it (the app does so by itself when `N8N_WEBHOOK_URL` is empty).
- `devtools.graph_api`: a local stand-in for Meta's Graph API under `/dev/graph/<version>/` (send,
  mark read, two-step media download) that answers like Meta and sends signed `sent`/`delivered`/`read`
  status webhooks back; the app uses it when the environment sets no `WHATSAPP_API_BASE`.
- `devtools.chat`: `/dev/chat`, a WhatsApp-like page (and its JSON API) to chat with the bot as a
  farmer through real signed webhooks.
- `devtools.webhook_bodies`: Meta-shaped webhook bodies and their signature, shared by the simulator,
  the stand-in, `flask chat` and the tests; `devtools.store`: what the simulator and the stand-in
  remember (transcripts, delivery statuses, media), in the app's Redis, bounded.
- `devtools.terminal_chat`: `flask chat`, the same farmer in a terminal, against a running instance.
- `devtools.demo`: `flask seed-demo` (tiers, a demo sponsor with codes, an admin user);
  `devtools.run`: what `make run` does; `devtools.make_samples`: draws the sample leaf photos.

Whoever reaches `/dev/*` can sign webhooks as Meta, and a browser sends requests to 127.0.0.1 for any
page on the internet. So `/dev/*` answers only the service itself (`same_origin_only`): requests a
browser marks as coming from another site (`Origin`, `Sec-Fetch-Site`) or sent to a host name that is not
ours (DNS rebinding) are refused with 403. The simulator page calls from its own origin; the Graph API
stand-in, the local analyser's callers and `flask chat` are not browsers and send neither header.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, request

from services.problems import problem

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
SAME_SITE_FETCHES = frozenset({"same-origin", "none"})  # `none`: typed in the address bar, a bookmark
REFUSED = ("The development tools answer only this service's own pages (open /dev/chat at the service's "
           "address) and programs that are not browsers.")


def _public_base_url() -> str:
    return str(getattr(current_app.extensions["settings"], "PUBLIC_BASE_URL", "")).rstrip("/")


def _service_host(host: str) -> bool:
    """The Host header names this service: a loopback address, or PUBLIC_BASE_URL's host and port."""
    return host == urlsplit(_public_base_url()).netloc or urlsplit(f"//{host}").hostname in LOOPBACK_HOSTS


def same_origin_only() -> Response | None:
    """`before_request` of every development blueprint: a 403 problem for anything a browser sent from
    another site."""
    origin = request.headers.get("Origin")
    fetch_site = request.headers.get("Sec-Fetch-Site")
    # Opening the page from a link elsewhere only shows it; every call it makes is checked.
    navigation = request.method in ("GET", "HEAD") and request.headers.get("Sec-Fetch-Mode") == "navigate"
    own_origins = {f"{request.scheme}://{request.host}", _public_base_url()} - {""}
    if (not _service_host(request.host)
            or (origin is not None and origin.rstrip("/") not in own_origins)
            or (fetch_site is not None and fetch_site not in SAME_SITE_FETCHES and not navigation)):
        return problem(403, REFUSED, title="Forbidden")
    return None


def dev_blueprint(name: str, import_name: str, **options: Any) -> Blueprint:
    """A development tool's blueprint, behind `same_origin_only` (its routes are all under `/dev/`; the
    check runs for them alone, not for every request the app serves)."""
    bp = Blueprint(name, import_name, **options)
    bp.before_request(same_origin_only)
    return bp


def register(app: Flask) -> None:
    """Register the development blueprints on `app` (a second call is a no-op).

    The caller decides whether development tools are allowed; this function does not check.
    """
    from devtools.chat import bp as chat_bp
    from devtools.graph_api import bp as graph_bp
    from devtools.local_analyser import bp as analyser_bp

    if chat_bp.name in app.blueprints:
        return
    for bp in (analyser_bp, graph_bp, chat_bp):
        app.register_blueprint(bp)
