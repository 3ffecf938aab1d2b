"""The farmer's third pass, from an outside probe of the journey: no message leaves the farmer stuck (a
farmer waiting for a code who has none, a crop outside the list, a place that is not one), `devam` is not
an opt-in, consent can be taken back and deletion asked for in every state. Pure decisions first (bot/),
then the same through signed webhooks and the real jobs."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select

from bot import codes, replies
from bot.draft import ConversationData
from bot.types import (
    RecordConsent,
    RedeemCode,
    RequestDeletion,
    SetOptOut,
    State,
    Submit,
)
from models import Conversation as ConversationRow
from models import Farmer
from tests.chat import onboarded_farmer
from tests.journey import DAILY, conv, photo, run, sent, tap, text
from tests.test_journey_second_pass import use_today

# --- waiting for a code, without one ------------------------------------------------------------------


@pytest.mark.parametrize("words", ["kodum yok", "tamam", "ne yapayım", "no idea", "Kodum yok ne yapacağım?"])
def test_words_while_a_photo_waits_for_a_code_are_not_a_code_and_hear_the_way_out(words):
    step, _c = run(conv(), photo(quota=DAILY), text(words, quota=DAILY))
    assert not any(isinstance(a, RedeemCode) for a in step.actions)
    [said] = sent(step)
    assert "bulunamadı" not in said and "'iptal'" in said and "AGRI-" in said
    assert step.state is State.AWAIT_CODE and step.data.draft is not None  # the photo still waits


def test_words_after_use_a_code_from_the_menu_point_to_the_menu():
    step, _c = run(conv(), tap("menu:code"), text("no idea"))
    [said] = sent(step)
    assert "'menü'" in said and "bulunamadı" not in said and not any(isinstance(a, RedeemCode) for a in step.actions)


@pytest.mark.parametrize("typed", ["AGRI-7KQ3-M9XP", "agri 7kq3", "AGRIABCD", "7KQ3M9XP", "7kq3-m9xp"])
def test_anything_shaped_like_a_code_is_still_tried_as_one(typed):
    assert codes.is_code_attempt(typed)
    step, _c = run(conv(), photo(quota=DAILY), text(typed))
    assert RedeemCode(typed) in step.actions


def test_the_waiting_photo_and_the_unknown_code_name_the_way_out():
    step, _c = run(conv(), photo(quota=DAILY))
    assert "'iptal'" in sent(step)[0]
    assert "'menü'" in replies.redeem("tr", replies.RedeemView("unknown")).text
    assert "'menu'" in replies.redeem("en", replies.RedeemView("unknown")).text


# --- a crop outside the list ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fasulye", "Kiraz", "şeker pancarı", "Antep fıstığı"])
def test_a_typed_crop_outside_the_list_is_taken_as_written(name):
    step, _c = run(conv(), photo(), text(name))
    assert step.state is State.AWAIT_LOCATION and step.data.draft.crop == name


@pytest.mark.parametrize("words", ["evet", "hayır", "devam", "123", "yapraklarda sarı lekeler var ne yapmalıyım"])
def test_what_is_not_a_crop_name_points_to_other_instead_of_looping(words):
    step, _c = run(conv(), photo(), text(words))
    assert step.state is State.AWAIT_CROP and step.data.draft.crop is None
    assert "'Diğer'" in sent(step)[0]


def test_small_talk_is_not_taken_as_the_crop_typed_after_other():
    step, _c = run(conv(), photo(), tap("crop:diger"), text("tamam"))
    assert step.state is State.AWAIT_CROP_TEXT and step.data.draft.crop is None
    named, _c = run(conv(), photo(), tap("crop:diger"), text("fasulye"))
    assert named.data.draft.crop == "fasulye"


# --- a place that is not one ------------------------------------------------------------------------------


@pytest.mark.parametrize("words", ["evet", "tamam", "hayır", "12", "ok 👍"])  # 👍 alone: a thank-you
def test_a_word_that_is_no_place_asks_for_the_place_again(words):
    step, _c = run(conv(), photo(caption="domates"), text(words))
    assert step.state is State.AWAIT_LOCATION and step.data.draft.location_text is None
    hint, _question = sent(step)
    assert "yer adı olarak anlayamadım" in hint and "Konum:" not in hint and "Geç" in str(step.actions)


@pytest.mark.parametrize("place", ["Konya Selçuklu", "Of, Trabzon", "Yeşilyurt köyü", "Ula"])
def test_a_plausible_place_is_still_taken(place):
    step, _c = run(conv(), photo(caption="domates"), text(place))
    assert step.state is State.CONFIRM and step.data.draft.location_text == place


# --- `devam` goes on ------------------------------------------------------------------------------------


def test_devam_at_the_confirmation_sends_and_at_the_place_skips():
    at_place, c = run(conv(), photo(caption="domates"), text("devam"))
    assert at_place.state is State.CONFIRM and at_place.data.draft.location_text is None
    assert "zaten alıyorsunuz" not in " ".join(sent(at_place))
    sends, _c = run(c, text("Devam"))
    assert any(isinstance(a, Submit) for a in sends.actions)


@pytest.mark.parametrize("state", [State.MENU, State.AWAIT_PHOTO])
def test_devam_elsewhere_asks_the_open_question_again_and_is_no_opt_in(state):
    step, _c = run(conv(state), text("devam"))
    said = " ".join(sent(step))
    assert "zaten alıyorsunuz" not in said and "anlayamadım" not in said and said
    assert not any(isinstance(a, SetOptOut) for a in step.actions)
    back, _c = run(replace(conv(state), opted_out=True), text("BAŞLA"))
    assert SetOptOut(False) in back.actions


# --- greetings and thanks --------------------------------------------------------------------------------


@pytest.mark.parametrize("hello", ["slm", "İyi günler", "Günaydın", "👋", "Merhaba", "selamün aleyküm"])
def test_a_greeting_is_a_hello_and_shows_the_menu(hello):
    step, _c = run(conv(), text(hello))
    assert step.state is State.MENU and "anlayamadım" not in " ".join(sent(step))


@pytest.mark.parametrize("thanks", ["teşekkürler", "Sağol", "çok teşekkür ederim", "🙏"])
def test_thanks_are_answered_kindly_with_the_open_question_again(thanks):
    step, _c = run(conv(), photo(caption="domates"), text(thanks))
    said = sent(step)
    assert "Rica ederim" in said[0] and "anlayamadım" not in " ".join(said)
    assert step.state is State.AWAIT_LOCATION and step.data.draft is not None and len(said) == 2
    assert step.data.draft.location_text is None  # nor taken as the place


def test_hello_in_the_middle_of_an_album_keeps_every_photo():
    album = [photo(mid) for mid in range(7, 12)]
    _step, c = run(conv(), *album)
    assert c.data.draft.photo_count == 5
    step, _c = run(c, text("Merhaba"))
    assert step.state is State.AWAIT_CROP and step.data.draft.photo_count == 5
    hello, question = sent(step)
    assert "Merhaba" in hello and "'iptal'" in hello and "Hangi ürün" in question


def test_the_menu_in_the_middle_of_a_submission_says_it_was_dropped():
    step, _c = run(conv(), photo(), text("menü"))
    assert step.state is State.MENU and step.data.draft is None
    assert "Yarım kalan gönderiminiz iptal edildi" in sent(step)[0]
    _confirmed, c = run(conv(), photo(caption="domates"), text("Geç"))
    kept, _c = run(c, text("menü"))  # confirmed: its `Gönder` keeps working, nothing was dropped
    assert "iptal edildi" not in " ".join(sent(kept)) and kept.data.pending_draft(7) is not None


# --- consent taken back ---------------------------------------------------------------------------------


@pytest.mark.parametrize("event", [tap("consent:no"), text("Kabul etmiyorum"), text("I do not accept")])
def test_refusing_consent_after_giving_it_withdraws_it(event):
    step, _c = run(conv(State.AWAIT_CROP), photo(), event)
    assert RecordConsent(False) in step.actions and SetOptOut(True) in step.actions
    assert step.state is State.START and step.data == ConversationData()
    [said] = sent(step)
    assert "geri aldınız" in said and "'verilerimi sil'" in said and "'merhaba'" in said


def test_a_second_accept_is_still_harmless():
    step, _c = run(conv(State.AWAIT_PHOTO), tap("consent:yes"))
    assert not any(isinstance(a, RecordConsent) for a in step.actions) and step.state is State.AWAIT_PHOTO


# --- a deletion request, in every state ------------------------------------------------------------


@pytest.mark.parametrize("state", [State.START, State.AWAIT_CONSENT])
def test_a_deletion_request_before_consent_is_recorded_and_forgets_what_was_kept(state):
    before, c = run(conv(state, consented=False), photo(), text("ne zaman cevap verirsiniz"))
    assert before.data.draft is not None and before.data.held_text
    step, _c = run(replace(c, state=state), text("Verilerimi silin lütfen"))
    assert RequestDeletion() in step.actions and step.state is state
    assert step.data == ConversationData()  # the photo and the question are not taken up after a later consent
    [said] = sent(step)
    assert "silinmesi talebiniz" in said


# --- through the webhook and the jobs ------------------------------------------------------------------


@pytest.fixture
def farmer(app, graph):
    return onboarded_farmer(app, graph)


def test_a_trial_farmer_without_a_code_is_not_told_the_code_was_not_found(farmer, app, session):
    use_today(app)
    [waits] = farmer.photo(media_id="555")
    assert "bekliyor" in waits and "'iptal'" in waits
    for words in ("kodum yok", "tamam", "ne yapayım"):
        [said] = farmer.says(words)
        assert "bulunamadı" not in said and "'iptal'" in said
    cancelled, _menu = farmer.says("iptal")
    assert "İptal edildi" in cancelled
    assert session.scalar(select(ConversationRow.state)) == "menu"


def _deletion_requested(session) -> bool:
    session.expire_all()
    return session.scalar(select(Farmer.deletion_requested_at)) is not None


def test_a_deletion_request_before_consent_is_recorded(app, graph, session):
    from tests.chat import Farmer as ChatFarmer

    farmer = ChatFarmer(app, graph)
    farmer.says("Merhaba")
    [said] = farmer.says("verilerimi silin")
    assert "silinmesi talebiniz" in said and _deletion_requested(session)


def test_a_deletion_request_after_refusing_consent_is_recorded(app, graph, session):
    from tests.chat import Farmer as ChatFarmer

    farmer = ChatFarmer(app, graph)
    farmer.says("Merhaba")
    farmer.taps("consent:no")
    [said] = farmer.says("verilerimi silin")
    assert "silinmesi talebiniz" in said and "KVKK" not in said and _deletion_requested(session)


def test_a_farmer_who_takes_consent_back_is_told_what_stops_and_how_to_delete(app, graph, session):
    farmer = onboarded_farmer(app, graph)
    farmer.says("analiz")
    [said] = farmer.taps("consent:no")  # the old notice's button
    assert "geri aldınız" in said and "'verilerimi sil'" in said
    session.expire_all()
    row = session.scalars(select(Farmer)).one()
    assert row.consent_at is None and row.opted_out_at is not None
    [deletion] = farmer.says("verilerimi silin")
    assert "silinmesi talebiniz" in deletion and _deletion_requested(session)
    [notice] = farmer.says("Merhaba")
    assert "KVKK" in notice


def test_devam_mid_flow_goes_on_instead_of_saying_messages_are_coming(farmer):
    farmer.photo("biber yaprakları")
    confirmation = " ".join(farmer.says("devam"))
    assert "zaten alıyorsunuz" not in confirmation and "Konum: belirtilmedi" in confirmation
    [queued] = farmer.says("devam")
    assert "sıraya alındı" in queued


def test_a_crop_outside_the_list_goes_on_to_the_place(farmer, session):
    farmer.photo()
    [place_question] = farmer.says("fasulye")
    assert "Tarla nerede" in place_question or "nerede" in place_question
    [confirmation] = farmer.taps("Geç")
    assert "fasulye" in confirmation


def test_a_greeting_at_the_place_question_is_not_stored_as_the_place(farmer, session):
    from models import Analysis

    farmer.photo("domates")
    hint, _question = farmer.says("evet")
    assert "anlayamadım" in hint
    farmer.says("Manisa Akhisar")
    farmer.taps("Gönder")
    assert session.scalar(select(Analysis.location_text)) == "Manisa Akhisar"


def test_hello_mid_submission_keeps_the_photos_through_the_webhook(farmer, session):
    farmer.photo(media_id="111")
    hello, _question = farmer.says("Selam")
    assert "devam edelim" in hello
    farmer.says("domates")
    farmer.taps("Geç")
    [queued] = farmer.taps("Gönder")
    assert "sıraya alındı" in queued
    [thanks] = farmer.says("teşekkürler")
    assert "Rica ederim" in thanks
