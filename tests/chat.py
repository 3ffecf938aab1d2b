"""A farmer in a test: sends real signed webhooks, runs the real jobs, reads what the Graph API got."""

from __future__ import annotations

import itertools
import json
import re
import time
from typing import Any, Protocol

import responses
from flask import Flask

from devtools import webhook_bodies
from devtools.terminal_chat import describe as render
from services import quota
from services.queue import QUEUE_NAMES
from tests.helpers import GRAPH, PHONE_NUMBER_ID, post_webhook, run_jobs

MESSAGES_URL = f"{GRAPH}/{PHONE_NUMBER_ID}/messages"
_ids = itertools.count(1)


class GraphStub:
    """Records every message the bot sends and answers like Meta does."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.sent: list[dict[str, Any]] = []
        self.reads: list[str] = []
        self.mock = mock
        mock.add_callback(responses.POST, MESSAGES_URL, callback=self._on_post, content_type="application/json")

    def serves_media(self, media_id: str, content: bytes = b"", *, status: int = 200, code: int | None = None) -> str:
        """Answer the media download of `media_id` as Meta does (its URL, then the bytes from the lookaside host),
        or with a Graph API error (`status`, `code`) at the first step. Returns the bytes' URL."""
        url = f"https://lookaside.test/whatsapp/media?mid={media_id}"
        if status != 200:
            error = {"error": {"message": "media error", "code": code}}
            self.mock.get(f"{GRAPH}/{media_id}", status=status, json=error)
            return url
        self.mock.get(f"{GRAPH}/{media_id}", json={"url": url, "mime_type": "image/jpeg", "id": media_id,
                                                    "file_size": len(content)})
        self.mock.get(url, body=content, content_type="image/jpeg")
        return url

    def _on_post(self, request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        if body.get("status") == "read":
            self.reads.append(body["message_id"])
            return 200, {}, json.dumps({"success": True})
        self.sent.append(body)
        return 200, {}, json.dumps({"messaging_product": "whatsapp", "messages": [{"id": f"wamid.OUT{next(_ids)}"}]})


class SentMessages(Protocol):
    """What `Farmer` reads of a Graph API double: the message bodies it accepted, in order
    (`GraphStub`, or `tests.stand_ins.GraphStandIn` on a real port)."""

    sent: list[dict[str, Any]]


class Farmer:
    def __init__(self, app: Flask, graph: SentMessages, phone: str = "905321234567", name: str = "Mehmet Yılmaz",
                 queues: tuple[str, ...] = QUEUE_NAMES):
        self.app = app
        self.client = app.test_client()
        self.graph = graph
        self.phone = phone
        self.name = name
        self.timestamp = int(time.time()) - 3600  # recent: inside the 24-hour window
        self.last_bodies: list[dict[str, Any]] = []
        self.queues = queues  # which workers run after each message (conversation tests leave analyses queued)

    def message(self, kind: str, content: dict[str, Any]) -> dict[str, Any]:
        """One inbound message body of this farmer (a second later than the last), for a delivery built by hand."""
        self.timestamp += 1
        return webhook_bodies.message(self.phone, kind, content, wamid=f"wamid.IN{next(_ids)}",
                                      timestamp=self.timestamp)

    def body(self, *messages: dict[str, Any]) -> dict[str, Any]:
        return webhook_bodies.messages_body(list(messages), sender=self.phone, name=self.name,
                                            phone_number_id=PHONE_NUMBER_ID)

    def deliver(self, *messages: dict[str, Any], run: bool = True) -> list[str]:
        before = len(self.graph.sent)
        response = post_webhook(self.client, self.body(*messages))
        assert response.status_code == 200
        if run:
            run_jobs(self.app, self.queues)
        self.last_bodies = self.graph.sent[before:]
        return [render(b) for b in self.last_bodies]

    # What a farmer can do.
    def says(self, text: str) -> list[str]:
        return self.deliver(self.text(text))

    def text(self, text: str) -> dict[str, Any]:
        return self.message("text", {"body": text})

    def photo(self, caption: str | None = None, media_id: str = "1234567890123456") -> list[str]:
        content = {"mime_type": "image/jpeg", "sha256": "ab" * 32, "id": media_id}
        if caption:
            content["caption"] = caption
        return self.deliver(self.message("image", content))

    def taps(self, title_or_id: str) -> list[str]:
        """Tap a button or list row of the bot's last message, by its title or id."""
        for body in reversed(self.graph.sent):
            if body["type"] != "interactive":
                continue
            interactive = body["interactive"]
            if interactive["type"] == "button":
                choices = [(b["reply"]["id"], b["reply"]["title"]) for b in interactive["action"]["buttons"]]
                kind = "button_reply"
            else:
                choices = [(r["id"], r["title"]) for s in interactive["action"]["sections"] for r in s["rows"]]
                kind = "list_reply"
            for choice_id, title in choices:
                if title_or_id in (choice_id, title) or re.sub(r"^\d+\. ", "", title) == title_or_id:
                    return self.deliver(self.message("interactive", {
                        "type": kind, kind: {"id": choice_id, "title": title}}))
        raise AssertionError(f"no button or row {title_or_id!r} in the bot's messages")

    def tap_id(self, reply_id: str, title: str = "") -> list[str]:
        return self.deliver(self.message("interactive", {"type": "button_reply",
                                                          "button_reply": {"id": reply_id, "title": title}}))

    def location(self, lat: float, lng: float, name: str | None = None, address: str | None = None) -> list[str]:
        content: dict[str, Any] = {"latitude": lat, "longitude": lng}
        if name:
            content.update(name=name, address=address)
        return self.deliver(self.message("location", content))

    def sends(self, kind: str, content: dict[str, Any] | None = None) -> list[str]:
        return self.deliver(self.message(kind, content or {"id": "999", "mime_type": "x/y"}))

    def onboard(self) -> None:
        self.says("Merhaba")
        self.taps("consent:yes")


def onboarded_farmer(app: Flask, graph: SentMessages, queues: tuple[str, ...] = ("inbound",)) -> Farmer:
    """A farmer who said hello and accepted the consent, the tiers seeded: where a support test starts (only
    the inbound worker runs, so nothing is analysed behind its back)."""
    with app.extensions["db"].session() as session, session.begin():
        quota.seed_tiers(session)
    farmer = Farmer(app, graph, queues=queues)
    farmer.onboard()
    return farmer
