"""The farmer's fifth pass: what an outside probe of the running service found. A language switch keeps the
submission; the welcome says a Trial started only when one did; a number, an emoji or a greeting is not a
crop or a place; `kod` in the middle of a submission has a way back; a code in the first refused photo's caption
is redeemed; and after a timeout the farmer hears one true sentence (send the photo again), on every tap. Pure
decisions first (bot/), then the same through signed webhooks and the real jobs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from bot import crops, intents, machine, replies
from bot.intents import Intent
from bot.types import Event, EventKind, RecordConsent, RedeemCode, SetLocale, State
from models import Analysis, Farmer, SponsorCode, utcnow
from models import Conversation as ConversationRow
from services import quota
from tests.chat import Farmer as ChatFarmer
from tests.chat import onboarded_farmer
from tests.journey import DAILY, NOW, conv, photo, run, sent, tap, text
from tests.test_journey_second_pass import new_code

LATER = NOW + timedelta(minutes=41)  # the conversation (10 minutes left at NOW) has timed out


def location(mid: int = 1) -> Event:
    return Event(EventKind.LOCATION, mid, latitude=37.5, longitude=34.0)


# --- a language switch in the middle of a submission ---------------------------------------------------


@pytest.mark.parametrize("switch", [[text("English")], [text("dil"), tap("lang:en")]])
def test_a_language_switch_at_the_location_question_keeps_the_photo_and_asks_again_in_english(switch):
    step, c = run(conv(), photo(caption="domates"), *switch)
    assert SetLocale("en") in step.actions
    assert c.state is State.AWAIT_LOCATION and c.data.draft is not None and c.data.draft.crop == "domates"
    assert sent(step)[-1] == replies.ask_location("en").text
    skipped, c = run(replace(c, locale="en"), tap("location:skip"))
    assert c.state is State.CONFIRM and "did not understand" not in " ".join(sent(skipped))


def test_a_language_switch_at_the_crop_question_asks_the_crop_again_in_the_new_language():
    step, c = run(conv(), photo(), text("dil"))
    assert c.state is State.AWAIT_CROP and c.data.draft is not None  # the language buttons, the question stays open
    step, c = run(c, tap("lang:en"))
    assert sent(step) == [replies.language_set("en").text, replies.ask_crop("en").text]
    assert c.state is State.AWAIT_CROP and c.data.draft is not None


def test_a_language_chosen_from_the_menu_still_ends_in_the_menu():
    step, c = run(conv(), text("dil"), tap("lang:en"))
    assert c.state is State.MENU and SetLocale("en") in step.actions


# --- the welcome says a Trial started only when one did --------------------------------------------------


def test_consent_that_starts_no_trial_does_not_say_a_trial_started():
    step, _c = run(replace(conv(State.START, consented=False), new_trial=False), text("merhaba"), tap("consent:yes"))
    assert RecordConsent(True) in step.actions
    said = " ".join(sent(step))
    assert "deneme" not in said.lower() and "Teşekkürler" in said
    first, _c = run(conv(State.START, consented=False), text("merhaba"), tap("consent:yes"))
    assert "Ücretsiz deneme paketiniz başladı" in sent(first)[0]


@pytest.fixture
def farmer(app, graph):
    return onboarded_farmer(app, graph)


def test_accepting_again_with_a_sponsored_package_does_not_say_a_trial_started(farmer, app):
    farmer.says(new_code(app))
    farmer.says("onayımı geri alıyorum")
    farmer.says("merhaba")
    said = " ".join(farmer.taps("Kabul ediyorum"))
    assert "deneme" not in said.lower() and "Teşekkürler" in said


def test_accepting_again_with_the_trial_half_used_does_not_say_it_started(farmer, app):
    with app.extensions["db"].session() as db, db.begin():
        assert quota.charge(db, db.scalar(select(Farmer.id)), utcnow()).ok
    farmer.says("onayımı geri alıyorum")
    farmer.says("merhaba")
    said = " ".join(farmer.taps("Kabul ediyorum"))
    assert "başladı" not in said and "Teşekkürler" in said


def test_a_typed_yes_with_a_sponsored_package_does_not_say_a_trial_started_either(farmer, app):
    farmer.says(new_code(app))
    farmer.says("onayımı geri alıyorum")
    farmer.says("merhaba")
    said = " ".join(farmer.says("evet"))
    assert "deneme" not in said.lower() and "Teşekkürler" in said


def test_whether_a_trial_would_start_is_read_only_for_a_yes_to_the_privacy_question(app, graph, monkeypatch):
    asked: list[int] = []
    real = quota.trial_would_start

    def counting(session, farmer_id, now):
        asked.append(farmer_id)
        return real(session, farmer_id, now)

    monkeypatch.setattr(quota, "trial_would_start", counting)
    with app.extensions["db"].session() as db, db.begin():
        quota.seed_tiers(db)
    farmer = ChatFarmer(app, graph, "905551112233")
    farmer.says("merhaba")
    farmer.says("bu ne işe yarıyor")
    assert asked == []
    assert "Ücretsiz deneme paketiniz başladı" in " ".join(farmer.taps("Kabul ediyorum"))
    assert len(asked) == 1


# --- a number or an emoji after `Diğer` ---------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["12", "👍", "?!", "1.5"])
def test_a_number_or_an_emoji_after_other_is_not_taken_as_the_crop(typed):
    step, c = run(conv(), photo(), tap("crop:diger"), text(typed))
    assert c.state is State.AWAIT_CROP_TEXT and c.data.draft.crop is None
    assert "Ürün:" not in " ".join(sent(step))


def test_a_crop_emoji_names_its_crop():
    assert crops.find_crop("🍅") == "domates" and crops.find_crop("🌶️ yapraklar") == "biber"
    _step, c = run(conv(), photo(), tap("crop:diger"), text("🍅"))
    assert c.state is State.AWAIT_LOCATION and c.data.draft.crop == "domates"
    _step, c = run(conv(), photo(), text("🍆"))
    assert c.data.draft.crop == "patlican"


def test_a_crop_name_after_other_is_still_taken_as_written():
    _step, c = run(conv(), photo(), tap("crop:diger"), text("şeker pancarı"))
    assert c.state is State.AWAIT_LOCATION and c.data.draft.crop == "şeker pancarı"


# --- greetings and thanks are never a crop or a place -------------------------------------------------------


@pytest.mark.parametrize("words,intent", [
    ("kolay gelsin", Intent.GREETING), ("hayırlı günler", Intent.GREETING), ("iyi geceler", Intent.GREETING),
    ("merhaba nasılsınız", Intent.GREETING), ("Selam, nasılsın?", Intent.GREETING),
    ("saol", Intent.THANKS), ("tşkler", Intent.THANKS), ("👍", Intent.THANKS), ("👍🏽", Intent.THANKS),
])
def test_common_greetings_and_thanks_are_understood(words, intent):
    assert intents.match(words) is intent and intents.is_small_talk(words)


@pytest.mark.parametrize("words", ["kolay gelsin", "saol", "👍", "merhaba nasılsınız", "tşkler"])
def test_a_greeting_or_thanks_at_a_question_is_not_the_crop_or_the_place(words):
    for asked in ([photo()], [photo(), tap("crop:diger")], [photo(caption="domates")]):
        step, c = run(conv(), *asked)
        state = c.state
        step, c = run(c, text(words))
        assert c.state is state and c.data.draft.location_text is None
        assert c.data.draft.crop in (None, "domates")
        assert sent(step)[-1] == replies.reprompt(state, "tr", c.data)[-1].text


# --- `kod` in the middle of a submission, with analyses left --------------------------------------------


@pytest.mark.parametrize("words", ["yok", "devam", "Geç", "kodum yok"])
def test_after_kod_mid_submission_words_without_a_code_go_back_to_the_question(words):
    step, c = run(conv(), photo(caption="biber yaprağı"), text("kod"), text(words))
    assert not any(isinstance(a, RedeemCode) for a in step.actions)
    if words == "kodum yok":  # not a "go on": the hint names the way back, the photo still kept
        [said] = sent(step)
        assert "'devam'" in said and "analiz hakkınız olduğunda" not in said
        step, c = run(c, text("devam"))
    assert c.state is State.AWAIT_LOCATION and c.data.draft.crop == "biber"
    assert sent(step)[-1] == replies.ask_location("tr").text


def test_the_skip_button_after_kod_mid_submission_goes_back_to_the_question():
    step, c = run(conv(), photo(caption="biber"), text("kod"), tap("location:skip"))
    assert c.state is State.AWAIT_LOCATION and c.data.draft is not None
    assert "anlayamadım" not in " ".join(sent(step))


def test_a_photo_waiting_for_a_code_without_analyses_left_still_waits_after_devam():
    step, c = run(conv(), photo(quota=DAILY), text("devam", quota=DAILY))
    assert c.state is State.AWAIT_CODE and c.data.draft is not None and "'iptal'" in sent(step)[0]


def test_kod_mid_submission_through_the_webhook_goes_back_with_the_photo(farmer, session):
    farmer.photo("biber yaprağı")
    farmer.says("kod")
    said = farmer.says("yok")
    assert said[-1].startswith(replies.ask_location("tr").text.split("?")[0])
    farmer.taps("Geç")
    farmer.taps("Gönder")
    assert session.scalar(select(Analysis.crop)) == "biber"


# --- a code in the caption of the first refused photo ---------------------------------------------------


@pytest.mark.parametrize("caption", ["AGRI-U664-BWZ5 biber", "kodum AGRI-VCYB-4A57"])
def test_a_code_in_the_caption_of_a_refused_photo_is_redeemed(caption):
    step, c = run(conv(), photo(caption=caption, quota=DAILY))
    assert RedeemCode(caption) in step.actions and c.state is State.AWAIT_CODE
    assert "AGRI" not in (c.data.draft.notes or "")
    assert c.data.draft.crop == ("biber" if "biber" in caption else None)


def test_a_code_in_the_first_refused_photos_caption_through_the_webhook(farmer, app, session):
    with app.extensions["db"].session() as db, db.begin():
        assert quota.charge(db, db.scalar(select(Farmer.id)), utcnow()).ok
    code = new_code(app)
    said = farmer.photo(f"{code} biber")
    assert said[0].startswith("Kod kabul edildi") and said[-1].startswith(replies.ask_location("tr").text)
    assert session.scalar(select(SponsorCode.status).where(SponsorCode.code == code)) == "redeemed"
    farmer.taps("Geç")
    farmer.taps("Gönder")
    assert session.scalar(select(Analysis.crop)) == "biber"


# --- after a timeout: one true sentence ---------------------------------------------------------------------


def test_a_code_redeemed_after_the_waiting_photo_timed_out_says_to_send_the_photo_again():
    _step, c = run(conv(), photo(quota=DAILY))
    step = machine.step(c, text("AGRI-7KQ3-M9XP"), LATER)
    assert RedeemCode("AGRI-7KQ3-M9XP") in step.actions
    assert "yeniden gönderin" in sent(step)[0]


@pytest.mark.parametrize("answer", [text("Konya Ereğli"), tap("location:skip"), tap("crop:domates"), location()])
def test_an_answer_after_the_timeout_hears_one_true_sentence_and_the_menu(answer):
    _step, c = run(conv(), photo(caption="domates"))
    step = machine.step(c, answer, LATER)
    said = sent(step)
    assert len(said) == 2 and said[1] == replies.menu("tr").text
    assert "kapandı" in said[0] and "yeniden gönderin" in said[0] and "anlayamadım" not in said[0]
    assert step.state is State.MENU and step.data.draft is None


@pytest.mark.parametrize("old", [tap("location:skip"), tap("crop:domates"), location()])
def test_our_own_old_buttons_after_the_submission_ended_are_not_called_not_understood(old):
    _step, c = run(conv(), photo(caption="domates"), text("iptal"))
    step, c = run(c, old)
    said = sent(step)
    assert "anlayamadım" not in " ".join(said) and said[-1] == replies.menu("tr").text
    assert "fotoğraf" in said[0]


def test_every_tap_on_a_timed_out_confirmation_says_it_timed_out():
    _confirmed, c = run(conv(), photo(caption="domates"), tap("location:skip"))
    step = machine.step(c, tap("submit:7"), LATER)
    c = replace(c, state=step.state, data=step.data, expires_at=LATER + timedelta(minutes=30))
    for button in ("submit:7", "photo:add:7", "confirm:cancel:7"):
        step, c = run(c, tap(button), now=LATER)
        [said] = sent(step)
        assert "zaman aşımına uğradı" in said and "zaten gönderildi" not in said


def _time_out(app) -> None:
    with app.extensions["db"].session() as db, db.begin():
        db.execute(update(ConversationRow).values(expires_at=utcnow() - timedelta(minutes=1)))


def test_a_timed_out_confirmation_tapped_twice_through_the_webhook(farmer, app, session):
    farmer.photo("domates")
    farmer.taps("Geç")
    _time_out(app)
    [first] = farmer.taps("Gönder")
    [second] = farmer.taps("Gönder")
    assert "zaman aşımına uğradı" in first and "zaman aşımına uğradı" in second
    assert "zaten gönderildi" not in second and session.scalar(select(Analysis.id)) is None


def test_a_code_after_the_waiting_photo_timed_out_through_the_webhook(farmer, app):
    with app.extensions["db"].session() as db, db.begin():
        assert quota.charge(db, db.scalar(select(Farmer.id)), utcnow()).ok
    farmer.photo()
    _time_out(app)
    said = farmer.says(new_code(app))
    assert "yeniden gönderin" in said[0] and said[1].startswith("Kod kabul edildi")


def test_an_answer_after_the_timeout_through_the_webhook_gets_one_sentence(farmer, app):
    farmer.photo("domates")
    _time_out(app)
    said = farmer.says("Konya Ereğli")
    assert len(said) == 2 and "kapandı" in said[0] and "anlayamadım" not in " ".join(said)
