"""`flask chat`: be a farmer in the terminal, against a running instance of this service.

Every line becomes a real signed webhook POSTed to the running app's `/webhooks/whatsapp`; the
bot's answers are read back from the message log (the same database the app writes), so what you
see is exactly what the farmer would get, whether or not a Graph API is reachable.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from devtools import webhook_bodies
from models import Direction, Message
from models.db import Database

HELP = """Type as a farmer would. Commands:
  /photo [caption]    send a photo (with an optional caption)
  /loc LAT LNG [name] share a location
  /tap N|ID           tap the N-th button or list row of the bot's last message (or its id)
  /voice /sticker /document /video   send a message type the bot does not read
  /quit               leave"""


def describe(body: dict[str, Any]) -> str:
    """An outbound message body as the farmer reads it: text, then [buttons] or (list rows)."""
    kind = body.get("type")
    if kind == "text":
        return str(body["text"]["body"])
    if kind == "template":
        params = [p.get("text") for c in body["template"].get("components", []) for p in c.get("parameters", [])]
        return f"<template {body['template']['name']} {params}>"
    if kind == "image":
        return f"<image {body['image'].get('link') or body['image'].get('id')}> {body['image'].get('caption', '')}"
    interactive = body.get("interactive", {})
    text = interactive.get("body", {}).get("text", "")
    return f"{text} {' '.join(f'[{title}]' if i else f'({title})' for i, title in choices(body))}".strip()


def choices(body: dict[str, Any]) -> list[tuple[bool, str]]:
    """(is_button, title) of every button or list row of an interactive body, in order."""
    interactive = body.get("interactive", {})
    if interactive.get("type") == "button":
        return [(True, b["reply"]["title"]) for b in interactive["action"]["buttons"]]
    if interactive.get("type") == "list":
        return [(False, r["title"]) for s in interactive["action"]["sections"] for r in s["rows"]]
    return []


def _choice_ids(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    interactive = body.get("interactive", {})
    if interactive.get("type") == "button":
        return [("button_reply", b["reply"]["id"], b["reply"]["title"]) for b in interactive["action"]["buttons"]]
    if interactive.get("type") == "list":
        return [("list_reply", r["id"], r["title"]) for s in interactive["action"]["sections"] for r in s["rows"]]
    return []


class TerminalFarmer:
    def __init__(self, base_url: str, app_secret: str, db: Database, phone: str, name: str,
                 phone_number_id: str) -> None:
        self.url = base_url.rstrip("/") + "/webhooks/whatsapp"
        self.secret = app_secret
        self.db = db
        self.phone = phone.lstrip("+")
        self.name = name
        self.phone_number_id = phone_number_id
        self.counter = itertools.count(1)
        self.last_interactive: dict[str, Any] | None = None
        with db.reader() as session:
            self.seen = session.scalar(select(func.coalesce(func.max(Message.id), 0))) or 0

    def message_for(self, line: str) -> dict[str, Any] | None:
        """Turn one typed line into a WhatsApp message object (None: nothing to send)."""
        word, _, rest = line.strip().partition(" ")
        if word == "/photo":
            content = {"mime_type": "image/jpeg", "sha256": "0" * 64, "id": str(secrets.randbelow(10**15))}
            return self._message("image", {**content, **({"caption": rest} if rest else {})})
        if word == "/loc":
            parts = rest.split(maxsplit=2)
            loc: dict[str, Any] = {"latitude": float(parts[0]), "longitude": float(parts[1])}
            if len(parts) > 2:
                loc["name"] = parts[2]
            return self._message("location", loc)
        if word == "/tap":
            options = _choice_ids(self.last_interactive or {})
            pick = [o for i, o in enumerate(options, 1) if rest in (str(i), o[1])]
            if not pick:
                return None
            kind, choice_id, title = pick[0]
            return self._message("interactive", {"type": kind, kind: {"id": choice_id, "title": title}})
        if word in ("/voice", "/sticker", "/document", "/video"):
            kind = "audio" if word == "/voice" else word[1:]
            return self._message(kind, {"id": "1", "mime_type": "application/octet-stream"})
        return self._message("text", {"body": line})

    def _message(self, kind: str, content: dict[str, Any]) -> dict[str, Any]:
        wamid = f"wamid.CHAT{int(time.time() * 1000)}{next(self.counter)}"
        return webhook_bodies.message(self.phone, kind, content, wamid=wamid)

    def send(self, message: dict[str, Any]) -> int:
        body = webhook_bodies.messages_body([message], sender=self.phone, name=self.name,
                                            phone_number_id=self.phone_number_id)
        return webhook_bodies.post_signed(self.url, body, self.secret, timeout=10).status_code

    def replies(self, quiet: float = 1.5, limit: float = 20.0) -> list[dict[str, Any]]:
        """Outbound messages to this farmer since the last call: waits for the first one (up to `limit`),
        then until the bot has been quiet for `quiet` seconds."""
        found: list[dict[str, Any]] = []
        start = time.monotonic()
        last_new: float | None = None
        while time.monotonic() - start < limit and (last_new is None or time.monotonic() - last_new < quiet):
            with self.db.reader() as session:
                rows = session.scalars(
                    select(Message).where(Message.id > self.seen, Message.direction == Direction.OUTBOUND.value,
                                          Message.phone == "+" + self.phone).order_by(Message.id)
                ).all()
            for row in rows:
                self.seen = max(self.seen, row.id)
                found.append(row.payload or {})
                last_new = time.monotonic()
            time.sleep(0.1)
        for body in found:
            if body.get("type") == "interactive":
                self.last_interactive = body
        return found


def run(farmer: TerminalFarmer, read: Callable[[str], str] = input, write: Callable[[str], None] = print) -> None:
    write(HELP)
    while True:
        try:
            line = read("farmer> ").strip()
        except EOFError:
            return
        if line in ("/quit", "/q"):
            return
        if not line:
            continue
        message = farmer.message_for(line)
        if message is None:
            write("  (no such button; /tap N picks the N-th choice of the bot's last message)")
            continue
        status = farmer.send(message)
        if status != 200:
            write(f"  (webhook answered {status})")
            continue
        for body in farmer.replies():
            write("bot> " + describe(body))
