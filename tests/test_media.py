"""services/storage.py and `GET /media/<token>`: stores, keys, signed links, the media route.

The route is tested on a small Flask app made here (the app factory wires the real one).
"""

from __future__ import annotations

import io
import logging
import os
import stat
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import itsdangerous.timed
import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from PIL import Image

from services.storage import (
    KEY_RE,
    FallbackStorage,
    InvalidKey,
    LocalStorage,
    MediaLinkExpired,
    MediaLinkInvalid,
    S3Storage,
    Storage,
    content_type_for,
    new_key,
    sign_media,
    unsign_media,
)
from web.media import bp

SECRET = "media-test-secret-0123456789abcdef"
BASE = "https://bot.example.com"
T0 = 1_800_000_000


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (40, 140, 60)).save(buffer, "JPEG")
    return buffer.getvalue()


class Clock:
    """Stands in for the `time` module inside itsdangerous.timed: tokens are signed and aged at `now`."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(T0)
    monkeypatch.setattr(itsdangerous.timed, "time", fake)
    return fake


@pytest.fixture
def store(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "media")


class MemoryStorage:
    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = (data, content_type)

    def get(self, key: str) -> bytes:
        return self.objects[key][0]

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)


class BrokenStorage:
    def __init__(self) -> None:
        self.calls = 0

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.calls += 1
        raise ConnectionError("object store unreachable")

    def get(self, key: str) -> bytes:
        self.calls += 1
        raise ConnectionError("object store unreachable")

    def delete(self, key: str) -> None:
        self.calls += 1
        raise ConnectionError("object store unreachable")


# --- keys ----------------------------------------------------------------------------------------


def test_new_keys_are_unguessable_and_valid() -> None:
    keys = {new_key("photos", "jpg") for _ in range(2000)}
    assert len(keys) == 2000
    for key in list(keys)[:50]:
        kind, rest = key.split("/")
        name, ext = rest.split(".")
        assert (kind, ext) == ("photos", "jpg")
        assert len(name) == 32  # 24 random bytes, URL-safe base64
        assert KEY_RE.fullmatch(key)
    assert new_key("originals", ".JPEG").endswith(".jpg")
    assert new_key("originals", "webp").endswith(".webp")


@pytest.mark.parametrize(("kind", "ext"), [("Photos", "jpg"), ("../x", "jpg"), ("", "jpg"), ("photos", "exe"),
                                           ("photos", "jpg/../x"), ("photo s", "png")])
def test_new_key_refuses_odd_kinds_and_extensions(kind: str, ext: str) -> None:
    with pytest.raises(ValueError):
        new_key(kind, ext)


def test_content_type_follows_the_extension() -> None:
    assert content_type_for(new_key("photos", "jpg")) == "image/jpeg"
    assert content_type_for(new_key("originals", "png")) == "image/png"
    assert content_type_for(new_key("originals", "webp")) == "image/webp"
    assert content_type_for(new_key("originals", "bin")) == "application/octet-stream"


# --- LocalStorage --------------------------------------------------------------------------------


def test_local_round_trip_private_and_atomic(store: LocalStorage, tmp_path: Path) -> None:
    assert isinstance(store, Storage)
    key = new_key("photos", "jpg")
    data = jpeg_bytes()
    store.put(key, data, "image/jpeg")
    assert store.get(key) == data

    path = tmp_path / "media" / key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0  # directory private too
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind

    store.put(key, b"replaced", "image/jpeg")
    assert store.get(key) == b"replaced"

    store.delete(key)
    with pytest.raises(KeyError):
        store.get(key)
    store.delete(key)  # deleting again is fine


def test_local_missing_key_is_a_key_error(store: LocalStorage) -> None:
    with pytest.raises(KeyError):
        store.get(new_key("photos", "jpg"))


def test_local_failed_write_leaves_nothing(store: LocalStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_key("photos", "jpg")

    def fail(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        store.put(key, b"data", "image/jpeg")
    assert list((store.root / "photos").iterdir()) == []


TRAVERSAL_KEYS = [
    "../etc/passwd",
    "../../etc/passwd.jpg",
    "photos/../../../../etc/passwd.jpg",
    "photos/..%2F..%2Fetc%2Fpasswdxxxxxxxxxx.jpg",
    "/etc/aaaaaaaaaaaaaaaaaaaaaaaaa.jpg",
    "photos/aaaaaaaaaaaaaaaaaaaaaaaa.jpg/../../x",
    "photos/sub/aaaaaaaaaaaaaaaaaaaaaaaaa.jpg",
    "photos/aaaaaaaaaaaaaaaaaaaaaaaaa.jpg\n",
    "photos/aaaaaaaaaaaaaaaaaaaaaaaaa.jpg\x00.png",
    "photos\\..\\..\\aaaaaaaaaaaaaaaaaaaaa.jpg",
    "Photos/aaaaaaaaaaaaaaaaaaaaaaaaa.jpg",
    "photos/short.jpg",
    "photos/aaaaaaaaaaaaaaaaaaaaaaaaa.exe",
    "photos/.aaaaaaaaaaaaaaaaaaaaaaaa.jpg",
    "",
]


@pytest.mark.parametrize("key", TRAVERSAL_KEYS)
def test_local_refuses_keys_new_key_cannot_make(store: LocalStorage, tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidKey):
        store.put(key, b"evil", "image/jpeg")
    with pytest.raises(InvalidKey):
        store.get(key)
    with pytest.raises(InvalidKey):
        store.delete(key)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


# --- S3Storage (a stand-in client; no network) --------------------------------------------------


class FakeS3Error(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class FakeBody:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data


class FakeS3Client:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.fail_with: Exception | None = None

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> None:
        self.calls.append("put_object")
        self.objects[(Bucket, Key)] = {"Body": Body, "ContentType": ContentType}

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        self.calls.append("get_object")
        if self.fail_with:
            raise self.fail_with
        if (Bucket, Key) not in self.objects:
            raise FakeS3Error("NoSuchKey")
        return {"Body": FakeBody(self.objects[(Bucket, Key)]["Body"])}

    def delete_object(self, *, Bucket: str, Key: str) -> None:
        self.calls.append("delete_object")
        self.objects.pop((Bucket, Key), None)


def test_s3_round_trip_with_prefix() -> None:
    client = FakeS3Client()
    s3 = S3Storage("ziraai-media", prefix="prod/", client=client)
    key = new_key("photos", "jpg")
    s3.put(key, b"jpeg bytes", "image/jpeg")
    assert client.objects[("ziraai-media", f"prod/{key}")] == {"Body": b"jpeg bytes", "ContentType": "image/jpeg"}
    assert s3.get(key) == b"jpeg bytes"
    s3.delete(key)
    with pytest.raises(KeyError):
        s3.get(key)
    with pytest.raises(InvalidKey):
        s3.put("../x.jpg", b"", "image/jpeg")
    assert "put_object" in client.calls and client.calls.count("put_object") == 1


def test_s3_errors_other_than_missing_propagate() -> None:
    client = FakeS3Client()
    client.fail_with = FakeS3Error("AccessDenied")
    with pytest.raises(FakeS3Error):
        S3Storage("b", client=client).get(new_key("photos", "jpg"))


def test_s3_without_boto3_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 -> ImportError
    with pytest.raises(RuntimeError, match="boto3"):
        S3Storage("bucket", endpoint_url="https://s3.example.com")


def test_s3_builds_its_client_with_boto3_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, str | None]] = []
    fake_boto3 = types.ModuleType("boto3")

    def client(service: str, endpoint_url: str | None = None) -> FakeS3Client:
        made.append((service, endpoint_url))
        return FakeS3Client()

    fake_boto3.client = client  # type: ignore[attr-defined]  # a stand-in module, attributes set by hand
    monkeypatch.setitem(sys.modules, "boto3", fake_boto3)
    S3Storage("bucket", endpoint_url="https://minio.local:9000")
    assert made == [("s3", "https://minio.local:9000")]


# --- FallbackStorage -----------------------------------------------------------------------------


def test_fallback_writes_to_the_secondary_when_the_primary_fails(caplog: pytest.LogCaptureFixture) -> None:
    primary, secondary = BrokenStorage(), MemoryStorage()
    storage = FallbackStorage(primary, secondary)
    key = new_key("photos", "jpg")
    with caplog.at_level(logging.WARNING, logger="services.storage"):
        storage.put(key, b"photo", "image/jpeg")
    assert secondary.objects[key] == (b"photo", "image/jpeg")
    assert any("primary storage failed" in r.getMessage() for r in caplog.records)
    assert storage.get(key) == b"photo"  # the primary fails again; the secondary answers


def test_fallback_reads_the_secondary_when_the_primary_lacks_the_key() -> None:
    primary, secondary = MemoryStorage(), MemoryStorage()
    storage = FallbackStorage(primary, secondary)
    old, new = new_key("photos", "jpg"), new_key("photos", "jpg")
    secondary.put(old, b"from the old store", "image/jpeg")
    storage.put(new, b"fresh", "image/jpeg")
    assert new in primary.objects and new not in secondary.objects
    assert storage.get(old) == b"from the old store"
    assert storage.get(new) == b"fresh"
    with pytest.raises(KeyError):
        storage.get(new_key("photos", "jpg"))
    storage.delete(old)
    storage.delete(new)
    assert primary.objects == secondary.objects == {}


def test_fallback_raises_when_both_fail() -> None:
    storage = FallbackStorage(BrokenStorage(), BrokenStorage())
    key = new_key("photos", "jpg")
    with pytest.raises(ConnectionError):
        storage.put(key, b"x", "image/jpeg")
    with pytest.raises(ConnectionError):
        storage.get(key)
    with pytest.raises(ConnectionError):
        storage.delete(key)


def test_fallback_never_passes_an_invalid_key_on() -> None:
    primary, secondary = BrokenStorage(), BrokenStorage()
    storage = FallbackStorage(primary, secondary)
    for call in (lambda: storage.put("../x", b"", "image/jpeg"), lambda: storage.get("../x"),
                 lambda: storage.delete("../x")):
        with pytest.raises(InvalidKey):
            call()
    assert primary.calls == secondary.calls == 0


def test_fallback_from_local_to_local(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the primary's directory should be")
    primary, secondary = LocalStorage(blocked), LocalStorage(tmp_path / "secondary")
    storage = FallbackStorage(primary, secondary)
    key = new_key("photos", "jpg")
    storage.put(key, b"kept", "image/jpeg")
    assert secondary.get(key) == b"kept"
    assert storage.get(key) == b"kept"


# --- signed links --------------------------------------------------------------------------------


def token_of(url: str) -> str:
    assert url.startswith(f"{BASE}/media/")
    return url.removeprefix(f"{BASE}/media/")


def tamper(token: str) -> str:
    """One character of the signature changed. Not the last one: base64 of the 20-byte HMAC ends in
    a character whose low bits are padding, so changing it can leave the signature intact."""
    head, _, signature = token.rpartition(".")
    i = len(signature) // 2
    return f"{head}.{signature[:i]}{'A' if signature[i] != 'A' else 'B'}{signature[i + 1:]}"


def test_signed_link_round_trip(clock: Clock) -> None:
    key = new_key("photos", "jpg")
    url = sign_media(key, SECRET, BASE + "/")
    token = token_of(url)
    assert "/" not in token and key not in url  # the key itself is not readable in the URL path
    assert len(url) < 200
    assert unsign_media(token, SECRET, 3600) == key
    clock.now = T0 + 3600
    assert unsign_media(token, SECRET, 3600) == key
    clock.now = T0 + 3601
    with pytest.raises(MediaLinkExpired):
        unsign_media(token, SECRET, 3600)
    with pytest.raises(MediaLinkExpired):
        unsign_media(token, SECRET)  # default max age: one hour


def test_max_age_zero_expires_after_a_second(clock: Clock) -> None:
    token = token_of(sign_media(new_key("photos", "jpg"), SECRET, BASE))
    clock.now += 1
    with pytest.raises(MediaLinkExpired):
        unsign_media(token, SECRET, 0)


def test_tampered_or_foreign_links_are_invalid(clock: Clock) -> None:
    key = new_key("photos", "jpg")
    token = token_of(sign_media(key, SECRET, BASE))
    flipped = tamper(token)
    _, _, rest = token.partition(".")
    other_key = URLSafeTimedSerializer(SECRET, salt="ziraai-media").dumps(new_key("photos", "jpg")).partition(".")[0]
    candidates = [
        flipped,
        token[:-5],
        f"{other_key}.{rest}",  # another key under this signature
        token_of(sign_media(key, "another-secret-0123456789abcdef", BASE)),
        URLSafeTimedSerializer(SECRET, salt="another-salt").dumps(key),
        URLSafeTimedSerializer(SECRET).dumps(key),
        "",
        "..",
        "not-a-token",
    ]
    for candidate in candidates:
        with pytest.raises(MediaLinkInvalid) as info:
            unsign_media(candidate, SECRET, 3600)
        assert not isinstance(info.value, MediaLinkExpired), candidate
    clock.now = T0 + 10_000  # a tampered token stays invalid (403), even once it would have expired
    with pytest.raises(MediaLinkInvalid) as info:
        unsign_media(flipped, SECRET, 3600)
    assert not isinstance(info.value, MediaLinkExpired)


def test_a_signed_payload_that_is_not_a_key_is_invalid() -> None:
    serializer = URLSafeTimedSerializer(SECRET, salt="ziraai-media")
    for payload in ["../../etc/passwd", "photos/short.jpg", ["photos/x"], {"key": "x"}, 42]:
        with pytest.raises(MediaLinkInvalid):
            unsign_media(serializer.dumps(payload), SECRET, 3600)
    with pytest.raises(InvalidKey):
        sign_media("../../etc/passwd", SECRET, BASE)


# --- GET /media/<token> --------------------------------------------------------------------------


@pytest.fixture
def media_app(store: LocalStorage) -> Iterator[Flask]:
    app = Flask(__name__)
    app.extensions["storage"] = store
    app.extensions["media_secret"] = SECRET
    app.extensions["media_max_age"] = 3600
    app.register_blueprint(bp)
    yield app


@pytest.fixture
def media_client(media_app: Flask) -> FlaskClient:
    return media_app.test_client()


def stored_link(store: Storage, data: bytes, ext: str = "jpg") -> tuple[str, str]:
    key = new_key("photos", ext)
    store.put(key, data, content_type_for(key))
    return key, sign_media(key, SECRET, BASE).removeprefix(BASE)


def assert_problem(response: Any, status: int) -> None:
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == status
    assert response.headers["Cache-Control"] == "no-store"


def test_a_signed_link_serves_the_photo_with_its_type_and_private_caching(
        media_client: FlaskClient, store: LocalStorage, clock: Clock) -> None:
    data = jpeg_bytes()
    _, path = stored_link(store, data)
    response = media_client.get(path)
    assert response.status_code == 200
    assert response.data == data
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["Cache-Control"] == "private, max-age=300"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert int(response.headers["Content-Length"]) == len(data)

    _, png_path = stored_link(store, b"\x89PNG\r\n\x1a\nfake", "png")
    assert media_client.get(png_path).headers["Content-Type"] == "image/png"
    assert media_client.head(path).status_code == 200


def test_expired_link_is_410(media_client: FlaskClient, media_app: Flask, store: LocalStorage, clock: Clock) -> None:
    _, path = stored_link(store, jpeg_bytes())
    clock.now = T0 + 3599
    assert media_client.get(path).status_code == 200
    clock.now = T0 + 3601
    assert_problem(media_client.get(path), 410)
    media_app.extensions["media_max_age"] = 7200  # the app's setting is what counts
    assert media_client.get(path).status_code == 200


def test_default_max_age_is_an_hour(media_client: FlaskClient, media_app: Flask, store: LocalStorage,
                                    clock: Clock) -> None:
    del media_app.extensions["media_max_age"]
    _, path = stored_link(store, jpeg_bytes())
    clock.now = T0 + 3600
    assert media_client.get(path).status_code == 200
    clock.now = T0 + 3601
    assert media_client.get(path).status_code == 410


def test_tampered_link_is_403(media_client: FlaskClient, store: LocalStorage, clock: Clock) -> None:
    _, path = stored_link(store, jpeg_bytes())
    assert_problem(media_client.get(tamper(path)), 403)
    assert_problem(media_client.get("/media/not-a-token"), 403)
    foreign = URLSafeTimedSerializer("someone-else", salt="ziraai-media").dumps(new_key("photos", "jpg"))
    assert_problem(media_client.get(f"/media/{foreign}"), 403)


def test_signed_link_to_a_missing_photo_is_404(media_client: FlaskClient, store: LocalStorage,
                                               clock: Clock) -> None:
    key, path = stored_link(store, jpeg_bytes())
    store.delete(key)
    assert_problem(media_client.get(path), 404)
    never_stored = sign_media(new_key("photos", "jpg"), SECRET, BASE).removeprefix(BASE)
    assert_problem(media_client.get(never_stored), 404)


def test_signed_traversal_payload_is_refused(media_client: FlaskClient, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("root:x:0:0")
    serializer = URLSafeTimedSerializer(SECRET, salt="ziraai-media")
    for payload in ["../secret.txt", "../../secret.txt", str(tmp_path / "secret.txt")]:
        response = media_client.get(f"/media/{serializer.dumps(payload)}")
        assert response.status_code == 403
        assert b"root:" not in response.data


@pytest.mark.parametrize(
    "path",
    ["/media/", "/media", "/media/..%2F..%2Fetc%2Fpasswd", "/media/../x", "/media/%2e%2e/%2e%2e/etc/passwd",
     "/media/..%5C..%5Cetc%5Cpasswd", "/media/photos/aaaaaaaaaaaaaaaaaaaaaaaaaaaa.jpg", "/media/.."],
)
def test_no_listing_and_no_traversal(media_client: FlaskClient, store: LocalStorage, path: str) -> None:
    stored_link(store, b"a stored photo")
    response = media_client.get(path)
    assert response.status_code in (403, 404)
    assert b"a stored photo" not in response.data and b"root:" not in response.data


def test_storage_down_is_503_not_a_traceback(media_app: Flask, media_client: FlaskClient) -> None:
    media_app.extensions["storage"] = BrokenStorage()
    path = sign_media(new_key("photos", "jpg"), SECRET, BASE).removeprefix(BASE)
    assert_problem(media_client.get(path), 503)


def test_route_reads_a_fallback_store(media_app: Flask, media_client: FlaskClient, tmp_path: Path) -> None:
    secondary = LocalStorage(tmp_path / "old")
    media_app.extensions["storage"] = FallbackStorage(LocalStorage(tmp_path / "new"), secondary)
    _, path = stored_link(secondary, b"from the old store")
    response = media_client.get(path)
    assert response.status_code == 200 and response.data == b"from the old store"


def test_storage_is_local_without_a_bucket_and_falls_back_to_local_with_one(tmp_path, monkeypatch):
    import sys
    import types

    from services.storage import FallbackStorage, LocalStorage, storage_from_settings

    assert isinstance(storage_from_settings(tmp_path), LocalStorage)
    fake_boto3 = types.SimpleNamespace(client=lambda service, endpoint_url=None: object())
    monkeypatch.setitem(sys.modules, "boto3", fake_boto3)
    assert isinstance(storage_from_settings(tmp_path, "photos", "https://s3.example.test"), FallbackStorage)
