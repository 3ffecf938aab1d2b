"""The farmer's second pass: the quota known at the photo, what was sent before consent kept, albums of
photos as one submission, and the small answers (own code, nothing to cancel, already receiving, a past
analysis's report). Pure decisions first (bot/), then the same through signed webhooks and the real jobs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update

from bot import draft, machine
from bot.draft import MAX_PHOTOS, ConversationData, Draft, Photo
from bot.types import (
    QuotaBlock,
    RecordConsent,
    RedeemCode,
    SetOptOut,
    ShowQuota,
    State,
    Submit,
)
from models import Analysis, Farmer, Subscription, UsageLedger, utcnow
from models import Conversation as ConversationRow
from services import quota, sponsorship
from tests.chat import Farmer as ChatFarmer
from tests.chat import onboarded_farmer
from tests.journey import DAILY, NOW, conv, photo, run, sent, tap, text

# --- the quota at the photo ------------------------------------------------------------------------


def test_no_analysis_left_is_said_at_the_photo_and_the_photo_waits_for_a_code():
    step = machine.step(conv(), photo(7, quota=DAILY), NOW)
    assert step.state is State.AWAIT_CODE and step.data.draft is not None and step.data.draft.media_id == "m7"
    [said] = sent(step)
    assert "Günlük" in said and "yenilenir" in said and "kod" in said.lower() and "bekliyor" in said
    code = machine.step(conv(step.state, step.data), text("AGRI-7KQ3-M9XP"), NOW)
    assert RedeemCode("AGRI-7KQ3-M9XP") in code.actions
    assert code.state is State.AWAIT_CODE and code.data.draft == step.data.draft  # still waiting
    waiting = conv(code.state, code.data)
    still = machine.after_redeem(waiting, DAILY)  # e.g. the package only starts later
    assert still.state is State.AWAIT_CODE and still.data.draft == step.data.draft and not still.actions
    resumed = machine.after_redeem(waiting, None)
    assert resumed.state is State.AWAIT_CROP and resumed.data.draft == step.data.draft
    assert "Fotoğrafınızı aldım" in sent(resumed)[0]


def test_a_waiting_photo_with_a_crop_caption_goes_on_at_the_location():
    step = machine.step(conv(), photo(7, caption="domates", quota=DAILY), NOW)
    resumed = machine.after_redeem(conv(step.state, step.data), None)
    assert resumed.state is State.AWAIT_LOCATION


def test_a_charge_refused_at_send_keeps_the_submission_and_its_button():
    step, c = run(conv(), photo(7, caption="biber"), text("Geç"), tap("submit:7"))
    [submit] = [a for a in step.actions if isinstance(a, Submit)]
    assert submit.draft is not None and submit.media_ids == ("m7",)
    refused = machine.charge_refused(c, submit.draft, DAILY)
    assert refused.state is State.AWAIT_CODE and refused.data.pending_draft(7) == submit.draft
    assert "bekliyor" in sent(refused)[0]
    resumed = machine.after_redeem(conv(refused.state, refused.data), None)
    assert resumed.state is State.CONFIRM and "Gönder" in str(resumed.actions)
    again = machine.step(conv(resumed.state, resumed.data), tap("submit:7"), NOW)  # the old button works too
    assert any(isinstance(a, Submit) for a in again.actions)


PAID_DAILY = QuotaBlock("daily", datetime(2026, 11, 22, 21, 0, tzinfo=UTC), code_helps=False)


def test_when_a_code_would_only_queue_the_photo_does_not_wait_for_one():
    step = machine.step(conv(), photo(7, quota=PAID_DAILY), NOW)
    assert step.state is State.MENU and step.data.draft is None
    said, _menu = sent(step)
    assert "Günlük" in said and "yenilenir" in said and "kod" not in said.lower() and "tekrar gönderin" in said


def test_a_charge_refused_on_a_paid_package_goes_back_to_the_menu_keeping_the_button():
    step, c = run(conv(), photo(7, caption="biber"), text("Geç"), tap("submit:7"))
    [submit] = [a for a in step.actions if isinstance(a, Submit)]
    assert submit.draft is not None
    refused = machine.charge_refused(c, submit.draft, PAID_DAILY)
    assert refused.state is State.MENU and refused.data.draft is None and refused.data.pending_draft(7) is not None
    assert "kod" not in sent(refused)[0].lower()


def test_a_code_that_was_only_queued_ends_the_wait_for_a_code():
    waiting = machine.step(conv(), photo(7, quota=DAILY), NOW)
    assert waiting.state is State.AWAIT_CODE
    after = machine.after_redeem(conv(waiting.state, waiting.data), PAID_DAILY)
    assert after.state is State.MENU and after.data.draft is None
    assert "Bu fotoğrafı şu an analiz edemiyorum" in sent(after)[0]


def test_on_the_packages_last_day_the_photo_hears_that_the_package_ends():
    ending = QuotaBlock("daily", None, package_ends_at=datetime(2026, 11, 22, 15, 0, tzinfo=UTC))
    step = machine.step(conv(), photo(7, quota=ending), NOW)
    [said] = sent(step)
    assert "paketiniz 22 Kas 2026 18:00 itibarıyla sona eriyor" in said and "yenilenir" not in said
    assert "Devam etmek için bir sponsor kodu" in said and step.state is State.AWAIT_CODE


# --- consent ----------------------------------------------------------------------------------------


def test_a_photo_before_consent_is_kept_and_taken_up_after_it():
    step, c = run(conv(State.START, consented=False), photo(7, caption="bir fotoğraf"))
    assert step.state is State.AWAIT_CONSENT and "KVKK" in sent(step)[0]
    assert not any(isinstance(a, Submit) for a in step.actions) and c.data.draft is not None
    yes = machine.step(c, tap("consent:yes"), NOW)
    assert yes.actions[0] == RecordConsent(True)
    assert yes.state is State.AWAIT_CROP and yes.data.draft == c.data.draft
    assert "Fotoğrafınızı aldım" in " ".join(sent(yes))


def test_refusing_consent_forgets_the_photo_and_the_question():
    _step, c = run(conv(State.START, consented=False), photo(7), text("domatesim sararıyor"))
    assert c.data.draft is not None and c.data.held_text == "domatesim sararıyor"
    no = machine.step(c, tap("consent:no"), NOW)
    assert no.data == ConversationData() and RecordConsent(False) in no.actions


def test_a_question_before_consent_is_taken_up_after_it():
    _step, c = run(conv(State.START, consented=False), text("domateslerimde leke var ne yapmalıyım"))
    yes = machine.step(c, tap("consent:yes"), NOW)
    assert yes.state is State.AWAIT_PHOTO and yes.data.held_text is None
    _step, c = run(conv(State.START, consented=False), text("kota"))
    yes = machine.step(c, text("Kabul ediyorum"), NOW)
    assert yes.actions[0] == RecordConsent(True) and ShowQuota() in yes.actions


# --- albums -----------------------------------------------------------------------------------------


def test_an_album_is_one_submission_and_one_charge():
    _first, c = run(conv(), photo(7, 0))
    step, c = run(c, photo(8, 1), photo(9, 2))
    assert not sent(step) and c.state is State.AWAIT_CROP  # the crop question was asked once
    assert c.data.draft is not None and c.data.draft.media_ids == ("m7", "m8", "m9")
    step, c = run(c, tap("crop:domates"), text("Geç"))
    assert "3 fotoğraf" in sent(step)[0]
    step, c = run(c, tap("submit:7"))
    [submit] = [a for a in step.actions if isinstance(a, Submit)]
    assert submit.photo_message_id == 7 and submit.media_ids == ("m7", "m8", "m9")


def test_a_photo_sent_again_is_not_added_twice():
    _step, c = run(conv(), photo(7), photo(8, 1))
    again = machine.step(c, photo(8, 1), NOW)
    assert again.data == c.data and not again.actions
    first_again = machine.step(c, photo(7), NOW)
    assert first_again.data == c.data


def test_a_photo_later_in_the_wizard_joins_and_is_acknowledged():
    _step, c = run(conv(), photo(7, 0), tap("crop:biber"))
    step, c = run(c, photo(8, 60))
    assert c.state is State.AWAIT_LOCATION and c.data.draft is not None and c.data.draft.photo_count == 2
    assert "2/5" in sent(step)[0]


def test_a_sixth_photo_is_not_added_and_the_five_are_kept_with_the_question_again():
    _step, c = run(conv(), *(photo(n, n - 7) for n in range(7, 7 + MAX_PHOTOS)))
    assert c.data.draft is not None and c.data.draft.photo_count == MAX_PHOTOS
    sixth, c = run(c, photo(20, 5))
    assert "en fazla 5" in sent(sixth)[0] and "eklemedim" in sent(sixth)[0] and "Hangi ürün" in sent(sixth)[-1]
    seventh, c = run(c, photo(21, 6))
    assert sent(seventh) == []  # the rest of that burst: said once
    assert c.state is State.AWAIT_CROP and c.data.draft.photo_message_id == 7
    assert c.data.draft.photo_count == MAX_PHOTOS and not c.data.draft.has_photo(20) and not c.data.draft.has_photo(21)


def test_after_the_confirmation_a_photo_starts_a_new_submission_unless_added_with_the_button():
    _step, c = run(conv(), photo(7, 0, caption="elma"), text("Geç"))
    assert c.state is State.CONFIRM
    new = machine.step(c, photo(8, 120), NOW)
    assert new.data.draft is not None and new.data.draft.photo_message_id == 8
    assert new.data.pending_draft(7) is not None  # the first one's `Gönder` still works
    step, c = run(c, tap("photo:add:7"))
    assert c.state is State.AWAIT_MORE_PHOTO and "1/5" in sent(step)[0]
    step, c = run(c, photo(8, 120))
    assert c.state is State.CONFIRM and "2 fotoğraf" in sent(step)[0]
    assert c.data.pending_draft(7) is not None and c.data.pending_draft(7).media_ids == ("m7", "m8")


def test_the_confirmation_offers_another_photo_until_five():
    full = Draft(7, media_id="m7", crop="elma", more_photos=tuple(Photo(n, f"m{n}") for n in range(8, 12)))
    from bot import replies

    assert "photo:add:7" not in str(replies.confirm("tr", full).buttons)
    assert "Fotoğraf ekle" in str(replies.confirm("tr", Draft(7, crop="elma")).buttons)


def test_album_drafts_round_trip_and_older_rows_still_read():
    d = Draft(7, media_id="m7", more_photos=(Photo(8, "m8"), Photo(9, None)), first_at=NOW, limit_said=True)
    data = ConversationData(d, (d,), held_text="kota")
    assert draft.from_json(draft.to_json(data)) == data
    assert draft.from_json({"draft": {"photo_message_id": 7, "more_photos": [[7, "x"], [8, "a"], [8, "b"], "z",
                                                                             [0, "c"]], "first_at": "yesterday"}}) \
        == ConversationData(Draft(7, more_photos=(Photo(8, "a"),)))


# --- small answers ----------------------------------------------------------------------------------


def test_cancel_with_nothing_in_progress_says_so():
    assert "İptal edilecek bir işlem yok" in sent(machine.step(conv(), text("iptal"), NOW))[0]
    _step, c = run(conv(), photo(7))
    assert "İptal edildi" in sent(machine.step(c, text("iptal"), NOW))[0]


def test_start_when_not_stopped_says_messages_are_coming():
    step = machine.step(conv(), text("BAŞLA"), NOW)
    assert "zaten" in sent(step)[0] and not any(isinstance(a, SetOptOut) for a in step.actions)
    assert SetOptOut(False) in machine.step(conv(opted_out=True), text("BAŞLA"), NOW).actions


# --- through the webhook and the jobs ------------------------------------------------------------------


@pytest.fixture
def farmer(app, graph):
    return onboarded_farmer(app, graph)


def _farmer_id(session) -> int:
    return session.scalar(select(Farmer.id))


def use_today(app) -> None:
    with app.extensions["db"].session() as s, s.begin():
        assert quota.charge(s, s.scalar(select(Farmer.id)), utcnow()).ok


def new_code(app, tier: str = "M") -> str:
    with app.extensions["db"].session() as s, s.begin():
        sponsor = sponsorship.create_sponsor(s, name="Tarım A.Ş.")
        _purchase, [code] = sponsorship.create_purchase(s, sponsor.id, tier, 1, 90, 30, utcnow())
    return code


def charges(session) -> int:
    return session.scalar(select(func.count()).select_from(UsageLedger).where(UsageLedger.kind == "charge"))


def test_the_photo_waits_for_a_code_and_goes_on_without_being_sent_again(farmer, app, session):
    use_today(app)
    [refused] = farmer.photo(media_id="555")
    assert "Günlük" in refused and "bekliyor" in refused
    accepted, kept, crop_question = farmer.says(new_code(app))
    assert "Kod kabul edildi" in accepted and "Fotoğrafınızı aldım" in kept and "(Domates)" in crop_question
    farmer.taps("Biber")
    farmer.taps("Geç")
    [queued] = farmer.taps("Gönder")
    assert "sıraya alındı" in queued
    analysis = session.scalar(select(Analysis))
    assert analysis is not None and analysis.media_id == "555" and analysis.crop == "biber"
    assert analysis.sponsor_id is not None


def test_a_send_refused_waits_and_the_old_send_works_after_a_code(farmer, app, session):
    farmer.photo("domates")
    farmer.taps("Geç")
    use_today(app)  # the day's analysis went elsewhere meanwhile
    [refused] = farmer.taps("Gönder")
    assert "Günlük" in refused and "bekliyor" in refused
    _accepted, _kept, confirmation = farmer.says(new_code(app))
    assert "Gönder" in confirmation
    [queued] = farmer.tap_id(f"submit:{_photo_id(session)}", "Gönder")  # the first confirmation's button
    assert "sıraya alındı" in queued and "zaten gönderildi" not in queued
    assert session.scalar(select(func.count()).select_from(Analysis)) == 1


def _use_all_of_today(app) -> None:
    with app.extensions["db"].session() as s, s.begin():
        farmer_id = s.scalar(select(Farmer.id))
        while quota.charge(s, farmer_id, utcnow()).ok:
            pass


def test_on_a_paid_package_the_daily_limit_offers_no_code_and_waits_for_none(farmer, app, session):
    farmer.says(new_code(app, "S"))  # replaces the Trial
    _use_all_of_today(app)
    refused, _menu = farmer.photo(media_id="555")
    assert "Günlük" in refused and "yenilenir" in refused and "kod" not in refused.lower()
    assert "tekrar gönderin" in refused and session.scalar(select(ConversationRow.state)) == "menu"
    [queued] = farmer.says(new_code(app, "M"))  # a code now only queues
    assert "başlayacak" in queued
    assert "bulunamadı" not in " ".join(farmer.says("Geç"))
    assert session.scalar(select(func.count()).select_from(Analysis)) == 0


def test_a_trial_on_its_last_day_hears_that_it_ends_instead_of_a_renewal(farmer, app, session):
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(Subscription).values(ends_at=quota.next_day_start(utcnow())))
    use_today(app)
    [refused] = farmer.photo(media_id="555")
    assert "sona eriyor" in refused and "yenilenir" not in refused and "sponsor kodu" in refused
    assert session.scalar(select(ConversationRow.state)) == "await_code"


def _photo_id(session) -> int:
    from models import Message

    return session.scalar(select(Message.id).where(Message.type == "image"))


def test_an_album_of_three_is_one_analysis_one_charge_all_photos_in_order(farmer, app, session):
    before = charges(session)
    messages = [farmer.message("image", {"mime_type": "image/jpeg", "sha256": "ab" * 32, "id": media})
                for media in ("m-1", "m-2", "m-3")]
    [crop_question] = farmer.deliver(*messages)  # WhatsApp delivers an album as separate messages
    assert "(Domates)" in crop_question
    farmer.taps("Domates")
    [confirmation] = farmer.taps("Geç")
    assert "3 fotoğraf" in confirmation
    farmer.deliver(messages[1])  # a redelivery: the webhook and the job take it once
    farmer.taps("Gönder")
    [analysis] = session.scalars(select(Analysis)).all()
    assert analysis.media_id == "m-1" and analysis.media_ids == ["m-1", "m-2", "m-3"]
    assert charges(session) == before + 1


def test_a_photo_added_with_the_button_joins_the_submission(farmer, session):
    farmer.photo("elma", media_id="a-1")
    farmer.taps("Geç")
    [ask] = farmer.taps("Fotoğraf ekle")
    assert "1/5" in ask
    [confirmation] = farmer.photo(media_id="a-2")
    assert "2 fotoğraf" in confirmation
    farmer.taps("Gönder")
    assert session.scalar(select(Analysis.media_ids)) == ["a-1", "a-2"]


def test_a_farmer_typing_their_own_code_is_told_it_is_theirs(farmer, app):
    code = new_code(app)
    farmer.says(code)
    [answer] = farmer.says(code)
    assert "zaten siz kullandınız" in answer and "etkin" in answer and "sponsor" not in answer


def test_consent_takes_up_the_photo_sent_before_it(app, graph, session):
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)
    f = ChatFarmer(app, graph, queues=("inbound",))
    [notice] = f.photo(media_id="early")
    assert "KVKK" in notice
    welcome, kept, crop_question = f.taps("Kabul ediyorum")
    assert "deneme" in welcome.lower() and "Fotoğrafınızı aldım" in kept and "(Domates)" in crop_question
    f.taps("Domates")
    f.taps("Geç")
    f.taps("Gönder")
    assert session.scalar(select(Analysis.media_id)) == "early"


def test_cancel_right_after_a_charge_says_there_is_nothing_to_cancel(farmer):
    farmer.photo("domates")
    farmer.taps("Geç")
    farmer.taps("Gönder")
    [nothing, _menu] = farmer.says("iptal")
    assert "İptal edilecek bir işlem yok" in nothing


def test_start_when_not_stopped(farmer):
    [answer] = farmer.says("BAŞLA")
    assert "zaten" in answer


def test_a_past_analysis_offers_its_report_and_details(farmer, app, session):
    farmer.photo("domates")
    farmer.taps("Geç")
    farmer.taps("Gönder")
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(Analysis).values(status="completed", health_score=6, completed_at=utcnow(),
                                          result={"summary": "ok"}))
    farmer.says("son analizlerim")
    [summary] = farmer.taps("Domates")
    assert "/r/" in summary and "[Detaylar]" in summary


def test_the_album_window_is_a_setting():
    from tests.helpers import make_settings

    assert make_settings("sqlite://").ALBUM_WINDOW_SECONDS == 5
    assert make_settings("sqlite://", ALBUM_WINDOW_SECONDS="9").ALBUM_WINDOW_SECONDS == 9
