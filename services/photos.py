"""A farmer's photo fetched from WhatsApp and stored: the one path every photo we keep takes.

Downloaded from the Graph API (both steps, with the bearer token, bounded in size), its real content
checked and optimised in the isolated helper process (`services.isolation`: a hostile photo cannot take
the worker down) under the limits admins tune while the service runs, and stored under unguessable keys
(`services.storage`). An analysis keeps the farmer's file and the optimised copy; a photo kept for
support during a takeover only the optimised copy, the one the console shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from services import runtime_settings, whatsapp
from services.isolation import PhotoLimits, check_and_optimise
from services.storage import Storage, content_type_for, new_key

ORIGINAL_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass(frozen=True)
class StoredPhoto:
    """Where a photo was stored, and what it weighs (for the logs)."""

    image_key: str  # the optimised JPEG
    original_key: str | None  # the farmer's file as sent; None when it was not kept
    bytes: int  # of the optimised copy
    quality: int
    original_bytes: int


def fetch_and_store(media_id: str, storage: Storage, kind: str, *, keep_original: bool) -> StoredPhoto:
    """Download one photo, check and optimise it, store the optimised copy under a `kind` key (and the original,
    when `keep_original`). Raises GraphAPIError or MediaError (the download) and ImageRejected (the content)
    as they come: what each means is the caller's to decide."""
    media = whatsapp.client().download_media(media_id)
    rs = runtime_settings.current()
    prepared = check_and_optimise(media.content, PhotoLimits(
        max_bytes=rs.image_max_upload_kb * 1024, max_width=rs.image_max_width, max_height=rs.image_max_height,
        target_bytes=rs.image_target_kb * 1000, quality=rs.image_quality))
    info, small = prepared.info, prepared.small
    original_key = None
    if keep_original:
        original_key = new_key("original", ORIGINAL_EXTENSIONS.get(info.format, "bin"))
        storage.put(original_key, media.content, content_type_for(original_key))  # from the bytes, not Meta's MIME
    image_key = new_key(kind, "jpg")
    storage.put(image_key, small.data, "image/jpeg")
    return StoredPhoto(image_key, original_key, len(small.data), small.quality, len(media.content))
