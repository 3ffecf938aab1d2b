"""The senders' loop: the outbox's due rows claimed in batches and sent concurrently.

One thread (the caller of `Sender.turn`) talks to the database: it claims the rows that may go now
(`outbox.take_due`: one statement, the first row of each farmer's line, so a farmer's replies still
leave one after another) and records what was sent (`outbox.settle`: one transaction for all the
sends that finished since the last turn). A small pool of threads does the waiting: each takes its
slot of the shared rate limit (Redis) and POSTs one message over the client's pooled keep-alive
connections, then writes the wamid to Redis at once. Graph's answer takes 100-300 ms and the rate
limit spaces sends `1/WHATSAPP_MAX_MPS` apart, so it is the number of sends in flight, not CPU, that
sets the rate: `WHATSAPP_SEND_CONCURRENCY` sends at Graph's latency L make at most concurrency / L
messages a second (32 / 0.3 s = 106/s: the limit binds first). More sender processes, on any machines,
share the same limit.
"""

from __future__ import annotations

import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from services import context, whatsapp
from services.redis_conn import quick
from services.whatsapp.outbox import Transmitted, settle, take_due, transmit

log = logging.getLogger(__name__)

SETTLE_EVERY = 0.05  # seconds: finished sends are recorded together, at most this late


class Sender:
    """Keeps up to `concurrency` sends in flight. Not thread-safe: one thread calls `turn` and `drain`
    (inside the app's context); the pool's threads only send."""

    def __init__(self, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.refill = max(1, concurrency // 4)  # claim when this many threads are free (fewer, larger claims)
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="outbox-send")
        self.in_flight: set[Future[Transmitted]] = set()

    def turn(self) -> int:
        """Record the sends that finished (waiting up to SETTLE_EVERY for some, so that several share
        one transaction), then claim due rows for the free threads and start their sends. Returns how
        many rows it settled, started or still has in flight: 0 means there is nothing to do. Redis or the
        database failing raises; a send in flight is not lost meanwhile (it is recorded by a later turn,
        or else its row keeps its lease and its wamid in Redis)."""
        settled = 0
        if self.in_flight:
            done, _ = wait(self.in_flight, timeout=SETTLE_EVERY, return_when=FIRST_COMPLETED)
            if len(done) < self.refill:  # a few more finish meanwhile: record them in the same transaction
                done, _ = wait(self.in_flight, timeout=SETTLE_EVERY / 2)
            settled = self._settle(done)
        started = 0
        free = self.concurrency - sum(1 for future in self.in_flight if not future.done())  # threads free
        if free >= self.refill:
            batch = take_due(free)
            client, redis = whatsapp.client(), quick(context.redis())
            for out in batch.sends:
                self.in_flight.add(self.pool.submit(transmit, client, redis, out))
            started = len(batch.sends) + batch.settled
        return settled + started + len(self.in_flight)

    def drain(self) -> None:
        """Wait for the sends in flight and record them (a stop: nothing new is claimed)."""
        done, _ = wait(self.in_flight)
        self._settle(done)

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def _settle(self, done: set[Future[Transmitted]]) -> int:
        if not done:
            return 0
        self.in_flight -= done
        settle([future.result() for future in done])  # transmit never raises
        return len(done)
