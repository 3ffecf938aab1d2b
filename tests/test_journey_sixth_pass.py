"""The farmer's sixth pass: what an outside probe of the running service found. A greeting or thanks with words of
address (`kolay gelsin usta`, `merhaba hocam`, `hi there`) is a hello or a thank-you, never a crop or a place; a
province with its district is a place, not a crop. Pure decisions first (bot/), then the same through signed
webhooks and the real jobs."""

from __future__ import annotations

import pytest

from bot import crops, intents, replies
from bot.intents import Intent
from bot.types import State
from tests.chat import onboarded_farmer
from tests.journey import conv, photo, run, sent, tap, text


@pytest.fixture
def farmer(app, graph):
    return onboarded_farmer(app, graph)


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
