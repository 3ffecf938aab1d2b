"""`POST /webhooks/n8n/<id>`: N8N's callback. Signature version 2 refused for each reason with a 403 (the
reason in the log), a result nobody can store refused with a 400, an id no analysis can have a 404 -
and nothing is stored for any of them. Run on PostgreSQL too (CI), where the path id and NUL cases bite."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from models import Analysis, Farmer
from services.signing import HEADER, TOLERANCE_SECONDS, Purpose, Refusal
from tests.helpers import FIXTURES, N8N_SECRET, make_settings, n8n_headers

OLD_SECRET = "old-n8n-secret-0123456789"


def new_analysis(app: Flask, phone: str = "+905321234567") -> int:
    with app.extensions["db"].session() as s, s.begin():
        farmer = s.scalar(select(Farmer).where(Farmer.phone == phone))
        if farmer is None:
            farmer = Farmer(phone=phone)
            s.add(farmer)
            s.flush()
        analysis = Analysis(farmer_id=farmer.id, crop="domates", status="processing")
        s.add(analysis)
        s.flush()
        return analysis.id


def result_raw(analysis_id: int) -> bytes:
    text = (FIXTURES / "n8n" / "result_full_tr.json").read_text("utf-8")
    return json.dumps(json.loads(text.replace('"{{analysis_id}}"', str(analysis_id))), ensure_ascii=False).encode()


def post(client: FlaskClient, analysis_id: int, raw: bytes, headers: dict[str, str]):
    return client.post(f"/webhooks/n8n/{analysis_id}", data=raw, content_type="application/json; charset=utf-8",
                       headers=headers)


def stored(app: Flask, analysis_id: int) -> Any:
    with app.extensions["db"].reader() as s:
        return s.get(Analysis, analysis_id).result


def refusal_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [vars(r)["reason"] for r in caplog.records if r.getMessage() == "N8N callback refused: signature"]


def test_a_signed_result_for_this_analysis_is_accepted_once(app: Flask, client: FlaskClient) -> None:
    analysis_id = new_analysis(app)
    raw = result_raw(analysis_id)
    assert post(client, analysis_id, raw, n8n_headers(raw, analysis_id)).json == {"status": "accepted"}
    assert stored(app, analysis_id) == json.loads(raw)
    assert post(client, analysis_id, raw, n8n_headers(raw, analysis_id)).json == {"status": "ignored"}


# Each case: (raw, headers) for analysis `a` (`b` is another analysis in progress), and the logged reason.
# The clock cases sit a minute past the tolerance: the header's `t` is whole seconds, so one second past it could
# round back inside on a slow run. The exact boundary is `tests/test_signing.py`'s, on a fixed clock.
OUTSIDE = TOLERANCE_SECONDS + 60
REFUSED: dict[str, tuple[Callable[[int, int], tuple[bytes, dict[str, str]]], Refusal]] = {
    "missing header": (lambda a, b: (result_raw(a), {}), Refusal.MISSING),
    "malformed (version 1)": (lambda a, b: (result_raw(a), {HEADER: "sha256=" + "0" * 64}), Refusal.MALFORMED),
    "stale": (lambda a, b: (result_raw(a), n8n_headers(result_raw(a), a, now=time.time() - OUTSIDE)), Refusal.STALE),
    "from the future": (lambda a, b: (result_raw(a), n8n_headers(result_raw(a), a, now=time.time() + OUTSIDE)),
                        Refusal.STALE),
    "our own request replayed as a result": (
        lambda a, b: (result_raw(a), n8n_headers(result_raw(a), a, Purpose.REQUEST)), Refusal.WRONG_PURPOSE),
    "b's result replayed for a": (lambda a, b: (result_raw(b), n8n_headers(result_raw(b), b)), Refusal.WRONG_ID),
    "signed for a, body names b": (lambda a, b: (result_raw(b), n8n_headers(result_raw(b), a)), Refusal.WRONG_ID),
    "wrong MAC": (lambda a, b: (result_raw(a), n8n_headers(result_raw(a), a, secret="another-secret-0123456789")),
                  Refusal.BAD_MAC),
    "tampered body": (lambda a, b: (result_raw(a).replace(b'"overall_health_score": 6', b'"overall_health_score": 9'),
                                    n8n_headers(result_raw(a), a)), Refusal.BAD_MAC),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_signature_is_a_403_and_logs_why(app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                   case: str) -> None:
    a, b = new_analysis(app), new_analysis(app)
    make, reason = REFUSED[case]
    raw, headers = make(a, b)
    response = post(client, a, raw, headers)
    assert response.status_code == 403 and response.mimetype == "application/problem+json"
    assert response.json["title"] == "invalid signature"  # the reason is for our log, not for the sender
    assert refusal_logged(caplog) == [reason.value]
    assert stored(app, a) is None and stored(app, b) is None


def test_a_second_v1_may_match_during_a_rotation(app: Flask, client: FlaskClient) -> None:
    analysis_id = new_analysis(app)
    raw = result_raw(analysis_id)
    header = n8n_headers(raw, analysis_id, secret="retired-secret-0123456789")[HEADER]
    good = n8n_headers(raw, analysis_id)[HEADER].split(",")[1]
    assert post(client, analysis_id, raw, {HEADER: f"{header},{good}"}).json == {"status": "accepted"}


def test_a_comma_separated_secret_accepts_the_new_and_the_old(database_url: str, app: Flask) -> None:
    from app import create_app

    rotating = create_app(make_settings(database_url, N8N_SECRET=f"{N8N_SECRET},{OLD_SECRET}"))
    try:
        client = rotating.test_client()
        for secret in (OLD_SECRET, N8N_SECRET):  # N8N still on the old secret, then moved to the new one
            analysis_id = new_analysis(app)
            raw = result_raw(analysis_id)
            assert post(client, analysis_id, raw, n8n_headers(raw, analysis_id, secret=secret)).json == {
                "status": "accepted"}
        analysis_id = new_analysis(app)
        raw = result_raw(analysis_id)
        other = n8n_headers(raw, analysis_id, secret="another-secret-0123456789")
        assert post(client, analysis_id, raw, other).status_code == 403
    finally:
        rotating.extensions["db"].engine.dispose()


@pytest.mark.parametrize("raw", [
    b'{"analysis_id": ANALYSIS, "summary": {"overall_health_score": NaN}}',
    b'{"analysis_id": ANALYSIS, "summary": {"overall_health_score": Infinity}}',
    b'{"analysis_id": ANALYSIS, "summary": {"overall_health_score": -Infinity}}',
    b'{"analysis_id": ANALYSIS, "summary": {"overall_health_score": 1e400}}',
    b'{"analysis_id": ANALYSIS, "farmer_friendly_summary": "a\\u0000b"}',
    b'{"analysis_id": ANALYSIS, "a\\u0000": "key with a NUL"}',
    b'{"analysis_id": ANALYSIS, "farmer_friendly_summary": "\\udc00"}',
    b'{"analysis_id": ANALYSIS, "x": ' + b'{"a": ' * 100 + b"1" + b"}" * 100 + b"}",
    b'{"analysis_id": ANALYSIS, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # deeper than Python parses
    b"[ANALYSIS]",
    b"not json ANALYSIS",
], ids=["nan", "infinity", "-infinity", "1e400", "nul", "nul-key", "surrogate", "deep", "deeper-than-python",
        "array", "not-json"])
def test_a_signed_result_nobody_can_store_is_a_400(app: Flask, client: FlaskClient, raw: bytes) -> None:
    analysis_id = new_analysis(app)
    raw = raw.replace(b"ANALYSIS", str(analysis_id).encode())
    response = post(client, analysis_id, raw, n8n_headers(raw, analysis_id))
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    assert response.json["title"].startswith("invalid result")
    assert stored(app, analysis_id) is None


@pytest.mark.parametrize("path_id", [2**31, 2**63, 10**20])
def test_an_id_beyond_the_column_is_a_404(client: FlaskClient, path_id: int) -> None:
    raw = json.dumps({"analysis_id": path_id, "success": True}).encode()
    response = post(client, path_id, raw, n8n_headers(raw, path_id))
    assert response.status_code == 404 and response.mimetype == "application/problem+json"


def test_an_unknown_id_is_a_404(app: Flask, client: FlaskClient) -> None:
    analysis_id = new_analysis(app) + 1
    raw = result_raw(analysis_id)
    assert post(client, analysis_id, raw, n8n_headers(raw, analysis_id)).status_code == 404
    assert post(client, 0, raw, n8n_headers(raw, 0)).status_code == 404
