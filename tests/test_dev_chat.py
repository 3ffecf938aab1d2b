"""The `/dev/chat` simulator: its API turns each farmer action into a signed webhook our app accepts,
and the conversation poll shows the bot's replies (through the Graph API stand-in) with their ticks."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from sqlalchemy import select

from devtools import store
from devtools import webhook_bodies as wb
from devtools.chat import MEDIA_LIMITS, sample_document, sample_sticker, sample_voice_note, view
from devtools.chat_labels import LABELS, file_size
from devtools.make_samples import SAMPLES
from models import Direction, Farmer, Message, utcnow
from services.queue import QUEUE_NAMES, get_queue
from services.whatsapp import outbox
from services.whatsapp.messages import build_template as build
from services.worker import EMBEDDED_WORKER_THREAD, ThreadWorker, embedded_worker_alive
from tests.admin_helpers import PASSWORD, make_staff
from tests.dev_live import SimFarmer, has_text, live_app, offers
from tests.helpers import PHONE_NUMBER_ID, REAL_REDIS, fixture_json, free_port, png_of_size, wait_until


@pytest.fixture
def live(database_url):
    with live_app(database_url) as running:
        yield running


def _inbound(live, phone: str) -> list[Message]:
    with live.app.extensions["db"].reader() as s:
        return list(s.scalars(select(Message).where(Message.direction == Direction.INBOUND.value,
                                                    Message.phone == phone).order_by(Message.id)))


def test_text_buttons_and_list_rows_become_webhooks_and_the_bot_answers_in_order(live):
    farmer = SimFarmer(live.base, "905301112233", "Ayşe Demir")
    sent = farmer.says("Merhaba")
    consent = farmer.bot_replies(offers("Kabul ediyorum"))
    assert "KVKK" in consent[-1]["text"] and consent[-1]["kind"] == "buttons"
    farmer.taps("Kabul ediyorum")
    menu = farmer.bot_replies(offers("Analiz gönder"))[-1]
    assert menu["kind"] == "list" and menu["list"]["button"]
    farmer.taps("Kalan hakkım")  # a list row, by its title without the number
    farmer.bot_replies(has_text("Deneme"))

    # Each action reached our webhook signed (it refuses unsigned bodies) as Meta's message types.
    rows = _inbound(live, "+905301112233")
    assert [m.type for m in rows] == ["text", "button_reply", "list_reply"]
    assert rows[0].wamid == sent["wamid"] and rows[0].text == "Merhaba"
    assert rows[1].payload is not None and rows[2].payload is not None
    assert rows[1].payload["interactive"]["button_reply"]["id"] == "consent:yes"
    assert rows[2].payload["interactive"]["type"] == "list_reply"
    assert rows[1].payload["context"]["id"] == consent[-1]["wamid"]  # a reply names the message it answers

    # The page's order: farmer, bot, farmer, ...; every message read in the end (mark-read, status webhooks).
    def all_read() -> list[dict]:
        messages = farmer.conversation()
        return messages if all(m["status"] == "read" for m in messages) else []

    messages = wait_until(all_read, 10, what="every tick blue")
    assert [m["dir"] for m in messages[:3]] == ["in", "out", "in"]
    assert [m["seq"] for m in messages] == sorted(m["seq"] for m in messages)


def test_a_photo_upload_and_a_typed_location(live):
    farmer = SimFarmer(live.base, "905301112244")
    farmer.says("Merhaba")
    farmer.bot_replies(offers("Kabul ediyorum"))
    farmer.taps("Kabul ediyorum")
    farmer.bot_replies(offers("Analiz gönder"))

    photo = io.BytesIO()
    Image.new("RGB", (120, 90), (50, 150, 60)).save(photo, "PNG")
    response = requests.post(farmer.api + "/photo", timeout=20,
                             data={"phone": farmer.phone, "name": farmer.name, "caption": "biber"},
                             files={"file": ("leaf.png", photo.getvalue(), "image/png")})
    assert response.status_code == 200, response.text
    farmer.bot_replies(offers("Geç"))
    shown = [m for m in farmer.conversation() if m["dir"] == "in" and m["kind"] == "image"][-1]
    assert shown["text"] == "biber" and requests.get(live.base + shown["image_url"], timeout=5).content == \
        photo.getvalue()

    assert farmer.post("/location", latitude=38.42, longitude=27.14, place="Bahçe").status_code == 200
    farmer.bot_replies(offers("Gönder"))
    image, location = _inbound(live, "+905301112244")[-2:]
    assert image.payload is not None and location.payload is not None
    media = store.get_media(live.app.extensions["redis"], image.payload["image"]["id"])
    assert media is not None and image.payload["image"]["sha256"] == media.sha256
    assert image.payload["image"]["mime_type"] == "image/png"
    assert location.payload["location"] == {"latitude": 38.42, "longitude": 27.14, "name": "Bahçe"}


def test_a_template_is_rendered_and_its_quick_reply_taps_back(live):
    db = live.app.extensions["db"]
    out = build("analysis_complete_tr", "905301112255", ["Ayşe", "Domates", "7/10", "Erken yanıklık"])
    with db.session() as s, s.begin():  # the embedded sender thread sends it
        outbox.queue_message(s, "+905301112255", out, utcnow())
    farmer = SimFarmer(live.base, "905301112255")
    [shown] = farmer.bot_replies(lambda m: m["kind"] == "template")
    assert "Merhaba Ayşe, Domates fotoğrafınızın analizi tamamlandı" in shown["text"]
    assert "Sağlık puanı: 7/10" in shown["text"]
    assert [(b["title"], b["id"]) for b in shown["buttons"]] == [("Detaylar", "result:details"),
                                                                 ("Yeni analiz", "result:new")]
    assert farmer.post("/reply", wamid=shown["wamid"], id="result:details").status_code == 200
    tapped = wait_until(lambda: _inbound(live, "+905301112255"), 5)[-1]
    assert tapped.type == "button"
    assert tapped.payload["button"] == {"payload": "result:details", "text": "Detaylar"}


@pytest.mark.parametrize("path, payload, fragment", [
    ("/text", {"phone": "905301112266"}, "text gerekli"),
    ("/text", {"phone": "abc", "text": "x"}, "phone: ülke koduyla"),
    ("/text", {"phone": "12", "text": "x"}, "phone: ülke koduyla"),
    ("/text", {"phone": "1234567890123456789", "text": "x"}, "phone: ülke koduyla birlikte 8 ile 15"),
    ("/text", {"phone": "905301112266", "text": "x" * 4097}, "en fazla 4096"),
    ("/photo", {"phone": "905301112266", "sample": "../../app.py"}, "lekeli_yaprak"),
    ("/location", {"phone": "905301112266", "latitude": 91, "longitude": 0}, "latitude: -90 ile 90"),
    ("/location", {"phone": "905301112266", "latitude": True, "longitude": 0}, "latitude"),
    ("/location", {"phone": "905301112266", "province": "Atlantis"}, "province: şunlardan biri"),
    ("/reply", {"phone": "905301112266", "title": "Nothing"}, "Hiçbir bot mesajında"),
    ("/reply", {"phone": "905301112266"}, "id'sini veya başlığını"),
])
def test_bad_input_is_a_clear_400_in_the_simulators_turkish(client, path, payload, fragment):
    response = client.post(f"/dev/chat/api{path}", json=payload)
    assert response.status_code == 400
    assert fragment in response.json["detail"]
    assert response.mimetype == "application/problem+json"


def test_bad_input_is_in_the_pages_language_else_the_farmers(app, client):
    """The page sends its language as Accept-Language; a caller that does not gets the farmer's, else Turkish."""
    english = client.post("/dev/chat/api/text", json={"phone": "abc", "text": "x"}, headers={"Accept-Language": "en"})
    assert english.json["detail"] == LABELS["en"]["bad_phone"]
    turkish = client.post("/dev/chat/api/text", json={"phone": "abc", "text": "x"}, headers={"Accept-Language": "tr"})
    assert turkish.json["detail"] == LABELS["tr"]["bad_phone"]
    with app.extensions["db"].session() as s, s.begin():
        s.add(Farmer(phone="+905301114444", locale="en"))
    assert client.post("/dev/chat/api/location", json={"phone": "905301114444", "province": "Atlantis"}
                       ).json["detail"].startswith("province: one of Antalya")


# Every field of every endpoint, each given a value of the wrong JSON type while the others are good.
FIELDS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "/text": ({"text": "x"}, ["phone", "name", "text"]),
    "/photo": ({"sample": "lekeli_yaprak"}, ["phone", "name", "caption", "sample"]),
    "/voice": ({}, ["phone", "name"]),
    "/document": ({}, ["phone", "name", "caption"]),
    "/sticker": ({}, ["phone", "name"]),
    "/reaction": ({"wamid": "wamid.X", "emoji": "👍"}, ["phone", "name", "wamid", "emoji"]),
    "/location": ({"latitude": 1, "longitude": 1}, ["phone", "name", "latitude", "longitude", "place", "address"]),
    "/location ": ({"province": "Konya"}, ["province"]),
    "/reply": ({"id": "x"}, ["phone", "name", "wamid", "id", "title"]),
    "/fail-next": ({"code": None}, ["phone", "code"]),
    "/clear": ({}, ["phone"]),
}


@pytest.mark.parametrize("path, field", [(path, field) for path, (_, fields) in FIELDS.items() for field in fields])
@pytest.mark.parametrize("wrong", [["Konya"], {"a": 1}, 12, True], ids=["list", "object", "number", "bool"])
def test_a_field_of_the_wrong_json_type_is_a_400_never_a_500(client, path, field, wrong):
    base, _ = FIELDS[path]
    payload = {"phone": "905551110030", "name": "A", **base, field: wrong}
    if field in ("latitude", "longitude") and wrong == 12:
        return  # a number is the right type here
    response = client.post(f"/dev/chat/api{path.strip()}", json=payload)
    assert response.status_code == 400, (response.status_code, response.get_data(as_text=True)[:200])
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("raw", [b'{"phone": "905301112266", "text": "a\\ud800b"}',
                                 b'{"phone": "905301112266", "name": "\\udfff", "text": "x"}',
                                 b'{"phone": "905301112266", "text": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                                 b'{"phone": "905301112266", "latitude": 1e400, "longitude": 0}'])
def test_hostile_json_is_a_clear_400(client, raw):
    """A lone surrogate could not be sent on as UTF-8 (a 500 before); deep nesting was a RecursionError."""
    response = client.post("/dev/chat/api/text", data=raw, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)[:200]
    assert response.mimetype == "application/problem+json"


def test_not_json_and_not_an_image_are_400(client):
    assert client.post("/dev/chat/api/text", data="x", content_type="application/json").status_code == 400
    not_image = client.post("/dev/chat/api/photo", content_type="multipart/form-data",
                            data={"phone": "905301112266", "file": (io.BytesIO(b"GIF89a not really"), "x.jpg")})
    assert not_image.status_code == 400 and "JPEG, PNG ya da WebP" in not_image.json["detail"]
    assert not_image.json["title"] == "file not sent"
    assert client.get("/dev/chat/api/conversation?phone=x").status_code == 400
    assert client.get("/dev/chat/api/media/123").status_code == 404


@pytest.mark.parametrize("endpoint", ["photo", "sticker"])
def test_a_decompression_bomb_is_a_file_not_sent_note_not_a_500(client, endpoint):
    bomb = png_of_size(20000, 20000)  # about 50 KB, 400 million pixels
    response = client.post(f"/dev/chat/api/{endpoint}", content_type="multipart/form-data",
                           data={"phone": "905301112266", "file": (io.BytesIO(bomb), "huge.png")})
    assert response.status_code == 400 and response.json["title"] == "file not sent"
    assert "çözünürlüğü çok yüksek" in response.json["detail"]


def test_an_unreachable_webhook_is_a_502_and_the_message_shows_failed(database_url):
    closed = f"http://127.0.0.1:{free_port()}"
    with live_app(database_url, worker=False) as live:
        live.app.extensions["settings"] = _replace(live.app.extensions["settings"], PUBLIC_BASE_URL=closed)
        farmer = SimFarmer(live.base, "905301112277")
        response = farmer.post("/text", text="Merhaba")
        assert response.status_code == 502 and "not reachable" in response.json()["title"]
        assert [m["status"] for m in farmer.conversation()] == ["failed"]


def _replace(settings, **changes):
    from dataclasses import replace

    return replace(settings, **changes)


def test_the_page_and_its_files_are_served(live):
    page = requests.get(f"{live.base}/dev/chat", timeout=5)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    for element in ('id="messages"', 'id="text-input"', 'id="attach-btn"', 'id="location-btn"', 'id="list-sheet"'):
        assert element in page.text
    assert "cdn" not in page.text.lower()  # everything from the app itself
    assert '<link rel="icon" href="/favicon.svg"' in page.text
    assert requests.get(f"{live.base}/favicon.svg", timeout=5).status_code == 200
    for asset in ("chat.js", "chat.css", "samples/lekeli_yaprak.jpg"):
        assert requests.get(f"{live.base}/dev/chat/static/{asset}", timeout=5).status_code == 200
    config = requests.get(f"{live.base}/dev/chat/api/config", timeout=5).json()
    assert config["graph_api"]["stand_in"] is True
    assert len(config["samples"]) == 4 and {p["name"] for p in config["provinces"]} >= {"Antalya", "Konya"}


def test_views_of_each_kind_of_bot_message():
    def entry(body: dict) -> dict:
        return {"seq": 1, "dir": "out", "wamid": "wamid.1", "at": 0.0, "status": "sent", "body": body}

    link = view(entry({"type": "text", "text": {"body": "Rapor: https://x.test/r/abc"}}))
    assert (link["kind"], link["text"]) == ("text", "Rapor: https://x.test/r/abc")
    rows = [{"id": "a", "title": "1. A", "description": "d"}]
    listed = view(entry({"type": "interactive", "interactive": {
        "type": "list", "header": {"type": "text", "text": "Menü"}, "body": {"text": "Seçin"},
        "action": {"button": "Seçenekler", "sections": [{"rows": rows}]}}}))
    assert listed["kind"] == "list" and listed["header"] == "Menü"
    assert listed["list"]["sections"][0]["rows"] == rows
    image = view(entry({"type": "image", "image": {"link": "https://x.test/a.jpg", "caption": "c"}}))
    assert (image["image_url"], image["text"]) == ("https://x.test/a.jpg", "c")
    unknown = view(entry({"type": "template", "template": {"name": "nope", "components": []}}))
    assert "nope" in unknown["text"]


def test_the_shared_builders_produce_the_real_webhook_shapes():
    def delivery(message: dict) -> dict:
        return wb.messages_body([message], sender="905321234567", name="Mehmet Yılmaz",
                                phone_number_id=PHONE_NUMBER_ID)

    def fixture_message(name: str) -> dict:
        return fixture_json(name)["entry"][0]["changes"][0]["value"]["messages"][0]

    for name, build_it in {
        "text.json": lambda m: wb.text("905321234567", m["text"]["body"], wamid=m["id"],
                                       timestamp=int(m["timestamp"])),
        "button_reply.json": lambda m: wb.interactive_reply(
            "905321234567", "button_reply", "menu:analyze", "Analiz gönder", wamid=m["id"],
            timestamp=int(m["timestamp"]), context_id=m["context"]["id"]),
        "list_reply.json": lambda m: wb.interactive_reply(
            "905321234567", "list_reply", "crop:domates", "Domates", description="Sebze", wamid=m["id"],
            timestamp=int(m["timestamp"]), context_id=m["context"]["id"]),
        "template_quick_reply.json": lambda m: wb.template_button(
            "905321234567", "result:details", "Detaylar", wamid=m["id"], timestamp=int(m["timestamp"]),
            context_id=m["context"]["id"]),
        "location_chosen.json": lambda m: wb.location("905321234567", 36.8969, 30.7133, name="Serada",
                                                      address="Muratpaşa, Antalya", wamid=m["id"],
                                                      timestamp=int(m["timestamp"])),
        "voice.json": lambda m: wb.audio("905321234567", m["audio"]["id"], sha256=m["audio"]["sha256"],
                                         wamid=m["id"], timestamp=int(m["timestamp"])),
        "sticker.json": lambda m: wb.sticker("905321234567", m["sticker"]["id"], sha256=m["sticker"]["sha256"],
                                             wamid=m["id"], timestamp=int(m["timestamp"])),
        "document.json": lambda m: wb.document("905321234567", m["document"]["id"], sha256=m["document"]["sha256"],
                                               filename="toprak.pdf", mime_type="application/pdf",
                                               caption="toprak analizi", wamid=m["id"],
                                               timestamp=int(m["timestamp"])),
        "reaction.json": lambda m: wb.reaction("905321234567", m["reaction"]["message_id"], "👍", wamid=m["id"],
                                               timestamp=int(m["timestamp"])),
        "image_with_caption.json": lambda m: wb.image("905321234567", m["image"]["id"], sha256=m["image"]["sha256"],
                                                      caption="domates yaprakları sararıyor", wamid=m["id"],
                                                      timestamp=int(m["timestamp"])),
    }.items():
        assert delivery(build_it(fixture_message(name))) == fixture_json(name), name

    delivered = fixture_json("status_delivered.json")
    event = delivered["entry"][0]["changes"][0]["value"]["statuses"][0]
    assert wb.status_body(event["id"], "delivered", "905321234567", phone_number_id=PHONE_NUMBER_ID,
                          timestamp=int(event["timestamp"])) == delivered
    sent = wb.status_body("wamid.X", "sent", "905321234567", phone_number_id=PHONE_NUMBER_ID)
    real_sent = fixture_json("status_sent.json")["entry"][0]["changes"][0]["value"]["statuses"][0]
    assert sent["entry"][0]["changes"][0]["value"]["statuses"][0].keys() == real_sent.keys()


# --- only the service itself may use /dev/* -------------------------------------------------------------
# Anyone who can reach these routes can sign webhooks as Meta, and a browser will send a request to
# 127.0.0.1 for any page on the internet: a form on another site must not be able to chat as a farmer.

CROSS_SITE = [
    {"Origin": "https://evil.test"},  # a cross-site form post or fetch
    {"Origin": "null"},  # a sandboxed frame, a file:// page
    {"Origin": "http://localhost:3000"},  # another local server is another origin
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},  # e.g. <img src>, without an Origin
    {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"},
    {"Host": "rebound.evil.test"},  # DNS rebinding: a foreign name that resolves to 127.0.0.1
]


@pytest.mark.parametrize("headers", CROSS_SITE, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()))
@pytest.mark.parametrize(("method", "path"), [("POST", "/dev/chat/api/text"), ("POST", "/dev/chat/api/clear"),
                                              ("GET", "/dev/chat/api/conversation?phone=905301112266"),
                                              ("GET", "/dev/chat/api/config"), ("POST", "/dev/n8n/analyze"),
                                              ("POST", "/dev/graph/v21.0/106540352242922/messages")])
def test_a_request_from_another_site_is_403(client, method, path, headers):
    form = {"phone": "905301112266", "text": "Merhaba"}
    response = client.open(path, method=method, data=form if method == "POST" else None, headers=headers)
    assert response.status_code == 403, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert "this service's own pages" in response.json["detail"]


@pytest.mark.parametrize("headers", [
    {},  # not a browser: the Graph API stand-in's and local analyser's callers, curl, the tests
    {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"},  # the page
    {"Origin": "https://bot.test"},  # PUBLIC_BASE_URL, the address the page was opened at
])
def test_the_simulator_page_and_non_browser_callers_get_through(client, headers):
    response = client.post("/dev/chat/api/text", json={"phone": "abc", "text": "x"}, headers=headers)
    assert response.status_code == 400 and "phone" in response.json["detail"]  # past the check: the input's turn


def test_a_link_to_the_page_from_elsewhere_opens_it(client):
    """A top-level navigation (a link in a chat, the README) only shows the page; its calls are checked."""
    headers = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert client.get("/dev/chat", headers=headers).status_code == 200
    assert client.post("/dev/chat/api/clear", json={"phone": "905301112266"}, headers=headers).status_code == 403


def test_the_simulator_works_through_the_check_over_real_http(live):
    """The page's own calls as a browser sends them (same origin), the stand-ins' calls back to the app."""
    farmer = SimFarmer(live.base, "905301112299")
    farmer.http.headers.update({"Origin": live.base, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"})
    farmer.says("Merhaba")
    assert farmer.bot_replies(offers("Kabul ediyorum"))


# --- WhatsApp's media limits, the other kinds of message, the page's own words ------------------------------

MB = 1024 * 1024
STATIC = Path(__file__).parent.parent / "devtools" / "static"


def _png(size: int) -> bytes:
    """A real PNG of about `size` bytes (noise does not compress)."""
    side = int((size / 3) ** 0.5) + 8
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "PNG", compress_level=0)
    return out.getvalue()


def _upload(client_or_url, path: str, phone: str, content: bytes, filename: str = "x.jpg", **fields: str):
    files = {"file": (filename, content)}
    data = {"phone": phone, **fields}
    if isinstance(client_or_url, str):
        return requests.post(f"{client_or_url}/dev/chat/api{path}", params={"phone": phone}, data=data,
                             files=files, timeout=60)
    return client_or_url.post(f"/dev/chat/api{path}?phone={phone}", content_type="multipart/form-data",
                              data={**data, "file": (io.BytesIO(content), filename)})


def test_a_document_is_served_as_a_download_that_runs_nothing_on_the_apps_origin(client):
    """The app's origin also serves /console: an uploaded HTML file must never run there as a page."""
    html = b"<html><script>fetch('/console')</script></html>"
    _upload(client, "/document", "905301117777", html, filename="evil.html")  # the webhook is not reachable: 502
    _upload(client, "/photo", "905301117777", png_of_size(40, 30), filename="leaf.png")
    shown = client.get("/dev/chat/api/conversation?phone=905301117777").json["messages"]
    document = client.get(next(m["document"]["url"] for m in shown if m["kind"] == "document"))
    assert document.data == html
    assert document.headers["Content-Disposition"] == "attachment"
    assert document.headers["X-Content-Type-Options"] == "nosniff"
    assert document.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    photo = client.get(next(m["image_url"] for m in shown if m["kind"] == "image"))
    assert photo.mimetype == "image/png" and photo.headers["Content-Disposition"] == "inline"
    assert photo.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in photo.headers["Content-Security-Policy"]


def _notes(client, phone: str) -> list[str]:
    messages = client.get(f"/dev/chat/api/conversation?phone={phone}").json["messages"]
    return [m["text"] for m in messages if m["dir"] == "note"]


def test_a_4_mb_phone_photo_and_a_10_mb_document_get_through(live):
    """The app-wide 3 MB request limit would refuse them: the upload routes take what WhatsApp takes."""
    photo = _png(4 * MB)
    assert 4 * MB <= len(photo) <= MEDIA_LIMITS["image"]
    assert _upload(live.base, "/photo", "905301113311", photo, "leaf.png").status_code == 200
    document = os.urandom(10 * MB)
    response = _upload(live.base, "/document", "905301113311", document, "tarla raporu.pdf", caption="rapor")
    assert response.status_code == 200, response.text
    image, doc = _inbound(live, "+905301113311")[-2:]
    assert (image.type, doc.type) == ("image", "document")
    assert doc.payload is not None and doc.payload["document"]["filename"] == "tarla raporu.pdf"
    assert doc.payload["document"]["mime_type"] == "application/pdf"
    stored = store.get_media(live.app.extensions["redis"], doc.payload["document"]["id"])
    assert stored is not None and stored.content == document
    # Every other route keeps the app-wide limit.
    assert requests.post(f"{live.base}/dev/chat/api/text", timeout=20,
                         json={"phone": "905301113311", "text": "x" * (4 * MB)}).status_code == 413
    assert requests.post(f"{live.base}/api/v1/auth/login", data=b"x" * (4 * MB), timeout=20,
                         headers={"Content-Type": "application/json"}).status_code == 413


@pytest.mark.parametrize(("path", "size", "limit"), [
    ("/photo", MEDIA_LIMITS["image"] + 1, "5 MB"),  # read, then refused
    ("/photo", 7 * MB, "5 MB"),  # refused before the body is read
    ("/sticker", 600 * 1024, "500 KB"),
    ("/voice", 17 * MB, "16 MB"),
])
def test_a_file_over_whatsapps_limit_is_told_in_the_chat_in_turkish(client, path, size, limit):
    response = _upload(client, path, "905301113322", b"\0" * size)
    assert response.status_code == 413 and response.json["title"] == "file not sent"
    [note] = _notes(client, "905301113322")
    assert note == response.json["detail"]
    assert "gönderilemedi" in note and f"en fazla {limit}" in note, note
    shown = re.search(r"\(bu dosya ([\d,]+) (KB|MB)\)", note)  # the request's size: the file and its form
    assert shown and float(shown[1].replace(",", ".")) * (MB if shown[2] == "MB" else 1024) >= size * 0.99, note


def test_the_note_is_in_english_for_a_farmer_who_chose_english(app, client):
    with app.extensions["db"].session() as s, s.begin():
        s.add(Farmer(phone="+905301113333", locale="en"))
    response = _upload(client, "/photo", "905301113333", b"\0" * (6 * MB))
    assert response.status_code == 413
    assert _notes(client, "905301113333") == ["This photo was not sent: WhatsApp takes at most 5 MB (this file is "
                                              f"{file_size(response.request.content_length or 0, 'en')})."]
    conversation = client.get("/dev/chat/api/conversation?phone=905301113333").json
    assert conversation["locale"] == "en"
    assert client.get("/dev/chat/api/conversation?phone=905301113399").json["locale"] == "tr"  # not known yet


def test_a_file_of_the_wrong_kind_is_told_in_the_chat(client):
    assert _upload(client, "/sticker", "905301113344", _png(1000)).status_code == 400
    assert _upload(client, "/voice", "905301113344", b"RIFF....WAVEfmt ").status_code == 400
    assert _notes(client, "905301113344") == [LABELS["tr"]["bad_sticker"], LABELS["tr"]["bad_audio"]]


def test_a_voice_note_a_sticker_a_document_and_a_reaction_as_meta_sends_them(live):
    farmer = SimFarmer(live.base, "905301113355")
    farmer.says("Merhaba")
    consent = farmer.bot_replies(offers("Kabul ediyorum"))[-1]
    for path, payload in (("/voice", {}), ("/sticker", {}), ("/document", {"caption": "toprak analizi"}),
                          ("/reaction", {"wamid": consent["wamid"], "emoji": "👍"})):
        response = farmer.post(path, **payload)
        assert response.status_code == 200, response.text
    rows = _inbound(live, "+905301113355")[-4:]
    assert [m.type for m in rows] == ["audio", "sticker", "document", "reaction"]
    audio, sticker, document, reaction = (m.payload for m in rows)
    assert audio is not None and sticker is not None and document is not None and reaction is not None
    assert audio["audio"]["voice"] is True and audio["audio"]["mime_type"] == "audio/ogg; codecs=opus"
    assert sticker["sticker"] | {"id": "", "sha256": ""} == {"mime_type": "image/webp", "animated": False, "id": "",
                                                             "sha256": ""}
    assert document["document"]["filename"] == "toprak_analizi.pdf"
    assert reaction["reaction"] == {"message_id": consent["wamid"], "emoji": "👍"}
    redis = live.app.extensions["redis"]
    sent: list[tuple[dict, bytes]] = [(audio["audio"], sample_voice_note()), (sticker["sticker"], sample_sticker()),
                                      (document["document"], sample_document())]
    for content, expected in sent:
        media = store.get_media(redis, content["id"])
        assert media is not None and media.content == expected and content["sha256"] == media.sha256

    # The farmer's bubble for each, as the page shows it.
    shown = [m for m in farmer.conversation() if m["dir"] == "in"][-4:]
    assert [m["kind"] for m in shown] == ["audio", "sticker", "document", "reaction"]
    assert shown[0]["voice"] is True and requests.get(live.base + shown[0]["audio_url"], timeout=5).ok
    assert requests.get(live.base + shown[1]["sticker_url"], timeout=5).headers["Content-Type"] == "image/webp"
    assert shown[2]["document"]["filename"] == "toprak_analizi.pdf" and shown[2]["text"] == "toprak analizi"
    assert (shown[3]["text"], shown[3]["reply_to"]) == ("👍", consent["wamid"])
    assert farmer.post("/reaction", wamid="wamid.nope", emoji="👍").status_code == 400
    assert farmer.post("/reaction", wamid=consent["wamid"], emoji="ok").status_code == 400


def test_an_album_is_separate_image_messages_within_a_second(live):
    """Several photos chosen at once go as WhatsApp delivers an album: one image message each."""
    farmer = SimFarmer(live.base, "905301113366")
    photos = [_png(30_000) for _ in range(3)]
    for index, photo in enumerate(photos):
        response = _upload(live.base, "/photo", farmer.phone, photo, f"{index}.png", caption="" if index else "üst")
        assert response.status_code == 200, response.text
    rows = _inbound(live, "+905301113366")
    assert [m.type for m in rows] == ["image"] * 3
    assert len({m.wamid for m in rows}) == 3
    stamps = [int(m.payload["timestamp"]) for m in rows if m.payload is not None]
    assert max(stamps) - min(stamps) <= 1
    assert [m["kind"] for m in farmer.conversation() if m["dir"] == "in"] == ["image"] * 3


def test_the_voice_note_is_a_valid_ogg_opus_file():
    data, pages, offset = sample_voice_note(), [], 0
    while offset < len(data):
        header = struct.unpack_from("<4sBBqIIIB", data, offset)
        assert header[0] == b"OggS"
        size = 27 + header[7] + sum(data[offset + 27:offset + 27 + header[7]])
        page = data[offset:offset + size]
        assert struct.unpack_from("<I", page, 22)[0] == chat_crc(page[:22] + b"\0\0\0\0" + page[26:])
        pages.append((header[2], header[3], page[27 + header[7]:]))
        offset += size
    assert [flags for flags, _, _ in pages] == [0x02, 0, 0x04]  # first, tags, last
    assert pages[0][2].startswith(b"OpusHead") and pages[1][2].startswith(b"OpusTags")
    assert pages[-1][1] == 312 + 2 * 48000  # two seconds at 48 kHz after the pre-skip


def chat_crc(data: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected), written independently of the one under test."""
    table = []
    for byte in range(256):
        value = byte << 24
        for _ in range(8):
            value = ((value << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if value & 0x80000000 else (value << 1) & 0xFFFFFFFF
        table.append(value)
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


def test_the_pages_words_are_turkish_with_english_complete():
    assert LABELS["tr"].keys() == LABELS["en"].keys()
    for locale, labels in LABELS.items():
        for key, text in labels.items():
            assert set(re.findall(r"{(\w+)}", text)) == set(re.findall(r"{(\w+)}", LABELS["tr"][key])), (locale, key)
    html = (STATIC / "chat.html").read_text()
    script = (STATIC / "chat.js").read_text()
    used = set(re.findall(r'data-label(?:-placeholder|-title)?="(\w+)"', html))
    used |= set(re.findall(r'\bL\("(\w+)"', script))
    assert used and used <= LABELS["tr"].keys(), used - LABELS["tr"].keys()
    # What the page shows before its script runs is the Turkish text.
    for key, text in re.findall(r'data-label="(\w+)"[^>]*>([^<]+)<', html):
        assert text == LABELS["tr"][key], key
    assert '<html lang="tr">' in html


def test_the_sample_leaves_are_named_in_both_languages(client):
    samples = client.get("/dev/chat/api/config").json["samples"]
    assert [s["name"] for s in samples] == list(SAMPLES)
    assert [LABELS["en"][s["label"]] for s in samples] == ["Healthy leaf", "Yellowing leaf", "Spotted leaf",
                                                           "Dried edges"]
    assert LABELS["tr"][samples[0]["label"]] == "Sağlıklı yaprak"


def test_config_gives_the_limits_and_both_languages(client):
    config = client.get("/dev/chat/api/config").json
    assert config["media_limits"] == {"image": 5 * MB, "audio": 16 * MB, "document": 100 * MB, "sticker": 500 * 1024}
    assert config["labels"] == json.loads(json.dumps(LABELS)) and "👍" in config["reactions"]


@pytest.mark.skipif(REAL_REDIS, reason="with a real Redis the worker is a `flask worker` process, not a thread")
def test_the_jobs_dashboard_lists_the_embedded_worker(live):
    """The embedded worker thread runs RQ in short bursts (registered only meanwhile): the page lists it."""
    make_staff(live.app, "admin", "admin@ziraai.test")
    auth = ("admin@ziraai.test", PASSWORD)
    page = requests.get(f"{live.base}/admin/rq/", auth=auth, timeout=10).text
    assert "Workers (1)" in page and "embedded worker (thread in process" in page
    assert "inbound, analysis, default" in page and "No worker is registered" not in page


def test_the_jobs_dashboard_names_the_embedded_worker_alike_inside_its_burst(app, client):
    """Inside a burst RQ registers the thread's worker under a generated name: the page shows it once,
    under the same name as between bursts."""
    make_staff(app, "admin", "admin@ziraai.test")
    wait_until(lambda: not embedded_worker_alive(), 10, what="earlier tests' worker threads to end")
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name=EMBEDDED_WORKER_THREAD, daemon=True)
    thread.start()
    redis = app.extensions["redis"]
    worker = ThreadWorker([get_queue(q, redis) for q in QUEUE_NAMES], connection=redis)
    worker.register_birth()
    try:
        page = client.get("/admin/rq/", auth=("admin@ziraai.test", PASSWORD)).get_data(as_text=True)
    finally:
        worker.register_death()
        stop.set()
        thread.join()
    assert "Workers (1)" in page and page.count("embedded worker (thread in process") == 1
    assert worker.name not in page


def test_the_jobs_dashboard_lists_no_embedded_worker_without_the_thread(app, client):
    make_staff(app, "admin", "admin@ziraai.test")
    wait_until(lambda: not embedded_worker_alive(), 10, what="earlier tests' worker threads to end")
    page = client.get("/admin/rq/", auth=("admin@ziraai.test", PASSWORD)).get_data(as_text=True)
    assert "Workers (0)" in page and "embedded worker" not in page
