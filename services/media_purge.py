"""`flask purge-media`: delete stored photos (originals and optimised copies) older than N days.

Age is the time the file was stored (a local file's modification time, an S3 object's LastModified),
so a photo stored after the cut-off is never touched. Every store behind the app's storage is purged
on its own (both stores of a FallbackStorage). Analyses and messages keep their rows; the keys of deleted
photos are cleared on them (a photo kept for support during a takeover is marked `purged`, so the console
says why it is gone), so nothing points at a file that is gone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from models import Analysis, Message, PhotoState
from models.db import Database, affected_rows
from services.storage import KEY_RE, FallbackStorage, LocalStorage, S3Storage, Storage

log = logging.getLogger(__name__)

# The kinds of key photos are stored under (services.photos.fetch_and_store): an analysis's farmer's photo and
# optimised JPEG, and the optimised copy of a photo kept for support during a takeover (services.support_photos).
PHOTO_KINDS = ("original", "analysis", "support")
_UPDATE_BATCH = 500


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int
    stored_at: datetime


@dataclass
class PurgeReport:
    cutoff: datetime
    dry_run: bool
    files: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHOTO_KINDS, 0))
    bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHOTO_KINDS, 0))
    failed: int = 0  # files that could not be deleted (logged; tried again next time)
    unreachable: list[str] = field(default_factory=list)  # stores that could not be listed
    keys_cleared: int = 0  # image_key / original_key on analyses and photo_key on messages set to NULL


def leaf_stores(storage: Storage) -> list[Storage]:
    """The stores that actually hold files: both sides of a FallbackStorage, else the store itself."""
    if isinstance(storage, FallbackStorage):
        return leaf_stores(storage.primary) + leaf_stores(storage.secondary)
    return [storage]


def stored_before(store: Storage, cutoff: datetime) -> Iterator[StoredFile]:
    """The photos a store holds that were stored before `cutoff` (aware datetime)."""
    if isinstance(store, LocalStorage):
        yield from _local_before(store, cutoff)
    elif isinstance(store, S3Storage):
        yield from _s3_before(store, cutoff)
    else:
        raise TypeError(f"cannot list the files of {store!r}")


def _local_before(store: LocalStorage, cutoff: datetime) -> Iterator[StoredFile]:
    limit = cutoff.timestamp()
    for kind in PHOTO_KINDS:
        folder = Path(store.root) / kind
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                key = f"{kind}/{entry.name}"
                if not entry.is_file(follow_symlinks=False) or KEY_RE.fullmatch(key) is None:
                    continue  # temporary files of a write in progress, anything not ours
                stat = entry.stat(follow_symlinks=False)
                if stat.st_mtime < limit:
                    yield StoredFile(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))


def _s3_before(store: S3Storage, cutoff: datetime) -> Iterator[StoredFile]:
    paginator = store.client.get_paginator("list_objects_v2")
    for kind in PHOTO_KINDS:
        for page in paginator.paginate(Bucket=store.bucket, Prefix=f"{store.prefix}{kind}/"):
            for obj in page.get("Contents", []):
                key = str(obj["Key"])[len(store.prefix):]
                stored_at = obj["LastModified"]
                if KEY_RE.fullmatch(key) is not None and stored_at < cutoff:
                    yield StoredFile(key, int(obj.get("Size", 0)), stored_at)


def purge_media(storage: Storage, db: Database, older_than_days: int, *, dry_run: bool = False,
                now: datetime | None = None) -> PurgeReport:
    """Delete (or with dry_run only count) photos stored more than `older_than_days` days ago."""
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1")
    now = now or datetime.now(UTC)
    report = PurgeReport(cutoff=now - timedelta(days=older_than_days), dry_run=dry_run)
    deleted: set[str] = set()
    for store in leaf_stores(storage):
        try:
            _purge_store(store, report, deleted)
        except Exception as exc:  # a bucket out of reach: the other store is still purged
            report.unreachable.append(repr(store))
            log.warning("could not list a media store", extra={"storage": repr(store), "error": type(exc).__name__})
    if deleted:
        report.keys_cleared = _forget_keys(db, sorted(deleted))
    return report


def _purge_store(store: Storage, report: PurgeReport, deleted: set[str]) -> None:
    for stored in stored_before(store, report.cutoff):
        if not report.dry_run:
            try:
                store.delete(stored.key)
            except Exception as exc:
                report.failed += 1
                log.warning("could not delete a stored photo", extra={"storage": repr(store),
                                                                       "error": type(exc).__name__})
                continue
            deleted.add(stored.key)
        kind = stored.key.split("/", 1)[0]
        report.files[kind] += 1
        report.bytes[kind] += stored.size


def _forget_keys(db: Database, keys: list[str]) -> int:
    """Clear the keys of deleted photos on their analyses and messages (the rows stay)."""
    updated = 0
    with db.session() as session, session.begin():
        for i in range(0, len(keys), _UPDATE_BATCH):
            batch = keys[i:i + _UPDATE_BATCH]
            for column in (Analysis.original_key, Analysis.image_key):
                result = session.execute(update(Analysis).where(column.in_(batch)).values({column: None})
                                         .execution_options(synchronize_session=False))
                updated += affected_rows(result)
            result = session.execute(update(Message).where(Message.photo_key.in_(batch))
                                     .values(photo_key=None, photo_state=PhotoState.PURGED.value)
                                     .execution_options(synchronize_session=False))
            updated += affected_rows(result)
    return updated
