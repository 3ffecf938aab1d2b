"""The outbound WhatsApp client and outbox, against a Graph API mocked with `responses`."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
import responses
from sqlalchemy import select

from models import Message, utcnow
from services import whatsapp
from services.whatsapp import messages as wa
from services.whatsapp.client import WhatsAppClient
from services.whatsapp.errors import GraphAPIError, LimitError, MediaError, Policy, policy_for
from services.whatsapp.outbox import AUTH_ALERT_KEY, queue_message, send_pending, send_queued, sent_key
from tests.helpers import GRAPH, PHONE_NUMBER_ID, send_outbox

TO = "+905321234567"
MESSAGES_URL = f"{GRAPH}/{PHONE_NUMBER_ID}/messages"


def ok(wamid: str = "wamid.OUT1") -> dict:
    return {"messaging_product": "whatsapp", "contacts": [{"input": TO, "wa_id": TO[1:]}],
            "messages": [{"id": wamid}]}


def graph_error(code: int, message: str = "error", status: int = 400) -> dict:
    return {"status": status, "json": {"error": {"message": message, "type": "OAuthException", "code": code,
                                                 "error_data": {"messaging_product": "whatsapp", "details": message},
                                                 "fbtrace_id": "A1"}}}


@pytest.fixture
def graph():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def sent_bodies(graph) -> list[dict]:
    return [json.loads(c.request.body) for c in graph.calls if c.request.url == MESSAGES_URL]


# --- building messages and Meta's limits -------------------------------------------------------


def test_each_kind_of_message_is_sent_as_graph_expects(app, graph):
    graph.post(MESSAGES_URL, json=ok())
    client = whatsapp.client()
    client.send(wa.text(TO, "Merhaba", reply_to="wamid.IN").body)
    client.send(wa.buttons(TO, "Ne yapmak istersiniz?", [("menu:analyze", "Analiz gönder"),
                                                          ("menu:quota", "Kalan hakkım")], footer="ZiraAI").body)
    client.send(wa.list_message(TO, "Ürününüzü seçin", "Ürünler",
                                [wa.Section("Sebze", [wa.Row("crop:domates", "Domates", "Sebze"),
                                                      wa.Row("crop:biber", "Biber")])]).body)
    client.send(wa.image(TO, link="https://example.test/a.jpg", caption="Sonuç").body)
    client.send(wa.template(TO, "analysis_complete_tr", ["Mehmet", "Domates", "7/10"], expected_params=3).body)
    client.mark_read("wamid.IN", typing=True)
    text, buttons, lst, image, template, read = sent_bodies(graph)
    assert text == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": TO, "type": "text",
                    "text": {"body": "Merhaba", "preview_url": False}, "context": {"message_id": "wamid.IN"}}
    assert [b["reply"] for b in buttons["interactive"]["action"]["buttons"]] == [
        {"id": "menu:analyze", "title": "Analiz gönder"}, {"id": "menu:quota", "title": "Kalan hakkım"}]
    assert buttons["interactive"]["footer"] == {"text": "ZiraAI"}
    assert lst["interactive"]["action"]["sections"][0]["rows"][1] == {"id": "crop:biber", "title": "Biber"}
    assert image["image"] == {"link": "https://example.test/a.jpg", "caption": "Sonuç"}
    assert template["template"] == {
        "name": "analysis_complete_tr", "language": {"code": "tr"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Mehmet"},
                                                        {"type": "text", "text": "Domates"},
                                                        {"type": "text", "text": "7/10"}]}]}
    assert read == {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN",
                    "typing_indicator": {"type": "text"}}
    assert all(c.request.headers["Authorization"] == "Bearer test-token-abc" for c in graph.calls)


ROWS = [wa.Row(f"r{i}", f"Row {i}") for i in range(11)]


@pytest.mark.parametrize("build", [
    lambda: wa.text(TO, "x" * 4097),
    lambda: wa.text(TO, ""),
    lambda: wa.buttons(TO, "body", [("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")]),
    lambda: wa.buttons(TO, "body", []),
    lambda: wa.buttons(TO, "body", [("a", "x" * 21)]),
    lambda: wa.buttons(TO, "body", [("a", "A"), ("a", "B")]),
    lambda: wa.buttons(TO, "body", [("x" * 257, "A")]),
    lambda: wa.buttons(TO, "x" * 1025, [("a", "A")]),
    lambda: wa.buttons(TO, "body", [("a", "A")], header="h" * 61),
    lambda: wa.list_message(TO, "body", "b" * 21, [wa.Section(None, ROWS[:2])]),
    lambda: wa.list_message(TO, "body", "Seç", [wa.Section("A", ROWS[:6]), wa.Section("B", ROWS[6:])]),
    lambda: wa.list_message(TO, "body", "Seç", [wa.Section(None, [wa.Row("a", "t" * 25)])]),
    lambda: wa.list_message(TO, "body", "Seç", [wa.Section(None, [wa.Row("a", "t", "d" * 73)])]),
    lambda: wa.list_message(TO, "body", "Seç", [wa.Section(None, [wa.Row("x" * 201, "t")])]),
    lambda: wa.list_message(TO, "body", "Seç", [wa.Section(None, ROWS[:2])], footer="f" * 61),
    lambda: wa.image(TO),
    lambda: wa.template(TO, "analysis_complete_tr", ["a", "b"], expected_params=3),
    lambda: wa.template(TO, "sponsor_message_tr", ["line one\nline two"]),
])
def test_limit_violations_raise_before_any_http_call(app, graph, build):
    with pytest.raises(LimitError):
        whatsapp.client().send(build().body)
    assert len(graph.calls) == 0


def test_limits_at_the_edge_are_accepted():
    wa.text(TO, "x" * 4096)
    wa.buttons(TO, "x" * 1024, [("a", "x" * 20), ("b", "B"), ("c", "C")])
    wa.list_message(TO, "body", "b" * 20, [wa.Section("A", ROWS[:5]), wa.Section("B", ROWS[5:10])])


@pytest.mark.parametrize("value, limit, expected", [
    ("Erken yanıklık\n(fungal)", 1024, "Erken yanıklık (fungal)"),
    ("\tYaprakları\t\ttoplayın  ", 1024, "Yaprakları toplayın"),
    ("bir" + " " * 5 + "iki\r\n\u2028üç", 1024, "bir iki üç"),
    ("x" * 2000, 1024, "x" * 1023 + "…"),
    ("uzun bir sorun tarifi", 10, "uzun bir…"),
    ("", 1024, "-"),
    (" \n\t ", 1024, "-"),
    (None, 1024, "-"),
    (7, 1024, "7"),
])
def test_outside_text_becomes_a_template_parameter_meta_accepts(value, limit, expected):
    text = wa.template_param_text(value, limit)
    assert text == expected and len(text) <= limit
    out = wa.build_template("urgent_health_alert_tr", TO, ["domates", text, text])  # no LimitError
    assert out.template_params[1] == expected
    assert wa.template_param_text("  ", empty="Çiftçimiz") == "Çiftçimiz"


# --- the error policy table --------------------------------------------------------------------


@pytest.mark.parametrize("code,policy", [
    (130429, Policy.RETRY), (4, Policy.RETRY), (80007, Policy.RETRY), (131056, Policy.RETRY_PAIR),
    (131000, Policy.RETRY), (131016, Policy.RETRY), (131057, Policy.RETRY), (131047, Policy.TEMPLATE),
    (131026, Policy.FAIL), (131051, Policy.FAIL), (131048, Policy.ALERT), (131049, Policy.ALERT),
    (131052, Policy.MEDIA), (131053, Policy.MEDIA), (132000, Policy.ALERT), (132001, Policy.ALERT),
    (132005, Policy.ALERT), (132007, Policy.ALERT), (132012, Policy.ALERT), (132015, Policy.ALERT),
    (132016, Policy.ALERT), (0, Policy.AUTH), (190, Policy.AUTH),
])
def test_each_graph_error_code_has_its_policy(code, policy):
    assert policy_for(code, 400) is policy


def test_unknown_codes_by_http_status():
    assert policy_for(None, None) is Policy.RETRY  # network error
    assert policy_for(999999, 503) is Policy.RETRY
    assert policy_for(999999, 400) is Policy.FAIL


def test_network_error_is_retryable(app, graph):
    import requests

    graph.post(MESSAGES_URL, body=requests.ConnectionError("refused"))
    with pytest.raises(GraphAPIError) as info:
        whatsapp.client().send(wa.text(TO, "hi").body)
    assert info.value.retryable


# --- the outbox: logged before sending, in order, retried, fallen back, never retried on auth ----------


def _queue(app, out=None, fallback=None, to: str = TO) -> int:
    with app.extensions["db"].session() as s, s.begin():
        row = queue_message(s, to, out or wa.text(to, "Analiziniz hazır"), utcnow(), fallback=fallback)
    return row.id


def _row(session, message_id: int) -> Message:
    return session.scalar(select(Message).where(Message.id == message_id).execution_options(populate_existing=True))


def test_logged_before_sending_then_wamid_stored(app, graph, session):
    message_id = _queue(app)
    row = _row(session, message_id)
    assert (row.direction, row.status, row.wamid, row.text, row.seq) == ("out", "pending", None, "Analiziniz hazır", 1)
    assert row.payload is not None and row.payload["text"]["body"] == "Analiziniz hazır"
    graph.post(MESSAGES_URL, json=ok("wamid.SENT1"))
    send_outbox(app)
    row = _row(session, message_id)
    assert (row.status, row.wamid, row.attempts, row.lease_owner) == ("accepted", "wamid.SENT1", 1, None)
    assert send_pending(message_id) == "already sent"  # safe to run twice
    assert len(graph.calls) == 1


def test_130429_is_retried_then_sent(app, graph, session):
    graph.post(MESSAGES_URL, **graph_error(130429, "Rate limit hit", 429))
    graph.post(MESSAGES_URL, json=ok("wamid.SENT2"))
    message_id = _queue(app)
    send_outbox(app)  # backoff base 0 in tests: the retry is due at once
    row = _row(session, message_id)
    assert (row.status, row.wamid, row.attempts, row.error_code) == ("accepted", "wamid.SENT2", 2, None)
    assert len(graph.calls) == 2


def test_a_retry_waits_four_to_the_n_seconds(app, graph, session):
    graph.post(MESSAGES_URL, **graph_error(131000, "Something went wrong", 500))
    message_id = _queue(app)
    with app.app_context():
        app.extensions["settings"] = replace(app.extensions["settings"], RETRY_BACKOFF_BASE=4)
        before = utcnow()
        assert send_pending(message_id) == "retry"
        after = utcnow()
    row = _row(session, message_id)
    assert row.next_attempt_at is not None
    # Four seconds after the failed attempt, which happened between `before` and `after` (a clock
    # comparison, not a timing: however slow the machine, the bounds hold).
    assert before + timedelta(seconds=4) <= row.next_attempt_at <= after + timedelta(seconds=4)
    assert (row.status, row.error_code, row.lease_owner) == ("pending", 131000, None)
    assert send_pending(message_id) == "waiting"  # not due yet


def test_retryable_error_gives_up_after_the_retries(app, graph, session):
    graph.post(MESSAGES_URL, **graph_error(131056, "Pair rate limit", 400))
    message_id = _queue(app)
    send_outbox(app)
    row = _row(session, message_id)
    assert (row.status, row.error_code, row.attempts) == ("failed", 131056, 5)  # 1 try + 4 retries
    assert len(graph.calls) == 5


def test_a_farmers_later_reply_waits_behind_an_earlier_one_being_retried(app, graph, session):
    """Per-farmer order: while the first reply waits for its retry (131056 pair rate) the second stays
    pending; another farmer's message goes at once. Then both leave in order."""
    other = "+905329999999"
    graph.post(MESSAGES_URL, **graph_error(131056, "Pair rate limit", 400))
    graph.post(MESSAGES_URL, json=ok("wamid.OTHER"))
    first, second = _queue(app, wa.text(TO, "bir")), _queue(app, wa.text(TO, "iki"))
    third = _queue(app, wa.text(other, "başka"), to=other)
    with app.app_context():
        app.extensions["settings"] = replace(app.extensions["settings"], RETRY_BACKOFF_BASE=60)
        send_queued(TO)
        send_queued(other)
        assert send_pending(second) == "waiting"
    assert [_row(session, i).status for i in (first, second, third)] == ["pending", "pending", "accepted"]
    wamids = iter(["wamid.LATER1", "wamid.LATER2"])
    graph.replace(responses.POST, MESSAGES_URL)
    graph.add_callback(responses.POST, MESSAGES_URL, lambda request: (200, {}, json.dumps(ok(next(wamids)))))
    with app.extensions["db"].session() as s, s.begin():  # the minute is over
        s.get_one(Message, first).next_attempt_at = utcnow()
    send_outbox(app)
    texts = [b["text"]["body"] for b in sent_bodies(graph) if b["to"] == TO]
    assert texts == ["bir", "bir", "iki"]  # refused once, then in order
    assert _row(session, second).attempts == 1


def test_a_wamid_remembered_in_redis_is_recorded_not_sent_again(app, graph, session):
    """The send succeeded but the row never got its wamid (the worker died before the database write):
    the next sender finds it in Redis."""
    message_id = _queue(app)
    with app.extensions["db"].session() as s, s.begin():  # tried once: Graph accepted it, then the worker died
        s.get_one(Message, message_id).attempts = 1
    row = _row(session, message_id)
    app.extensions["redis"].set(sent_key(row), "wamid.EARLIER")
    with app.app_context():
        assert send_pending(message_id) == "already sent"
    assert (_row(session, message_id).status, _row(session, message_id).wamid) == ("accepted", "wamid.EARLIER")
    assert len(graph.calls) == 0


def test_131047_needs_a_template_and_is_never_retried(app, graph, session):
    graph.post(MESSAGES_URL, **graph_error(131047, "Re-engagement message"))
    message_id = _queue(app)
    assert send_pending(message_id) == "needs_template"
    row = _row(session, message_id)
    assert (row.status, row.error_code) == ("failed", 131047)
    assert len(graph.calls) == 1


def test_131047_sends_the_fallback_template_in_the_replys_place(app, graph, session):
    graph.post(MESSAGES_URL, **graph_error(131047, "Re-engagement message"))
    wamids = iter(["wamid.TEMPLATE1", "wamid.LATER"])
    graph.add_callback(responses.POST, MESSAGES_URL, lambda request: (200, {}, json.dumps(ok(next(wamids)))))
    fallback = wa.template(TO, "analysis_complete_tr", ["Mehmet", "Domates", "7/10"])
    _queue(app, fallback=fallback)
    _queue(app, wa.text(TO, "sonra"))  # written after the result: leaves after its template
    send_outbox(app)
    rows = session.scalars(select(Message).order_by(Message.id).execution_options(populate_existing=True)).all()
    assert [(r.type, r.status, r.seq) for r in rows] == [("text", "failed", 1), ("text", "accepted", 2),
                                                        ("template", "accepted", 1)]
    assert rows[2].template_name == "analysis_complete_tr"
    assert rows[2].template_params == ["Mehmet", "Domates", "7/10"]
    assert [b["type"] for b in sent_bodies(graph)] == ["text", "template", "text"]


def test_190_is_not_retried_and_turns_readiness_red(app, graph, session, client):
    graph.post(MESSAGES_URL, **graph_error(190, "Error validating access token", 401))
    message_id = _queue(app)
    send_outbox(app)
    row = _row(session, message_id)
    assert (row.status, row.error_code) == ("failed", 190)
    assert len(graph.calls) == 1
    assert app.extensions["redis"].get(AUTH_ALERT_KEY)
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json["checks"]["whatsapp_token"]["status"] == "error"

    graph.replace(responses.POST, MESSAGES_URL, json=ok("wamid.AFTER"))  # a new token works again
    send_pending(_queue(app))
    assert client.get("/health/ready").status_code == 200


def test_status_that_arrived_before_the_wamid_is_applied(app, graph, session, client):
    from tests.helpers import post_webhook

    body = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"phone_number_id": PHONE_NUMBER_ID},
        "statuses": [{"id": "wamid.EARLY", "status": "delivered", "timestamp": "1763780962",
                      "recipient_id": TO[1:]}]}}]}]}
    assert post_webhook(client, body).status_code == 200
    graph.post(MESSAGES_URL, json=ok("wamid.EARLY"))
    message_id = _queue(app)
    send_pending(message_id)
    assert _row(session, message_id).status == "delivered"


# --- media download ----------------------------------------------------------------------------

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 200 + b"\xff\xd9"


def _media(graph, content: bytes = JPEG, sha: str | None = None, size: int | None = None) -> None:
    import hashlib

    graph.get(f"{GRAPH}/1234567890123456", json={
        "messaging_product": "whatsapp", "url": "https://lookaside.test/media?mid=1", "mime_type": "image/jpeg",
        "sha256": sha or hashlib.sha256(content).hexdigest(), "file_size": size or len(content),
        "id": "1234567890123456"})
    graph.get("https://lookaside.test/media?mid=1", body=content, content_type="image/jpeg")


def test_media_download_two_steps_with_bearer(app, graph):
    _media(graph)
    media = whatsapp.client().download_media("1234567890123456")
    assert media.content == JPEG and media.mime_type == "image/jpeg"
    assert [c.request.url for c in graph.calls] == [f"{GRAPH}/1234567890123456", "https://lookaside.test/media?mid=1"]
    assert all(c.request.headers["Authorization"] == "Bearer test-token-abc" for c in graph.calls)


def test_media_too_large_refused(app, graph):
    _media(graph, size=6 * 1024 * 1024)
    with pytest.raises(MediaError):
        whatsapp.client().download_media("1234567890123456")
    assert len(graph.calls) == 1  # the file itself was never fetched


def test_media_larger_than_announced_refused(app, graph):
    _media(graph, content=JPEG * 10, size=10)
    with pytest.raises(MediaError):
        whatsapp.client().download_media("1234567890123456", max_bytes=len(JPEG) * 5)


def test_media_checksum_mismatch_refused(app, graph):
    _media(graph, sha="0" * 64)
    with pytest.raises(MediaError):
        whatsapp.client().download_media("1234567890123456")


def test_client_never_logs_the_token(app, graph, caplog):
    graph.post(MESSAGES_URL, **graph_error(190, "Error validating access token", 401))
    with caplog.at_level("DEBUG"):
        send_pending(_queue(app))
    assert "test-token-abc" not in caplog.text


def test_client_is_built_from_settings(app):
    client = whatsapp.client()
    assert isinstance(client, WhatsAppClient)
    assert client.messages_url_of(None) == MESSAGES_URL
    assert client.limiter is not None and client.limiter.limit == 80


# --- a reply taken for its sender by its own INSERT ------------------------------------------------------


def _farmer(app, **values):
    from models import Farmer

    with app.extensions["db"].session() as s, s.begin():
        farmer = Farmer(phone=TO, **values)
        s.add(farmer)
    return farmer


def _queue_reply(app, farmer, text: str, take: bool = True):
    from services.whatsapp.outbox import queue_reply

    with app.extensions["db"].session() as s, s.begin():
        return queue_reply(s, s.merge(farmer), wa.text(TO, text), utcnow(), take=take)


def test_a_reply_first_in_its_line_is_taken_for_this_worker_and_sent_without_a_claim(app, graph, session):
    from services.leases import owner_name

    graph.post(MESSAGES_URL, json=ok())
    queued = _queue_reply(app, _farmer(app), "Merhaba")
    row = _row(session, queued.message_id)
    assert queued.outgoing is not None and queued.outgoing.message_id == row.id
    assert (row.lease_owner, row.attempts, row.seq, row.status) == (owner_name(), 1, 1, "pending")
    assert queued.outgoing.key == sent_key(row)
    send_queued(TO, queued.outgoing)
    row = _row(session, queued.message_id)
    assert (row.status, row.wamid, row.lease_owner, row.attempts) == ("accepted", "wamid.OUT1", None, 1)
    assert [b["text"]["body"] for b in sent_bodies(graph)] == ["Merhaba"]


def test_a_reply_behind_a_pending_one_is_not_taken_and_follows_it_in_order(app, graph, session):
    graph.post(MESSAGES_URL, json=ok("wamid.OUT1"))
    graph.post(MESSAGES_URL, json=ok("wamid.OUT2"))
    farmer = _farmer(app)
    earlier = _queue(app, wa.text(TO, "birinci"))  # pending, first in line
    queued = _queue_reply(app, farmer, "ikinci")
    row = _row(session, queued.message_id)
    assert queued.outgoing is None
    before = _row(session, earlier).seq
    assert before is not None and (row.lease_owner, row.attempts, row.seq) == (None, 0, before + 1)
    send_queued(TO)
    assert [b["text"]["body"] for b in sent_bodies(graph)] == ["birinci", "ikinci"]


def test_no_reply_is_taken_while_the_account_is_blocked_or_meta_asked_to_pace_the_farmer(app):
    from services.whatsapp.health import ACCOUNT_BLOCK_KEY
    from services.whatsapp.outbox import may_take_now

    now = utcnow()
    redis = app.extensions["redis"]
    farmer = _farmer(app)
    assert may_take_now(redis, farmer, now)
    farmer.paced_until = now + timedelta(minutes=5)
    assert not may_take_now(redis, farmer, now)
    farmer.paced_until = now - timedelta(minutes=1)  # the pause is over
    assert may_take_now(redis, farmer, now)
    redis.set(ACCOUNT_BLOCK_KEY, "131031: account locked")
    assert not may_take_now(redis, farmer, now)
    assert _queue_reply(app, farmer, "Merhaba", take=False).outgoing is None  # not asked: never taken
