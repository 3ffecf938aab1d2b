"""The local N8N stand-in (devtools.local_analyser): a development tool, tested on its own tiny app."""

from __future__ import annotations

import io
import json
import threading
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image, ImageDraw

from devtools import local_analyser, register
from devtools.local_analyser import (
    CONCERN_BROWN,
    CONCERN_NONE,
    CONCERN_YELLOW,
    LOCAL_ESTIMATE_NOTE,
    UNKNOWN_SPECIES,
    estimate,
    post_callback,
)
from services import signing
from services.signing import Purpose, Refusal
from tests.helpers import n8n_headers

SECRET = "s3cret-0123456789"
IMAGE_URL = "https://bot.test/media/SIGNED-TOKEN"
ANALYSIS_ID = 41
CALLBACK_URL = f"https://bot.test/webhooks/n8n/{ANALYSIS_ID}"
ROUTE = "/dev/n8n/analyze"
FULL_RESULT = json.loads((Path(__file__).parent / "fixtures" / "n8n" / "result_full_tr.json").read_text("utf-8"))
WAIT_SECONDS = 30  # an upper bound for background work (a loaded CI machine), never a timing assertion


def leaf_image(fill: tuple[int, int, int], spots: Sequence[tuple[tuple[int, int, int, int], tuple[int, int, int]]] = (),
               background: tuple[int, int, int] = (245, 245, 245), fmt: str = "PNG") -> bytes:
    """A leaf-shaped ellipse with spots, on a plain background."""
    image = Image.new("RGB", (400, 300), background)
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 30, 360, 270), fill=fill)
    for box, colour in spots:
        draw.ellipse(box, fill=colour)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


GREEN_LEAF = leaf_image((60, 140, 50), [((100, 100, 125, 125), (200, 190, 60))], fmt="JPEG")
SICK_LEAF = leaf_image((200, 185, 50), [((60, 60, 200, 200), (120, 70, 30)), ((220, 120, 330, 240), (95, 60, 25)),
                                        ((150, 50, 230, 110), (70, 130, 50))])
YELLOW_LEAF = leaf_image((205, 190, 60), [((120, 80, 260, 220), (60, 140, 50))])


def request_body(**changes: Any) -> dict[str, Any]:
    body = {
        "analysis_id": ANALYSIS_ID, "image_url": IMAGE_URL, "farmer_id": "F0042", "crop_type": "domates",
        "location": "Muratpaşa, Antalya", "gps_coordinates": {"lat": 36.8969, "lng": 30.7133}, "notes": "",
        "language": "tr", "urgency_level": "normal",
    }
    body.update(changes)
    return body


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    app.extensions["settings"] = types.SimpleNamespace(n8n_secrets=(SECRET,))
    register(app)
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def call(client: FlaskClient, body: dict[str, Any] | bytes, secret: str | None = SECRET,
         purpose: Purpose = Purpose.REQUEST, now: float | None = None):
    """POST the body as the service does: signed for `ANALYSIS_ID` with purpose `request` (or as told)."""
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    headers = {} if secret is None else n8n_headers(raw, ANALYSIS_ID, purpose, secret, now)
    return client.post(ROUTE, data=raw, content_type="application/json", headers=headers)


def signed_by_the_analyser(raw: bytes, header: str | None) -> Refusal | None:
    """Our service's check of what the analyser sends back: a `result` for `ANALYSIS_ID`."""
    return signing.verify(raw, header, purpose=Purpose.RESULT, analysis_id=ANALYSIS_ID, secrets=(SECRET,),
                          now=time.time())


def serve_image(rsps: responses.RequestsMock, image: bytes, content_type: str = "image/jpeg") -> None:
    rsps.add(responses.GET, IMAGE_URL, body=image, status=200, content_type=content_type)


def assert_local_result(result: dict[str, Any]) -> None:
    """The schema of a real N8N result, plus the local-estimate marker."""
    assert result["success"] is True
    missing = set(FULL_RESULT) - set(result) - {"token_usage"}  # no tokens are spent locally
    assert not missing
    for section, keys in FULL_RESULT.items():
        if isinstance(keys, dict) and section not in {"token_usage", "gps_coordinates"}:
            expected = set(keys) - {"confidence"} if section == "plant_identification" else set(keys)
            assert expected <= set(result[section]), section
    score = result["summary"]["overall_health_score"]
    assert isinstance(score, int) and 1 <= score <= 10
    assert result["health_assessment"]["severity"] in {"düşük", "orta", "yüksek"}
    recommendations = result["recommendations"]
    assert isinstance(recommendations["immediate"], list)
    advice = recommendations["immediate"] + recommendations["short_term"] + recommendations["preventive"]
    assert 1 <= len(advice) <= 3
    assert all(set(a) == {"action", "details", "timeline", "priority"} for a in advice)
    # Said once, by the app (from processing_metadata.source): not in the summary the farmer reads.
    assert LOCAL_ESTIMATE_NOTE not in result["farmer_friendly_summary"]
    assert any(LOCAL_ESTIMATE_NOTE in note["reason"] for note in result["confidence_notes"])
    metadata = result["processing_metadata"]
    assert metadata["source"] == "local-estimate"
    assert metadata["ai_model"] == "local-pixel-estimator"
    assert metadata["workflow_version"] == "dev"
    assert isinstance(metadata["processing_time_ms"], int)
    assert result["gps_coordinates"] is None or set(result["gps_coordinates"]) == {"lat", "lng"}
    assert abs(sum(metadata["pixel_shares"].values()) - 1) < 0.01
    assert result["plant_identification"]["species"] != "Belirlenemedi"
    assert "Belirlenemedi" not in json.dumps(result, ensure_ascii=False)


# --- the sync route ------------------------------------------------------------------------------


def test_green_leaf_scores_high_and_echoes_the_request(client: FlaskClient) -> None:
    with responses.RequestsMock() as rsps:
        serve_image(rsps, GREEN_LEAF)
        response = call(client, request_body())
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert signed_by_the_analyser(response.data, response.headers.get(signing.HEADER)) is None  # a signed answer
    result = json.loads(response.data.decode("utf-8"))
    assert_local_result(result)
    assert result["summary"]["overall_health_score"] >= 7
    assert result["summary"]["primary_concern"] == CONCERN_NONE
    assert result["health_assessment"]["severity"] == "düşük"
    assert result["analysis_id"] == ANALYSIS_ID
    assert result["crop_type"] == "domates"
    assert result["location"] == "Muratpaşa, Antalya"
    assert result["gps_coordinates"] == {"lat": 36.8969, "lng": 30.7133}
    assert result["plant_identification"]["species"] == "domates"


def test_yellow_and_brown_leaf_scores_low_with_a_concern(client: FlaskClient) -> None:
    with responses.RequestsMock() as rsps:
        serve_image(rsps, SICK_LEAF, "image/png")
        response = call(client, request_body(gps_coordinates=None, crop_type=""))
    result = response.get_json()
    assert response.status_code == 200
    assert_local_result(result)
    assert result["summary"]["overall_health_score"] <= 4
    concerns = [result["summary"]["primary_concern"], *result["summary"]["secondary_concerns"]]
    assert any("sararma" in c or "leke" in c for c in concerns)
    assert result["health_assessment"]["severity"] in {"orta", "yüksek"}
    assert result["recommendations"]["immediate"]
    assert result["gps_coordinates"] is None
    assert result["plant_identification"]["species"] == UNKNOWN_SPECIES


@pytest.mark.parametrize(("changes", "reason"), [
    ({"secret": None}, Refusal.MISSING),
    ({"secret": "wrong-secret-0123456789"}, Refusal.BAD_MAC),
    ({"now": time.time() - 400}, Refusal.STALE),
    ({"purpose": Purpose.RESULT}, Refusal.WRONG_PURPOSE),  # a result replayed to N8N as a request
], ids=["missing", "other-secret", "stale", "result-purpose"])
def test_a_request_not_signed_for_n8n_is_403(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                            changes: dict[str, Any], reason: Refusal) -> None:
    with responses.RequestsMock():  # nothing may be fetched
        response = call(client, request_body(), **changes)
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert [vars(r)["reason"] for r in caplog.records
            if r.getMessage().startswith("local analyser: request refused")] == [reason.value]


def test_a_request_signed_for_another_analysis_is_403(client: FlaskClient) -> None:
    raw = json.dumps(request_body(analysis_id=ANALYSIS_ID + 1)).encode()
    with responses.RequestsMock():
        response = client.post(ROUTE, data=raw, content_type="application/json",
                               headers=n8n_headers(raw, ANALYSIS_ID, Purpose.REQUEST, SECRET))
    assert response.status_code == 403


def test_signature_is_checked_over_the_raw_bytes(client: FlaskClient) -> None:
    raw = json.dumps(request_body()).encode()
    reserialised = json.dumps(json.loads(raw), indent=1).encode()  # same JSON, other bytes
    with responses.RequestsMock():
        response = client.post(ROUTE, data=reserialised, content_type="application/json",
                               headers=n8n_headers(raw, ANALYSIS_ID, Purpose.REQUEST, SECRET))
    assert response.status_code == 403


def test_unconfigured_secret_refuses_everything(app: Flask, client: FlaskClient) -> None:
    app.extensions["settings"] = types.SimpleNamespace(n8n_secrets=())
    with responses.RequestsMock():
        assert call(client, request_body()).status_code == 503  # our misconfiguration: the service retries


def test_any_secret_of_a_rotation_list_is_accepted(app: Flask, client: FlaskClient) -> None:
    app.extensions["settings"] = types.SimpleNamespace(n8n_secrets=("new-secret-0123456789", SECRET))
    with responses.RequestsMock() as rsps:
        serve_image(rsps, GREEN_LEAF)
        response = call(client, request_body())  # signed with the old secret only
    assert response.status_code == 200
    header = response.headers[signing.HEADER]
    assert header.count("v1=") == 2  # the answer is signed by both: either side of the rotation accepts it
    assert signed_by_the_analyser(response.data, header) is None


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", json.dumps(request_body(image_url=None)).encode(),
                                 json.dumps({"analysis_id": ANALYSIS_ID}).encode(),
                                 json.dumps(request_body(analysis_id="an-1")).encode(),
                                 json.dumps(request_body(callback_url="ftp://x")).encode()])
def test_bad_requests_are_400(client: FlaskClient, raw: bytes) -> None:
    with responses.RequestsMock():
        response = call(client, raw)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(("serve", "error_type", "message"), [
    ({"status": 404, "body": b"gone"}, "image_fetch_failed", "Görsel indirilemedi: HTTP 404"),
    ({"body": requests.Timeout("slow")}, "image_fetch_failed", "Görsel indirilemedi: zaman aşımı"),
    ({"body": requests.ConnectionError("down")}, "image_fetch_failed", "Görsel indirilemedi: bağlantı hatası"),
    ({"status": 200, "body": b"<html>not an image</html>"}, "image_invalid", "Görsel açılamadı"),
    ({"status": 200, "body": b"\0" * (5 * 1024 * 1024 + 1)}, "image_too_large", "Görsel çok büyük"),
])
def test_unusable_image_gives_a_failed_result(client: FlaskClient, serve: dict[str, Any], error_type: str,
                                              message: str) -> None:
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, IMAGE_URL, **serve)
        response = call(client, request_body())
    assert response.status_code == 200
    result = response.get_json()
    assert result["success"] is False
    assert result["error"] is True
    assert result["analysis_id"] == ANALYSIS_ID
    assert result["error_type"] == error_type
    assert result["error_message"].startswith(message)
    assert result["summary"]["overall_health_score"] == 0
    assert result["processing_metadata"]["source"] == "local-estimate"
    failed_fixture = json.loads((Path(__file__).parent / "fixtures" / "n8n" / "result_failed.json").read_text("utf-8"))
    assert set(failed_fixture) <= set(result)


# --- callback mode -------------------------------------------------------------------------------


def test_callback_mode_answers_202_at_once_and_posts_a_signed_result(client: FlaskClient) -> None:
    release_image = threading.Event()
    delivered = threading.Event()
    received: list[Any] = []

    def slow_image(request: Any) -> tuple[int, dict[str, str], bytes]:
        release_image.wait(WAIT_SECONDS)
        return 200, {"Content-Type": "image/png"}, SICK_LEAF

    def callback(request: Any) -> tuple[int, dict[str, str], str]:
        received.append(request)
        delivered.set()
        return 200, {}, '{"status": "ok"}'

    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.GET, IMAGE_URL, callback=slow_image)
        rsps.add_callback(responses.POST, CALLBACK_URL, callback=callback)
        response = call(client, request_body(callback_url=CALLBACK_URL))
        assert response.status_code == 202
        assert response.get_json() == {"accepted": True}
        assert not delivered.is_set()  # the answer came while the image fetch was still held back
        release_image.set()
        assert delivered.wait(WAIT_SECONDS)

    assert len(received) == 1
    posted = received[0]
    raw = posted.body if isinstance(posted.body, bytes) else posted.body.encode()
    assert signed_by_the_analyser(raw, posted.headers[signing.HEADER]) is None
    assert posted.headers["Content-Type"].startswith("application/json")
    result = json.loads(raw.decode("utf-8"))
    assert_local_result(result)
    assert result["analysis_id"] == ANALYSIS_ID
    assert result["summary"]["overall_health_score"] <= 4


def test_callback_mode_posts_a_failed_result_when_the_image_is_gone(client: FlaskClient) -> None:
    delivered = threading.Event()
    received: list[Any] = []

    def callback(request: Any) -> tuple[int, dict[str, str], str]:
        received.append(request)
        delivered.set()
        return 200, {}, "{}"

    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, IMAGE_URL, status=404)
        rsps.add_callback(responses.POST, CALLBACK_URL, callback=callback)
        assert call(client, request_body(callback_url=CALLBACK_URL)).status_code == 202
        assert delivered.wait(WAIT_SECONDS)
    raw = received[0].body
    assert signed_by_the_analyser(raw, received[0].headers[signing.HEADER]) is None
    result = json.loads(raw)
    assert result["success"] is False
    assert result["error_type"] == "image_fetch_failed"


@pytest.mark.parametrize(("statuses", "delivered", "calls"), [
    ([503, 429, 200], True, 3),
    ([500, 500, 500], False, 3),
    ([404], False, 1),
    ([200], True, 1),
])
def test_callback_retries_transient_failures(monkeypatch: pytest.MonkeyPatch, statuses: list[int], delivered: bool,
                                             calls: int) -> None:
    monkeypatch.setattr(local_analyser, "CALLBACK_BACKOFF_SECONDS", (0, 0))
    answers = iter(statuses)
    result = {"success": True, "analysis_id": ANALYSIS_ID, "farmer_friendly_summary": "Türkçe ğüşıöç"}
    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.POST, CALLBACK_URL, callback=lambda request: (next(answers), {}, ""))
        assert post_callback(CALLBACK_URL, result, ANALYSIS_ID, (SECRET,)) is delivered
        assert len(rsps.calls) == calls
        posted = [call.request for call in rsps.calls]
    assert {request.body for request in posted} == {posted[0].body}  # every attempt posts the same bytes
    assert isinstance(posted[0].body, bytes)
    assert json.loads(posted[0].body) == result
    assert all(signed_by_the_analyser(posted[0].body, request.headers[signing.HEADER]) is None for request in posted)


# --- the pure estimate ---------------------------------------------------------------------------


def test_estimate_is_pure_and_tells_yellowing_from_browning() -> None:
    yellow = estimate(YELLOW_LEAF, {"analysis_id": "a", "crop_type": "buğday"})
    assert_local_result(yellow)
    assert yellow["summary"]["primary_concern"] == CONCERN_YELLOW
    assert yellow["nutrient_status"]["primary_deficiency"] == "azot (olası)"
    assert "sararmış" in yellow["farmer_friendly_summary"]

    brown = estimate(leaf_image((60, 140, 50), [((80, 60, 220, 240), (110, 65, 30))]), {"analysis_id": "b"})
    assert_local_result(brown)
    assert brown["summary"]["primary_concern"] == CONCERN_BROWN
    assert brown["pest_disease"]["diseases_detected"]
    assert "kahverengi lekeler" in brown["farmer_friendly_summary"]


def test_soil_around_the_plant_is_background_but_dull_spots_on_the_leaf_are_not() -> None:
    on_soil = estimate(leaf_image((60, 140, 50), background=(120, 95, 70)), {})
    assert on_soil["processing_metadata"]["pixel_shares"]["soil_like"] > 0.3
    assert on_soil["summary"]["overall_health_score"] >= 7

    dull_spots = estimate(leaf_image((60, 140, 50), [((100, 80, 200, 220), (120, 95, 70))]), {})
    assert dull_spots["processing_metadata"]["pixel_shares"]["soil_like"] == 0
    assert dull_spots["processing_metadata"]["pixel_shares"]["browned"] > 0.05


def soil_photo(spots: Sequence[tuple[int, int, int, int]] = ()) -> bytes:
    """A healthy leaf on textured brown soil under a strip of sky, made with Pillow, saved as a phone would (JPEG)."""
    import random

    rng = random.Random(7)
    image = Image.new("RGB", (480, 360), (125, 78, 36))  # saturated brown soil
    draw = ImageDraw.Draw(image)
    for _ in range(900):  # clods, stones and shadows: darker, duller and redder browns
        x, y = rng.randrange(480), rng.randrange(60, 360)
        r = rng.randrange(2, 7)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=rng.choice([(90, 55, 25), (150, 100, 55), (60, 40, 20),
                                                                    (110, 85, 65), (30, 20, 10)]))
    draw.rectangle((0, 0, 480, 50), fill=(140, 190, 235))  # sky
    draw.ellipse((120, 90, 380, 300), fill=(62, 138, 48))  # the leaf
    draw.line((130, 195, 370, 195), fill=(90, 160, 70), width=3)  # its midrib
    for box in spots:
        draw.ellipse(box, fill=(105, 62, 28))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def test_a_healthy_leaf_on_brown_soil_is_healthy_not_a_brown_leaf() -> None:
    result = estimate(soil_photo(), {"analysis_id": "s", "crop_type": "domates"})
    assert_local_result(result)
    shares = result["processing_metadata"]["pixel_shares"]
    assert shares["soil_like"] > 0.5 and shares["browned"] < 0.01
    assert result["summary"]["overall_health_score"] >= 8
    assert result["summary"]["primary_concern"] == CONCERN_NONE
    assert result["pest_disease"]["diseases_detected"] == []
    normalise = pytest.importorskip("services.analysis_result").normalise
    assert normalise(result).urgent is False


def test_spots_on_a_leaf_on_brown_soil_are_still_found() -> None:
    spots = [(170, 140, 210, 175), (260, 200, 300, 240), (220, 120, 250, 150), (300, 150, 335, 185)]
    result = estimate(soil_photo(spots), {"analysis_id": "s"})
    assert result["summary"]["primary_concern"] == CONCERN_BROWN
    assert result["processing_metadata"]["pixel_shares"]["soil_like"] > 0.5


# The pixel rules written the plain way, pixel by pixel (the analyser runs them in Pillow and over runs of rows).
def rule_class(hue: int, saturation: int, value: int, alpha: int) -> int:
    if alpha < 128 or value < 35 or saturation < 45:
        return local_analyser.BACKGROUND
    degrees = hue * 360 / 255
    if 72 <= degrees < 170:
        return local_analyser.GREEN
    if 45 <= degrees < 72:
        return local_analyser.YELLOW
    if 8 <= degrees < 45:
        return local_analyser.DULL_BROWN if saturation < 120 else local_analyser.BROWN
    return local_analyser.BACKGROUND


def rule_regions(classes: bytearray, width: int, members: set[int]) -> list[list[int]]:
    height, seen, regions = len(classes) // width, set(), []
    for first in range(len(classes)):
        if first in seen or classes[first] not in members:
            continue
        seen.add(first)
        region, todo = [], [first]
        while todo:
            i = todo.pop()
            region.append(i)
            for n in rule_neighbours(i, width, height):
                if n not in seen and classes[n] in members:
                    seen.add(n)
                    todo.append(n)
        regions.append(region)
    return regions


def rule_neighbours(i: int, width: int, height: int) -> list[int]:
    x, y = i % width, i // width
    return [n for n, inside in ((i - 1, x > 0), (i + 1, x < width - 1), (i - width, y > 0), (i + width, y < height - 1))
            if inside]


def rule_segment(classes: bytearray, width: int) -> bytearray:
    height = len(classes) // width
    leafish, brownish = {local_analyser.GREEN, local_analyser.YELLOW}, {local_analyser.BROWN, local_analyser.DULL_BROWN}
    speck = max(local_analyser.MIN_SPECK_PIXELS, int(local_analyser.SPECK_SHARE * len(classes)))
    for region in rule_regions(classes, width, leafish):
        for i in region if len(region) < speck else ():
            classes[i] = local_analyser.BACKGROUND
    for region in rule_regions(classes, width, brownish):
        inside = set(region)
        outside = [classes[n] for i in region for n in rule_neighbours(i, width, height) if n not in inside]
        edge = any(i % width in (0, width - 1) or i // width in (0, height - 1) for i in region)
        spot = not edge and sum(c in leafish for c in outside) >= sum(c not in leafish for c in outside)
        for i in region:
            classes[i] = local_analyser.BROWN if spot else local_analyser.SOIL
    return classes


def test_pixels_are_classed_and_segmented_as_the_rules_say_pixel_by_pixel() -> None:
    import random

    rng = random.Random(3)
    for trial in range(400):  # random class maps, some smoothed into regions with holes and shared edges
        width, height = rng.randint(1, 24), rng.randint(1, 24)
        classes = bytearray(rng.choices(range(6), [rng.random() for _ in range(6)], k=width * height))
        for _ in range(trial % 3):
            classes = bytearray(rng.choice([classes[i], *(classes[n] for n in rule_neighbours(i, width, height))])
                                for i in range(width * height))
        assert local_analyser.segment(bytearray(classes), width, height) == rule_segment(bytearray(classes), width)
    noise = io.BytesIO()  # every hue, saturation, value and transparency at random
    Image.frombytes("RGBA", (48, 40), rng.randbytes(48 * 40 * 4)).save(noise, "PNG")
    for photo in (soil_photo([(170, 140, 210, 175)]), GREEN_LEAF, SICK_LEAF, YELLOW_LEAF, noise.getvalue()):
        image = local_analyser.decode_sample(photo)
        hsv, alpha = image.convert("RGB").convert("HSV").tobytes(), image.getchannel("A").tobytes()
        plain = bytearray(rule_class(hsv[3 * i], hsv[3 * i + 1], hsv[3 * i + 2], alpha[i]) for i in range(len(alpha)))
        got, width, _ = local_analyser.pixel_classes(image)
        assert got == rule_segment(plain, width)


def test_every_photo_of_an_album_counts_and_an_unusable_one_is_left_out() -> None:
    album = estimate([GREEN_LEAF, b"not a photo", YELLOW_LEAF], {"analysis_id": "a"})
    assert album["success"] is True and album["processing_metadata"]["photos_analysed"] == 2
    alone = estimate(GREEN_LEAF, {"analysis_id": "a"})
    assert album["summary"]["overall_health_score"] < alone["summary"]["overall_health_score"]
    assert estimate([b"", b"junk"], {"analysis_id": "a"})["success"] is False


def test_a_healthy_photo_in_an_album_does_not_hide_a_spotted_leaf() -> None:
    spotted = estimate(SICK_LEAF, {"analysis_id": "a"})
    for album in ([SICK_LEAF, GREEN_LEAF], [GREEN_LEAF, GREEN_LEAF, SICK_LEAF]):
        result = estimate(album, {"analysis_id": "a"})
        assert result["summary"]["overall_health_score"] == spotted["summary"]["overall_health_score"]
        assert result["summary"]["primary_concern"] == spotted["summary"]["primary_concern"]


def test_a_yellowed_leaf_in_an_album_does_not_hide_a_spotted_one() -> None:
    samples = Path(__file__).resolve().parent.parent / "devtools" / "static" / "samples"
    spotted, yellowed, dry = (samples.joinpath(f"{name}.jpg").read_bytes()
                              for name in ("lekeli_yaprak", "sararan_yaprak", "kuruyan_kenarlar"))
    alone = estimate(spotted, {"analysis_id": "a"})["summary"]["primary_concern"]
    assert "leke" in alone.lower()
    for album in ([spotted, yellowed, dry], [yellowed, spotted], [dry, yellowed, spotted]):
        assert estimate(album, {"analysis_id": "a"})["summary"]["primary_concern"] == alone


def test_an_album_photo_showing_no_leaf_does_not_decide_the_result() -> None:
    sky = leaf_image((150, 190, 240), background=(150, 190, 240))
    result = estimate([sky, GREEN_LEAF], {"analysis_id": "a"})
    assert result["success"] is True
    assert result["summary"]["overall_health_score"] == estimate(GREEN_LEAF, {})["summary"]["overall_health_score"]


def test_the_route_fetches_every_image_url(client: FlaskClient) -> None:
    urls = [IMAGE_URL, IMAGE_URL + "-2", IMAGE_URL + "-3"]
    with responses.RequestsMock() as rsps:
        for url, image in zip(urls, (GREEN_LEAF, GREEN_LEAF, SICK_LEAF), strict=True):
            rsps.add(responses.GET, url, body=image, status=200, content_type="image/jpeg")
        response = call(client, request_body(image_urls=urls))
        fetched = [c.request.url for c in rsps.calls]
    assert response.status_code == 200 and fetched == urls
    assert response.get_json()["processing_metadata"]["photos_analysed"] == 3
    assert call(client, request_body(image_urls="x")).status_code == 400
    assert call(client, request_body(image_urls=[IMAGE_URL] * 6)).status_code == 400


@pytest.mark.parametrize(("image", "error_type"), [
    (b"", "image_invalid"),
    (b"GIF89a-not-allowed", "image_invalid"),
    (leaf_image((250, 250, 250)), "no_plant_detected"),  # a white sheet: no leaf to judge
])
def test_estimate_refuses_unusable_images(image: bytes, error_type: str) -> None:
    result = estimate(image, {"analysis_id": "x"})
    assert result["success"] is False
    assert result["error_type"] == error_type
    assert result["analysis_id"] == "x"


def test_register_twice_is_harmless(app: Flask) -> None:
    register(app)
    assert [rule.rule for rule in app.url_map.iter_rules()].count(ROUTE) == 1


def test_the_apps_normaliser_reads_local_results_as_completed_local_estimates() -> None:
    normalise = pytest.importorskip("services.analysis_result").normalise
    healthy = normalise(estimate(GREEN_LEAF, {"analysis_id": "a", "crop_type": "domates"}))
    assert (healthy.ok, healthy.urgent, healthy.is_local_estimate) == (True, False, True)
    assert healthy.species == "domates"
    spotted = estimate(leaf_image((60, 140, 50), [((100, 80, 220, 200), (110, 65, 30))]), {"analysis_id": "b"})
    assert spotted["summary"]["primary_concern"] == CONCERN_BROWN
    assert spotted["summary"]["overall_health_score"] >= 4
    assert normalise(spotted).urgent is False  # a moderate finding is not an emergency
    sick = normalise(estimate(SICK_LEAF, {"analysis_id": "c"}))
    assert (sick.ok, sick.urgent, sick.species) == (True, True, UNKNOWN_SPECIES)
    failed = normalise(estimate(b"junk", {"analysis_id": "d"}))
    assert failed.ok is False
