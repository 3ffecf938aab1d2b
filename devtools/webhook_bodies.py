"""Meta-shaped WhatsApp webhook bodies, built and signed in one place.

Everything that plays Meta towards our own `/webhooks/whatsapp` uses these builders: the `/dev/chat`
simulator, the Graph API stand-in's status callbacks, `flask chat` and the tests' `Farmer`. The shapes
follow the real deliveries in `tests/fixtures/whatsapp/` (one entry, one change, `field: messages`).
Phone numbers are Meta's `wa_id` form: digits, no `+`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any

import requests

from services.signing import META_HEADER, meta_signature

WABA_ID = "211497375401331"  # the business account id in `entry[].id`
DISPLAY_PHONE_NUMBER = "908502221133"  # the business number the farmer writes to, as Meta shows it


def new_wamid() -> str:
    """A fresh id in the look of Meta's (`wamid.` + base64); unique enough for a development run."""
    return "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18\x20" + secrets.token_bytes(18)).decode()


def message(sender: str, kind: str, content: dict[str, Any], *, wamid: str | None = None,
            timestamp: int | None = None, context_id: str | None = None) -> dict[str, Any]:
    """One inbound message object (`value.messages[]`); `context_id` is the bot message a reply answers."""
    msg: dict[str, Any] = {"from": sender, "id": wamid or new_wamid(),
                           "timestamp": str(int(time.time()) if timestamp is None else timestamp),
                           "type": kind, kind: content}
    if context_id:
        msg["context"] = {"from": DISPLAY_PHONE_NUMBER, "id": context_id}
    return msg


def text(sender: str, body: str, **kw: Any) -> dict[str, Any]:
    return message(sender, "text", {"body": body}, **kw)


def image(sender: str, media_id: str, *, sha256: str, mime_type: str = "image/jpeg", caption: str | None = None,
          **kw: Any) -> dict[str, Any]:
    content: dict[str, Any] = {"mime_type": mime_type, "sha256": sha256, "id": media_id}
    if caption:
        content["caption"] = caption
    return message(sender, "image", content, **kw)


def audio(sender: str, media_id: str, *, sha256: str, mime_type: str = "audio/ogg; codecs=opus", voice: bool = True,
          **kw: Any) -> dict[str, Any]:
    """A voice note (`voice: true`, recorded in WhatsApp) or an audio file the farmer attached."""
    return message(sender, "audio", {"mime_type": mime_type, "sha256": sha256, "id": media_id, "voice": voice},
                   **kw)


def sticker(sender: str, media_id: str, *, sha256: str, animated: bool = False, **kw: Any) -> dict[str, Any]:
    """A sticker: always WebP, as Meta delivers it."""
    return message(sender, "sticker", {"mime_type": "image/webp", "sha256": sha256, "id": media_id,
                                       "animated": animated}, **kw)


def document(sender: str, media_id: str, *, sha256: str, filename: str, mime_type: str,
             caption: str | None = None, **kw: Any) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if caption:
        content["caption"] = caption
    content.update(filename=filename, mime_type=mime_type, sha256=sha256, id=media_id)
    return message(sender, "document", content, **kw)


def reaction(sender: str, message_id: str, emoji: str, **kw: Any) -> dict[str, Any]:
    """An emoji reaction to one of the bot's messages (`emoji: ""` removes it, as in WhatsApp)."""
    return message(sender, "reaction", {"message_id": message_id, "emoji": emoji}, **kw)


def location(sender: str, latitude: float, longitude: float, *, name: str | None = None,
             address: str | None = None, **kw: Any) -> dict[str, Any]:
    content: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    if name:
        content["name"] = name
    if address:
        content["address"] = address
    return message(sender, "location", content, **kw)


def interactive_reply(sender: str, kind: str, reply_id: str, title: str, *, description: str | None = None,
                      **kw: Any) -> dict[str, Any]:
    """A tapped reply button (`kind="button_reply"`) or list row (`kind="list_reply"`)."""
    if kind not in ("button_reply", "list_reply"):
        raise ValueError("kind must be button_reply or list_reply")
    choice: dict[str, Any] = {"id": reply_id, "title": title}
    if description and kind == "list_reply":
        choice["description"] = description
    return message(sender, "interactive", {"type": kind, kind: choice}, **kw)


def template_button(sender: str, payload: str, title: str, **kw: Any) -> dict[str, Any]:
    """A tapped quick-reply button of a template message (`type: button`)."""
    return message(sender, "button", {"payload": payload, "text": title}, **kw)


def messages_body(messages: list[dict[str, Any]], *, sender: str, name: str | None, phone_number_id: str,
                  display_phone_number: str = DISPLAY_PHONE_NUMBER, waba_id: str = WABA_ID) -> dict[str, Any]:
    """The whole delivery for messages of one farmer (`contacts[]` without `profile` when there is no name)."""
    contact: dict[str, Any] = {"wa_id": sender}
    if name:
        contact["profile"] = {"name": name}
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id},
             "contacts": [contact], "messages": list(messages)}
    return {"object": "whatsapp_business_account",
            "entry": [{"id": waba_id, "changes": [{"field": "messages", "value": value}]}]}


# What Meta says in a `failed` status for the codes the Graph API stand-in can fail a send with.
ASYNC_FAILURES = {
    131047: "Re-engagement message",
    131026: "Message undeliverable",
    131049: "This message was not delivered to maintain healthy ecosystem engagement.",
    131050: "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages.",
    130472: "User's number is part of an experiment",
    130429: "Rate limit hit",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    131048: "Spam rate limit hit",
    132015: "Template is paused",
    132016: "Template is disabled",
    131042: "Business eligibility payment issue",
    368: "Temporarily blocked for policies violations",
    131031: "Account has been locked",
}


def status_body(wamid: str, status: str, recipient: str, *, phone_number_id: str, timestamp: int | None = None,
                display_phone_number: str = DISPLAY_PHONE_NUMBER, waba_id: str = WABA_ID,
                error_code: int | None = None) -> dict[str, Any]:
    """A `sent` / `delivered` / `read` status of one of our messages, as Meta reports it; or `failed` with
    `error_code` (its title from ASYNC_FAILURES) in `errors[]`."""
    now = int(time.time()) if timestamp is None else timestamp
    event: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(now), "recipient_id": recipient}
    if error_code is not None:
        title = ASYNC_FAILURES.get(error_code, "Message failed to send")
        event["errors"] = [{"code": error_code, "title": title, "message": title, "error_data": {"details": title},
                            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]
    if status == "sent":  # like Meta's: the conversation and its pricing come with `sent`
        event["conversation"] = {"id": hashlib.md5(recipient.encode(), usedforsecurity=False).hexdigest(),
                                 "expiration_timestamp": str(now + 24 * 3600), "origin": {"type": "service"}}
        event["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id},
             "statuses": [event]}
    return {"object": "whatsapp_business_account",
            "entry": [{"id": waba_id, "changes": [{"field": "messages", "value": value}]}]}


def encode(body: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent (UTF-8, Turkish letters unescaped like Meta's)."""
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def post_signed(url: str, body: dict[str, Any], app_secret: str, *, timeout: float = 10,
                session: requests.Session | None = None) -> requests.Response:
    """POST a body to a webhook URL over real HTTP, signed like Meta signs it."""
    raw = encode(body)
    headers = {"Content-Type": "application/json", META_HEADER: meta_signature(raw, app_secret)}
    return (session or requests).post(url, data=raw, headers=headers, timeout=timeout)
