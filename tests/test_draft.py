"""The conversation's memory (bot/draft.py): one JSON shape on the row, read back tolerantly."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.draft import ConversationData, Draft, from_json, to_json

texts = st.none() | st.text(max_size=20)
coords = st.none() | st.floats(-90, 90, allow_nan=False)
drafts = st.builds(Draft, st.integers(1, 2**63 - 1), texts, texts, texts, coords, coords, texts)


@given(st.none() | drafts, st.lists(drafts, max_size=5, unique_by=lambda d: d.photo_message_id))
def test_conversation_data_survives_a_json_round_trip(draft: Draft | None, pending: list[Draft]) -> None:
    data = ConversationData(draft, tuple(pending))
    assert from_json(to_json(data)) == data


def test_the_stored_shape_is_the_one_older_releases_read() -> None:
    draft = Draft(7, media_id="m1", notes="sarı", crop="domates", location_text="Kumluca")
    stored = to_json(ConversationData(draft, (draft,)))
    entry = {"photo_message_id": 7, "media_id": "m1", "notes": "sarı", "crop": "domates", "latitude": None,
             "longitude": None, "location_text": "Kumluca"}
    assert stored == {"pending": {"7": entry}, "draft": entry}
    assert to_json(ConversationData()) == {}


OLD_ROWS: list[tuple[Any, ConversationData]] = [
    (None, ConversationData()),
    ({}, ConversationData()),
    ([], ConversationData()),
    ({"draft": {"photo_message_id": 1}}, ConversationData(Draft(1))),
    ({"draft": {"photo_message_id": 3, "media_id": "m", "notes": None, "crop": None}},
     ConversationData(Draft(3, media_id="m"))),
    ({"draft": {"photo_message_id": 3, "crop": "biber", "colour": "red"}, "step": 2},  # unknown keys
     ConversationData(Draft(3, crop="biber"))),
    ({"draft": {"crop": "biber"}}, ConversationData()),  # no photo: nothing to submit
    ({"draft": {"photo_message_id": True}}, ConversationData()),
    ({"draft": {"photo_message_id": 5, "latitude": "36.1", "crop": 4}}, ConversationData(Draft(5))),
    ({"draft": "x", "pending": []}, ConversationData()),
    ({"pending": {"9": {"photo_message_id": 9, "crop": "elma"}, "4": {"crop": "zeytin"}, "x": {}, "5": "y"}},
     ConversationData(pending=(Draft(9, crop="elma"), Draft(4, crop="zeytin")))),
]


@pytest.mark.parametrize(("stored", "expected"), OLD_ROWS)
def test_rows_of_older_releases_are_read(stored: Any, expected: ConversationData) -> None:
    assert from_json(stored) == expected


def test_pending_keeps_its_order_and_its_limit() -> None:
    data = ConversationData()
    for n in range(1, 5):
        data = data.with_pending(Draft(n), limit=3)
    assert [d.photo_message_id for d in data.pending] == [2, 3, 4]
    data = data.with_pending(Draft(3, crop="elma"), limit=3)  # again: stays in its place
    assert data.pending == (Draft(2), Draft(3, crop="elma"), Draft(4))
    assert data.pending_draft(3) == Draft(3, crop="elma") and data.pending_draft(1) is None
    assert data.without_pending(3).pending == (Draft(2), Draft(4))
    assert ConversationData(Draft(8), data.pending).keep_pending() == ConversationData(pending=data.pending)
