"""The console's support pages: conversations, a farmer's page (transcript, takeover, replies, notes,
deletion), the deletion queue, failed jobs and canned replies, through the Flask test client."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from html import unescape
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image, ImageDraw
from sqlalchemy import func, select

from models import Analysis, AuditLog, CannedReply, Farmer, Message, SupportNote, UsageLedger, utcnow
from services import quota
from services.queue import ANALYSIS, get_queue
from tests.admin_helpers import PASSWORD
from tests.chat import Farmer as ChatFarmer
from tests.chat import GraphStub, onboarded_farmer
from tests.console_helpers import csrf, form_nonce, post, post_twice_at_once, signed_in
from tests.helpers import GRAPH, run_jobs

PHONE = "+905321234567"


@pytest.fixture
def chat(app: Flask, graph: GraphStub) -> ChatFarmer:
    return onboarded_farmer(app, graph)


@pytest.fixture
def farmer_id(chat: ChatFarmer, session) -> int:
    return session.scalar(select(Farmer.id).where(Farmer.phone == PHONE))


@pytest.fixture
def supporter(app: Flask, client: FlaskClient) -> int:
    return signed_in(app, client, "support")


def page(client: FlaskClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


# --- roles ------------------------------------------------------------------------------------------


SUPPORT_PAGES = ("/console/support", "/console/support/deletions", "/console/support/failed-jobs",
                 "/console/support/canned")


def test_a_sponsor_gets_404_on_support_pages(app: Flask, client: FlaskClient, farmer_id: int) -> None:
    signed_in(app, client, "sponsor")
    for path in (*SUPPORT_PAGES, f"/console/support/farmers/{farmer_id}"):
        assert client.get(path).status_code == 404, path
    assert post(client, f"/console/support/farmers/{farmer_id}/takeover").status_code == 404


def test_without_a_session_support_pages_send_to_the_login_page(client: FlaskClient) -> None:
    response = client.get("/console/support")
    assert response.status_code == 302 and "/console/login" in response.headers["Location"]


def test_support_and_admin_open_every_support_page(app: Flask, client: FlaskClient, farmer_id: int) -> None:
    for role in ("support", "admin"):
        signed_in(app, client, role)
        for path in (*SUPPORT_PAGES, f"/console/support/farmers/{farmer_id}"):
            assert client.get(path).status_code == 200, (role, path)


def test_support_lands_on_the_conversations(app: Flask, client: FlaskClient, supporter: int) -> None:
    response = client.get("/console")
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/support")


def test_an_unknown_farmer_is_a_404(client: FlaskClient, supporter: int) -> None:
    assert client.get("/console/support/farmers/999999").status_code == 404
    assert client.get("/console/support/farmers/99999999999999").status_code == 404


# --- conversations ----------------------------------------------------------------------------------


def test_the_conversations_list_shows_the_farmer_and_the_last_message(client: FlaskClient, supporter: int,
                                                                    farmer_id: int) -> None:
    html = page(client, "/console/support")
    assert "Mehmet Yılmaz" in html and f"/console/support/farmers/{farmer_id}" in html
    assert "Konuşmalar" in html  # Turkish by default


def test_the_conversations_search_and_filters(app: Flask, client: FlaskClient, supporter: int,
                                             farmer_id: int) -> None:
    assert "Mehmet Yılmaz" in page(client, "/console/support?q=5321234567")
    assert "Mehmet Yılmaz" in page(client, f"/console/support?q={farmer_id}")
    assert "Mehmet Yılmaz" not in page(client, "/console/support?q=nobody-like-this")
    assert "Mehmet Yılmaz" not in page(client, "/console/support?filter=human")
    post(client, f"/console/support/farmers/{farmer_id}/takeover", {"minutes": "30"})
    assert "Mehmet Yılmaz" in page(client, "/console/support?filter=human")


def test_a_page_past_the_end_of_the_conversations_shows_the_last_page(client: FlaskClient, supporter: int,
                                                                     farmer_id: int) -> None:
    html = page(client, "/console/support?page=999")
    assert "Mehmet Yılmaz" in html and "Eşleşen konuşma yok" not in html and "999 /" not in html


@pytest.mark.parametrize("fragment", ["0532 123", "532 123", "0532 12", "(532) 12", "+90 532-12"])
def test_a_piece_of_a_phone_number_is_found_as_people_write_it(client: FlaskClient, supporter: int,
                                                               farmer_id: int, fragment: str) -> None:
    assert "Mehmet Yılmaz" in page(client, "/console/support?q=" + quote(fragment))


def test_every_state_kind_status_and_template_field_has_a_label_for_staff() -> None:
    from bot.types import State
    from console.support import ANALYSIS_LABELS, LEDGER_LABELS, PARAM_LABELS, STATE_LABELS
    from models import AnalysisStatus, LedgerKind
    from translations.templates import TEMPLATES

    assert set(STATE_LABELS) == {s.value for s in State}
    assert set(LEDGER_LABELS) == {k.value for k in LedgerKind}
    assert set(ANALYSIS_LABELS) == {s.value for s in AnalysisStatus}
    assert {name for t in TEMPLATES.values() for name in t.param_names} <= set(PARAM_LABELS)


def test_the_farmers_page_speaks_turkish_not_raw_values(client: FlaskClient, supporter: int, farmer_id: int) -> None:
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert "<dd>menüde</dd>" in html and "<dd>menu</dd>" not in html
    assert "çiftçinin adı" in html and ". farmer name<input" not in html
    assert "menüde" in page(client, "/console/support")


def test_a_farmer_asking_for_a_person_shows_among_those_needing_a_human(client: FlaskClient, supporter: int,
                                                                          chat: ChatFarmer) -> None:
    chat.says("canlı destek")
    html = page(client, "/console/support?filter=human")
    assert "Mehmet Yılmaz" in html and "Bir kişiyle görüşmek istedi" in html


def test_a_bad_query_string_is_ignored_not_an_error(client: FlaskClient, supporter: int, farmer_id: int) -> None:
    for query in ("page=-1", "page=abc", "filter=nonsense", "page=99999999999", "q=" + "x" * 5000, "q=%00"):
        assert client.get(f"/console/support?{query}").status_code == 200, query


def test_listing_conversations_is_audited(client: FlaskClient, supporter: int, session) -> None:
    page(client, "/console/support")
    assert session.scalar(select(AuditLog.user_id).where(AuditLog.action == "console.conversations.read")) == supporter


# --- the farmer's page ------------------------------------------------------------------------------


def test_the_farmer_page_shows_the_transcript_with_ticks_and_is_audited(client: FlaskClient, supporter: int,
                                                                       farmer_id: int, session) -> None:
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert "Merhaba" in html and "bubble in" in html and "bubble out" in html
    assert "tick-accepted" in html  # the stub accepts; no status webhook came yet
    assert "KVKK" in html  # the consent event
    row = session.scalar(select(AuditLog).where(AuditLog.action == "console.farmer.read"))
    assert row.user_id == supporter and row.record_id == str(farmer_id)


def test_a_failed_delivery_shows_metas_code_and_its_meaning(app: Flask, client: FlaskClient, supporter: int,
                                                           farmer_id: int) -> None:
    with app.extensions["db"].session() as s, s.begin():
        s.add(Message(direction="out", phone=PHONE, farmer_id=farmer_id, type="text", text="Geç cevap",
                      status="failed", error_code=131047, error_title="Re-engagement message", attempts=1,
                      created_at=utcnow()))
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert "131047" in html and "yalnızca şablon" in html


def test_taking_over_silences_the_bot_and_releasing_restores_it(client: FlaskClient, supporter: int,
                                                                farmer_id: int, chat: ChatFarmer, session) -> None:
    response = post(client, f"/console/support/farmers/{farmer_id}/takeover", {"minutes": "60"})
    assert response.status_code == 302
    assert chat.says("kota") == []
    assert session.scalar(select(Message.status).where(Message.text == "kota")) == "processed"
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert "kota" in html and "support@ziraai.test" in html
    post(client, f"/console/support/farmers/{farmer_id}/release")
    assert chat.says("kota") != []


@pytest.mark.parametrize("minutes", ["0", "-5", "1441", "abc", "99999999999"])
def test_a_takeover_for_minutes_out_of_range_is_refused_not_taken_for_the_default(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, minutes: str) -> None:
    from models import Conversation

    response = post(client, f"/console/support/farmers/{farmer_id}/takeover", {"minutes": minutes})
    assert response.status_code == 302
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert "1 ile 1440" in html
    with app.extensions["db"].session() as s:
        conv = s.scalars(select(Conversation).where(Conversation.farmer_id == farmer_id)).first()
        assert conv is None or conv.taken_by is None


def test_a_takeover_expires_by_itself(app: Flask, client: FlaskClient, supporter: int, farmer_id: int,
                                      chat: ChatFarmer) -> None:
    from models import Conversation

    post(client, f"/console/support/farmers/{farmer_id}/takeover", {"minutes": "60"})
    with app.extensions["db"].session() as s, s.begin():
        conv = s.scalars(select(Conversation).where(Conversation.farmer_id == farmer_id)).one()
        conv.taken_until = utcnow() - timedelta(minutes=1)
    assert chat.says("kota") != []


def leaf_photo() -> bytes:
    image = Image.new("RGB", (640, 480), (60, 140, 50))
    ImageDraw.Draw(image).ellipse((100, 80, 400, 300), fill=(200, 180, 40))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def media_calls(graph: GraphStub, media_id: str) -> int:
    return sum(1 for c in graph.mock.calls if c.request.url == f"{GRAPH}/{media_id}")


def kept_photo(session, media_id: str) -> tuple[str | None, str | None]:
    row = session.execute(select(Message.photo_state, Message.photo_key).where(Message.media_id == media_id)).one()
    return row.photo_state, row.photo_key


def test_a_photo_sent_during_a_takeover_is_downloaded_and_shown_inline(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, chat: ChatFarmer, graph: GraphStub,
        session) -> None:
    post(client, f"/console/support/farmers/{farmer_id}/takeover", {"minutes": "30"})
    graph.serves_media("5550001", leaf_photo())
    assert chat.photo(caption="bu yapraklara bakar mısınız", media_id="5550001") == []  # only the inbound worker ran
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert "henüz saklanmadı, indiriliyor" in html and "[image]" not in html
    run_jobs(app)
    state, key = kept_photo(session, "5550001")
    assert state == "stored" and key is not None and key.startswith("support/")
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert "bu yapraklara bakar mısınız" in html and "[image]" not in html and "saklanmadı" not in html
    [src] = re.findall(r'<img class="photo" src="(/media/[^"]+)"', html)
    shown = client.get(src)
    assert shown.status_code == 200 and shown.data == app.extensions["storage"].get(key)
    assert Image.open(io.BytesIO(shown.data)).size == (640, 480)  # the optimised copy: within 800x600
    assert media_calls(graph, "5550001") == 1 and session.scalar(select(func.count()).select_from(Analysis)) == 0


def test_a_takeover_photo_whose_graph_error_is_transient_is_retried_and_kept(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, chat: ChatFarmer, graph: GraphStub,
        session) -> None:
    post(client, f"/console/support/farmers/{farmer_id}/takeover", {"minutes": "30"})
    graph.serves_media("5550006", status=500)
    graph.serves_media("5550006", leaf_photo())  # the second answer: responses gives them in order
    chat.photo(media_id="5550006")
    run_jobs(app)
    assert media_calls(graph, "5550006") == 2
    assert kept_photo(session, "5550006")[0] == "stored"
    assert page(client, f"/console/support/farmers/{farmer_id}").count('<img class="photo" src="/media/') == 1


@pytest.mark.parametrize(("answer", "says", "state", "calls"), [
    (lambda g: g.serves_media("5550007", status=500), "WhatsApp'tan indirilemedi", "not_downloaded", 4),
    (lambda g: g.serves_media("5550007", status=400, code=131052), "WhatsApp'tan indirilemedi", "not_downloaded", 1),
    (lambda g: g.serves_media("5550007", b"this is not a photo at all" * 10), "okunabilir bir fotoğraf değil",
     "rejected", 1),
])
def test_a_takeover_photo_that_cannot_be_kept_says_why(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, chat: ChatFarmer, graph: GraphStub,
        session, answer: Any, says: str, state: str, calls: int) -> None:
    post(client, f"/console/support/farmers/{farmer_id}/takeover", {"minutes": "30"})
    answer(graph)
    chat.photo(media_id="5550007")
    run_jobs(app)
    assert kept_photo(session, "5550007") == (state, None)
    assert media_calls(graph, "5550007") == calls  # a transient error: the first try and 3 retries
    html = unescape(page(client, f"/console/support/farmers/{farmer_id}"))
    assert "Devralma sırasında gönderilen fotoğraf" in html and says in html
    assert "[image]" not in html and '<img class="photo"' not in html


def test_a_photo_outside_a_takeover_never_submitted_is_not_downloaded(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, chat: ChatFarmer, graph: GraphStub,
        session) -> None:
    graph.serves_media("5550008", leaf_photo())
    assert chat.photo(media_id="5550008")  # the bot asks for the crop
    run_jobs(app)
    assert media_calls(graph, "5550008") == 0 and kept_photo(session, "5550008") == (None, None)
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert "Fotoğraf saklanmadı" in html and "ikisi de değil" in html and "[image]" not in html


def test_deleting_the_farmers_data_removes_the_photo_kept_during_a_takeover(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, chat: ChatFarmer, graph: GraphStub,
        session) -> None:
    post(client, f"/console/support/farmers/{farmer_id}/takeover", {"minutes": "30"})
    graph.serves_media("5550009", leaf_photo())
    chat.photo(media_id="5550009")
    run_jobs(app)
    key = session.scalar(select(Message.photo_key).where(Message.media_id == "5550009"))
    assert app.extensions["storage"].get(key)
    post(client, f"/console/support/farmers/{farmer_id}/delete", {"confirm": "yes"})
    with pytest.raises(KeyError):
        app.extensions["storage"].get(key)
    assert session.scalar(select(func.count()).select_from(Message).where(Message.photo_key.is_not(None))) == 0
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert "Fotoğraf, çiftçinin verileriyle birlikte silindi." in html and '<img class="photo"' not in html


def test_a_takeover_photo_downloaded_after_the_farmers_data_was_deleted_is_not_kept(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, chat: ChatFarmer, graph: GraphStub,
        session, monkeypatch: pytest.MonkeyPatch) -> None:
    import services.support_photos
    from services import deletion
    from services.photos import fetch_and_store

    post(client, f"/console/support/farmers/{farmer_id}/takeover", {"minutes": "30"})
    graph.serves_media("5550010", leaf_photo())
    chat.photo(media_id="5550010")
    stored: list[str] = []

    def deleted_meanwhile(*args: Any, **kwargs: Any) -> Any:  # the farmer's data goes while the photo downloads
        photo = fetch_and_store(*args, **kwargs)
        stored.append(photo.image_key)
        with app.extensions["db"].session() as s, s.begin():
            deletion.erase(s, farmer_id, supporter, utcnow())
        return photo

    monkeypatch.setattr(services.support_photos, "fetch_and_store", deleted_meanwhile)
    run_jobs(app)
    [key] = stored
    with pytest.raises(KeyError):
        app.extensions["storage"].get(key)
    assert session.scalar(select(func.count()).select_from(Message).where(Message.photo_key.is_not(None))) == 0


def test_a_takeover_photo_whose_job_was_lost_is_queued_by_the_sweeper(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, chat: ChatFarmer, graph: GraphStub,
        session) -> None:
    from services.sweeper import sweep_unqueued

    post(client, f"/console/support/farmers/{farmer_id}/takeover", {"minutes": "30"})
    graph.serves_media("5550011", leaf_photo())
    chat.photo(media_id="5550011")
    message_id = session.scalar(select(Message.id).where(Message.media_id == "5550011"))
    app.extensions["redis"].delete(f"rq:job:support-photo-{message_id}")  # as if the enqueue never reached Redis
    get_queue(ANALYSIS, app.extensions["redis"]).empty()
    assert sweep_unqueued(grace_seconds=0) == 1
    run_jobs(app)
    assert kept_photo(session, "5550011")[0] == "stored"
    assert sweep_unqueued(grace_seconds=0) == 0  # settled: nothing left to queue


def test_a_photo_of_an_analysis_is_shown_inline_and_one_being_analysed_says_so(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, chat: ChatFarmer) -> None:
    from models import Analysis
    from services.storage import new_key

    key = new_key("analysis", "jpg")
    chat.photo(media_id="5550002")
    chat.photo(media_id="5550003")
    with app.extensions["db"].session() as s, s.begin():
        s.add(Analysis(farmer_id=farmer_id, status="completed", media_id="5550002", media_ids=["5550002"],
                       image_key=key, image_keys=[key]))
        s.add(Analysis(farmer_id=farmer_id, status="processing", media_id="5550003", media_ids=["5550003"]))
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert html.count('<img class="photo" src="/media/') == 1
    assert "analizi onu indiriyor" in html and "[image]" not in html


def test_an_analysed_photo_the_retention_purge_deleted_says_so_not_that_it_is_downloading(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, chat: ChatFarmer) -> None:
    chat.photo(media_id="5550010")
    with app.extensions["db"].session() as s, s.begin():  # as `flask purge-media` leaves a completed analysis
        s.add(Analysis(farmer_id=farmer_id, status="completed", media_id="5550010", media_ids=["5550010"]))
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert "Analiz fotoğrafı: saklama süresi dolunca silindi." in html and "indiriyor" not in html


def test_a_deleted_farmers_photo_says_it_was_deleted(client: FlaskClient, supporter: int, farmer_id: int,
                                                     chat: ChatFarmer) -> None:
    chat.photo(media_id="5550004")
    post(client, f"/console/support/farmers/{farmer_id}/delete", {"confirm": "yes"})
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert "Fotoğraf, çiftçinin verileriyle birlikte silindi." in html and "[image]" not in html


def test_a_reply_reaches_the_farmer_and_names_its_writer(client: FlaskClient, supporter: int, farmer_id: int,
                                                         graph: GraphStub, session) -> None:
    response = post(client, f"/console/support/farmers/{farmer_id}/reply", {"text": "Merhaba, ben destekten Ayşe."})
    assert response.status_code == 302
    assert graph.sent[-1]["text"]["body"] == "Merhaba, ben destekten Ayşe." and graph.sent[-1]["to"] == PHONE
    row = session.scalar(select(Message).where(Message.text == "Merhaba, ben destekten Ayşe."))
    assert row.staff_user_id == supporter
    assert "Merhaba, ben destekten Ayşe." in page(client, f"/console/support/farmers/{farmer_id}")


def test_free_text_is_refused_outside_the_window_and_the_page_offers_templates(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, graph: GraphStub) -> None:
    with app.extensions["db"].session() as s, s.begin():
        s.get(Farmer, farmer_id).last_inbound_at = utcnow() - timedelta(hours=25)
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert 'name="template"' in html and 'id="reply-text"' not in html
    before = len(graph.sent)
    response = post(client, f"/console/support/farmers/{farmer_id}/reply", {"text": "Merhaba, ilacı akşam sıkın"})
    refused = response.get_data(as_text=True)
    assert response.status_code == 400 and "serbest metin gönderilemez" in refused and len(graph.sent) == before
    assert "Merhaba, ilacı akşam sıkın" in refused  # what was typed is not lost
    post(client, f"/console/support/farmers/{farmer_id}/template",
         {"template": "usage_alert_tr", "p0": "1", "p1": "5", "p2": "yarın 00:00"})
    assert graph.sent[-1]["type"] == "template" and graph.sent[-1]["template"]["name"] == "usage_alert_tr"


def test_a_reply_refused_as_too_long_comes_back_in_the_box(client: FlaskClient, supporter: int, farmer_id: int,
                                                            graph: GraphStub) -> None:
    before = len(graph.sent)
    typed = "Ayrıntılı bilgi: " + "ş" * 4096
    response = post(client, f"/console/support/farmers/{farmer_id}/reply", {"text": typed})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "en çok 4096" in html and len(graph.sent) == before
    assert f'id="reply-text" maxlength="4096" required>{typed}</textarea>' in html


@pytest.mark.parametrize("typed", ["", "   \n  "])
def test_an_empty_and_a_blank_reply_are_refused_alike_with_the_text_kept(client: FlaskClient, supporter: int,
                                                                        farmer_id: int, graph: GraphStub,
                                                                        typed: str) -> None:
    before = len(graph.sent)
    response = post(client, f"/console/support/farmers/{farmer_id}/reply", {"text": typed})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "Önce bir mesaj yazın." in html and len(graph.sent) == before
    assert f'id="reply-text" maxlength="4096" required>{typed}</textarea>' in html


def test_inside_the_window_the_page_shows_the_countdown(client: FlaskClient, supporter: int, farmer_id: int) -> None:
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert 'class="countdown"' in html and "data-deadline=" in html and 'id="reply-text"' in html


def test_a_canned_reply_fills_the_reply_box(app: Flask, client: FlaskClient, supporter: int, farmer_id: int) -> None:
    with app.extensions["db"].session() as s, s.begin():
        row = CannedReply(title="Selam", text="Merhaba, size nasıl yardımcı olabilirim?")
        s.add(row)
        s.flush()
        canned_id = row.id
    html = page(client, f"/console/support/farmers/{farmer_id}?canned={canned_id}")
    assert ">Merhaba, size nasıl yardımcı olabilirim?</textarea>" in html


def test_control_characters_in_forms_are_dropped_not_an_error(client: FlaskClient, supporter: int, farmer_id: int,
                                                              graph: GraphStub) -> None:
    response = post(client, f"/console/support/farmers/{farmer_id}/reply", {"text": "Mer\x00haba"})
    assert response.status_code == 302 and graph.sent[-1]["text"]["body"] == "Merhaba"
    assert post(client, f"/console/support/farmers/{farmer_id}/notes", {"text": "\x00"}).status_code == 400


def sign_in_again(client: FlaskClient, login_address: str) -> Any:
    """Sign in on the login page a refused form was sent to, as a browser does (its `next` kept)."""
    target = parse_qs(urlsplit(login_address).query)["next"][0]
    return post(client, "/console/login", {"email": "support@ziraai.test", "password": PASSWORD, "next": target})


def test_a_reply_sent_after_the_session_expired_comes_back_in_its_box_after_signing_in_again(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, graph: GraphStub, session) -> None:
    redis = app.extensions["redis"]
    for key in list(redis.scan_iter("console:session:*")):  # the idle time ran out
        redis.delete(key)
    sent = len(graph.sent)
    response = post(client, f"/console/support/farmers/{farmer_id}/reply", {"text": "Yazdığım uzun yanıt"})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert "next=/console/support/farmers/" in location.replace("%2F", "/") and "expired=1" in location
    assert "/reply" not in location.replace("%2F", "/")
    assert "Yazdıklarınız saklandı" in client.get(location).get_data(as_text=True)
    signed = sign_in_again(client, location)
    assert signed.headers["Location"].endswith(f"/console/support/farmers/{farmer_id}")
    html = page(client, signed.headers["Location"])
    assert ">Yazdığım uzun yanıt</textarea>" in html and "gönderilmedi" in html
    assert len(graph.sent) == sent
    assert ">Yazdığım uzun yanıt</textarea>" not in page(client, f"/console/support/farmers/{farmer_id}")  # once


def test_a_note_saved_from_a_tab_signed_out_elsewhere_comes_back_in_its_box(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, session) -> None:
    stale_token = csrf(client)
    post(client, "/console/logout")  # in another tab
    response = client.post(f"/console/support/farmers/{farmer_id}/notes",
                           data={"csrf_token": stale_token, "text": "Tarla notu, kaybolmasın"})
    assert response.status_code == 302 and "login" in response.headers["Location"]
    signed = sign_in_again(client, response.headers["Location"])
    html = page(client, signed.headers["Location"])
    assert ">Tarla notu, kaybolmasın</textarea>" in html
    assert session.scalar(select(func.count()).select_from(SupportNote)) == 0


def test_a_reply_kept_for_one_person_is_never_shown_to_another_signing_in_in_that_browser(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, session) -> None:
    signed_in(app, app.test_client(), "support", "colleague@ziraai.test")
    farmer_page = f"/console/support/farmers/{farmer_id}"
    stale_token = csrf(client)
    post(client, "/console/logout")  # in another tab
    client.post(f"{farmer_page}/reply", data={"csrf_token": stale_token, "text": "Özel yanıt taslağım"})

    post(client, "/console/login", {"email": "colleague@ziraai.test", "password": PASSWORD, "next": farmer_page})
    as_colleague = page(client, farmer_page)
    post(client, "/console/logout")
    post(client, "/console/login", {"email": "support@ziraai.test", "password": PASSWORD, "next": farmer_page})
    as_writer = page(client, farmer_page)

    assert "Özel yanıt taslağım" not in as_colleague  # never shown to someone else
    assert "Özel yanıt taslağım" not in as_writer  # dropped when someone else signed in, not passed on
    assert not list(app.extensions["redis"].scan_iter("console:draft:*"))


def test_a_note_is_saved_with_its_author(client: FlaskClient, supporter: int, farmer_id: int, session) -> None:
    post(client, f"/console/support/farmers/{farmer_id}/notes", {"text": "Seracı, Antalya."})
    note = session.scalar(select(SupportNote))
    assert note.author_id == supporter and note.text == "Seracı, Antalya."
    assert "Seracı, Antalya." in page(client, f"/console/support/farmers/{farmer_id}")
    post(client, f"/console/support/farmers/{farmer_id}/notes", {"text": "   "})
    assert session.scalar(select(func.count()).select_from(SupportNote)) == 1


def test_a_note_form_posted_twice_at_once_or_again_saves_one_note(app: Flask, client: FlaskClient, supporter: int,
                                                                  farmer_id: int, session) -> None:
    farmer_page = f"/console/support/farmers/{farmer_id}"
    action = f"{farmer_page}/notes"

    at_once = post_twice_at_once(app, client, action, {"text": "Seracı, Antalya.",
                                                       "form_nonce": form_nonce(page(client, farmer_page), action)})
    nonce = form_nonce(page(client, farmer_page), action)
    post(client, action, {"text": "Bahçe, Konya.", "form_nonce": nonce})
    again = post(client, action, {"text": "Bahçe, Konya.", "form_nonce": nonce}, follow_redirects=True)

    assert [a.status_code for a in at_once] == [302, 302]
    assert again.request.path == farmer_page and "Bu form zaten gönderildi" in again.get_data(as_text=True)
    notes = session.scalars(select(SupportNote.text).order_by(SupportNote.id)).all()
    assert notes == ["Seracı, Antalya.", "Bahçe, Konya."]


def test_a_refused_note_keeps_its_text_in_the_box(client: FlaskClient, supporter: int, farmer_id: int,
                                                   session) -> None:
    long_note = "Sera " * 450  # 2,250 characters: over the limit
    refused = post(client, f"/console/support/farmers/{farmer_id}/notes", {"text": long_note})
    assert refused.status_code == 400
    assert f'required>{long_note}</textarea>' in refused.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(SupportNote)) == 0


def test_a_note_too_long_is_refused_as_too_long_with_the_limit_not_as_empty(client: FlaskClient, supporter: int,
                                                                            farmer_id: int) -> None:
    html = post(client, f"/console/support/farmers/{farmer_id}/notes", {"text": "x" * 2001}).get_data(as_text=True)
    assert "Not çok uzun: en fazla 2000 karakter olabilir, bu not 2001 karakter." in html
    empty = post(client, f"/console/support/farmers/{farmer_id}/notes", {"text": "  "}).get_data(as_text=True)
    assert "Önce notu yazın." in empty and "çok uzun" not in empty


# --- deletion ---------------------------------------------------------------------------------------


def test_support_records_a_deletion_request_and_it_is_queued_with_days_left(
        client: FlaskClient, supporter: int, farmer_id: int, session) -> None:
    post(client, f"/console/support/farmers/{farmer_id}/deletion-request")
    assert session.get(Farmer, farmer_id).deletion_requested_at is not None
    html = page(client, "/console/support/deletions")
    assert "Mehmet Yılmaz" in html and ">29<" in html


def test_deleting_from_the_console_needs_the_box_ticked(client: FlaskClient, supporter: int, farmer_id: int,
                                                         session) -> None:
    post(client, f"/console/support/farmers/{farmer_id}/delete")
    assert session.get(Farmer, farmer_id).deleted_at is None


def test_deleting_anonymises_the_farmer_tells_them_and_keeps_the_ledger(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, graph: GraphStub, session) -> None:
    with app.extensions["db"].session() as s, s.begin():
        from models import Analysis

        analysis = Analysis(farmer_id=farmer_id, status="completed", crop="domates")
        s.add(analysis)
        s.flush()
        assert quota.charge(s, farmer_id, utcnow(), analysis_id=analysis.id).ok
    response = post(client, f"/console/support/farmers/{farmer_id}/delete", {"confirm": "yes"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/console/support/deletions")
    assert "silindi" in graph.sent[-1]["text"]["body"]
    farmer = session.get(Farmer, farmer_id)
    session.refresh(farmer)
    assert farmer.phone is None and farmer.profile_name is None and farmer.deleted_at is not None
    assert session.scalar(select(func.count()).select_from(Message).where(Message.phone == PHONE)) == 0
    assert session.scalar(select(func.count()).select_from(UsageLedger).where(UsageLedger.farmer_id == farmer_id)) == 1
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert "Mehmet" not in html and "5321234567" not in html


@pytest.mark.parametrize(("action", "refused", "corrected"), [
    ("delete", {}, {"confirm": "yes"}),
    ("takeover", {"minutes": "abc"}, {"minutes": "30"}),
])
def test_a_form_refused_with_a_redirect_is_done_when_sent_again_corrected(
        app: Flask, client: FlaskClient, supporter: int, farmer_id: int, session, action: str,
        refused: dict[str, str], corrected: dict[str, str]) -> None:
    path = f"/console/support/farmers/{farmer_id}/{action}"
    nonce = "one-form-shown-once"

    first = post(client, path, {**refused, "form_nonce": nonce}, follow_redirects=True)
    again = post(client, path, {**corrected, "form_nonce": nonce}, follow_redirects=True)

    assert "zaten gönderildi" not in first.get_data(as_text=True)
    assert "zaten gönderildi" not in again.get_data(as_text=True)
    farmer = session.get(Farmer, farmer_id)
    session.refresh(farmer)
    if action == "delete":
        assert farmer.deleted_at is not None
    else:
        assert session.scalar(select(func.count()).select_from(AuditLog)
                              .where(AuditLog.action == "farmer.takeover")) == 1


def test_a_canned_reply_typed_after_the_session_ended_comes_back_in_its_box(
        app: Flask, client: FlaskClient, session) -> None:
    signed_in(app, client, "admin")
    post(client, "/console/support/canned", {"title": "Selam", "text": "Merhaba!"})
    row_id = session.scalar(select(CannedReply.id))
    stale = csrf(client)
    post(client, "/console/logout")  # in another tab
    for form in ({"title": "Yeni başlık", "text": "Yeni yanıt, kaybolmasın"},
                 {"id": str(row_id), "title": "Selam", "text": "Merhaba, değişti"}):
        response = client.post("/console/support/canned", data={"csrf_token": stale, **form})
        login = response.headers["Location"]
        assert "Yazdıklarınız saklandı" in client.get(login).get_data(as_text=True)
        signed = post(client, "/console/login", {"email": "admin@ziraai.test", "password": PASSWORD,
                                                  "next": parse_qs(urlsplit(login).query)["next"][0]})
        html = page(client, signed.headers["Location"])
        assert signed.headers["Location"] == "/console/support/canned" and form["text"] + "</textarea>" in html
        assert f'value="{form["title"]}"' in html
        stale = csrf(client)
        post(client, "/console/logout")
    assert session.scalars(select(CannedReply.text)).all() == ["Merhaba!"]


def test_a_deleted_farmers_page_offers_no_actions_and_posts_change_nothing(
        client: FlaskClient, supporter: int, farmer_id: int, graph: GraphStub, session) -> None:
    post(client, f"/console/support/farmers/{farmer_id}/delete", {"confirm": "yes"})
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert "Veriler silindi" in html and 'action$="/reply"' not in html and "/takeover" not in html
    sent = len(graph.sent)
    for action, data in (("reply", {"text": "Merhaba"}), ("takeover", {}), ("notes", {"text": "x"}),
                         ("deletion-request", {}), ("delete", {"confirm": "yes"})):
        response = post(client, f"/console/support/farmers/{farmer_id}/{action}", data, follow_redirects=True)
        assert response.status_code == 200 and "Bu çiftçinin verileri silindi." in response.get_data(as_text=True)
    assert len(graph.sent) == sent and session.scalar(select(func.count()).select_from(SupportNote)) == 0


def test_a_deleted_farmer_is_shown_as_deleted_not_as_opted_out(client: FlaskClient, supporter: int,
                                                               farmer_id: int, session) -> None:
    post(client, f"/console/support/farmers/{farmer_id}/delete", {"confirm": "yes"})
    assert session.get(Farmer, farmer_id).opted_out_at is not None  # still: nothing is ever sent to them
    html = page(client, f"/console/support/farmers/{farmer_id}")
    assert "Çiftçinin verileri silindi" in html
    assert "DUR" not in html and "Bildirimleri kapattı" not in html
    assert f"/console/support/farmers/{farmer_id}" not in page(client, "/console/support?filter=opted_out")


# --- failed jobs and canned replies -----------------------------------------------------------------


def boom(value: int) -> None:
    raise RuntimeError(f"kaboom {value}\nValueError: boom")


def fail_job(app: Flask, queue: str, job_id: str) -> None:
    from rq import SimpleWorker

    from services.queue import get_queue

    redis = app.extensions["redis"]
    get_queue(queue, redis).enqueue("tests.test_console_support.boom", 1, job_id=job_id)
    SimpleWorker([get_queue(queue, redis)], connection=redis).work(burst=True)


def test_failed_jobs_are_listed_and_retried_with_the_refund_rule(app: Flask, client: FlaskClient, supporter: int,
                                                                 farmer_id: int) -> None:
    from models import Analysis
    from services.queue import get_queue

    with app.extensions["db"].session() as s, s.begin():
        analysis = Analysis(farmer_id=farmer_id, status="failed", crop="domates")
        s.add(analysis)
        s.flush()
        analysis_job = f"analysis-{analysis.id}"
    fail_job(app, "inbound", "inbound-77")
    fail_job(app, "analysis", analysis_job)
    html = page(client, "/console/support/failed-jobs")
    assert "inbound-77" in html and "ValueError: boom" in html and analysis_job in html
    assert 'name="force"' in html  # only the refunded analysis asks for it
    post(client, "/console/support/failed-jobs/retry", {"job_id": "inbound-77", "queue": "inbound"})
    assert "inbound-77" in get_queue("inbound", app.extensions["redis"]).job_ids
    refused = post(client, "/console/support/failed-jobs/retry", {"job_id": analysis_job, "queue": "analysis"},
                   follow_redirects=True)
    assert "iade edildi" in refused.get_data(as_text=True)
    assert analysis_job not in get_queue("analysis", app.extensions["redis"]).job_ids
    post(client, "/console/support/failed-jobs/retry", {"job_id": analysis_job, "queue": "analysis", "force": "yes"})
    assert analysis_job in get_queue("analysis", app.extensions["redis"]).job_ids
    missing = post(client, "/console/support/failed-jobs/retry", {"job_id": "../../etc", "queue": "x"},
                   follow_redirects=True)
    assert missing.status_code == 200 and "Böyle bir başarısız iş yok" in missing.get_data(as_text=True)


def test_only_an_admin_edits_canned_replies(app: Flask, client: FlaskClient, session) -> None:
    signed_in(app, client, "support")
    assert post(client, "/console/support/canned", {"title": "A", "text": "B"}).status_code == 404
    assert 'name="title"' not in page(client, "/console/support/canned")
    signed_in(app, client, "admin")
    post(client, "/console/support/canned", {"title": "Selam", "text": "Merhaba!"})
    row = session.scalar(select(CannedReply))
    assert (row.title, row.text) == ("Selam", "Merhaba!")
    post(client, "/console/support/canned", {"id": str(row.id), "title": "Selam", "text": "Merhaba, hoş geldiniz!"})
    session.refresh(row)
    assert row.text == "Merhaba, hoş geldiniz!"
    post(client, f"/console/support/canned/{row.id}/delete")
    assert session.scalar(select(func.count()).select_from(CannedReply)) == 0
    for stale_or_forged in (str(row.id), "abc"):  # an edit of a deleted reply, or a form not ours, creates nothing
        refused = post(client, "/console/support/canned", {"id": stale_or_forged, "title": "Selam", "text": "Merhaba"})
        html = refused.get_data(as_text=True)
        assert refused.status_code == 400 and "Böyle bir hazır yanıt yok." in html
        assert ">Merhaba</textarea>" in html  # what was typed, in the new reply's box
    assert session.scalar(select(func.count()).select_from(CannedReply)) == 0


def test_the_demo_data_gives_the_support_pages_something_to_show(app: Flask, client: FlaskClient,
                                                                  session) -> None:
    from devtools.demo import seed_demo

    seed_demo(app.extensions["db"])
    seed_demo(app.extensions["db"])  # idempotent
    signed_in(app, client, "support")
    assert "Mehmet Yılmaz" in page(client, "/console/support?filter=human")
    assert "Fatma Kaya" in page(client, "/console/support/deletions")
    assert "Karşılama" in page(client, "/console/support/canned")
    taken_id = session.scalar(select(Farmer.id).where(Farmer.profile_name == "Mehmet Yılmaz"))
    html = page(client, f"/console/support/farmers/{taken_id}")
    assert "Mersin" in html and "admin@ziraai.local" in html


def actions_via_console(session) -> dict[str, object]:
    session.expire_all()
    return {row.action: (row.details or {}).get("via") for row in session.scalars(select(AuditLog))}


def test_every_change_made_in_the_support_pages_is_audited_as_done_in_the_console(
        app: Flask, client: FlaskClient, farmer_id: int, session) -> None:
    signed_in(app, client, "admin")
    post(client, "/console/support/canned", {"title": "Selam", "text": "Merhaba!"})
    canned_id = session.scalar(select(CannedReply.id))
    post(client, "/console/support/canned", {"id": str(canned_id), "title": "Selam", "text": "Merhaba, hoş geldiniz!"})
    post(client, f"/console/support/canned/{canned_id}/delete")
    base = f"/console/support/farmers/{farmer_id}"
    post(client, base + "/notes", {"text": "Domates tarlası, sulama sorunu"})
    post(client, base + "/takeover", {"minutes": "30"})
    post(client, base + "/reply", {"text": "Merhaba, size yardımcı olayım."})
    post(client, base + "/release")
    post(client, base + "/deletion-request")
    post(client, base + "/delete", {"confirm": "yes"})
    via = actions_via_console(session)
    for action in ("canned_reply.create", "canned_reply.update", "canned_reply.delete", "farmer.note",
                   "farmer.takeover", "farmer.reply", "farmer.takeover.release", "farmer.deletion.request",
                   "farmer.deletion.done"):
        assert via.get(action) == "console", action
    note = session.scalar(select(AuditLog).where(AuditLog.action == "farmer.note"))
    assert "sulama" not in str(note.details)  # what the note says stays out of the log

