"""What the farmer started stays theirs: a photo or a half-finished submission survives `Kod kullan`, a
second consent and an album's later photos (their captions too); a cancelled one cannot be sent by an
older button. Pure decisions first (bot/), then the same through signed webhooks and the real jobs."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import func, select

from bot import machine
from bot.types import ExplainNotPending, RecordConsent, RedeemCode, State, Submit
from models import Analysis
from services import quota
from tests.chat import Farmer as ChatFarmer
from tests.chat import onboarded_farmer
from tests.journey import DAILY, NOW, conv, photo, run, sent, tap, text
from tests.test_journey_second_pass import charges, new_code, use_today


@pytest.fixture
def farmer(app, graph):
    return onboarded_farmer(app, graph)


# --- `Kod kullan` keeps the submission --------------------------------------------------------------


def test_kod_keeps_a_photo_waiting_for_a_code_and_it_goes_on_after_the_code():
    for asks in (text("kod"), tap("menu:code")):
        _step, c = run(conv(), photo(7, quota=DAILY), asks)
        assert c.state is State.AWAIT_CODE and c.data.draft is not None and c.data.draft.photo_message_id == 7
        step, c = run(c, text("AGRI-7KQ3-M9XP"))
        assert RedeemCode("AGRI-7KQ3-M9XP") in step.actions
        resumed = machine.after_redeem(c, None)
        assert resumed.state is State.AWAIT_CROP and resumed.data.draft == c.data.draft


def test_kod_in_the_middle_of_the_questions_keeps_the_submission():
    _step, c = run(conv(), photo(7, caption="domates"), text("kod"), text("AGRI-7KQ3-M9XP"))
    assert c.data.draft is not None and c.data.draft.crop == "domates"
    resumed = machine.after_redeem(c, None)
    assert resumed.state is State.AWAIT_LOCATION and "Tarla nerede" in " ".join(sent(resumed))


def test_kod_in_the_menu_asks_for_the_code_with_nothing_to_keep():
    step = machine.step(conv(), text("kod"), NOW)
    assert step.state is State.AWAIT_CODE and step.data.draft is None


def test_a_photo_waiting_for_a_code_goes_on_after_kod_and_the_code(farmer, app, session):
    use_today(app)
    farmer.photo(media_id="555")
    farmer.taps("Kod kullan")
    accepted, kept, crop_question = farmer.says(new_code(app))
    assert "Kod kabul edildi" in accepted and "Fotoğrafınızı aldım" in kept and "(Domates)" in crop_question
    farmer.taps("Biber")
    farmer.taps("Geç")
    [queued] = farmer.taps("Gönder")
    assert "sıraya alındı" in queued and session.scalar(select(Analysis.media_id)) == "555"


def test_a_submission_interrupted_by_kod_goes_on_after_the_code(farmer, app, session):
    farmer.photo("domates", media_id="556")
    farmer.says("kod")
    accepted, *rest = farmer.says(new_code(app))
    assert "Kod kabul edildi" in accepted and "Tarla nerede" in rest[-1]
    farmer.taps("Geç")
    farmer.taps("Gönder")
    assert session.scalar(select(Analysis.media_id)) == "556"


# --- a cancelled submission stays cancelled ---------------------------------------------------------


def test_a_cancelled_submission_cannot_be_sent_by_its_older_button():
    _step, c = run(conv(), photo(7, caption="domates"), text("Geç"))
    assert c.state is State.CONFIRM and c.data.pending_draft(7) is not None
    for cancels in (tap("confirm:cancel:7"), tap("confirm:cancel"), text("iptal")):
        step, cancelled = run(c, cancels)
        assert "İptal edildi" in sent(step)[0] and cancelled.data.pending_draft(7) is None
        stale = machine.step(cancelled, tap("submit:7"), NOW)
        assert stale.actions == (ExplainNotPending(7),)  # the job says it was cancelled: nothing was sent


def test_cancelling_an_older_confirmation_keeps_the_submission_in_progress():
    _step, c = run(conv(), photo(7, caption="domates"), text("Geç"), photo(8, 120, caption="biber"))
    assert c.state is State.AWAIT_LOCATION and c.data.draft is not None and c.data.draft.photo_message_id == 8
    step, c = run(c, tap("confirm:cancel:7"))
    assert c.state is State.AWAIT_LOCATION and c.data.draft.photo_message_id == 8 and c.data.pending_draft(7) is None
    assert "İptal edildi" in sent(step)[0] and "Tarla nerede" in sent(step)[-1]
    again, _c = run(c, tap("confirm:cancel:7"))
    assert again.actions == (ExplainNotPending(7),) and _c.data == c.data  # the job: never sent, cancelled


def test_after_cancel_the_old_send_button_charges_nothing(farmer, session):
    farmer.photo("domates")
    farmer.taps("Geç")
    before = charges(session)
    cancelled, _menu = farmer.taps("İptal")
    assert "İptal edildi" in cancelled
    [answer] = farmer.taps("Gönder")
    assert "iptal edildi" in answer
    assert session.scalar(select(func.count()).select_from(Analysis)) == 0 and charges(session) == before


# --- an album after `Fotoğraf ekle` -------------------------------------------------------------------


def test_an_album_sent_after_add_a_photo_joins_the_submission():
    _step, c = run(conv(), photo(7, 0, caption="elma"), text("Geç"), tap("photo:add:7"))
    first, c = run(c, photo(8, 120))
    second, c = run(c, photo(9, 121))
    assert "2 fotoğraf" in sent(first)[0] and sent(second) == []  # one confirmation for the burst
    assert c.state is State.CONFIRM and c.data.draft is not None and c.data.draft.photo_message_id == 7
    assert c.data.pending_draft(7).media_ids == ("m7", "m8", "m9")
    _later, c = run(c, photo(10, 300))  # outside the window, without the button: a new submission
    assert c.data.draft.photo_message_id == 10 and c.data.pending_draft(7).photo_count == 3


def test_beyond_five_after_add_a_photo_the_limit_is_said_and_the_album_is_kept():
    _step, c = run(conv(), *(photo(n, n - 7) for n in range(7, 11)), tap("crop:elma"), text("Geç"),
                   tap("photo:add:7"))
    assert c.data.pending_draft(7).photo_count == 4
    _fifth, c = run(c, photo(11, 120))
    sixth, c = run(c, photo(12, 121))
    assert "en fazla 5" in sent(sixth)[0] and "5 fotoğraf" in sent(sixth)[-1]
    assert c.data.draft.photo_message_id == 7 and c.data.pending_draft(7).photo_count == 5
    assert not c.data.draft.has_photo(12)


def test_an_album_after_add_a_photo_through_the_webhook(farmer, session):
    farmer.photo("elma", media_id="a-1")
    farmer.taps("Geç")
    farmer.taps("Fotoğraf ekle")
    farmer.timestamp += 60  # a minute later: well after the first photo's album
    album = [farmer.message("image", {"mime_type": "image/jpeg", "sha256": "ab" * 32, "id": media})
             for media in ("a-2", "a-3")]
    answers = farmer.deliver(*album)
    assert [a for a in answers if "Göndermeden önce" in a] == [answers[-1]]
    assert not any("Hangi ürün" in a for a in answers)
    farmer.taps("Gönder")  # under a confirmation of fewer photos than the album has now: asked again
    assert "3 fotoğraf" in farmer.last_bodies[-1]["interactive"]["body"]["text"]
    farmer.taps("Gönder")
    assert session.scalar(select(Analysis.media_ids)) == ["a-1", "a-2", "a-3"]


# --- captions on an album's later photos ----------------------------------------------------------------


def test_a_caption_on_a_later_photo_of_the_album_gives_the_crop_and_the_note():
    first, c = run(conv(), photo(7, 0))
    assert first.state is State.AWAIT_CROP
    step, c = run(c, photo(8, 1, caption="domates, alt yüzünde beyaz toz var"))
    assert c.state is State.AWAIT_LOCATION and "Tarla nerede" in sent(step)[-1]
    assert c.data.draft.crop == "domates" and c.data.draft.notes == "domates, alt yüzünde beyaz toz var"
    step, c = run(c, photo(9, 2, caption="biber gibi"), text("Geç"))
    assert c.data.draft.crop == "domates" and "Notunuz" in sent(step)[0] and "3 fotoğraf" in sent(step)[0]
    step, c = run(c, tap("submit:7"))
    [submit] = [a for a in step.actions if isinstance(a, Submit)]
    assert submit.notes == "domates, alt yüzünde beyaz toz var\nbiber gibi" and submit.crop == "domates"


def test_a_caption_on_a_later_photo_kept_before_consent_counts_too():
    _step, c = run(conv(State.START, consented=False), photo(7, 0), photo(8, 1, caption="biber yaprakları"))
    assert c.data.draft.crop == "biber" and c.data.draft.notes == "biber yaprakları"
    _yes, c = run(c, tap("consent:yes"))
    assert c.state is State.AWAIT_LOCATION


def test_an_album_caption_on_the_second_photo_through_the_webhook(farmer, session):
    album = [farmer.message("image", {"mime_type": "image/jpeg", "sha256": "ab" * 32, "id": "c-1"}),
             farmer.message("image", {"mime_type": "image/jpeg", "sha256": "ab" * 32, "id": "c-2",
                                       "caption": "domates, alt yüzünde beyaz toz var"})]
    farmer.deliver(*album)
    [confirmation] = farmer.taps("Geç")
    assert "Notunuz" in confirmation and "Domates" in confirmation and "2 fotoğraf" in confirmation


# --- consent given twice ----------------------------------------------------------------------------


def test_a_second_consent_keeps_the_photo_kept_before_it():
    _step, c = run(conv(State.START, consented=False), photo(7, 0), photo(8, 1))
    for first in (tap("consent:yes"), text("Kabul ediyorum")):
        _yes, accepted = run(c, first)
        accepted = replace(accepted, consented=True)  # as the job reads the farmer back
        again, after = run(accepted, tap("consent:yes"))
        assert after.state is State.AWAIT_CROP and after.data == accepted.data
        assert "Hangi ürün" in sent(again)[0] and not any(isinstance(a, RecordConsent) for a in again.actions)
    assert machine.step(conv(), tap("consent:yes"), NOW).state is State.MENU  # nothing kept: the menu


def test_a_double_tap_on_consent_keeps_the_album_through_the_webhook(app, graph, session):
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)
    f = ChatFarmer(app, graph, queues=("inbound",))
    f.photo(media_id="early")
    f.taps("Kabul ediyorum")
    [again] = f.taps("Kabul ediyorum")
    assert "Hangi ürün" in again
    f.taps("Domates")
    f.taps("Geç")
    f.taps("Gönder")
    assert session.scalar(select(Analysis.media_id)) == "early"


# --- an album beyond five before consent ----------------------------------------------------------------


def test_an_album_of_seven_before_consent_gets_one_notice_and_the_limit_once():
    steps = []
    c = conv(State.START, consented=False)
    for n in range(7, 14):
        step, c = run(c, photo(n, n - 7))
        steps.append(step)
    said = [t for step in steps for t in sent(step)]
    assert sum("KVKK" in t for t in said) == 1 and sum("en fazla 5" in t for t in said) == 1
    assert "ilk 5" in next(t for t in said if "en fazla 5" in t)
    assert c.data.draft is not None
    assert c.data.draft.media_ids == ("m7", "m8", "m9", "m10", "m11")
    _yes, c = run(c, tap("consent:yes"))
    assert c.state is State.AWAIT_CROP and c.data.draft.photo_count == 5


def test_an_album_of_seven_before_consent_through_the_webhook(app, graph):
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)
    f = ChatFarmer(app, graph, queues=("inbound",))
    album = []
    for n in range(7):  # sent within the same second, as WhatsApp sends an album
        album.append(f.message("image", {"mime_type": "image/jpeg", "sha256": "ab" * 32, "id": f"s-{n}"}))
        f.timestamp -= 1
    answers = f.deliver(*album)
    assert sum("KVKK" in a for a in answers) == 1 and sum("en fazla 5" in a for a in answers) == 1
