"""A circuit breaker shared by every process: its state lives in one Redis hash.

`ziraai:circuit:<name>` holds `state` (`open`; the key is absent when closed), `failures`
(consecutive failures), `until` (Redis-clock milliseconds: the end of the cool-down, or of the
half-open probe's slot) and `probe` (`1` while a probe is out). Every operation is one Lua script,
so concurrent workers see and change the state atomically, and time comes from the Redis server
(`TIME`), so processes on different machines agree on when the cool-down ends.

    closed --(failure_threshold consecutive failures)--> open
    open --(cool-down passed; the next allow() is the one probe)--> half_open
    half_open --(record_success)--> closed
    half_open --(record_failure)--> open, with a fresh cool-down
    half_open --(probe never reports; its slot lasts one cool-down, or probe_seconds)--> the next allow() is a new probe

Any `record_success()` closes the breaker (the service answered). A failure reported while the
breaker is open and no probe is out (a request that started before it opened) is counted but does
not extend the cool-down: the probe decides.
"""

from __future__ import annotations

from redis import Redis

CLOSED = "closed"
KEY_PREFIX = "ziraai:circuit:"

_SCRIPT = """
local key = KEYS[1]
local op = ARGV[1]
local threshold = tonumber(ARGV[2])
local cooldown = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local probe_slot = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', key, 'state', 'failures', 'until', 'probe')
local is_open = h[1] == 'open'
local failures = tonumber(h[2]) or 0
local till = tonumber(h[3]) or 0
local probe = h[4] == '1'

local function open_now(n)
  redis.call('HSET', key, 'state', 'open', 'failures', n, 'until', string.format('%d', now + cooldown), 'probe', '0')
  redis.call('PEXPIRE', key, ttl)
end

if op == 'allow' then
  if not is_open then return {1, 'closed', 0} end
  if now >= till then
    redis.call('HSET', key, 'until', string.format('%d', now + probe_slot), 'probe', '1')
    redis.call('PEXPIRE', key, ttl)
    return {1, 'half_open', 0}
  end
  if probe then return {0, 'half_open', till - now} end
  return {0, 'open', till - now}
elseif op == 'success' then
  redis.call('DEL', key)
  return {1, 'closed', 0}
elseif op == 'failure' then
  if not is_open then
    failures = failures + 1
    if failures >= threshold then
      open_now(failures)
      return {0, 'open', cooldown}
    end
    redis.call('HSET', key, 'failures', failures)
    redis.call('PEXPIRE', key, ttl)
    return {1, 'closed', 0}
  end
  if probe then
    open_now(failures + 1)
    return {0, 'open', cooldown}
  end
  redis.call('HINCRBY', key, 'failures', 1)
  if now >= till then return {0, 'half_open', 0} end
  return {0, 'open', till - now}
else
  if not is_open then return {1, 'closed', 0} end
  if now >= till then return {0, 'half_open', 0} end
  if probe then return {0, 'half_open', till - now} end
  return {0, 'open', till - now}
end
"""


class CircuitBreaker:
    """Shared by all workers through Redis; safe to build one per job (it holds no local state)."""

    def __init__(self, redis: Redis, name: str, *, failure_threshold: int = 5, cooldown_seconds: float = 60.0,
                 probe_seconds: float | None = None) -> None:
        """`probe_seconds` (default: the cool-down) is how long a half-open probe's slot lasts before
        another caller may probe; set it a little above the call's own timeout so a slow probe is not
        joined by a second one."""
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_seconds <= 0:
            raise ValueError("cooldown_seconds must be positive")
        if probe_seconds is not None and probe_seconds <= 0:
            raise ValueError("probe_seconds must be positive")
        if not name:
            raise ValueError("name must not be empty")
        self.name = name
        self.key = KEY_PREFIX + name
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._cooldown_ms = max(1, round(cooldown_seconds * 1000))
        self._probe_ms = max(1, round((probe_seconds or cooldown_seconds) * 1000))
        # A stale count of "consecutive" failures a day old means nothing; an open breaker's key
        # always outlives its cool-down (an expired key reads as closed).
        self._ttl_ms = max(86_400_000, 2 * self._cooldown_ms, 2 * self._probe_ms)
        self._redis = redis
        self._script = redis.register_script(_SCRIPT)

    def _run(self, op: str) -> tuple[bool, str, float]:
        flag, state, wait_ms = self._script(
            keys=[self.key], args=[op, self.failure_threshold, self._cooldown_ms, self._ttl_ms, self._probe_ms]
        )
        if isinstance(state, bytes):
            state = state.decode()
        return bool(flag), state, max(0, int(wait_ms)) / 1000

    def acquire(self) -> tuple[bool, float]:
        """`allow()` plus, when denied, the seconds until a probe may be allowed (one round trip)."""
        allowed, _, wait = self._run("allow")
        return allowed, (0.0 if allowed else wait)

    def allow(self) -> bool:
        """Closed: True. Open: False until the cool-down has passed, then True for exactly one caller
        (the half-open probe) and False for everyone else until it reports or its slot expires."""
        return self.acquire()[0]

    def record_success(self) -> None:
        """Close the breaker and reset the failure count."""
        self._run("success")

    def record_failure(self) -> None:
        """Count a consecutive failure; open at the threshold, or re-open if a probe is out."""
        self._run("failure")

    def state(self) -> str:
        """`closed`, `open` (cool-down running), or `half_open` (a probe is out, or may be allowed now)."""
        return self._run("peek")[1]

    def retry_after(self) -> float:
        """Seconds until a probe may be allowed: 0 when closed or when a probe may go now."""
        return self._run("peek")[2]

    def reset(self) -> None:
        """Forget everything (support tooling and tests)."""
        self._redis.delete(self.key)
