"""The `/dev/chat` simulator's own words (its buttons, panels and notes), in the farmer's language.

The simulator plays the farmer's phone, so it speaks as the phone would: Turkish, or English once the
farmer chose English in the bot. These are not the bot's messages (those are in `translations/`); the
page gets both languages from `GET /dev/chat/api/config` and switches with the farmer's `locale`. A
`{name}` is filled in by whoever shows the text (the page, or `chat.py` for a refused file).
"""

from __future__ import annotations

KB, MB = 1024, 1024 * 1024

LABELS: dict[str, dict[str, str]] = {
    "tr": {
        "subtitle": "geliştirme simülatörü · her işlem imzalı bir webhook",
        "farmer_panel": "Çiftçinin numarası ve adı",
        "phone": "Çiftçinin numarası (ülke koduyla)",
        "name": "WhatsApp adı",
        "deliver_normally": "Normal teslim et",
        "fail_next": "Sonrakini düşür: {code} {title}",
        "fail_next_hint": "Botun sonraki mesajı kabul edilsin, sonra Meta bu kodla başarısız bildirsin",
        "clear": "Temizle",
        "clear_hint": "Bu sayfadaki görünümü boşalt (botun kaydı kalır)",
        "graph_warning": "Bot {base} üzerinden gönderiyor, yerel taklit üzerinden değil: yanıtları burada görünmez.",
        "start_failed": "Simülatör başlatılamadı: {error}",
        "phone_first": "Önce çiftçinin numarasını yazın.",
        "attach": "Ekle",
        "photo_title": "Fotoğraf",
        "caption": "Açıklama (isteğe bağlı), örn. domates yaprakları sararıyor",
        "choose_photos": "Bilgisayardan fotoğraf seç (birkaç tane: albüm)…",
        "sample_album": "Örnek albüm (3 fotoğraf)",
        "document_title": "Belge",
        "choose_document": "Bilgisayardan belge seç…",
        "sample_document": "Örnek belge (PDF)",
        "audio_title": "Ses",
        "choose_audio": "Bilgisayardan ses dosyası seç…",
        "sticker_title": "Çıkartma",
        "sample_sticker": "Örnek çıkartma",
        "choose_sticker": "WebP çıkartma seç…",
        "location": "Konum",
        "location_title": "Konum paylaş",
        "send_location": "Konumu gönder",
        "message": "Mesaj yazın",
        "send": "Gönder",
        "voice": "Sesli mesaj gönder",
        "close": "Kapat",
        "react": "Tepki ver",
        "tapped": "↩︎ dokunuldu",
        "template": "şablon {name}",
        "not_delivered": "! iletilmedi",
        "location_shown": "Konum: {latitude}, {longitude}",
        "voice_note": "Sesli mesaj",
        "audio_file": "Ses dosyası",
        "reacted": "Tepki: {emoji}",
        "reacted_to": "şuna: “{text}”",
        "reaction_removed": "Tepki kaldırıldı",
        "kind_image": "Bu fotoğraf",
        "kind_audio": "Bu ses kaydı",
        "kind_document": "Bu belge",
        "kind_sticker": "Bu çıkartma",
        "too_large": "{what} gönderilemedi: WhatsApp en fazla {limit} kabul ediyor (bu dosya {size}).",
        "empty_file": "{what} gönderilemedi: dosya boş.",
        "bad_image": "Bu dosya gönderilemedi: fotoğraf JPEG, PNG ya da WebP olmalı.",
        "too_many_pixels": "Bu dosya gönderilemedi: çözünürlüğü çok yüksek (çok fazla piksel).",
        "bad_sticker": "Bu dosya gönderilemedi: çıkartma WebP olmalı.",
        "bad_audio": "Bu dosya gönderilemedi: WhatsApp sesi AAC, AMR, MP3, M4A ya da OGG (Opus) olarak gönderir.",
    },
    "en": {
        "subtitle": "development simulator · every action is a signed webhook",
        "farmer_panel": "Farmer number and name",
        "phone": "Farmer number (with country code)",
        "name": "WhatsApp name",
        "deliver_normally": "Deliver normally",
        "fail_next": "Fail next: {code} {title}",
        "fail_next_hint": "Let the bot's next message be accepted, then reported failed by Meta with this code",
        "clear": "Clear",
        "clear_hint": "Empty this page's view (the bot's log stays)",
        "graph_warning": "The bot sends through {base}, not the local stand-in: its replies will not appear here.",
        "start_failed": "The simulator could not start: {error}",
        "phone_first": "Type the farmer's number first.",
        "attach": "Attach",
        "photo_title": "Photo",
        "caption": "Caption (optional), e.g. tomato leaves are turning yellow",
        "choose_photos": "Choose photos from this computer (several: an album)…",
        "sample_album": "Sample album (3 photos)",
        "document_title": "Document",
        "choose_document": "Choose a document from this computer…",
        "sample_document": "Sample document (PDF)",
        "audio_title": "Audio",
        "choose_audio": "Choose an audio file from this computer…",
        "sticker_title": "Sticker",
        "sample_sticker": "Sample sticker",
        "choose_sticker": "Choose a WebP sticker…",
        "location": "Location",
        "location_title": "Share a location",
        "send_location": "Send location",
        "message": "Type a message",
        "send": "Send",
        "voice": "Send a voice note",
        "close": "Close",
        "react": "React",
        "tapped": "↩︎ tapped",
        "template": "template {name}",
        "not_delivered": "! not delivered",
        "location_shown": "Location: {latitude}, {longitude}",
        "voice_note": "Voice message",
        "audio_file": "Audio file",
        "reacted": "Reaction: {emoji}",
        "reacted_to": "to: “{text}”",
        "reaction_removed": "Reaction removed",
        "kind_image": "This photo",
        "kind_audio": "This recording",
        "kind_document": "This document",
        "kind_sticker": "This sticker",
        "too_large": "{what} was not sent: WhatsApp takes at most {limit} (this file is {size}).",
        "empty_file": "{what} was not sent: the file is empty.",
        "bad_image": "This file was not sent: a photo must be a JPEG, PNG or WebP image.",
        "too_many_pixels": "This file was not sent: its resolution is too high (too many pixels).",
        "bad_sticker": "This file was not sent: a sticker must be a WebP image.",
        "bad_audio": "This file was not sent: WhatsApp sends audio as AAC, AMR, MP3, M4A or OGG (Opus).",
    },
}


def label(locale: str, key: str, **params: str) -> str:
    """One label in `locale` (Turkish for any other), its `{name}`s filled in."""
    text = LABELS.get(locale, LABELS["tr"])[key]
    return text.format(**params) if params else text


def file_size(size: int, locale: str) -> str:
    """A size as a phone shows it: `5 MB`, `4,2 MB`, `500 KB` (a decimal comma in Turkish)."""
    unit, value = ("MB", size / MB) if size >= MB else ("KB", size / KB)
    shown = f"{value:.1f}".removesuffix(".0")
    return f"{shown.replace('.', ',') if locale != 'en' else shown} {unit}"
