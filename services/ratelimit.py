"""A send rate limit shared by every process: sends spaced evenly, at most `limit` in any window.

Meta counts messages per second. A fixed one-second counter lets `2 x limit` through across the edge
of two seconds, and a token bucket `capacity + rate` in some second; both also let bursts through
that bunch up again on the way (a stalled process, a busy network) and arrive closer together than
they left. Here every send reserves the next free slot of an even schedule, one slot every
`window / limit` seconds, kept in one Redis key (a GCRA without burst). `limit + 1` slots then span
at least `window`, so no window of that length, sliding or fixed, ever holds more than `limit`
admissions, whichever process or machine asks. The caller sleeps until its slot and sends: one
Redis round trip per send, no polling. Time comes from the Redis server, so processes on different
machines share one clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from redis import Redis

# KEYS[1]: the time of the last slot given (microseconds, Redis clock).
# ARGV: interval (us), the longest wait the caller accepts (us), and optionally `now` (us; tests).
# Returns {0, slot, now} when a slot was reserved, {1, wait beyond the caller's limit} when not.
_SCRIPT = """
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local now
if ARGV[3] then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local last = tonumber(redis.call('GET', key) or '0')
local slot = math.max(now, last + interval)
if slot - now > max_wait then
  return {1, slot - now}
end
redis.call('SET', key, string.format('%d', slot), 'PX', math.ceil((slot - now + interval) / 1000) + 1000)
return {0, slot, now}
"""


class SlidingWindowLimiter:
    def __init__(self, redis: Redis, key: str, limit: int, window_seconds: float = 1.08, *,
                 clock: Callable[[], float] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        """At most `limit` sends in any `window_seconds`. The default window is 8% longer than Meta's
        second (80/s becomes one send every 13.5 ms, 74 a second): a send that reaches Meta up to 80 ms
        later than the one 80 slots after it (a stalled process, a busy network) still cannot make
        `limit + 1` in one of Meta's seconds. `clock` (seconds) replaces the Redis server's clock, and
        `sleep` the waiting, for tests."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.key = key
        self.limit = limit
        self.interval_us = math.ceil(window_seconds * 1_000_000 / limit)
        self.late_tolerance = max(0.0, window_seconds - 1.0) / 2
        self._clock = clock
        self._sleep = sleep
        self._script = redis.register_script(_SCRIPT)

    def reserve(self, max_wait: float) -> tuple[bool, float, float]:
        """Take the next free slot if it comes within `max_wait` seconds: (True, slot, seconds to wait
        for it), both on the Redis clock; else (False, 0.0, seconds until a slot would be free)."""
        args = [self.interval_us, int(max_wait * 1_000_000)]
        if self._clock is not None:
            args.append(int(self._clock() * 1_000_000))
        result = self._script(keys=[self.key], args=args)
        if int(result[0]):
            return False, 0.0, int(result[1]) / 1_000_000
        slot, now = int(result[1]), int(result[2])
        return True, slot / 1_000_000, (slot - now) / 1_000_000

    def acquire(self, timeout: float = 30.0) -> float:
        """Wait for the next free slot (at most `timeout` seconds: TimeoutError, nothing reserved);
        returns the admission time (Redis clock, seconds). A caller that wakes up late for its slot (a
        busy machine: more than half the window's margin) takes a new one rather than send late and
        squeeze against the sends after it."""
        deadline = time.monotonic() + timeout
        while True:
            taken, slot, wait = self.reserve(max(0.0, deadline - time.monotonic()))
            if not taken:
                raise TimeoutError(f"rate limit {self.key} has no free slot within {timeout} s")
            if wait <= 0:
                return slot
            due = time.monotonic() + wait
            self._sleep(wait)
            if time.monotonic() - due <= self.late_tolerance:
                return slot
