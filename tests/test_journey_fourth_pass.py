"""The farmer's fourth pass: sentences that must be true. A code that cannot wait for the package already
waiting is not promised to stay valid; a confirmation that expired unsent says so (not "already sent"); a code
in a photo's caption is redeemed while the photo waits for one; and smaller wording. Pure decisions first
(bot/), then the same through signed webhooks and the real jobs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from bot import codes, machine, replies
from bot.draft import ConversationData
from bot.types import Event, EventKind, RedeemCode, Send, SetLocale, State
from models import Analysis, Farmer, SponsorCode, utcnow
from models import Conversation as ConversationRow
from services import quota, sponsorship
from tests.chat import onboarded_farmer
from tests.journey import DAILY, NOW, conv, photo, run, sent, tap, text


@pytest.fixture
def farmer(app, graph):
    return onboarded_farmer(app, graph)


def new_codes(app, tier: str = "S", quantity: int = 1, valid_days: int = 90, days: int = 30) -> list[str]:
    with app.extensions["db"].session() as s, s.begin():
        sponsor = sponsorship.create_sponsor(s, name="Tarım A.Ş.")
        _purchase, created = sponsorship.create_purchase(s, sponsor.id, tier, quantity, valid_days, days, utcnow())
    return created


# --- a code that cannot wait for the package already waiting -----------------------------------------


def test_a_code_that_expires_before_the_waiting_package_starts_is_not_promised_to_stay_valid():
    view = replies.RedeemView("not_now", starts_at=datetime(2026, 12, 17, 9, 0, tzinfo=UTC),
                              code_expires_at=datetime(2026, 12, 8, 9, 0, tzinfo=UTC))
    said = replies.redeem("tr", view).text
    assert "geçerli kalır" not in said and "17 Aralık 2026" in said and "8 Aralık 2026" in said
    assert "süresi dolmadan kullanamazsınız" in said and "sponsor" in said
    english = replies.redeem("en", view).text
    assert "December 8, 2026" in english and "cannot use this code before it expires" in english


def test_a_code_valid_beyond_the_waiting_package_start_says_until_when():
    view = replies.RedeemView("not_now", starts_at=datetime(2026, 12, 17, 9, 0, tzinfo=UTC),
                              code_expires_at=datetime(2027, 2, 1, 9, 0, tzinfo=UTC))
    said = replies.redeem("tr", view).text
    assert "17 Aralık 2026" in said and "1 Şubat 2027 tarihine kadar geçerli" in said
    assert "kullanamazsınız" not in said


def test_the_not_now_answer_through_the_webhook_tells_the_truth_about_the_code(farmer, app, session):
    first, second = new_codes(app, quantity=2, days=30)
    farmer.says(first)
    farmer.says(second)  # queued: starts in 30 days
    [short_lived] = new_codes(app, valid_days=10)
    [said] = farmer.says(short_lived)
    assert "geçerli kalır" not in said and "süresi dolmadan kullanamazsınız" in said
    [long_lived] = new_codes(app, valid_days=90)
    [said] = farmer.says(long_lived)
    assert "tarihine kadar geçerli" in said and "kullanamazsınız" not in said
    assert session.scalar(select(SponsorCode.status).where(SponsorCode.code == long_lived)) == "unused"


# --- a confirmation that timed out unsent -------------------------------------------------------------


@pytest.mark.parametrize("button", ["submit:7", "photo:add:7", "confirm:cancel:7"])
def test_a_confirmation_tapped_after_it_timed_out_says_that_it_expired_unsent(button):
    _confirmed, c = run(conv(), photo(caption="domates"), tap("location:skip"))
    assert c.state is State.CONFIRM and c.data.pending_draft(7) is not None
    step = machine.step(c, tap(button), NOW + timedelta(minutes=41))
    [said] = sent(step)
    assert "zaman aşımına uğradı" in said and "düşülmedi" in said and "yeniden gönderin" in said
    assert "zaten gönderildi" not in said and not any(not isinstance(a, Send) for a in step.actions)
    assert step.state is State.MENU and step.data == ConversationData(lapsed=(7,))


def test_a_confirmation_sent_before_the_timeout_is_not_called_expired():
    _sent, c = run(conv(), photo(caption="domates"), tap("location:skip"), tap("submit:7"))
    step = machine.step(c, tap("submit:7"), NOW + timedelta(minutes=41))
    assert "zaman aşımına uğradı" not in " ".join(sent(step))


def _time_out(app) -> None:
    with app.extensions["db"].session() as db, db.begin():
        db.execute(update(ConversationRow).values(expires_at=utcnow() - timedelta(minutes=1)))


@pytest.mark.parametrize("button", ["Gönder", "Fotoğraf ekle"])
def test_an_expired_confirmation_tapped_through_the_webhook_is_said_to_have_expired(farmer, app, session, button):
    from models import Analysis

    farmer.photo("domates")
    farmer.taps("Geç")
    _time_out(app)
    [said] = farmer.taps(button)
    assert "zaman aşımına uğradı" in said and "zaten gönderildi" not in said and "kapandı" not in said
    assert session.scalar(select(Analysis.id)) is None


# --- a code in a photo's caption while the photo waits for one ----------------------------------------


def test_a_code_in_a_later_photos_caption_is_redeemed_while_the_photo_waits_for_a_code():
    step, _c = run(conv(), photo(quota=DAILY), photo(8, caption="kodum AGRI-UFF2-M5GV domates"))
    assert RedeemCode("kodum AGRI-UFF2-M5GV domates") in step.actions
    assert step.state is State.AWAIT_CODE and step.data.draft.photo_count == 2
    assert step.data.draft.crop == "domates" and "AGRI" not in (step.data.draft.notes or "")
    assert "Fotoğraf eklendi" not in " ".join(sent(step))


def test_a_caption_without_a_code_still_just_joins_the_waiting_photo():
    step, _c = run(conv(), photo(quota=DAILY), photo(8, caption="yapraklar sararıyor"))
    assert not any(isinstance(a, RedeemCode) for a in step.actions) and step.data.draft.photo_count == 2


@pytest.mark.parametrize("caption,left", [("kodum agri uff2 m5gv domates", "kodum domates"),
                                          ("AGRİ-UFF2-M5GV", ""), ("UFF2M5GV", ""), ("domates", "domates")])
def test_the_code_is_taken_out_of_the_caption_and_the_rest_kept(caption, left):
    assert codes.without_code(caption) == left


def test_a_code_in_a_caption_through_the_webhook_lets_the_waiting_photo_go_on(farmer, app, session):
    with app.extensions["db"].session() as db, db.begin():
        assert quota.charge(db, db.scalar(select(Farmer.id)), utcnow()).ok
    [waits] = farmer.photo(media_id="555")
    assert "bekliyor" in waits
    [code] = new_codes(app)
    said = farmer.photo(f"kodum {code} domates", media_id="556")
    assert any("Kod kabul edildi" in s for s in said) and not any("Fotoğraf eklendi" in s for s in said)
    assert "Tarla nerede" in said[-1]
    farmer.taps("Geç")
    farmer.taps("Gönder")
    analysis = session.scalar(select(Analysis))
    assert analysis.media_ids == ["555", "556"] and analysis.crop == "domates" and "AGRI" not in (analysis.notes or "")


# --- smaller wording --------------------------------------------------------------------------------------


@pytest.mark.parametrize("typed,code", [("English", "en"), ("İngilizce", "en"), ("Türkçe", "tr"), ("turkish", "tr")])
def test_typing_a_languages_name_switches_to_it_at_once(typed, code):
    step, _c = run(conv(locale="en" if code == "tr" else "tr"), text(typed))
    assert SetLocale(code) in step.actions and step.state is State.MENU
    assert "Dil seçin / Choose your language" not in " ".join(sent(step))
    before, _c = run(conv(State.AWAIT_CONSENT, consented=False), text(typed))
    assert SetLocale(code) in before.actions and before.state is State.AWAIT_CONSENT
    assert "KVKK" in " ".join(sent(before))


def test_dil_still_asks_which_language():
    step, _c = run(conv(), text("dil"))
    assert step.state is State.AWAIT_LANGUAGE and not any(isinstance(a, SetLocale) for a in step.actions)


def _quota_view(**changes) -> replies.QuotaView:
    view = replies.QuotaView("S", 5, 5, 12, 50, day_resets_at=datetime(2026, 12, 10, 21, 0, tzinfo=UTC),
                             month_resets_at=datetime(2026, 12, 31, 21, 0, tzinfo=UTC),
                             ends_at=datetime(2027, 3, 1, 9, 0, tzinfo=UTC), sponsor_name=None)
    return replace(view, **changes)


def test_the_quota_view_says_none_is_left_today_instead_of_zero():
    said = replies.quota("tr", _quota_view()).text
    assert "0 analiz" not in said and "Bugün başka analiz gönderemezsiniz." in said
    assert "You cannot send any more analyses today." in replies.quota("en", _quota_view()).text
    assert "Bugün 3 analiz daha gönderebilirsiniz." in replies.quota("tr", _quota_view(daily_used=2)).text


def test_the_quota_view_gives_no_renewal_date_after_the_package_has_ended():
    ends = datetime(2026, 12, 20, 9, 0, tzinfo=UTC)
    said = replies.quota("tr", _quota_view(ends_at=ends)).text
    assert "1 Ocak 2027" not in said and "paketinizin bitişi: 20 Aralık 2026" in said
    assert "Bugün: 5/5 kullanıldı (yenilenme:" in said  # the day renews before the end
    last_day = replies.quota("tr", _quota_view(ends_at=datetime(2026, 12, 10, 15, 0, tzinfo=UTC))).text
    assert "yenilenme" not in last_day and "Bugün: 5/5 kullanıldı (paketinizin bitişi: 10 Ara 2026 18:00)" in last_day


def test_photos_kept_for_a_code_are_spoken_of_in_the_plural():
    _step, c = run(conv(), photo(quota=DAILY), photo(8, 2))
    assert c.state is State.AWAIT_CODE and c.data.draft.photo_count == 2
    [kept, _question] = sent(machine.after_redeem(c, None))
    assert kept.startswith("Fotoğraflarınızı aldım")
    _step, single = run(conv(), photo(quota=DAILY))
    assert sent(machine.after_redeem(single, None))[0].startswith("Fotoğrafınızı aldım")


def test_photos_kept_for_consent_are_spoken_of_in_the_plural():
    album = [photo(mid, mid - 7) for mid in (7, 8, 9)]
    step, _c = run(conv(State.START, consented=False), *album, tap("consent:yes"))
    assert "Fotoğraflarınızı aldım, onlarla devam edelim." in sent(step)
    assert "I have your photos; let us continue with them." in sent(machine.after_redeem(
        replace(_c, locale="en", state=State.AWAIT_CODE), None))


def _reaction() -> Event:
    return Event(EventKind.UNSUPPORTED, 1, message_type="reaction")


def test_a_reaction_with_no_analysis_left_is_thanked_without_inviting_a_photo():
    step, _c = run(conv(), replace(_reaction(), quota=DAILY))
    assert sent(step) == ["Teşekkürler!"]
    step, _c = run(conv(), _reaction())
    assert "fotoğraf göndermeniz yeterli" in sent(step)[0]


def test_a_reaction_through_the_webhook_knows_the_quota(farmer, app):
    reaction = {"message_id": "wamid.OUT1", "emoji": "👍"}
    [thanks] = farmer.sends("reaction", reaction)
    assert "fotoğraf göndermeniz yeterli" in thanks
    with app.extensions["db"].session() as db, db.begin():
        assert quota.charge(db, db.scalar(select(Farmer.id)), utcnow()).ok
    [thanks] = farmer.sends("reaction", reaction)
    assert thanks == "Teşekkürler!"
