"""The "same-work floor" for `webhook_ingress.py`: our ingress's durable work written by hand, nothing more.

Per request: the HMAC-SHA256 check of `X-Hub-Signature-256` over the raw body, `json.loads`, one prepared
`INSERT ... ON CONFLICT (wamid) DO NOTHING RETURNING id` per message through a psycopg pool (autocommit:
each row is committed before the 200), one `RPUSH` of the new ids, 200. No farmer rows, no parser, no
metrics or logs, no SQLAlchemy: what any implementation of "verify, persist, enqueue, answer" pays on this
machine. Our app is measured against it (target: >= 0.8 x its requests/s), on the same gunicorn command.

It writes `TABLE` (the bench script creates it `LIKE messages`: the same columns and indexes, so each
insert maintains the same indexes as ours) and pushes to the Redis list `QUEUE`. Configured by the
environment the bench script gives every server: DATABASE_URL, REDIS_URL, WHATSAPP_APP_SECRET, and
FLOOR_POOL_SIZE (gunicorn's threads per worker: one connection each).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, request
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from redis import Redis

TABLE = "floor_messages"
QUEUE = "floor:inbound"
INSERT = (
    f"INSERT INTO {TABLE} (direction, wamid, phone, phone_number_id, type, text, payload, status, meta_timestamp,"
    " created_at, attempts) VALUES ('in', %s, %s, %s, %s, %s, %s, 'received', %s, %s, 0)"
    " ON CONFLICT (wamid) DO NOTHING RETURNING id"
)

SECRET = os.environ["WHATSAPP_APP_SECRET"].encode()
POOL_SIZE = int(os.environ.get("FLOOR_POOL_SIZE", "4"))
# The SQLAlchemy URL the app is given, as libpq takes it.
CONNINFO = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)

pool = ConnectionPool(CONNINFO, min_size=POOL_SIZE, max_size=POOL_SIZE, kwargs={"autocommit": True}, open=True)
redis = Redis.from_url(os.environ["REDIS_URL"])
app = Flask(__name__)


def rows(body: Any) -> list[tuple[Any, ...]]:
    """One INSERT's parameters per message of the body (Meta's shape; anything else holds none)."""
    found = []
    for entry in body.get("entry", []) if isinstance(body, dict) else []:
        for change in entry.get("changes", []):
            value = change.get("value", {})
            number = value.get("metadata", {}).get("phone_number_id")
            for m in value.get("messages", []):
                when = datetime.fromtimestamp(int(m["timestamp"]), UTC) if "timestamp" in m else None
                found.append((m["id"], "+" + m["from"], number, m.get("type", "unknown"),
                              m.get("text", {}).get("body"), Jsonb(m), when, datetime.now(UTC)))
    return found


@app.post("/webhooks/whatsapp")
def receive() -> Response:
    raw = request.get_data()
    expected = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(request.headers.get("X-Hub-Signature-256", "").encode(), expected.encode()):
        return Response("invalid signature", status=403)
    new_ids = []
    with pool.connection() as conn:
        for params in rows(json.loads(raw)):
            row = conn.execute(INSERT, params, prepare=True).fetchone()
            if row is not None:
                new_ids.append(row[0])
    if new_ids:
        redis.rpush(QUEUE, *new_ids)
    return Response(b'{"status":"ok"}', mimetype="application/json")


@app.get("/health/live")
def live() -> tuple[str, int]:
    """The readiness probe the bench script polls on every server."""
    return "ok", 200
