"""The pure conversation in a test: a farmer's conversation, the events they cause and the steps the state
machine answers with, at a fixed time (no database, no HTTP; `tests/chat.py` is the same through webhooks)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot import machine, reply_ids
from bot.draft import ConversationData
from bot.types import Conversation, Event, EventKind, QuotaBlock, Send, State, Step

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
DAILY = QuotaBlock("daily", datetime(2026, 11, 22, 21, 0, tzinfo=UTC))  # today's analysis used, a code helps


def conv(state: State = State.MENU, data: ConversationData | None = None, consented: bool = True,
         locale: str = "tr", opted_out: bool = False) -> Conversation:
    return Conversation(state, data or ConversationData(), locale, consented, NOW + timedelta(minutes=10),
                        opted_out=opted_out)


def photo(mid: int = 7, at: float = 0, caption: str | None = None, quota: QuotaBlock | None = None) -> Event:
    """A photo sent `at` seconds after NOW; `quota`: what would refuse its analysis, as the job finds it."""
    return Event(EventKind.PHOTO, mid, text=caption, media_id=f"m{mid}", message_type="image",
                 sent_at=NOW + timedelta(seconds=at), quota=quota)


def text(t: str, mid: int = 1, quota: QuotaBlock | None = None) -> Event:
    """`quota`: what would refuse an analysis, as the job finds it while a submission waits for a code."""
    return Event(EventKind.TEXT, mid, text=t, quota=quota)


def tap(reply_id: str, mid: int = 1) -> Event:
    return Event(EventKind.REPLY, mid, reply=reply_ids.parse(reply_id))


def sent(step: Step) -> list[str]:
    """The texts the step sends, in order."""
    return [a.reply.text for a in step.actions if isinstance(a, Send)]


def run(c: Conversation, *events: Event, now: datetime = NOW):  # unannotated return: tests read drafts freely
    """The steps of `events` one after another, as the job stores each step's state and data: the last step
    and the conversation it leaves."""
    step = None
    for event in events:
        step = machine.step(c, event, now)
        c = replace(c, state=step.state, data=step.data)
    assert step is not None
    return step, c
