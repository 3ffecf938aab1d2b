"""Property-based fuzzing (hypothesis) of what anyone on the internet can send us: the strict JSON
reader every body goes through, the webhook parser, the signed HTTP webhook, the conversation behind it,
dates from anywhere in the calendar, and the Turkish intent normaliser. Besides plain random JSON, the
strategies of tests/hostile.py send lone surrogates, NUL, deep nesting and numbers beyond a float.

Repeatable in CI (`derandomize=True`, no example database) and bounded (about 20 s in all). For a
longer hunt multiply every test's example count: `FUZZ_SCALE=20 .venv/bin/pytest tests/test_fuzz_parsers.py`.
Runs on whatever database the suite uses (SQLite by default, PostgreSQL in CI), which matters: only
PostgreSQL refuses NUL characters, NaN in jsonb and over-long values.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import responses
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from admin.validation import parse_datetime
from bot import intents
from bot.intents import Intent
from bot.normalize import fold
from models import Analysis, Message, MessageStatusEvent, UnhandledWebhook
from models import Conversation as ConversationRow
from models import Farmer as FarmerRow
from services import quota
from services.json_input import MAX_DEPTH, JsonInputError, nested_deeper_than, parse_json, storable
from services.whatsapp import updates
from services.whatsapp.account import ACCOUNT_FIELDS
from services.whatsapp.updates import InboundMessage, ParsedWebhook, Problem, StatusUpdate, parse_webhook
from tests.chat import Farmer, GraphStub
from tests.helpers import FIXTURES, PHONE_NUMBER_ID, fixture_json, run_jobs, sign
from tests.hostile import acceptable, any_dates, hostile_values, is_finite_json, raw_json

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
FIXTURE_NAMES = sorted(p.name for p in (FIXTURES / "whatsapp").glob("*.json"))
PHONE = re.compile(r"\+\d{8,15}")
INT32 = 2**31
_wamids = itertools.count(1)


def fuzz(examples: int):
    """Hypothesis settings for this file: repeatable, no wall-clock deadline, `FUZZ_SCALE` times more examples."""
    return settings(
        max_examples=max(1, int(examples * SCALE)), deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# --- strategies ----------------------------------------------------------------------------------------

# Every code point, lone surrogates and NUL included (JSON can carry both as escapes).
any_char = st.characters(exclude_categories=())
any_text = st.text(any_char, max_size=40)
numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | numbers | any_text
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4), max_leaves=20
)
MESSAGE_TYPES = ["text", "image", "interactive", "button", "location", "audio", "video", "document", "sticker",
                 "reaction", "contacts", "unsupported", "system", "ephemeral", "order"]
MESSAGE_KEYS = ["from", "id", "timestamp", "type", "text", "image", "interactive", "button", "location",
                "reaction", "context", "errors", "system", "audio", "document", "referral"]


@st.composite
def message_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Meta-like `messages[]` items: the keys Meta uses, each either plausible or anything at all."""
    kind = draw(st.sampled_from(MESSAGE_TYPES) | json_values)
    plausible: dict[str, st.SearchStrategy[Any]] = {
        "from": st.sampled_from(["905321234567", "+90 532 123 45 67", "0090532", ""]) | json_values,
        "id": st.builds(lambda n: f"wamid.F{n}", st.integers(0, 50)) | st.text(max_size=250) | json_values,
        "timestamp": st.integers(-(10**12), 10**12).map(str) | json_values,
        "type": st.just(kind),
        "text": st.fixed_dictionaries({"body": any_text | json_values}),
        "image": st.fixed_dictionaries({"id": st.text(max_size=120) | json_values, "caption": any_text,
                                        "mime_type": st.text(max_size=120)}),
        "interactive": st.fixed_dictionaries({
            "type": st.sampled_from(["button_reply", "list_reply", "nfm_reply"]) | json_values,
            "button_reply": st.fixed_dictionaries({"id": any_text, "title": any_text}),
            "list_reply": json_values,
        }),
        "location": st.fixed_dictionaries({"latitude": numbers | any_text | json_values,
                                           "longitude": numbers | any_text, "name": any_text}),
        "errors": st.lists(st.fixed_dictionaries({"code": st.integers() | json_values, "title": any_text}),
                           max_size=2) | json_values,
        "context": st.fixed_dictionaries({"id": st.text(max_size=250) | json_values}),
    }
    keys = draw(st.lists(st.sampled_from(MESSAGE_KEYS), unique=True, max_size=len(MESSAGE_KEYS)))
    return {key: draw(plausible.get(key, json_values)) for key in keys}


@st.composite
def webhook_shaped(draw: st.DrawFn) -> dict[str, Any]:
    """A body with Meta's frame (object, entry, changes, value) and fuzzed contents."""
    def change() -> dict[str, Any]:
        value = {
            "messaging_product": "whatsapp",
            "contacts": draw(st.lists(st.fixed_dictionaries({"wa_id": any_text | json_values,
                                                             "profile": json_values}), max_size=2) | json_values),
            "messages": draw(st.lists(message_objects() | json_values, max_size=3) | json_values),
            "statuses": draw(st.lists(json_values | st.fixed_dictionaries({
                "id": st.text(max_size=250) | json_values, "status": any_text | json_values,
                "errors": json_values}), max_size=2)),
        }
        return {"field": draw(st.sampled_from(["messages", *sorted(ACCOUNT_FIELDS)]) | json_values), "value": value}

    entries = [{"id": "1", "changes": [change() for _ in range(draw(st.integers(0, 2)))]}
               for _ in range(draw(st.integers(0, 2)))]
    return {"object": draw(st.just("whatsapp_business_account") | json_values), "entry": entries}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> Any:
    """A real delivery (tests/fixtures/whatsapp) with 1-4 random edits: a node replaced by anything,
    deleted, turned into its string, or a list item repeated."""
    body: Any = fixture_json(draw(st.sampled_from(FIXTURE_NAMES)))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(list(_paths(body))))
        op = draw(st.sampled_from(["replace", "delete", "stringify", "repeat"]))
        if not path:
            body = draw(json_values) if op == "replace" else body
            continue
        parent, last = _get(body, path[:-1]), path[-1]
        if op == "replace":
            parent[last] = draw(json_values)
        elif op == "delete":
            del parent[last]
        elif op == "stringify":
            parent[last] = json.dumps(parent[last])
        elif isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
    return body


# --- the strict JSON reader (services.json_input) -------------------------------------------------------


@fuzz(400)
@given(hostile_values | json_values, st.sampled_from(["bare", "in an object", "in a list", "deeper"]))
def test_the_strict_reader_takes_sound_json_and_refuses_the_rest(value, where):
    """Never anything but a value or JsonInputError (no RecursionError, no OverflowError); a value it
    returns is finite and at most MAX_DEPTH levels deep, so nothing after it meets either."""
    document = {"bare": value, "in an object": {"x": value}, "in a list": [1, value],
                "deeper": {"a": [{"b": [value]}]}}[where]
    raw = raw_json(document)
    try:
        parsed = parse_json(raw)
    except JsonInputError as exc:
        assert not acceptable(document), (str(exc), raw[:300])
        return
    assert acceptable(document), raw[:300]
    assert is_finite_json(parsed) and not nested_deeper_than(parsed, MAX_DEPTH)


@fuzz(400)
@given(any_dates)
def test_a_date_from_anywhere_in_the_calendar_is_a_utc_datetime_or_refused(text):
    """Found by the adversarial review: `0001-01-01T00:00:00+01:00` overflowed when converted to UTC."""
    try:
        value = parse_datetime(text)
    except ValueError:
        assert text[:4] in ("0001", "9999"), text  # only the ends of the calendar, in another offset
        return
    assert value.utcoffset() == timedelta(0)


# --- (a) the parser ------------------------------------------------------------------------------------


def _changes_of(body: Any) -> Iterator[Any]:
    if isinstance(body, dict) and isinstance(body.get("entry"), list):
        for entry in body["entry"]:
            changes = entry.get("changes") if isinstance(entry, dict) else None
            if isinstance(changes, list):
                yield from changes


def _handled(change: Any) -> bool:
    value = change.get("value") if isinstance(change, dict) else None
    value = value if isinstance(value, dict) else {}
    if isinstance(change, dict) and change.get("field") == "user_preferences":
        return isinstance(value.get("user_preferences"), list)
    return isinstance(change, dict) and change.get("field") == "messages" and bool(
        value.get("messages") or value.get("statuses") or value.get("errors"))


def check_parse(body: Any) -> ParsedWebhook:
    """parse_webhook's promises: it never raises, and every part of the body is either understood
    or reported as a problem carrying that very part (so it can be stored, never dropped)."""
    parsed = parse_webhook(body)
    problem_parts = [p.part for p in parsed.problems]
    # Items beyond the cap are kept together, by kind, in one last problem.
    problem_parts += [part for p in parsed.problems if p.reason.startswith("delivery has more than")
                      for parts in p.part.values() for part in parts]
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        assert (parsed.messages, parsed.statuses, len(parsed.problems)) == ([], [], 1)
        return parsed
    for entry in body["entry"]:
        if not (isinstance(entry, dict) and isinstance(entry.get("changes"), list)):
            assert any(part is entry for part in problem_parts), entry
    for change in _changes_of(body):
        if isinstance(change, dict) and isinstance(change.get("field"), str) and change["field"] in ACCOUNT_FIELDS:
            # An account, template or number event, or kept whole as a problem (also beyond the cap).
            assert (any(e.raw is change.get("value") for e in parsed.account)
                    or any(part is change for part in problem_parts)), change
            continue
        if not _handled(change):
            assert any(part is change for part in problem_parts), change
            continue
        value = change["value"]
        kinds: dict[str, Sequence[Any]] = {"messages": parsed.messages, "statuses": parsed.statuses,
                                           "errors": parsed.errors}
        if change["field"] == "user_preferences":
            kinds = {"errors": parsed.errors, "user_preferences": parsed.preferences}
        for key, parsed_items in kinds.items():
            items = value.get(key)
            if isinstance(items, list):
                for item in items:
                    assert any(x.raw is item for x in parsed_items) or any(p is item for p in problem_parts), item
            elif items:
                assert any(p == {key: items} for p in problem_parts), items
    for m in parsed.messages:
        assert isinstance(m, InboundMessage)
        assert PHONE.fullmatch(m.phone) if m.phone is not None else m.user_id, (m.phone, m.user_id)
        assert isinstance(m.wamid, str) and 0 < len(m.wamid) <= 200
        assert m.error_code is None or -INT32 <= m.error_code < INT32
        assert m.error_title is None or len(m.error_title) <= 300
        assert m.media_id is None or len(m.media_id) <= 100
        assert m.context_wamid is None or len(m.context_wamid) <= 200
        assert m.profile_name is None or len(m.profile_name) <= 200
        for coordinate in (m.latitude, m.longitude):
            assert coordinate is None or coordinate - coordinate == 0  # finite
    for s in parsed.statuses:
        assert isinstance(s, StatusUpdate) and 0 < len(s.wamid) <= 200
        assert s.error_code is None or -INT32 <= s.error_code < INT32
        assert s.recipient is None or PHONE.fullmatch(s.recipient)
    assert all(isinstance(p, Problem) and p.reason for p in parsed.problems)
    return parsed


@fuzz(300)
@given(json_values)
def test_parser_on_any_json_value(body):
    check_parse(body)


@fuzz(150)
@given(webhook_shaped())
def test_parser_on_webhook_shaped_bodies(body):
    check_parse(body)


@fuzz(300)
@given(mutated_fixtures())
def test_parser_on_mutated_real_deliveries(body):
    check_parse(body)


@fuzz(150)
@given(webhook_shaped() | mutated_fixtures(), st.integers(1, 6))
def test_parser_keeps_every_item_beyond_the_cap(body, cap):
    """With a cap of a few items, fuzzed bodies go over it: the excess is one problem, nothing is dropped."""
    with mock.patch.object(updates, "MAX_ITEMS_PER_DELIVERY", cap):
        parsed = check_parse(body)
    kept = (len(parsed.messages) + len(parsed.statuses) + len(parsed.problems) + len(parsed.errors)
            + len(parsed.preferences) + len(parsed.user_id_changes) + len(parsed.account))
    over = [p for p in parsed.problems if p.reason.startswith("delivery has more than")]
    assert kept <= cap + 1 and len(over) <= 1
    assert not over or kept == cap + 1


def _same_parse(a: ParsedWebhook, b: ParsedWebhook) -> bool:
    """Equal, raw parts included (the dataclasses leave `raw` out of ==)."""
    return a == b and [m.raw for m in a.messages] == [m.raw for m in b.messages]


@fuzz(300)
@given(webhook_shaped() | mutated_fixtures() | json_values)
def test_the_single_message_reading_gives_what_the_full_walk_gives(body):
    single = updates.parse_single_message(body)
    assert single is None or _same_parse(single, updates.parse_every_change(body))


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_real_delivery_parses_the_same_either_way(name):
    body = fixture_json(name)
    single = updates.parse_single_message(body)
    assert single is None or _same_parse(single, updates.parse_every_change(body))
    assert _same_parse(parse_webhook(body), updates.parse_every_change(body))


def test_a_plain_text_message_takes_the_single_message_reading():
    """The webhook's most common delivery, so the shortcut must actually be taken for it."""
    single = updates.parse_single_message(fixture_json("text.json"))
    assert single is not None and [m.text for m in single.messages] == ["Merhaba"]


def test_parser_examples_found_by_fuzzing():
    """Kept from the fuzzing that found them: each crashed the parser or the database insert."""
    base = fixture_json("location_chosen.json")
    base["entry"][0]["changes"][0]["value"]["messages"][0]["location"]["latitude"] = 10**400  # float() overflow
    [m] = check_parse(base).messages
    assert m.latitude is None and m.longitude is not None
    body = fixture_json("text.json")
    raw_message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    raw_message["errors"] = [{"code": 10**20, "title": "x" * 500}]  # integer column; String(300)
    [m] = check_parse(body).messages
    assert (m.error_code, len(m.error_title or "")) == (None, 300)
    raw_message["id"] = "wamid." + "x" * 300  # String(200): not a message id we can key on
    parsed = check_parse(body)
    assert parsed.messages == [] and parsed.problems[0].part is raw_message
    body["entry"][0]["changes"][0]["value"]["messages"] = {"id": "wamid.A"}  # not a list: reported, not dropped
    assert check_parse(body).problems[0].part == {"messages": {"id": "wamid.A"}}


# --- (b) the signed HTTP webhook -----------------------------------------------------------------------


def post_raw(client, raw: bytes):
    return client.post("/webhooks/whatsapp", data=raw, content_type="application/json",
                       headers={"X-Hub-Signature-256": sign(raw)})


def _strict_json(raw: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(name)

    return json.loads(raw, parse_constant=refuse)


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def check_stored(session, body: Any, unhandled_before: int) -> None:
    """Nothing lost: every message the parser found has its row (or, written to a number not ours, its
    unhandled row), every problem its unhandled row."""
    parsed = parse_webhook(storable(body))
    foreign = [m for m in parsed.messages if m.phone_number_id not in (None, PHONE_NUMBER_ID)]
    for m in parsed.messages:
        if m not in foreign:
            assert session.scalar(select(Message.id).where(Message.wamid == m.wamid)) is not None, m.wamid
    for s in parsed.statuses:
        assert session.scalar(select(MessageStatusEvent.id).where(MessageStatusEvent.wamid == s.wamid)) is not None
    assert _count(session, UnhandledWebhook) - unhandled_before == len(parsed.problems) + len(foreign)


@fuzz(150)
@given(json_values | webhook_shaped() | st.floats() | st.lists(st.floats(), max_size=3))
def test_any_signed_json_is_200_or_400_and_kept(client, session, body):
    raw = json.dumps(body).encode()  # NaN and Infinity come out as bare tokens: not JSON, so 400
    unhandled = _count(session, UnhandledWebhook)
    response = post_raw(client, raw)
    try:
        _strict_json(raw)
    except ValueError:
        assert response.status_code == 400, raw[:200]
        return
    assert response.status_code == 200, (response.status_code, raw[:300])
    check_stored(session, body, unhandled)


@fuzz(150)
@given(mutated_fixtures())
def test_mutated_real_deliveries_over_http(client, session, body):
    unhandled = _count(session, UnhandledWebhook)
    response = post_raw(client, json.dumps(body).encode())
    assert response.status_code == 200
    check_stored(session, body, unhandled)


@st.composite
def hostile_deliveries(draw: st.DrawFn) -> Any:
    """A real delivery with 1-3 nodes replaced by hostile values (surrogates, NUL, numbers beyond a float,
    deep nests...), written as raw JSON."""
    body: Any = fixture_json(draw(st.sampled_from(FIXTURE_NAMES)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(body))))
        if path:
            _get(body, path[:-1])[path[-1]] = draw(hostile_values)
    return body


@fuzz(150)
@given(hostile_deliveries())
def test_hostile_values_in_a_signed_delivery_are_400_or_kept(client, session, body):
    """Refused as a whole (400) when the strict reader refuses it, else acknowledged and stored: NUL and
    lone surrogates replaced, nothing lost, never a 5xx (on PostgreSQL: no NUL, no out-of-range integer)."""
    raw = raw_json(body)
    unhandled = _count(session, UnhandledWebhook)
    response = post_raw(client, raw)
    if not acceptable(body):
        assert response.status_code == 400, raw[:300]
        return
    assert response.status_code == 200, (response.status_code, raw[:300])
    check_stored(session, parse_json(raw), unhandled)


@st.composite
def damaged_bytes(draw: st.DrawFn) -> bytes:
    """A real delivery's bytes with bytes flipped, cut or inserted (mostly not JSON any more)."""
    raw = bytearray((FIXTURES / "whatsapp" / draw(st.sampled_from(FIXTURE_NAMES))).read_bytes())
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(raw)))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip" and at < len(raw):
            raw[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del raw[at:at + draw(st.integers(1, 50))]
        else:
            raw[at:at] = draw(st.binary(min_size=1, max_size=10))
    return bytes(raw)


@fuzz(150)
@given(st.binary(max_size=300) | damaged_bytes())
def test_any_signed_bytes_are_200_or_400_never_5xx(client, raw):
    response = post_raw(client, raw)
    try:
        _strict_json(raw)
        valid = True
    except (ValueError, UnicodeDecodeError, RecursionError):
        valid = False
    assert response.status_code == (200 if valid else 400), (response.status_code, raw[:200])


@fuzz(300)
@given(st.text("0123456789", max_size=18))
def test_a_phone_in_metas_digits_only_form_reads_as_the_same_number_spelt_with_spaces(digits):
    assert updates.normalize_phone(digits) == updates.normalize_phone(" ".join(digits))


@fuzz(100)
@given(json_values.filter(is_finite_json), st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32-le"]))
def test_json_bytes_in_any_encoding_json_loads_reads_are_read_alike(value, encoding):
    raw = json.dumps(value).encode(encoding)
    assert parse_json(raw) == json.loads(raw)


def _text_body(wamid: str, text: Any, junk: Any, extra: dict[str, Any]) -> dict[str, Any]:
    message = {**extra, "from": "905321234567", "id": wamid, "timestamp": str(int(time.time())), "type": "text",
               "text": {"body": text}}
    value = {"messaging_product": "whatsapp", "contacts": [{"profile": {"name": "Mehmet"}, "wa_id": "905321234567"}],
             "messages": [message]}
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}, *junk]}


@fuzz(150)
@given(any_text | st.text(max_size=2000), st.lists(json_values, max_size=3),
       st.dictionaries(st.text(max_size=10).filter(lambda k: k not in {"from", "id", "timestamp", "type", "text"}),
                       json_values, max_size=3))
def test_a_wellformed_message_among_junk_is_stored(client, session, text, junk, extra):
    """Any text (NUL, lone surrogates, emoji, combining marks), next to entries and keys we do not know."""
    wamid = f"wamid.FUZZ{next(_wamids)}"
    response = post_raw(client, json.dumps(_text_body(wamid, text, junk, extra)).encode())
    assert response.status_code == 200
    stored = session.scalar(select(Message.text).where(Message.wamid == wamid))
    assert stored == storable(text)  # NUL and lone surrogates become U+FFFD; everything else as sent


@pytest.mark.parametrize("depth, status", [(60, 200), (65, 400), (990, 400), (5000, 400)])
def test_a_body_nested_deeper_than_64_levels_is_a_400_not_a_500(client, session, depth, status):
    """Found by fuzzing: beyond Python's own limit `json.loads` raised RecursionError (a 500). A body
    nested deeper than 64 levels (Meta's nest about 8) is now malformed (400), which also keeps the
    recursive steps after parsing far from the limit."""
    raw = json.dumps({"entry": [{"changes": [{"field": "x", "value": {"deep": None}}]}]}).encode()
    raw = raw.replace(b"null", b"[" * (depth - 6) + b"]" * (depth - 6))
    assert post_raw(client, raw).status_code == status


def test_values_no_database_column_can_hold(client, session):
    """Found by fuzzing (500s, most on PostgreSQL only): NaN, NUL, lone surrogates, an integer error
    code beyond 32 bits, over-long ids and names. Refused as not JSON (NaN), or stored safely."""
    assert post_raw(client, b'{"object": "x", "entry": [{"changes": NaN}]}').status_code == 400
    for text, kept in (("a\x00b", "a\ufffdb"), ("\ud800", "\ufffd")):
        wamid = f"wamid.FUZZ{next(_wamids)}"
        assert post_raw(client, json.dumps(_text_body(wamid, text, [], {"x\x00": 1})).encode()).status_code == 200
        assert session.scalar(select(Message.text).where(Message.wamid == wamid)) == kept
    body = _text_body("wamid.BIGCODE", "hi", [], {"errors": [{"code": 2**40, "title": "t" * 400}]})
    body["entry"][0]["changes"][0]["value"]["contacts"][0]["profile"]["name"] = "n" * 300
    body["entry"][0]["changes"][0]["value"]["statuses"] = [{"id": "wamid.S" + "s" * 300, "status": "sent"},
                                                           {"id": "wamid.S1", "status": "failed",
                                                            "errors": [{"code": 10**12}]}]
    assert post_raw(client, json.dumps(body).encode()).status_code == 200
    row = session.scalar(select(Message).where(Message.wamid == "wamid.BIGCODE"))
    assert (row.error_code, len(row.error_title)) == (None, 300)
    assert session.scalar(select(MessageStatusEvent.error_code).where(MessageStatusEvent.wamid == "wamid.S1")) is None
    assert _count(session, UnhandledWebhook) >= 1  # the status with the over-long id


# --- the conversation behind the webhook: every message answered ----------------------------------------

REPLY_IDS = ["consent:yes", "consent:no", "menu:1", "menu:analyze", "crop:domates", "crop:other", "crop:",
             "location:skip", "submit:1", "submit:abc", "submit:", "details:1", "details:x", "lang:en", "cancel",
             # forged: beyond the id columns, digits int() refuses, wrong parts
             "result:details:99999999999999999999", "history:99999999999999999999", "result:details:²",
             "history:²", "submit:99999999999999999999", "result:details:1:2", "history:"]


@st.composite
def farmer_messages(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(["text", "interactive", "image", "location", "reaction", "audio", "unsupported",
                                 "button", "system", "other"]))
    text = draw(any_text | st.sampled_from(["menü", "İPTAL", "yardım", "kalan hakkım", "evet", "Gönder", "geç",
                                            "domates", "1", "2", "AGRI-7KQ3-M9XP", "verilerimi sil", "DUR"]))
    reply_id = draw(st.sampled_from(REPLY_IDS) | any_text)
    content: Any = {
        "text": {"body": text},
        "interactive": {"type": draw(st.sampled_from(["button_reply", "list_reply"])),
                        "button_reply": {"id": reply_id, "title": text}, "list_reply": {"id": reply_id, "title": text}},
        "image": {"id": draw(st.text("0123456789", min_size=1, max_size=20)), "mime_type": "image/jpeg",
                  "caption": text},
        "location": {"latitude": draw(numbers | any_text), "longitude": draw(numbers), "name": text,
                     "address": draw(any_text)},
        "reaction": {"message_id": "wamid.X", "emoji": text},
        "button": {"payload": reply_id, "text": text},
        "system": {"body": text},
    }.get(kind, draw(json_values))
    return kind, content


@fuzz(40)
@given(st.lists(farmer_messages(), min_size=1, max_size=3))
def test_every_message_from_a_farmer_is_processed_and_answered(app, session, messages):
    """Whatever a farmer (or anyone) sends, in whatever state the conversation is: the inbound job
    ends `processed` and at least one reply is queued (none for what is never answered). One farmer walks
    through the whole run, so the states change from example to example."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        farmer = Farmer(app, GraphStub(mock), queues=("inbound",))
        if _count(session, Message) == 0:
            with app.extensions["db"].session() as s, s.begin():
                quota.seed_tiers(s)
        for kind, content in messages:
            wamid = f"wamid.FUZZ{next(_wamids)}"
            farmer.timestamp += 1
            body = farmer.body({"from": farmer.phone, "id": wamid, "timestamp": str(farmer.timestamp),
                                "type": kind, kind: content})
            replies_before = session.scalar(select(func.count()).select_from(Message).where(Message.direction == "out"))
            assert post_raw(farmer.client, json.dumps(body).encode()).status_code == 200
            run_jobs(app, ("inbound",))
            status = session.scalar(select(Message.status).where(Message.wamid == wamid))
            replies_after = session.scalar(select(func.count()).select_from(Message).where(Message.direction == "out"))
            assert status == "processed", (kind, content)
            if kind == "image" and _in_an_album(session, wamid):
                continue  # an album's later photo: within the album window it joins quietly, later it is told;
                # before consent, beyond five, the limit is said once for the rest of that album
            # Meta's system notices and a reaction taken back (no emoji) are stored, not answered.
            unanswered = kind == "system" or (kind == "reaction" and not content.get("emoji"))
            assert (replies_after > replies_before) != unanswered, (kind, content)


def _in_an_album(session: Any, wamid: str) -> bool:
    """Whether the photo `wamid` is one of an album's later photos in the farmer's draft (or a pending one), or
    came after a full album kept before consent."""
    session.expire_all()
    message = session.scalar(select(Message).where(Message.wamid == wamid))
    conversation = session.scalar(select(ConversationRow).where(ConversationRow.farmer_id == message.farmer_id))
    data = conversation.data if conversation is not None else {}
    drafts = [data.get("draft") or {}, *(data.get("pending") or {}).values()]
    if (data.get("draft") or {}).get("limit_said"):
        return True
    return any(message.id == photo[0] for draft in drafts for photo in draft.get("more_photos") or [])


_farmer_numbers = itertools.count(1)
QUEUED = "sıraya alındı"
long_text = st.text(st.characters(codec="utf-8"), min_size=300, max_size=1024)


@fuzz(6)
@example(caption="domates " + "yaprakları sararıyor " * 48, place=None)  # found: 1,134 > 1,024 characters
@example(caption="domates", place=("N" * 200, "A" * 200))  # found: 402 > 300 characters (PostgreSQL)
@given(caption=st.none() | any_text | long_text,
       place=st.none() | st.tuples(any_text | long_text, any_text | long_text))
def test_a_submission_goes_through_whatever_the_farmer_wrote(app, session, caption, place):
    """The photo's caption (up to 1,024 characters on WhatsApp) and a shared place's name and address are
    echoed in the confirmation and kept on the analysis: any of them, however long, still leads to
    `Gönder` and a queued analysis. Before the fix a long caption made the confirmation break Meta's
    limit (the job failed, the farmer never heard back) and a long place broke the analysis insert."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        farmer = Farmer(app, GraphStub(mock), phone=f"9053100{next(_farmer_numbers):05d}", queues=("inbound",))
        if _count(session, Message) == 0:
            with app.extensions["db"].session() as s, s.begin():
                quota.seed_tiers(s)
        farmer.onboard()
        farmer.photo(caption)
        if any(b["type"] == "interactive" and b["interactive"]["type"] == "list" for b in farmer.last_bodies):
            farmer.taps("crop:domates")  # the caption named no crop: the crop question
        if place:
            farmer.location(39.93, 32.85, name=place[0] or "-", address=place[1])
        else:
            farmer.taps("Geç")
        assert any(QUEUED in reply for reply in farmer.taps("Gönder"))
    analysis = session.scalar(select(Analysis).where(Analysis.farmer_id == farmer_id_of(session, farmer.phone)))
    assert analysis.status == "queued" and len(analysis.location_text or "") <= 300


def farmer_id_of(session, phone: str) -> int:
    return session.scalar(select(FarmerRow.id).where(FarmerRow.phone == "+" + phone))


# --- (c) the Turkish normaliser and intents -------------------------------------------------------------

TURKISH = "İIıiŞşĞğÜüÖöÇçÂâÎîÛû"
turkish_text = st.text(st.sampled_from(TURKISH + "abcdeklmnprtyz 0123456789?!.,_-") | any_char, max_size=60)
huge_text = st.builds(lambda piece, n: piece * n, st.text(any_char, min_size=1, max_size=8), st.integers(5_000, 40_000))


@fuzz(500)
@given(any_text | turkish_text | st.text(max_size=300))
def test_fold_never_raises_and_is_idempotent(text):
    check_fold(text)


@fuzz(12)
@given(huge_text)
def test_fold_on_huge_messages(text):
    check_fold(text)


def check_fold(text: str) -> None:
    folded = fold(text)
    assert isinstance(folded, str)
    assert fold(folded) == folded  # found by fuzzing: styled letters (𝐈𝐏𝐓𝐀𝐋) came out capital, `a _ b` as `a   b`
    assert folded == folded.strip() and "  " not in folded
    assert intents.match(text) == intents.match(folded)
    assert intents.is_yes(text) == (folded in intents.YES)
    assert intents.is_no(text) == intents.is_no(folded) and intents.is_skip(text) == intents.is_skip(folded)


# What farmers type, with the intent it must keep however it is typed.
PHRASES: list[tuple[str, Intent]] = [
    ("menü", Intent.MENU), ("Ana menü", Intent.MENU), ("merhaba", Intent.GREETING), ("selam", Intent.GREETING),
    ("slm", Intent.GREETING), ("iyi günler", Intent.GREETING), ("teşekkürler", Intent.THANKS), ("sağol", Intent.THANKS),
    ("iptal", Intent.CANCEL), ("vazgeç", Intent.CANCEL), ("iptal et", Intent.CANCEL),
    ("yardım", Intent.HELP), ("yardım lazım", Intent.HELP), ("kota", Intent.QUOTA), ("kalan hakkım", Intent.QUOTA),
    ("kaç hakkım var", Intent.QUOTA), ("bugün kalan hakkım ne kadar", Intent.QUOTA), ("dil", Intent.LANGUAGE),
    ("türkçe", Intent.LANGUAGE), ("ingilizce", Intent.LANGUAGE), ("dur", Intent.OPT_OUT),
    ("abonelikten çık", Intent.OPT_OUT), ("başla", Intent.OPT_IN),
    ("son analizlerim", Intent.HISTORY), ("geçmiş", Intent.HISTORY), ("yeni analiz", Intent.ANALYZE),
    ("analiz gönder", Intent.ANALYZE), ("kod kullan", Intent.CODE), ("kupon", Intent.CODE),
    ("verilerimi sil", Intent.DELETE_DATA), ("lütfen verilerimi sil", Intent.DELETE_DATA),
    ("delete my data", Intent.DELETE_DATA), ("help", Intent.HELP), ("cancel", Intent.CANCEL),
    *intents.EXACT.items(),
    *((word, Intent.GREETING) for word in intents.GREETINGS),
    *((word, Intent.THANKS) for word in intents.THANKS),
]
# Spellings that fold to the same letter: Turkish and English keyboards, accents, styled text.
VARIANTS = {"i": "iıîíİIÍ", "g": "gğĞG", "u": "uüûúÜU", "s": "sşŞS", "o": "oöóÖO", "c": "cçÇC", "a": "aâáÂA",
            "ı": "ıiIİ", "ğ": "ğgĞG", "ü": "üuÜU", "ş": "şsŞS", "ö": "öoÖO", "ç": "çcÇC"}
COMBINING = ["\u0301", "\u0300", "\u0302", "\u0308", "\u0307", "\u0327", "\u0306"]
SEPARATORS = [" ", "  ", "\t", "\n", "\u00a0", " , ", " - ", "\u3000"]
DECORATIONS = ["", "!", "?", "...", " 🙏", "😊", "??", " :)", "\u200b"]


def _styled(c: str, style: int) -> str:
    """The same letter from a "fancy text" keyboard: mathematical bold (style 1) or full-width (2)."""
    if style == 0 or not (c.isascii() and c.isalpha()):
        return c
    offset = ord(c) - ord("A") if c.isupper() else 26 + ord(c) - ord("a")
    if style == 1:
        return chr(0x1D400 + offset)
    return chr((0xFF21 if c.isupper() else 0xFF41) + ord(c.lower()) - ord("a"))


@st.composite
def typed_like_a_farmer(draw: st.DrawFn) -> tuple[str, Intent]:
    phrase, intent = draw(st.sampled_from(PHRASES))
    words = []
    for word in phrase.split(" "):
        style = draw(st.sampled_from([0, 0, 0, 1, 2]))
        letters = []
        for c in word:
            c = draw(st.sampled_from(VARIANTS.get(c, c)))
            c = draw(st.sampled_from([c, c.upper() if c not in "iı" else {"i": "İ", "ı": "I"}[c], c.lower()]))
            c = _styled(c, style) if len(c) == 1 else c  # "İ".lower() is two characters
            letters.append(c + draw(st.sampled_from(["", "", "", *COMBINING])))
        words.append("".join(letters))
    separator = draw(st.sampled_from(SEPARATORS))
    return (draw(st.sampled_from(DECORATIONS)) + draw(st.sampled_from(["", " ", "  "])) + separator.join(words)
            + draw(st.sampled_from(["", " ", "\n"])) + draw(st.sampled_from(DECORATIONS))), intent


@fuzz(400)
@given(typed_like_a_farmer())
def test_known_phrases_survive_case_spacing_diacritics_and_styles(typed):
    text, intent = typed
    assert intents.match(text) is intent, (text, fold(text))
