"""`/dev/chat`: a WhatsApp-like page to chat with the bot as a farmer (development only).

Every action on the page is a JSON call under `/dev/chat/api/`, which builds the Meta-shaped message
(`devtools.webhook_bodies`), signs it with `WHATSAPP_APP_SECRET` and POSTs it over real HTTP to
`PUBLIC_BASE_URL/webhooks/whatsapp`: the production path, nothing skipped. What the bot sends reaches
the page through the Graph API stand-in (`devtools.graph_api`), which records it in the farmer's
transcript in Redis (`devtools.store`) with the delivery statuses our webhook accepted.

API (JSON in and out; bad input is a 400 problem document in the simulator's words, in the language of
`Accept-Language` (the page's), else the farmer's, else Turkish; a refused webhook a 502):
- `GET  /dev/chat/api/config`: samples, provinces, recent farmers, which Graph API the bot uses, the
  media limits and the page's labels in each language (`devtools.chat_labels`).
- `GET  /dev/chat/api/conversation?phone=...`: the farmer's and the bot's messages in order, each with
  its delivery status and a view (`kind`, `text`, `buttons`, `list`, `image_url`, ...), and the
  farmer's `locale` (the page's labels follow it).
- `POST /dev/chat/api/text` `{phone, name, text}`
- `POST /dev/chat/api/photo` `{phone, name, caption?, sample}` or multipart with a `file` (an album is
  several of these in a row, as WhatsApp delivers one: a message per photo)
- `POST /dev/chat/api/voice` `{phone, name}` (a sample voice note) or multipart with an audio `file`
- `POST /dev/chat/api/document` `{phone, name, caption?}` (a sample PDF) or multipart with a `file`
- `POST /dev/chat/api/sticker` `{phone, name}` (a sample sticker) or multipart with a WebP `file`
- `POST /dev/chat/api/reaction` `{phone, name, wamid, emoji}`: react to a bot message (`""` removes it)

Uploads may be as large as WhatsApp lets each kind through (`MEDIA_LIMITS`: image 5 MB, audio 16 MB,
document 100 MB, sticker 500 KB); the app-wide 3 MB request limit is raised for these routes only. A
file WhatsApp would not send (too large, wrong format, too many pixels) is not sent: the farmer reads
why in the chat, in their language (a `note` in the transcript), and the call answers 413 / 400 titled
`file not sent`.
- `POST /dev/chat/api/location` `{phone, name, latitude, longitude, place?, address?}` or `{..., province}`
- `POST /dev/chat/api/reply` `{phone, name, wamid?, id? | title?}`: tap a reply button, a list row or a
  template's quick-reply button of a bot message (the newest one offering it unless `wamid` is given).
- `POST /dev/chat/api/clear` `{phone}`: empty the page's transcript (the bot's message log stays).
- `POST /dev/chat/api/fail-next` `{phone, code}`: the Graph API stand-in accepts the bot's next message
  to this farmer, then reports it `failed` with Meta's error `code` (one of `async_failures` in the
  config; `null` cancels), so the bot's answer to that failure (a template after 131047) shows.
- `GET  /dev/chat/api/media/<id>`: a file the farmer sent, for the page (a document as a download, sandboxed).

Anyone who can reach these routes can sign webhooks as Meta: that is why the dev tools exist only
outside production, and `make run` listens on 127.0.0.1.
"""

from __future__ import annotations

import functools
import io
import logging
import mimetypes
import re
import struct
from pathlib import Path
from typing import Any

import requests
from flask import Response, current_app, jsonify, request, send_from_directory, url_for
from PIL import Image, ImageDraw, UnidentifiedImageError
from sqlalchemy import select
from werkzeug.exceptions import RequestEntityTooLarge

from devtools import dev_blueprint, store, webhook_bodies
from devtools.chat_labels import KB, LABELS, LOCALES, MB, file_size, label
from devtools.make_samples import SAMPLES
from models import Farmer
from services import context
from services.json_input import unstorable_paths
from services.problems import problem
from translations.templates import TEMPLATES

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
bp = dev_blueprint("dev_chat", __name__, static_folder=str(STATIC_DIR), static_url_path="/dev/chat/static")

# WhatsApp's media limits per kind (Cloud API, supported media types): what a phone lets through.
MEDIA_LIMITS = {"image": 5 * MB, "audio": 16 * MB, "document": 100 * MB, "sticker": 500 * KB}
ROUTE_KINDS = {"photo": "image", "voice": "audio", "document": "document", "sticker": "sticker"}
FORM_OVERHEAD = 64 * KB  # the multipart framing and the other fields around the file
FILE_NOT_SENT = "file not sent"
MAX_PHOTO_BYTES = MEDIA_LIMITS["image"]
TEXT_MAX = 4096
CAPTION_MAX = 1024
NAME_MAX = 60
PHONE_SHAPE = re.compile(r"\+?[\d\s().-]{8,24}")
IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
DEFAULT_FARMER = {"phone": "905321234567", "name": "Mehmet Yılmaz"}
REACTIONS = ("👍", "❤️", "😂", "😮", "😢", "🙏")
FILENAME_MAX = 240

# A few provinces (centre coordinates) for sharing a location.
PROVINCES = {
    "Antalya": (36.8969, 30.7133, "Muratpaşa, Antalya"),
    "Adana": (37.0000, 35.3213, "Seyhan, Adana"),
    "Konya": (37.8746, 32.4932, "Selçuklu, Konya"),
    "İzmir": (38.4237, 27.1428, "Konak, İzmir"),
    "Bursa": (40.1828, 29.0667, "Osmangazi, Bursa"),
    "Şanlıurfa": (37.1591, 38.7969, "Haliliye, Şanlıurfa"),
    "Mersin": (36.8121, 34.6415, "Yenişehir, Mersin"),
    "Samsun": (41.2867, 36.3300, "İlkadım, Samsun"),
}


class BadInput(ValueError):
    """The request cannot be used; the label (`devtools.chat_labels`) says what to send instead, in the
    reader's language."""

    def __init__(self, label_key: str, **params: Any) -> None:
        super().__init__(label_key)
        self.label_key, self.params = label_key, {k: str(v) for k, v in params.items()}


class FileNotSent(Exception):
    """A file WhatsApp would not send: the farmer is told in the chat (`label_key` in their language)."""

    def __init__(self, status: int, label_key: str, **params: Any) -> None:
        super().__init__(label_key)
        self.status, self.label_key, self.params = status, label_key, params


@bp.errorhandler(BadInput)
def _bad_input(exc: BadInput) -> Response:
    return problem(400, label(_reader_locale(), exc.label_key, **exc.params), title="bad input")


def _reader_locale() -> str:
    """Whose language an error is in: the page's (it sends `Accept-Language`), else the farmer's when the
    request names one, else Turkish."""
    if request.accept_languages:
        return request.accept_languages.best_match(LOCALES) or "tr"
    data = request.get_json(silent=True) if request.is_json else None
    phone = data.get("phone") if isinstance(data, dict) else request.values.get("phone")
    wa_id = _phone_or_none(phone) if isinstance(phone, str) else None
    return _locale(wa_id) if wa_id else "tr"


@bp.errorhandler(FileNotSent)
def _file_not_sent(exc: FileNotSent, *, form_read: bool = True) -> Response:
    """Say why in the chat, as the phone would, and answer with the same words."""
    wa_id = _phone_or_none(request.args.get("phone")) or (
        _phone_or_none(request.form.get("phone")) if form_read else None)
    locale = _locale(wa_id) if wa_id else "tr"
    params = {k: file_size(v, locale) if k in ("limit", "size") else v for k, v in exc.params.items()}
    if "kind" in params:
        params["what"] = label(locale, "kind_" + params.pop("kind"))
    text = label(locale, exc.label_key, **params)
    if wa_id:
        store.append(context.redis(), wa_id, "note", "note." + webhook_bodies.new_wamid()[6:],
                     {"type": "note", "note": {"text": text}})
    return problem(exc.status, text, title=FILE_NOT_SENT)


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> Response:
    """A body over the route's raised limit: the form is unread, so the phone comes from the query."""
    route = request.path.rsplit("/", 1)[-1]
    kind = ROUTE_KINDS.get(route)
    if kind is None:
        return problem(413, exc.description, title=exc.name)
    return _file_not_sent(FileNotSent(413, "too_large", kind=kind, limit=MEDIA_LIMITS[kind],
                                      size=request.content_length or 0), form_read=False)


def _settings() -> Any:
    return current_app.extensions["settings"]


# ---------------------------------------------------------------------------------------------
# Input


def _input() -> dict[str, Any]:
    if request.mimetype == "multipart/form-data" or request.mimetype == "application/x-www-form-urlencoded":
        return request.form.to_dict()
    data = request.get_json(silent=True)  # the app's strict reader: None for NaN, 1e400, deep nests...
    if not isinstance(data, dict):
        raise BadInput("bad_json")
    bad = sorted({str(path[0]) for path in unstorable_paths(data) if path})
    if bad:  # a lone surrogate cannot be sent on as UTF-8 (nor kept in Redis): say so, never a 500
        raise BadInput("bad_characters", fields=", ".join(bad))
    return data


def _text_field(data: dict[str, Any], name: str, limit: int, *, required: bool) -> str:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise BadInput("field_required", field=name)
        return ""
    if not isinstance(value, str):
        raise BadInput("field_not_text", field=name)
    value = value.strip()
    if required and not value:
        raise BadInput("field_blank", field=name)
    if len(value) > limit:
        raise BadInput("field_too_long", field=name, limit=limit)
    return value


def _phone_or_none(value: str | None) -> str | None:
    if not value or not PHONE_SHAPE.fullmatch(value.strip()):
        return None
    wa_id = store.digits(value)
    return wa_id if 8 <= len(wa_id) <= 15 else None


def _locale(wa_id: str) -> str:
    """The farmer's language as the bot keeps it (Turkish for a farmer it does not know yet)."""
    with context.db().reader() as session:
        found = session.scalar(select(Farmer.locale).where(Farmer.phone == "+" + wa_id))
    return found if found in LABELS else "tr"


def _phone(data: dict[str, Any]) -> str:
    value = data.get("phone")
    if not isinstance(value, str) or not PHONE_SHAPE.fullmatch(value.strip()):
        raise BadInput("bad_phone")
    wa_id = store.digits(value)
    if not 8 <= len(wa_id) <= 15:
        raise BadInput("phone_digits")
    return wa_id


def _farmer(data: dict[str, Any]) -> tuple[str, str]:
    return _phone(data), _text_field(data, "name", NAME_MAX, required=False)


def _number(data: dict[str, Any], name: str, low: float, high: float) -> float:
    value = data.get(name)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise BadInput("field_number", field=name, low=f"{low:g}", high=f"{high:g}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadInput("field_number", field=name, low=f"{low:g}", high=f"{high:g}")
    return float(value)


def _allow_upload(kind: str) -> None:
    """Raise the app-wide request limit for this request only, to what WhatsApp takes for `kind`
    (before anything reads the body)."""
    request.max_content_length = MEDIA_LIMITS[kind] + FORM_OVERHEAD


def _uploaded(kind: str) -> tuple[bytes, str, str] | None:
    """The uploaded `file` (content, declared mime type, file name), None when there is none; refused
    like a phone refuses it when empty or over WhatsApp's limit for `kind`."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return None
    content = upload.read(MEDIA_LIMITS[kind] + 1)
    if not content:
        raise FileNotSent(400, "empty_file", kind=kind)
    if len(content) > MEDIA_LIMITS[kind]:
        raise FileNotSent(413, "too_large", kind=kind, limit=MEDIA_LIMITS[kind],
                          size=max(len(content), request.content_length or 0))
    return content, upload.mimetype or "", upload.filename


def _image_type(content: bytes) -> str:
    """The photo's mime type, from its bytes (what WhatsApp would send on)."""
    if not content:
        raise FileNotSent(400, "empty_file", kind="image")
    if len(content) > MAX_PHOTO_BYTES:
        raise FileNotSent(413, "too_large", kind="image", limit=MAX_PHOTO_BYTES, size=len(content))
    try:
        with Image.open(io.BytesIO(content)) as image:
            kind = image.format or ""
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise FileNotSent(400, "too_many_pixels") from None
    except (UnidentifiedImageError, OSError):
        kind = ""
    if kind not in IMAGE_TYPES:
        raise FileNotSent(400, "bad_image")
    return IMAGE_TYPES[kind]


def _audio_type(content: bytes) -> str:
    """An audio file's mime type from its bytes, among those WhatsApp sends (AAC, AMR, MP3, MP4, OGG Opus)."""
    head = content[:64]
    if head.startswith(b"OggS"):
        return "audio/ogg; codecs=opus" if b"OpusHead" in head else "audio/ogg"
    if head.startswith(b"#!AMR"):
        return "audio/amr"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    if head[4:8] == b"ftyp":
        return "audio/mp4"
    if head[:2] in (b"\xff\xf1", b"\xff\xf9"):
        return "audio/aac"
    raise FileNotSent(400, "bad_audio")


def _filename(name: str) -> str:
    """The file's own name, as WhatsApp shows it (no folders, no control characters, bounded)."""
    base = re.sub(r"[\x00-\x1f\x7f]", "", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return base[-FILENAME_MAX:] or "belge"


# ---------------------------------------------------------------------------------------------
# Samples for the kinds a browser cannot easily make (generated once per process, no files kept)


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def _ogg_page(packets: list[bytes], *, sequence: int, granule: int, flags: int) -> bytes:
    lacing = b"".join(bytes([255] * (len(p) // 255) + [len(p) % 255]) for p in packets)
    page = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, 0x5A1A, sequence, 0, len(lacing)) + lacing
    page += b"".join(packets)
    return page[:22] + struct.pack("<I", _ogg_crc(page)) + page[26:]


@functools.cache
def sample_voice_note(seconds: int = 2) -> bytes:
    """A voice note as WhatsApp records one (Ogg Opus, mono, 48 kHz): `seconds` of silence."""
    frames = seconds * 50  # 20 ms frames
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, 312, 48000, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 6) + b"ZiraAI" + struct.pack("<I", 0)
    silence = b"\xf8\xff\xfe"  # one 20 ms CELT frame of silence
    return (_ogg_page([head], sequence=0, granule=0, flags=0x02) + _ogg_page([tags], sequence=1, granule=0, flags=0)
            + _ogg_page([silence] * frames, sequence=2, granule=312 + frames * 960, flags=0x04))


@functools.cache
def sample_sticker() -> bytes:
    """A 512x512 WebP sticker (a smiling leaf), the size WhatsApp asks stickers to be."""
    image = Image.new("RGBA", (512, 512), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((56, 56, 456, 456), fill=(76, 175, 80, 255), outline=(27, 94, 32, 255), width=14)
    draw.line((256, 90, 256, 430), fill=(27, 94, 32, 255), width=10)
    for x in (200, 312):
        draw.ellipse((x - 22, 190, x + 22, 240), fill=(255, 255, 255, 255))
    draw.arc((170, 250, 342, 370), 20, 160, fill=(255, 255, 255, 255), width=14)
    out = io.BytesIO()
    image.save(out, "WEBP", quality=80)
    return out.getvalue()


@functools.cache
def sample_document() -> bytes:
    """A one-page PDF, like the soil analysis a farmer might forward."""
    page = Image.new("RGB", (595, 842), "white")
    draw = ImageDraw.Draw(page)
    draw.text((60, 60), "Toprak analizi - ornek belge", fill="black")
    for row, (name, value) in enumerate((("pH", "7.4"), ("Organik madde", "%1.8"), ("Fosfor", "6 ppm"))):
        draw.text((60, 110 + 24 * row), f"{name}: {value}", fill="black")
    out = io.BytesIO()
    page.save(out, "PDF")
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Sending as the farmer


def _deliver(wa_id: str, name: str, message: dict[str, Any]) -> Response | tuple[Response, int]:
    """Record the farmer's message, POST it signed to our webhook, and report what the webhook said."""
    settings, redis = _settings(), context.redis()
    store.remember_farmer(redis, wa_id, name)
    # In the transcript before the webhook sees it: the bot's answer can never come first.
    store.append(redis, wa_id, "in", message["id"], message)
    store.set_status(redis, message["id"], "pending")
    body = webhook_bodies.messages_body([message], sender=wa_id, name=name or None,
                                        phone_number_id=settings.phone_number_ids[0])
    url = settings.PUBLIC_BASE_URL.rstrip("/") + "/webhooks/whatsapp"
    try:
        response = webhook_bodies.post_signed(url, body, settings.WHATSAPP_APP_SECRET, timeout=10)
    except requests.RequestException as exc:
        store.set_status(redis, message["id"], "failed")
        log.warning("simulator: webhook not reachable", extra={"error": type(exc).__name__})
        return problem(502, f"POST {url} failed ({type(exc).__name__}); is PUBLIC_BASE_URL this server's address?",
                       title="webhook not reachable")
    if response.status_code != 200:
        store.set_status(redis, message["id"], "failed")
        return problem(502, f"POST {url} answered {response.status_code}", title="webhook refused the message")
    store.set_status(redis, message["id"], "delivered")  # the business received it; `read` comes from mark-read
    return jsonify({"wamid": message["id"], "webhook_status": response.status_code}), 200


@bp.post("/dev/chat/api/text")
def send_text() -> Response | tuple[Response, int]:
    data = _input()
    wa_id, name = _farmer(data)
    body = _text_field(data, "text", TEXT_MAX, required=True)
    return _deliver(wa_id, name, webhook_bodies.text(wa_id, body))


@bp.post("/dev/chat/api/photo")
def send_photo() -> Response | tuple[Response, int]:
    _allow_upload("image")
    data = _input()
    wa_id, name = _farmer(data)
    caption = _text_field(data, "caption", CAPTION_MAX, required=False)
    uploaded = _uploaded("image")
    if uploaded is not None:
        content = uploaded[0]
    else:
        sample = data.get("sample")
        if not isinstance(sample, str) or sample not in SAMPLES:
            raise BadInput("bad_sample", samples=", ".join(SAMPLES))
        content = (STATIC_DIR / "samples" / f"{sample}.jpg").read_bytes()
    media = store.put_media(context.redis(), content, _image_type(content))
    message = webhook_bodies.image(wa_id, media.id, sha256=media.sha256, mime_type=media.mime_type,
                                   caption=caption or None)
    return _deliver(wa_id, name, message)


@bp.post("/dev/chat/api/voice")
def send_voice() -> Response | tuple[Response, int]:
    """A voice note (the sample, recorded "in WhatsApp") or an attached audio file (`voice: false`)."""
    _allow_upload("audio")
    data = _input()
    wa_id, name = _farmer(data)
    uploaded = _uploaded("audio")
    content = uploaded[0] if uploaded else sample_voice_note()
    media = store.put_media(context.redis(), content, _audio_type(content))
    message = webhook_bodies.audio(wa_id, media.id, sha256=media.sha256, mime_type=media.mime_type,
                                   voice=uploaded is None)
    return _deliver(wa_id, name, message)


@bp.post("/dev/chat/api/document")
def send_document() -> Response | tuple[Response, int]:
    _allow_upload("document")
    data = _input()
    wa_id, name = _farmer(data)
    caption = _text_field(data, "caption", CAPTION_MAX, required=False)
    uploaded = _uploaded("document")
    if uploaded is not None:
        content, declared, filename = uploaded[0], uploaded[1], _filename(uploaded[2])
        mime_type = declared if declared and declared != "application/octet-stream" else (
            mimetypes.guess_type(filename)[0] or "application/octet-stream")
    else:
        content, mime_type, filename = sample_document(), "application/pdf", "toprak_analizi.pdf"
    media = store.put_media(context.redis(), content, mime_type)
    message = webhook_bodies.document(wa_id, media.id, sha256=media.sha256, filename=filename,
                                      mime_type=mime_type, caption=caption or None)
    return _deliver(wa_id, name, message)


@bp.post("/dev/chat/api/sticker")
def send_sticker() -> Response | tuple[Response, int]:
    _allow_upload("sticker")
    data = _input()
    wa_id, name = _farmer(data)
    uploaded = _uploaded("sticker")
    content = uploaded[0] if uploaded else sample_sticker()
    try:
        with Image.open(io.BytesIO(content)) as image:
            webp, animated = image.format == "WEBP", bool(getattr(image, "is_animated", False))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise FileNotSent(400, "too_many_pixels") from None
    except (UnidentifiedImageError, OSError):
        webp = animated = False
    if not webp:
        raise FileNotSent(400, "bad_sticker")
    media = store.put_media(context.redis(), content, "image/webp")
    return _deliver(wa_id, name, webhook_bodies.sticker(wa_id, media.id, sha256=media.sha256, animated=animated))


@bp.post("/dev/chat/api/reaction")
def send_reaction() -> Response | tuple[Response, int]:
    data = _input()
    wa_id, name = _farmer(data)
    wamid = _text_field(data, "wamid", 200, required=True)
    emoji = data.get("emoji")
    if not isinstance(emoji, str) or len(emoji) > 16 or (emoji and emoji.isascii()):
        raise BadInput("bad_emoji")
    if not any(e["wamid"] == wamid and e["dir"] == "out" for e in store.transcript(context.redis(), wa_id)):
        raise BadInput("no_message_to_react", wamid=wamid)
    return _deliver(wa_id, name, webhook_bodies.reaction(wa_id, wamid, emoji))


@bp.post("/dev/chat/api/location")
def send_location() -> Response | tuple[Response, int]:
    data = _input()
    wa_id, name = _farmer(data)
    province = data.get("province")
    if province is not None:
        if not isinstance(province, str) or province not in PROVINCES:  # a list or an object is no key
            raise BadInput("bad_province", provinces=", ".join(PROVINCES))
        latitude, longitude, address = PROVINCES[province]
        place = province
    else:
        latitude = _number(data, "latitude", -90, 90)
        longitude = _number(data, "longitude", -180, 180)
        place = _text_field(data, "place", 200, required=False)
        address = _text_field(data, "address", 300, required=False)
    message = webhook_bodies.location(wa_id, latitude, longitude, name=place or None, address=address or None)
    return _deliver(wa_id, name, message)


@bp.post("/dev/chat/api/reply")
def send_reply() -> Response | tuple[Response, int]:
    data = _input()
    wa_id, name = _farmer(data)
    wamid = _text_field(data, "wamid", 200, required=False)
    choice_id = _text_field(data, "id", 256, required=False)
    title = _text_field(data, "title", 100, required=False)
    if not choice_id and not title:
        raise BadInput("reply_what")
    found = _find_choice(store.transcript(context.redis(), wa_id), wamid, choice_id, title)
    if found is None:
        what = choice_id or title
        raise BadInput("nothing_to_tap_in", wamid=wamid, what=what) if wamid else BadInput("nothing_to_tap", what=what)
    bot_wamid, choice = found
    if choice["kind"] == "template":
        message = webhook_bodies.template_button(wa_id, choice["id"], choice["title"], context_id=bot_wamid)
    else:
        message = webhook_bodies.interactive_reply(wa_id, choice["kind"], choice["id"], choice["title"],
                                                   description=choice.get("description"), context_id=bot_wamid)
    return _deliver(wa_id, name, message)


@bp.post("/dev/chat/api/fail-next")
def fail_next() -> tuple[Response, int]:
    data = _input()
    wa_id, code = _phone(data), data.get("code")
    if code is not None and (type(code) is not int or code not in webhook_bodies.ASYNC_FAILURES):
        raise BadInput("bad_fail_code", codes=", ".join(map(str, webhook_bodies.ASYNC_FAILURES)))
    store.fail_next(context.redis(), wa_id, code)
    return jsonify({"phone": wa_id, "fail_next": code}), 200


@bp.post("/dev/chat/api/clear")
def clear() -> tuple[Response, int]:
    store.clear(context.redis(), _phone(_input()))
    return jsonify({"cleared": True}), 200


# ---------------------------------------------------------------------------------------------
# Reading the conversation


def _strip_number(title: str) -> str:
    return re.sub(r"^\d+\.\s*", "", title)


def _find_choice(entries: list[dict[str, Any]], wamid: str, choice_id: str,
                 title: str) -> tuple[str, dict[str, Any]] | None:
    """The newest bot message (or the one with `wamid`) offering this choice: (its wamid, the choice)."""
    wanted = title.casefold()
    for entry in reversed(entries):
        if entry["dir"] != "out" or (wamid and entry["wamid"] != wamid):
            continue
        for choice in choices(entry["body"]):
            if (choice_id and choice["id"] == choice_id) or (
                    title and wanted in (choice["title"].casefold(), _strip_number(choice["title"]).casefold())):
                return entry["wamid"], choice
    return None


def choices(body: dict[str, Any]) -> list[dict[str, Any]]:
    """What a farmer can tap in a bot message: `{kind, id, title[, description]}`; kind is `button_reply`,
    `list_reply` or `template` (a quick-reply button, whose id is its payload)."""
    kind = body.get("type")
    if kind == "interactive":
        interactive = body.get("interactive") or {}
        action = interactive.get("action") or {}
        if interactive.get("type") == "button":
            return [{"kind": "button_reply", "id": b["reply"]["id"], "title": b["reply"]["title"]}
                    for b in action.get("buttons", []) if isinstance(b.get("reply"), dict)]
        if interactive.get("type") == "list":
            return [{"kind": "list_reply", "id": r["id"], "title": r["title"],
                     **({"description": r["description"]} if r.get("description") else {})}
                    for s in action.get("sections", []) for r in s.get("rows", [])]
    if kind == "template":
        content = body.get("template") or {}
        definition = TEMPLATES.get(str(content.get("name")))
        found = []
        for component in content.get("components", []):
            if component.get("type") != "button" or component.get("sub_type") != "quick_reply":
                continue
            index = int(str(component.get("index", "0")))
            payload = next((p.get("payload") for p in component.get("parameters", []) if p.get("type") == "payload"),
                           None)
            label = definition.buttons[index].text if definition and index < len(definition.buttons) else payload
            if payload:
                found.append({"kind": "template", "id": str(payload), "title": str(label)})
        return found
    return []


def _template_text(content: dict[str, Any]) -> str:
    params = [str(p.get("text", "")) for c in content.get("components", []) if c.get("type") == "body"
              for p in c.get("parameters", [])]
    definition = TEMPLATES.get(str(content.get("name")))
    if definition is None:
        return f"[template {content.get('name')}] " + " · ".join(params)
    try:
        return definition.render(params)
    except IndexError:
        return f"[template {definition.name}: {len(params)} parameters for {len(definition.param_names)}]"


def _media_url(content: dict[str, Any]) -> str | None:
    if content.get("link"):
        return str(content["link"])
    if content.get("id"):
        return url_for("dev_chat.media", media_id=str(content["id"]))
    return None


def view(entry: dict[str, Any]) -> dict[str, Any]:
    """One transcript entry as the page shows it."""
    body = entry["body"]
    kind = str(body.get("type", "unknown"))
    shown: dict[str, Any] = {"seq": entry["seq"], "dir": entry["dir"], "wamid": entry["wamid"], "at": entry["at"],
                             "status": entry.get("status"), "kind": kind, "text": ""}
    content = body.get(kind) if isinstance(body.get(kind), dict) else {}
    if kind == "text":
        shown["text"] = content.get("body", "")
    elif kind == "image":
        shown.update(text=content.get("caption", ""), image_url=_media_url(content))
    elif kind == "location":
        shown.update(text=" · ".join(str(content[k]) for k in ("name", "address") if content.get(k)),
                     location={"latitude": content.get("latitude"), "longitude": content.get("longitude")})
    elif kind == "template":
        shown.update(text=_template_text(content), template=content.get("name"), buttons=choices(body))
    elif kind == "audio":
        shown.update(audio_url=_media_url(content), voice=bool(content.get("voice")))
    elif kind == "sticker":
        shown["sticker_url"] = _media_url(content)
    elif kind == "document":
        shown.update(text=content.get("caption", ""), document={
            "filename": content.get("filename") or "", "mime_type": content.get("mime_type") or "",
            "url": _media_url(content)})
    elif kind == "reaction":
        shown.update(text=content.get("emoji", ""), reply_to=content.get("message_id"))
    elif kind in ("note", "button"):  # the phone's own word (a file it would not send); a quick reply tapped
        shown["text"] = content.get("text", "")
    elif kind == "interactive" and entry["dir"] == "in":
        reply = content.get(content.get("type", ""), {})
        shown.update(kind=content.get("type", "interactive"), text=reply.get("title", ""))
    elif kind == "interactive":
        shown.update(kind="list" if content.get("type") == "list" else "buttons",
                     text=(content.get("body") or {}).get("text", ""),
                     header=(content.get("header") or {}).get("text"),
                     footer=(content.get("footer") or {}).get("text"))
        if content.get("type") == "list":
            action = content.get("action") or {}
            shown["list"] = {"button": action.get("button", ""), "sections": [
                {"title": s.get("title"), "rows": [{"id": r["id"], "title": r["title"],
                                                    "description": r.get("description")} for r in s.get("rows", [])]}
                for s in action.get("sections", [])]}
        else:
            shown["buttons"] = choices(body)
    else:
        shown["text"] = f"[{kind}]"
    if isinstance(body.get("context"), dict):
        shown["reply_to"] = body["context"].get("id") or body["context"].get("message_id")
    return shown


@bp.get("/dev/chat/api/conversation")
def conversation() -> tuple[Response, int]:
    wa_id = _phone(request.args.to_dict())
    messages = [view(entry) for entry in store.transcript(context.redis(), wa_id)]
    return jsonify({"phone": wa_id, "locale": _locale(wa_id), "messages": messages}), 200


# What the page shows in place (its <img> and <audio>); anything else a farmer sent is a download.
INLINE_MEDIA = frozenset({*IMAGE_TYPES.values(), "audio/ogg", "audio/ogg; codecs=opus", "audio/amr", "audio/mpeg",
                          "audio/mp4", "audio/aac"})


@bp.get("/dev/chat/api/media/<media_id>")
def media(media_id: str) -> Response | tuple[Response, int]:
    """A file the farmer sent, as the page shows it. An uploaded document may be HTML: on this origin (which
    also serves /console) it must never be a live page, so it is a download, unsniffed and sandboxed."""
    found = store.get_media(context.redis(), media_id)
    if found is None:
        return problem(404, "photos are kept for a day", title="no such media")
    return Response(found.content, mimetype=found.mime_type, headers={
        "Cache-Control": "private, max-age=86400",
        "Content-Disposition": "inline" if found.mime_type in INLINE_MEDIA else "attachment",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    })


@bp.get("/dev/chat/api/config")
def config() -> tuple[Response, int]:
    settings = _settings()
    base = settings.whatsapp_api_base
    stand_in = base.startswith(settings.PUBLIC_BASE_URL.rstrip("/") + "/dev/graph/")
    return jsonify({
        "default_farmer": DEFAULT_FARMER,
        "farmers": store.farmers(context.redis()),
        "samples": [{"name": key, "label": "sample_" + key,  # a key of `labels`: the page says it in its language
                     "url": url_for("dev_chat.static", filename=f"samples/{key}.jpg")} for key in SAMPLES],
        "provinces": [{"name": name, "latitude": lat, "longitude": lng, "address": address}
                      for name, (lat, lng, address) in PROVINCES.items()],
        "graph_api": {"base": base, "stand_in": stand_in},
        "async_failures": [{"code": code, "title": title} for code, title in webhook_bodies.ASYNC_FAILURES.items()],
        "webhook_url": settings.PUBLIC_BASE_URL.rstrip("/") + "/webhooks/whatsapp",
        "media_limits": MEDIA_LIMITS,
        "reactions": REACTIONS,
        "labels": LABELS,
    }), 200


@bp.get("/dev/chat")
def page() -> Response:
    return send_from_directory(STATIC_DIR, "chat.html", max_age=0)
