"""The farmer's sixth pass: what an outside probe of the running service found. A greeting or thanks with words of
address (`kolay gelsin usta`, `merhaba hocam`, `hi there`) is a hello or a thank-you, never a crop or a place; a
province with its district is a place, not a crop; an album is spoken of in the plural in every sentence about
it; a code in any photo's caption is redeemed; and after `Fotoğraf ekle` a `tamam` sends nothing. Pure decisions
first (bot/), then the same through signed webhooks and the real jobs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot import crops, intents, machine, replies
from bot.intents import Intent
from bot.types import RedeemCode, State, Submit
from models import Analysis, Farmer, SponsorCode, utcnow
from services import quota
from tests.chat import Farmer as ChatFarmer
from tests.chat import onboarded_farmer
from tests.journey import DAILY, NOW, conv, photo, run, sent, tap, text
from tests.test_journey_second_pass import new_code, use_today

LATER = NOW + timedelta(minutes=41)  # the conversation (10 minutes left at NOW) has timed out


@pytest.fixture
def farmer(app, graph):
    return onboarded_farmer(app, graph)


def submitted(step) -> bool:
    return any(isinstance(a, Submit) for a in step.actions)


# --- greetings and thanks with words of address --------------------------------------------------------------


@pytest.mark.parametrize("words,intent", [
    ("kolay gelsin usta", Intent.GREETING), ("kolay gelsin abi", Intent.GREETING), ("hayırlı işler", Intent.GREETING),
    ("iyi çalışmalar", Intent.GREETING), ("bereket versin", Intent.GREETING), ("merhaba hocam", Intent.GREETING),
    ("Merhaba hocam, nasılsınız?", Intent.GREETING), ("hayırlı işler abi kolay gelsin 👋", Intent.GREETING),
    ("hi there", Intent.GREETING), ("selam arkadaşlar!", Intent.GREETING),
    ("çok sağ olun", Intent.THANKS), ("sağ olun hocam 🙏", Intent.THANKS), ("thank you so much", Intent.THANKS),
    ("thanks so much guys", Intent.THANKS), ("cheers", Intent.THANKS), ("many thanks", Intent.THANKS),
    ("teşekkürler kardeşim, iyi günler", Intent.THANKS),
])
def test_a_greeting_or_thanks_with_words_of_address_is_understood(words, intent):
    assert intents.match(words) is intent and intents.is_small_talk(words)


def test_a_message_as_long_as_whatsapp_allows_made_of_greetings_is_read_without_error():
    """4,096 characters of `hi`: the phrases are read one position at a time, never one call deep per word."""
    assert intents.match(" ".join(["hi"] * 2048)) is Intent.GREETING
    assert intents.match(" ".join(["thank you so much"] * 240) + " domates") is None


@pytest.mark.parametrize("words", ["merhaba domates", "usta domates", "Konya Selçuklu", "hayırlı olsun bahçe"])
def test_words_of_address_make_no_greeting_of_other_words(words):
    assert intents.match(words) is None


@pytest.mark.parametrize("words", ["kolay gelsin usta", "hayırlı işler", "iyi çalışmalar", "bereket versin",
                                   "kolay gelsin abi", "merhaba hocam", "hi there", "thank you so much", "cheers",
                                   "çok sağ olun"])
def test_a_greeting_or_thanks_at_a_question_is_neither_the_crop_nor_the_place(words):
    for asked in ([photo()], [photo(), tap("crop:diger")], [photo(caption="domates")]):
        _step, c = run(conv(), *asked)
        state = c.state
        step, c = run(c, text(words))
        assert c.state is state and c.data.draft.location_text is None
        assert c.data.draft.crop in (None, "domates")
        said = sent(step)
        assert said[0] in (replies.hello_mid_submission("tr").text, replies.you_are_welcome("tr").text)
        assert said[-1] == replies.reprompt(state, "tr", c.data)[-1].text


def test_greetings_at_both_questions_through_the_webhook_never_reach_the_confirmation(farmer):
    farmer.photo()
    said = farmer.says("kolay gelsin usta")
    assert said[0].startswith("Merhaba") and "Hangi ürün" in said[-1]
    farmer.taps("Domates")
    said = farmer.says("hayırlı işler")
    assert said[0].startswith("Merhaba") and "Tarla nerede" in said[-1]
    assert not any("Ürün:" in s for s in said)


# --- a province with its district is a place, not a crop ---------------------------------------------------------


@pytest.mark.parametrize("said", ["Konya Selçuklu", "İzmir Bornova", "Selçuklu Konya"])
def test_a_province_with_its_district_is_not_a_crop(said):
    assert crops.never_a_name(said) and not crops.looks_like_name(said)
    step, c = run(conv(), photo(7), text(said))
    assert c.state is State.AWAIT_CROP and c.data.draft.crop is None
    step, c = run(conv(), photo(7), tap("crop:diger"), text(said))
    assert c.state is State.AWAIT_CROP_TEXT and c.data.draft.crop is None and "Ürün:" not in " ".join(sent(step))


@pytest.mark.parametrize("said,crop", [("Antep fıstığı", "Antep fıstığı"), ("Malatya kayısısı", "Malatya kayısısı"),
                                       ("Rize çayı", "Rize çayı"), ("Amasya elması", "elma")])
def test_a_crop_named_after_its_province_is_still_a_crop(said, crop):
    _step, c = run(conv(), photo(7), text(said))
    assert c.state is State.AWAIT_LOCATION and c.data.draft.crop == crop
    _step, c = run(conv(), photo(7), tap("crop:diger"), text(said))
    assert c.data.draft.crop == crop


def test_the_bots_own_place_example_is_still_a_place():
    _step, c = run(conv(), photo(7, caption="domates"), text("Konya Selçuklu"))
    assert c.state is State.CONFIRM and c.data.draft.location_text == "Konya Selçuklu"


# --- an album is spoken of in the plural --------------------------------------------------------------------------


def album_of_three(caption: str = "elma"):
    _step, c = run(conv(), photo(7, 0, caption=caption), photo(8, 1), photo(9, 2), text("Geç"))
    assert c.state is State.CONFIRM and c.data.pending_draft(7).photo_count == 3
    return c


def test_words_at_an_albums_confirmation_hear_of_the_photos():
    step, _c = run(album_of_three(), text("tamam mı"))
    assert sent(step) == ["Fotoğrafları analize göndermek için 'Gönder'e, vazgeçmek için 'İptal'e dokunun."]
    step, _c = run(conv(), photo(7, caption="elma"), text("Geç"), text("tamam mı"))
    assert sent(step)[0].startswith("Fotoğrafı analize")


def test_an_albums_confirmation_tapped_after_the_timeout_says_to_send_the_photos_again():
    c = album_of_three()
    step = machine.step(c, tap("submit:7:3"), LATER)
    assert "fotoğrafları yeniden gönderin" in sent(step)[0]
    step = machine.step(c, text("Konya Ereğli"), LATER)
    assert "fotoğrafları yeniden gönderin" in sent(step)[0]
    single = machine.step(run(conv(), photo(7, caption="elma"), text("Geç"))[1], tap("submit:7:1"), LATER)
    assert "fotoğrafı yeniden gönderin" in sent(single)[0]


def test_an_album_waiting_for_a_code_hears_of_its_photos():
    c = album_of_three()
    refused = machine.charge_refused(c, c.data.pending_draft(7), DAILY)
    assert "Fotoğraflarınız bekliyor" in sent(refused)[0] and "fotoğrafları yeniden" in sent(refused)[0]
    waiting = replace(c, state=refused.state, data=refused.data)
    assert waiting.state is State.AWAIT_CODE
    step, _c = run(waiting, text("kodum yok", quota=DAILY))
    assert "fotoğrafları yeniden" in sent(step)[0]
    step, _c = run(waiting, text("kodum yok"))
    assert "fotoğraflarınızla devam" in sent(step)[0]


def test_an_album_refused_at_send_through_the_webhook_is_spoken_of_in_the_plural(farmer, app):
    farmer.deliver(*(farmer.message("image", {"mime_type": "image/jpeg", "sha256": "ab" * 32, "id": f"10{n}"})
                     for n in range(3)))
    farmer.taps("Domates")
    confirmation = farmer.taps("Geç")
    assert "3 fotoğraf" in confirmation[-1]
    use_today(app)
    said = farmer.taps("Gönder")
    assert "Fotoğraflarınız bekliyor" in said[0] and "fotoğrafı" not in said[0]


# --- a code in any photo's caption ----------------------------------------------------------------------------------


@pytest.mark.parametrize("caption,note,crop", [("domates AGRI-EH59-BZB5", "domates", "domates"),
                                               ("AGRI-EH59-BZB5", None, None)])
def test_a_code_in_the_caption_of_a_photo_with_analyses_left_is_redeemed(caption, note, crop):
    step, c = run(conv(), photo(caption=caption))
    assert RedeemCode(caption) in step.actions and c.state is State.AWAIT_CODE
    assert c.data.draft.notes == note and c.data.draft.crop == crop


@pytest.mark.parametrize("state_of", [lambda: [photo(7)], lambda: [photo(7, caption="biber")]])
def test_a_code_in_an_album_photos_caption_is_redeemed_and_the_photo_joins(state_of):
    _step, c = run(conv(), *state_of())
    state = c.state
    step, c = run(c, photo(8, 60, caption="AGRI-EH59-BZB5 aynı yaprak"))
    assert RedeemCode("AGRI-EH59-BZB5 aynı yaprak") in step.actions and c.state is state
    assert c.data.draft.photo_count == 2 and "AGRI" not in (c.data.draft.notes or "")


def test_a_code_in_the_caption_of_the_photo_after_add_a_photo_leads_to_the_confirmation():
    step, c = run(album_of_three(), tap("photo:add:7"), photo(20, 300, caption="AGRI-EH59-BZB5"))
    assert RedeemCode("AGRI-EH59-BZB5") in step.actions
    assert c.state is State.CONFIRM and c.data.pending_draft(7).photo_count == 4
    assert "AGRI" not in (c.data.pending_draft(7).notes or "")


def test_a_code_in_a_caption_before_consent_is_redeemed_once_consent_is_given():
    _step, c = run(conv(State.START, consented=False), photo(7, caption="domates AGRI-EH59-BZB5"), photo(8, 1))
    step, c = run(c, tap("consent:yes"))
    assert RedeemCode("domates AGRI-EH59-BZB5") in step.actions and c.state is State.AWAIT_CODE
    assert c.data.draft.notes == "domates" and c.data.draft.photo_count == 2
    assert machine.after_redeem(c, None).state is State.AWAIT_LOCATION


def test_a_code_in_a_caption_before_consent_through_the_webhook(app, graph, session):
    with app.extensions["db"].session() as db, db.begin():
        quota.seed_tiers(db)
    code = new_code(app)
    farmer = ChatFarmer(app, graph)
    farmer.photo(f"biber {code}")
    said = farmer.taps("consent:yes")
    assert any(s.startswith("Kod kabul edildi") for s in said) and said[-1].startswith(replies.ask_location("tr").text)
    assert session.scalar(select(SponsorCode.status).where(SponsorCode.code == code)) == "redeemed"


def test_a_code_in_a_caption_with_an_analysis_left_through_the_webhook(farmer, session):
    code = new_code(farmer.app)
    said = farmer.photo(f"domates {code}")
    assert said[0].startswith("Kod kabul edildi") and said[-1].startswith(replies.ask_location("tr").text)
    assert session.scalar(select(SponsorCode.status).where(SponsorCode.code == code)) == "redeemed"
    confirmation = farmer.taps("Geç")
    assert "Notunuz: domates" in confirmation[-1] and "AGRI" not in confirmation[-1]
    farmer.taps("Gönder")
    assert session.execute(select(Analysis.crop, Analysis.notes)).one() == ("domates", "domates")


def test_an_unknown_code_in_a_caption_with_an_analysis_left_still_goes_on_with_the_photo(farmer, session):
    said = farmer.photo("AGRI-2222-3333")
    assert "bulunamadı" in said[0] and "Hangi ürün" in said[-1]
    farmer.taps("Domates")
    farmer.taps("Geç")
    farmer.taps("Gönder")
    assert session.scalar(select(Analysis.notes)) is None


# --- after `Fotoğraf ekle`, words send nothing -----------------------------------------------------------------------


@pytest.mark.parametrize("words", ["tamam", "evet", "ok", "Tamam 👍🏻", "devam"])
def test_a_yes_after_add_a_photo_sends_nothing_and_says_how_to_go_on(words):
    step, c = run(album_of_three(), tap("photo:add:7"), text(words))
    assert not submitted(step) and c.state is State.AWAIT_MORE_PHOTO and c.data.pending_draft(7) is not None
    [hint] = [a.reply for a in step.actions]
    assert "Fotoğrafı şimdi gönderin" in hint.text and "3 fotoğrafı" in hint.text
    assert [b.title for b in hint.buttons] == ["Gönder", "Fotoğraf ekle", "İptal"]


@pytest.mark.parametrize("words", ["hayır", "yok", "vazgeçtim ekleme", "bu kadar", "no more"])
def test_a_no_after_add_a_photo_brings_the_confirmation_again_and_cancels_nothing(words):
    step, c = run(album_of_three(), tap("photo:add:7"), text(words))
    assert not submitted(step) and c.state is State.CONFIRM and c.data.pending_draft(7) is not None
    assert sent(step) == [replies.confirm("tr", c.data.pending_draft(7)).text]


def test_cancel_or_the_send_word_after_add_a_photo_still_work():
    step, c = run(album_of_three(), tap("photo:add:7"), text("iptal"))
    assert c.state is State.MENU and c.data.pending_draft(7) is None and "İptal edildi" in sent(step)[0]
    step, _c = run(album_of_three(), tap("photo:add:7"), text("gönder"))
    assert submitted(step)


def test_a_yes_at_the_confirmation_itself_still_sends_as_documented():
    step, _c = run(album_of_three(), text("evet"))
    assert submitted(step)


def test_tamam_after_add_a_photo_through_the_webhook_charges_nothing(farmer, app, session):
    farmer.photo("domates")
    farmer.taps("Geç")
    farmer.taps("Fotoğraf ekle")
    said = farmer.says("tamam")
    assert "Fotoğrafı şimdi gönderin" in said[0]
    assert session.scalar(select(Analysis.id)) is None
    with app.extensions["db"].session() as db:
        status = quota.quota_status(db, db.scalar(select(Farmer.id)), utcnow())
        assert status is not None and status.daily_used == 0
    farmer.says("hayır")
    farmer.taps("Gönder")
    assert session.scalar(select(Analysis.crop)) == "domates"

