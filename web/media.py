"""`GET /media/<token>`: the signed, expiring photo links N8N fetches (docs/ANALYSIS.md, pipeline step 6).

The token is the storage key signed by `services.storage.sign_media`; nothing else is served, so
keys cannot be guessed, enumerated or walked out of the store (`/media/` alone is no route, and a
`/` or `..` in the path never reaches storage). Expired: 410. Not ours: 403. Ours but no longer
stored: 404.

The app factory provides, in `app.extensions`: `storage` (a `services.storage.Storage`),
`media_secret` (str) and optionally `media_max_age` (seconds, default 3600).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app

from services.problems import problem
from services.storage import (
    MEDIA_MAX_AGE,
    InvalidKey,
    MediaLinkExpired,
    MediaLinkInvalid,
    Storage,
    content_type_for,
    unsign_media,
)

log = logging.getLogger(__name__)
bp = Blueprint("media", __name__)

CACHE_CONTROL = "private, max-age=300"


NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@bp.get("/media/<token>")
def serve(token: str) -> Response:
    secret: str | list[str] = current_app.extensions.get("media_secrets") or current_app.extensions["media_secret"]
    max_age = int(current_app.extensions.get("media_max_age", MEDIA_MAX_AGE))
    storage: Storage = current_app.extensions["storage"]
    try:
        key = unsign_media(token, secret, max_age)
    except MediaLinkExpired:
        return problem(410, title="media link expired", headers=NO_STORE)
    except MediaLinkInvalid:
        log.warning("media link refused: bad signature", extra={"token_chars": len(token)})
        return problem(403, title="media link invalid", headers=NO_STORE)
    try:
        data = storage.get(key)
    except (KeyError, InvalidKey):
        log.info("media link to a missing object", extra={"kind": key.split("/", 1)[0]})
        return problem(404, title="media not found", headers=NO_STORE)
    except Exception:
        log.exception("media storage unavailable")
        return problem(503, title="media storage unavailable", headers=NO_STORE)
    response = Response(data, mimetype=content_type_for(key))
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Disposition"] = "inline"
    return response
