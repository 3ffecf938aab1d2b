"""Where photos are kept (docs/ANALYSIS.md, pipeline step 5) and the signed, expiring links N8N fetches them by.

A `Storage` keeps bytes under a key. Keys come from `new_key` only: `<kind>/<32 random URL-safe
characters>.<ext>` (`secrets.token_urlsafe(24)`, 192 bits), so a key cannot be guessed, and every
store checks keys against `KEY_RE`, so none can climb out of its root or bucket.

- `LocalStorage`: files under a directory (the default); atomic writes, private files (0600).
- `S3Storage`: any S3-compatible object store, through boto3 when it is installed (optional).
- `FallbackStorage`: a primary and a secondary store; writes go to the secondary when the primary
  fails, reads look in both.

A link is `PUBLIC_BASE_URL/media/<token>`; the token is the key signed with itsdangerous (HMAC,
salt `ziraai-media`, timestamped), checked and aged by `unsign_media` (default one hour).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

log = logging.getLogger(__name__)

KEY_RE: Final = re.compile(r"[a-z]+/[A-Za-z0-9_-]{20,}\.(?:jpg|png|webp|bin)")
CONTENT_TYPES: Final = {
    "jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "bin": "application/octet-stream",
}
_EXTENSIONS: Final = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "webp": "webp", "bin": "bin"}
_KIND_RE: Final = re.compile(r"[a-z]+")

MEDIA_SALT: Final = "ziraai-media"
MEDIA_MAX_AGE: Final = 3600


class InvalidKey(ValueError):
    """A key that `new_key` cannot have made (and so may not touch any store)."""


def check_key(key: str) -> str:
    if not isinstance(key, str) or KEY_RE.fullmatch(key) is None:
        raise InvalidKey("invalid storage key")  # the key itself is not echoed: it may be hostile
    return key


def new_key(kind: str, ext: str) -> str:
    """An unguessable key such as `photos/Jq3...x9.jpg`. kind: lowercase letters; ext: jpg/jpeg/png/webp/bin."""
    if _KIND_RE.fullmatch(kind) is None:
        raise ValueError(f"kind must be lowercase letters, not {kind!r}")
    extension = _EXTENSIONS.get(ext.lower().lstrip("."))
    if extension is None:
        raise ValueError(f"unsupported extension {ext!r}")
    return f"{kind}/{secrets.token_urlsafe(24)}.{extension}"


def content_type_for(key: str) -> str:
    return CONTENT_TYPES[check_key(key).rsplit(".", 1)[1]]


@runtime_checkable
class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes:
        """The bytes under key; KeyError when there are none."""
        ...

    def delete(self, key: str) -> None:
        """Remove key; nothing happens when it is not there."""
        ...


class LocalStorage:
    """Files under `root` (created 0700 when missing), each written atomically and readable by the owner only.

    The content type is not stored: it follows from the key's extension (`content_type_for`).
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = self.root / check_key(key)
        if not path.resolve().is_relative_to(self.root):  # belt and braces: the regex already forbids it
            raise InvalidKey("invalid storage key")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyError(key) from None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"


class S3Storage:
    """An S3-compatible bucket (AWS, MinIO, R2, ...). Objects are private (no ACL is set).

    boto3 is not a dependency of the project: it is imported here, when an S3Storage is made, and
    credentials come from boto3's usual sources (environment, config files, instance role).
    `client` lets a test pass a stand-in.
    """

    _MISSING_CODES: Final = frozenset({"NoSuchKey", "404", "NotFound"})

    def __init__(self, bucket: str, endpoint_url: str | None = None, prefix: str = "", *, client: Any = None) -> None:
        if client is None:
            try:
                import boto3  # optional: not a project dependency
            except ImportError as exc:
                raise RuntimeError("S3Storage needs boto3, which is not installed: pip install boto3") from exc
            client = boto3.client("s3", endpoint_url=endpoint_url)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
        except Exception as exc:
            if self._is_missing(exc):
                raise KeyError(key) from None
            raise
        return bytes(response["Body"].read())

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))  # S3 deletes are idempotent

    @classmethod
    def _is_missing(cls, exc: Exception) -> bool:
        error = getattr(exc, "response", None)
        code = error.get("Error", {}).get("Code") if isinstance(error, dict) else None
        return str(code) in cls._MISSING_CODES

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r})"


class FallbackStorage:
    """Writes to `primary`, or to `secondary` when primary fails; reads primary, then secondary."""

    def __init__(self, primary: Storage, secondary: Storage) -> None:
        self.primary = primary
        self.secondary = secondary

    def put(self, key: str, data: bytes, content_type: str) -> None:
        check_key(key)
        try:
            self.primary.put(key, data, content_type)
        except Exception as exc:
            log.warning("primary storage failed, writing to the secondary",
                        extra={"storage": repr(self.primary), "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
            self.secondary.put(key, data, content_type)

    def get(self, key: str) -> bytes:
        check_key(key)
        try:
            return self.primary.get(key)
        except KeyError:
            pass
        except Exception as exc:
            log.warning("primary storage failed, reading the secondary",
                        extra={"storage": repr(self.primary), "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        return self.secondary.get(key)

    def delete(self, key: str) -> None:
        """Deletes from both; raises only when neither store could be reached."""
        check_key(key)
        errors: list[Exception] = []
        for store in (self.primary, self.secondary):
            try:
                store.delete(key)
            except Exception as exc:
                log.warning("storage delete failed",
                            extra={"storage": repr(store), "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
                errors.append(exc)
        if len(errors) == 2:
            raise errors[0]

    def __repr__(self) -> str:
        return f"FallbackStorage({self.primary!r}, {self.secondary!r})"


class MediaLinkInvalid(Exception):
    """The token was not signed by us (tampered, truncated, another secret or salt)."""


class MediaLinkExpired(MediaLinkInvalid):
    """The token is ours but older than the allowed age."""


def link_serializer(secret: str | list[str], salt: str) -> URLSafeTimedSerializer:
    """The signer of one kind of link (its own `salt`: a token of one kind never opens another); `secret`
    may be a list of keys: the last signs, any verifies (a rotation)."""
    if not secret:
        raise ValueError(f"{salt} links need a secret")
    return URLSafeTimedSerializer(secret, salt=salt)


def sign_token(key: str, secret: str) -> str:
    return str(link_serializer(secret, MEDIA_SALT).dumps(check_key(key)))


def sign_media(key: str, secret: str, base_url: str) -> str:
    """`{base_url}/media/<token>`: a link to key that `unsign_media` accepts for its max_age."""
    return f"{base_url.rstrip('/')}/media/{sign_token(key, secret)}"


def unsign_media(token: str, secret: str | list[str], max_age: int = MEDIA_MAX_AGE) -> str:
    """The key a token was signed for. Raises MediaLinkExpired (too old) or MediaLinkInvalid."""
    try:
        key = link_serializer(secret, MEDIA_SALT).loads(token, max_age=max_age)
    except SignatureExpired:
        raise MediaLinkExpired("media link expired") from None
    except BadData:
        raise MediaLinkInvalid("media link invalid") from None
    if not isinstance(key, str) or KEY_RE.fullmatch(key) is None:
        raise MediaLinkInvalid("media link invalid")
    return key


def storage_from_settings(local_dir: Path, s3_bucket: str = "", s3_endpoint: str = "") -> Storage:
    """Local files by default. With a bucket: S3 first, the local directory as the secondary store
    that keeps photos when the bucket is unreachable (as the source system does)."""
    local = LocalStorage(local_dir)
    if not s3_bucket:
        return local
    return FallbackStorage(S3Storage(s3_bucket, endpoint_url=s3_endpoint or None), local)
