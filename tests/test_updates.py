"""The webhook parser: typed updates from every shape, never an exception."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from services.whatsapp.updates import (
    MessageType,
    PreferenceValue,
    StatusKind,
    normalize_phone,
    parse_every_change,
    parse_single_message,
    parse_webhook,
)
from tests.helpers import FIXTURES, fixture_json


@pytest.mark.parametrize("raw,expected", [
    ("905321234567", "+905321234567"),
    ("+90 532 123 45 67", "+905321234567"),
    ("0090 532 123 4567", "+905321234567"),
    ("12345", None),
    ("", None),
    (None, None),
    ("1" * 16, None),
    ("٩٠٥٣٢١٢٣٤٥٦٧", None),  # Arabic-Indic digits: Meta sends ASCII, so not a number of ours
    ("９０５３２１２３４５６７", None),  # full-width
    ("+90 532 ۱۲۳ 45 67", None),  # Persian digits among ASCII ones
])
def test_phone_numbers_normalise_to_e164_or_none(raw, expected):
    assert normalize_phone(raw) == expected


def test_interactive_and_template_replies():
    [button] = parse_webhook(fixture_json("button_reply.json")).messages
    assert (button.type, button.reply_id, button.text) == (MessageType.BUTTON_REPLY, "menu:analyze", "Analiz gönder")
    assert button.context_wamid == "wamid.HBgMOTA1MzIxMjM0NTY3FQIAEhggT1VUR09JTkcwMDAx"
    [row] = parse_webhook(fixture_json("list_reply.json")).messages
    assert (row.type, row.reply_id) == (MessageType.LIST_REPLY, "crop:domates")
    [quick] = parse_webhook(fixture_json("template_quick_reply.json")).messages
    assert (quick.type, quick.reply_id, quick.text) == (MessageType.BUTTON, "result:details", "Detaylar")


def test_a_location_and_an_image_are_parsed_into_their_fields():
    [loc] = parse_webhook(fixture_json("location_current.json")).messages
    assert (loc.latitude, loc.longitude, loc.location_name) == (38.4192, 27.1287, None)
    [img] = parse_webhook(fixture_json("image_with_caption.json")).messages
    assert (img.type, img.media_id, img.mime_type, img.text) == (
        MessageType.IMAGE, "1234567890123456", "image/jpeg", "domates yaprakları sararıyor")


def test_a_failed_status_is_parsed_with_its_code_and_recipient():
    [failed] = parse_webhook(fixture_json("status_failed_window.json")).statuses
    assert (failed.status, failed.error_code, failed.recipient) == (StatusKind.FAILED, 131047, "+905321234567")


@pytest.mark.parametrize("number_id,expected", [
    ("106540352242922", "106540352242922"),
    (999999999999, "999999999999"),  # a JSON number: its digits, never "no metadata"
    (None, None),  # absent: our default number
    (True, "<bool>"),
    (1.5, "<float>"),
    ({"id": "106540352242922"}, "<dict>"),
])
def test_the_number_a_message_was_written_to_is_read_as_text_whatever_its_json_type(number_id, expected):
    body = fixture_json("text.json")
    body["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = number_id
    fast = parse_single_message(body)
    assert fast is not None and fast.messages[0].phone_number_id == expected
    assert parse_every_change(body).messages[0].phone_number_id == expected


def test_a_value_level_error_keeps_a_numeric_phone_number_id_as_its_digits():
    body = fixture_json("value_errors_only.json")
    body["entry"][0]["changes"][0]["value"]["metadata"] = {"phone_number_id": 106540352242922}
    assert {e.phone_number_id for e in parse_webhook(body).errors} == {"106540352242922"}


@pytest.mark.parametrize("item,phone,user_id", [
    ({"wa_id": "905321234567"}, "+905321234567", None),
    ({"user_id": "TR.Sync62User1"}, None, "TR.Sync62User1"),
    ({"wa_id": "905321234567", "user_id": "TR.Sync62User1", "parent_user_id": "TR.ENT.1"},
     "+905321234567", "TR.Sync62User1"),
])
def test_a_user_preference_names_the_farmer_by_phone_by_user_id_or_both(item, phone, user_id):
    body = fixture_json("user_preferences_marketing.json")
    body["entry"][0]["changes"][0]["value"]["user_preferences"] = [
        {**item, "category": "marketing_messages", "value": "stop", "timestamp": 1764990100}]
    parsed = parse_webhook(body)
    assert parsed.problems == []
    [preference] = parsed.preferences
    assert (preference.phone, preference.user_id, preference.value) == (phone, user_id, PreferenceValue.STOP)


def test_a_user_preference_naming_nobody_is_a_problem():
    body = fixture_json("user_preferences_marketing.json")
    body["entry"][0]["changes"][0]["value"]["user_preferences"] = [
        {"wa_id": "not a phone", "user_id": "nobody", "category": "marketing_messages", "value": "stop"}]
    parsed = parse_webhook(body)
    assert parsed.preferences == [] and parsed.problems[0].reason.startswith("user preference without")


def test_unknown_values_fall_back_to_unknown():
    body = fixture_json("text.json")
    msg = body["entry"][0]["changes"][0]["value"]["messages"][0]
    msg["type"] = "hologram"
    [parsed] = parse_webhook(body).messages
    assert parsed.type is MessageType.UNKNOWN
    body = fixture_json("status_read.json")
    body["entry"][0]["changes"][0]["value"]["statuses"][0]["status"] = "teleported"
    assert parse_webhook(body).statuses[0].status is StatusKind.UNKNOWN


def _mutations(value, rng):
    """Replace one node of a JSON document with something of another shape."""
    junk = [None, 0, -1, 1.5, "", "x", [], {}, [None], {"a": None}, True]
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        copy = dict(value)
        copy[key] = rng.choice(junk) if rng.random() < 0.4 else _mutations(value[key], rng)
        return copy
    if isinstance(value, list) and value:
        i = rng.randrange(len(value))
        items = list(value)
        items[i] = rng.choice(junk) if rng.random() < 0.4 else _mutations(value[i], rng)
        return items
    return rng.choice(junk)


def test_parser_never_raises_on_damaged_fixtures():
    rng = random.Random(1234)
    bodies = [json.loads(p.read_text()) for p in sorted((FIXTURES / "whatsapp").glob("*.json"))]
    for _ in range(3000):
        parsed = parse_webhook(_mutations(rng.choice(bodies), rng))
        for m in parsed.messages:
            assert m.wamid and m.phone and m.phone.startswith("+")


@pytest.mark.parametrize("value", ["voice", "", None, 5, [], {}, "TEXT", "text "])
def test_an_unknown_type_or_status_is_unknown_never_an_error(value):
    assert MessageType(value) is MessageType.UNKNOWN
    assert StatusKind(value) is StatusKind.UNKNOWN
    assert MessageType("text") is MessageType.TEXT and StatusKind("read") is StatusKind.READ


@pytest.mark.parametrize("timestamp", ["0", "946684799", "7258118400", "32503680000", "253402300800", "-1", "1e3"])
def test_a_message_timestamp_outside_this_era_or_unreadable_is_no_timestamp(timestamp):
    body = fixture_json("text.json")
    body["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = timestamp
    [message] = parse_every_change(body).messages
    assert message.timestamp is None


def test_a_message_timestamp_of_this_era_is_read_in_utc():
    [message] = parse_webhook(fixture_json("text.json")).messages
    assert message.timestamp is not None and message.timestamp.isoformat() == "2025-11-22T02:53:20+00:00"


def test_a_time_later_than_the_delivery_beyond_a_clocks_skew_is_taken_as_the_delivery_time():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    body = fixture_json("text.json")
    [message] = body["entry"][0]["changes"][0]["value"]["messages"]
    for seconds_ahead, read_as in ((299, now + timedelta(seconds=299)), (301, now), (10**9, now)):
        message["timestamp"] = str(int(now.timestamp()) + seconds_ahead)
        assert parse_webhook(body, now).messages[0].timestamp == read_as
        assert parse_every_change(body, now).messages[0].timestamp == read_as
    status = fixture_json("status_read.json")
    status["entry"][0]["changes"][0]["value"]["statuses"][0]["timestamp"] = "4102444800"
    assert parse_webhook(status, now).statuses[0].timestamp == now
    assert parse_webhook(status).statuses[0].timestamp == datetime(2100, 1, 1, tzinfo=UTC)  # no `now`: as sent
