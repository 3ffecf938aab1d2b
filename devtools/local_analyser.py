"""Local stand-in for the N8N plant-analysis webhook (development tool, not a product claim).

`POST /dev/n8n/analyze` accepts exactly what our service sends to N8N (docs/ANALYSIS.md, "Request and answers"):
JSON `analysis_id, image_url, image_urls, farmer_id, crop_type, location, gps_coordinates, notes,
language, urgency_level, callback_url?`, signed like N8N verifies it (`services.signing`, version 2:
purpose `request`, the body's `analysis_id`, 5 minutes, any secret of `N8N_SECRET`'s list). It fetches
every photo of `image_urls` (an album, up to five; just `image_url` when absent), and answers with a
result in the schema of a real N8N result (`tests/fixtures/n8n/result_full_tr.json`), signed with
purpose `result` for the same analysis:

- no `callback_url` (sync mode): the result is the response body (200), with its signature header;
- with `callback_url` (callback mode): `202 {"accepted": true}` at once, then the result is POSTed
  to `callback_url` from a background thread, signed over the exact posted bytes (3 attempts with a
  short backoff; 4xx other than 429 is not retried).

The result is computed by `estimate(photos, request)` (pure, no HTTP) from the photos' own colours,
each photo of an album on its own (the worst one gives the result: a healthy photo does not hide a
spotted leaf): each pixel of a small copy of each image is classified in HSV as
green, yellow, brown or background (sky, white, grey, very dark, red/blue/purple). Then the leaf is
separated from the background (`segment`): the leaf is the green and yellowed regions (specks too
small to be a leaf are background), and a brown region counts as a spot on the leaf only when the
leaf surrounds it; brown reaching the photo's edge or lying against background is soil. The health
score compares the green share of the leaf area with the yellowed and browned shares. It knows
nothing about species, pests or real diseases. `processing_metadata.source` is `"local-estimate"`,
from which the app says once, in the farmer's language, that this is a local estimate; the summary
itself does not repeat it (`LOCAL_ESTIMATE_NOTE` is in `confidence_notes`).

A photo that cannot be fetched or decoded, or shows almost no leaf, gives a failed result in the
shape of `tests/fixtures/n8n/result_failed.json` (`success: false`, `error_message` in Turkish,
`error_type`). Only Turkish results are produced, whatever `language` says.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Response, current_app, jsonify, request
from PIL import Image, ImageChops, UnidentifiedImageError

from devtools import dev_blueprint
from services import signing
from services.problems import problem
from services.signing import Purpose

log = logging.getLogger(__name__)
bp = dev_blueprint("dev_local_analyser", __name__)

SOURCE = "local-estimate"
AI_MODEL = "local-pixel-estimator"
WORKFLOW_VERSION = "dev"
LOCAL_ESTIMATE_NOTE = "Bu sonuç, fotoğraftaki renklere dayalı otomatik bir yerel tahmindir"
UNKNOWN_SPECIES = "Bilinmiyor (yerel tahmin)"

CONCERN_NONE = "Belirgin bir sorun görülmedi"
CONCERN_YELLOW = "Yapraklarda sararma (olası besin eksikliği)"
CONCERN_BROWN = "Kahverengi lekeler (olası fungal hastalık)"

MAX_REQUEST_BYTES = 64 * 1024
FETCH_TIMEOUT_SECONDS = 10
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000  # checked from the header, before any pixel is decoded
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
SAMPLE_SIDE = 160  # pixels are classified on a copy at most this wide and high
MIN_LEAF_SHARE = 0.03  # below this share of leaf-coloured pixels the photo is refused
YELLOW_ISSUE_SHARE = 0.10  # of the leaf: yellowing worth naming
BROWN_ISSUE_SHARE = 0.05  # of the leaf: brown spots worth naming (a possible disease)
SPECK_SHARE = 0.002  # a green or yellow region smaller than this share of the photo is no leaf
MIN_SPECK_PIXELS = 4
MAX_PHOTOS = 5  # an album: the photos of one analysis
CALLBACK_ATTEMPTS = 3
CALLBACK_BACKOFF_SECONDS = (0.5, 1.5)  # waits before the 2nd and 3rd attempts
CALLBACK_TIMEOUT_SECONDS = 10

# Pixel classes.
GREEN, YELLOW, BROWN, DULL_BROWN, SOIL, BACKGROUND = range(6)
_LEAFISH = frozenset({GREEN, YELLOW})
_BROWNISH = frozenset({BROWN, DULL_BROWN})

_NUTRIENTS = ("nitrogen", "phosphorus", "potassium", "calcium", "magnesium", "sulfur", "iron", "zinc",
              "manganese", "boron", "copper", "molybdenum", "chlorine", "nickel")
_NOT_ASSESSED = "değerlendirilmedi"
_UNKNOWN = "bilinmiyor"


class ImageProblem(Exception):
    """The photo cannot be analysed; `message` is Turkish, for the failed result."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


# ---------------------------------------------------------------------------------------------
# HTTP helpers


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str) or not value:
        return False
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)


def fetch_image(url: str) -> bytes:
    """Download the photo (10 s timeout, at most 5 MB, streamed); ImageProblem if that fails."""
    try:
        with requests.get(url, timeout=FETCH_TIMEOUT_SECONDS, stream=True) as response:
            if response.status_code != 200:
                raise ImageProblem("image_fetch_failed", f"Görsel indirilemedi: HTTP {response.status_code}")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:
                raise ImageProblem("image_too_large", "Görsel çok büyük: 5 MB sınırı aşıldı")
            body = bytearray()
            for chunk in response.iter_content(chunk_size=64 * 1024):
                body.extend(chunk)
                if len(body) > MAX_IMAGE_BYTES:
                    raise ImageProblem("image_too_large", "Görsel çok büyük: 5 MB sınırı aşıldı")
            return bytes(body)
    except requests.Timeout as exc:
        raise ImageProblem("image_fetch_failed", "Görsel indirilemedi: zaman aşımı") from exc
    except requests.RequestException as exc:
        raise ImageProblem("image_fetch_failed", "Görsel indirilemedi: bağlantı hatası") from exc


# ---------------------------------------------------------------------------------------------
# Pixels


# Pillow's HSV scales are 0-255: a pixel darker than DARK_VALUE or greyer than GREY_SATURATION is background;
# a brown duller than DULL_SATURATION may be soil (decided by `segment`).
DARK_VALUE = 35
GREY_SATURATION = 45
DULL_SATURATION = 120


def _hue_class(hue: int) -> int:
    """GREEN, YELLOW, BROWN or BACKGROUND (red, blue, purple: fruit, flowers, sky, tools) by hue alone."""
    degrees = hue * 360 / 255
    if 72 <= degrees < 170:
        return GREEN
    if 45 <= degrees < 72:
        return YELLOW
    if 8 <= degrees < 45:
        return BROWN
    return BACKGROUND


# `pixel_classes` classifies every pixel in Pillow's C code rather than in a Python loop: each channel is mapped
# to a small band number (hue: its `_hue_class`; saturation: grey, dull, vivid; value: dark or not; alpha:
# transparent or not), the bands are added into one index per pixel, and the index is mapped to its class.
# The bands are spaced so that the sum tells them apart: hue 0-5, saturation 0/6/12, dark 18, transparent 36.
_HUE_BAND = [_hue_class(h) for h in range(256)]
_SATURATION_BAND = [0 if s < GREY_SATURATION else 6 if s < DULL_SATURATION else 12 for s in range(256)]
_DARK_BAND = [18 if v < DARK_VALUE else 0 for v in range(256)]
_TRANSPARENT_BAND = [36 if a < 128 else 0 for a in range(256)]


def _class_of_index(index: int) -> int:
    """The class of a pixel whose bands add up to `index`."""
    transparent, rest = divmod(index, 36)
    dark, rest = divmod(rest, 18)
    saturation_band, hue_class = divmod(rest, 6)
    if transparent or dark or saturation_band == 0:  # very dark, or white / grey / washed out
        return BACKGROUND
    # Soil is usually a duller brown than dead leaf tissue; dull brown may become soil (`segment`).
    return DULL_BROWN if hue_class == BROWN and saturation_band == 1 else hue_class


_CLASS_OF_INDEX = [_class_of_index(i) for i in range(256)]


def decode_sample(image_bytes: bytes) -> Image.Image:
    """The photo as a small RGBA sample (at most SAMPLE_SIDE a side), or ImageProblem for bytes we cannot use."""
    if not image_bytes:
        raise ImageProblem("image_invalid", "Görsel boş")
    if len(image_bytes) > MAX_IMAGE_BYTES:
        raise ImageProblem("image_too_large", "Görsel çok büyük: 5 MB sınırı aşıldı")
    try:
        image = Image.open(io.BytesIO(image_bytes), formats=ALLOWED_FORMATS)
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise ImageProblem("image_too_large", "Görsel çözünürlüğü çok yüksek")
        if width < 8 or height < 8:
            raise ImageProblem("image_invalid", "Görsel çok küçük")
        image.draft("RGB", (SAMPLE_SIDE * 2, SAMPLE_SIDE * 2))  # JPEG: decode at reduced size
        image.thumbnail((SAMPLE_SIDE, SAMPLE_SIDE))
        return image.convert("RGBA")
    except ImageProblem:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageProblem("image_invalid", "Görsel açılamadı: geçerli bir JPEG, PNG veya WebP değil") from exc


_RUN = re.compile(rb"\x01+")


def _member_table(members: frozenset[int]) -> bytes:
    """For `bytes.translate`: 1 for the classes in `members`, 0 for the others."""
    return bytes(1 if cls in members else 0 for cls in range(256))


def _regions(classes: bytearray, width: int, members: frozenset[int]) -> list[list[tuple[int, int]]]:
    """The 4-connected regions of pixels whose class is in `members`, each as its runs: `(start, end)`
    index ranges of one row. Runs of a row are joined to the runs of the row above that share a column
    (union-find), so the work is per run, not per pixel."""
    mask = classes.translate(_member_table(members))
    runs: list[tuple[int, int]] = []
    parent: list[int] = []

    def root(r: int) -> int:
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = parent[r]
        return r

    above: list[int] = []  # the run numbers of the row above
    for row in range(0, len(classes), width):
        here = []
        k = 0
        for match in _RUN.finditer(mask, row, row + width):
            start, end = match.span()
            number = len(runs)
            runs.append((start, end))
            parent.append(number)
            here.append(number)
            # the runs above overlapping columns [start - width, end - width)
            while k < len(above) and runs[above[k]][1] <= start - width:
                k += 1
            j = k
            while j < len(above) and runs[above[j]][0] < end - width:
                a, b = root(above[j]), root(number)
                if a != b:
                    parent[max(a, b)] = min(a, b)
                j += 1
        above = here
    regions: dict[int, list[tuple[int, int]]] = {}
    for number, run in enumerate(runs):
        regions.setdefault(root(number), []).append(run)
    return list(regions.values())


def segment(classes: bytearray, width: int, height: int) -> bytearray:
    """Separate the leaf from the background before spots are measured (classes changed in place).

    The leaf is the green and yellowed regions, bar specks too small to be a leaf (a few pixels of soil
    or sky that happen to have a leaf's hue). A brown region is a spot on the leaf only when the leaf
    surrounds it more than anything else does (its pixels' 4-neighbours outside it, counted); brown that
    reaches the edge of the photo, or that lies mostly against background, is soil (a healthy leaf on
    brown soil is not a brown leaf)."""
    total = width * height
    speck = max(MIN_SPECK_PIXELS, int(SPECK_SHARE * total))
    for region in _regions(classes, width, _LEAFISH):
        if sum(end - start for start, end in region) < speck:
            for start, end in region:
                classes[start:end] = bytes([BACKGROUND]) * (end - start)
    leaf = classes.translate(_member_table(_LEAFISH))
    brownish = classes.translate(_member_table(_BROWNISH))
    for region in _regions(classes, width, _BROWNISH):
        # A neighbour outside the region is never brownish (it would belong to the region): leaf or other.
        leaf_side = other_side = 0
        touches_edge = False
        for start, end in region:
            x, length = start % width, end - start
            touches_edge = touches_edge or start < width or end > total - width or x == 0 or x + length == width
            for offset in (-width, width):  # the row above and the row below
                if 0 <= start + offset < total:
                    leafy = leaf.count(1, start + offset, end + offset)
                    leaf_side += leafy
                    other_side += length - leafy - brownish.count(1, start + offset, end + offset)
            for side in ((start - 1) if x > 0 else None, end if x + length < width else None):
                if side is not None:
                    leaf_side += leaf[side]
                    other_side += 1 - leaf[side]
        is_spot = not touches_edge and leaf_side >= other_side
        for start, end in region:
            classes[start:end] = bytes([BROWN if is_spot else SOIL]) * (end - start)
    return classes


def pixel_classes(image: Image.Image) -> tuple[bytearray, int, int]:
    """Each pixel's class after `segment`, row by row, with the width and height."""
    width, height = image.size
    hue, saturation, value = image.convert("RGB").convert("HSV").split()
    index = ImageChops.add(ImageChops.add(hue.point(_HUE_BAND), saturation.point(_SATURATION_BAND)),
                           ImageChops.add(value.point(_DARK_BAND), image.getchannel("A").point(_TRANSPARENT_BAND)))
    classes = bytearray(index.point(_CLASS_OF_INDEX).tobytes())
    return segment(classes, width, height), width, height


def pixel_counts(image_bytes: bytes) -> dict[str, int]:
    """How many sampled pixels are healthy green, yellowed, browned (spots on the leaf), soil-like and
    background, after the leaf was separated from the background (`segment`).

    Raises ImageProblem when the bytes are not a usable JPEG, PNG or WebP image.
    """
    classes, _, _ = pixel_classes(decode_sample(image_bytes))
    return {
        "healthy_green": classes.count(GREEN),
        "yellowed": classes.count(YELLOW),
        "browned": classes.count(BROWN),
        "soil_like": classes.count(SOIL),
        "background": classes.count(BACKGROUND),
    }


# ---------------------------------------------------------------------------------------------
# The result


def _round(x: float) -> int:
    return int(x + 0.5)


def _percent(x: float) -> int:
    return _round(100 * x)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _metadata(started: float, **extra: Any) -> dict[str, Any]:
    return {"source": SOURCE, "ai_model": AI_MODEL, "workflow_version": WORKFLOW_VERSION,
            "processing_time_ms": _round((time.monotonic() - started) * 1000), **extra}


def failed_result(req: dict[str, Any], error_type: str, error_message: str) -> dict[str, Any]:
    """A failed result in the shape of a real failed N8N result (`result_failed.json`)."""
    return {
        "success": False,
        "analysis_id": req.get("analysis_id"),
        "timestamp": _now(),
        "error": True,
        "error_message": error_message,
        "error_type": error_type,
        "plant_identification": {"species": "Belirlenemedi", "confidence": 0},
        "summary": {"overall_health_score": 0, "primary_concern": "Analiz edilemedi", "prognosis": "Bilinmiyor"},
        "farmer_friendly_summary": "Sistem hatası",
        "processing_metadata": _metadata(time.monotonic()),
    }


def _recommendation(action: str, details: str, timeline: str, priority: str) -> dict[str, str]:
    return {"action": action, "details": details, "timeline": timeline, "priority": priority}


_ADVICE = {
    CONCERN_NONE: {
        "immediate": [],
        "short_term": [],
        "preventive": [_recommendation(
            "Bitkinizi düzenli gözlemleyin",
            "Haftada bir yaprakların rengine ve alt yapraklara bakın; değişiklik görürseniz yeni bir fotoğraf "
            "gönderin.", "sürekli", "düşük")],
    },
    CONCERN_YELLOW: {
        "immediate": [_recommendation(
            "Sulamayı ve toprağın nemini kontrol edin",
            "Sararma aşırı ya da yetersiz sulamadan da olabilir; toprağın çok ıslak veya çok kuru olmadığından "
            "emin olun.", "bugün", "yüksek")],
        "short_term": [_recommendation(
            "Toprak veya yaprak analizi yaptırın",
            "Gübrelemeyi analiz sonucuna göre ve bir ziraat mühendisine danışarak planlayın (çoğu zaman azot "
            "veya magnezyum eksikliği).", "1 hafta", "orta")],
        "preventive": [_recommendation(
            "Dengeli gübreleme programı uygulayın",
            "Gübreyi bölerek ve bitkinin gelişme dönemine göre verin.", "sürekli", "orta")],
    },
    CONCERN_BROWN: {
        "immediate": [_recommendation(
            "Lekeli yaprakları toplayıp imha edin",
            "Yaprakları tarlada bırakmayın; ilaç kullanmadan önce bir ziraat mühendisine veya ilçe tarım "
            "müdürlüğüne danışın.", "bugün", "yüksek")],
        "short_term": [_recommendation(
            "Teşhisi bir uzmana doğrulatın",
            "Lekeli yaprakları yakından gösteren fotoğrafları bir ziraat mühendisine gösterin.", "1-3 gün",
            "orta")],
        "preventive": [_recommendation(
            "Yaprakları ıslatmadan sulayın",
            "Sabah saatlerinde dipten sulayın ve bitkiler arasında hava dolaşımını sağlayın.", "sürekli", "orta")],
    },
}

_FINDING = {
    CONCERN_NONE: "Fotoğraftaki yaprak alanının yaklaşık %{green} kadarı sağlıklı yeşil görünüyor; belirgin bir "
                  "sorun görülmedi. Bitkinizi düzenli gözlemlemeye devam edin.",
    CONCERN_YELLOW: "Yaprak alanının yaklaşık %{yellow} kadarı sararmış görünüyor; bu çoğu zaman besin (özellikle "
                    "azot) eksikliğinin ya da sulama sorununun işaretidir. Sulamayı kontrol edin ve gübrelemeyi bir "
                    "ziraat mühendisine danışarak planlayın.",
    CONCERN_BROWN: "Yaprak alanının yaklaşık %{brown} kadarında kahverengi lekeler görünüyor; bu bir mantar "
                   "hastalığının işareti olabilir. Lekeli yaprakları toplayın ve ilaç kullanmadan önce bir ziraat "
                   "mühendisine danışın.",
}

_ALSO = {
    CONCERN_YELLOW: "Ayrıca yaprakların bir kısmında sararma da görülüyor.",
    CONCERN_BROWN: "Ayrıca bazı yerlerde kahverengi lekeler de görülüyor.",
}


def _healthy_ratio(green: int, yellow: int, brown: int) -> float:
    """The leaf's healthy share; browned tissue weighs more than yellowed: it is dead, yellowed tissue may still
    recover."""
    return green / (green + yellow + 1.5 * brown)


def _shows_leaf(counts: dict[str, int]) -> bool:
    leaf = counts["healthy_green"] + counts["yellowed"] + counts["browned"]
    return leaf >= max(MIN_LEAF_SHARE * sum(counts.values()), 1)


def _sickness(counts: dict[str, int]) -> tuple[bool, bool, float]:
    """Orders photos by how pressing their finding is: a photo showing a leaf before one that shows none, then
    one with brown spots (a possible disease) before one without (yellowing: a likely deficiency), then the
    least healthy leaf first."""
    if not _shows_leaf(counts):
        return (False, False, 0.0)
    green, yellow, brown = counts["healthy_green"], counts["yellowed"], counts["browned"]
    return (True, brown >= BROWN_ISSUE_SHARE * (green + yellow + brown), 1 - _healthy_ratio(green, yellow, brown))


def album_counts(photos: Sequence[bytes]) -> tuple[dict[str, int], int]:
    """The pixel counts of the album's worst photo, and how many photos were usable. Each photo is judged on its
    own and the most pressing finding wins, as an analyser of an album (top, underside, whole plant) reports: a
    healthy photo beside a spotted leaf does not hide the spots. Raises the first photo's ImageProblem when
    none is usable."""
    found: list[dict[str, int]] = []
    problem: ImageProblem | None = None
    for photo in photos[:MAX_PHOTOS]:
        try:
            found.append(pixel_counts(photo))
        except ImageProblem as exc:
            problem = problem or exc
    if not found:
        raise problem or ImageProblem("image_invalid", "Görsel boş")
    return max(found, key=_sickness), len(found)


def estimate(images: bytes | Sequence[bytes], req: dict[str, Any]) -> dict[str, Any]:
    """The local estimate for one photo, or an album (its worst photo: `album_counts`), and the request that
    came with it (pure: no HTTP, no app).

    Returns a result in the schema of a real N8N result; a failed result when no photo is a usable
    image or the photos show almost no leaf.
    """
    started = time.monotonic()
    photos = [bytes(images)] if isinstance(images, (bytes, bytearray)) else list(images)
    try:
        counts, used = album_counts(photos)
    except ImageProblem as problem:
        return failed_result(req, problem.error_type, problem.message)
    total = sum(counts.values())
    green, yellow, brown = counts["healthy_green"], counts["yellowed"], counts["browned"]
    leaf = green + yellow + brown
    pixel_shares = {name: round(count / total, 4) for name, count in counts.items()}
    if leaf < max(MIN_LEAF_SHARE * total, 1):
        result = failed_result(req, "no_plant_detected", "Fotoğrafta yeterli yaprak alanı bulunamadı")
        result["processing_metadata"] = _metadata(started, pixel_shares=pixel_shares)
        return result

    green_part, yellow_part, brown_part = green / leaf, yellow / leaf, brown / leaf
    healthy_ratio = _healthy_ratio(green, yellow, brown)
    score = max(1, min(10, _round(1 + 9 * healthy_ratio)))
    severity = "düşük" if score >= 7 else "orta" if score >= 4 else "yüksek"
    yellow_issue, brown_issue = yellow_part >= YELLOW_ISSUE_SHARE, brown_part >= BROWN_ISSUE_SHARE
    if brown_issue and (brown_part * 1.5 >= yellow_part or not yellow_issue):
        concern = CONCERN_BROWN
        secondary = [CONCERN_YELLOW] if yellow_issue else []
    elif yellow_issue:
        concern = CONCERN_YELLOW
        secondary = [CONCERN_BROWN] if brown_issue else []
    else:
        concern, secondary = CONCERN_NONE, []
    damaged = _percent(yellow_part + brown_part)
    leaf_share = leaf / total
    confidence = _round(30 + 30 * min(1.0, leaf_share / 0.5))  # 30-60: colours alone are weak evidence
    crop = str(req.get("crop_type") or "").strip()
    percents = {"green": _percent(green_part), "yellow": _percent(yellow_part), "brown": _percent(brown_part)}

    stress_indicators = [f"yapraklarda sararma (yaprak alanında %{percents['yellow']})"] if yellow_issue else []
    disease_symptoms = [f"kahverengi lekeler (yaprak alanında %{percents['brown']})"] if brown_issue else []
    diseases = [{
        "type": "Kahverengi yaprak lekeleri (olası fungal hastalık, renk tahmini)",
        "category": "fungal (olası)",
        "severity": severity,
        "affected_parts": ["yaprak"],
        "confidence": min(confidence, 40),
    }] if brown_issue else []
    nutrients: dict[str, Any] = dict.fromkeys(_NUTRIENTS, _NOT_ASSESSED)
    if yellow_issue:
        nutrients.update(nitrogen="olası eksik", magnesium="olası eksik", primary_deficiency="azot (olası)",
                         secondary_deficiencies=["magnezyum (olası)"],
                         severity=severity)  # never above the overall severity: "yüksek" makes it urgent
    else:
        nutrients.update(primary_deficiency="görülmedi", secondary_deficiencies=[], severity="düşük")

    leaf_color = ("çoğunlukla yeşil" if concern == CONCERN_NONE
                  else f"yeşil %{percents['green']}, sarı %{percents['yellow']}, kahverengi %{percents['brown']}")
    advice = _ADVICE[concern]
    finding = _FINDING[concern].format(**percents)
    if secondary:
        finding += " " + _ALSO[secondary[0]]
    # The app says once, in the farmer's language, that this is a local estimate (processing_metadata.source).
    summary_text = finding

    return {
        "success": True,
        "analysis_id": req.get("analysis_id"),
        "timestamp": _now(),
        "farmer_id": req.get("farmer_id"),
        "crop_type": req.get("crop_type"),
        "location": req.get("location"),
        "gps_coordinates": req.get("gps_coordinates"),
        "image_url": req.get("image_url"),
        "plant_identification": {
            "species": crop or UNKNOWN_SPECIES,
            "variety": _UNKNOWN,
            "growth_stage": _UNKNOWN,
            "identifying_features": [],
            "visible_parts": ["yaprak"],
        },
        "health_assessment": {
            "vigor_score": score,
            "leaf_color": leaf_color,
            "leaf_texture": _NOT_ASSESSED,
            "growth_pattern": _NOT_ASSESSED,
            "structural_integrity": _NOT_ASSESSED,
            "stress_indicators": stress_indicators,
            "disease_symptoms": disease_symptoms,
            "severity": severity,
        },
        "nutrient_status": nutrients,
        "pest_disease": {
            "pests_detected": [],
            "diseases_detected": diseases,
            "damage_pattern": _NOT_ASSESSED,
            "affected_area_percentage": damaged,
            "spread_risk": severity if brown_issue else "düşük",
            "primary_issue": concern,
        },
        "environmental_stress": {
            "water_status": _NOT_ASSESSED,
            "temperature_stress": _NOT_ASSESSED,
            "light_stress": _NOT_ASSESSED,
            "physical_damage": _NOT_ASSESSED,
            "chemical_damage": _NOT_ASSESSED,
            "soil_indicators": _NOT_ASSESSED,
            "primary_stressor": concern,
        },
        "cross_factor_insights": [],
        "risk_assessment": {
            "yield_loss_probability": severity,
            "timeline_to_worsen": _UNKNOWN,
            "spread_potential": "lokal" if brown_issue else "düşük",
        },
        "recommendations": {
            # The app treats a high-priority immediate step as urgent: only for a low score.
            "immediate": [{**r, "priority": "yüksek" if severity == "yüksek" else "orta"} for r in advice["immediate"]],
            "short_term": list(advice["short_term"]),
            "preventive": list(advice["preventive"]),
            "monitoring": [{
                "parameter": "yaprak rengi ve lekeler",
                "frequency": "haftada bir" if concern == CONCERN_NONE else "2-3 günde bir",
                "threshold": "sararma veya lekeler yayılırsa bir ziraat mühendisine danışın",
            }],
            "resource_estimation": {
                "water_required_liters": _NOT_ASSESSED,
                "fertilizer_cost_estimate_usd": _NOT_ASSESSED,
                "labor_hours_estimate": _NOT_ASSESSED,
            },
            "localized_recommendations": {
                "region": str(req.get("location") or ""),
                "preferred_practices": [],
                "restricted_methods": [],
            },
        },
        "summary": {
            "overall_health_score": score,
            "primary_concern": concern,
            "secondary_concerns": secondary,
            "critical_issues_count": 1 if severity == "yüksek" else 0,
            "confidence_level": confidence,
            "prognosis": {"düşük": "iyi", "orta": "orta", "yüksek": "dikkat gerekli"}[severity],
            "estimated_yield_impact": severity,
        },
        "confidence_notes": [
            {"aspect": "tür", "confidence": 0.0 if not crop else 0.5,
             "reason": "Tür fotoğraftan tanınmadı; çiftçinin bildirdiği ürün adı kullanıldı." if crop
             else "Tür fotoğraftan tanınmadı ve ürün adı bildirilmedi."},
            {"aspect": "genel", "confidence": round(confidence / 100, 2),
             "reason": f"{LOCAL_ESTIMATE_NOTE}: sonuç yalnızca piksel renklerinden hesaplandı; hastalık ve zararlı "
                       "teşhisi yapılmadı."},
        ],
        "farmer_friendly_summary": summary_text,
        "processing_metadata": _metadata(started, pixel_shares=pixel_shares, sampled_pixels=total,
                                         photos_analysed=used),
    }


def image_urls(req: dict[str, Any]) -> list[str]:
    """Every photo's link: `image_urls` (an album, at most five), else just `image_url`."""
    urls = req.get("image_urls")
    if isinstance(urls, list) and urls and all(_is_http_url(u) for u in urls):
        return [str(u) for u in urls[:MAX_PHOTOS]]
    return [str(req.get("image_url") or "")]


def analyse_url(req: dict[str, Any]) -> dict[str, Any]:
    """Fetch every photo of the request and estimate; always a result (a failed one if no photo could be
    fetched). A photo that cannot be fetched is left out when another one can."""
    started = time.monotonic()
    photos: list[bytes] = []
    problem: ImageProblem | None = None
    for url in image_urls(req):
        try:
            photos.append(fetch_image(url))
        except ImageProblem as exc:
            problem = problem or exc
            log.warning("local analyser: image not fetched",
                        extra={"analysis_id": req.get("analysis_id"), "error_type": exc.error_type})
    if not photos:
        assert problem is not None
        return failed_result(req, problem.error_type, problem.message)
    result = estimate(photos, req)
    result["processing_metadata"]["processing_time_ms"] = _round((time.monotonic() - started) * 1000)
    return result


def _signed(result: dict[str, Any], analysis_id: int, secrets: tuple[str, ...]) -> tuple[bytes, dict[str, str]]:
    """The result's bytes and the headers that carry them, signed as N8N's answer for this analysis."""
    body = json.dumps(result, ensure_ascii=False).encode("utf-8")
    return body, {"Content-Type": "application/json; charset=utf-8",
                  signing.HEADER: signing.sign(body, purpose=Purpose.RESULT, analysis_id=analysis_id,
                                               secrets=secrets, now=time.time())}


def post_callback(callback_url: str, result: dict[str, Any], analysis_id: int, secrets: tuple[str, ...]) -> bool:
    """POST the signed result; 3 attempts, retrying connection errors, 429 and 5xx. True when 2xx."""
    body, headers = _signed(result, analysis_id, secrets)
    for attempt in range(1, CALLBACK_ATTEMPTS + 1):
        try:
            response = requests.post(callback_url, data=body, headers=headers, timeout=CALLBACK_TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            outcome = type(exc).__name__
        else:
            if 200 <= response.status_code < 300:
                return True
            outcome = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                log.warning("local analyser: callback refused, not retried",
                            extra={"analysis_id": analysis_id, "outcome": outcome})
                return False
        log.warning("local analyser: callback attempt failed",
                    extra={"analysis_id": analysis_id, "attempt": attempt, "outcome": outcome})
        if attempt < CALLBACK_ATTEMPTS:
            time.sleep(CALLBACK_BACKOFF_SECONDS[min(attempt - 1, len(CALLBACK_BACKOFF_SECONDS) - 1)])
    return False


def _callback_worker(req: dict[str, Any], callback_url: str, analysis_id: int, secrets: tuple[str, ...]) -> None:
    try:
        post_callback(callback_url, analyse_url(req), analysis_id, secrets)
    except Exception:  # a background thread has nobody else to report to
        log.exception("local analyser: callback mode failed", extra={"analysis_id": analysis_id})


# ---------------------------------------------------------------------------------------------
# The route


@bp.post("/dev/n8n/analyze")
def analyze() -> Response | tuple[Response, int]:
    if (request.content_length or 0) > MAX_REQUEST_BYTES:
        return problem(413, title="body larger than 64 KB")
    raw = request.get_data(cache=True)
    settings = current_app.extensions.get("settings")
    secrets = tuple(getattr(settings, "n8n_secrets", ()))
    if not secrets:
        log.error("local analyser: N8N_SECRET is not configured")
        return problem(503, title="N8N_SECRET is not configured")
    # The signature covers the analysis id the body names, so the body is read first (size-bounded above).
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return problem(400, title="body is not valid JSON")
    if not isinstance(body, dict):
        return problem(400, title="body must be a JSON object")
    analysis_id = signing.body_id(body)
    if analysis_id is None:
        return problem(400, title="analysis_id (an integer) is required")
    refusal = signing.verify(raw, request.headers.get(signing.HEADER), purpose=Purpose.REQUEST,
                             analysis_id=analysis_id, secrets=secrets, now=time.time())
    if refusal is not None:
        log.warning("local analyser: request refused: signature", extra={"analysis_id": analysis_id,
                                                                         "reason": refusal.value})
        return problem(403, title="invalid signature")
    if not _is_http_url(body.get("image_url")):
        return problem(400, title="image_url (an http or https URL) is required")
    urls = body.get("image_urls")
    if urls is not None and not (isinstance(urls, list) and 1 <= len(urls) <= MAX_PHOTOS
                                 and all(_is_http_url(u) for u in urls)):
        return problem(400, title="image_urls must be a list of 1-5 http or https URLs")
    callback_url = body.get("callback_url")
    if callback_url:
        if not _is_http_url(callback_url):
            return problem(400, title="callback_url must be an http or https URL")
        threading.Thread(target=_callback_worker, args=(body, callback_url, analysis_id, secrets),
                         name=f"local-analyser-{analysis_id}", daemon=True).start()
        return jsonify({"accepted": True}), 202
    answer, headers = _signed(analyse_url(body), analysis_id, secrets)
    return Response(answer, status=200, headers=headers)
