"""HTTP client for the WhatsApp Cloud API (Graph API): send, mark read, download media.

Every POST first takes a slot from the shared rate limiter. Errors come back as `GraphAPIError`
carrying the policy of `errors.py`; the caller decides what to do with it. The token is sent as a
header and never logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, cast

import requests
from requests.adapters import HTTPAdapter

from services import metrics
from services.http import http_session
from services.ratelimit import SlidingWindowLimiter
from services.whatsapp.errors import GraphAPIError, MediaError

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 5 * 1024 * 1024
TIMEOUT = (5, 20)  # connect, read
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def pooled_session(connections: int, proxy: str = "") -> requests.Session:
    """A session keeping up to `connections` keep-alive connections per host (requests' default is 10):
    a send from each of the sender's threads at once reuses a connection instead of opening one (a TLS
    handshake to Graph costs more than the send)."""
    session = http_session(proxy)
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(10, connections))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@dataclass(frozen=True)
class MediaInfo:
    id: str
    url: str
    mime_type: str | None
    sha256: str | None
    file_size: int | None


@dataclass(frozen=True)
class DownloadedMedia:
    content: bytes
    mime_type: str | None
    sha256: str


class WhatsAppClient:
    def __init__(self, api_base: str, token: str, phone_number_id: str,
                 limiter: SlidingWindowLimiter | None = None, session: requests.Session | None = None) -> None:
        self.api_base = api_base.rstrip("/")
        self.phone_number_id = phone_number_id
        self.limiter = limiter
        self.http = session or http_session()
        self.http.headers["Authorization"] = f"Bearer {token}"
        self._urls: dict[str | None, str] = {}

    def messages_url_of(self, from_number: str | None) -> str:
        """Where to POST a message sent from one of our numbers (None: the default one)."""
        return f"{self.api_base}/{from_number or self.phone_number_id}/messages"

    def _request(self, method: str, url: str, *, stream: bool = False) -> requests.Response:
        return self._send(self.http.prepare_request(requests.Request(method, url)), stream)

    def _send(self, prepared: requests.PreparedRequest, stream: bool = False) -> requests.Response:
        """`Session.send` still applies the session's proxies, verify and redirects; the timeouts are ours."""
        try:
            response = self.http.send(prepared, timeout=TIMEOUT, stream=stream)
        except requests.RequestException as exc:
            metrics.graph_api_error(None, None)
            raise GraphAPIError(None, f"network error: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            error = _error_from(response)
            metrics.graph_api_error(error.code, error.http_status)
            raise error
        return response

    def _prepared_post(self, from_number: str | None, body: dict[str, Any]) -> requests.PreparedRequest:
        """The POST built directly rather than by `Session.request`, whose merging of settings, cookies
        and hooks on every call was about a quarter of a send's CPU (Graph needs no cookies and we add
        no hooks); the URL is prepared once per number. The session's headers (the bearer token among
        them) are copied on each call, so a change to them still counts."""
        url = self._urls.get(from_number)
        if url is None:
            url = self._urls[from_number] = str(self.http.prepare_request(
                requests.Request("POST", self.messages_url_of(from_number))).url)
        data = _JSON.encode(body).encode()
        prepared = requests.PreparedRequest()
        prepared.method = "POST"
        prepared.url = url
        prepared.prepare_headers(self.http.headers)
        prepared.headers["Content-Type"] = "application/json"
        prepared.headers["Content-Length"] = str(len(data))
        prepared.body = data
        return prepared

    def _post_message(self, body: dict[str, Any], from_number: str | None = None) -> dict[str, Any]:
        if self.limiter is not None:
            self.limiter.acquire()
        response = self._send(self._prepared_post(from_number, body))
        try:
            return cast(dict[str, Any], json.loads(response.content))
        except ValueError as exc:
            raise GraphAPIError(None, "response is not JSON", response.status_code) from exc

    def send(self, body: dict[str, Any], from_number: str | None = None) -> str:
        """POST a message body built by `services.whatsapp.messages` from one of our numbers (the farmer
        answers the number they wrote to); returns the new wamid."""
        data = self._post_message(body, from_number)
        try:
            return str(data["messages"][0]["id"])
        except (KeyError, IndexError, TypeError) as exc:
            raise GraphAPIError(None, "no message id in the response", 200) from exc

    def mark_read(self, wamid: str, *, typing: bool = True, from_number: str | None = None) -> None:
        """Blue ticks for the farmer's message, and the typing bubble while we work on the answer."""
        body: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": wamid}
        if typing:
            body["typing_indicator"] = {"type": "text"}
        self._post_message(body, from_number)

    def media_info(self, media_id: str) -> MediaInfo:
        """Step one of a download: the short-lived URL (5 minutes) and what Meta knows of the file."""
        data = self._request("GET", f"{self.api_base}/{media_id}").json()
        if not isinstance(data, dict) or not data.get("url"):
            raise MediaError(f"media {media_id}: no download URL in the response")
        size = data.get("file_size")
        return MediaInfo(
            id=str(data.get("id", media_id)),
            url=str(data["url"]),
            mime_type=data.get("mime_type"),
            sha256=data.get("sha256"),
            file_size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
        )

    def download_media(self, media_id: str, *, max_bytes: int = MAX_IMAGE_BYTES) -> DownloadedMedia:
        """Both steps at once (the URL expires quickly), with the bearer token, bounded in size."""
        info = self.media_info(media_id)
        if info.file_size is not None and info.file_size > max_bytes:
            raise MediaError(f"media {media_id} is {info.file_size} bytes, limit {max_bytes}")
        response = self._request("GET", info.url, stream=True)
        digest = hashlib.sha256()
        chunks: list[bytes] = []
        received = 0
        with response:
            for chunk in response.iter_content(64 * 1024):
                received += len(chunk)
                if received > max_bytes:
                    raise MediaError(f"media {media_id} is larger than {max_bytes} bytes")
                digest.update(chunk)
                chunks.append(chunk)
        sha = digest.hexdigest()
        if info.sha256 and info.sha256.lower() != sha:
            raise MediaError(f"media {media_id}: checksum mismatch")
        return DownloadedMedia(b"".join(chunks), info.mime_type or response.headers.get("Content-Type"), sha)


def _error_from(response: requests.Response) -> GraphAPIError:
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    details = error.get("error_data", {}).get("details") if isinstance(error.get("error_data"), dict) else None
    return GraphAPIError(
        code,
        str(error.get("message") or error.get("title") or response.reason or "error")[:300],
        response.status_code,
        error.get("error_subcode") if isinstance(error.get("error_subcode"), int) else None,
        details,
    )
