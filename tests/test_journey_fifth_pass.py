"""The farmer's fifth pass: what an outside probe of the running service found. A language switch keeps the
submission; the welcome says a Trial started only when one did; a number, an emoji or a greeting is not a
crop or a place; `kod` in the middle of a submission has a way back; a code in the first refused photo's caption
is redeemed; and after a timeout the farmer hears one true sentence (send the photo again), on every tap. Pure
decisions first (bot/), then the same through signed webhooks and the real jobs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from bot import replies
from bot.types import Event, EventKind, SetLocale, State
from tests.journey import NOW, conv, photo, run, sent, tap, text

LATER = NOW + timedelta(minutes=41)  # the conversation (10 minutes left at NOW) has timed out


def location(mid: int = 1) -> Event:
    return Event(EventKind.LOCATION, mid, latitude=37.5, longitude=34.0)


# --- a language switch in the middle of a submission ---------------------------------------------------


@pytest.mark.parametrize("switch", [[text("English")], [text("dil"), tap("lang:en")]])
def test_a_language_switch_at_the_location_question_keeps_the_photo_and_asks_again_in_english(switch):
    step, c = run(conv(), photo(caption="domates"), *switch)
    assert SetLocale("en") in step.actions
    assert c.state is State.AWAIT_LOCATION and c.data.draft is not None and c.data.draft.crop == "domates"
    assert sent(step)[-1] == replies.ask_location("en").text
    skipped, c = run(replace(c, locale="en"), tap("location:skip"))
    assert c.state is State.CONFIRM and "did not understand" not in " ".join(sent(skipped))


def test_a_language_switch_at_the_crop_question_asks_the_crop_again_in_the_new_language():
    step, c = run(conv(), photo(), text("dil"))
    assert c.state is State.AWAIT_CROP and c.data.draft is not None  # the language buttons, the question stays open
    step, c = run(c, tap("lang:en"))
    assert sent(step) == [replies.language_set("en").text, replies.ask_crop("en").text]
    assert c.state is State.AWAIT_CROP and c.data.draft is not None


def test_a_language_chosen_from_the_menu_still_ends_in_the_menu():
    step, c = run(conv(), text("dil"), tap("lang:en"))
    assert c.state is State.MENU and SetLocale("en") in step.actions
