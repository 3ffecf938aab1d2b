"""Local stand-in for Meta's Graph API (WhatsApp Cloud API), development only.

Same paths as Meta's under `/dev/graph/<version>/`, so `services/whatsapp/client.py` runs unchanged
against it (with DEV_TOOLS on and no `WHATSAPP_API_BASE` in the environment, the app points there):

- `POST /<phone_number_id>/messages`: a message is recorded in the farmer's transcript
  (`devtools.store`) and answered like Meta (`contacts`, `messages[0].id` = a new wamid); a little later
  signed `sent`, `delivered` and `read` status webhooks are POSTed over real HTTP to our own
  `/webhooks/whatsapp`, from one background thread per process (the send never waits for them). A
  mark-read request (`status: read`) is answered `{"success": true}` and shows blue ticks on the
  farmer's message.
- An asynchronous failure, as Meta reports one (a 131047 after the 24-hour window, say): the send is
  answered 200 with a wamid as usual, then a signed `failed` status with the chosen error code follows
  instead of sent/delivered/read. Chosen per request with the header `X-Dev-Fail-Status: <code>`, or
  for the next send to a phone with `store.fail_next` (the simulator's "fail next" control).
- `GET /<media_id>`: media metadata with a `url` to `GET /dev/graph/files/<media_id>`, which expires
  after five minutes like Meta's. Both need the bearer token.

Like Meta, it refuses a wrong bearer token (401, code 190), another phone number id and malformed
bodies (400, code 100). It does not enforce the 24-hour window, rate limits or template approval by
itself: a failure is asked for (above).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from flask import Response, current_app, jsonify, request
from redis import Redis

from devtools import dev_blueprint, store, webhook_bodies
from services import context

log = logging.getLogger(__name__)
bp = dev_blueprint("dev_graph_api", __name__)

VERSION = re.compile(r"v\d{1,2}\.\d{1,2}")
STATUS_DELAYS = (("sent", 0.2), ("delivered", 0.5), ("read", 1.0))  # seconds after the send
FAILED_DELAY = 0.3  # seconds after the send, for an asynchronous failure
FAIL_HEADER = "X-Dev-Fail-Status"
MEDIA_URL_SECONDS = 300
MESSAGE_KINDS = {"text", "image", "interactive", "template", "location", "reaction", "audio", "video", "document",
                 "sticker", "contacts"}
MAX_PENDING_STATUSES = 10_000


def api_base(public_base_url: str, version: str = "v21.0") -> str:
    """The `WHATSAPP_API_BASE` that points at this stand-in."""
    return f"{public_base_url.rstrip('/')}/dev/graph/{version}"


# ---------------------------------------------------------------------------------------------
# Status webhooks, sent by one background thread per process in the order they fall due


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    url: str = field(compare=False)
    secret: str = field(compare=False)
    body: dict[str, Any] = field(compare=False)
    wamid: str = field(compare=False)
    status: str = field(compare=False)
    redis: Redis = field(compare=False)


class StatusSender:
    """A heap of status webhooks and the one daemon thread that POSTs them when due."""

    def __init__(self) -> None:
        self._heap: list[_Due] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._http = requests.Session()

    def schedule(self, delay: float, url: str, secret: str, body: dict[str, Any], wamid: str, status: str,
                 redis: Redis) -> None:
        with self._cond:
            if len(self._heap) >= MAX_PENDING_STATUSES:
                log.warning("graph stand-in: too many pending status webhooks, one dropped")
                return
            heapq.heappush(self._heap, _Due(time.monotonic() + delay, next(self._seq), url, secret, body, wamid,
                                            status, redis))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="dev-graph-statuses", daemon=True)
                self._thread.start()
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0].at > time.monotonic():
                    self._cond.wait(timeout=None if not self._heap else self._heap[0].at - time.monotonic())
                due = heapq.heappop(self._heap)
            self._deliver(due)

    def _deliver(self, due: _Due) -> None:
        try:
            response = webhook_bodies.post_signed(due.url, due.body, due.secret, timeout=10, session=self._http)
        except requests.RequestException as exc:
            log.warning("graph stand-in: status webhook not delivered",
                        extra={"status": due.status, "error": type(exc).__name__})
            return
        if response.status_code != 200:
            log.warning("graph stand-in: status webhook refused",
                        extra={"status": due.status, "http_status": response.status_code})
            return
        try:
            store.set_status(due.redis, due.wamid, due.status)
        except Exception:  # a background thread has nobody else to report to
            log.exception("graph stand-in: status not recorded")


sender = StatusSender()


# ---------------------------------------------------------------------------------------------
# Meta-shaped answers


def _graph_error(http_status: int, code: int, message: str, *, subcode: int | None = None,
                 kind: str = "OAuthException") -> tuple[Response, int]:
    trace = hashlib.sha1(message.encode(), usedforsecurity=False).hexdigest()[:20]
    error: dict[str, Any] = {"message": message, "type": kind, "code": code, "fbtrace_id": "dev" + trace}
    if subcode is not None:
        error["error_subcode"] = subcode
    return jsonify({"error": error}), http_status


def _settings() -> Any:
    return current_app.extensions["settings"]


def _authorised() -> bool:
    header = request.headers.get("Authorization", "")
    expected = f"Bearer {_settings().WHATSAPP_TOKEN}"
    return bool(header) and hmac.compare_digest(header.encode(), expected.encode())


def _unauthorised() -> tuple[Response, int]:
    return _graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token")


def media_signature(media_id: str, expires: int) -> str:
    """The `hash` of a media download link, as Graph's CDN links carry one: valid for this media id until `expires`."""
    key = _settings().WHATSAPP_TOKEN.encode()
    return hmac.new(key, f"{media_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------
# The routes


@bp.post("/dev/graph/<version>/<phone_number_id>/messages")
def send_message(version: str, phone_number_id: str) -> tuple[Response, int]:
    if not _authorised():
        return _unauthorised()
    settings = _settings()
    if not VERSION.fullmatch(version):
        return _graph_error(400, 100, f"Unknown Graph API version {version[:20]!r}")
    if phone_number_id not in settings.phone_number_ids:
        return _graph_error(400, 100, f"Unsupported post request. Object with ID '{phone_number_id[:40]}' does not "
                                      "exist, cannot be loaded due to missing permissions, or does not support this "
                                      "operation.", subcode=33, kind="GraphMethodException")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
        return _graph_error(400, 100, "(#100) The parameter messaging_product is required.")
    if body.get("status") == "read":
        wamid = body.get("message_id")
        if not isinstance(wamid, str) or not wamid:
            return _graph_error(400, 100, "(#100) The parameter message_id is required.")
        store.set_status(context.redis(), wamid, "read")  # blue ticks on the farmer's message
        return jsonify({"success": True}), 200
    to, user_id, kind = body.get("to"), body.get("recipient"), body.get("type", "text")
    if isinstance(user_id, str) and user_id and to is None:  # a farmer known only by user id
        to = user_id
    elif not isinstance(to, str) or not 5 <= len(store.digits(to)) <= 15:
        return _graph_error(400, 100, "(#100) The parameter to is required.")
    if kind not in MESSAGE_KINDS or not isinstance(body.get(kind), dict):
        return _graph_error(400, 100, f"(#100) Param {str(kind)[:20]} must be a supported message type with its "
                                      "object.")
    recipient = to if to == user_id else store.digits(to)
    wamid = webhook_bodies.new_wamid()
    redis = context.redis()
    store.append(redis, recipient, "out", wamid, body)
    store.set_status(redis, wamid, "pending")
    url = settings.PUBLIC_BASE_URL.rstrip("/") + "/webhooks/whatsapp"
    header = request.headers.get(FAIL_HEADER, "")
    fail_code = int(header) if header.isdigit() else store.take_fail_next(redis, recipient)
    if fail_code is not None:
        log.info("graph stand-in: this send will be reported failed", extra={"error_code": fail_code})
        sender.schedule(FAILED_DELAY, url, settings.WHATSAPP_APP_SECRET,
                        webhook_bodies.status_body(wamid, "failed", recipient, phone_number_id=phone_number_id,
                                                   error_code=fail_code),
                        wamid, "failed", redis)
    for status, delay in STATUS_DELAYS if fail_code is None else ():
        sender.schedule(delay, url, settings.WHATSAPP_APP_SECRET,
                        webhook_bodies.status_body(wamid, status, recipient, phone_number_id=phone_number_id),
                        wamid, status, redis)
    return jsonify({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": recipient}],
                    "messages": [{"id": wamid}]}), 200


@bp.get("/dev/graph/<version>/<media_id>")
def media_metadata(version: str, media_id: str) -> tuple[Response, int]:
    if not _authorised():
        return _unauthorised()
    media = store.get_media(context.redis(), media_id) if VERSION.fullmatch(version) else None
    if media is None:
        return _graph_error(400, 100, f"Unsupported get request. Object with ID '{media_id[:40]}' does not exist.",
                            subcode=33, kind="GraphMethodException")
    expires = int(time.time()) + MEDIA_URL_SECONDS
    url = (f"{_settings().PUBLIC_BASE_URL.rstrip('/')}/dev/graph/files/{media.id}"
           f"?ext={expires}&hash={media_signature(media.id, expires)}")
    return jsonify({"messaging_product": "whatsapp", "url": url, "mime_type": media.mime_type,
                    "sha256": media.sha256, "file_size": len(media.content), "id": media.id}), 200


@bp.get("/dev/graph/files/<media_id>")
def media_file(media_id: str) -> Response | tuple[Response, int]:
    if not _authorised():
        return _unauthorised()
    expires = request.args.get("ext", "")
    signature = request.args.get("hash", "")
    if not expires.isdigit() or not hmac.compare_digest(signature.encode(),
                                                        media_signature(media_id, int(expires)).encode()):
        return _graph_error(404, 100, "Media URL is not valid")
    if int(expires) < time.time():
        return _graph_error(404, 100, "Media URL has expired: ask for the media id's URL again")
    media = store.get_media(context.redis(), media_id)
    if media is None:
        return _graph_error(404, 100, "Media not found")
    return Response(media.content, mimetype=media.mime_type, headers={"Cache-Control": "no-store"})
