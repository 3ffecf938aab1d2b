"""Decoding untrusted images in a separate process.

Workers run their jobs in their own process (no fork per job), so a photo that crashes the image
decoder (a libjpeg/libwebp bug, a memory blow-up) must not take the worker, and every job it runs
next, down with it. The checking and optimising of a farmer's photo therefore runs in one long-lived
helper process per worker process (started on first use from a clean fork server, so it inherits no
threads, locks or connections; it ends by itself when the worker is gone). A helper that dies is
replaced; the photo that killed it is refused as `corrupt`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from services.images import ImageInfo, ImageRejected, OptimisedImage, optimise, validate

log = logging.getLogger(__name__)

_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()


@dataclass(frozen=True)
class PhotoLimits:
    max_bytes: int
    max_width: int
    max_height: int
    target_bytes: int
    quality: int


@dataclass(frozen=True)
class PreparedPhoto:
    info: ImageInfo
    small: OptimisedImage


def check_and_optimise(data: bytes, limits: PhotoLimits,
                       run: Callable[[bytes, PhotoLimits], PreparedPhoto | tuple[str, str]] | None = None
                       ) -> PreparedPhoto:
    """`images.validate` (headers, size and pixel bounds) and `images.optimise` (the full decode), in the
    helper process (`run`, a module-level function, instead of `prepare_here`: tests). Raises
    ImageRejected as they do."""
    try:
        outcome = _helper().submit(run or prepare_here, data, limits).result()
    except BrokenProcessPool:
        _discard_helper()
        log.warning("image helper process died on a photo; refused", extra={"bytes": len(data)})
        raise ImageRejected("corrupt", "the decoder crashed") from None
    if isinstance(outcome, tuple):  # (reason, detail): ImageRejected does not survive pickling as itself
        raise ImageRejected(*outcome)
    return outcome


def prepare_here(data: bytes, limits: PhotoLimits) -> PreparedPhoto | tuple[str, str]:
    """What the helper process runs: the prepared photo, or the rejection's (reason, detail)."""
    try:
        info = validate(data, max_bytes=limits.max_bytes, decode=False)
        small = optimise(data, max_width=limits.max_width, max_height=limits.max_height,
                         target_bytes=limits.target_bytes, start_quality=limits.quality)
    except ImageRejected as exc:
        return exc.reason, exc.detail
    return PreparedPhoto(info, small)


def warm_up() -> None:
    """Start the helper now (a worker that runs analyses calls it at start), so the first photo does not
    wait for the fork server and the helper to start."""
    _helper().submit(int).result()


def exit_with_owner(owner_pid: int, poll_seconds: float = 1.0) -> None:
    """In the helper: end once the worker process that started it is gone. A helper waits for work on a
    pipe it also holds open, and its parent is the fork server (which outlives the worker while the helper
    lives), so without this a worker killed with SIGKILL would leave its helper behind forever."""

    def watch() -> None:
        while True:
            try:
                os.kill(owner_pid, 0)  # signal 0: only asks whether the process exists
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # the pid now belongs to another user's process: ours is gone
                os._exit(0)
            threading.Event().wait(poll_seconds)

    threading.Thread(target=watch, name="exit-with-owner", daemon=True).start()


def _helper() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["services.images"])
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=exit_with_owner,
                                        initargs=(os.getpid(),))
        return _pool


def _discard_helper() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None
