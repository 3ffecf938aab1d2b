"""A rate limit shared by every process: a sliding one-second window kept in Redis.

A token bucket lets `capacity + rate` through in some one-second windows; Meta counts per second,
so we keep the exact log of the last second's sends (a sorted set, at most `rate` entries) and
admit a send only while fewer than `rate` are in it. Time comes from the Redis server, so
processes on different machines share one clock.
"""

from __future__ import annotations

import time

from redis import Redis

_SCRIPT = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
  local seq = redis.call('INCR', key .. ':seq')
  redis.call('ZADD', key, now, now .. '-' .. seq)
  redis.call('PEXPIRE', key, math.ceil(window / 1000) + 1000)
  redis.call('PEXPIRE', key .. ':seq', math.ceil(window / 1000) + 1000)
  return {0, now}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {1, math.max(1, tonumber(oldest[2]) + window - now)}
"""


class SlidingWindowLimiter:
    def __init__(self, redis: Redis, key: str, limit: int, window_seconds: float = 1.05) -> None:
        """The default window is 5% longer than Meta's second, so network jitter between us and
        Meta cannot squeeze `limit + 1` sends into one of Meta's seconds."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.key = key
        self.limit = limit
        self.window_us = int(window_seconds * 1_000_000)
        self._script = redis.register_script(_SCRIPT)

    def try_acquire(self) -> tuple[bool, float]:
        """(True, admission time in Redis seconds) if a slot was taken, else (False, seconds to wait)."""
        full, value = self._script(keys=[self.key], args=[self.limit, self.window_us])
        return not full, int(value) / 1_000_000

    def acquire(self, timeout: float = 30.0) -> float:
        """Block until a slot is free; returns the admission time (Redis clock, seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            admitted, value = self.try_acquire()
            if admitted:
                return value
            wait = value
            if time.monotonic() + wait > deadline:
                raise TimeoutError(f"rate limit {self.key} still full after {timeout} s")
            time.sleep(wait)
