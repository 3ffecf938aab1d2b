"""Reply ids: every kind survives encode -> parse, the wire strings stay those already on farmers' phones
and in approved templates, and anything else (forged, cut short) parses to None without raising."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import reply_ids as rid
from bot.reply_ids import encode, parse
from translations.templates import TEMPLATES

row_ids = st.integers(1, rid.MAX_ID_NUMBER)
keys = st.from_regex(r"[a-z0-9_]{1,32}", fullmatch=True)
every_kind = st.one_of(
    st.builds(rid.Consent, st.booleans()),
    st.builds(rid.Menu, st.sampled_from(list(rid.MenuChoice))),
    st.builds(rid.Crop, keys),
    st.just(rid.SkipLocation()),
    st.builds(rid.SendPending, st.integers(1, rid.MAX_MESSAGE_NUMBER), st.none() | st.integers(1, 9)),
    st.builds(rid.CancelConfirm, st.none() | st.integers(1, rid.MAX_MESSAGE_NUMBER)),
    st.builds(rid.Details, st.none() | row_ids),
    st.just(rid.NewAnalysis()),
    st.just(rid.BackToMenu()),
    st.builds(rid.HistoryPick, row_ids),
    st.builds(rid.Language, keys),
)


@settings(max_examples=300)
@given(every_kind)
def test_every_kind_round_trips(reply: rid.ReplyId) -> None:
    wire = encode(reply)
    assert parse(wire) == reply
    assert len(wire) <= rid.MAX_LENGTH


# What the buttons, rows and template payloads of every release so far carry: these must keep parsing.
WIRE = {
    "consent:yes": rid.Consent(True), "consent:no": rid.Consent(False),
    "menu:analyze": rid.Menu(rid.MenuChoice.ANALYZE), "menu:quota": rid.Menu(rid.MenuChoice.QUOTA),
    "menu:code": rid.Menu(rid.MenuChoice.CODE), "menu:history": rid.Menu(rid.MenuChoice.HISTORY),
    "menu:help": rid.Menu(rid.MenuChoice.HELP), "menu:language": rid.Menu(rid.MenuChoice.LANGUAGE),
    "crop:domates": rid.Crop("domates"), "crop:diger": rid.Crop("diger"), "location:skip": rid.SkipLocation(),
    "submit:7": rid.SendPending(7), "submit:9223372036854775807": rid.SendPending(2**63 - 1),
    "submit:7:3": rid.SendPending(7, 3),
    "confirm:cancel": rid.CancelConfirm(), "confirm:cancel:7": rid.CancelConfirm(7),
    "result:details": rid.Details(None),
    "result:details:42": rid.Details(42), "result:new": rid.NewAnalysis(), "result:menu": rid.BackToMenu(),
    "history:5": rid.HistoryPick(5), "history:2147483647": rid.HistoryPick(2**31 - 1),
    "lang:tr": rid.Language("tr"), "lang:en": rid.Language("en"),
}


@pytest.mark.parametrize(("wire", "reply"), WIRE.items())
def test_the_wire_strings_stay_as_they_are(wire: str, reply: rid.ReplyId) -> None:
    assert parse(wire) == reply
    assert encode(reply) == wire


def test_template_payloads_are_reply_ids() -> None:
    payloads = {b.payload for t in TEMPLATES.values() for b in t.buttons}
    assert payloads == {"result:details", "result:new", "menu:analyze", "menu:quota", "menu:code", "menu:help",
                        "result:menu"}
    assert all(parse(p) is not None for p in payloads)


def test_zero_padded_analysis_ids_read_as_before() -> None:
    assert parse("history:007") == rid.HistoryPick(7)
    assert parse("result:details:0000000042") == rid.Details(42)


MALFORMED: list[object] = [
    None, 7, b"menu:analyze", ["menu:analyze"], {}, "", ":", "menu", "menu:", "menu:analyse", "MENU:ANALYZE",
    "menu:analyze ", " menu:analyze", "menu:analyze\n", "consent:maybe", "consent:", "crop:", "crop:Domates",
    "crop:a:b", "crop:" + "a" * 33, "location:", "location:skipx", "submit:", "submit:abc", "submit:007",
    "submit:0", "submit:-1", "submit:9223372036854775808", "submit:99999999999999999999", "submit:١",
    "submit:7:", "submit:7:0", "submit:7:12", "submit:7:a", "submit:7:3:1", "submit::3",
    "confirm:", "confirm:ok", "confirm:cancel:", "confirm:cancel:0", "confirm:cancel:007", "result:", "result:nothing",
    "result:detailsx", "result:details:",
    "result:details:0", "result:details:-1", "result:details:abc", "result:details:1:2", "result:details:²",
    "result:details:١", "result:details:2147483648", "result:details:99999999999999999999",
    "result:details:00000000042", "history:", "history:0", "history:-3", "history:1:2", "history:²",
    "history:99999999999999999999", "lang:", "lang:EN", "lang:e n", "details:1", "cancel", "x" * 300,
    "menu:analyze" + "\x00",
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_ids_are_none(text: object) -> None:
    assert parse(text) is None


@settings(max_examples=500)
@given(st.text() | st.builds(lambda a, b: f"{a}:{b}", st.sampled_from(["consent", "menu", "crop", "location",
                                                                        "submit", "confirm", "result", "history",
                                                                        "lang"]), st.text()))
def test_parse_never_raises_and_what_parses_is_an_id_we_could_send(text: str) -> None:
    reply = parse(text)
    if reply is not None:
        assert parse(encode(reply)) == reply
