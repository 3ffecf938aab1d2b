"""Send failures Meta reports later, in a `failed` status webhook: the same error policy as a refused send.

Each test sends through a Graph API mocked with `responses`, posts a signed status body shaped like Meta's,
and checks the rows stored, what Graph received next, and `ziraai_whatsapp_errors_total{code,where}`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
import responses
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from models import Farmer, Message, MessageStatusEvent, UnhandledWebhook, WebhookError, WhatsAppTemplate, utcnow
from services import runtime_settings
from services.sponsor_messages import Refusal, queue_sponsor_message
from services.whatsapp import messages as wa
from services.whatsapp.failures import PACE_SECONDS
from services.whatsapp.health import ACCOUNT_BLOCK_KEY
from services.whatsapp.outbox import queue_message, send_pending, sent_key
from tests.admin_helpers import bearer, token_for
from tests.dev_live import live_app
from tests.helpers import GRAPH, PHONE_NUMBER_ID, fixture_json, post_webhook, send_outbox, wait_until
from translations.templates import TEMPLATES

TO = "+905321234567"
USER_ID = "TR.13491208655302741918"
MESSAGES_URL = f"{GRAPH}/{PHONE_NUMBER_ID}/messages"
OTHER_NUMBER_ID = "222333444555666"  # a second number of ours
OTHER_MESSAGES_URL = f"{GRAPH}/{OTHER_NUMBER_ID}/messages"
pytestmark = pytest.mark.usefixtures("no_quiet_hours")


# --- helpers ----------------------------------------------------------------------------------------------


@pytest.fixture
def graph():
    """Graph accepts every send with a fresh wamid (wamid.OUT1, wamid.OUT2, ...)."""
    count = iter(range(1, 1000))

    def accept(request: Any) -> tuple[int, dict[str, str], str]:
        return 200, {}, json.dumps({"messaging_product": "whatsapp", "messages": [{"id": f"wamid.OUT{next(count)}"}]})

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for url in (MESSAGES_URL, OTHER_MESSAGES_URL):
            mock.add_callback(responses.POST, url, callback=accept, content_type="application/json")
        yield mock


def sent(graph) -> list[dict]:
    return [json.loads(c.request.body) for c in graph.calls if c.request.url == MESSAGES_URL]


def errors_counted(code: int | str, where: str) -> float:
    return REGISTRY.get_sample_value("ziraai_whatsapp_errors_total", {"code": str(code), "where": where}) or 0.0


def add_farmer(app, phone: str = TO) -> int:
    now = utcnow()
    with app.extensions["db"].session() as s, s.begin():
        farmer = Farmer(phone=phone, profile_name="Mehmet", consent_at=now, consent_version="v1",
                        last_inbound_at=now - timedelta(hours=30), created_at=now, updated_at=now)
        s.add(farmer)
        s.flush()
        return farmer.id


def template_of(name: str, to: str = TO) -> wa.Outbound:
    return wa.build_template(name, to, [f"p{i}" for i in range(len(TEMPLATES[name].param_names))])


def send_one(app, out: wa.Outbound | None = None, *, fallback: wa.Outbound | None = None,
             farmer_id: int | None = None, to: str = TO, from_number: str | None = None) -> Message:
    """Queue a row and send it (Graph accepts): the row, with its wamid."""
    with app.extensions["db"].session() as s, s.begin():
        row = queue_message(s, to, out or wa.text(to, "Analiziniz hazır"), utcnow(), fallback=fallback,
                            farmer_id=farmer_id, from_number=from_number)
        row_id = row.id
    assert send_pending(row_id) == "sent"
    return row_by_id(app, row_id)


def row_by_id(app, row_id: int) -> Message:
    with app.extensions["db"].reader() as s:
        return s.get_one(Message, row_id)


def farmer_by_id(app, farmer_id: int) -> Farmer:
    with app.extensions["db"].reader() as s:
        return s.get_one(Farmer, farmer_id)


def replacements(app, row_id: int) -> list[Message]:
    with app.extensions["db"].reader() as s:
        return list(s.scalars(select(Message).where(Message.replaces_id == row_id)))


def failed_status(wamid: str | None, code: int, title: str, *, recipient: str | None = "905321234567",
                  timestamp: int = 1764990000) -> dict[str, Any]:
    """A `failed` status webhook as Meta sends it (the error in `errors[]`, its details in `error_data`)."""
    status: dict[str, Any] = {"id": wamid, "status": "failed", "timestamp": str(timestamp),
                              "errors": [{"code": code, "title": title, "message": title,
                                          "error_data": {"details": title}}]}
    if recipient is not None:
        status["recipient_id"] = recipient
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "908502221133", "phone_number_id": PHONE_NUMBER_ID},
             "statuses": [status]}
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "211497375401331", "changes": [{"field": "messages", "value": value}]}]}


def post_ok(client, body: dict[str, Any]) -> None:
    response = post_webhook(client, body)
    assert response.status_code == 200, response.get_data(as_text=True)


# --- 131047: outside the 24-hour window -> the row's fallback template, once ---------------------------------


@pytest.mark.parametrize("template", ["analysis_complete_tr", "urgent_health_alert_tr"])
def test_131047_status_sends_the_rows_fallback_template_once(app, client, graph, template):
    farmer_id = add_farmer(app)
    row = send_one(app, fallback=template_of(template), farmer_id=farmer_id)
    before = errors_counted(131047, "status")
    body = failed_status(row.wamid, 131047, "Re-engagement message")
    post_ok(client, body)
    post_ok(client, body)  # Meta delivers at least once: the same failure again changes nothing
    [fallback] = replacements(app, row.id)
    assert (fallback.template_name, fallback.status, fallback.seq) == (template, "pending", row.seq)
    assert row_by_id(app, row.id).status == "failed" and row_by_id(app, row.id).error_code == 131047
    send_outbox(app)
    bodies = sent(graph)
    assert [b["type"] for b in bodies] == ["text", "template"]
    assert bodies[1]["template"]["name"] == template
    assert row_by_id(app, fallback.id).status == "accepted"
    assert errors_counted(131047, "status") == before + 1
    # the fallback failing as well (a template is outside no window: another error) sends nothing more
    post_ok(client, failed_status(row_by_id(app, fallback.id).wamid, 131047, "Re-engagement message"))
    assert replacements(app, fallback.id) == []
    send_outbox(app)
    assert len(sent(graph)) == 2


def test_131047_status_of_a_template_or_a_row_without_fallback_queues_nothing(app, client, graph):
    farmer_id = add_farmer(app)
    sponsor = send_one(app, template_of("sponsor_message_tr"), farmer_id=farmer_id)
    plain = send_one(app, farmer_id=farmer_id)
    post_ok(client, failed_status(sponsor.wamid, 131047, "Re-engagement message"))
    post_ok(client, failed_status(plain.wamid, 131047, "Re-engagement message"))
    assert replacements(app, sponsor.id) == [] and replacements(app, plain.id) == []
    send_outbox(app)
    assert len(sent(graph)) == 2


def test_a_failed_status_before_the_wamid_is_stored_is_acted_on_when_it_is(app, client, graph):
    """Meta may report the failure before our sender recorded the wamid Graph answered."""
    add_farmer(app)
    post_ok(client, failed_status("wamid.OUT1", 131047, "Re-engagement message"))  # the wamid Graph will answer
    row = send_one(app, fallback=template_of("analysis_complete_tr"))
    assert row_by_id(app, row.id).status == "failed"
    [fallback] = replacements(app, row.id)
    assert fallback.template_name == "analysis_complete_tr"


def status(wamid: str | None, kind: str) -> dict[str, Any]:
    body = failed_status(wamid, 0, "")
    event = body["entry"][0]["changes"][0]["value"]["statuses"][0]
    del event["errors"]
    event["status"] = kind
    return body


@pytest.mark.parametrize("reached", ["delivered", "read"])
@pytest.mark.parametrize(("code", "fallback"), [(131000, None), (131047, "analysis_complete_tr")])
def test_a_failed_status_after_delivered_or_read_is_kept_but_neither_fails_the_row_nor_sends_again(
        app, client, graph, session, reached, code, fallback):
    farmer_id = add_farmer(app)
    row = send_one(app, fallback=template_of(fallback) if fallback else None, farmer_id=farmer_id)
    post_ok(client, status(row.wamid, reached))
    post_ok(client, failed_status(row.wamid, code, "Something went wrong"))
    assert row_by_id(app, row.id).status == reached
    assert replacements(app, row.id) == []
    kept = session.scalars(select(MessageStatusEvent.status).where(MessageStatusEvent.wamid == row.wamid)).all()
    assert sorted(kept) == sorted([reached, "failed"])
    send_outbox(app)
    assert len(sent(graph)) == 1


def test_a_read_and_a_failed_status_both_before_the_wamid_is_stored_leave_the_row_read(app, client, graph):
    add_farmer(app)
    post_ok(client, failed_status("wamid.OUT1", 131000, "Something went wrong"))  # the wamid Graph will answer
    post_ok(client, status("wamid.OUT1", "read"))
    row = send_one(app)
    assert row_by_id(app, row.id).status == "read"
    assert replacements(app, row.id) == []


def test_a_read_and_a_failed_status_for_a_send_found_in_redis_leave_the_row_read(app, client, graph):
    """The send's wamid is recorded by the next sender from Redis (the first died): statuses that came
    meanwhile are applied then, to the row it holds."""
    add_farmer(app)
    with app.extensions["db"].session() as s, s.begin():
        row = queue_message(s, TO, wa.text(TO, "Analiziniz hazır"), utcnow())
        row.attempts = 1  # tried once: Graph accepted it, then the sender died
        row_id = row.id
    app.extensions["redis"].set(sent_key(row_by_id(app, row_id)), "wamid.EARLIER")
    post_ok(client, status("wamid.EARLIER", "read"))
    post_ok(client, failed_status("wamid.EARLIER", 131000, "Something went wrong"))
    with app.app_context():
        assert send_pending(row_id) == "already sent"
    assert row_by_id(app, row_id).status == "read"
    assert replacements(app, row_id) == []


# --- 131026: undeliverable -> unreachable, no proactive sends, until the farmer writes ----------------------


def test_131026_marks_the_farmer_unreachable_until_they_write(app, client, graph):
    farmer_id = add_farmer(app)
    row = send_one(app, farmer_id=farmer_id)
    post_ok(client, failed_status(row.wamid, 131026, "Message undeliverable"))
    farmer = farmer_by_id(app, farmer_id)
    assert farmer.unreachable_at is not None and not farmer.accepts_proactive
    assert replacements(app, row.id) == []  # not retried
    # support sees it with the transcript
    token = token_for(app, client, "support")
    shown = client.get(f"/api/v1/farmers/{farmer_id}/messages", headers=bearer(token)).get_json()["farmer"]
    assert shown["unreachable_at"] is not None and shown["accepts_proactive"] is False
    # no sponsor message is queued to them
    with app.extensions["db"].session() as s, s.begin():
        refused = queue_sponsor_message(s, "Agro A.Ş.", farmer_id, "Merhaba", utcnow(), runtime_settings.current())
    assert refused.refusal is Refusal.UNREACHABLE
    # a message from them clears it
    post_ok(client, fixture_json("text.json"))
    assert farmer_by_id(app, farmer_id).unreachable_at is None


def test_a_status_with_a_user_id_and_no_contacts_is_applied_by_wamid(app, client, graph, session):
    farmer_id = add_farmer(app)
    body = fixture_json("status_failed_user_id_no_contacts.json")
    row = send_one(app, farmer_id=farmer_id)
    body["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = row.wamid
    post_ok(client, body)
    assert row_by_id(app, row.id).status == "failed"
    event = session.scalar(select(MessageStatusEvent).where(MessageStatusEvent.wamid == row.wamid))
    assert event.recipient is None  # a user id is not made into a phone number
    assert event.payload["recipient_user_id"].startswith("TR.")
    assert farmer_by_id(app, farmer_id).unreachable_at is not None


# --- 131049 / 130472 / 131050 and user_preferences: marketing -------------------------------------------


@pytest.mark.parametrize("code", [131049, 130472])
def test_marketing_limits_are_not_retried_and_hold_later_sponsor_messages(app, client, graph, code):
    farmer_id = add_farmer(app)
    row = send_one(app, template_of("sponsor_message_tr"), farmer_id=farmer_id)
    post_ok(client, failed_status(row.wamid, code, "Message failed to send"))
    assert replacements(app, row.id) == []
    paused_until = farmer_by_id(app, farmer_id).marketing_paused_until
    assert paused_until is not None and paused_until > utcnow() + timedelta(hours=23)
    with app.extensions["db"].session() as s, s.begin():
        later = queue_message(s, TO, template_of("sponsor_message_tr"), utcnow(), farmer_id=farmer_id).id
    assert send_pending(later) == "deferred"
    assert row_by_id(app, later).next_attempt_at == paused_until
    assert len(sent(graph)) == 1
    assert errors_counted(code, "status") >= 1


def test_131050_is_a_marketing_opt_out(app, client, graph):
    farmer_id = add_farmer(app)
    row = send_one(app, template_of("sponsor_message_tr"), farmer_id=farmer_id)
    post_ok(client, failed_status(row.wamid, 131050, "Unable to deliver the message"))
    assert farmer_by_id(app, farmer_id).marketing_opt_out_at is not None
    assert replacements(app, row.id) == []
    with app.extensions["db"].session() as s, s.begin():
        refused = queue_sponsor_message(s, "Agro A.Ş.", farmer_id, "Merhaba", utcnow(), runtime_settings.current())
    assert refused.refusal is Refusal.MARKETING_OPT_OUT


def test_user_preferences_stop_and_resume_mirror_the_marketing_opt_out(app, client, session):
    farmer_id = add_farmer(app)
    body = fixture_json("user_preferences_marketing.json")
    post_ok(client, body)
    assert farmer_by_id(app, farmer_id).marketing_opt_out_at is not None
    assert not farmer_by_id(app, farmer_id).accepts_proactive
    body["entry"][0]["changes"][0]["value"]["user_preferences"][0].update(value="resume", timestamp=1764990200)
    post_ok(client, body)
    assert farmer_by_id(app, farmer_id).marketing_opt_out_at is None
    assert farmer_by_id(app, farmer_id).accepts_proactive
    assert session.scalar(select(func.count()).select_from(UnhandledWebhook)) == 0


def preference(value: str, timestamp: int | None, **who: str) -> dict[str, Any]:
    """A `user_preferences` body about the farmer named in `who` (`wa_id`, `user_id`), as Meta sends it."""
    body = fixture_json("user_preferences_marketing.json")
    item: dict[str, Any] = {**who, "category": "marketing_messages", "value": value}
    if timestamp is not None:
        item["timestamp"] = timestamp
    body["entry"][0]["changes"][0]["value"]["user_preferences"] = [item]
    return body


@pytest.mark.parametrize("newer,older,opted_out", [("stop", "resume", True), ("resume", "stop", False)])
def test_an_older_user_preference_arriving_later_does_not_undo_a_newer_one(app, client, newer, older, opted_out):
    farmer_id = add_farmer(app)
    now = int(utcnow().timestamp())
    post_ok(client, preference(newer, now, wa_id="905321234567"))
    post_ok(client, preference(older, now - 3600, wa_id="905321234567"))  # a retry, or delivered out of order
    assert (farmer_by_id(app, farmer_id).marketing_opt_out_at is not None) is opted_out
    post_ok(client, preference(older, now + 60, wa_id="905321234567"))  # a newer one still applies
    assert (farmer_by_id(app, farmer_id).marketing_opt_out_at is not None) is not opted_out


def test_a_user_preference_without_a_timestamp_counts_as_made_on_arrival(app, client):
    farmer_id = add_farmer(app)
    now = int(utcnow().timestamp())
    post_ok(client, preference("stop", now - 3600, wa_id="905321234567"))
    post_ok(client, preference("resume", None, wa_id="905321234567"))
    farmer = farmer_by_id(app, farmer_id)
    assert farmer.marketing_opt_out_at is None
    made_at = farmer.marketing_preference_at
    assert made_at is not None and made_at > utcnow() - timedelta(minutes=1)
    post_ok(client, preference("stop", now - 60, wa_id="905321234567"))  # made before the resume arrived
    assert farmer_by_id(app, farmer_id).marketing_opt_out_at is None


def test_a_stop_and_a_resume_made_in_the_same_second_leave_the_farmer_opted_out(app, client):
    farmer_id = add_farmer(app)
    now = int(utcnow().timestamp())
    post_ok(client, preference("stop", now, wa_id="905321234567"))
    post_ok(client, preference("resume", now, wa_id="905321234567"))
    assert farmer_by_id(app, farmer_id).marketing_opt_out_at is not None


def test_a_user_preference_naming_only_a_user_id_applies_to_the_username_farmer(app, client, session):
    now = utcnow()
    with app.extensions["db"].session() as s, s.begin():
        farmer = Farmer(user_id="TR.Sync62User1", consent_at=now, consent_version="v1", created_at=now,
                        updated_at=now)
        s.add(farmer)
        s.flush()
        farmer_id = farmer.id
    post_ok(client, preference("stop", int(now.timestamp()), user_id="TR.Sync62User1"))
    assert farmer_by_id(app, farmer_id).marketing_opt_out_at is not None
    assert session.scalar(select(func.count()).select_from(UnhandledWebhook)) == 0
    post_ok(client, preference("resume", int(now.timestamp()) + 1, wa_id="905321234567", user_id="TR.Sync62User1"))
    assert farmer_by_id(app, farmer_id).marketing_opt_out_at is None  # no farmer has the phone: the user id finds it


# --- 130429 / 131056 / 131048: back off as the send path does --------------------------------------------


def test_130429_status_resends_after_the_backoff(app, client, graph):
    add_farmer(app)
    row = send_one(app)
    post_ok(client, failed_status(row.wamid, 130429, "Rate limit hit"))
    [resend] = replacements(app, row.id)
    assert (resend.status, resend.attempts, resend.seq) == ("pending", 1, row.seq)
    send_outbox(app)  # the tests' backoff base is 0: due at once
    assert [b["text"]["body"] for b in sent(graph)] == ["Analiziniz hazır"] * 2
    assert row_by_id(app, resend.id).status == "accepted"


def test_131056_resends_and_paces_the_farmer_to_one_message_per_6_s(app, client, graph):
    farmer_id = add_farmer(app)
    row = send_one(app, farmer_id=farmer_id)
    post_ok(client, failed_status(row.wamid, 131056, "(Business Account, Consumer Account) pair rate limit hit"))
    paced_until = farmer_by_id(app, farmer_id).paced_until
    assert paced_until is not None and paced_until > utcnow()
    [resend] = replacements(app, row.id)
    with app.extensions["db"].session() as s, s.begin():
        later = queue_message(s, TO, wa.text(TO, "Başka bir şey?"), utcnow(), farmer_id=farmer_id).id
    before = utcnow()
    send_outbox(app)
    assert [b["text"]["body"] for b in sent(graph)] == ["Analiziniz hazır"] * 2  # the resend went, not the next
    assert row_by_id(app, resend.id).status == "accepted"
    waiting = row_by_id(app, later)
    assert waiting.status == "pending"
    # Due when the pace that began with the resend (sent after `before`) ends: clock bounds, not timings.
    assert waiting.next_attempt_at is not None
    assert before + timedelta(seconds=PACE_SECONDS - 1) < waiting.next_attempt_at
    assert waiting.next_attempt_at <= utcnow() + timedelta(seconds=PACE_SECONDS)


def test_131048_status_is_not_resent_and_alerts(app, client, graph, caplog):
    add_farmer(app)
    row = send_one(app)
    with caplog.at_level("ERROR"):
        post_ok(client, failed_status(row.wamid, 131048, "Spam rate limit hit"))
    assert replacements(app, row.id) == []
    assert any(r.levelname == "ERROR" and getattr(r, "error_code", None) == 131048 for r in caplog.records)


def posted_from(graph) -> list[str]:
    """The number of ours each send went out from (the id in Graph's URL)."""
    return [c.request.url.split("/")[-2] for c in graph.calls]


@pytest.mark.parametrize("code", [130429, 131056])
def test_a_resend_goes_out_from_the_number_the_farmer_wrote_to(app, client, graph, code):
    farmer_id = add_farmer(app)
    with app.extensions["db"].session() as s, s.begin():
        s.get_one(Farmer, farmer_id).our_number_id = OTHER_NUMBER_ID  # the farmer wrote to our second number
    row = send_one(app, farmer_id=farmer_id)
    post_ok(client, failed_status(row.wamid, code, "Rate limit hit"))
    [resend] = replacements(app, row.id)
    assert resend.phone_number_id == OTHER_NUMBER_ID
    send_outbox(app)
    assert posted_from(graph) == [OTHER_NUMBER_ID, OTHER_NUMBER_ID]
    assert row_by_id(app, resend.id).status == "accepted"


def test_a_fallback_template_goes_out_from_the_number_the_failed_message_went_from(app, client, graph):
    row = send_one(app, fallback=template_of("analysis_complete_tr"), from_number=OTHER_NUMBER_ID)
    post_ok(client, failed_status(row.wamid, 131047, "Re-engagement message"))
    [fallback] = replacements(app, row.id)
    assert fallback.phone_number_id == OTHER_NUMBER_ID
    send_outbox(app)
    assert posted_from(graph) == [OTHER_NUMBER_ID, OTHER_NUMBER_ID]


# --- 131062: a user id is not allowed for this message -> the phone, as the send path does -----------------


def add_farmer_by_user_id(app, phone: str | None) -> int:
    with app.extensions["db"].session() as s, s.begin():
        farmer = Farmer(phone=phone, user_id=USER_ID, locale="tr")
        s.add(farmer)
        s.flush()
        return farmer.id


def test_131062_status_resends_to_the_farmers_phone_once_it_is_known(app, client, graph):
    farmer_id = add_farmer_by_user_id(app, None)
    row = send_one(app, farmer_id=farmer_id, to=USER_ID, from_number=OTHER_NUMBER_ID)
    with app.extensions["db"].session() as s, s.begin():
        s.get_one(Farmer, farmer_id).phone = TO  # learned since (the farmer wrote with their phone)
    body = failed_status(row.wamid, 131062, "User ID not allowed for this message", recipient=None)
    post_ok(client, body)
    [resend] = replacements(app, row.id)
    assert (resend.status, resend.seq, resend.phone_number_id) == ("pending", row.seq, OTHER_NUMBER_ID)
    send_outbox(app)
    first, second = [json.loads(c.request.body) for c in graph.calls]
    assert first["recipient"] == USER_ID and "to" not in first
    assert second["to"] == TO and "recipient" not in second
    assert second["text"] == first["text"]
    assert row_by_id(app, resend.id).status == "accepted"
    assert (row_by_id(app, row.id).status, row_by_id(app, row.id).error_code) == ("failed", 131062)


def test_131062_status_without_a_phone_tells_support_to_reach_the_farmer(app, client, graph, caplog):
    farmer_id = add_farmer_by_user_id(app, None)
    row = send_one(app, farmer_id=farmer_id, to=USER_ID)
    with caplog.at_level("ERROR"):
        post_ok(client, failed_status(row.wamid, 131062, "User ID not allowed for this message", recipient=None))
    assert replacements(app, row.id) == []
    failed = row_by_id(app, row.id)
    assert (failed.status, failed.error_code) == ("failed", 131062)
    assert failed.error_title is not None and "support must reach the farmer" in failed.error_title
    assert failed.error_title.startswith("User ID not allowed for this message")
    assert any(r.levelname == "ERROR" and getattr(r, "error_code", None) == 131062 for r in caplog.records)
    send_outbox(app)
    assert len(graph.calls) == 1


# --- 132015 / 132016 and 131042 / 368 / 131031: stop using the template / stop sending, alert --------------


@pytest.mark.parametrize("code", [132015, 132016])
def test_a_paused_template_is_not_used_again(app, client, graph, caplog, code):
    farmer_id = add_farmer(app)
    row = send_one(app, template_of("analysis_complete_tr"), farmer_id=farmer_id)
    with caplog.at_level("CRITICAL"):
        post_ok(client, failed_status(row.wamid, code, "Template is paused"))
    assert any(r.levelname == "CRITICAL" and getattr(r, "template", None) == "analysis_complete_tr"
               for r in caplog.records)
    with app.extensions["db"].session() as s:
        registered = s.scalar(select(WhatsAppTemplate).where(WhatsAppTemplate.name == "analysis_complete_tr"))
    assert registered is not None and registered.status == {132015: "PAUSED", 132016: "DISABLED"}[code]
    with app.extensions["db"].session() as s, s.begin():
        again = queue_message(s, TO, template_of("analysis_complete_tr"), utcnow(), farmer_id=farmer_id).id
        other = queue_message(s, TO, wa.text(TO, "Metin gider"), utcnow(), farmer_id=farmer_id).id
    send_outbox(app)
    refused = row_by_id(app, again)
    assert refused.status == "failed" and "not sent" in (refused.error_title or "")
    assert row_by_id(app, other).status == "accepted"
    assert [b["type"] for b in sent(graph)].count("template") == 1  # the blocked template never went again


@pytest.mark.parametrize("code", [131042, 368, 131031])
def test_an_account_block_stops_sending_and_alerts(app, client, graph, caplog, code):
    add_farmer(app)
    row = send_one(app)
    with caplog.at_level("CRITICAL"):
        post_ok(client, failed_status(row.wamid, code, "Business eligibility payment issue"))
    assert any(r.levelname == "CRITICAL" for r in caplog.records)
    assert app.extensions["redis"].get(ACCOUNT_BLOCK_KEY) is not None
    with app.extensions["db"].session() as s:  # the refused message is queued again in its place, after the block
        again = s.scalars(select(Message).where(Message.replaces_id == row.id)).one()
    assert again.status == "pending" and again.seq == row.seq and again.payload == row.payload
    assert again.next_attempt_at is not None and again.next_attempt_at > utcnow() + timedelta(minutes=4)
    with app.extensions["db"].session() as s, s.begin():
        held = queue_message(s, TO, wa.text(TO, "Bekler"), utcnow()).id
    assert send_pending(held) == "waiting"  # behind the refused one, in the farmer's line
    assert len(sent(graph)) == 1
    assert errors_counted(code, "status") >= 1


@pytest.mark.parametrize("code", [131042, 368])
def test_the_unblock_command_lifts_the_block_and_sends_the_held_replies_at_once_in_order(app, client, graph,
                                                                                         runner, code):
    add_farmer(app)
    row = send_one(app)
    post_ok(client, failed_status(row.wamid, code, "Business eligibility payment issue"))
    with app.extensions["db"].session() as s, s.begin():
        held = [queue_message(s, TO, wa.text(TO, body), utcnow()).id for body in ("Bir", "İki")]
    send_outbox(app)
    assert [row_by_id(app, i).status for i in held] == ["pending", "pending"]
    result = runner.invoke(args=["whatsapp-unblock"])
    assert result.exit_code == 0 and "1 held message(s) due now" in result.output  # the first of the line
    assert app.extensions["redis"].get(ACCOUNT_BLOCK_KEY) is None
    send_outbox(app)
    # The refused message goes again first, in its place, then the replies held behind it.
    assert [b["text"]["body"] for b in sent(graph)[1:]] == ["Analiziniz hazır", "Bir", "İki"]
    assert [row_by_id(app, i).status for i in held] == ["accepted", "accepted"]


@pytest.mark.parametrize("code", [131042, 368, 131031])
def test_a_send_refused_for_an_account_block_is_held_in_its_place_and_goes_once_the_block_lifts(
        app, graph, runner, code):
    refusal = json.dumps({"error": {"message": "Business eligibility payment issue", "type": "OAuthException",
                                    "code": code, "fbtrace_id": "A"}})
    answers: Iterator[tuple[int, dict[str, str], str]] = iter([(400, {}, refusal)])

    def refuse_once(request: Any) -> tuple[int, dict[str, str], str]:
        return next(answers, (200, {}, json.dumps({"messages": [{"id": f"wamid.HELD{len(graph.calls)}"}]})))

    graph.remove(responses.POST, MESSAGES_URL)
    graph.add_callback(responses.POST, MESSAGES_URL, callback=refuse_once, content_type="application/json")
    with app.extensions["db"].session() as s, s.begin():
        first = queue_message(s, TO, wa.text(TO, "Kotanız: 2 analiz"), utcnow()).id
        second = queue_message(s, TO, wa.text(TO, "Sonra"), utcnow()).id
    assert send_pending(first) == "deferred"
    refused = row_by_id(app, first)
    assert refused.status == "pending" and refused.error_code == code
    assert refused.next_attempt_at is not None and refused.next_attempt_at > utcnow() + timedelta(minutes=4)
    assert app.extensions["redis"].get(ACCOUNT_BLOCK_KEY) is not None
    assert runner.invoke(args=["whatsapp-unblock"]).exit_code == 0
    send_outbox(app)
    assert [row_by_id(app, i).status for i in (first, second)] == ["accepted", "accepted"]
    assert [b["text"]["body"] for b in sent(graph)] == ["Kotanız: 2 analiz"] * 2 + ["Sonra"]  # refused, then sent


def test_a_refused_send_records_the_same_effects_and_counts_where_send(app, graph):
    farmer_id = add_farmer(app)
    graph.replace(responses.POST, MESSAGES_URL, status=400, json={"error": {
        "message": "Message undeliverable", "type": "OAuthException", "code": 131026, "fbtrace_id": "A1"}})
    before = errors_counted(131026, "send")
    with app.extensions["db"].session() as s, s.begin():
        row_id = queue_message(s, TO, wa.text(TO, "Merhaba"), utcnow(), farmer_id=farmer_id).id
    assert send_pending(row_id) == "failed"
    assert farmer_by_id(app, farmer_id).unreachable_at is not None
    assert errors_counted(131026, "send") == before + 1


# --- value-level errors and pricing ----------------------------------------------------------------------


def test_value_level_errors_alone_are_kept_and_counted_not_unhandled(app, client, session):
    before = errors_counted(131000, "value")
    post_ok(client, fixture_json("value_errors_only.json"))
    [kept] = session.scalars(select(WebhookError)).all()
    assert (kept.code, kept.title, kept.phone_number_id) == (131000, "Something went wrong", PHONE_NUMBER_ID)
    assert "unknown error" in kept.details
    assert session.scalar(select(func.count()).select_from(UnhandledWebhook)) == 0
    assert errors_counted(131000, "value") == before + 1


def test_value_level_errors_next_to_statuses_are_kept_and_the_statuses_applied(app, client, graph, session):
    add_farmer(app)
    row = send_one(app)
    body = fixture_json("value_errors_only.json")
    body["entry"][0]["changes"][0]["value"]["statuses"] = [
        {"id": row.wamid, "status": "delivered", "timestamp": "1764990300", "recipient_id": "905321234567"}]
    post_ok(client, body)
    assert row_by_id(app, row.id).status == "delivered"
    assert session.scalar(select(func.count()).select_from(WebhookError)) == 1


def test_pricing_of_each_status_is_stored_for_cost_reports(app, client, session):
    post_ok(client, fixture_json("status_sent_with_pricing.json"))
    events = {e.status: e for e in session.scalars(select(MessageStatusEvent))}
    assert (events["sent"].pricing_billable, events["sent"].pricing_model, events["sent"].pricing_category,
            events["sent"].pricing_type) == (True, "PMP", "utility", "regular")
    assert (events["delivered"].pricing_billable, events["delivered"].pricing_type) == (False, "free_customer_service")


# --- the dev Graph stand-in fails a send asynchronously; the simulator shows the fallback template ---------


def test_the_graph_stand_in_fails_a_send_later_and_the_simulator_shows_the_template(database_url):
    with live_app(database_url) as live:
        db = live.app.extensions["db"]
        chat = f"{live.base}/dev/chat/api"
        config = requests.get(f"{chat}/config", timeout=5).json()
        assert {"code": 131047, "title": "Re-engagement message"} in config["async_failures"]
        assert requests.post(f"{chat}/fail-next", json={"phone": "905321234567", "code": 99}, timeout=5
                             ).status_code == 400
        answer = requests.post(f"{chat}/fail-next", json={"phone": "905321234567", "code": 131047}, timeout=5)
        assert answer.json() == {"phone": "905321234567", "fail_next": 131047}
        add_farmer(live.app)
        with db.session() as s, s.begin():  # a result outside the window; the embedded sender sends it
            row_id = queue_message(s, TO, wa.text(TO, "Analiziniz hazır"), utcnow(),
                                   fallback=template_of("analysis_complete_tr")).id

        def shown() -> list[dict]:
            view = requests.get(f"{chat}/conversation", params={"phone": "905321234567"}, timeout=5).json()
            return view["messages"] if len(view["messages"]) == 2 and view["messages"][1]["status"] else []

        first, second = wait_until(shown, 20, what="the failed reply and the template in the simulator")
        assert (first["kind"], first["status"]) == ("text", "failed")
        assert (second["kind"], second["template"]) == ("template", "analysis_complete_tr")
        with db.reader() as s:
            assert s.get_one(Message, row_id).error_code == 131047
            [fallback] = s.scalars(select(Message).where(Message.replaces_id == row_id)).all()
        assert fallback.template_name == "analysis_complete_tr"


def test_a_stop_dated_in_the_far_future_counts_as_made_on_arrival_so_a_later_resume_applies(app, client):
    """A stop dated 2100 once outranked every resume the farmer would ever give."""
    farmer_id = add_farmer(app)
    post_ok(client, preference("stop", 4102444800, wa_id="905321234567"))
    farmer = farmer_by_id(app, farmer_id)
    made_at = farmer.marketing_preference_at
    assert farmer.marketing_opt_out_at is not None and made_at is not None and made_at <= utcnow()
    post_ok(client, preference("resume", int(utcnow().timestamp()) + 1, wa_id="905321234567"))
    assert farmer_by_id(app, farmer_id).marketing_opt_out_at is None
