"""POST/GET /webhooks/whatsapp: authentication, storage of every fixture, idempotency, Redis outages."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime

import psycopg
import pytest
from prometheus_client import REGISTRY
from redis.exceptions import RedisError
from sqlalchemy import func, select

from models import Direction, Farmer, Message, MessageStatus, MessageStatusEvent, UnhandledWebhook, utcnow
from services.inbox import plain_message, record_plain_message, record_webhook
from services.queue import INBOUND
from services.redis_conn import connect
from services.sweeper import sweep_unqueued
from services.whatsapp.updates import parse_webhook
from tests.helpers import (
    FIXTURES,
    PHONE_NUMBER_ID,
    TEST_DATABASE_URL,
    VERIFY_TOKEN,
    clean_stores,
    fixture_bytes,
    fixture_json,
    make_settings,
    post_webhook,
    queued_job_ids,
    run_jobs,
    sign,
)

FARMER = "+905321234567"


def messages(session, direction: str = "in") -> list[Message]:
    return list(session.scalars(select(Message).where(Message.direction == direction).order_by(Message.id)))


# --- verification -----------------------------------------------------------------------------


def test_verification_answers_the_challenge(client):
    r = client.get("/webhooks/whatsapp", query_string={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                                       "hub.challenge": "1158201444"})
    assert r.status_code == 200
    assert r.data == b"1158201444"
    assert r.mimetype == "text/plain"


def test_the_echoed_challenge_cannot_be_read_as_a_page(client):
    """The challenge is echoed as sent: plain text that a browser must not sniff into HTML."""
    r = client.get("/webhooks/whatsapp", query_string={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                                       "hub.challenge": "<script>alert(1)</script>"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("challenge", [None, ""])
def test_verification_without_a_challenge_is_400(client, challenge):
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}
    if challenge is not None:
        query["hub.challenge"] = challenge
    r = client.get("/webhooks/whatsapp", query_string=query)
    assert r.status_code == 400
    assert r.mimetype == "application/problem+json"


@pytest.mark.parametrize("mode,token", [("subscribe", "wrong"), ("unsubscribe", VERIFY_TOKEN), ("", ""),
                                        ("subscribe", "")])
def test_verification_with_a_wrong_mode_or_token_is_refused(client, mode, token):
    r = client.get("/webhooks/whatsapp", query_string={"hub.mode": mode, "hub.verify_token": token,
                                                       "hub.challenge": "x"})
    assert r.status_code == 403
    assert b"x" not in r.data


# --- authentication and malformed bodies ---------------------------------------------------------


def test_an_unsigned_post_is_401_and_stores_nothing(client, session):
    r = client.post("/webhooks/whatsapp", data=fixture_bytes("text.json"), content_type="application/json")
    assert r.status_code == 401
    assert r.mimetype == "application/problem+json"
    assert messages(session) == []


def test_wrong_signature_is_403(client, session):
    raw = fixture_bytes("text.json")
    r = client.post("/webhooks/whatsapp", data=raw, content_type="application/json",
                    headers={"X-Hub-Signature-256": sign(raw, "another-secret")})
    assert r.status_code == 403
    assert messages(session) == []


def test_signature_over_reserialised_body_is_403(client, session):
    raw = fixture_bytes("text.json")
    reserialised = json.dumps(json.loads(raw), separators=(",", ":")).encode()
    assert reserialised != raw
    r = client.post("/webhooks/whatsapp", data=raw, content_type="application/json",
                    headers={"X-Hub-Signature-256": sign(reserialised)})
    assert r.status_code == 403
    assert messages(session) == []


def test_malformed_json_is_400(client):
    raw = fixture_bytes("text.json")[:-40]  # truncated
    r = client.post("/webhooks/whatsapp", data=raw, content_type="application/json",
                    headers={"X-Hub-Signature-256": sign(raw)})
    assert r.status_code == 400
    raw = b"\xff\xfe not json"
    r = client.post("/webhooks/whatsapp", data=raw, headers={"X-Hub-Signature-256": sign(raw)})
    assert r.status_code == 400


def test_body_over_3_mb_is_413(client, session):
    raw = b'{"object":"whatsapp_business_account","entry":[],"pad":"' + b"a" * (3 * 1024 * 1024) + b'"}'
    r = client.post("/webhooks/whatsapp", data=raw, content_type="application/json",
                    headers={"X-Hub-Signature-256": sign(raw)})
    assert r.status_code == 413
    assert session.scalar(select(func.count()).select_from(UnhandledWebhook)) == 0


def _webhooks_total(outcome: str) -> float:
    return REGISTRY.get_sample_value("ziraai_webhooks_total", {"outcome": outcome}) or 0.0


@pytest.mark.parametrize("extra", [1, 3 * 1024 * 1024])
def test_a_chunked_body_over_3_mb_is_413_and_counted_too_large(client, session, extra):
    """Found by the adversarial review: without a Content-Length the body was cut at 3 MiB and then refused
    as a bad signature (403), counted as one. A chunked body is now read up to the limit plus one byte."""
    raw = b'{"object":"whatsapp_business_account","entry":[],"pad":"' + b"a" * (3 * 1024 * 1024) + b'"}'
    raw += b" " * extra
    too_large, bad_signature = _webhooks_total("too_large"), _webhooks_total("bad_signature")
    r = client.post("/webhooks/whatsapp", input_stream=io.BytesIO(raw), content_type="application/json",
                    headers={"X-Hub-Signature-256": sign(raw), "Transfer-Encoding": "chunked"},
                    environ_overrides={"wsgi.input_terminated": True})  # as gunicorn says of a chunked body
    assert r.status_code == 413
    assert (_webhooks_total("too_large") - too_large, _webhooks_total("bad_signature") - bad_signature) == (1, 0)


def test_a_chunked_body_within_the_limit_is_read_whole(client, session):
    raw = fixture_bytes("text.json")
    r = client.post("/webhooks/whatsapp", input_stream=io.BytesIO(raw), content_type="application/json",
                    headers={"X-Hub-Signature-256": sign(raw), "Transfer-Encoding": "chunked"},
                    environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 200
    assert len(messages(session)) == 1


def _statuses_body(count: int, messages_too: int = 0) -> dict:
    statuses = [{"id": f"wamid.CAP{i}", "status": "delivered", "timestamp": "1763800000",
                 "recipient_id": "905321234567"} for i in range(count)]
    inbound = [{"from": "905321234567", "id": f"wamid.CAPIN{i}", "timestamp": "1763800000", "type": "text",
                "text": {"body": f"mesaj {i}"}} for i in range(messages_too)]
    value = {"messaging_product": "whatsapp", "statuses": statuses, "messages": inbound,
             "contacts": [{"wa_id": "905321234567", "profile": {"name": "Mehmet"}}]}
    return {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": value}]}]}


def test_a_delivery_with_more_items_than_the_cap_stores_the_cap_and_the_excess_once(client, session, app):
    """One signed body could hold 300,000 statuses and keep the writer busy for a minute. Meta sends at
    most a few hundred: the first MAX_ITEMS_PER_DELIVERY are stored as usual, the excess once, as one
    unhandled row with the reason, and the delivery is still acknowledged. (Before: every item was written.)"""
    from services.whatsapp.updates import MAX_ITEMS_PER_DELIVERY

    body = _statuses_body(MAX_ITEMS_PER_DELIVERY + 40, messages_too=5)
    r = post_webhook(client, body)
    assert r.status_code == 200
    assert session.scalar(select(func.count()).select_from(MessageStatusEvent)) == MAX_ITEMS_PER_DELIVERY - 5
    assert len(messages(session)) == 5  # in the body's order: a change's messages before its statuses
    [excess] = session.scalars(select(UnhandledWebhook)).all()
    assert f"more than {MAX_ITEMS_PER_DELIVERY} items" in excess.reason and "45 left out" in excess.reason
    assert len(excess.payload["statuses"]) == 45
    assert len(queued_job_ids(app, INBOUND)) == 5


def test_a_delivery_at_the_cap_is_stored_whole(client, session):
    from services.whatsapp.updates import MAX_ITEMS_PER_DELIVERY

    assert post_webhook(client, _statuses_body(MAX_ITEMS_PER_DELIVERY)).status_code == 200
    assert session.scalar(select(func.count()).select_from(MessageStatusEvent)) == MAX_ITEMS_PER_DELIVERY
    assert session.scalar(select(func.count()).select_from(UnhandledWebhook)) == 0


def test_signed_json_of_unknown_shape_is_200_and_kept(client, session):
    for body in ({"hello": "world"}, [1, 2, 3], {"object": "page", "entry": [{"changes": [{"field": "feed"}]}]}, 42):
        assert post_webhook(client, json.dumps(body).encode()).status_code == 200
    reasons = session.scalars(select(UnhandledWebhook.reason)).all()
    assert len(reasons) >= 4
    assert any("no entry list" in r for r in reasons)
    assert any("'feed' not handled" in r for r in reasons)


def test_message_missing_fields_is_kept_not_crashed(client, session):
    body = fixture_json("text.json")
    value = body["entry"][0]["changes"][0]["value"]
    value["messages"].append({"type": "text", "text": {"body": "no id, no sender"}})
    assert post_webhook(client, body).status_code == 200
    assert len(messages(session)) == 1
    assert session.scalar(select(UnhandledWebhook.reason)) == "message without a usable id or sender"


@pytest.mark.parametrize("sender", ["٩٠٥٣٢١٢٣٤٥٦٧", "９０５３２１２３４５６７", "۹۰۵۳۲۱۷۷۷۷۷۷", "+90 532 ١٢٣ 45 67"])
def test_a_sender_in_other_digits_than_ascii_is_kept_unhandled_never_a_second_farmer(client, session, sender):
    """Meta writes `from` in ASCII digits. A number in Arabic-Indic, full-width or Persian digits is not a
    usable sender: kept with the reason like `"abc"`. (Before: it became a farmer `+٩٠٥...` beside
    `+905...`, and the bot welcomed it.)"""
    body = fixture_json("text.json")
    value = body["entry"][0]["changes"][0]["value"]
    value["messages"][0]["from"] = sender
    value["contacts"][0]["wa_id"] = sender
    assert post_webhook(client, body).status_code == 200
    assert messages(session) == []
    assert session.scalar(select(func.count()).select_from(Farmer)) == 0
    assert session.scalar(select(UnhandledWebhook.reason)) == "message without a usable id or sender"


# --- every fixture ----------------------------------------------------------------------------

EXPECTED = {
    # fixture: (type, text, reply_id, media_id)
    "text.json": ("text", "Merhaba", None, None),
    "text_turkish_upper.json": ("text", "KALAN HAKKIM NE KADAR?", None, None),
    "image_with_caption.json": ("image", "domates yaprakları sararıyor", None, "1234567890123456"),
    "image_no_caption_with_url.json": ("image", None, None, "2345678901234567"),
    "button_reply.json": ("button_reply", "Analiz gönder", "menu:analyze", None),
    "list_reply.json": ("list_reply", "Domates", "crop:domates", None),
    "template_quick_reply.json": ("button", "Detaylar", "result:details", None),
    "location_chosen.json": ("location", None, None, None),
    "location_current.json": ("location", None, None, None),
    "voice.json": ("audio", None, None, "3456789012345678"),
    "sticker.json": ("sticker", None, None, "4567890123456789"),
    "reaction.json": ("reaction", "👍", None, None),
    "document.json": ("document", "toprak analizi", None, "5678901234567890"),
    "unsupported.json": ("unsupported", None, None, None),
    "contact_without_profile.json": ("text", "selam", None, None),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_message_fixture_is_stored(client, session, app, name):
    r = post_webhook(client, fixture_bytes(name))
    assert r.status_code == 200
    [row] = messages(session)
    raw_message = fixture_json(name)["entry"][0]["changes"][0]["value"]["messages"][0]
    kind, text, reply_id, media_id = EXPECTED[name]
    assert (row.type, row.text, row.media_id) == (kind, text, media_id)
    assert row.wamid == raw_message["id"]
    assert row.phone == FARMER
    assert row.status == MessageStatus.RECEIVED
    assert row.payload == raw_message  # the raw message, for support
    assert row.meta_timestamp == datetime.fromtimestamp(int(raw_message["timestamp"]), UTC)
    if reply_id:
        assert row.payload and reply_id in json.dumps(row.payload)
    farmer = session.scalar(select(Farmer).where(Farmer.phone == FARMER))
    assert row.farmer_id == farmer.id
    assert farmer.last_inbound_at == row.meta_timestamp
    assert farmer.locale == "tr"
    assert queued_job_ids(app, INBOUND) == [f"inbound-{row.id}"]


def test_profile_name_kept_and_not_erased_by_contact_without_profile(client, session):
    post_webhook(client, fixture_bytes("text.json"))
    post_webhook(client, fixture_bytes("contact_without_profile.json"))
    farmer = session.scalar(select(Farmer))
    assert farmer.profile_name == "Mehmet Yılmaz"
    assert farmer.last_inbound_at == datetime.fromtimestamp(1763780840, UTC)


def test_last_inbound_never_moves_back(client, session):
    post_webhook(client, fixture_bytes("contact_without_profile.json"))  # ts 1763780840
    post_webhook(client, fixture_bytes("text.json"))  # older: ts 1763780000
    assert session.scalar(select(Farmer.last_inbound_at)) == datetime.fromtimestamp(1763780840, UTC)


def test_two_messages_in_one_change_both_stored_and_queued_in_order(client, session, app):
    assert post_webhook(client, fixture_bytes("two_messages_one_change.json")).status_code == 200
    rows = messages(session)
    assert [r.text for r in rows] == ["menü", "kota"]
    assert queued_job_ids(app, INBOUND) == [f"inbound-{r.id}" for r in rows]


def test_two_entries_two_farmers(client, session):
    assert post_webhook(client, fixture_bytes("two_entries.json")).status_code == 200
    rows = messages(session)
    assert {(r.phone, r.text) for r in rows} == {(FARMER, "yardım"), ("+905339876543", "Merhaba")}
    names = dict(session.execute(select(Farmer.phone, Farmer.profile_name)).all())
    assert names == {FARMER: "Mehmet Yılmaz", "+905339876543": "Ayşe Demir"}


def test_a_chosen_location_keeps_its_name_and_address(client, session):
    post_webhook(client, fixture_bytes("location_chosen.json"))
    [row] = messages(session)
    assert row.payload is not None
    assert row.payload["location"] == {"latitude": 36.8969, "longitude": 30.7133, "name": "Serada",
                                       "address": "Muratpaşa, Antalya"}


def test_unsupported_keeps_error_code(client, session):
    post_webhook(client, fixture_bytes("unsupported.json"))
    [row] = messages(session)
    assert (row.error_code, row.error_title) == (131051, "Message type unknown")


# --- the one-statement path: a delivery of one plain message -----------------------------------


def _one_message(**changes: object) -> dict:
    body = fixture_json("text.json")
    value = body["entry"][0]["changes"][0]["value"]
    value["messages"][0].update(changes.pop("message", {}))
    value.update(changes)
    return body


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_single_message_fixture_takes_the_one_statement_path(name):
    parsed = parse_webhook(fixture_json(name))
    assert plain_message(parsed, (PHONE_NUMBER_ID,)) == parsed.messages[0]


@pytest.mark.parametrize("body", [
    pytest.param(fixture_json("two_messages_one_change.json"), id="two messages"),
    pytest.param(fixture_json("two_entries.json"), id="two entries"),
    pytest.param(fixture_json("status_sent.json"), id="a status"),
    pytest.param(_one_message(statuses=fixture_json("status_read.json")["entry"][0]["changes"][0]["value"]["statuses"]),
                 id="a message and a status"),
    pytest.param(_one_message(message={"from_user_id": "TR.1234567890"}), id="a phone and a user id to link"),
    pytest.param(_one_message(message={"group_id": "120363299111024@g.us"}), id="a group's message"),
    pytest.param(_one_message(message={"type": "system", "system": {"type": "user_changed_number",
                                                                    "wa_id": "905339876543"}}), id="a system notice"),
    pytest.param(_one_message(metadata={"phone_number_id": "999999999999999"}), id="to a number not ours"),
    pytest.param(_one_message(errors=[{"code": 131000, "title": "Something went wrong"}]), id="with errors"),
    pytest.param({**_one_message(), "object": "page"}, id="with something not understood"),
])
def test_a_delivery_with_anything_more_than_one_plain_message_takes_the_general_path(body):
    assert plain_message(parse_webhook(body), (PHONE_NUMBER_ID,)) is None


def _stored(session) -> tuple[dict, dict]:
    """The message and farmer rows, without what differs between two writes (ids, clocks)."""
    [message] = messages(session)
    farmer = session.scalar(select(Farmer))
    differ = {"id", "farmer_id", "created_at", "updated_at", "processed_at"}
    return ({c.key: getattr(message, c.key) for c in Message.__table__.c if c.key not in differ},
            {c.key: getattr(farmer, c.key) for c in Farmer.__table__.c if c.key not in differ})


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="the one statement is PostgreSQL's (SQLite takes the general path)")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_one_statement_stores_what_the_general_path_stores(app, session, name):
    db = app.extensions["db"]
    parsed = parse_webhook(fixture_json(name))
    with db.session() as s, s.begin():
        general = record_webhook(s, parsed, (PHONE_NUMBER_ID,), utcnow())
    expected = _stored(session)
    clean_stores(app)
    with db.driver_autocommit() as conn:
        plain = record_plain_message(conn, parsed.messages[0], utcnow())
    assert _stored(session) == expected
    assert (len(plain.new_message_ids), plain.duplicate_messages) == (len(general.new_message_ids), 0)
    [message] = messages(session)
    assert message.farmer_id == session.scalar(select(Farmer.id))
    with db.driver_autocommit() as conn:  # the same message again: the farmer is refreshed, nothing is new
        again = record_plain_message(conn, parsed.messages[0], utcnow())
    assert (again.new_message_ids, again.duplicate_messages) == ([], 1)
    assert len(messages(session)) == 1


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="the driver's connection is PostgreSQL's")
def test_a_failed_statement_leaves_the_hot_pools_connection_usable_and_in_autocommit(app):
    db = app.extensions["db"]
    with pytest.raises(Exception, match="syntax"), db.driver_autocommit() as conn:
        conn.execute("SELEC 1")
    with db.driver_autocommit() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.autocommit is True
    with db.engine.connect() as conn:  # the engine's pool is not touched: its connections stay transactional
        assert conn.connection.driver_connection.autocommit is False


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="the hot path's pool is PostgreSQL's")
def test_a_connection_postgresql_dropped_fails_one_delivery_which_meta_delivers_again(app, client, session):
    """The hot pool checks out without a ping: a connection the server killed (a restart, say) fails the
    delivery given to it (Meta retries on the 5xx) and has the pool's idle connections checked, so the
    retry is stored on a fresh connection."""
    db = app.extensions["db"]
    with db.driver_autocommit() as conn:
        backend = conn.info.backend_pid
    with db.engine.connect() as other:
        other.exec_driver_sql(f"SELECT pg_terminate_backend({backend})")
    body = fixture_bytes("text.json")
    with pytest.raises(psycopg.OperationalError):
        post_webhook(client, body)  # the test client raises what production answers with a 500
    assert messages(session) == []
    r = post_webhook(client, body)
    assert r.status_code == 200
    assert len(messages(session)) == 1
    assert queued_job_ids(app, INBOUND) == [f"inbound-{messages(session)[0].id}"]


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="the engine pings PostgreSQL connections only")
def test_the_engine_pings_a_connection_only_after_it_sat_idle(app, monkeypatch):
    """A pooled connection PostgreSQL dropped is found by the ping before use once it sat idle for
    `PING_AFTER_IDLE_SECONDS`; one used a moment ago is handed out unchecked: the work it is given fails
    once, and the pool replaces its connections."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from models import db as database

    def drop_the_pooled_connection() -> None:
        with db.engine.connect() as conn:
            backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with app.extensions["db"].engine.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({backend})")

    db = database.Database(app.extensions["settings"].DATABASE_URL)
    try:
        monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)
        drop_the_pooled_connection()
        with db.session() as s:
            assert s.execute(text("SELECT 1")).scalar() == 1
        monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 3600.0)
        drop_the_pooled_connection()
        with pytest.raises(OperationalError), db.session() as s:
            s.execute(text("SELECT 1"))
        with db.session() as s:
            assert s.execute(text("SELECT 1")).scalar() == 1
    finally:
        db.engine.dispose()


# --- idempotency ------------------------------------------------------------------------------


def test_redelivery_is_acknowledged_and_does_nothing(client, session, app):
    for _ in range(3):
        assert post_webhook(client, fixture_bytes("text.json")).status_code == 200
    assert len(messages(session)) == 1
    assert len(queued_job_ids(app, INBOUND)) == 1


def test_same_body_three_times_concurrently_one_row_one_job(app, session):
    raw = fixture_bytes("image_with_caption.json")
    barrier = threading.Barrier(3)
    statuses: list[int] = []

    def deliver() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(post_webhook(client, raw).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200, 200, 200]
    assert len(messages(session)) == 1
    assert session.scalar(select(func.count()).select_from(Farmer)) == 1
    assert len(queued_job_ids(app, INBOUND)) == 1


# --- statuses ---------------------------------------------------------------------------------

OUTGOING = "wamid.HBgMOTA1MzIxMjM0NTY3FQIAEhggT1VUR09JTkcwMDAx"


def _outbound(session, wamid: str = OUTGOING) -> Message:
    row = Message(direction=Direction.OUTBOUND.value, wamid=wamid, phone=FARMER, type="text", text="Merhaba",
                  status=MessageStatus.ACCEPTED.value)
    session.add(row)
    session.commit()
    return row


def test_statuses_move_forward(client, session):
    row = _outbound(session)
    post_webhook(client, fixture_bytes("status_sent.json"))
    session.refresh(row)
    assert row.status == "sent" and row.sent_at is not None
    post_webhook(client, fixture_bytes("status_delivered.json"))
    session.refresh(row)
    assert row.status == "delivered"
    post_webhook(client, fixture_bytes("status_read.json"))
    session.refresh(row)
    assert row.status == "read"
    assert row.read_at == datetime.fromtimestamp(1763780990, UTC)


def test_statuses_out_of_order_never_move_back(client, session):
    row = _outbound(session)
    post_webhook(client, fixture_bytes("status_read.json"))
    post_webhook(client, fixture_bytes("status_delivered.json"))
    post_webhook(client, fixture_bytes("status_sent.json"))
    session.refresh(row)
    assert row.status == "read"
    assert row.sent_at and row.delivered_at and row.read_at  # every timestamp still recorded
    assert session.scalar(select(func.count()).select_from(MessageStatusEvent)) == 3


def test_status_redelivery_is_a_no_op(client, session):
    _outbound(session)
    for _ in range(3):
        assert post_webhook(client, fixture_bytes("status_delivered.json")).status_code == 200
    assert session.scalar(select(func.count()).select_from(MessageStatusEvent)) == 1


@pytest.mark.parametrize("name,code,title", [
    ("status_failed_window.json", 131047, "Re-engagement message"),
    ("status_failed_undeliverable.json", 131026, "Message undeliverable"),
])
def test_failed_status_records_error(client, session, name, code, title):
    wamid = fixture_json(name)["entry"][0]["changes"][0]["value"]["statuses"][0]["id"]
    row = _outbound(session, wamid)
    assert post_webhook(client, fixture_bytes(name)).status_code == 200
    session.refresh(row)
    assert (row.status, row.error_code, row.error_title) == ("failed", code, title)
    assert row.failed_at is not None


def test_status_for_unknown_message_is_kept_and_applied_later(client, session):
    post_webhook(client, fixture_bytes("status_delivered.json"))
    event = session.scalar(select(MessageStatusEvent))
    assert (event.wamid, event.status, event.recipient) == (OUTGOING, "delivered", FARMER)

    from services.inbox import apply_recorded_statuses

    row = _outbound(session)
    apply_recorded_statuses(session, OUTGOING)
    session.commit()
    session.refresh(row)
    assert row.status == "delivered"


def test_every_fixture_file_is_accepted(client):
    for path in sorted((FIXTURES / "whatsapp").glob("*.json")):
        assert post_webhook(client, path.read_bytes()).status_code == 200, path.name


# --- Redis outage -----------------------------------------------------------------------------


def test_redis_down_webhook_still_200_then_sweeper_enqueues(app, session, database_url):
    from app import create_app

    broken = create_app(make_settings(database_url, REDIS_URL="redis://127.0.0.1:1/0"))
    r = post_webhook(broken.test_client(), fixture_bytes("two_messages_one_change.json"))
    assert r.status_code == 200
    rows = messages(session)
    assert len(rows) == 2 and all(row.status == "received" for row in rows)
    assert queued_job_ids(app, INBOUND) == []

    # Redis is back: the scheduler's sweeper finds the committed-but-unqueued messages.
    with app.app_context():
        assert sweep_unqueued(grace_seconds=0) == 2
        assert sweep_unqueued(grace_seconds=0) == 0  # already queued: not twice
    assert queued_job_ids(app, INBOUND) == [f"inbound-{row.id}" for row in rows]
    run_jobs(app)
    session.expire_all()
    assert [row.status for row in messages(session)] == ["processed", "processed"]
    broken.extensions["db"].engine.dispose()


def test_sweeper_leaves_recent_messages_to_the_webhook(app, session, database_url):
    from app import create_app

    broken = create_app(make_settings(database_url, REDIS_URL="redis://127.0.0.1:1/0"))
    post_webhook(broken.test_client(), fixture_bytes("text.json"))
    assert sweep_unqueued(grace_seconds=3600) == 0
    broken.extensions["db"].engine.dispose()


def test_unreachable_redis_url_connects_lazily():
    conn = connect("redis://127.0.0.1:1/0")
    with pytest.raises(RedisError):
        conn.ping()
