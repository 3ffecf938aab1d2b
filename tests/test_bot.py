"""The state machine on its own: pure, no database, no HTTP."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot import codes, draft, intents, machine, replies, reply_ids
from bot.draft import ConversationData
from bot.normalize import fold
from bot.types import (
    Conversation,
    Event,
    EventKind,
    RecordConsent,
    RedeemCode,
    Send,
    SetLocale,
    SetOptOut,
    ShowAnalysis,
    ShowDetails,
    ShowQuota,
    State,
    Submit,
)

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def conv(state: State = State.MENU, data: dict | ConversationData | None = None, consented: bool = True,
         locale: str = "tr", expires_at: datetime | None = None) -> Conversation:
    """`data` as the machine keeps it, or as stored on the row (read the way the job reads it)."""
    if not isinstance(data, ConversationData):
        data = draft.from_json(data)
    return Conversation(state, data, locale, consented, expires_at or NOW + timedelta(minutes=10))


def text(t: str, mid: int = 1) -> Event:
    return Event(EventKind.TEXT, mid, text=t)


def tap(reply_id: str, mid: int = 1) -> Event:
    return Event(EventKind.REPLY, mid, reply=reply_ids.parse(reply_id))


def photo(caption: str | None = None, mid: int = 7) -> Event:
    return Event(EventKind.PHOTO, mid, text=caption, media_id="m1", message_type="image")


def sent(step) -> list[str]:
    return [a.reply.text for a in step.actions if isinstance(a, Send)]


@pytest.mark.parametrize("raw,folded", [("İPTAL", "iptal"), ("Iptal", "iptal"), ("iptal", "iptal"),
                                        ("KOTA", "kota"), ("Kalan hakkım", "kalan hakkim"), ("yardim", "yardim"),
                                        ("  Menü!! ", "menu"), ("BAŞLA", "basla"), ("ÇİFTÇİ", "ciftci")])
def test_fold_lowercases_and_drops_turkish_letters_and_punctuation(raw, folded):
    assert fold(raw) == folded


@pytest.mark.parametrize("raw,intent", [
    ("İPTAL", intents.Intent.CANCEL), ("Iptal", intents.Intent.CANCEL), ("iptal", intents.Intent.CANCEL),
    ("KOTA", intents.Intent.QUOTA), ("Kalan hakkım", intents.Intent.QUOTA),
    ("KALAN HAKKIM NE KADAR?", intents.Intent.QUOTA), ("yardim", intents.Intent.HELP),
    ("Yardım", intents.Intent.HELP), ("menü", intents.Intent.MENU), ("MENU", intents.Intent.MENU),
    ("DUR", intents.Intent.OPT_OUT), ("STOP", intents.Intent.OPT_OUT), ("BAŞLA", intents.Intent.OPT_IN),
    ("Verilerimi sil lütfen", intents.Intent.DELETE_DATA), ("dil", intents.Intent.LANGUAGE),
    ("domates", None), ("durum nasıl", None),
])
def test_commands_are_recognised_in_any_case_and_spelling(raw, intent):
    assert intents.match(raw) is intent


@pytest.mark.parametrize("reply,commands", [
    (replies.help_text, {"menu": intents.Intent.MENU, "cancel": intents.Intent.CANCEL,
                         "quota": intents.Intent.QUOTA, "language": intents.Intent.LANGUAGE,
                         "STOP": intents.Intent.OPT_OUT}),
    (replies.opted_out, {"START": intents.Intent.OPT_IN}),
    (replies.already_opted_in, {"STOP": intents.Intent.OPT_OUT}),
    (replies.opted_in, {"STOP": intents.Intent.OPT_OUT}),
    (lambda locale: replies.unsupported(locale, "sticker"), {"menu": intents.Intent.MENU}),
    (replies.handling_failed, {"menu": intents.Intent.MENU}),
    (replies.consent_refused, {"hello": intents.Intent.GREETING}),
    (replies.consent_withdrawn, {"delete my data": intents.Intent.DELETE_DATA, "hello": intents.Intent.GREETING}),
    (lambda locale: replies.not_a_code(locale, photo_waits=True), {"cancel": intents.Intent.CANCEL}),
    (lambda locale: replies.not_a_code(locale, photo_waits=False), {"menu": intents.Intent.MENU}),
    (lambda locale: replies.redeem(locale, replies.RedeemView("unknown")), {"menu": intents.Intent.MENU}),
    (replies.hello_mid_submission, {"cancel": intents.Intent.CANCEL}),
])
def test_english_text_names_the_english_commands_that_work(reply, commands):
    named = re.findall(r"'([^']+)'", reply("en").text)
    assert named == list(commands)
    assert {word: intents.match(word) for word in named} == commands
    turkish = re.findall(r"'([^']+)'", reply("tr").text)  # Turkish keeps its own words, which work too
    assert all(intents.match(word) is not None for word in turkish) and "DUR" not in named


@pytest.mark.parametrize("raw,ok", [("AGRI-7KQ3-M9XP", True), ("agri 7kq3 m9xp", True), ("AGRI7KQ3M9XP", True),
                                    ("AGRI-7KQ3-M9X0", True), ("AGRI-7KQ", False), ("merhaba", False)])
def test_a_code_typed_loosely_or_mistyped_still_looks_like_a_code(raw, ok):
    """A mistyped code (`0` is not in the alphabet) still counts as a code attempt: answered "unknown"."""
    assert codes.looks_like_code(raw) is ok


def test_first_contact_asks_consent_and_processes_nothing():
    step = machine.step(conv(State.START, consented=False), text("Merhaba"), NOW)
    assert step.state is State.AWAIT_CONSENT
    assert "KVKK" in sent(step)[0]
    assert all(isinstance(a, Send) for a in step.actions)


def test_photo_before_consent_is_not_analysed():
    step = machine.step(conv(State.AWAIT_CONSENT, consented=False), photo("domates"), NOW)
    assert step.state is State.AWAIT_CONSENT
    assert not any(isinstance(a, Submit) for a in step.actions)


def test_a_photo_beyond_a_full_album_before_consent_is_answered_not_dropped_quietly():
    c = conv(State.AWAIT_CONSENT, consented=False)
    sent_at = NOW - timedelta(seconds=30)
    for mid in range(7, 7 + draft.MAX_PHOTOS):
        step = machine.step(c, replace(photo(mid=mid), sent_at=sent_at), NOW)
        c = replace(c, state=step.state, data=step.data)
    assert c.data.draft is not None and c.data.draft.photo_count == draft.MAX_PHOTOS
    later = machine.step(c, replace(photo(mid=99), sent_at=sent_at + timedelta(minutes=5)), NOW)
    assert "en fazla 5" in sent(later)[0] and "KVKK" in sent(later)[1]
    assert later.data.draft is not None and later.data.draft.photo_count == draft.MAX_PHOTOS


def test_consent_yes_and_no():
    yes = machine.step(conv(State.AWAIT_CONSENT, consented=False), tap("consent:yes"), NOW)
    assert RecordConsent(True) in yes.actions and yes.state is State.MENU
    no = machine.step(conv(State.AWAIT_CONSENT, consented=False), text("Kabul etmiyorum"), NOW)
    assert RecordConsent(False) in no.actions and no.state is State.START


def test_submission_with_caption_skips_the_crop_question():
    step = machine.step(conv(), photo("domates yaprakları sararıyor"), NOW)
    assert step.state is State.AWAIT_LOCATION
    assert step.data.draft is not None and step.data.draft.crop == "domates"
    step = machine.step(conv(step.state, step.data), text("Geç"), NOW)
    assert step.state is State.CONFIRM
    step = machine.step(conv(step.state, step.data), tap("submit:7"), NOW)
    [submit] = [a for a in step.actions if isinstance(a, Submit)]
    assert (submit.crop, submit.notes, submit.location_text, submit.photo_message_id) == (
        "domates", "domates yaprakları sararıyor", None, 7)
    assert step.state is State.MENU and step.data == ConversationData()


def test_a_second_tap_on_the_same_send_button_submits_nothing():
    step = machine.step(conv(), photo("biber"), NOW)
    step = machine.step(conv(step.state, step.data), text("Antalya Kumluca"), NOW)
    first = machine.step(conv(step.state, step.data), tap("submit:7"), NOW)
    second = machine.step(conv(first.state, first.data), tap("submit:7"), NOW)
    assert not any(isinstance(a, Submit) for a in second.actions)


def test_global_intents_work_in_every_state():
    for state in State:
        if state in (State.START, State.AWAIT_CONSENT):
            continue
        c = conv(state, {"draft": {"photo_message_id": 7, "media_id": "m", "crop": "domates"}})
        assert machine.step(c, text("İPTAL"), NOW).state is State.MENU, state
        assert machine.step(c, text("menü"), NOW).state is State.MENU, state
        assert any(isinstance(a, ShowQuota) for a in machine.step(c, text("KOTA"), NOW).actions), state
        assert sent(machine.step(c, text("yardim"), NOW)), state
        assert SetOptOut(True) in machine.step(c, text("DUR"), NOW).actions, state
        with_photo = machine.step(c, photo(mid=8), NOW)  # a new submission, or the album's next photo
        assert with_photo.state in machine.ALBUM_STATES | {State.CONFIRM}, state
        assert with_photo.data.draft is not None and with_photo.data.draft.has_photo(8), state


def test_code_in_any_state_and_photo_in_the_code_flow():
    step = machine.step(conv(State.AWAIT_LOCATION, {"draft": {"photo_message_id": 1}}), text("agri 7kq3 m9xp"), NOW)
    assert RedeemCode("agri 7kq3 m9xp") in step.actions
    step = machine.step(conv(State.AWAIT_CODE), photo(), NOW)
    assert step.state is State.AWAIT_CROP


def test_expiry_starts_again_from_the_menu():
    old = conv(State.AWAIT_LOCATION, {"draft": {"photo_message_id": 1}}, expires_at=NOW - timedelta(minutes=1))
    step = machine.step(old, text("Antalya"), NOW)
    assert step.state is State.MENU
    assert "30" in sent(step)[0]


def test_choosing_english_confirms_in_english_and_returns_to_the_menu():
    step = machine.step(conv(State.AWAIT_LANGUAGE), tap("lang:en"), NOW)
    assert SetLocale("en") in step.actions
    assert "English" in sent(step)[0]  # the confirmation is already in the new language
    assert step.state is State.MENU


def test_unexpected_input_gets_a_hint_and_keeps_the_state():
    step = machine.step(conv(State.AWAIT_CROP, {"draft": {"photo_message_id": 1}}), tap("location:skip"), NOW)
    assert step.state is State.AWAIT_CROP
    assert len(sent(step)) >= 2


def test_unsupported_types_get_a_kind_answer():
    for kind in ("audio", "video", "document", "sticker", "reaction", "contacts", "unsupported"):
        step = machine.step(conv(), Event(EventKind.UNSUPPORTED, 1, message_type=kind), NOW)
        assert sent(step), kind
        assert step.state is State.MENU


def test_expiry_also_forgets_confirmations_waiting_in_the_menu():
    pending = {"pending": {"7": {"photo_message_id": 7, "media_id": "m", "crop": "domates"}}}
    old = conv(State.MENU, pending, expires_at=NOW - timedelta(minutes=1))
    step = machine.step(old, tap("submit:7"), NOW)
    assert not any(isinstance(a, Submit) for a in step.actions)
    assert sent(step) and step.data == ConversationData(lapsed=(7,))  # the farmer is told it timed out unsent


# A reply id comes back from the farmer's phone, so anyone can send any: ids that do not parse are text
# the state did not expect (its fallback hint), never an action with a number no row can have.
FORGED_REPLY_IDS = ["result:details:99999999999999999999", "result:details:2147483648", "result:details:0",
                    "result:details:-1", "result:details:²", "result:details:١", "result:details:1:2",
                    "result:details:", "result:details:abc", "result:detailsx", "result:nothing",
                    "history:99999999999999999999", "history:²", "history:", "history:1:2", "history:-3"]


@pytest.mark.parametrize("reply_id", FORGED_REPLY_IDS)
@pytest.mark.parametrize("state", [State.MENU, State.HISTORY, State.AWAIT_PHOTO, State.AWAIT_LOCATION])
def test_a_reply_id_that_does_not_parse_gets_the_states_fallback(reply_id, state):
    data = {"draft": {"photo_message_id": 7, "media_id": "m1", "notes": None, "crop": "domates"}}
    before = conv(state, data)
    step = machine.step(before, tap(reply_id), NOW)
    expected = machine.fallback(before, tap(reply_id))
    assert step == expected
    assert not [a for a in step.actions if not isinstance(a, Send)]
    assert any("anlayamadım" in t for t in sent(step)), sent(step)


@pytest.mark.parametrize(("reply_id", "action"), [
    ("result:details", ShowDetails(None)), ("result:details:42", ShowDetails(42)),
    ("result:details:2147483647", ShowDetails(2147483647)), ("history:5", ShowAnalysis(5)),
])
def test_reply_ids_we_send_still_work(reply_id, action):
    step = machine.step(conv(State.HISTORY), tap(reply_id), NOW)
    assert action in step.actions


def test_bot_imports_nothing_of_ours_but_itself_and_translations():
    """The conversation stays pure: no database, no HTTP, no settings (services carry out its actions)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    ours = {p.stem if p.is_file() else p.name for p in root.iterdir()
            if (p.suffix == ".py" or (p.is_dir() and any(p.glob("*.py")))) and p.name not in ("bot", "translations")}
    found = []
    for path in (root / "bot").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            found += [f"{path.name}: {name}" for name in names if name.split(".")[0] in ours]
    assert found == []


@pytest.mark.parametrize("stored", ["await_photo_v0", "", None, "MENU"])
def test_a_state_from_an_older_release_starts_again_from_the_menu(stored):
    assert State(stored) is State.MENU
    assert State("await_crop") is State.AWAIT_CROP
