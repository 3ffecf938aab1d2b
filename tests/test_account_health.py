"""Account, template and number health: Meta's signed events are stored, shown (`/health/ready`, `/metrics`,
`flask whatsapp-status`) and acted on (a paused template is never sent; its text goes inside the window)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
import responses
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from models import Farmer, Message, UnhandledWebhook, WhatsAppAccountEvent, WhatsAppAccountState, WhatsAppTemplate
from models.base import utcnow
from services.whatsapp import messages as wa
from services.whatsapp.account import (
    AccountEventKind,
    AccountStatus,
    AccountUpdate,
    TemplateStatus,
    TemplateStatusUpdate,
    parse_account_change,
)
from services.whatsapp.outbox import queue_message, send_pending
from services.whatsapp.updates import parse_webhook
from tests.helpers import GRAPH, PHONE_NUMBER_ID, fixture_json, post_webhook, send_outbox

TO = "+905321234567"
MESSAGES_URL = f"{GRAPH}/{PHONE_NUMBER_ID}/messages"
RESULT_PARAMS = ["Mehmet", "Domates", "6/10", "Erken yanıklık"]
pytestmark = pytest.mark.usefixtures("no_quiet_hours")  # sponsor templates are sent at any hour here


@pytest.fixture
def graph():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def ok(wamid: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "contacts": [{"input": TO, "wa_id": TO[1:]}], "messages": [{"id": wamid}]}


def sent_bodies(graph) -> list[dict[str, Any]]:
    return [json.loads(c.request.body) for c in graph.calls if c.request.url == MESSAGES_URL]


def scrape(client) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True)) for s in family.samples}


def template_status(samples, template: str, status: str) -> float | None:
    return samples.get(("ziraai_whatsapp_template_status",
                        frozenset({"template": template, "language": "tr", "status": status}.items())))


def post(client, name: str, **value_changes: Any) -> None:
    body = fixture_json(name)
    body["entry"][0]["changes"][0]["value"].update(value_changes)
    assert post_webhook(client, body).status_code == 200


def with_time(name: str, time: int) -> dict[str, Any]:
    body = fixture_json(name)
    body["entry"][0]["time"] = time
    return body


def template_row(session, name: str) -> WhatsAppTemplate:
    row = session.get(WhatsAppTemplate, (name, "tr"), populate_existing=True)
    assert row is not None
    return row


def add_farmer(app, last_inbound_ago: timedelta | None) -> int:
    with app.extensions["db"].session() as s, s.begin():
        farmer = Farmer(phone=TO, profile_name="Mehmet", locale="tr", consent_at=utcnow(),
                        last_inbound_at=utcnow() - last_inbound_ago if last_inbound_ago is not None else None)
        s.add(farmer)
        s.flush()
        return farmer.id


def queue_result_template(app, farmer_id: int | None) -> int:
    with app.extensions["db"].session() as s, s.begin():
        return queue_message(s, TO, wa.build_template("analysis_complete_tr", TO, RESULT_PARAMS), utcnow(),
                             farmer_id=farmer_id).id


def outbound(session) -> list[Message]:
    return list(session.scalars(select(Message).order_by(Message.id).execution_options(populate_existing=True)))


# --- templates ----------------------------------------------------------------------------------------


def test_a_paused_template_is_stored_alerted_counted_and_shown(client, session, caplog):
    with caplog.at_level(logging.CRITICAL, logger="services.whatsapp.health"):
        post_webhook(client, fixture_json("template_status_paused.json"))
    row = template_row(session, "analysis_complete_tr")
    assert (row.status, row.category) == ("PAUSED", "UTILITY")
    assert row.reason == "Paused for 3 hours after negative feedback from users."
    # Every template we define is in the registry; those Meta said nothing of are assumed approved.
    assert template_row(session, "urgent_health_alert_tr").status == "APPROVED"
    event = session.scalars(select(WhatsAppAccountEvent)).one()
    assert (event.field, event.subject, event.event) == ("message_template_status_update",
                                                         "analysis_complete_tr:tr", "PAUSED")
    assert event.payload["message_template_id"] == 884412093317520
    assert any(r.levelno == logging.CRITICAL and r.template == "analysis_complete_tr" for r in caplog.records)

    samples = scrape(client)
    assert template_status(samples, "analysis_complete_tr", "PAUSED") == 1
    assert template_status(samples, "analysis_complete_tr", "APPROVED") == 0
    assert template_status(samples, "urgent_health_alert_tr", "APPROVED") == 1
    assert samples[("ziraai_whatsapp_account_restricted", frozenset())] == 0

    ready = client.get("/health/ready")
    assert ready.status_code == 200  # information for operators, not a reason to pull the server
    detail = ready.json["whatsapp_account"]
    assert (detail["status"], detail["account"]) == ("error", "ok")
    assert detail["blocked_templates"] == [{"template": "analysis_complete_tr", "language": "tr",
                                            "status": "PAUSED", "reason": row.reason}]


def test_a_rejected_template_keeps_metas_reason(client, session):
    post_webhook(client, fixture_json("template_status_rejected.json"))
    row = template_row(session, "welcome_message_tr")
    assert (row.status, row.reason, row.category) == ("REJECTED", "INCORRECT_CATEGORY", "MARKETING")


def test_approval_lifts_a_pause_and_an_older_event_changes_nothing(client, session):
    paused = fixture_json("template_status_paused.json")
    post_webhook(client, paused)
    approved = with_time("template_status_paused.json", paused["entry"][0]["time"] + 3 * 3600)
    approved["entry"][0]["changes"][0]["value"].update(event="APPROVED", other_info=None)
    post_webhook(client, approved)
    assert template_row(session, "analysis_complete_tr").status == "APPROVED"
    post_webhook(client, with_time("template_status_paused.json", paused["entry"][0]["time"] - 60))  # late delivery
    assert template_row(session, "analysis_complete_tr").status == "APPROVED"
    assert session.query(WhatsAppAccountEvent).count() == 3  # the history keeps all of them
    assert client.get("/health/ready").json["whatsapp_account"]["status"] == "ok"


def test_quality_and_category_updates_are_stored(client, session, caplog):
    with caplog.at_level(logging.ERROR, logger="services.whatsapp.health"):
        post_webhook(client, fixture_json("template_quality_red.json"))
    post_webhook(client, fixture_json("template_category_update.json"))
    quality = template_row(session, "analysis_complete_tr")
    assert (quality.status, quality.quality) == ("APPROVED", "RED")
    assert any("RED" in r.getMessage() for r in caplog.records)
    category = template_row(session, "subscription_expiry_tr")
    assert (category.status, category.category) == ("APPROVED", "MARKETING")
    events = session.scalars(select(WhatsAppAccountEvent).order_by(WhatsAppAccountEvent.id)).all()
    assert [(e.field, e.event) for e in events] == [("message_template_quality_update", "RED"),
                                                    ("template_category_update", "MARKETING")]


def test_a_status_event_is_stale_only_against_an_earlier_status_event_not_a_later_quality_one(client, session):
    start = fixture_json("template_quality_red.json")["entry"][0]["time"]
    quality = with_time("template_quality_red.json", start + 100)
    quality["entry"][0]["changes"][0]["value"]["message_template_name"] = "urgent_health_alert_tr"
    post_webhook(client, quality)
    paused = with_time("template_status_paused.json", start + 90)
    paused["entry"][0]["changes"][0]["value"]["message_template_name"] = "urgent_health_alert_tr"
    post_webhook(client, paused)
    row = template_row(session, "urgent_health_alert_tr")
    assert (row.status, row.quality) == ("PAUSED", "RED")
    category = with_time("template_category_update.json", start + 80)
    category["entry"][0]["changes"][0]["value"]["message_template_name"] = "urgent_health_alert_tr"
    post_webhook(client, category)
    older_quality = with_time("template_quality_red.json", start + 95)
    older_quality["entry"][0]["changes"][0]["value"].update(message_template_name="urgent_health_alert_tr",
                                                           new_quality_score="GREEN")
    post_webhook(client, older_quality)  # older than the RED one: changes nothing
    older_status = with_time("template_status_paused.json", start + 85)
    older_status["entry"][0]["changes"][0]["value"].update(message_template_name="urgent_health_alert_tr",
                                                          event="APPROVED", other_info=None)
    post_webhook(client, older_status)  # older than the pause: changes nothing
    row = template_row(session, "urgent_health_alert_tr")
    assert (row.status, row.quality, row.category) == ("PAUSED", "RED", "MARKETING")
    assert client.get("/health/ready").json["whatsapp_account"]["blocked_templates"][0]["template"] == \
        "urgent_health_alert_tr"


def test_a_pause_inferred_from_a_send_yields_to_a_later_dated_meta_status(app, client, graph, session):
    graph.post(MESSAGES_URL, status=400, json={"error": {"message": "Template is paused", "code": 132015}})
    post_webhook(client, with_time("template_quality_red.json", int(utcnow().timestamp()) + 300))
    assert send_pending(queue_result_template(app, add_farmer(app, timedelta(days=2)))) == "failed"
    assert template_row(session, "analysis_complete_tr").status == "PAUSED"
    approved = with_time("template_status_paused.json", int(utcnow().timestamp()) + 60)
    approved["entry"][0]["changes"][0]["value"].update(event="APPROVED", other_info=None)
    post_webhook(client, approved)
    row = template_row(session, "analysis_complete_tr")
    assert (row.status, row.quality) == ("APPROVED", "RED")


def test_unknown_values_fall_back_and_an_unusable_change_is_kept(client, session):
    post(client, "template_status_paused.json", event="SOMETHING_NEW_2027")
    assert template_row(session, "analysis_complete_tr").status == "UNKNOWN"  # not blocked: sends go on
    assert client.get("/health/ready").json["whatsapp_account"]["status"] == "ok"
    post(client, "template_status_paused.json", message_template_name=None)
    unhandled = session.scalars(select(UnhandledWebhook)).one()
    assert unhandled.reason == "message_template_status_update without a template name"


def test_the_parser_gives_frozen_events_with_unknown_fallbacks():
    parsed = parse_webhook(fixture_json("template_status_paused.json"))
    (event,) = parsed.account
    assert isinstance(event, TemplateStatusUpdate)
    assert (event.name, event.language, event.status) == ("analysis_complete_tr", "tr", TemplateStatus.PAUSED)
    assert (parsed.messages, parsed.statuses, parsed.problems) == ([], [], [])
    odd = parse_account_change("account_update", {"event": "BRAND_NEW_EVENT", "ban_info": "x"})
    assert isinstance(odd, AccountUpdate)
    assert (odd.event, odd.event_name, odd.status) == (AccountEventKind.UNKNOWN, "BRAND_NEW_EVENT", None)
    assert parse_account_change("account_update", {}).event_name == "UNKNOWN"  # type: ignore[union-attr]


# --- sending ------------------------------------------------------------------------------------------


def test_a_template_meta_never_reported_on_is_sent(app, graph, session):
    graph.post(MESSAGES_URL, json=ok("wamid.T1"))
    message_id = queue_result_template(app, add_farmer(app, timedelta(days=2)))
    assert send_pending(message_id) == "sent"
    assert sent_bodies(graph)[0]["template"]["name"] == "analysis_complete_tr"


def test_a_paused_template_is_refused_outside_the_window(app, client, graph, session):
    post_webhook(client, fixture_json("template_status_paused.json"))
    graph.post(MESSAGES_URL, json=ok("wamid.NEVER"))
    message_id = queue_result_template(app, add_farmer(app, timedelta(days=2)))
    assert send_pending(message_id) == "refused"
    (row,) = outbound(session)
    assert (row.status, row.error_code) == ("failed", None)
    assert (row.error_title or "").startswith(
        "not sent: template analysis_complete_tr (tr) is PAUSED: Paused for 3 hours")
    assert sent_bodies(graph) == []


def test_a_paused_template_falls_back_to_its_text_inside_the_window(app, client, graph, session):
    post_webhook(client, fixture_json("template_status_paused.json"))
    graph.post(MESSAGES_URL, json=ok("wamid.TEXT1"))
    queue_result_template(app, add_farmer(app, timedelta(hours=3)))
    send_outbox(app)
    refused, instead = outbound(session)
    assert (refused.status, refused.template_name) == ("failed", "analysis_complete_tr")
    assert (instead.status, instead.type, instead.seq) == ("accepted", "interactive", refused.seq)
    (body,) = sent_bodies(graph)
    assert body["interactive"]["body"]["text"].startswith("Merhaba Mehmet, Domates fotoğrafınızın analizi")
    assert [b["reply"]["title"] for b in body["interactive"]["action"]["buttons"]] == ["Detaylar", "Yeni analiz"]


def test_a_paused_sponsor_template_is_refused_even_inside_the_window(app, client, graph, session):
    """A message we write first has no place in the farmer's line: no free-text stand-in."""
    post(client, "template_status_paused.json", message_template_name="sponsor_message_tr")
    graph.post(MESSAGES_URL, json=ok("wamid.NEVER"))
    farmer_id = add_farmer(app, timedelta(hours=1))
    with app.extensions["db"].session() as s, s.begin():
        message_id = queue_message(s, TO, wa.build_template("sponsor_message_tr", TO, ["Anadolu Tohum", "Yağış var"]),
                                   utcnow(), farmer_id=farmer_id).id
    assert send_pending(message_id) == "refused"
    assert [r.status for r in outbound(session)] == ["failed"]
    assert sent_bodies(graph) == []


def test_the_24_hour_fallback_template_is_refused_when_paused(app, client, graph, session):
    """A reply outside the window (131047) falls back to its template; a paused one is not sent either."""
    post_webhook(client, fixture_json("template_status_paused.json"))
    graph.post(MESSAGES_URL, status=400, json={"error": {"message": "Re-engagement message", "code": 131047}})
    farmer_id = add_farmer(app, timedelta(days=2))
    with app.extensions["db"].session() as s, s.begin():
        queue_message(s, TO, wa.text(TO, "sonuç"), utcnow(), farmer_id=farmer_id,
                      fallback=wa.build_template("analysis_complete_tr", TO, RESULT_PARAMS))
    send_outbox(app)
    reply, template = outbound(session)
    assert (reply.status, reply.error_code) == ("failed", 131047)
    assert (template.status, template.template_name) == ("failed", "analysis_complete_tr")
    assert "PAUSED" in (template.error_title or "")
    assert len(sent_bodies(graph)) == 1


def test_132015_at_send_pauses_the_template_and_is_counted(app, client, graph, session):
    graph.post(MESSAGES_URL, status=400, json={"error": {"message": "Template is paused", "code": 132015}})
    farmer_id = add_farmer(app, timedelta(days=2))
    before = scrape(client).get(("ziraai_whatsapp_errors_total",
                                 frozenset({"code": "132015", "where": "send"}.items())), 0)
    assert send_pending(queue_result_template(app, farmer_id)) == "failed"
    after = scrape(client)
    assert after[("ziraai_whatsapp_errors_total", frozenset({"code": "132015", "where": "send"}.items()))] == before + 1
    assert template_status(after, "analysis_complete_tr", "PAUSED") == 1
    row = template_row(session, "analysis_complete_tr")
    assert (row.status, row.reason) == ("PAUSED", "Meta refused a send (132015: Template is paused)")
    assert send_pending(queue_result_template(app, farmer_id)) == "refused"  # not tried again
    assert len(sent_bodies(graph)) == 1


# --- numbers, limits and the account ------------------------------------------------------------------


def test_number_quality_and_capabilities_are_stored_and_shown(client, session):
    post_webhook(client, fixture_json("phone_number_quality_downgrade.json"))
    post_webhook(client, fixture_json("business_capability_update.json"))
    number = session.get(WhatsAppAccountState, "number:908502221133")
    assert (number.status, number.detail["current_limit"], number.detail["old_limit"]) == ("DOWNGRADE", "TIER_250",
                                                                                           "TIER_2K")
    detail = client.get("/health/ready").json["whatsapp_account"]
    assert detail["numbers"]["908502221133"]["current_limit"] == "TIER_250"
    assert detail["capabilities"] == {"max_daily_conversation_per_phone": 1000, "max_phone_numbers_per_business": 2,
                                      "max_phone_numbers_per_waba": 25,
                                      "max_daily_conversations_per_business": "TIER_2K"}
    assert detail["status"] == "ok"  # a lower limit is information, not an error


def test_an_account_restriction_alerts_until_it_is_lifted(client, session, caplog):
    with caplog.at_level(logging.CRITICAL, logger="services.whatsapp.health"):
        post_webhook(client, fixture_json("account_restriction.json"))
    assert any(r.levelno == logging.CRITICAL and "restricted" in r.getMessage() for r in caplog.records)
    state = session.get(WhatsAppAccountState, "account")
    assert state.status == "restricted"
    assert [r["type"] for r in state.detail["restrictions"]] == ["RESTRICTED_BIZ_INITIATED_MESSAGING",
                                                                  "RESTRICTED_ADD_PHONE_NUMBER_ACTION"]
    assert scrape(client)[("ziraai_whatsapp_account_restricted", frozenset())] == 1
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    detail = ready.json["whatsapp_account"]
    assert (detail["status"], detail["account"], detail["account_event"]) == ("error", "restricted",
                                                                             "ACCOUNT_RESTRICTION")
    assert detail["restrictions"][0]["expiration"].startswith("2099-01-19T13:59:20")

    lifted = with_time("account_restriction.json", fixture_json("account_restriction.json")["entry"][0]["time"] + 60)
    lifted["entry"][0]["changes"][0]["value"]["restriction_info"] = []
    post_webhook(client, lifted)
    assert scrape(client)[("ziraai_whatsapp_account_restricted", frozenset())] == 0
    assert client.get("/health/ready").json["whatsapp_account"]["status"] == "ok"


def test_an_expired_restriction_no_longer_counts(client):
    post(client, "account_restriction.json", restriction_info=[
        {"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": "2020-01-01T00:00:00+0000"}])
    assert client.get("/health/ready").json["whatsapp_account"]["account"] == AccountStatus.OK.value


def test_a_disabled_account_is_stored_and_counted_as_restricted(client, session):
    post_webhook(client, fixture_json("account_disabled.json"))
    state = session.get(WhatsAppAccountState, "account")
    assert (state.status, state.detail["ban_state"]) == ("disabled", "DISABLE")
    assert scrape(client)[("ziraai_whatsapp_account_restricted", frozenset())] == 1


def violation_at(time: int) -> dict[str, Any]:
    body = with_time("account_restriction.json", time)
    body["entry"][0]["changes"][0]["value"] = {"event": "ACCOUNT_VIOLATION",
                                               "violation_info": {"violation_type": "SCAM"}}
    return body


@pytest.mark.parametrize("standing", ["account_restriction.json", "account_disabled.json"])
def test_a_violation_is_a_warning_that_leaves_a_restriction_or_disablement_in_force(client, runner, session,
                                                                                    standing):
    start = fixture_json(standing)["entry"][0]["time"]
    post_webhook(client, fixture_json(standing))
    post_webhook(client, violation_at(start + 10))
    detail = client.get("/health/ready").json["whatsapp_account"]
    expected = "restricted" if standing == "account_restriction.json" else "disabled"
    assert (detail["status"], detail["account"]) == ("error", expected)
    assert len(detail["restrictions"]) == (2 if expected == "restricted" else 0)
    assert detail["violation"]["violation_type"] == "SCAM"
    assert scrape(client)[("ziraai_whatsapp_account_restricted", frozenset())] == 1
    out = runner.invoke(args=["whatsapp-status"]).output
    assert out.startswith(f"account: {expected} since") and "violation: SCAM reported" in out
    assert session.get(WhatsAppAccountState, "account").status == expected


def test_a_lift_dated_before_a_later_violation_still_lifts_and_the_violation_remains(client):
    start = fixture_json("account_restriction.json")["entry"][0]["time"]
    post_webhook(client, fixture_json("account_restriction.json"))
    post_webhook(client, violation_at(start + 10))
    lifted = with_time("account_restriction.json", start + 5)  # delivered late
    lifted["entry"][0]["changes"][0]["value"]["restriction_info"] = []
    post_webhook(client, lifted)
    detail = client.get("/health/ready").json["whatsapp_account"]
    assert (detail["account"], detail["restrictions"], detail["violation"]["violation_type"]) == (
        "violation", [], "SCAM")
    assert detail["status"] == "ok"  # a warning: sending works
    assert scrape(client)[("ziraai_whatsapp_account_restricted", frozenset())] == 0
    reinstated = with_time("account_disabled.json", start + 20)
    reinstated["entry"][0]["changes"][0]["value"]["ban_info"]["waba_ban_state"] = ["REINSTATE"]
    post_webhook(client, reinstated)
    detail = client.get("/health/ready").json["whatsapp_account"]
    assert detail["account"] == "ok" and "violation" not in detail


def test_a_send_block_after_368_is_shown_until_it_is_lifted(app, client, runner, graph):
    graph.post(MESSAGES_URL, status=400, json={"error": {"message": "Temporarily blocked for policies violations",
                                                         "code": 368}})
    before = utcnow()
    assert send_pending(queue_result_template(app, add_farmer(app, timedelta(days=2)))) == "deferred"  # held
    ready = client.get("/health/ready")
    assert ready.status_code == 200  # a blocked account still takes and stores every message
    detail = ready.json["whatsapp_account"]
    assert (detail["status"], detail["account"]) == ("error", "ok")
    block = detail["send_block"]
    assert block["reason"] == "368: Temporarily blocked for policies violations"
    since, until = (datetime.fromisoformat(block[k]) for k in ("since", "until"))
    assert before - timedelta(seconds=5) <= since <= utcnow() and until - since == timedelta(hours=1)
    samples = scrape(client)
    assert samples[("ziraai_whatsapp_sends_blocked", frozenset())] == 1
    assert samples[("ziraai_whatsapp_account_restricted", frozenset())] == 1
    out = runner.invoke(args=["whatsapp-status"]).output
    assert "sends: BLOCKED (368: Temporarily blocked for policies violations) since" in out
    assert json.loads(runner.invoke(args=["whatsapp-status", "--json"]).output)["send_block"]["reason"].startswith(
        "368:")

    assert "send block lifted" in runner.invoke(args=["whatsapp-unblock"]).output
    detail = client.get("/health/ready").json["whatsapp_account"]
    assert (detail["status"], detail["send_block"]) == ("ok", None)
    samples = scrape(client)
    assert samples[("ziraai_whatsapp_sends_blocked", frozenset())] == 0
    assert samples[("ziraai_whatsapp_account_restricted", frozenset())] == 0
    assert "sends:" not in runner.invoke(args=["whatsapp-status"]).output


# --- the operator's command ---------------------------------------------------------------------------


def test_whatsapp_status_prints_templates_quality_limits_and_restrictions(client, runner):
    for name in ("template_status_paused.json", "template_quality_red.json", "phone_number_quality_downgrade.json",
                 "business_capability_update.json", "account_restriction.json"):
        post_webhook(client, fixture_json(name))
    result = runner.invoke(args=["whatsapp-status"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "account: restricted since" in out and "RESTRICTED" in out
    assert "restriction: RESTRICTED_BIZ_INITIATED_MESSAGING until 2099-01-19" in out
    assert "analysis_complete_tr (tr): PAUSED, quality RED, UTILITY" in out and "BLOCKED" in out
    assert "urgent_health_alert_tr (tr): APPROVED, quality UNKNOWN, UTILITY, never reported" in out
    assert "908502221133: DOWNGRADE, limit TIER_250 (was TIER_2K)" in out
    assert "max_daily_conversation_per_phone 1000" in out
    as_json = json.loads(runner.invoke(args=["whatsapp-status", "--json"]).output)
    assert as_json["account"] == "restricted"
    assert [t["template"] for t in as_json["blocked_templates"]] == ["analysis_complete_tr"]


def test_whatsapp_status_before_meta_said_anything(runner):
    out = runner.invoke(args=["whatsapp-status"]).output
    assert out.startswith("account: ok\n")
    assert "numbers: none reported" in out and "limits: none reported" in out


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+10:00", "2999-06-01T00:00:00Z"])
def test_an_event_dated_beyond_utc_or_any_sane_time_is_undated_and_the_message_beside_it_is_kept(client, session,
                                                                                                 when):
    """Such a time was once read as a date whose conversion to UTC overflowed on storing: a 500 for the
    signed body, and the farmer's message in its other entry lost."""
    body = fixture_json("text.json")
    body["entry"].append({"id": "211497375401331", "time": when, "changes": [{
        "field": "message_template_quality_update",
        "value": {"previous_quality_score": "GREEN", "new_quality_score": "YELLOW", "message_template_id": 1,
                  "message_template_name": "analysis_complete_tr", "message_template_language": "tr"}}]})
    assert post_webhook(client, body).status_code == 200
    assert session.scalars(select(Message.text).where(Message.direction == "in")).all() == ["Merhaba"]
    event = session.scalars(select(WhatsAppAccountEvent)).one()
    assert (event.event, event.meta_time) == ("YELLOW", None)
    assert template_row(session, "analysis_complete_tr").quality == "YELLOW"


def test_a_restriction_whose_expiry_utc_cannot_hold_is_kept_without_an_expiry(client, session):
    body = fixture_json("account_restriction.json")
    value = body["entry"][0]["changes"][0]["value"]
    for restriction in value["restriction_info"]:
        restriction["expiration"] = "9999-12-31T23:59:59-10:00"
    assert post_webhook(client, body).status_code == 200
    state = session.get(WhatsAppAccountState, "account")
    assert state.status == "restricted"
    assert all(r["expiration"] is None for r in state.detail["restrictions"])


def test_a_template_event_dated_in_the_far_future_counts_as_received_now_and_a_later_one_still_applies(client,
                                                                                                      session):
    """A PAUSED dated 2100 once outranked every later status: the template stayed paused for good."""
    post_webhook(client, with_time("template_status_paused.json", 4102444800))
    assert template_row(session, "analysis_complete_tr").status == "PAUSED"
    event = session.scalars(select(WhatsAppAccountEvent)).one()
    assert event.meta_time is not None and event.meta_time <= utcnow()
    approved = with_time("template_status_paused.json", int(utcnow().timestamp()) + 1)
    approved["entry"][0]["changes"][0]["value"].update(event="APPROVED", other_info=None)
    post_webhook(client, approved)
    assert template_row(session, "analysis_complete_tr").status == "APPROVED"
