"""Redis connections: a real server when REDIS_URL is set, otherwise one in-process fakeredis."""

from __future__ import annotations

import threading

import fakeredis
from redis import Redis

_fake_server: fakeredis.FakeServer | None = None
_fake_lock = threading.Lock()


def fake_server() -> fakeredis.FakeServer:
    """One FakeServer per process, shared by the web threads and the embedded worker thread."""
    global _fake_server
    with _fake_lock:
        if _fake_server is None:
            _fake_server = fakeredis.FakeServer()
        return _fake_server


def connect(url: str) -> Redis:
    """Short timeouts: a webhook must still answer quickly when Redis is down."""
    if not url:
        return fakeredis.FakeRedis(server=fake_server())
    return Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2, health_check_interval=30)
