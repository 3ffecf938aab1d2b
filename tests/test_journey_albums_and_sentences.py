"""Albums are never lost or sent unseen, and a sentence is never taken for a name: a photo beyond a full album
keeps the album, a burst after `Fotoğraf ekle` gets one confirmation, a `Gönder` under an outdated confirmation
asks again, a second `Gönder` says where the analysis is; a sentence or a question is neither a crop nor a place;
a question written before consent becomes the note; `Detaylar` lists every immediate action."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from bot import machine, replies
from bot.draft import MAX_PHOTOS
from bot.types import ExplainNotPending, State, Submit
from models import Analysis
from services.analysis import result_view
from services.analysis_result import normalise
from tests.chat import onboarded_farmer
from tests.helpers import FIXTURES
from tests.journey import NOW, conv, photo, run, sent, tap, text


@pytest.fixture
def farmer(app, graph):
    return onboarded_farmer(app, graph)


# --- a photo beyond a full album ---------------------------------------------------------------------


def test_a_photo_beyond_a_full_album_at_the_place_question_keeps_the_album_and_its_crop():
    _step, c = run(conv(), *(photo(n, n - 7) for n in range(7, 12)), tap("crop:domates"))
    assert c.state is State.AWAIT_LOCATION and c.data.draft.photo_count == MAX_PHOTOS
    step, c = run(c, photo(20, 60))
    said = sent(step)
    assert "en fazla 5" in said[0] and "eklemedim" in said[0] and "Tarla nerede" in said[-1]
    assert c.state is State.AWAIT_LOCATION and c.data.draft.photo_message_id == 7
    assert c.data.draft.crop == "domates" and c.data.draft.photo_count == MAX_PHOTOS


def test_five_photos_kept_before_consent_stay_when_one_more_comes_after_it():
    _step, c = run(conv(State.START, consented=False, locale="en"), *(photo(n, n - 7) for n in range(7, 14)))
    _step, c = run(c, tap("consent:yes"))
    # The job records consent (`RecordConsent`): the next message comes from a consented farmer.
    _step, c = run(replace(c, consented=True), text("same plant"), photo(30, 120))
    assert c.data.draft.photo_message_id == 7 and c.data.draft.photo_count == MAX_PHOTOS
    confirmation, c = run(c, tap("crop:elma"), text("Skip"))
    assert "Photos: 5 photos" in sent(confirmation)[-1]


# --- a burst after `Fotoğraf ekle` -------------------------------------------------------------------


def confirmed_album_of_three():
    _step, c = run(conv(), photo(7, 0, caption="elma"), photo(8, 1), photo(9, 2), text("Geç"))
    assert c.state is State.CONFIRM and c.data.pending_draft(7).photo_count == 3
    return c


def test_a_burst_after_add_a_photo_gets_one_confirmation_and_the_limit_once():
    _step, c = run(confirmed_album_of_three(), tap("photo:add:7"))
    fourth, c = run(c, photo(10, 120))
    fifth, c = run(c, photo(11, 121))
    sixth, c = run(c, photo(12, 122))
    assert "4 fotoğraf" in sent(fourth)[0] and sent(fifth) == []
    assert "eklemedim" in sent(sixth)[0] and "5 fotoğraf" in sent(sixth)[-1]
    assert c.data.pending_draft(7).photo_count == MAX_PHOTOS and not c.data.draft.has_photo(12)


def test_send_under_a_confirmation_of_fewer_photos_asks_again_with_the_photos_there_are_now():
    _step, c = run(confirmed_album_of_three(), tap("photo:add:7"), photo(10, 120), photo(11, 121))
    stale, c = run(c, tap("submit:7:4"))
    assert not any(isinstance(a, Submit) for a in stale.actions)
    assert "artık 5 fotoğraf" in sent(stale)[0] and "5 fotoğraf" in sent(stale)[-1]
    send, _c = run(c, tap("submit:7:5"))
    [submit] = [a for a in send.actions if isinstance(a, Submit)]
    assert submit.media_ids == ("m7", "m8", "m9", "m10", "m11")


def test_add_a_photo_on_a_full_album_says_why_no_photo_can_join():
    _step, c = run(confirmed_album_of_three(), tap("photo:add:7"), photo(10, 120), photo(11, 121))
    step, c = run(c, tap("photo:add:7"))
    assert "en fazla 5" in sent(step)[0] and "5 fotoğraf" in sent(step)[-1] and c.state is State.CONFIRM


# --- a second `Gönder` ------------------------------------------------------------------------------


def test_a_button_of_a_submission_no_longer_waiting_is_explained_by_the_job():
    c = confirmed_album_of_three()
    _step, c = run(c, tap("submit:7:3"))
    for button in ("submit:7:3", "photo:add:7", "confirm:cancel:7"):
        assert machine.step(c, tap(button), NOW).actions == (ExplainNotPending(7),)


def test_cancel_under_a_confirmation_already_sent_says_it_is_being_analysed(farmer, session):
    farmer.photo("biber")
    farmer.taps("Geç")
    farmer.taps("Gönder")
    [again] = farmer.taps("İptal")
    assert "zaten gönderildi ve inceleniyor" in again
    assert session.scalar(select(Analysis.status)) == "queued"


def test_a_second_send_says_the_analysis_is_on_its_way_and_charges_once(farmer, session):
    farmer.photo("biber")
    farmer.taps("Geç")
    farmer.taps("Gönder")
    [again] = farmer.taps("Gönder")
    assert "zaten gönderildi ve inceleniyor" in again and "iptal" not in again
    assert session.scalar(select(func.count()).select_from(Analysis)) == 1


def test_send_of_a_cancelled_submission_says_it_was_not_sent(farmer, session):
    farmer.photo("biber")
    farmer.taps("Geç")
    farmer.taps("İptal")
    [again] = farmer.taps("Gönder")
    assert "hiç gönderilmedi" in again and "iptal edildi" in again and "inceleniyor" not in again
    assert session.scalar(select(func.count()).select_from(Analysis)) == 0


def test_a_sent_analysis_whose_result_came_says_so():
    assert "sonucu geldi" in replies.already_sent("tr", "completed").text
    assert "result has arrived" in replies.already_sent("en", "completed").text


# --- a sentence is not a crop, nor a place -------------------------------------------------------------


@pytest.mark.parametrize("said", ["bunlar aynı bitki", "same plant", "Konya", "yapraklar neden sarardı",
                                  "bu ne hastalığı?"])
def test_a_sentence_or_a_province_is_not_a_crop(said):
    step, c = run(conv(), photo(7), text(said))
    assert c.state is State.AWAIT_CROP and c.data.draft.crop is None
    assert "ürün adı olarak" in sent(step)[0] and "Hangi ürün" in sent(step)[-1]


@pytest.mark.parametrize("said", ["bunlar aynı bitki", "Konya"])
def test_a_sentence_or_a_province_is_not_a_crop_typed_after_other_either(said):
    step, c = run(conv(), photo(7), tap("crop:diger"), text(said))
    assert "ürünün adını" in sent(step)[0] and c.state is State.AWAIT_CROP_TEXT and c.data.draft.crop is None


def test_a_crop_named_after_its_province_is_still_a_crop():
    _step, c = run(conv(), photo(7), text("Antep fıstığı"))
    assert c.data.draft.crop == "Antep fıstığı"


@pytest.mark.parametrize("said", ["bunlar aynı bitki", "yapraklar neden sarardı", "why are the leaves yellow",
                                  "ne yapmalıyım", "hastalık mı bu"])
def test_a_sentence_or_a_question_is_not_a_place(said):
    step, c = run(conv(), photo(7, caption="domates"), text(said))
    assert c.state is State.AWAIT_LOCATION and c.data.draft.location_text is None
    assert "yer adı olarak" in sent(step)[0] and "Geç" in [b.title for b in step.actions[-1].reply.buttons]


@pytest.mark.parametrize("place", ["Konya Ereğli", "Merkez, Sakarya", "Çumra köyü", "İzmir Ödemiş Bademli",
                                   "Bademli", "Kuyucak", "Of, Trabzon", "Karacabey Ovası"])
def test_places_typed_freely_are_still_places(place):
    _step, c = run(conv(), photo(7, caption="domates"), text(place))
    assert c.state is State.CONFIRM and c.data.draft.location_text == place


# --- a question written before consent -----------------------------------------------------------------


def test_a_question_written_with_the_photo_before_consent_becomes_its_note():
    _step, c = run(conv(State.START, consented=False), photo(7), text("domatesimde lekeler var ne yapmalıyım"))
    step, c = run(c, tap("consent:yes"))
    assert c.data.draft.notes == "domatesimde lekeler var ne yapmalıyım" and c.data.draft.crop == "domates"
    assert c.state is State.AWAIT_LOCATION and "Tarla nerede" in sent(step)[-1]


# --- wording ------------------------------------------------------------------------------------------


def test_the_crop_question_gives_its_examples_in_the_readers_language():
    assert "hazelnut, apple" in replies.ask_crop("en").text and "fındık" not in replies.ask_crop("en").text
    assert "fındık, elma" in replies.ask_crop("tr").text


def test_one_photo_left_out_leaves_the_result_on_the_other_photo_in_the_singular():
    assert "diğer fotoğrafa göre" in replies.photos_left_out("tr", 1, 1).text
    assert "the other photo." in replies.photos_left_out("en", 1, 1).text
    assert "diğer 2 fotoğrafa göre" in replies.photos_left_out("tr", 1, 2).text


# --- every immediate action reaches the farmer ------------------------------------------------------


def test_details_list_every_immediate_action_even_beyond_the_first_three():
    result = json.loads((FIXTURES / "n8n" / "result_full_tr.json").read_text("utf-8"))
    result = copy.deepcopy(result)
    result["recommendations"]["immediate"] = [
        {"action": f"Adım {n}", "details": "", "timeline": "bugün", "priority": "yüksek"} for n in range(1, 6)]
    view = result_view(SimpleNamespace(id=7, crop="domates"), normalise(result), "tr")  # type: ignore[arg-type]
    summary = replies.analysis_result("tr", view).text
    details = "\n".join(r.text for r in replies.analysis_details("tr", view))
    assert "Adım 3" in summary and "Adım 4" not in summary
    assert all(f"Adım {n}" in details for n in range(1, 6))


def test_an_album_is_spoken_of_in_the_plural_in_the_chat():
    result = json.loads((FIXTURES / "n8n" / "result_full_tr.json").read_text("utf-8"))
    result["processing_metadata"]["source"] = "local-estimate"
    album = result_view(SimpleNamespace(id=7, crop="domates"), normalise(result), "tr", 3)  # type: ignore[arg-type]
    assert "Fotoğraflardaki renklerden" in replies.analysis_result("tr", album).text
    assert "Fotoğraflarınızda" in replies.analysis_photo_unusable("tr", 3).text
    assert "Fotoğraflarınızı okuyamadım" in replies.analysis_failed("tr", True, 3).text
    assert "your photos" in replies.analysis_gave_up_waiting("en", 3).text
    assert "Fotoğrafınızda" in replies.analysis_photo_unusable("tr").text
