"""Support's services: human takeover, replies in and out of the 24-hour window, KVKK deletion."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from models import (
    Analysis,
    AuditLog,
    Conversation,
    Farmer,
    Message,
    MessageStatusEvent,
    SupportNote,
    UsageLedger,
    utcnow,
)
from services import deletion, quota, support
from services.storage import new_key
from services.whatsapp.outbox import send_queued
from tests.admin_helpers import make_staff
from tests.chat import onboarded_farmer

PHONE = "+905321234567"


@pytest.fixture
def farmer(app, graph):
    return onboarded_farmer(app, graph)


@pytest.fixture
def staff_id(app) -> int:
    return make_staff(app, "support")


def farmer_row(session, phone: str = PHONE) -> Farmer:
    return session.scalar(select(Farmer).where(Farmer.phone == phone).execution_options(populate_existing=True))


def write(app):
    return app.extensions["db"].session()


# --- takeover ---------------------------------------------------------------------------------------


def test_a_taken_over_farmer_gets_no_bot_reply_and_the_message_is_stored(app, farmer, session, staff_id):
    farmer_id = farmer_row(session).id
    with write(app) as s, s.begin():
        support.take_over(s, farmer_id, staff_id, utcnow(), 120)
    assert farmer.says("kota") == []
    stored = session.scalars(select(Message).where(Message.farmer_id == farmer_id, Message.text == "kota")).one()
    assert stored.status == "processed"
    assert session.scalar(select(AuditLog.action).where(AuditLog.action == "farmer.takeover")) == "farmer.takeover"


def test_releasing_the_takeover_gives_the_farmer_back_to_the_bot(app, farmer, session, staff_id):
    farmer_id = farmer_row(session).id
    with write(app) as s, s.begin():
        support.take_over(s, farmer_id, staff_id, utcnow(), 120)
    assert farmer.says("kota") == []
    with write(app) as s, s.begin():
        assert support.release(s, farmer_id, staff_id, utcnow()) is True
    assert farmer.says("kota") != []


def test_an_expired_takeover_no_longer_silences_the_bot(app, farmer, session, staff_id):
    farmer_id = farmer_row(session).id
    with write(app) as s, s.begin():
        support.take_over(s, farmer_id, staff_id, utcnow() - timedelta(hours=3), 60)
    assert farmer.says("kota") != []
    with write(app) as s, s.begin():
        assert support.release(s, farmer_id, staff_id, utcnow()) is False  # nothing was taken any more


def test_a_takeover_longer_than_a_day_is_refused(app, farmer, session, staff_id):
    with write(app) as s, s.begin(), pytest.raises(ValueError):
        support.take_over(s, farmer_row(session).id, staff_id, utcnow(), 24 * 60 + 1)


def test_support_may_take_over_a_farmer_who_never_wrote(app, session, staff_id):
    with write(app) as s, s.begin():
        farmer = Farmer(phone="+905550000001")
        s.add(farmer)
        s.flush()
        conv = support.take_over(s, farmer.id, staff_id, utcnow(), 30)
        assert support.is_taken(conv, utcnow())


# --- replies ----------------------------------------------------------------------------------------


def test_a_free_text_reply_inside_the_window_goes_through_the_outbox_and_names_its_writer(
        app, farmer, graph, session, staff_id):
    farmer_id = farmer_row(session).id
    with write(app) as s, s.begin():
        result = support.reply_text(s, farmer_id, staff_id, "Merhaba, size yardımcı olayım.", utcnow())
    assert result.refusal is None and result.address == PHONE
    send_queued(result.address)
    assert graph.sent[-1]["text"]["body"] == "Merhaba, size yardımcı olayım."
    row = session.get(Message, result.message_id)
    assert row.staff_user_id == staff_id and row.status == "accepted"


def test_free_text_is_refused_outside_the_24_hour_window_but_a_template_is_allowed(app, farmer, session, staff_id):
    farmer_id = farmer_row(session).id
    later = utcnow() + timedelta(hours=25)
    with write(app) as s, s.begin():
        refused = support.reply_text(s, farmer_id, staff_id, "Merhaba", later)
        assert refused.refusal is support.ReplyRefusal.WINDOW_CLOSED
        ok = support.reply_template(s, farmer_id, staff_id, "usage_alert_tr", ["1", "5", "yarın 00:00"], later)
    assert ok.refusal is None
    assert session.get(Message, ok.message_id).template_name == "usage_alert_tr"


def test_a_sponsor_template_and_wrong_parameters_are_refused_to_support(app, farmer, session, staff_id):
    farmer_id = farmer_row(session).id
    with write(app) as s, s.begin():
        assert support.reply_template(s, farmer_id, staff_id, "sponsor_message_tr", ["A", "B"],
                                      utcnow()).refusal is support.ReplyRefusal.UNKNOWN_TEMPLATE
        assert support.reply_template(s, farmer_id, staff_id, "usage_alert_tr", ["1"],
                                      utcnow()).refusal is support.ReplyRefusal.BAD_PARAMS


def test_the_window_left_counts_down_from_the_last_inbound_message():
    now = utcnow()
    farmer = Farmer(phone=PHONE, last_inbound_at=now - timedelta(hours=20))
    assert support.window_left(farmer, now) == timedelta(hours=4)
    assert support.window_left(farmer, now + timedelta(hours=5)) is None


def test_notes_and_canned_replies_are_kept(app, farmer, session, staff_id):
    farmer_id = farmer_row(session).id
    with write(app) as s, s.begin():
        assert support.add_note(s, farmer_id, staff_id, "  ", utcnow()) is None
        support.add_note(s, farmer_id, staff_id, "Domates seracısı, Antalya.", utcnow())
        canned = support.save_canned(s, None, "Selam", "Merhaba, nasıl yardımcı olabilirim?", staff_id, utcnow())
        assert canned is not None
    assert [n.text for n in support.notes_of(session, farmer_id)] == ["Domates seracısı, Antalya."]
    assert [c.title for c in support.canned_replies(session)] == ["Selam"]


def test_the_conversations_list_filters_and_searches(app, farmer, session, staff_id):
    farmer_id = farmer_row(session).id
    rows, total = support.conversations(session, utcnow(), q="Mehmet")
    assert total == 1 and rows[0].farmer.id == farmer_id and rows[0].last is not None
    assert support.conversations(session, utcnow(), kind=support.ListFilter.NEEDS_HUMAN)[1] == 0
    with write(app) as s, s.begin():
        support.take_over(s, farmer_id, staff_id, utcnow(), 30)
    assert support.conversations(session, utcnow(), kind=support.ListFilter.NEEDS_HUMAN)[1] == 1
    assert support.conversations(session, utcnow(), q="no such farmer")[1] == 0


@pytest.mark.parametrize("q", ["ŞÜKRÜ YILMAZ", "şükrü yılmaz", "sukru yilmaz", "Yılmaz", "0532 123 45 67",
                               "+90 532 123 45 67", "(532) 123-4567", "905321234567"])
def test_support_finds_a_farmer_by_name_or_phone_as_people_write_them(app, farmer, session, q):
    with write(app) as s, s.begin():
        farmer_row(s).profile_name = "Şükrü Yılmaz"
    rows, total = support.conversations(session, utcnow(), q=q)
    assert total == 1 and rows[0].farmer.phone == PHONE


@pytest.mark.parametrize("q", ["İbrahim", "ibrahim", "IBRAHIM", "İBRAHİM"])
def test_a_dotted_capital_i_is_found_either_way(app, farmer, session, q):
    with write(app) as s, s.begin():
        farmer_row(s).profile_name = "İbrahim Çelik"
    assert support.conversations(session, utcnow(), q=q)[1] == 1


def test_a_farmer_id_or_phone_in_other_digits_than_ascii_finds_nobody(app, farmer, session):
    """The support search reads numbers in ASCII digits only, as the webhook does (an id typed `١` was farmer 1)."""
    farmer_id = farmer_row(session).id
    other_digits = str(farmer_id).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert support.conversations(session, utcnow(), q=str(farmer_id))[1] == 1
    assert support.conversations(session, utcnow(), q=other_digits)[1] == 0
    assert support.conversations(session, utcnow(), q="٠٥٣٢ ١٢٣ ٤٥ ٦٧")[1] == 0


def test_a_short_or_unlike_number_is_not_taken_for_a_phone(app, farmer, session):
    assert support.conversations(session, utcnow(), q="0 532")[1] == 0
    assert support.conversations(session, utcnow(), q="4567 domates")[1] == 0


# --- deletion ---------------------------------------------------------------------------------------


def _with_analysis(app, farmer_id: int) -> tuple[int, list[str]]:
    storage = app.extensions["storage"]
    keys = [new_key("original", "jpg"), new_key("photos", "jpg")]
    for key in keys:
        storage.put(key, b"\xff\xd8 a photo", "image/jpeg")
    now = utcnow()
    with write(app) as s, s.begin():
        analysis = Analysis(farmer_id=farmer_id, status="completed", crop="domates", health_score=6,
                            notes="Seram Kumluca'da", location_text="Kumluca", latitude=36.3, longitude=30.3,
                            original_key=keys[0], image_key=keys[1], result={"farmer_notes": "Seram"})
        s.add(analysis)
        s.flush()
        charge = quota.charge(s, farmer_id, now, analysis_id=analysis.id)
        assert charge.ok
        return analysis.id, keys


def test_the_bot_path_puts_the_farmer_in_the_deletion_queue(farmer, session):
    farmer.says("verilerimi sil")
    assert [f.phone for f in deletion.queue(session)] == [PHONE]


def test_deletion_anonymises_the_farmer_and_keeps_the_ledger(app, farmer, graph, session, staff_id):
    farmer_id = farmer_row(session).id
    analysis_id, keys = _with_analysis(app, farmer_id)
    with write(app) as s, s.begin():
        support.add_note(s, farmer_id, staff_id, "Not", utcnow())
        assert deletion.request_deletion(s, farmer_id, staff_id, utcnow())
    ledger_before = session.scalar(select(func.count()).select_from(UsageLedger)
                                   .where(UsageLedger.farmer_id == farmer_id))
    with write(app) as s, s.begin():
        erased = deletion.erase(s, farmer_id, staff_id, utcnow())
    assert erased is not None and erased.told and erased.goodbye_address == PHONE
    assert deletion.delete_photos(app.extensions["storage"], erased.photo_keys) == 2
    send_queued(erased.goodbye_address)
    assert "Verileriniz isteğiniz üzerine silindi" in graph.sent[-1]["text"]["body"]
    with write(app) as s, s.begin():
        assert deletion.forget_goodbyes(s) == 1

    farmer = session.get(Farmer, farmer_id)
    session.refresh(farmer)
    assert (farmer.phone, farmer.user_id, farmer.username, farmer.profile_name) == (None, None, None, None)
    assert farmer.deleted_at is not None
    messages = session.scalars(select(Message).where(Message.farmer_id == farmer_id)).all()
    assert messages and all(m.payload is None and m.phone == f"deleted:{farmer_id}" for m in messages)
    assert [m.text for m in messages if m.text is not None] == [graph.sent[-1]["text"]["body"]]  # the goodbye
    assert session.scalar(select(func.count()).select_from(Message).where(Message.phone == PHONE)) == 0
    assert session.scalar(select(func.count()).select_from(MessageStatusEvent)
                          .where(MessageStatusEvent.recipient == PHONE.lstrip("+"))) == 0
    analysis = session.get(Analysis, analysis_id)
    assert (analysis.notes, analysis.location_text, analysis.original_key, analysis.result) == (None, None, None, None)
    assert analysis.crop == "domates" and analysis.health_score == 6  # statistics stay, without identity
    for key in keys:
        with pytest.raises(KeyError):
            app.extensions["storage"].get(key)
    assert session.scalar(select(func.count()).select_from(UsageLedger)
                          .where(UsageLedger.farmer_id == farmer_id)) == ledger_before > 0
    assert session.scalar(select(func.count()).select_from(SupportNote)) == 0
    assert session.scalar(select(func.count()).select_from(Conversation)
                          .where(Conversation.farmer_id == farmer_id)) == 0
    assert session.scalar(select(AuditLog.details).where(AuditLog.action == "farmer.deletion.done"))["told"] is True


def test_deleting_twice_does_nothing_the_second_time(app, farmer, session, staff_id):
    farmer_id = farmer_row(session).id
    with write(app) as s, s.begin():
        assert deletion.erase(s, farmer_id, staff_id, utcnow()) is not None
    with write(app) as s, s.begin():
        assert deletion.erase(s, farmer_id, staff_id, utcnow()) is None


def test_a_farmer_outside_the_window_is_not_told(app, farmer, graph, session, staff_id):
    farmer_id = farmer_row(session).id
    with write(app) as s, s.begin():
        erased = deletion.erase(s, farmer_id, staff_id, utcnow() + timedelta(hours=25))
    assert erased is not None and not erased.told and erased.goodbye_address is None


def test_the_scheduler_deletes_on_the_last_day_of_the_thirty(app, farmer, session):
    farmer_id = farmer_row(session).id
    now = utcnow()
    with write(app) as s, s.begin():
        other = Farmer(phone="+905550000002", deletion_requested_at=now - timedelta(days=10))
        s.add(other)
        s.get_one(Farmer, farmer_id).deletion_requested_at = now - timedelta(days=29, hours=1)
        s.flush()
        other_id = other.id
    assert deletion.erase_due(app.extensions["db"], app.extensions["storage"], now) == 1
    assert session.get(Farmer, farmer_id).deleted_at is not None
    assert session.get(Farmer, other_id).deleted_at is None
    entry = session.scalar(select(AuditLog).where(AuditLog.action == "farmer.deletion.done"))
    assert entry.user_id is None and entry.details["automatic"] is True


def test_days_left_of_the_legal_thirty():
    now = utcnow()
    assert deletion.days_left(now, now) == 29
    assert deletion.days_left(now - timedelta(days=29, hours=1), now) == 0
    assert deletion.days_left(now - timedelta(days=40), now) == 0


def test_a_deleted_farmer_who_writes_again_starts_afresh(app, farmer, session, staff_id):
    farmer_id = farmer_row(session).id
    with write(app) as s, s.begin():
        deletion.erase(s, farmer_id, staff_id, utcnow())
    goodbye, notice = farmer.says("Merhaba")  # the goodbye was still waiting: it leaves first
    assert "silindi" in goodbye and "KVKK" in notice
    assert farmer_row(session).id != farmer_id


def test_deleting_ends_a_running_analysis_refunded_and_a_late_result_is_ignored(app, farmer, session, staff_id):
    from services.analysis import complete

    farmer_id = farmer_row(session).id
    now = utcnow()
    with write(app) as s, s.begin():
        analysis = Analysis(farmer_id=farmer_id, status="processing", crop="domates")
        s.add(analysis)
        s.flush()
        charge = quota.charge(s, farmer_id, now, analysis_id=analysis.id)
        analysis.charge_ledger_id = charge.ledger_id
        analysis_id = analysis.id
    with write(app) as s, s.begin():
        deletion.erase(s, farmer_id, staff_id, now)
    row = session.get(Analysis, analysis_id)
    assert row.status == "failed" and row.failure_reason == "the farmer's data was deleted"
    kinds = session.scalars(select(UsageLedger.kind).where(UsageLedger.farmer_id == farmer_id)).all()
    assert sorted(kinds) == ["charge", "refund"]
    assert complete(analysis_id, {"Success": True}) == "ignored"


def test_the_api_transcript_of_a_deleted_farmer_is_not_an_error(app, client, farmer, session, staff_id):
    from tests.admin_helpers import bearer, token_for

    farmer_id = farmer_row(session).id
    with write(app) as s, s.begin():
        deletion.erase(s, farmer_id, staff_id, utcnow())
    headers = bearer(token_for(app, client, "admin"))
    response = client.get(f"/api/v1/farmers/{farmer_id}/messages", headers=headers)
    assert response.status_code == 200 and response.get_json()["farmer"]["phone"] is None


def test_a_farmer_who_asks_for_a_person_needs_a_human_until_support_answers(app, farmer, session, staff_id):
    [answer] = farmer.says("Müşteri temsilcisi ile görüşmek istiyorum")
    assert "Destek ekibimizden bir kişi" in answer
    farmer_id = farmer_row(session).id
    assert farmer_row(session).human_requested_at is not None
    rows, total = support.conversations(session, utcnow(), kind=support.ListFilter.NEEDS_HUMAN)
    assert total == 1 and rows[0].farmer.id == farmer_id
    with write(app) as s, s.begin():
        answered = support.reply_text(s, farmer_id, staff_id, "Buradayım, nasıl yardımcı olabilirim?", utcnow())
        assert answered.refusal is None
    assert farmer_row(session).human_requested_at is None
    assert support.conversations(session, utcnow(), kind=support.ListFilter.NEEDS_HUMAN)[1] == 0
