"""WhatsApp Cloud API: message builders, the HTTP client, and the outbox that logs and sends."""

from __future__ import annotations

from typing import cast

from flask import current_app

from services import context
from services.ratelimit import SlidingWindowLimiter
from services.whatsapp.client import WhatsAppClient, pooled_session


def client() -> WhatsAppClient:
    """The current process's client, sharing the send rate limit with every other process; its
    keep-alive connections are enough for the concurrent senders (`WHATSAPP_SEND_CONCURRENCY`)."""
    ext = current_app.extensions
    if "whatsapp" not in ext:
        s = context.settings()
        default_number = s.phone_number_ids[0]
        limiter = SlidingWindowLimiter(context.redis(), f"ziraai:whatsapp:mps:{default_number}", s.WHATSAPP_MAX_MPS)
        ext["whatsapp"] = WhatsAppClient(s.whatsapp_api_base, s.WHATSAPP_TOKEN, default_number, limiter,
                                         pooled_session(s.WHATSAPP_SEND_CONCURRENCY, s.OUTBOUND_PROXY))
    return cast(WhatsAppClient, ext["whatsapp"])
