"""Who wrote and to which number: phones, business-scoped user ids and usernames, our own numbers, groups,
number changes, reactions taken back, Meta's own message types, photos sent as documents.

Every test posts a signed body shaped like Meta's webhook and checks the stored rows and what went out
through the Graph API (mocked with `responses`)."""

from __future__ import annotations

import itertools
import json
import re
import time
from datetime import timedelta
from typing import Any

import pytest
import responses
from sqlalchemy import func, select

from app import create_app
from models import (
    Conversation,
    Farmer,
    Message,
    MessageStatusEvent,
    Subscription,
    UnhandledWebhook,
    UsageLedger,
    utcnow,
)
from services import quota
from services.sweeper import sweep_unqueued
from services.whatsapp import messages as wa
from services.whatsapp.outbox import queue_message, send_pending
from tests.helpers import (
    GRAPH,
    PHONE_NUMBER_ID,
    TEST_DATABASE_URL,
    clean_stores,
    make_settings,
    post_concurrently,
    post_webhook,
    run_jobs,
)

PHONE = "905321234567"
USER_ID = "TR.13491208655302741918"
NEW_USER_ID = "TR.99887766554433221100"
PARENT_ID = "TR.ENT.11815799212886844830"
OTHER_NUMBER_ID = "200000000000001"
CONSENT_QUESTION = "consent:yes"
_ids = itertools.count(1)
_clock = itertools.count(int(time.time()) - 3600)


class Graph:
    """Meta's Graph API: records every send and the number it went out from."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.sent: list[dict[str, Any]] = []
        self.from_numbers: list[str] = []
        self.errors: list[dict[str, Any]] = []  # answered in turn before any success
        mock.add_callback(responses.POST, re.compile(rf"{re.escape(GRAPH)}/\d+/messages"), callback=self._on_post,
                          content_type="application/json")

    def _on_post(self, request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        if body.get("status") == "read":
            return 200, {}, json.dumps({"success": True})
        self.sent.append(body)
        self.from_numbers.append(request.url.split("/")[-2])
        if self.errors:
            return 400, {}, json.dumps({"error": self.errors.pop(0)})
        return 200, {}, json.dumps({"messaging_product": "whatsapp", "messages": [{"id": f"wamid.OUT{next(_ids)}"}]})

    def texts(self, since: int = 0) -> list[str]:
        out = []
        for body in self.sent[since:]:
            kind = body["type"]
            out.append(body[kind].get("body", {}).get("text") if kind == "interactive" else
                       body[kind].get("body") if kind == "text" else body[kind].get("name"))
        return out

    def button_ids(self, since: int = 0) -> list[str]:
        return [b["reply"]["id"] for body in self.sent[since:] if body["type"] == "interactive"
                and body["interactive"]["type"] == "button" for b in body["interactive"]["action"]["buttons"]]


@pytest.fixture(autouse=True)
def tiers(app):
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)


@pytest.fixture
def graph():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield Graph(mock)


def message(kind: str, content: dict[str, Any] | None = None, *, phone: str | None = PHONE,
            user_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """One `messages[]` item; with a username Meta names the sender by `from_user_id` and omits `from`."""
    item: dict[str, Any] = {"id": f"wamid.IN{next(_ids)}", "timestamp": str(next(_clock)), "type": kind, **extra}
    if phone:
        item["from"] = phone
    if user_id:
        item["from_user_id"] = user_id
    if content is not None:
        item[kind] = content
    return item


def text(body: str, **kw: Any) -> dict[str, Any]:
    return message("text", {"body": body}, **kw)


def delivery(*items: dict[str, Any], phone: str | None = PHONE, user_id: str | None = None,
             username: str | None = None, parent_user_id: str | None = None, name: str | None = "Mehmet",
             number_id: str | int = PHONE_NUMBER_ID, contacts: bool = True) -> dict[str, Any]:
    contact: dict[str, Any] = {"profile": {k: v for k, v in (("name", name), ("username", username)) if v}}
    for key, alias in (("wa_id", phone), ("user_id", user_id), ("parent_user_id", parent_user_id)):
        if alias:
            contact[key] = alias
    value: dict[str, Any] = {"messaging_product": "whatsapp",
                             "metadata": {"display_phone_number": "908502221133", "phone_number_id": number_id},
                             "messages": list(items)}
    if contacts:
        value["contacts"] = [contact]
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]}


def deliver(app, graph: Graph, body: dict[str, Any]) -> list[str]:
    before = len(graph.sent)
    assert post_webhook(app.test_client(), body).status_code == 200
    run_jobs(app)
    return graph.texts(before)


def onboard(app, graph: Graph, **who: Any) -> None:
    """`Merhaba`, then the consent button: the farmer is asked once and gets the Trial."""
    sender = {k: v for k, v in who.items() if k in ("phone", "user_id")}
    deliver(app, graph, delivery(text("Merhaba", **sender), **who))
    assert CONSENT_QUESTION in graph.button_ids()
    deliver(app, graph, delivery(message("interactive", {"type": "button_reply", "button_reply": {
        "id": CONSENT_QUESTION, "title": "Kabul ediyorum"}}, **sender), **who))


def farmers(session) -> list[Farmer]:
    return list(session.scalars(select(Farmer).order_by(Farmer.id)))


# --- business-scoped user ids and usernames ---------------------------------------------------------


def test_a_farmer_known_only_by_user_id_is_answered_in_the_recipient_field(app, graph, session):
    deliver(app, graph, delivery(text("Merhaba", phone=None, user_id=USER_ID), phone=None, user_id=USER_ID,
                                 username="@mehmet", parent_user_id=PARENT_ID))
    [farmer] = farmers(session)
    assert (farmer.phone, farmer.user_id, farmer.username, farmer.parent_user_id) == (
        None, USER_ID, "@mehmet", PARENT_ID)
    assert graph.sent, "the farmer got no answer"
    assert all(body.get("recipient") == USER_ID and "to" not in body for body in graph.sent)
    inbound = session.scalars(select(Message).where(Message.direction == "in")).one()
    assert (inbound.phone, inbound.farmer_id, inbound.status) == (USER_ID, farmer.id, "processed")


def test_a_later_message_with_phone_and_user_id_merges_the_two_farmers(app, graph, session):
    onboard(app, graph, phone=PHONE)  # known by phone: consent and a Trial
    deliver(app, graph, delivery(text("Merhaba", phone=None, user_id=USER_ID), phone=None, user_id=USER_ID))
    assert len(farmers(session)) == 2  # nothing tied the user id to the phone yet: asked for consent
    onboard(app, graph, phone=None, user_id=USER_ID)  # ... and got a second Trial on a second row
    before = len(graph.sent)
    deliver(app, graph, delivery(text("menü", phone=PHONE, user_id=USER_ID), phone=PHONE, user_id=USER_ID))
    [farmer] = farmers(session)
    assert (farmer.phone, farmer.user_id) == ("+" + PHONE, USER_ID)
    assert farmer.consent_at is not None
    history = session.scalars(select(Message.farmer_id).where(Message.direction == "in")).all()
    assert len(history) == 6 and set(history) == {farmer.id}  # every message kept, on the one farmer
    statuses = sorted(session.scalars(select(Subscription.status).where(Subscription.farmer_id == farmer.id)))
    assert statuses == ["active", "cancelled"]  # one Trial stays; the second is cancelled
    assert graph.sent[before:] and all(b.get("to") == "+" + PHONE and "recipient" not in b
                                       for b in graph.sent[before:])


def test_a_merge_adds_no_quota_the_kept_trial_counts_what_the_cancelled_one_used(app, session):
    from services.farmer_identity import merge_farmers

    now = utcnow()
    with app.extensions["db"].session() as s, s.begin():
        kept, dropped = Farmer(phone="+905321110001"), Farmer(user_id=USER_ID)
        s.add_all([kept, dropped])
        s.flush()
        for farmer in (kept, dropped):
            assert quota.start_trial(s, farmer.id, now) is not None
        assert quota.charge(s, dropped.id, now).ok  # the Trial's one analysis of the day, on the other row
        merge_farmers(s, keep_id=kept.id, drop_id=dropped.id)
        status = quota.quota_status(s, kept.id, now)
        assert status is not None and status.daily_used == status.daily_limit == 1
        assert not quota.charge(s, kept.id, now).ok  # no second analysis today


def test_a_marketing_stop_given_to_the_user_id_row_survives_the_merge_with_the_phone_row(app, graph, session):
    deliver(app, graph, delivery(text("Merhaba", phone=PHONE), phone=PHONE))
    deliver(app, graph, delivery(text("Merhaba", phone=None, user_id=USER_ID), phone=None, user_id=USER_ID))
    stop = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "user_preferences", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "908502221133", "phone_number_id": PHONE_NUMBER_ID},
            "user_preferences": [{"user_id": USER_ID, "category": "marketing_messages", "value": "stop",
                                  "timestamp": next(_clock)}]}}]}]}
    assert post_webhook(app.test_client(), stop).status_code == 200
    deliver(app, graph, delivery(text("menü", phone=PHONE, user_id=USER_ID), phone=PHONE, user_id=USER_ID))
    [farmer] = farmers(session)
    assert farmer.marketing_opt_out_at is not None and not farmer.accepts_proactive


def test_a_user_id_linked_to_a_phone_finds_the_farmer_and_replies_go_to_the_phone(app, graph, session):
    onboard(app, graph, phone=PHONE, user_id=USER_ID)
    before = len(graph.sent)
    replies = deliver(app, graph, delivery(text("menü", phone=None, user_id=USER_ID), phone=None, user_id=USER_ID))
    assert len(farmers(session)) == 1
    assert CONSENT_QUESTION not in graph.button_ids(before) and replies
    assert all(b.get("to") == "+" + PHONE for b in graph.sent[before:])


def _queued_to_user_id(app, farmer_phone: str | None) -> int:
    with app.extensions["db"].session() as s, s.begin():
        farmer = Farmer(phone=farmer_phone, user_id=USER_ID, locale="tr")
        s.add(farmer)
        s.flush()
        return queue_message(s, USER_ID, wa.text(USER_ID, "Sonucunuz hazır"), utcnow(), farmer_id=farmer.id).id


def test_error_131062_falls_back_to_the_phone_when_it_is_known(app, graph, session):
    row_id = _queued_to_user_id(app, "+" + PHONE)
    graph.errors.append({"message": "User ID not allowed for this message", "code": 131062})
    assert send_pending(row_id) == "retry"
    assert send_pending(row_id) == "sent"
    first, second = graph.sent
    assert first["recipient"] == USER_ID and "to" not in first
    assert second["to"] == "+" + PHONE and "recipient" not in second
    assert session.get(Message, row_id).status == "accepted"


def test_error_131062_without_a_phone_is_reported_to_support(app, graph, session):
    row_id = _queued_to_user_id(app, None)
    graph.errors.append({"message": "User ID not allowed for this message", "code": 131062})
    assert send_pending(row_id) == "failed"
    row = session.get(Message, row_id)
    assert (row.status, row.error_code) == ("failed", 131062)
    assert "support" in row.error_title
    assert len(graph.sent) == 1


def test_user_changed_user_id_moves_the_alias(app, graph, session):
    onboard(app, graph, phone=None, user_id=USER_ID)
    before = len(graph.sent)
    notice = message("system", {"body": "User Mehmet changed their user id", "type": "user_changed_user_id",
                                 "user_id": NEW_USER_ID}, phone=None, user_id=USER_ID)
    deliver(app, graph, delivery(notice, contacts=False))
    [farmer] = farmers(session)
    assert farmer.user_id == NEW_USER_ID
    assert len(graph.sent) == before  # Meta's notice is not answered
    deliver(app, graph, delivery(text("menü", phone=None, user_id=NEW_USER_ID), phone=None, user_id=NEW_USER_ID))
    assert len(farmers(session)) == 1 and CONSENT_QUESTION not in graph.button_ids(before)


def test_a_user_id_change_to_the_id_of_another_farmer_with_another_phone_merges_nobody(app, graph, session):
    a_phone, b_phone, a_id, b_id = "905551110501", "905551110502", "TR.AAA501", "TR.BBB502"
    onboard(app, graph, phone=a_phone, user_id=a_id)
    onboard(app, graph, phone=b_phone, user_id=b_id)
    notice = message("system", {"body": "User changed their user id", "type": "user_changed_user_id",
                                 "user_id": a_id}, phone=b_phone, user_id=b_id)
    deliver(app, graph, delivery(notice, phone=b_phone, user_id=b_id))
    assert [(f.phone, f.user_id) for f in farmers(session)] == [("+" + a_phone, a_id), ("+" + b_phone, b_id)]
    kept = session.scalars(select(UnhandledWebhook)).one()
    assert "another farmer with another phone" in kept.reason and kept.payload["user_id"] == a_id
    before = len(graph.sent)
    deliver(app, graph, delivery(text("menü", phone=a_phone, user_id=a_id), phone=a_phone, user_id=a_id))
    assert len(farmers(session)) == 2 and CONSENT_QUESTION not in graph.button_ids(before)


def test_a_merge_into_a_row_still_asked_for_consent_keeps_the_consent_and_does_not_ask_again(app, graph, session):
    deliver(app, graph, delivery(text("Merhaba", phone=PHONE), phone=PHONE))  # asked, never answered
    onboard(app, graph, phone=None, user_id=USER_ID)  # the same person, known by user id, accepted
    before = len(graph.sent)
    deliver(app, graph, delivery(text("domateste leke var", phone=PHONE, user_id=USER_ID), phone=PHONE,
                                 user_id=USER_ID))
    [farmer] = farmers(session)
    assert farmer.consent_at is not None
    assert graph.sent[before:] and CONSENT_QUESTION not in graph.button_ids(before)
    assert session.scalars(select(Conversation.state)).one() not in ("start", "await_consent")


def test_user_id_update_event_moves_the_alias(app, graph, session):
    onboard(app, graph, phone=None, user_id=USER_ID)
    body = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "user_id_update", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "908502221133", "phone_number_id": PHONE_NUMBER_ID},
            "user_id_update": [{"user_id": {"previous": USER_ID, "current": NEW_USER_ID},
                                "timestamp": str(next(_clock))}]}}]}]}
    assert post_webhook(app.test_client(), body).status_code == 200
    assert [f.user_id for f in farmers(session)] == [NEW_USER_ID]
    assert session.scalar(select(func.count()).select_from(UnhandledWebhook)) == 0


def test_a_group_recipient_id_is_not_turned_into_a_phone_number(app, session):
    group_id = "MTIwMzYzMjk5MTExMDI0QGcudXM="  # base64: its digits once made `+299111024`
    status = {"id": "wamid.GROUP1", "status": "sent", "timestamp": str(next(_clock)), "recipient_id": group_id,
              "recipient_type": "group"}
    body = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp", "metadata": {
            "display_phone_number": "908502221133", "phone_number_id": PHONE_NUMBER_ID}, "statuses": [status]}}]}]}
    assert post_webhook(app.test_client(), body).status_code == 200
    event = session.scalars(select(MessageStatusEvent)).one()
    assert event.recipient is None


# --- our own numbers, groups, number changes ------------------------------------------------------


def test_a_message_to_another_number_is_stored_as_unhandled_and_never_answered(app, graph, session):
    deliver(app, graph, delivery(text("Merhaba"), number_id=OTHER_NUMBER_ID))
    assert graph.sent == []
    assert session.scalar(select(func.count()).select_from(Message)) == 0
    assert farmers(session) == []
    [unhandled] = session.scalars(select(UnhandledWebhook)).all()
    assert OTHER_NUMBER_ID in unhandled.reason and "not one of ours" in unhandled.reason


@pytest.mark.parametrize("messages", [1, 2])  # one message: the parser's fast path; two: its full walk
def test_a_message_to_another_number_given_as_a_json_number_is_stored_as_unhandled(app, graph, session, messages):
    deliver(app, graph, delivery(*(text("Merhaba") for _ in range(messages)), number_id=int(OTHER_NUMBER_ID)))
    assert graph.sent == []
    assert session.scalar(select(func.count()).select_from(Message)) == 0
    unhandled = session.scalars(select(UnhandledWebhook)).all()
    assert len(unhandled) == messages and all(OTHER_NUMBER_ID in u.reason for u in unhandled)


@pytest.mark.parametrize("messages", [1, 2])
def test_our_number_given_as_a_json_number_is_answered_from_it(app, graph, session, messages):
    deliver(app, graph, delivery(*(text("Merhaba") for _ in range(messages)), number_id=int(PHONE_NUMBER_ID)))
    assert graph.sent and set(graph.from_numbers) == {PHONE_NUMBER_ID}
    assert set(session.scalars(select(Message.phone_number_id).where(Message.direction == "in"))) == {PHONE_NUMBER_ID}


def test_replies_go_out_from_the_number_the_farmer_wrote_to(database_url, graph):
    app = create_app(make_settings(database_url, WHATSAPP_PHONE_NUMBER_ID=f"{PHONE_NUMBER_ID}, {OTHER_NUMBER_ID}"))
    clean_stores(app)
    try:
        with app.app_context():
            deliver(app, graph, delivery(text("Merhaba"), number_id=OTHER_NUMBER_ID))
            assert graph.sent and set(graph.from_numbers) == {OTHER_NUMBER_ID}
            with app.extensions["db"].reader() as s:
                rows = s.scalars(select(Message.phone_number_id)).all()
            assert set(rows) == {OTHER_NUMBER_ID}
    finally:
        app.extensions["db"].engine.dispose()


def test_a_group_message_is_stored_not_answered(app, graph, session):
    deliver(app, graph, delivery(text("Merhaba", group_id="120363299111024@g.us")))
    assert graph.sent == []
    row = session.scalars(select(Message)).one()
    assert (row.status, row.farmer_id, row.text) == ("processed", None, "Merhaba")
    assert farmers(session) == []


def test_user_changed_number_moves_the_farmer_to_the_new_number(app, graph, session):
    onboard(app, graph, phone=PHONE)
    new_phone = "905339876543"
    notice = message("system", {"body": f"User Mehmet changed from {PHONE} to {new_phone}", "wa_id": new_phone,
                                "type": "user_changed_number"})
    before = len(graph.sent)
    deliver(app, graph, delivery(notice, contacts=False))
    assert len(graph.sent) == before
    [farmer] = farmers(session)
    assert farmer.phone == "+" + new_phone and farmer.consent_at is not None
    deliver(app, graph, delivery(text("menü", phone=new_phone), phone=new_phone))
    assert CONSENT_QUESTION not in graph.button_ids(before)
    assert len(farmers(session)) == 1
    assert session.scalar(select(func.count()).select_from(Subscription)) == 1  # no second Trial
    assert set(session.scalars(select(Message.farmer_id).where(Message.direction == "in"))) == {farmer.id}
    deliver(app, graph, delivery(text("Merhaba", phone=PHONE)))  # the old number is somebody new
    assert len(farmers(session)) == 2 and CONSENT_QUESTION in graph.button_ids(before)


def test_a_reaction_taken_back_gets_no_answer(app, graph, session):
    onboard(app, graph, phone=PHONE)
    before = len(graph.sent)
    deliver(app, graph, delivery(message("reaction", {"message_id": "wamid.OUT1", "emoji": ""})))
    deliver(app, graph, delivery(message("reaction", {"message_id": "wamid.OUT1"})))
    assert len(graph.sent) == before
    rows = session.scalars(select(Message).where(Message.type == "reaction")).all()
    assert [r.status for r in rows] == ["processed", "processed"]
    deliver(app, graph, delivery(message("reaction", {"message_id": "wamid.OUT1", "emoji": "👍"})))
    assert len(graph.sent) == before + 1  # a reaction given is still thanked


@pytest.mark.parametrize("kind, content", [
    ("order", {"catalog_id": "1", "product_items": [{"product_retailer_id": "a", "quantity": 1}]}),
    ("request_welcome", None),
    ("edit", {"original_message_id": "wamid.IN1", "message": {"type": "text", "text": {"body": "x"}}}),
])
def test_metas_own_message_type_is_kept(app, graph, session, kind, content):
    deliver(app, graph, delivery(message(kind, content)))
    assert session.scalars(select(Message.type).where(Message.direction == "in")).one() == kind


def test_an_edited_text_is_kept_with_its_original_and_answered_as_the_text_it_now_says(app, graph, session):
    onboard(app, graph, phone=PHONE)
    original = text("domatesimde leke var")
    deliver(app, graph, delivery(original))
    edited = {"original_message_id": original["id"],
              "message": {"type": "text", "text": {"body": "domatesimde sarı leke var"}}}
    answer = deliver(app, graph, delivery(message("edit", edited)))
    row = session.scalars(select(Message).where(Message.direction == "in", Message.type == "edit")).one()
    assert (row.text, row.context_wamid, row.status) == ("domatesimde sarı leke var", original["id"], "processed")
    again = deliver(app, graph, delivery(text("domatesimde sarı leke var")))
    assert answer and answer == again  # the same answer as the text itself, never "I can only read text"


def test_an_interactive_flow_reply_keeps_its_type(app, graph, session):
    flow = {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent", "response_json": "{}"}}
    deliver(app, graph, delivery(message("interactive", flow)))
    assert session.scalars(select(Message.type).where(Message.direction == "in")).one() == "nfm_reply"


def test_a_jpeg_sent_as_a_document_is_handled_as_a_photo(app, graph, session):
    onboard(app, graph, phone=PHONE)
    photo = deliver(app, graph, delivery(message("image", {"id": "111", "mime_type": "image/jpeg",
                                                           "sha256": "ab" * 32})))
    deliver(app, graph, delivery(text("iptal")))
    as_file = deliver(app, graph, delivery(message("document", {"id": "222", "mime_type": "image/jpeg",
                                                                "filename": "yaprak.jpg", "sha256": "cd" * 32})))
    assert as_file == photo
    pdf = deliver(app, graph, delivery(message("document", {"id": "333", "mime_type": "application/pdf",
                                                            "filename": "rapor.pdf"})))
    assert pdf != photo
    assert session.scalar(select(func.count()).select_from(UsageLedger)) == 0  # nothing charged before sending


def test_a_reply_still_waiting_follows_the_farmer_to_the_new_number(app, graph, session):
    onboard(app, graph, phone=PHONE)
    farmer_id = farmers(session)[0].id
    with app.extensions["db"].session() as s, s.begin():
        waiting = queue_message(s, "+" + PHONE, wa.text("+" + PHONE, "Sonucunuz hazır"), utcnow(),
                                farmer_id=farmer_id).id
    new_phone = "905339876543"
    notice = message("system", {"body": f"User Mehmet changed from {PHONE} to {new_phone}", "wa_id": new_phone,
                                "type": "user_changed_number"})
    assert post_webhook(app.test_client(), delivery(notice, contacts=False)).status_code == 200
    row = session.get(Message, waiting)
    assert (row.phone, row.payload["to"], row.status) == ("+" + new_phone, "+" + new_phone, "pending")


def test_several_numbers_of_ours_are_read_from_settings():
    settings = make_settings("sqlite://", WHATSAPP_PHONE_NUMBER_ID=f" {PHONE_NUMBER_ID} ,{OTHER_NUMBER_ID},")
    assert settings.phone_number_ids == (PHONE_NUMBER_ID, OTHER_NUMBER_ID)


# --- merges racing with more messages ----------------------------------------------------------------


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="SQLite lets one writer in at a time: the race needs PostgreSQL")
def test_messages_arriving_while_two_rows_merge_all_stay_with_the_farmer_and_are_answered(app, graph, session):
    """The phone and the user id of one farmer on two rows; a message naming both merges them while eight
    more name the user id alone. Each of those lands on the farmer, whichever row it found, and is answered."""
    for round_ in range(3):
        phone, uid = f"90532111005{round_}", f"TR.MAx{round_}"
        assert post_webhook(app.test_client(), delivery(text("Merhaba", phone=phone), phone=phone)).status_code == 200
        assert post_webhook(app.test_client(), delivery(text("Merhaba", phone=None, user_id=uid), phone=None,
                                                        user_id=uid)).status_code == 200
        both = delivery(text("menü", phone=phone, user_id=uid), phone=phone, user_id=uid)
        post_concurrently(app, [both, *(delivery(text(f"soru {i}", phone=None, user_id=uid), phone=None, user_id=uid)
                                    for i in range(8))])
    rows = session.execute(select(Message.farmer_id, Message.phone).where(Message.direction == "in")).all()
    assert len(rows) == 33 and all(farmer_id is not None for farmer_id, _ in rows), rows
    assert len(farmers(session)) == 3 and len({farmer_id for farmer_id, _ in rows}) == 3
    run_jobs(app)
    statuses = session.scalars(select(Message.status).where(Message.direction == "in")).all()
    assert statuses == ["processed"] * 33


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="SQLite lets one writer in at a time: the race needs PostgreSQL")
def test_thirty_first_messages_at_once_by_phone_user_id_or_both_make_one_farmer_who_gets_every_answer(app, graph,
                                                                                                    session):
    phone, uid = "905321110060", "TR.MAy0"
    senders: list[dict[str, Any]] = [{"phone": phone}, {"phone": None, "user_id": uid},
                                     {"phone": phone, "user_id": uid}]
    post_concurrently(app, [delivery(text(f"soru {i}", **senders[i % 3]), **senders[i % 3]) for i in range(30)])
    rows = session.execute(select(Message.farmer_id).where(Message.direction == "in")).scalars().all()
    assert len(rows) == 30 and None not in rows
    run_jobs(app)
    [farmer] = farmers(session)
    assert (farmer.phone, farmer.user_id) == ("+" + phone, uid)
    inbound = session.execute(select(Message.farmer_id, Message.status).where(Message.direction == "in")).all()
    assert set(inbound) == {(farmer.id, "processed")}


def _orphan(app, sender: str, wamid: str) -> int:
    """An inbound message left as a lost merge would leave it: still to answer, its farmer row gone."""
    with app.extensions["db"].session() as s, s.begin():
        row = Message(direction="in", wamid=wamid, phone=sender, phone_number_id=PHONE_NUMBER_ID, type="text",
                      text="menü", status="received", attempts=0,
                      payload={"from_user_id": sender, "id": wamid, "type": "text", "text": {"body": "menü"}},
                      created_at=utcnow() - timedelta(minutes=1), meta_timestamp=utcnow() - timedelta(minutes=1))
        s.add(row)
        s.flush()
        return row.id


def test_the_sweeper_gives_a_message_whose_farmer_row_is_gone_to_the_farmer_its_sender_is_now(app, graph, session):
    onboard(app, graph, phone=PHONE, user_id=USER_ID)
    [farmer] = farmers(session)
    orphan = _orphan(app, USER_ID, "wamid.ORPHAN1")
    before = len(graph.sent)
    assert sweep_unqueued(grace_seconds=0) == 1
    assert session.get(Message, orphan).farmer_id == farmer.id
    run_jobs(app)
    assert session.get(Message, orphan).status == "processed"
    assert graph.sent[before:] and all(b.get("to") == "+" + PHONE for b in graph.sent[before:])


def test_a_message_whose_farmer_row_is_gone_and_whose_sender_nobody_is_is_marked_failed_for_support(app, session):
    orphan = _orphan(app, "TR.nobody000", "wamid.ORPHAN2")
    assert sweep_unqueued(grace_seconds=0) == 0
    row = session.get(Message, orphan)
    assert (row.status, row.farmer_id, row.error_title) == ("failed", None, "no farmer is known by its sender")
