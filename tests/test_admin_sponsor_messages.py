"""A sponsor messages the farmer of a sponsored analysis: only when an L or XL code paid for that very
analysis, `sponsor_message_tr`, at most the daily cap per farmer over all sponsors, never to an
opted-out farmer, held through quiet hours."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import responses
from sqlalchemy import String, cast, literal, select, update

from models import AuditLog, Farmer, Message, utcnow
from services import runtime_settings
from services.quota import ISTANBUL, next_day_start
from services.sponsor_messages import (
    TEMPLATE,
    Refusal,
    SponsorMessageResult,
    farmer_refusal,
    queue_sponsor_message,
    send_after,
)
from services.whatsapp.account import TemplateStatus
from services.whatsapp.health import set_template_status
from tests import test_admin_sponsors as sponsors_tests
from tests.helpers import GRAPH, PHONE_NUMBER_ID, send_outbox, set_runtime
from tests.test_admin_sponsors import PROBLEM, add_analysis, add_farmer, buy
from translations.templates import TEMPLATES

MESSAGES_URL = f"{GRAPH}/{PHONE_NUMBER_ID}/messages"
tiers, world = sponsors_tests.tiers, sponsors_tests.world  # fixtures: tiers seeded, sponsors A/B and tokens
pytestmark = pytest.mark.usefixtures("no_quiet_hours")  # a test about quiet hours sets its own


@pytest.fixture
def graph():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(MESSAGES_URL, json={"messaging_product": "whatsapp", "messages": [{"id": "wamid.SPONSOR1"}]})
        yield mock


def sent_bodies(graph) -> list[dict]:
    return [json.loads(c.request.body) for c in graph.calls if c.request.url == MESSAGES_URL]


def url(sponsor_id: int, analysis_id: int) -> str:
    return f"/api/v1/sponsors/{sponsor_id}/analyses/{analysis_id}/message"


@pytest.fixture
def sponsored(app, world):
    """One analysis of a farmer, paid for by sponsor A's L code."""
    [code] = buy(app, world["a"], "L", 1)
    farmer_id = add_farmer(app)
    return {"farmer": farmer_id, "analysis": add_analysis(app, world["a"], farmer_id, code=code)}


def test_the_farmer_gets_the_template_with_the_sponsor_name(app, client, world, sponsored, graph, session):
    response = client.post(url(world["a"], sponsored["analysis"]), headers=world["sponsor_a"],
                           json={"text": "Bu hafta yağış bekleniyor;\n\nilaçlamayı   yağıştan sonraya bırakın."})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body | {"message_id": 0} == {"message_id": 0, "status": "pending", "template": "sponsor_message_tr",
                                        "send_after": None, "sent_today": 1, "daily_cap": 10}
    send_outbox(app)
    [sent] = sent_bodies(graph)
    assert sent["to"] == "+905321234567" and sent["type"] == "template"
    assert sent["template"]["name"] == "sponsor_message_tr"
    params = [p["text"] for p in sent["template"]["components"][0]["parameters"]]
    assert params == ["Anadolu Tohum", "Bu hafta yağış bekleniyor; ilaçlamayı yağıştan sonraya bırakın."]
    row = session.get(Message, body["message_id"])
    assert (row.farmer_id, row.status, row.wamid) == (sponsored["farmer"], "accepted", "wamid.SPONSOR1")
    [audit] = session.scalars(select(AuditLog).where(AuditLog.action == "sponsor.message.send")).all()
    assert audit.details["analysis_id"] == sponsored["analysis"] and audit.record_id == str(row.id)


@pytest.mark.parametrize("tier", ["S", "M"])
def test_below_l_is_refused(app, client, world, tier, session):
    [code] = buy(app, world["a"], tier, 1)
    analysis_id = add_analysis(app, world["a"], add_farmer(app), code=code)
    response = client.post(url(world["a"], analysis_id), headers=world["sponsor_a"], json={"text": "Merhaba"})
    assert response.status_code == 403 and response.mimetype == PROBLEM
    assert session.scalar(select(Message.id)) is None


def test_an_l_analysis_may_be_messaged_and_the_same_sponsors_m_analyses_may_not(app, client, world, session):
    a = world["a"]
    m_codes = buy(app, a, "M", 2)
    [l_code] = buy(app, a, "L", 1)
    m_analyses = [add_analysis(app, a, add_farmer(app, f"+90533000000{i}", f"Çiftçi {i}"), code=code)
                  for i, code in enumerate(m_codes)]
    l_analysis = add_analysis(app, a, add_farmer(app, "+905330000009", "Ayşe Demir"), code=l_code)

    listing = client.get(f"/api/v1/sponsors/{a}/analyses", headers=world["sponsor_a"]).get_json()
    by_id = {row["id"]: row for row in listing["items"]}
    assert by_id[l_analysis]["tier"] == "L" and by_id[l_analysis]["can_message"] is True
    assert all(by_id[i]["tier"] == "M" and "can_message" not in by_id[i] for i in m_analyses)

    for analysis_id in m_analyses:
        refused = client.post(url(a, analysis_id), headers=world["sponsor_a"], json={"text": "Merhaba"})
        assert refused.status_code == 403 and refused.mimetype == PROBLEM
        assert "from the M package" in refused.get_json()["detail"]
    sent = client.post(url(a, l_analysis), headers=world["sponsor_a"], json={"text": "Merhaba"})
    assert sent.status_code == 202, sent.get_json()
    [message] = session.scalars(select(Message)).all()
    assert message.phone == "+905330000009"


def test_other_sponsors_and_their_analyses_are_404(app, client, world, sponsored):
    assert client.post(url(world["a"], sponsored["analysis"]), headers=world["sponsor_b"],
                       json={"text": "x"}).status_code == 404
    buy(app, world["b"], "XL", 1)
    assert client.post(url(world["b"], sponsored["analysis"]), headers=world["sponsor_b"],
                       json={"text": "x"}).status_code == 404  # B's package, A's analysis
    assert client.post(url(world["a"], 999_999), headers=world["sponsor_a"], json={"text": "x"}).status_code == 404
    assert client.post(url(world["a"], sponsored["analysis"]), headers=world["support"],
                       json={"text": "x"}).status_code == 403
    assert client.post(url(world["a"], sponsored["analysis"]), json={"text": "x"}).status_code == 401
    assert client.post(url(world["a"], sponsored["analysis"]), headers=world["admin"],
                       json={"text": "Yönetici adına"}).status_code == 202


@pytest.mark.parametrize(("body", "field"), [
    ({}, "text"), ({"text": ""}, "text"), ({"text": "  \n "}, "text"), ({"text": 5}, "text"),
    ({"text": "x" * 501}, "text"), ({"text": "ok", "to": "+905551112233"}, "to"), ({"text": "a\x00b"}, "text"),
])
def test_bad_bodies_are_field_errors(client, world, sponsored, body, field, session):
    response = client.post(url(world["a"], sponsored["analysis"]), headers=world["sponsor_a"], json=body)
    assert response.status_code == 400 and response.mimetype == PROBLEM
    assert field in [e["field"] for e in response.get_json()["errors"]]
    assert session.scalar(select(Message.id)) is None


def test_never_to_an_opted_out_farmer(app, client, world, sponsored, session):
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(Farmer).values(opted_out_at=utcnow()))
    listing = client.get(f"/api/v1/sponsors/{world['a']}/analyses", headers=world["sponsor_a"]).get_json()
    assert listing["items"][0]["can_message"] is False
    response = client.post(url(world["a"], sponsored["analysis"]), headers=world["sponsor_a"], json={"text": "Merhaba"})
    assert response.status_code == 409 and "opted out" in response.get_json()["detail"]
    assert session.scalar(select(Message.id)) is None


def test_an_opt_out_before_delivery_withholds_the_message(app, client, world, sponsored, graph, session):
    response = client.post(url(world["a"], sponsored["analysis"]), headers=world["sponsor_a"], json={"text": "Merhaba"})
    assert response.status_code == 202
    with app.extensions["db"].session() as s, s.begin():  # the farmer writes DUR before the job runs
        s.execute(update(Farmer).values(opted_out_at=utcnow()))
    send_outbox(app)
    assert sent_bodies(graph) == []
    row = session.get(Message, response.get_json()["message_id"])
    assert row.status == "failed" and "opted out" in row.error_title


def test_at_most_the_daily_cap_per_farmer_over_all_sponsors(app, client, world, sponsored, session):
    [b_code] = buy(app, world["b"], "XL", 1)
    other = add_analysis(app, world["b"], sponsored["farmer"], code=b_code)  # the same farmer, sponsored by B too
    for i in range(10):
        sponsor, analysis, headers = ((world["a"], sponsored["analysis"], world["sponsor_a"]) if i % 2 else
                                      (world["b"], other, world["sponsor_b"]))
        response = client.post(url(sponsor, analysis), headers=headers, json={"text": f"Mesaj {i}"})
        assert response.status_code == 202 and response.get_json()["sent_today"] == i + 1
    refused = client.post(url(world["a"], sponsored["analysis"]), headers=world["sponsor_a"], json={"text": "11"})
    assert refused.status_code == 429 and refused.mimetype == PROBLEM
    wait = int(refused.headers["Retry-After"])
    expected = (next_day_start(utcnow()) - utcnow()).total_seconds()
    assert abs(wait - expected) < 5
    assert len(session.scalars(select(Message.id)).all()) == 10

    # Yesterday's messages do not count.
    yesterday = utcnow() - timedelta(days=1)
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(Message).values(status="delivered", wamid=literal("wamid.") + cast(Message.id, String),
                                         created_at=yesterday, next_attempt_at=yesterday, sent_at=yesterday))
    assert client.post(url(world["a"], sponsored["analysis"]), headers=world["sponsor_a"],
                       json={"text": "Yeni gün"}).status_code == 202


def _istanbul(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=ISTANBUL).astimezone(UTC)


def _write(app, farmer_id: int, now: datetime) -> SponsorMessageResult:
    rs = replace(runtime_settings.current(), quiet_hours_start="21:00", quiet_hours_end="08:00",
                 sponsor_message_daily_cap=10)
    with app.extensions["db"].session() as s, s.begin():
        result = queue_sponsor_message(s, "Agro A.Ş.", farmer_id, "Merhaba", now, rs)
        if result.message_id is not None:  # stamped as the outbox stamps a row written at `now`
            s.execute(update(Message).where(Message.id == result.message_id)
                      .values(created_at=now, next_attempt_at=now))
        return result


def _all_sent(app, written: datetime, sent: datetime) -> None:
    """Every waiting sponsor message was written at `written` and Graph took it at `sent`."""
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(Message).where(Message.status == "pending").values(
            status="sent", wamid=literal("wamid.") + cast(Message.id, String), created_at=written,
            next_attempt_at=max(written, sent), sent_at=sent))


def test_messages_written_in_the_evenings_quiet_hours_count_on_the_morning_they_are_sent(app, sponsored):
    farmer = sponsored["farmer"]
    evening = _istanbul(9, 22, 30)
    for _ in range(10):
        written = _write(app, farmer, evening)
        assert written.refusal is None and written.send_after == _istanbul(10, 8)
    _all_sent(app, evening, _istanbul(10, 8))

    next_morning = _write(app, farmer, _istanbul(10, 10))

    assert next_morning.refusal is Refusal.DAILY_CAP and next_morning.sent_today == 10
    assert next_morning.retry_after == _istanbul(11, 0)
    assert _write(app, farmer, _istanbul(11, 10)).refusal is None


def test_the_cap_is_of_the_day_a_message_reaches_the_farmer_not_the_day_it_is_written(app, sponsored):
    farmer = sponsored["farmer"]
    for _ in range(10):
        assert _write(app, farmer, _istanbul(9, 15)).refusal is None  # sent at once, on the 9th
    _all_sent(app, _istanbul(9, 15), _istanbul(9, 15))
    assert _write(app, farmer, _istanbul(9, 20, 30)).refusal is Refusal.DAILY_CAP

    in_quiet_hours = [_write(app, farmer, _istanbul(9, 22, 30)) for _ in range(10)]  # they go on the 10th

    assert [r.refusal for r in in_quiet_hours] == [None] * 10
    assert [r.sent_today for r in in_quiet_hours] == list(range(1, 11))
    eleventh = _write(app, farmer, _istanbul(9, 23))
    assert eleventh.refusal is Refusal.DAILY_CAP and eleventh.retry_after == _istanbul(11, 0)  # the 10th is full


def test_an_admin_lowers_the_cap_and_it_applies_at_once(app, client, world, sponsored):
    assert client.patch("/api/v1/settings", headers=world["admin"],
                        json={"sponsor_message_daily_cap": 1}).status_code == 200
    first = client.post(url(world["a"], sponsored["analysis"]), headers=world["sponsor_a"], json={"text": "Bir"})
    second = client.post(url(world["a"], sponsored["analysis"]), headers=world["sponsor_a"], json={"text": "İki"})
    assert (first.status_code, second.status_code) == (202, 429)
    assert first.get_json()["daily_cap"] == 1


def test_written_in_quiet_hours_it_waits_until_they_end(app, client, world, sponsored, graph, session):
    local = utcnow().astimezone(ISTANBUL)
    start = (local - timedelta(hours=1)).strftime("%H:%M")
    end = (local + timedelta(hours=1)).strftime("%H:%M")
    set_runtime(app, quiet_hours_start=start, quiet_hours_end=end)
    response = client.post(url(world["a"], sponsored["analysis"]), headers=world["sponsor_a"], json={"text": "Gece"})
    assert response.status_code == 202
    send_after = response.get_json()["send_after"]
    assert send_after is not None
    send_outbox(app)
    assert sent_bodies(graph) == []  # not sent in quiet hours
    message_id = response.get_json()["message_id"]
    row = session.get(Message, message_id)
    assert row.status == "pending" and row.attempts == 0
    assert abs((row.next_attempt_at - utcnow()).total_seconds() - 3600) < 120
    assert abs((row.next_attempt_at - datetime.fromisoformat(send_after)).total_seconds()) < 1

    # When the time comes (quiet hours over), a sender sends it.
    set_runtime(app, quiet_hours_start="00:00", quiet_hours_end="00:00")
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(Message).values(next_attempt_at=utcnow()))
    send_outbox(app)
    assert len(sent_bodies(graph)) == 1
    session.expire_all()
    assert session.get(Message, message_id).status == "accepted"


# --- refused when it is written, saying why, rather than failing later ---------------------------------------


@pytest.mark.parametrize(("column", "said", "not_said"), [
    ("unreachable_at", "reported this farmer's number unreachable", "opted out"),
    ("marketing_opt_out_at", "stopped marketing messages", "opted out"),
    ("opted_out_at", "opted out", "unreachable"),
])
def test_a_farmer_who_cannot_get_it_is_refused_saying_why(app, client, world, sponsored, session, column, said,
                                                          not_said):
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(Farmer).values({column: utcnow()}))
    response = client.post(url(world["a"], sponsored["analysis"]), headers=world["sponsor_a"], json={"text": "Merhaba"})
    assert response.status_code == 409 and response.mimetype == PROBLEM
    detail = response.get_json()["detail"]
    assert said in detail and not_said not in detail
    assert session.scalar(select(Message.id)) is None


@pytest.mark.parametrize("status", [TemplateStatus.PAUSED, TemplateStatus.DISABLED, TemplateStatus.REJECTED])
def test_a_blocked_template_is_refused_at_once_and_nothing_is_queued(app, client, world, sponsored, session, status):
    with app.extensions["db"].session() as s, s.begin():
        set_template_status(s, TEMPLATE, TEMPLATES[TEMPLATE].language, status, "Low quality", utcnow())
    response = client.post(url(world["a"], sponsored["analysis"]), headers=world["sponsor_a"], json={"text": "Merhaba"})
    assert response.status_code == 503 and response.mimetype == PROBLEM
    detail = response.get_json()["detail"]
    assert TEMPLATE in detail and status.value in detail and "Low quality" in detail
    assert session.scalar(select(Message.id)) is None
    assert session.scalar(select(AuditLog.id).where(AuditLog.action == "sponsor.message.send")) is None


def test_a_held_message_says_until_when_metas_marketing_pause_lasts(app, client, world, sponsored, graph, session):
    paused_until = utcnow() + timedelta(hours=20)  # a 131049 four hours ago
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(Farmer).values(marketing_paused_until=paused_until))
    response = client.post(url(world["a"], sponsored["analysis"]), headers=world["sponsor_a"], json={"text": "Merhaba"})
    assert response.status_code == 202
    said = datetime.fromisoformat(response.get_json()["send_after"])
    assert abs((said - paused_until).total_seconds()) < 1
    send_outbox(app)
    assert sent_bodies(graph) == []
    row = session.get(Message, response.get_json()["message_id"])
    assert row.status == "pending" and abs((row.next_attempt_at - paused_until).total_seconds()) < 1


def test_a_pause_that_ends_in_quiet_hours_waits_for_their_end(app, world, sponsored):
    local = utcnow().astimezone(ISTANBUL)
    paused_until = utcnow() + timedelta(hours=2)
    start = (local + timedelta(hours=1)).strftime("%H:%M")  # quiet from in an hour to in three hours
    end = (local + timedelta(hours=3)).strftime("%H:%M")
    set_runtime(app, quiet_hours_start=start, quiet_hours_end=end)
    with app.extensions["db"].session() as s, s.begin():
        farmer = s.get_one(Farmer, sponsored["farmer"])
        farmer.marketing_paused_until = paused_until
        s.flush()
        after = send_after(farmer, utcnow(), runtime_settings.current())
    assert after is not None and timedelta(hours=2, minutes=58) < after - utcnow() <= timedelta(hours=3)


def test_every_farmer_who_accepts_no_proactive_message_has_a_reason():
    now = utcnow()
    columns = ("opted_out_at", "deletion_requested_at", "unreachable_at", "marketing_opt_out_at")
    for mask in range(2 ** len(columns)):
        farmer = Farmer(**{c: now if mask & (1 << i) else None for i, c in enumerate(columns)})
        assert (farmer_refusal(farmer) is None) == farmer.accepts_proactive
