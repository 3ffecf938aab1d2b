"""The senders: due rows claimed in batches (the first of each farmer's line), sent concurrently under
the shared rate limit, against the Graph stand-in on a real port.

The rate limit is counted, never timed: the clients' limiters run on a frozen clock and do not sleep,
so every send's slot is recorded and the test checks how many slots any one-second window holds."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from app import create_app
from models import Farmer, Message, utcnow
from services.ratelimit import SlidingWindowLimiter
from services.whatsapp import messages as wa
from services.whatsapp.client import WhatsAppClient
from services.whatsapp.failures import PACE_SECONDS
from services.whatsapp.outbox import queue_message, settle, take_due, transmit
from services.whatsapp.sender import Sender
from tests.helpers import PHONE_NUMBER_ID, make_settings, send_due, send_outbox
from tests.stand_ins import SERVICE_ERROR, GraphStandIn

FARMERS = [f"+9053200000{i:02d}" for i in range(10)]
LIMIT = 10  # sends per second in these tests
FROZEN = 1_000_000.0  # the limiters' clock (seconds), never moving


class CountingLimiter(SlidingWindowLimiter):
    """The shared limiter on a frozen clock, without sleeping: it records the slot each send got."""

    def __init__(self, app: Flask, slots: list[float], lock: threading.Lock) -> None:
        super().__init__(app.extensions["redis"], "test:outbox:mps", LIMIT, 1.0, clock=lambda: FROZEN,
                         sleep=lambda seconds: None)
        self.slots, self.lock = slots, lock

    def acquire(self, timeout: float = 30.0) -> float:
        slot = super().acquire(timeout=3600)  # the frozen clock never catches up with the slots
        with self.lock:
            self.slots.append(slot)
        return slot


@pytest.fixture
def graph(http_stand_in) -> GraphStandIn:
    return http_stand_in(GraphStandIn(keep_alive=True))


@pytest.fixture
def slots() -> list[float]:
    return []


def use_stand_in(app: Flask, graph: GraphStandIn, slots: list[float], lock: threading.Lock) -> None:
    """The app's client sends to the stand-in through a limiter of its own (as another process would have),
    sharing the limit's Redis key with the others."""
    app.extensions["whatsapp"] = WhatsAppClient(graph.base, "test-token-abc", PHONE_NUMBER_ID,
                                                CountingLimiter(app, slots, lock))


@pytest.fixture
def sending(app, graph, slots) -> GraphStandIn:
    use_stand_in(app, graph, slots, threading.Lock())
    return graph


def queue(app, replies: list[tuple[str, str]]) -> list[int]:
    """Queue (phone, text) replies in one transaction, in this order; their ids."""
    with app.extensions["db"].session() as s, s.begin():
        return [queue_message(s, phone, wa.text(phone, text), utcnow()).id for phone, text in replies]


def texts_to(graph: GraphStandIn, phone: str) -> list[str]:
    return [body["text"]["body"] for body in graph.sent_to(phone)]


def rows(app, ids: list[int]) -> list[Message]:
    with app.extensions["db"].reader() as s:
        return list(s.scalars(select(Message).where(Message.id.in_(ids)).order_by(Message.id)))


def busiest_second(slots: list[float]) -> int:
    """The most slots inside any window [t, t + 1 s) that starts at a slot."""
    ordered = sorted(slots)
    return max(sum(1 for s in ordered[i:] if s - start < 1.0) for i, start in enumerate(ordered))


def test_a_batch_takes_only_the_first_reply_of_each_farmers_line(app, sending):
    a, b = FARMERS[:2]
    ids = queue(app, [(a, "a1"), (a, "a2"), (b, "b1"), (a, "a3"), (b, "b2")])
    first = take_due(100)
    assert sorted(out.message_id for out in first.sends) == [ids[0], ids[2]]  # a1 and b1: one per farmer
    assert take_due(100).sends == []  # the next ones wait behind the two in flight

    assert settle([transmit(app.extensions["whatsapp"], app.extensions["redis"], out)
                   for out in first.sends]) == ["sent", "sent"]
    assert sorted(out.message_id for out in take_due(100).sends) == [ids[1], ids[4]]  # a2 and b2


def test_the_concurrent_sender_keeps_each_farmers_replies_in_order(app, sending, slots):
    replies = [(phone, f"{phone[-2:]} #{n}") for n in range(4) for phone in FARMERS]
    ids = queue(app, replies)
    sender = Sender(concurrency=6)
    try:
        for _ in range(500):
            if not sender.turn():
                break
    finally:
        sender.close()
    for phone in FARMERS:
        assert texts_to(sending, phone) == [f"{phone[-2:]} #{n}" for n in range(4)]
    assert {r.status for r in rows(app, ids)} == {"accepted"}
    assert len({r.wamid for r in rows(app, ids)}) == len(ids)  # each sent once, with its own wamid
    assert len(slots) == len(ids)  # every send took a slot of the shared limit


def test_two_senders_together_never_get_more_than_the_limit_in_any_second(app, graph, slots, database_url):
    """Two senders (each with its own app, client and limiter, as two processes would have), each
    sending its batches through a pool of 4 threads, share one limit of 10/s through Redis."""
    other = create_app(make_settings(database_url))
    lock = threading.Lock()
    use_stand_in(app, graph, slots, lock)
    use_stand_in(other, graph, slots, lock)
    ids = queue(app, [(phone, f"{phone[-2:]} #{n}") for n in range(3) for phone in FARMERS])

    def sender(flask_app: Flask) -> None:
        with flask_app.app_context(), ThreadPoolExecutor(4) as pool:
            while send_due(limit=5, pool=pool):
                pass

    threads = [threading.Thread(target=sender, args=(a,)) for a in (app, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    send_outbox(app)  # what one sender left while the other still had the line's head in flight
    other.extensions["db"].engine.dispose()

    assert len(graph.sent) == len(ids) == len(slots)  # each sent once, each through the limiter
    assert busiest_second(slots) == LIMIT  # never more (and the limit is reached)
    assert len(set(slots)) == len(slots)
    for phone in FARMERS:
        assert texts_to(graph, phone) == [f"{phone[-2:]} #{n}" for n in range(3)]


def test_a_failed_send_in_a_batch_does_not_hold_back_other_farmers(app, sending):
    a, b = FARMERS[:2]
    sending.scripts = {a[1:]: [SERVICE_ERROR]}  # Graph refuses a's first send once (500, 131000)
    a1, a2, b1, b2 = queue(app, [(a, "a1"), (a, "a2"), (b, "b1"), (b, "b2")])
    with ThreadPoolExecutor(4) as pool:
        assert send_due(pool=pool) == 2
        first, second, other = rows(app, [a1, a2, b1])
        assert (first.status, first.error_code, first.attempts) == ("pending", 131000, 1)  # to be retried
        assert second.status == "pending" and second.attempts == 0  # waits behind it
        assert other.status == "accepted"  # b's reply went meanwhile
        assert texts_to(sending, b) == ["b1"] and texts_to(sending, a) == []

        send_due(pool=pool)  # the retry is due at once (the tests' backoff base is 0), and b2
    send_outbox(app)
    assert texts_to(sending, a) == ["a1", "a2"]
    assert texts_to(sending, b) == ["b1", "b2"]
    assert {r.status for r in rows(app, [a1, a2, b1, b2])} == {"accepted"}


def test_a_paced_farmer_still_gets_one_message_per_6_s_from_a_batch(app, sending):
    paced, free = FARMERS[:2]
    now = utcnow()
    with app.extensions["db"].session() as s, s.begin():
        s.add(Farmer(phone=paced, consent_at=now, consent_version="v1", last_inbound_at=now, created_at=now,
                     updated_at=now, paced_until=now + timedelta(hours=1)))  # Meta answered 131056 lately
    p2 = queue(app, [(paced, "p1"), (paced, "p2"), (free, "f1"), (free, "f2")])[1]
    before = utcnow()
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            send_due(pool=pool)
    assert texts_to(sending, paced) == ["p1"]  # the second waits for the farmer's 6 s
    assert texts_to(sending, free) == ["f1", "f2"]
    [waiting] = rows(app, [p2])
    assert waiting.status == "pending" and waiting.attempts == 0
    assert before + timedelta(seconds=PACE_SECONDS - 1) < waiting.next_attempt_at  # type: ignore[operator]
    assert waiting.next_attempt_at <= utcnow() + timedelta(seconds=PACE_SECONDS)  # type: ignore[operator]


def test_the_batch_of_a_sender_killed_mid_send_is_recovered_once_its_leases_expired(app, sending):
    """A sender claimed a batch of two, sent one (Graph answered, the wamid reached Redis) and died
    before recording anything (SIGKILL). Once the leases expire, the next sender records the sent one
    from Redis without sending it again, and sends the other."""
    a, b = FARMERS[:2]
    ids = queue(app, [(a, "a1"), (b, "b1")])
    batch = take_due(100)
    sent = transmit(app.extensions["whatsapp"], app.extensions["redis"],
                    next(out for out in batch.sends if out.message_id == ids[0]))
    assert sent.wamid is not None  # ... and here the process was killed
    assert send_due() == 0  # both rows are still held by the dead sender's leases
    with app.extensions["db"].session() as s, s.begin():
        for row in s.scalars(select(Message).where(Message.id.in_(ids))):
            row.lease_until = utcnow() - timedelta(seconds=1)  # SEND_LEASE_SECONDS later
    send_outbox(app)
    assert texts_to(sending, a) == ["a1"] and texts_to(sending, b) == ["b1"]  # each once
    first, second = rows(app, ids)
    assert (first.status, first.wamid) == ("accepted", sent.wamid)
    assert second.status == "accepted" and second.wamid not in (None, sent.wamid)


# --- the limiter, on a clock the test moves ------------------------------------------------------------


def limiters(app, now: list[float], count: int = 2) -> list[SlidingWindowLimiter]:
    """`count` limiters sharing one key (as many processes would), on the clock `now[0]`."""
    return [SlidingWindowLimiter(app.extensions["redis"], "test:limit", LIMIT, 1.0, clock=lambda: now[0],
                                 sleep=lambda seconds: None) for _ in range(count)]


def test_a_burst_across_the_edge_of_a_second_still_gets_no_more_than_the_limit_in_any_second(app):
    """A counter per calendar second would let 2 x 10 through in 2 ms here (10 at 0.999, 10 at 1.001)."""
    now = [100.999]
    first, second = limiters(app, now)
    slots = [first.acquire(timeout=60) for _ in range(LIMIT)]
    now[0] = 101.001
    slots += [second.acquire(timeout=60) for _ in range(LIMIT)]
    assert busiest_second(slots) == LIMIT
    assert slots == sorted(slots) and slots[LIMIT] - slots[0] >= 1.0  # the 11th a whole second after the first


def test_the_limiter_spaces_sends_evenly_and_lets_an_idle_sender_go_at_once(app):
    now = [500.0]
    first, second = limiters(app, now)
    assert first.reserve(0.0) == (True, 500.0, 0.0)
    taken, _, wait = second.reserve(0.0)  # the other "process" must wait a tenth of a second
    assert (taken, round(wait, 6)) == (False, 0.1)
    now[0] = 500.1
    assert second.reserve(0.0) == (True, 500.1, 0.0)
    now[0] = 600.0  # idle for long: no backlog of slots, no burst either
    assert [first.acquire(timeout=1) for _ in range(3)] == [600.0, 600.1, 600.2]


def test_a_sender_that_would_wait_longer_than_its_timeout_reserves_nothing(app):
    now = [700.0]
    [limiter] = limiters(app, now, count=1)
    for _ in range(LIMIT):
        limiter.acquire(timeout=5)  # slots up to 700.9
    with pytest.raises(TimeoutError):
        limiter.acquire(timeout=0.5)  # the next is 1.0 s away
    assert limiter.acquire(timeout=5) == pytest.approx(701.0)  # nothing was taken by the refusal


def test_a_sender_that_wakes_up_late_for_its_slot_takes_a_new_one_instead_of_sending_late(app):
    """Woken 200 ms after its slot (a busy machine), a send would squeeze against the ones after it."""
    oversleep = [0.2]

    def sleep(seconds: float) -> None:
        time.sleep(seconds + (oversleep.pop() if oversleep else 0.0))

    limiter = SlidingWindowLimiter(app.extensions["redis"], "test:late", LIMIT, 1.08, clock=lambda: 900.0,
                                   sleep=sleep)
    assert limiter.acquire() == 900.0
    assert limiter.acquire() == pytest.approx(900.0 + 2 * 0.108)  # its first slot (900.108) was given up
