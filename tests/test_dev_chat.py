"""The `/dev/chat` simulator: its API turns each farmer action into a signed webhook our app accepts,
and the conversation poll shows the bot's replies (through the Graph API stand-in) with their ticks."""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image
from sqlalchemy import select

from devtools import store
from devtools import webhook_bodies as wb
from devtools.chat import view
from models import Direction, Message
from services.whatsapp import outbox
from services.whatsapp.messages import build_template as build
from tests.dev_live import SimFarmer, has_text, live_app, offers
from tests.helpers import PHONE_NUMBER_ID, fixture_json, free_port, wait_until


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
        outbox.queue_message(s, "+905301112255", out)
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
    ("/text", {"phone": "905301112266"}, "text is required"),
    ("/text", {"phone": "abc", "text": "x"}, "phone"),
    ("/text", {"phone": "12", "text": "x"}, "phone"),
    ("/text", {"phone": "905301112266", "text": "x" * 4097}, "at most 4096"),
    ("/photo", {"phone": "905301112266", "sample": "../../app.py"}, "sample"),
    ("/location", {"phone": "905301112266", "latitude": 91, "longitude": 0}, "latitude"),
    ("/location", {"phone": "905301112266", "latitude": True, "longitude": 0}, "latitude"),
    ("/location", {"phone": "905301112266", "province": "Atlantis"}, "province"),
    ("/reply", {"phone": "905301112266", "title": "Nothing"}, "no bot message"),
    ("/reply", {"phone": "905301112266"}, "id or the title"),
])
def test_bad_input_is_a_clear_400(client, path, payload, fragment):
    response = client.post(f"/dev/chat/api{path}", json=payload)
    assert response.status_code == 400
    assert fragment in response.json["detail"]
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
    assert not_image.status_code == 400 and "JPEG, PNG or WebP" in not_image.json["detail"]
    assert client.get("/dev/chat/api/conversation?phone=x").status_code == 400
    assert client.get("/dev/chat/api/media/123").status_code == 404


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
