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
- `devtools.demo`: `flask seed-demo` (tiers, a demo sponsor with codes, an admin user);
  `devtools.run`: what `make run` does; `devtools.make_samples`: draws the sample leaf photos.
"""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Register the development blueprints on `app` (a second call is a no-op).

    The caller decides whether development tools are allowed; this function does not check.
    """
    from devtools.chat import bp as chat_bp
    from devtools.graph_api import bp as graph_bp
    from devtools.local_analyser import bp as analyser_bp

    for bp in (analyser_bp, graph_bp, chat_bp):
        if bp.name not in app.blueprints:
            app.register_blueprint(bp)
