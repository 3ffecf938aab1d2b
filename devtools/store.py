"""What the development tools remember, kept in the app's Redis so every process sees the same thing.

With `REDIS_URL` set, the web process that answers the Graph API stand-in, the worker processes that
send, and the web process that serves `/dev/chat` may all differ; with the embedded default they share
the in-process fakeredis. Everything is bounded: a phone keeps its last `TRANSCRIPT_MAX` messages (and
is dropped after `TRANSCRIPT_TTL` without activity), media and delivery statuses live one day.

- transcript `ziraai:dev:chat:<wa_id>`: a list of JSON entries `{seq, dir, wamid, at, body}` in the order
  they happened: `dir == "in"` is a message the farmer sent (its Meta message object), `"out"` one the
  bot sent (the exact body POSTed to the Graph API).
- status `ziraai:dev:status:<wamid>`: `pending` / `sent` / `delivered` / `read` / `failed`, never moving
  backwards (`failed` only replaces `pending`).
- media `ziraai:dev:media:<id>`: a hash of the bytes, mime type and sha256.
- farmers `ziraai:dev:farmers`: recently used numbers and names, for the simulator's picker.
- fail next `ziraai:dev:fail_next:<wa_id>`: a Meta error code; the Graph API stand-in accepts the next
  send to that phone and then reports it `failed` with that code (taken once, forgotten after an hour).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis

from services.redis_conn import as_text

PREFIX = "ziraai:dev:"
TRANSCRIPT_MAX = 500
TRANSCRIPT_TTL = 7 * 24 * 3600
STATUS_TTL = 24 * 3600
MEDIA_TTL = 24 * 3600
FARMERS_MAX = 30
FAIL_NEXT_TTL = 3600
STATUSES = ("pending", "sent", "delivered", "read")

# Set a status only if it moves forward; `failed` only replaces `pending` (or nothing).
_SET_STATUS = """
local rank = {pending=0, failed=1, sent=1, delivered=2, read=3}
local current = redis.call('GET', KEYS[1])
if current then
  if ARGV[1] == 'failed' then
    if current ~= 'pending' then return 0 end
  elseif rank[ARGV[1]] <= (rank[current] or 0) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"""


def digits(phone: str) -> str:
    """A phone number in Meta's `wa_id` form (digits only)."""
    return "".join(ch for ch in phone if ch.isdigit())


def _transcript_key(wa_id: str) -> str:
    return f"{PREFIX}chat:{digits(wa_id)}"


def append(redis: Redis, wa_id: str, direction: str, wamid: str, body: dict[str, Any]) -> int:
    """Add a message to a phone's transcript; returns its sequence number (increasing across phones)."""
    seq = int(redis.incr(f"{PREFIX}seq"))
    entry = json.dumps({"seq": seq, "dir": direction, "wamid": wamid, "at": time.time(), "body": body},
                       ensure_ascii=False)
    key = _transcript_key(wa_id)
    with redis.pipeline() as pipe:
        pipe.rpush(key, entry)
        pipe.ltrim(key, -TRANSCRIPT_MAX, -1)
        pipe.expire(key, TRANSCRIPT_TTL)
        pipe.execute()
    return seq


def transcript(redis: Redis, wa_id: str) -> list[dict[str, Any]]:
    """A phone's messages, oldest first, each with its current delivery status."""
    entries = [json.loads(raw) for raw in redis.lrange(_transcript_key(wa_id), 0, -1)]
    if entries:
        values = redis.mget([f"{PREFIX}status:{e['wamid']}" for e in entries])
        for entry, value in zip(entries, values, strict=True):
            entry["status"] = as_text(value) or None
    return entries


def clear(redis: Redis, wa_id: str) -> None:
    """Forget a phone's transcript (the bot's database keeps its own message log)."""
    redis.delete(_transcript_key(wa_id))


def set_status(redis: Redis, wamid: str, status: str) -> bool:
    """Record a delivery status of a message; False when it would move backwards."""
    if status not in (*STATUSES, "failed"):
        raise ValueError(f"unknown status {status!r}")
    return bool(redis.eval(_SET_STATUS, 1, f"{PREFIX}status:{wamid}", status, STATUS_TTL))


def fail_next(redis: Redis, wa_id: str, code: int | None) -> None:
    """Make the next send to `wa_id` fail asynchronously with `code` (None: no longer)."""
    key = f"{PREFIX}fail_next:{digits(wa_id)}"
    if code is None:
        redis.delete(key)
    else:
        redis.set(key, str(code), ex=FAIL_NEXT_TTL)


def take_fail_next(redis: Redis, wa_id: str) -> int | None:
    """The code the next send to `wa_id` fails with, taken (the send after it is not failed)."""
    key = f"{PREFIX}fail_next:{digits(wa_id)}"
    with redis.pipeline() as pipe:
        pipe.get(key)
        pipe.delete(key)
        value, _ = pipe.execute()
    text = as_text(value)
    return int(text) if text and text.lstrip("-").isdigit() else None


def get_status(redis: Redis, wamid: str) -> str | None:
    value = redis.get(f"{PREFIX}status:{wamid}")
    return as_text(value) or None


@dataclass(frozen=True)
class Media:
    id: str
    content: bytes
    mime_type: str
    sha256: str


def put_media(redis: Redis, content: bytes, mime_type: str) -> Media:
    """Keep a file for a day under a new id that looks like Meta's (digits)."""
    media = Media(str(10**15 + secrets.randbelow(9 * 10**15)), content, mime_type, hashlib.sha256(content).hexdigest())
    key = f"{PREFIX}media:{media.id}"
    with redis.pipeline() as pipe:
        pipe.hset(key, mapping={"content": content, "mime_type": mime_type, "sha256": media.sha256})
        pipe.expire(key, MEDIA_TTL)
        pipe.execute()
    return media


def get_media(redis: Redis, media_id: str) -> Media | None:
    if not media_id.isdigit():
        return None
    found = redis.hgetall(f"{PREFIX}media:{media_id}")
    if not found or b"content" not in found:
        return None
    content = found[b"content"]
    assert isinstance(content, bytes)
    return Media(media_id, content, as_text(found[b"mime_type"]) or "", as_text(found[b"sha256"]) or "")


def remember_farmer(redis: Redis, wa_id: str, name: str) -> None:
    """Remember a number and name for the picker; only the most recent `FARMERS_MAX` are kept."""
    key = f"{PREFIX}farmers"
    redis.hset(key, digits(wa_id), json.dumps({"name": name, "last": time.time()}, ensure_ascii=False))
    if redis.hlen(key) > FARMERS_MAX:
        known = farmers(redis)
        redis.hdel(key, *[f["phone"] for f in known[FARMERS_MAX:]])


def farmers(redis: Redis) -> list[dict[str, str]]:
    """Recently used farmers, most recent first."""
    rows = []
    for phone, raw in redis.hgetall(f"{PREFIX}farmers").items():
        data = json.loads(raw)
        rows.append({"phone": as_text(phone), "name": str(data.get("name") or ""), "last": data.get("last", 0)})
    rows.sort(key=lambda r: r["last"], reverse=True)
    return [{"phone": r["phone"], "name": r["name"]} for r in rows]
