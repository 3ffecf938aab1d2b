"""The Graph API stand-in (devtools/graph_api.py): Meta's paths over real HTTP, driven by the production
client (`services/whatsapp/client.py`), with signed status webhooks accepted by our own webhook."""

from __future__ import annotations

import io
import time

import pytest
import requests
from PIL import Image
from sqlalchemy import select

from devtools import graph_api, store
from models import Message, MessageStatus, MessageStatusEvent, utcnow
from services.whatsapp import messages
from services.whatsapp.client import WhatsAppClient
from services.whatsapp.errors import GraphAPIError, MediaError
from services.whatsapp.outbox import queue_message
from settings import load_settings
from tests.dev_live import live_app
from tests.helpers import PHONE_NUMBER_ID, wait_until

TOKEN = "test-token-abc"  # make_settings' WHATSAPP_TOKEN


def _jpeg(color: tuple[int, int, int] = (60, 140, 50)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def live(database_url):
    with live_app(database_url) as running:
        yield running


def _client(live, token: str = TOKEN, phone_number_id: str = PHONE_NUMBER_ID) -> WhatsAppClient:
    return WhatsAppClient(graph_api.api_base(live.base), token, phone_number_id)


def test_a_send_is_recorded_answered_like_meta_and_followed_by_signed_statuses(live):
    redis = live.app.extensions["redis"]
    response = requests.post(f"{graph_api.api_base(live.base)}/{PHONE_NUMBER_ID}/messages", timeout=5,
                             headers={"Authorization": f"Bearer {TOKEN}"},
                             json=messages.text("+905321234567", "Merhaba").body)
    assert response.status_code == 200
    answer = response.json()
    wamid = answer["messages"][0]["id"]
    assert wamid.startswith("wamid.")
    assert answer["contacts"] == [{"input": "+905321234567", "wa_id": "905321234567"}]

    [entry] = store.transcript(redis, "905321234567")
    assert (entry["dir"], entry["wamid"], entry["body"]["text"]["body"]) == ("out", wamid, "Merhaba")

    # Our webhook accepted all three signed status deliveries (it refuses a bad signature with 403).
    def recorded() -> list[str]:
        with live.app.extensions["db"].reader() as s:
            found = s.scalars(select(MessageStatusEvent.status).where(MessageStatusEvent.wamid == wamid)).all()
        return sorted(found) if len(found) == 3 else []

    assert wait_until(recorded, 10, what="three status events") == ["delivered", "read", "sent"]
    assert wait_until(lambda: store.get_status(redis, wamid) == "read", 5)


def test_the_outbox_sends_through_the_stand_in_and_the_message_log_ends_read(live):
    db, redis = live.app.extensions["db"], live.app.extensions["redis"]
    with db.session() as s, s.begin():  # the embedded sender thread sends it
        row = queue_message(s, "+905321234567", messages.buttons("905321234567", "Devam?", [("yes", "Evet")]),
                            utcnow())
        message_id = row.id

    def status() -> str | None:
        with db.reader() as s:
            msg = s.get(Message, message_id)
            return msg.status if msg is not None and msg.status == MessageStatus.READ else None

    assert wait_until(status, 15, what="the message log to show read") == MessageStatus.READ
    with db.reader() as s:
        wamid = s.get_one(Message, message_id).wamid
    assert store.transcript(redis, "905321234567")[-1]["wamid"] == wamid


def test_mark_read_answers_success_and_turns_the_farmers_message_blue(live):
    redis = live.app.extensions["redis"]
    store.set_status(redis, "wamid.FARMER1", "delivered")
    _client(live).mark_read("wamid.FARMER1")  # raises on anything but a 2xx
    raw = requests.post(f"{graph_api.api_base(live.base)}/{PHONE_NUMBER_ID}/messages", timeout=5,
                        headers={"Authorization": f"Bearer {TOKEN}"},
                        json={"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.FARMER1"})
    assert raw.json() == {"success": True}
    assert store.get_status(redis, "wamid.FARMER1") == "read"


def test_media_two_step_download_through_the_production_client(live):
    photo = _jpeg()
    media = store.put_media(live.app.extensions["redis"], photo, "image/jpeg")
    client = _client(live)

    info = client.media_info(media.id)
    assert (info.mime_type, info.sha256, info.file_size) == ("image/jpeg", media.sha256, len(photo))
    assert info.url.startswith(f"{live.base}/dev/graph/files/{media.id}?")
    downloaded = client.download_media(media.id)
    assert downloaded.content == photo and downloaded.sha256 == media.sha256

    # The file needs the bearer token, like Meta's, and its URL is signed and expires.
    assert requests.get(info.url, timeout=5).status_code == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(info.url.replace("hash=", "hash=0"), headers=bearer, timeout=5).status_code == 404
    expired = int(time.time()) - 1
    url = (f"{live.base}/dev/graph/files/{media.id}?ext={expired}"
           f"&hash={_signature(live, media.id, expired)}")
    gone = requests.get(url, headers=bearer, timeout=5)
    assert gone.status_code == 404 and "expired" in gone.json()["error"]["message"]


def _signature(live, media_id: str, expires: int) -> str:
    with live.app.test_request_context():
        return graph_api.media_signature(media_id, expires)


def test_unknown_media_is_a_graph_error_and_too_large_media_is_refused_before_download(live):
    client = _client(live)
    with pytest.raises(GraphAPIError) as unknown:
        client.media_info("999999")
    assert (unknown.value.http_status, unknown.value.code) == (400, 100)
    big = store.put_media(live.app.extensions["redis"], _jpeg() + b"\0" * 2048, "image/jpeg")
    with pytest.raises(MediaError):
        client.download_media(big.id, max_bytes=1024)


def test_meta_errors_for_a_wrong_token_phone_number_id_or_body(live):
    body = messages.text("905321234567", "Merhaba").body
    with pytest.raises(GraphAPIError) as bad_token:
        _client(live, token="wrong").send(body)
    assert (bad_token.value.http_status, bad_token.value.code) == (401, 190)  # the outbox's "alert loudly" case
    with pytest.raises(GraphAPIError) as other_number:
        _client(live, phone_number_id="123").send(body)
    assert (other_number.value.http_status, other_number.value.code) == (400, 100)
    with pytest.raises(GraphAPIError) as no_recipient:
        _client(live).send({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}})
    assert no_recipient.value.code == 100
    with pytest.raises(GraphAPIError):
        _client(live).send({"messaging_product": "whatsapp", "to": "905321234567", "type": "hologram"})
    assert store.transcript(live.app.extensions["redis"], "905321234567") == []


def test_statuses_never_move_backwards(app):
    redis = app.extensions["redis"]
    assert store.set_status(redis, "wamid.X", "pending")
    assert store.set_status(redis, "wamid.X", "read")
    assert not store.set_status(redis, "wamid.X", "delivered")
    assert not store.set_status(redis, "wamid.X", "failed")  # failed only replaces pending
    assert store.get_status(redis, "wamid.X") == "read"
    assert store.set_status(redis, "wamid.Y", "pending") and store.set_status(redis, "wamid.Y", "failed")
    with pytest.raises(ValueError):
        store.set_status(redis, "wamid.Y", "lost")


def test_the_transcript_keeps_the_last_messages_only(app, monkeypatch):
    redis = app.extensions["redis"]
    monkeypatch.setattr(store, "TRANSCRIPT_MAX", 5)
    for i in range(8):
        store.append(redis, "905321234567", "out", f"wamid.{i}", {"type": "text", "text": {"body": str(i)}})
    assert [e["wamid"] for e in store.transcript(redis, "905321234567")] == [f"wamid.{i}" for i in range(3, 8)]
    assert 0 < redis.ttl("ziraai:dev:chat:905321234567") <= store.TRANSCRIPT_TTL


def test_media_lives_a_day(app):
    media = store.put_media(app.extensions["redis"], b"abc", "image/jpeg")
    assert 0 < app.extensions["redis"].ttl(f"ziraai:dev:media:{media.id}") <= 24 * 3600
    assert store.get_media(app.extensions["redis"], "../etc") is None


def test_the_app_uses_the_stand_in_only_when_the_environment_sets_no_graph_api():
    dev = load_settings(environ={}, dotenv_path=None)
    assert dev.whatsapp_api_base == "http://127.0.0.1:8000/dev/graph/v21.0"
    moved = load_settings(environ={"PORT": "8123"}, dotenv_path=None)
    assert moved.PUBLIC_BASE_URL == "http://127.0.0.1:8123"  # PUBLIC_BASE_URL follows PORT in development
    assert moved.whatsapp_api_base == "http://127.0.0.1:8123/dev/graph/v21.0"
    real = load_settings(environ={"WHATSAPP_API_BASE": "https://graph.facebook.com/v21.0"}, dotenv_path=None)
    assert real.whatsapp_api_base == "https://graph.facebook.com/v21.0"
    no_tools = load_settings(environ={"DEV_TOOLS": "0"}, dotenv_path=None)
    assert no_tools.whatsapp_api_base == "https://graph.facebook.com/v21.0"
    explicit = load_settings(environ={"PORT": "8123", "PUBLIC_BASE_URL": "https://abc.example.net"}, dotenv_path=None)
    assert explicit.PUBLIC_BASE_URL == "https://abc.example.net"


def test_no_dev_routes_without_dev_tools(database_url):
    from app import create_app
    from tests.helpers import make_settings

    client = create_app(make_settings(database_url, DEV_TOOLS=False)).test_client()
    assert client.post(f"/dev/graph/v21.0/{PHONE_NUMBER_ID}/messages", json={}).status_code == 404
    assert client.get("/dev/chat").status_code == 404
    assert client.get("/dev/chat/api/config").status_code == 404
