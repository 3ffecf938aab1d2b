"""The sponsor statistics cache (filled by the admin API), dropped when its numbers change:
a purchase or revocation (admin API), a redemption (conversation), a finished analysis (pipeline)."""

from __future__ import annotations

import logging

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


def stats_key(sponsor_id: int) -> str:
    return f"ziraai:sponsor-stats:{sponsor_id}"


def invalidate_stats(redis: Redis, sponsor_id: int | None) -> None:
    if sponsor_id is None:
        return
    try:
        redis.delete(stats_key(sponsor_id))
    except RedisError:
        log.warning("could not invalidate the statistics cache of sponsor %s", sponsor_id, exc_info=True)
