"""The shared circuit breaker: state in Redis, Redis clock, one half-open probe at a time.

Time is tested with a short cool-down (0.2 s): tests poll until the breaker itself says it has
passed (never a fixed sleep that hopes it has), except where time passing is the subject; nothing
asserts how long anything took. With TEST_REDIS_URL set the same tests run against a real Redis server.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator

import fakeredis
import pytest
from redis import Redis

from services.circuit import KEY_PREFIX, CircuitBreaker
from tests.helpers import wait_until

# Long enough that no pause of a busy CI machine between two calls outlasts it (a test would then see the
# breaker a cool-down later than it asks about), short enough to wait for.
COOLDOWN = 1.0
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "")  # as in conftest, without importing the app


def past_cooldown(breaker: CircuitBreaker) -> None:
    """Wait until the cool-down (or the probe's slot) has passed on the Redis clock: `retry_after()`
    reads 0 (a peek, which changes nothing)."""
    wait_until(lambda: breaker.retry_after() == 0, timeout=COOLDOWN + 10, interval=0.01, what="the cool-down")


@pytest.fixture
def connect() -> Iterator:
    """A factory of Redis clients that all talk to the same server."""
    if TEST_REDIS_URL:
        clients: list[Redis] = []

        def make() -> Redis:
            clients.append(Redis.from_url(TEST_REDIS_URL))
            return clients[-1]

        yield make
        for c in clients:
            c.close()
    else:
        server = fakeredis.FakeServer()
        yield lambda: fakeredis.FakeRedis(server=server)


@pytest.fixture
def name(connect) -> Iterator[str]:
    value = f"test-{uuid.uuid4().hex[:8]}"
    yield value
    connect().delete(KEY_PREFIX + value)


def make(connect, name: str, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker(connect(), name, failure_threshold=threshold, cooldown_seconds=COOLDOWN)


def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()
    assert breaker.state() == "open"


def test_closed_allows_and_reports_zero_wait(connect, name) -> None:
    breaker = make(connect, name)
    assert breaker.allow()
    assert breaker.state() == "closed"
    assert breaker.retry_after() == 0


def test_threshold_of_consecutive_failures_opens(connect, name) -> None:
    breaker = make(connect, name, threshold=3)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state() == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state() == "open"
    assert not breaker.allow()
    assert 0 < breaker.retry_after() <= COOLDOWN
    assert connect().exists(f"ziraai:circuit:{name}")


def test_a_success_resets_the_count(connect, name) -> None:
    breaker = make(connect, name, threshold=3)
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state() == "closed"
    breaker.record_failure()
    assert breaker.state() == "open"


def test_open_denies_everyone_until_the_cooldown(connect, name) -> None:
    breaker = make(connect, name)
    open_breaker(breaker)
    assert [breaker.allow() for _ in range(5)] == [False] * 5
    assert breaker.state() == "open"


def test_after_the_cooldown_exactly_one_probe(connect, name) -> None:
    breaker = make(connect, name)
    open_breaker(breaker)
    past_cooldown(breaker)
    assert breaker.state() == "half_open"
    assert breaker.retry_after() == 0  # a probe may go now
    assert breaker.allow()  # the probe
    assert [breaker.allow() for _ in range(5)] == [False] * 5
    assert breaker.state() == "half_open"
    assert 0 < breaker.retry_after() <= COOLDOWN


def test_concurrent_callers_get_one_probe(connect, name) -> None:
    open_breaker(make(connect, name))
    past_cooldown(make(connect, name))
    breakers = [make(connect, name) for _ in range(20)]
    barrier = threading.Barrier(len(breakers))
    results: list[bool] = []

    def call(b: CircuitBreaker) -> None:
        barrier.wait()
        results.append(b.allow())

    threads = [threading.Thread(target=call, args=(b,)) for b in breakers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 19 + [True]


def test_a_successful_probe_closes_the_breaker_and_clears_redis(connect, name) -> None:
    breaker = make(connect, name)
    open_breaker(breaker)
    past_cooldown(breaker)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state() == "closed"
    assert breaker.retry_after() == 0
    assert all(breaker.allow() for _ in range(5))
    assert not connect().exists(breaker.key)  # closed and clean: nothing left in Redis
    # the count starts again from zero
    breaker.record_failure()
    assert breaker.state() == "closed"


def test_probe_failure_reopens_with_a_fresh_cooldown(connect, name) -> None:
    breaker = make(connect, name)
    open_breaker(breaker)
    past_cooldown(breaker)
    assert breaker.allow()
    breaker.record_failure()  # a single failure: the probe's
    assert breaker.state() == "open"
    assert not breaker.allow()
    assert 0 < breaker.retry_after() <= COOLDOWN
    past_cooldown(breaker)
    assert breaker.allow()  # a new probe after the new cool-down


def test_an_unreported_probe_expires(connect, name) -> None:
    breaker = make(connect, name)
    open_breaker(breaker)
    past_cooldown(breaker)
    assert breaker.allow()  # the probe's worker dies and never reports
    assert not breaker.allow()
    past_cooldown(breaker)
    assert breaker.state() == "half_open"
    assert breaker.allow()  # the slot expired: another probe
    assert not breaker.allow()


def test_a_longer_probe_slot_keeps_a_slow_probe_alone(connect, name) -> None:
    breaker = CircuitBreaker(connect(), name, failure_threshold=1, cooldown_seconds=COOLDOWN, probe_seconds=30)
    breaker.record_failure()
    past_cooldown(breaker)
    assert breaker.allow()  # the probe: a slow N8N call
    time.sleep(COOLDOWN + 0.1)  # a whole cool-down passes: the subject
    assert not breaker.allow()  # its slot lasts probe_seconds, not the cool-down
    assert breaker.state() == "half_open"
    assert COOLDOWN < breaker.retry_after() <= 30
    breaker.record_failure()  # the probe finally fails: a normal cool-down again
    assert breaker.state() == "open" and breaker.retry_after() <= COOLDOWN


def test_a_stray_failure_while_open_does_not_extend_the_cooldown(connect, name) -> None:
    breaker = make(connect, name)
    open_breaker(breaker)
    time.sleep(COOLDOWN / 2)
    breaker.record_failure()  # a request that started before the breaker opened
    assert breaker.retry_after() <= COOLDOWN / 2  # the cool-down still ends when it would have
    past_cooldown(breaker)
    assert breaker.allow()


def test_two_breaker_objects_share_state(connect, name) -> None:
    worker_a = make(connect, name, threshold=2)
    worker_b = make(connect, name, threshold=2)
    worker_a.record_failure()
    worker_b.record_failure()  # consecutive across processes
    assert worker_a.state() == worker_b.state() == "open"
    assert not worker_b.allow()
    past_cooldown(worker_a)
    assert worker_a.allow()  # a's probe
    assert not worker_b.allow()  # b waits for it
    worker_a.record_success()
    assert worker_b.state() == "closed" and worker_b.allow()


def test_breakers_with_different_names_are_independent(connect, name) -> None:
    breaker = make(connect, name, threshold=1)
    other = make(connect, name + "-other", threshold=1)
    breaker.record_failure()
    assert breaker.state() == "open"
    assert other.state() == "closed" and other.allow()


def test_acquire_reports_the_wait(connect, name) -> None:
    breaker = make(connect, name)
    assert breaker.acquire() == (True, 0.0)
    open_breaker(breaker)
    allowed, wait = breaker.acquire()
    assert not allowed and 0 < wait <= COOLDOWN


def test_a_reset_closes_an_open_breaker(connect, name) -> None:
    breaker = make(connect, name)
    open_breaker(breaker)
    breaker.reset()
    assert breaker.state() == "closed"


@pytest.mark.parametrize("kwargs", [{"failure_threshold": 0}, {"cooldown_seconds": 0}, {"probe_seconds": -1}])
def test_the_breaker_refuses_settings_out_of_range(kwargs) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(fakeredis.FakeRedis(), "x", **kwargs)
