"""Redis connections: a real server when REDIS_URL is set, otherwise one in-process fakeredis."""

from __future__ import annotations

import threading
import weakref

import fakeredis
from redis import ConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

QUICK_TIMEOUT_SECONDS = 0.2

_fake_server: fakeredis.FakeServer | None = None
_fake_lock = threading.Lock()
_quick: weakref.WeakKeyDictionary[ConnectionPool, Redis] = weakref.WeakKeyDictionary()
_quick_lock = threading.Lock()


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


def quick(redis: Redis) -> Redis:
    """The same server for calls that have another way when Redis does not answer (the sweeper queues
    what an enqueue could not; a sent message's wamid also goes to the database): 200 ms to connect and
    to answer, no retry. A frozen Redis then costs such a call 0.2 s instead of seconds."""
    if isinstance(redis, fakeredis.FakeRedis):
        return redis
    pool = redis.connection_pool
    client = _quick.get(pool)  # made once per pool: most calls need no lock
    if client is not None:
        return client
    with _quick_lock:
        client = _quick.get(pool)
        if client is None:
            kwargs = {**pool.connection_kwargs, "socket_timeout": QUICK_TIMEOUT_SECONDS,
                      "socket_connect_timeout": QUICK_TIMEOUT_SECONDS, "retry": Retry(NoBackoff(), 0)}
            client = _quick[pool] = Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class,
                                                                         **kwargs))
        return client


def as_text(value: bytes | str | None) -> str | None:
    """A Redis reply as text (our connections answer bytes; the client's types also allow str)."""
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value
