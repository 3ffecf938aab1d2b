"""Conversation scripts: the farmer sends, the bot answers — through the real webhook, the real
inbound job and the real state machine, with the Graph API stubbed to record what was sent."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from rq.job import Job
from sqlalchemy import func, select, update

from devtools.terminal_chat import describe as render
from models import Analysis, Conversation, Farmer, Message, SponsorCode, Subscription, utcnow
from services import quota, sponsorship
from tests.chat import Farmer as ChatFarmer

CONVERSATION_QUEUES = ("inbound",)  # the analysis pipeline has tests of its own


@pytest.fixture
def farmer(app, graph):
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)
    return ChatFarmer(app, graph, queues=CONVERSATION_QUEUES)


@pytest.fixture
def onboarded(farmer):
    farmer.onboard()
    return farmer


def db_farmer(session, phone: str = "+905321234567") -> Farmer:
    return session.scalar(select(Farmer).where(Farmer.phone == phone).execution_options(populate_existing=True))


def codes(app, tier: str = "M", quantity: int = 1, valid_days: int = 90, sponsor: str = "Tarım A.Ş.") -> list[str]:
    with app.extensions["db"].session() as s, s.begin():
        sp = sponsorship.create_sponsor(s, name=sponsor)
        _purchase, created = sponsorship.create_purchase(s, sp.id, tier, quantity, valid_days, 30, utcnow())
    return created


# --- first contact ------------------------------------------------------------------------------


def test_first_contact_consent_and_menu(farmer, session):
    [notice] = farmer.says("Merhaba")
    assert "KVKK" in notice and "[Kabul ediyorum]" in notice and "[Kabul etmiyorum]" in notice
    assert db_farmer(session).consent_at is None
    welcome, menu = farmer.taps("Kabul ediyorum")
    assert "deneme" in welcome.lower()
    assert "(1. Analiz gönder)" in menu and "(2. Kalan hakkım)" in menu and "(3. Kod kullan)" in menu
    assert db_farmer(session).consent_at is not None
    sub = session.scalar(select(Subscription))
    assert sub is not None and sub.status == "active"


def test_refusal_processes_nothing_and_can_come_back(farmer, session):
    farmer.says("Merhaba")
    [refused] = farmer.taps("Kabul etmiyorum")
    assert "Merhaba" in refused
    assert db_farmer(session).consent_at is None
    assert session.scalar(select(func.count()).select_from(Subscription)) == 0
    [notice] = farmer.photo("domates")  # no photo is analysed before consent
    assert "KVKK" in notice
    assert session.scalar(select(func.count()).select_from(Analysis)) == 0
    farmer.taps("Kabul ediyorum")
    assert db_farmer(session).consent_at is not None


# --- the menu -----------------------------------------------------------------------------------


def test_every_menu_item_answers(onboarded):
    assert "fotoğraf" in onboarded.taps("Analiz gönder")[0].lower()
    onboarded.says("menü")
    [quota_reply] = onboarded.taps("Kalan hakkım")
    assert "Deneme" in quota_reply and "Bugün" in quota_reply
    onboarded.says("menü")
    assert "kod" in onboarded.taps("Kod kullan")[0].lower()
    onboarded.says("menü")
    assert "henüz" in onboarded.taps("Son analizlerim")[0].lower()
    onboarded.says("menü")
    assert "iptal" in onboarded.taps("Yardım")[0].lower()
    onboarded.says("menü")
    [language] = onboarded.taps("Dil / Language")
    assert "[Türkçe]" in language and "[English]" in language


def test_numbers_choose_from_the_menu(onboarded):
    assert "fotoğraf" in onboarded.says("1")[0].lower()


# --- the submission -----------------------------------------------------------------------------


def test_submission_without_caption_with_shared_location(onboarded, session, app):
    [crop_question] = onboarded.photo()
    assert "(Domates)" in crop_question and "(Diğer)" in crop_question
    [location_question] = onboarded.taps("Domates")
    assert "[Geç]" in location_question
    [confirm] = onboarded.location(36.8969, 30.7133, "Serada", "Muratpaşa, Antalya")
    assert "Domates" in confirm and "Serada, Muratpaşa, Antalya" in confirm and "[Gönder]" in confirm
    [queued] = onboarded.taps("Gönder")
    assert "sıraya alındı" in queued
    analysis = session.scalar(select(Analysis))
    assert (analysis.crop, analysis.status, analysis.latitude, analysis.location_text) == (
        "domates", "queued", 36.8969, "Serada, Muratpaşa, Antalya")
    assert analysis.charge_ledger_id is not None and analysis.subscription_id is not None
    job = Job.fetch(f"analysis-{analysis.id}", connection=app.extensions["redis"])  # queued for the pipeline
    assert job.func_name == "services.analysis.run_analysis" and job.args == (analysis.id,)


def test_submission_with_caption_and_skip(onboarded, session):
    received, location_question = onboarded.photo("domates yaprakları sararıyor")
    assert "Domates" in received and "[Geç]" in location_question
    [confirm] = onboarded.taps("Geç")
    assert "domates yaprakları sararıyor" in confirm
    onboarded.taps("Gönder")
    analysis = session.scalar(select(Analysis))
    assert (analysis.crop, analysis.notes, analysis.location_text) == ("domates", "domates yaprakları sararıyor", None)


def test_typed_location_and_other_crop(onboarded, session):
    onboarded.photo()
    onboarded.taps("Diğer")
    onboarded.says("Kivi")
    [confirm] = onboarded.says("Rize Merkez")
    assert "Kivi" in confirm and "Rize Merkez" in confirm
    onboarded.says("gönder")
    assert session.scalar(select(Analysis.crop)) == "Kivi"


def _used_up(app, farmer_phone: str, which: str) -> None:
    """Use up the farmer's daily or monthly quota directly through the quota service."""
    with app.extensions["db"].session() as s, s.begin():
        fid = s.scalar(select(Farmer.id).where(Farmer.phone == farmer_phone))
        result = quota.charge(s, fid, utcnow())
        assert result.ok
        if which == "monthly":
            from models import UsageCounter

            s.execute(update(UsageCounter).where(UsageCounter.period_key.like("M%")).values(used=30))
            s.execute(update(UsageCounter).where(UsageCounter.period_key.like("D%")).values(used=0))


@pytest.mark.parametrize("which,words", [("daily", "Günlük"), ("monthly", "Aylık")])
def test_quota_exhausted_says_when_it_resets(onboarded, session, app, which, words):
    _used_up(app, "+905321234567", which)
    [exhausted] = onboarded.photo("domates")  # told at the photo, before any question
    assert words in exhausted and "yenilenir" in exhausted and "00:00" in exhausted
    assert "kod" in exhausted.lower() and "Fotoğrafınız bekliyor" in exhausted
    assert session.scalar(select(func.count()).select_from(Analysis)) == 0
    assert session.scalar(select(Conversation.state)) == "await_code"


# --- codes --------------------------------------------------------------------------------------


def test_code_ok_replaces_the_trial(onboarded, session, app):
    [code] = codes(app, "M")
    [ok] = onboarded.says(code.lower().replace("-", " "))
    assert "Kod kabul edildi" in ok and "Tarım A.Ş." in ok and "20" in ok
    active = session.scalars(select(Subscription).where(Subscription.status == "active")).all()
    assert len(active) == 1 and active[0].sponsor_id is not None


def test_each_code_outcome_gets_its_own_answer(onboarded, app, session):
    first, second, third, fourth = codes(app, "S", quantity=4)
    assert "bulunamadı" in onboarded.says("AGRI-ZZZZ-ZZZZ")[0]
    onboarded.says(first)
    [queued] = onboarded.says(second)  # an S package is active: the next one waits its turn
    assert "başlayacak" in queued or "başlar" in queued
    [not_now] = onboarded.says(third)
    assert "bekleyen" in not_now
    other = ChatFarmer(app, onboarded.graph, phone="905339876543", name="Ayşe Demir", queues=CONVERSATION_QUEUES)
    other.onboard()
    assert "kullanılmış" in other.says(first)[0]
    with app.extensions["db"].session() as s, s.begin():
        sponsorship.revoke_code(s, fourth, utcnow())
    assert "iptal" in other.says(fourth)[0].lower()
    [expired_code] = codes(app, "S", valid_days=1)
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(SponsorCode).where(SponsorCode.code == expired_code)
                  .values(expires_at=utcnow() - timedelta(days=1)))
    assert "süresi dolmuş" in other.says(expired_code)[0]


def test_code_menu_then_photo_in_the_middle(onboarded):
    assert "kod" in onboarded.says("kod")[0].lower()
    [crop_question] = onboarded.photo()
    assert "(Domates)" in crop_question


# --- history, language, opt-out, deletion -----------------------------------------------------


def test_history_lists_and_shows_one(onboarded, session):
    onboarded.photo("domates")
    onboarded.taps("Geç")
    onboarded.taps("Gönder")
    [listing] = onboarded.says("son analizlerim")
    assert "(Domates)" in listing
    [summary] = onboarded.taps("Domates")
    assert "Domates" in summary and "sırada" in summary


def test_language_switch_is_remembered(onboarded, session):
    onboarded.says("dil")
    changed, menu = onboarded.taps("English")
    assert "English" in changed and "Send analysis" in menu
    assert db_farmer(session).locale == "en"
    assert "photo" in onboarded.says("1")[0]
    onboarded.says("language")
    onboarded.taps("Türkçe")
    assert db_farmer(session).locale == "tr"


def test_opt_out_and_back(onboarded, session):
    [out] = onboarded.says("DUR")
    assert "BAŞLA" in out
    assert db_farmer(session).opted_out_at is not None
    [back] = onboarded.says("BAŞLA")
    assert "DUR" in back
    assert db_farmer(session).opted_out_at is None


def test_data_deletion_is_recorded(onboarded, session):
    [answer] = onboarded.says("Verilerimi sil")
    assert "kaydedildi" in answer
    assert db_farmer(session).deletion_requested_at is not None


@pytest.mark.parametrize("kind", ["audio", "video", "document", "sticker", "reaction", "contacts", "unsupported"])
def test_unsupported_types_get_a_kind_sentence(onboarded, kind):
    # A reaction carries its emoji (one without is a reaction taken back: not answered).
    [answer] = onboarded.sends(kind, {"message_id": "wamid.OUT1", "emoji": "👍"} if kind == "reaction" else None)
    assert any(word in answer.lower() for word in ("menü", "fotoğraf", "teşekkür"))


# --- expiry, variants, ordering ---------------------------------------------------------------


def test_expiry_after_30_minutes(onboarded, session, app):
    onboarded.photo()
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(Conversation).values(expires_at=utcnow() - timedelta(seconds=1)))
    replies = onboarded.says("Domates")
    assert "30 dakika" in replies[0]
    assert session.scalar(select(Conversation.state)) == "menu"


@pytest.mark.parametrize("variant", ["İPTAL", "Iptal", "iptal"])
def test_cancel_in_any_case_cancels_the_photo(onboarded, variant, session):
    onboarded.photo()
    [cancelled, _menu] = onboarded.says(variant)
    assert "İptal edildi" in cancelled
    assert session.scalar(select(Conversation.state)) == "menu"


@pytest.mark.parametrize("variant", ["KOTA", "Kalan hakkım", "kalan hakkim"])
def test_each_way_of_asking_for_the_quota_gets_it(onboarded, variant):
    [answer] = onboarded.says(variant)
    assert "Deneme" in answer


def test_yardim_without_turkish_letters_gets_help(onboarded):
    assert "iptal" in onboarded.says("yardim")[0].lower()


def test_five_messages_in_one_second_are_handled_in_order(onboarded, session, app):
    f = onboarded
    messages = [f.message("image", {"mime_type": "image/jpeg", "sha256": "ab", "id": "55"}), f.text("Diğer"),
                f.text("Kivi"), f.text("Rize"), f.text("gönder")]
    messages[1] = f.message("interactive", {"type": "list_reply", "list_reply": {"id": "crop:diger", "title": "D"}})
    for m in messages:  # five separate deliveries, jobs queued before any runs
        f.deliver(m, run=False)
    from tests.helpers import run_jobs

    run_jobs(app, CONVERSATION_QUEUES)
    assert session.scalar(select(Analysis.crop)) == "Kivi"
    assert session.scalar(select(Analysis.location_text)) == "Rize"
    assert session.scalar(select(Conversation.state)) == "menu"
    processed = session.scalars(select(Message.processed_at).where(Message.direction == "in")
                                .order_by(Message.id)).all()
    assert all(processed) and processed == sorted(processed)


def test_analysis_queued_while_redis_was_down_is_swept(onboarded, session, app):
    from services.sweeper import sweep_unqueued

    onboarded.photo("domates")
    onboarded.taps("Geç")
    onboarded.deliver(onboarded.message("interactive", {"type": "button_reply", "button_reply": {
        "id": f"submit:{session.scalar(select(func.max(Message.id)).where(Message.type == 'image'))}",
        "title": "Gönder"}}), run=False)
    from tests.helpers import run_jobs

    redis = app.extensions["redis"]
    run_jobs(app, CONVERSATION_QUEUES)  # charges and enqueues the analysis job
    analysis_id = session.scalar(select(Analysis.id))
    redis.delete(f"rq:job:analysis-{analysis_id}")  # as if the enqueue had never reached Redis
    assert sweep_unqueued(grace_seconds=0) == 1
    assert Job.fetch(f"analysis-{analysis_id}", connection=redis).args == (analysis_id,)


def test_two_photos_in_a_row_are_one_submission(onboarded, session):
    [crop_question] = onboarded.photo(media_id="111")
    assert "(Domates)" in crop_question
    assert onboarded.photo(media_id="222") == []  # an album's next photo: the question was asked once
    onboarded.taps("Biber")
    onboarded.taps("Geç")
    onboarded.taps("Gönder")
    assert session.scalar(select(Analysis.media_id)) == "111"
    assert session.scalar(select(Analysis.media_ids)) == ["111", "222"]
    assert session.scalar(select(func.count()).select_from(Analysis)) == 1


def test_a_redemption_drops_the_sponsors_cached_statistics(onboarded, app, session):
    from models import Sponsor
    from services.sponsor_stats import stats_key

    [code] = codes(app, "M")
    sponsor_id = session.scalar(select(Sponsor.id))
    app.extensions["redis"].set(stats_key(sponsor_id), "{}")
    onboarded.says(code)
    assert app.extensions["redis"].get(stats_key(sponsor_id)) is None


# --- a message that fails on every attempt -----------------------------------------------------------


def test_a_message_that_always_fails_does_not_block_the_farmer(app, onboarded, session, monkeypatch):
    """Its last attempt marks it failed (visible to support) with a kind answer; later messages go on."""
    from bot import machine
    from services import conversation

    real_step = machine.step

    def step(view, event, now):
        if event.text == "BOOM":
            raise RuntimeError("a bug this message always hits")
        return real_step(view, event, now)

    monkeypatch.setattr(machine, "step", step)
    onboarded.deliver(onboarded.text("BOOM"), run=False)
    onboarded.deliver(onboarded.text("Menü"), run=False)
    boom, menu = session.scalars(select(Message.id).where(Message.direction == "in").order_by(Message.id.desc())
                                 .limit(2)).all()[::-1]
    sent_before = len(onboarded.graph.sent)

    with app.app_context():
        monkeypatch.setattr(conversation, "is_final_attempt", lambda: False)
        with pytest.raises(RuntimeError):  # an earlier attempt: RQ retries the job, nothing is marked
            conversation.handle_inbound(menu)
        session.expire_all()
        assert [session.get(Message, i).status for i in (boom, menu)] == ["received", "received"]

        monkeypatch.setattr(conversation, "is_final_attempt", lambda: True)
        assert conversation.handle_inbound(menu) == "processed"
    session.expire_all()
    failed = session.get(Message, boom)
    assert failed.status == "failed" and failed.error_title == "handling failed: RuntimeError"
    assert session.get(Message, menu).status == "processed"
    texts = [b.get("text", {}).get("body") or b.get("interactive", {}).get("body", {}).get("text")
             for b in onboarded.graph.sent[sent_before:]]
    assert texts[0].startswith("Üzgünüz, son mesajınızı işlerken bir sorun oluştu")
    assert len(texts) == 2  # the apology, then the menu the next message asked for


@pytest.mark.parametrize("reply_id", ["result:details:99999999999999999999", "history:99999999999999999999",
                                      "result:details:2147483648", "result:details:²"])
def test_a_forged_reply_id_is_answered_like_any_text_the_bot_did_not_expect(onboarded, session, reply_id):
    """Found by the adversarial review: a number beyond the analyses' id column reached the database (an
    error on every attempt: the farmer's message failed). Now it is unrecognised input."""
    replies = onboarded.tap_id(reply_id, "Detaylar")
    assert replies[0] == "Üzgünüm, bunu anlayamadım." and "Analiz gönder" in replies[-1]
    tapped = session.scalars(select(Message).where(Message.direction == "in").order_by(Message.id.desc())).first()
    assert (tapped.status, tapped.error_title) == ("processed", None)
    assert onboarded.says("kalan hakkım")  # and the conversation goes on


def test_a_message_dated_in_the_far_future_counts_as_sent_when_it_arrived(onboarded, session, app):
    """Meta's word for when it was sent once went unchecked: a message dated 2100 kept the farmer's 24-hour
    window open for good and was handled after every later message."""
    f = onboarded
    far, later = f.text("kota"), f.text("menü")
    far["timestamp"] = "4102444800"
    later["timestamp"] = str(int(time.time()) + 60)  # a minute ahead: Meta's clock may run a little ahead of ours
    before = len(f.graph.sent)
    f.deliver(far, run=False)
    arrived = utcnow()
    f.deliver(later, run=False)
    stored = session.scalars(select(Message.meta_timestamp).where(Message.text == "kota")).one()
    assert stored is not None and stored <= arrived
    from services.conversation import handle_inbound
    from tests.helpers import run_jobs

    # The later message's worker comes first: it handles every waiting message of the farmer, oldest first.
    handle_inbound(session.scalars(select(Message.id).where(Message.text == "menü")).one())
    run_jobs(app, CONVERSATION_QUEUES)
    replies = [render(b) for b in f.graph.sent[before:]]
    assert "Deneme" in replies[0] and "Analiz gönder" in replies[-1], replies
    last_inbound = db_farmer(session).last_inbound_at
    assert last_inbound is not None and last_inbound < utcnow() + timedelta(minutes=5)


def test_messages_of_one_second_in_one_delivery_are_handled_in_the_bodys_order_not_their_wamids(onboarded):
    """Rows were once written in wamid order (so concurrent deliveries lock alike), and their ids, which break
    a tie of timestamps, followed: `menü` (wamid.AA1) was answered before `kota` (wamid.ZZ1) sent first."""
    f = onboarded
    first, second = f.text("kota"), f.text("menü")
    first["id"], second["id"] = "wamid.ZZ1", "wamid.AA1"
    second["timestamp"] = first["timestamp"]
    replies = f.deliver(first, second)
    assert "Deneme" in replies[0] and "Analiz gönder" in replies[-1], replies
