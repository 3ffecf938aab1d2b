"""The N8N contract: request body, its signature (version 2), the strict reading of a result, and the
client's error mapping and breaker use."""

from __future__ import annotations

import json
import logging
import socket
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import fakeredis
import pytest
import requests
import responses

from services import signing
from services.circuit import CircuitBreaker
from services.n8n import (
    CircuitOpen,
    InvalidResult,
    N8NClient,
    N8NPermanentError,
    N8NTransientError,
    build_request,
    parse_result,
    parse_retry_after,
    serialise,
)
from services.signing import Purpose, Refusal
from tests.helpers import n8n_headers, wait_until

URL = "https://n8n.test/webhook/ziraai-analyze"
SECRET = "test-n8n-secret-0123456789"
SECRETS = (SECRET,)


def body(**overrides):
    args = {
        "analysis_id": 42,
        "image_url": "https://bot.example.com/media/SIGNED-TOKEN",
        "farmer_ref": "F0042",
        "crop_type": "domates",
        "location": "Muratpaşa, Antalya",
        "lat": 36.8969,
        "lng": 30.7133,
        "notes": "Alt yapraklarda sarı lekeler, güneşte kuruyor",
    }
    return build_request(**{**args, **overrides})


def breaker(threshold: int = 3, cooldown: float = 60.0) -> CircuitBreaker:
    return CircuitBreaker(fakeredis.FakeRedis(), "n8n", failure_threshold=threshold, cooldown_seconds=cooldown)


def full_result() -> dict:
    text = (Path(__file__).parent / "fixtures" / "n8n" / "result_full_tr.json").read_text("utf-8")
    return json.loads(text.replace("{{analysis_id}}", "42"))


# --- the request body ------------------------------------------------------------------------

def test_build_request_is_the_snake_case_contract() -> None:
    assert body() == {
        "analysis_id": 42,
        "image_url": "https://bot.example.com/media/SIGNED-TOKEN",
        "farmer_id": "F0042",
        "crop_type": "domates",
        "location": "Muratpaşa, Antalya",
        "gps_coordinates": {"lat": 36.8969, "lng": 30.7133},
        "notes": "Alt yapraklarda sarı lekeler, güneşte kuruyor",
        "language": "tr",
        "urgency_level": "normal",
        "image_urls": ["https://bot.example.com/media/SIGNED-TOKEN"],
    }


def test_build_request_carries_every_photo_first_equal_to_image_url() -> None:
    urls = [f"https://bot.example.com/media/T{i}" for i in range(3)]
    assert body(image_url=urls[0], image_urls=urls)["image_urls"] == urls
    with pytest.raises(ValueError, match="start with image_url"):
        body(image_urls=urls)
    with pytest.raises(ValueError, match="1-5"):
        body(image_url=urls[0], image_urls=urls * 2)
    with pytest.raises(ValueError, match="start with image_url"):
        body(image_urls=[])


def test_build_request_optional_parts() -> None:
    b = body(lat=None, lng=None, crop_type=None, location=None, notes=None, urgency_level="high",
             callback_url="https://bot.example.com/webhooks/n8n/42", language="en")
    assert b["gps_coordinates"] is None
    assert b["crop_type"] is None and b["location"] is None and b["notes"] is None
    assert b["callback_url"] == "https://bot.example.com/webhooks/n8n/42"
    assert b["urgency_level"] == "high" and b["language"] == "en"
    assert body(lat=36.9, lng=None)["gps_coordinates"] is None  # half a coordinate is no coordinate
    assert "callback_url" not in body()


@pytest.mark.parametrize("ref", ["+905321234567", "905321234567", "0532 123 45 67", "(532) 123-4567"])
def test_build_request_refuses_a_phone_as_farmer_id(ref: str) -> None:
    with pytest.raises(ValueError, match="phone"):
        body(farmer_ref=ref)


def test_serialise_is_compact_utf8() -> None:
    raw = serialise(body())
    assert raw.startswith(b'{"analysis_id":42,"image_url":"https://bot.example.com/media/SIGNED-TOKEN","farmer_id":')
    assert b'"gps_coordinates":{"lat":36.8969,"lng":30.7133}' in raw
    assert "Muratpaşa".encode() in raw  # not \u015f
    assert json.loads(raw) == body()


# --- reading a result strictly ----------------------------------------------------------------

@pytest.mark.parametrize(("raw", "why"), [
    (b'{"analysis_id": 42, "score": NaN}', "NaN is not a JSON number"),
    (b'{"analysis_id": 42, "score": Infinity}', "Infinity is not a JSON number"),
    (b'{"analysis_id": 42, "score": -Infinity}', "-Infinity is not a JSON number"),
    (b'{"analysis_id": 42, "score": 1e400}', "out of range"),
    (b'{"analysis_id": 42, "score": ' + b"9" * 5000 + b"}", "too many digits"),
    (b'{"analysis_id": 42, "note": "a\\u0000b"}', "NUL"),
    (b'{"analysis_id": 42, "a\\u0000": 1}', "NUL"),  # in a key too
    (b'{"analysis_id": 42, "note": "\\ud800"}', "lone surrogate"),
    (b'{"a": ' * 65 + b"1" + b"}" * 65, "nested deeper than 64"),
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64"),  # deeper than Python parses
    (b"[1, 2]", "not an object"),
    (b"not json", "not valid JSON"),
    (b'{"note": "\xff"}', "not UTF-8"),
])
def test_a_result_that_cannot_be_stored_is_invalid(raw: bytes, why: str) -> None:
    with pytest.raises(InvalidResult, match=why):
        parse_result(raw)


def test_a_real_result_reads_as_it_is() -> None:
    raw = json.dumps(full_result(), ensure_ascii=False).encode()
    assert parse_result(raw) == full_result()
    assert parse_result(b'{"a": ' * 63 + b"1" + b"}" * 63)  # 64 levels deep is still fine


# --- the client ------------------------------------------------------------------------------

@responses.activate
def test_sync_signs_the_exact_bytes_it_sends() -> None:
    responses.post(URL, json=full_result())
    request_body = body()
    result = N8NClient(URL, SECRETS, timeout=90).submit(request_body)
    assert result == full_result()
    sent = responses.calls[0].request
    assert isinstance(sent.body, bytes)
    assert sent.body == serialise(request_body)
    header = sent.headers[signing.HEADER]
    assert signing.verify(sent.body, header, purpose=Purpose.REQUEST, analysis_id=42, secrets=SECRETS,
                          now=time.time()) is None
    # Our request is no result, and it is bound to analysis 42.
    assert signing.verify(sent.body, header, purpose=Purpose.RESULT, analysis_id=42, secrets=SECRETS,
                          now=time.time()) is Refusal.WRONG_PURPOSE
    assert signing.verify(sent.body, header, purpose=Purpose.REQUEST, analysis_id=43, secrets=SECRETS,
                          now=time.time()) is Refusal.WRONG_ID
    assert sent.headers["Content-Type"].startswith("application/json")
    assert vars(sent)["req_kwargs"]["timeout"] == (5.0, 90)


@responses.activate
def test_callback_mode_returns_none_on_202() -> None:
    responses.post(URL, status=202, body="")
    client = N8NClient(URL, SECRETS, mode="callback")
    assert client.submit(body(callback_url="https://bot.example.com/webhooks/n8n/42")) is None
    sent = responses.calls[0].request.body
    assert sent is not None
    assert json.loads(sent)["callback_url"].endswith("/webhooks/n8n/42")


@responses.activate
def test_callback_mode_ignores_the_2xx_body() -> None:
    responses.post(URL, status=200, body="Workflow was started")
    assert N8NClient(URL, SECRETS, mode="callback").submit(body()) is None


@responses.activate
def test_read_timeout_is_transient() -> None:
    responses.post(URL, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(N8NTransientError) as caught:
        N8NClient(URL, SECRETS).submit(body())
    assert not isinstance(caught.value, CircuitOpen)
    assert "timed out" in str(caught.value)
    assert caught.value.retry_after is None


@responses.activate
def test_connection_error_is_transient() -> None:
    responses.post(URL, body=requests.exceptions.ConnectionError("Connection refused"))
    with pytest.raises(N8NTransientError):
        N8NClient(URL, SECRETS).submit(body())


def test_a_real_refused_connection_is_transient() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(N8NTransientError, match="connection"):
        N8NClient(f"http://127.0.0.1:{port}/webhook", SECRETS).submit(body())


@responses.activate
@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_transient(status: int) -> None:
    responses.post(URL, status=status, body="upstream unavailable")
    with pytest.raises(N8NTransientError) as caught:
        N8NClient(URL, SECRETS).submit(body())
    assert caught.value.status == status
    assert str(status) in str(caught.value)


@responses.activate
def test_429_carries_retry_after() -> None:
    responses.post(URL, status=429, headers={"Retry-After": "7"}, json={"message": "slow down"})
    with pytest.raises(N8NTransientError) as caught:
        N8NClient(URL, SECRETS).submit(body())
    assert caught.value.status == 429
    assert caught.value.retry_after == 7.0


@responses.activate
def test_503_with_an_http_date_retry_after() -> None:
    later = datetime.fromtimestamp(datetime.now(UTC).timestamp() + 120, UTC)
    responses.post(URL, status=503, headers={"Retry-After": format_datetime(later, usegmt=True)})
    with pytest.raises(N8NTransientError) as caught:
        N8NClient(URL, SECRETS).submit(body())
    assert caught.value.retry_after is not None and 60 < caught.value.retry_after <= 120


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after(" 30 ") == 30.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    now = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Sat, 21 Nov 2026 10:01:00 GMT", now=now) == 60.0
    assert parse_retry_after("Sat, 21 Nov 2026 09:59:00 GMT", now=now) == 0.0


@responses.activate
@pytest.mark.parametrize("payload", ["<html>Bad gateway page</html>", "", "[1, 2, 3]", '"a string"', "null"])
def test_sync_answer_that_is_not_a_json_object_is_permanent(payload: str) -> None:
    responses.post(URL, status=200, body=payload, content_type="application/json")
    with pytest.raises(N8NPermanentError) as caught:
        N8NClient(URL, SECRETS).submit(body())
    assert caught.value.status == 200


@responses.activate
@pytest.mark.parametrize("payload", [b'{"success": true, "score": NaN}', b'{"score": 1e400}', b'{"n": "\\u0000"}',
                                     b'{"a": ' * 200 + b"1" + b"}" * 200, b"[" * 100_000 + b"]" * 100_000],
                         ids=["nan", "1e400", "nul", "deep", "deeper-than-python"])
def test_a_sync_answer_that_cannot_be_stored_is_an_invalid_result(payload: bytes) -> None:
    responses.post(URL, status=200, body=payload, content_type="application/json")
    with pytest.raises(N8NPermanentError, match="invalid result") as caught:
        N8NClient(URL, SECRETS).submit(body())
    assert caught.value.status == 200


def _signed_answer(result: dict, **sign) -> dict:
    raw = json.dumps(result).encode()
    headers = n8n_headers(raw, sign.pop("analysis_id", 42), sign.pop("purpose", Purpose.RESULT), **sign)
    return {"status": 200, "body": raw, "content_type": "application/json", "headers": headers}


@responses.activate
def test_a_signed_sync_answer_for_this_analysis_is_accepted() -> None:
    responses.post(URL, **_signed_answer(full_result()))
    assert N8NClient(URL, SECRETS).submit(body()) == full_result()


@responses.activate
@pytest.mark.parametrize(("answer", "why"), [
    (lambda: _signed_answer({**full_result(), "analysis_id": 43}, analysis_id=43), "wrong_id"),  # 43's result
    (lambda: _signed_answer({**full_result(), "analysis_id": 43}, analysis_id=42), "another analysis"),
    (lambda: _signed_answer(full_result(), purpose=Purpose.REQUEST), "wrong_purpose"),
    (lambda: _signed_answer(full_result(), secret="another-secret-0123456789"), "bad_mac"),
    (lambda: _signed_answer(full_result(), now=time.time() - 600), "stale"),
    (lambda: {"status": 200, "json": full_result(), "headers": {signing.HEADER: "sha256=" + "0" * 64}}, "malformed"),
], ids=["another-analysis-result", "body-names-another-analysis", "request-purpose", "other-secret", "stale",
        "malformed"])
def test_a_signed_sync_answer_with_a_refused_signature_is_permanent(answer, why: str) -> None:
    responses.post(URL, **answer())
    with pytest.raises(N8NPermanentError, match=why):
        N8NClient(URL, SECRETS).submit(body())


@responses.activate
@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_client_errors_are_permanent(status: int) -> None:
    responses.post(URL, status=status, json={"message": "Webhook not registered"})
    with pytest.raises(N8NPermanentError) as caught:
        N8NClient(URL, SECRETS).submit(body())
    assert caught.value.status == status
    assert not isinstance(caught.value, N8NTransientError)


@responses.activate
def test_a_redirect_is_not_followed_and_is_permanent() -> None:
    responses.post(URL, status=302, headers={"Location": "https://elsewhere.test/"})
    with pytest.raises(N8NPermanentError):
        N8NClient(URL, SECRETS).submit(body())
    assert len(responses.calls) == 1


@responses.activate
def test_breaker_opens_after_transient_failures_then_no_http_call() -> None:
    responses.post(URL, status=500)
    client = N8NClient(URL, SECRETS, breaker=breaker(threshold=3))
    for _ in range(3):
        with pytest.raises(N8NTransientError) as caught:
            client.submit(body())
        assert not isinstance(caught.value, CircuitOpen)
    assert len(responses.calls) == 3
    for _ in range(4):
        with pytest.raises(CircuitOpen) as caught:
            client.submit(body())
        assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 60
        assert isinstance(caught.value, N8NTransientError)  # the job waits and retries like any transient error
    assert len(responses.calls) == 3  # unchanged: no HTTP call while open


@responses.activate
def test_timeouts_and_connection_errors_count_for_the_breaker() -> None:
    responses.post(URL, body=requests.exceptions.ReadTimeout("read timed out"))
    responses.post(URL, body=requests.exceptions.ConnectionError("refused"))
    responses.post(URL, status=429)
    client = N8NClient(URL, SECRETS, breaker=breaker(threshold=3))
    for _ in range(3):
        with pytest.raises(N8NTransientError):
            client.submit(body())
    with pytest.raises(CircuitOpen):
        client.submit(body())
    assert len(responses.calls) == 3


@responses.activate
def test_client_errors_do_not_open_the_breaker() -> None:
    responses.post(URL, status=400, json={"message": "bad body"})
    b = breaker(threshold=2)
    client = N8NClient(URL, SECRETS, breaker=b)
    for _ in range(5):
        with pytest.raises(N8NPermanentError):
            client.submit(body())
    assert len(responses.calls) == 5
    assert b.state() == "closed"


@responses.activate
def test_a_success_between_failures_resets_the_count() -> None:
    responses.post(URL, status=500)
    responses.post(URL, status=500)
    responses.post(URL, json=full_result())
    responses.post(URL, status=500)
    b = breaker(threshold=3)
    client = N8NClient(URL, SECRETS, breaker=b)
    outcomes = []
    for _ in range(4):
        try:
            client.submit(body())
            outcomes.append("ok")
        except N8NTransientError:
            outcomes.append("transient")
    assert outcomes == ["transient", "transient", "ok", "transient"]
    assert b.state() == "closed"


@responses.activate
def test_half_open_probe_through_the_client_closes_on_success() -> None:
    responses.post(URL, status=503)
    b = breaker(threshold=1, cooldown=1.0)  # the second call must still find it open
    client = N8NClient(URL, SECRETS, breaker=b)
    with pytest.raises(N8NTransientError):
        client.submit(body())
    with pytest.raises(CircuitOpen):
        client.submit(body())
    wait_until(lambda: b.retry_after() == 0, timeout=10, interval=0.01, what="the cool-down")
    responses.replace(responses.POST, URL, json=full_result())
    assert client.submit(body()) == full_result()  # the probe
    assert b.state() == "closed"
    assert len(responses.calls) == 2


@responses.activate
def test_a_breaker_without_redis_does_not_block_calls() -> None:
    server = fakeredis.FakeServer()
    dead = CircuitBreaker(fakeredis.FakeRedis(server=server), "n8n", failure_threshold=1)
    server.connected = False  # every Redis command now raises ConnectionError
    responses.post(URL, json={"success": True})
    responses.post(URL, status=500)
    client = N8NClient(URL, SECRETS, breaker=dead)
    assert client.submit(body()) == {"success": True}
    with pytest.raises(N8NTransientError) as caught:  # the HTTP error, not a Redis error
        client.submit(body())
    assert caught.value.status == 500


@responses.activate
def test_the_secret_is_never_logged_or_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    responses.post(URL, status=500, body="error")
    client = N8NClient(URL, SECRETS, breaker=breaker(threshold=1))
    for _ in range(2):
        with pytest.raises(N8NTransientError) as caught:
            client.submit(body())
        assert SECRET not in str(caught.value)
    assert SECRET not in repr(client)
    assert caplog.records  # it does log
    assert SECRET not in caplog.text
    assert "SIGNED-TOKEN" not in caplog.text  # the image URL is a capability: not logged either


@pytest.mark.parametrize("kwargs", [{"mode": "async"}, {"timeout": 0}])
def test_client_rejects_bad_settings(kwargs) -> None:
    with pytest.raises(ValueError):
        N8NClient(URL, SECRETS, **kwargs)
    with pytest.raises(ValueError):
        N8NClient(URL, ())
    with pytest.raises(ValueError):
        N8NClient(URL, ("",))
    with pytest.raises(TypeError):  # one string is not a list of secrets: "new,old" would sign with both as one
        N8NClient(URL, SECRET)
    with pytest.raises(ValueError):
        N8NClient("", SECRETS)
