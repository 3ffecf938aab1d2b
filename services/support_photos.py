"""A farmer's photo sent during a human takeover, kept for support.

While a person has taken the conversation over, the bot says nothing and no analysis downloads the farmer's
photo, yet that person is the one who needs to see it ("here is my tomato leaf"). The inbound job marks such
a photo `waiting` (`services.conversation`); after its commit `keep_support_photo` downloads it through the
path analyses use (`services.photos`: Graph download, content check and optimisation in the helper process),
stores only the optimised copy (what the console shows) and records its key on the message. A transient Graph
API error is retried as an analysis's is; a photo that cannot be downloaded ends `not_downloaded`, one that is
not a photo we can read `rejected`, and the console says which in words. A farmer's deletion removes the copy
(`services.deletion`), the retention purge forgets its key (`services.media_purge`), and the sweeper queues a
waiting photo whose job Redis lost. Photos outside a takeover stay with their analysis: one that never became
an analysis is never downloaded.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from redis import Redis
from rq import Callback
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import Message, PhotoState
from models.db import affected_rows
from services import context
from services.analysis import retry_policy
from services.images import ImageRejected
from services.jobs import app_job
from services.photos import fetch_and_store
from services.queue import ANALYSIS, is_final_attempt, try_enqueue_unique
from services.storage import Storage
from services.whatsapp.errors import GraphAPIError, MediaError

log = logging.getLogger(__name__)

KEEP_SUPPORT_PHOTO = "services.support_photos.keep_support_photo"
STORAGE_KIND = "support"  # the optimised copies' keys: `support/<random>.jpg`


def job_id(message_id: int) -> str:
    return f"support-photo-{message_id}"


def enqueue_keep(redis: Redis, message_id: int) -> bool:
    """Queue the download of a waiting photo (once; a Redis that does not answer leaves it to the sweeper)."""
    return try_enqueue_unique(redis, ANALYSIS, KEEP_SUPPORT_PHOTO, job_id(message_id), message_id,
                              retry=retry_policy(), on_failure=ON_FAILURE)


def settle(session: Session, message_id: int, state: PhotoState, key: str | None = None) -> bool:
    """What became of a waiting photo, in the caller's transaction. False when it no longer waits (another run
    settled it, or the farmer's data was deleted meanwhile): the caller then drops what it stored."""
    result = session.execute(
        update(Message).where(Message.id == message_id, Message.photo_state == PhotoState.WAITING.value,
                              Message.media_id.is_not(None))
        .values(photo_state=state.value, photo_key=key).execution_options(synchronize_session=False))
    return affected_rows(result) == 1


def state_after(exc: Exception) -> PhotoState | None:
    """A download's failure as the console names it; None for a transient Graph error with a retry left."""
    if isinstance(exc, ImageRejected):
        return PhotoState.REJECTED
    if isinstance(exc, GraphAPIError) and exc.retryable and not is_final_attempt():
        return None
    return PhotoState.NOT_DOWNLOADED


@app_job
def keep_support_photo(message_id: int) -> str:
    """Download a waiting photo, store its optimised copy, record the key; safe to run twice."""
    db = context.db()
    with db.reader() as session:
        media_id = session.scalar(select(Message.media_id).where(Message.id == message_id,
                                                                 Message.photo_state == PhotoState.WAITING.value))
    if media_id is None:
        return "nothing to keep"
    storage: Storage = current_app.extensions["storage"]
    try:
        stored = fetch_and_store(media_id, storage, STORAGE_KIND, keep_original=False)
    except (ImageRejected, MediaError, GraphAPIError) as exc:
        state = state_after(exc)
        if state is None:
            raise  # RQ retries it
        with db.session() as session, session.begin():
            settle(session, message_id, state)
        log.warning("photo kept for support could not be stored",
                    extra={"message_id": message_id, "state": state.value, "reason": str(exc)[:200]})
        return state.value
    with db.session() as session, session.begin():
        recorded = settle(session, message_id, PhotoState.STORED, stored.image_key)
    if not recorded:
        storage.delete(stored.image_key)  # nothing names it: it must not stay behind
        return "not needed any more"
    log.info("photo kept for support", extra={"message_id": message_id, "bytes": stored.bytes})
    return PhotoState.STORED.value


@app_job
def on_keep_failed(job: Any, connection: Any, exc_type: type, exc_value: BaseException, tb: Any) -> None:
    """RQ calls this after every failed attempt (also a timeout or a dead worker): once no retry is left, the
    photo is `not_downloaded` rather than waiting for ever."""
    if job.retries_left:
        return
    with context.db().session() as session, session.begin():
        settle(session, int(job.args[0]), PhotoState.NOT_DOWNLOADED)
    log.warning("photo kept for support failed on every attempt",
                extra={"message_id": job.args[0], "reason": f"{exc_type.__name__}: {exc_value}"[:200]})


ON_FAILURE = Callback("services.support_photos.on_keep_failed")
