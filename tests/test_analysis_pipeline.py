"""Photo to diagnosis end to end: the real webhook and jobs, the Graph API and N8N mocked over HTTP
(`responses`), for a full result, one with drifted keys, and a failed one (sync and callback)."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import responses
from PIL import Image, ImageDraw
from rq.registry import FailedJobRegistry
from sqlalchemy import event, func, select, update
from sqlalchemy.exc import OperationalError

import services.analysis
from app import create_app
from bot import replies
from models import Analysis, UsageLedger, utcnow
from models import Farmer as FarmerRow
from services import quota, signing
from services.analysis import (
    AnalysisFailed,
    check_deadline,
    end_if_overdue,
    n8n_client,
    photo_ids,
    run_analysis,
    stored_keys,
    wait_decision,
)
from services.queue import ANALYSIS, get_queue
from services.scheduler import periodic_tasks
from services.signing import Purpose
from services.sweeper import end_overdue
from tests.admin_helpers import bearer, token_for
from tests.chat import Farmer, GraphStub
from tests.helpers import FIXTURES, GRAPH, N8N_SECRET, N8N_URL, make_settings, n8n_headers, run_jobs

MEDIA_ID = "1234567890123456"
MEDIA_URL = "https://lookaside.test/whatsapp/media?mid=1"


def leaf_jpeg() -> bytes:
    image = Image.new("RGB", (1600, 1200), (60, 140, 50))
    draw = ImageDraw.Draw(image)
    for i in range(40):
        draw.ellipse((40 * i, 30 * i, 40 * i + 60, 30 * i + 50), fill=(200, 180, 40))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def n8n_result(name: str, analysis_id: int) -> dict:
    return json.loads((FIXTURES / "n8n" / name).read_text().replace("{{analysis_id}}", str(analysis_id)))


@pytest.fixture
def mock():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as m:
        photo = leaf_jpeg()
        m.get(f"{GRAPH}/{MEDIA_ID}", json={"url": MEDIA_URL, "mime_type": "image/jpeg", "id": MEDIA_ID,
                                           "sha256": hashlib.sha256(photo).hexdigest(), "file_size": len(photo)})
        m.get(MEDIA_URL, body=photo, content_type="image/jpeg")
        yield m


@pytest.fixture
def farmer(app, mock):
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)
    f = Farmer(app, GraphStub(mock))
    f.onboard()
    return f


def submit(farmer: Farmer) -> list[str]:
    farmer.photo("domates yaprakları sararıyor", media_id=MEDIA_ID)
    farmer.taps("Geç")
    return farmer.taps("Gönder")  # runs the jobs: the analysis too


def sent_to_n8n(mock) -> list[responses.Call]:
    return [c for c in mock.calls if c.request.url == N8N_URL]


@pytest.fixture
def callback_app(app, database_url):
    """The app with `N8N_MODE=callback`: N8N accepts a request and posts its result back later."""
    callback_app = create_app(make_settings(database_url, N8N_MODE="callback"))
    with callback_app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)
    yield callback_app
    callback_app.extensions["db"].engine.dispose()


def accepted_in_callback_mode(callback_app, mock) -> Farmer:
    """A farmer's photo sent to N8N, which accepts it (202) and has not answered yet."""
    farmer = Farmer(callback_app, GraphStub(mock))
    farmer.onboard()
    mock.post(N8N_URL, status=202, json={"accepted": True})
    submit(farmer)
    return farmer


def test_a_sync_result_is_stored_and_summarised_to_the_farmer(farmer, mock, session, app):
    mock.add_callback(responses.POST, N8N_URL, callback=lambda req: (
        200, {}, json.dumps(n8n_result("result_full_tr.json", json.loads(req.body)["analysis_id"]))))
    replies = submit(farmer)
    assert "sıraya alındı" in replies[0]
    [call] = sent_to_n8n(mock)
    raw = call.request.body
    assert isinstance(raw, bytes)
    body = json.loads(raw)
    assert signing.verify(raw, call.request.headers["X-ZiraAI-Signature"], purpose=Purpose.REQUEST,
                          analysis_id=body["analysis_id"], secrets=(N8N_SECRET,), now=time.time()) is None
    assert body["image_url"].startswith("https://bot.test/media/") and "+90" not in raw.decode()
    assert body["crop_type"] == "domates" and body["language"] == "tr" and body["gps_coordinates"] is None
    assert len(raw) < 1024  # a link, not the image
    analysis = session.scalar(select(Analysis))
    assert (analysis.status, analysis.health_score, analysis.urgent) == ("completed", 6, True)
    assert analysis.primary_concern == "Erken yanıklık (fungal)"
    assert analysis.result["summary"]["overall_health_score"] == 6  # raw JSON kept
    summary = farmer.graph.sent[-1]
    text = summary["interactive"]["body"]["text"]
    assert "6/10" in text and "/100" not in text and "ACİL" in text and "Hastalıklı alt yaprakları" in text
    assert [b["reply"]["title"] for b in summary["interactive"]["action"]["buttons"]] == ["Detaylar", "Yeni analiz",
                                                                                          "Menü"]
    details = farmer.taps("Detaylar")
    assert any("Erken yanıklık" in d for d in details) and any("Ekim nöbeti" in d for d in details)
    assert any("azot" in d for d in details)


def test_image_is_optimised_and_stored(farmer, mock, session, app):
    mock.add_callback(responses.POST, N8N_URL, callback=lambda req: (
        200, {}, json.dumps(n8n_result("result_full_tr.json", json.loads(req.body)["analysis_id"]))))
    submit(farmer)
    analysis = session.scalar(select(Analysis))
    storage = app.extensions["storage"]
    small = Image.open(io.BytesIO(storage.get(analysis.image_key)))
    assert small.size[0] <= 800 and small.size[1] <= 600 and len(storage.get(analysis.image_key)) <= 100_000
    assert storage.get(analysis.original_key) == leaf_jpeg()
    # N8N fetches the signed link from us.
    raw = sent_to_n8n(mock)[0].request.body
    assert raw is not None
    link = json.loads(raw)["image_url"]
    response = app.test_client().get(link.removeprefix("https://bot.test"))
    assert response.status_code == 200 and response.data == storage.get(analysis.image_key)


def test_drifted_keys_are_normalised(farmer, mock, session):
    mock.add_callback(responses.POST, N8N_URL, callback=lambda req: (
        200, {}, json.dumps(n8n_result("result_drifted_keys.json", json.loads(req.body)["analysis_id"]))))
    submit(farmer)
    analysis = session.scalar(select(Analysis))
    assert (analysis.status, analysis.health_score, analysis.urgent) == ("completed", 3, True)
    assert "Yaprak biti (Aphididae)" in json.dumps(analysis.pests, ensure_ascii=False)
    assert "3/10" in farmer.graph.sent[-1]["interactive"]["body"]["text"]


def test_failed_result_refunds_and_tells_the_farmer(farmer, mock, session, app):
    mock.add_callback(responses.POST, N8N_URL, callback=lambda req: (
        200, {}, json.dumps(n8n_result("result_failed.json", json.loads(req.body)["analysis_id"]))))
    submit(farmer)
    analysis = session.scalar(select(Analysis))
    assert analysis.status == "failed" and "Görsel indirilemedi" in analysis.failure_reason
    kinds = session.scalars(select(UsageLedger.kind).order_by(UsageLedger.id)).all()
    assert kinds == ["charge", "refund"]
    assert "hakkınızdan düşülmedi" in farmer.graph.sent[-1]["text"]["body"].lower()
    failed = FailedJobRegistry(queue=get_queue(ANALYSIS, app.extensions["redis"]))
    assert f"analysis-{analysis.id}" in failed.get_job_ids()


@pytest.mark.parametrize("error_type", ["no_plant_detected", "image_unusable", "not_analysable"])
def test_a_photo_the_analyser_cannot_judge_asks_for_a_better_photo_and_is_not_retried(farmer, mock, session, app,
                                                                                       error_type):
    def photo_problem(req):
        result = n8n_result("result_failed.json", json.loads(req.body)["analysis_id"])
        result.update(error_type=error_type, error_message="Fotoğrafta bitki görünmüyor.")
        return 200, {}, json.dumps(result)

    mock.add_callback(responses.POST, N8N_URL, callback=photo_problem)
    submit(farmer)
    assert len(sent_to_n8n(mock)) == 1  # the same photo would fail again: no retry
    analysis = session.scalar(select(Analysis))
    assert analysis.status == "failed" and error_type in analysis.failure_reason
    kinds = session.scalars(select(UsageLedger.kind).order_by(UsageLedger.id)).all()
    assert kinds == ["charge", "refund"]
    said = farmer.graph.sent[-1]["text"]["body"]
    assert "net bir bitki göremedim" in said and "yakından" in said and "hakkınızdan düşülmedi" in said
    assert "bizden kaynaklanan" not in said and "biraz sonra" not in said


def test_other_failures_reported_by_n8n_stay_ours(farmer, mock, session, app):
    def model_error(req):
        result = n8n_result("result_failed.json", json.loads(req.body)["analysis_id"])
        result.update(error_type="model_error")
        return 200, {}, json.dumps(result)

    mock.add_callback(responses.POST, N8N_URL, callback=model_error)
    submit(farmer)
    assert "bizden kaynaklanan" in farmer.graph.sent[-1]["text"]["body"]


def test_in_callback_mode_only_a_signed_result_for_a_known_analysis_is_taken_once(callback_app, mock, session):
    farmer = accepted_in_callback_mode(callback_app, mock)
    analysis = session.scalar(select(Analysis))
    assert analysis.status == "processing" and analysis.n8n_requested_at is not None
    raw = sent_to_n8n(mock)[0].request.body
    assert raw is not None
    body = json.loads(raw)
    assert body["callback_url"] == f"https://bot.test/webhooks/n8n/{analysis.id}"

    client = callback_app.test_client()
    raw = json.dumps(n8n_result("result_full_tr.json", analysis.id)).encode()
    url = f"/webhooks/n8n/{analysis.id}"
    assert client.post(url, data=raw, headers={"X-ZiraAI-Signature": "sha256=" + "0" * 64}).status_code == 403
    unknown = json.dumps(n8n_result("result_full_tr.json", 999999)).encode()
    assert client.post("/webhooks/n8n/999999", data=unknown, headers=n8n_headers(unknown, 999999)).status_code == 404
    assert client.post(url, data=raw, headers=n8n_headers(raw, analysis.id)).json == {"status": "accepted"}
    assert client.post(url, data=raw, headers=n8n_headers(raw, analysis.id)).json == {
        "status": "ignored"}  # accepted once
    run_jobs(callback_app)
    session.expire_all()
    assert session.scalar(select(Analysis.status)) == "completed"
    assert "6/10" in farmer.graph.sent[-1]["interactive"]["body"]["text"]


def test_callback_for_a_failed_analysis_is_ignored(callback_app, mock, session):
    farmer = Farmer(callback_app, GraphStub(mock))
    farmer.onboard()
    mock.post(N8N_URL, status=400, json={"error": "bad request"})  # permanent: the analysis fails
    submit(farmer)
    analysis = session.scalar(select(Analysis))
    assert analysis.status == "failed"
    raw = json.dumps(n8n_result("result_full_tr.json", analysis.id)).encode()
    response = callback_app.test_client().post(f"/webhooks/n8n/{analysis.id}", data=raw,
                                               headers=n8n_headers(raw, analysis.id))
    assert response.json == {"status": "ignored"}
    assert session.scalar(select(Analysis.status)) == "failed"


@pytest.mark.parametrize("make_response,retried", [
    (lambda m: m.post(N8N_URL, body=__import__("requests").exceptions.ReadTimeout("slow")), True),
    (lambda m: m.post(N8N_URL, body=__import__("requests").exceptions.ConnectionError("refused")), True),
    (lambda m: m.post(N8N_URL, status=500, body="oops"), True),
    (lambda m: m.post(N8N_URL, status=429, body="slow down"), True),
    (lambda m: m.post(N8N_URL, status=200, body="<html>not json</html>"), False),
    (lambda m: m.post(N8N_URL, status=404, body="no such workflow"), False),
])
def test_n8n_errors_retry_only_when_transient(farmer, mock, session, make_response, retried):
    make_response(mock)
    submit(farmer)
    calls = len(sent_to_n8n(mock))
    assert calls == (4 if retried else 1)  # 1 try + 3 retries (intervals 0 in tests)
    analysis = session.scalar(select(Analysis))
    assert analysis.status == "failed"
    assert session.scalar(select(func.count()).select_from(UsageLedger).where(UsageLedger.kind == "refund")) == 1
    assert "hakkınızdan düşülmedi" in farmer.graph.sent[-1]["text"]["body"].lower()


def test_unreadable_photo_is_refunded_with_a_photo_message(app, session):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as m:
        m.get(f"{GRAPH}/{MEDIA_ID}", json={"url": MEDIA_URL, "mime_type": "image/jpeg", "id": MEDIA_ID})
        m.get(MEDIA_URL, body=b"this is not a jpeg at all" * 10, content_type="image/jpeg")
        with app.extensions["db"].session() as s, s.begin():
            quota.seed_tiers(s)
        farmer = Farmer(app, GraphStub(m))
        farmer.onboard()
        submit(farmer)
        analysis = session.scalar(select(Analysis))
        assert analysis.status == "failed" and "not_an_image" in analysis.failure_reason
        assert "Fotoğrafınızı okuyamadım" in farmer.graph.sent[-1]["text"]["body"]
        assert not [c for c in m.calls if c.request.url == N8N_URL]


def test_circuit_opens_and_analyses_wait(farmer, mock, session, app):
    mock.post(N8N_URL, status=503, body="down")
    breaker = n8n_client().breaker
    assert breaker is not None
    for _ in range(5):
        breaker.record_failure()
    assert breaker.state() == "open"
    submit(farmer)
    assert sent_to_n8n(mock) == []  # no call while open
    analysis = session.scalar(select(Analysis))
    assert analysis.status == "processing"  # waiting, not failed, no retry used
    scheduled = get_queue(ANALYSIS, app.extensions["redis"]).scheduled_job_registry.get_job_ids()
    assert any(job_id.startswith(f"analysis-{analysis.id}-wait-") for job_id in scheduled)


def test_the_delay_notice_is_sent_once(farmer, mock, session, app):
    mock.post(N8N_URL, status=202, json={})  # sync mode but nothing useful: treated below directly
    with app.extensions["db"].session() as s, s.begin():
        s.add(Analysis(farmer_id=1, crop="domates", status="processing", media_id=MEDIA_ID))
    analysis_id = session.scalar(select(Analysis.id))
    with app.app_context():
        assert check_deadline(analysis_id) == "notice sent"
        assert check_deadline(analysis_id) == "nothing to say"
    run_jobs(app)
    assert "uzun sürüyor" in farmer.graph.sent[-1]["text"]["body"]


def test_result_outside_the_window_uses_the_template(farmer, mock, session, app):
    mock.add_callback(responses.POST, N8N_URL, callback=lambda req: (
        200, {}, json.dumps(n8n_result("result_drifted_keys.json", json.loads(req.body)["analysis_id"]))))
    farmer.photo("biber", media_id=MEDIA_ID)
    farmer.taps("Geç")
    farmer.deliver(farmer.message("interactive", {"type": "button_reply", "button_reply": {
        "id": farmer.last_bodies[-1]["interactive"]["action"]["buttons"][0]["reply"]["id"], "title": "Gönder"}}),
        run=False)
    run_jobs(app)  # the submission is handled... then the farmer goes quiet for a day
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(FarmerRow).values(last_inbound_at=utcnow() - timedelta(hours=25)))
        s.execute(update(Analysis).values(status="queued", health_score=None))

    with app.app_context():
        run_analysis(session.scalar(select(Analysis.id)))
    run_jobs(app)
    last = farmer.graph.sent[-1]
    assert last["type"] == "template" and last["template"]["name"] == "urgent_health_alert_tr"


@pytest.mark.parametrize("path, value", [
    ("health_assessment.severity", "orta (alt yaprakların yaklaşık %20'si etkilenmiş, yayılma riski var)"),
    ("summary.prognosis", "İyi; erken müdahale edilirse hastalık kontrol altına alınır, verim kaybı sınırlı kalır, "
                          "ürün pazara zamanında çıkar."),
    ("summary.primary_concern", "Erken yanıklık (Alternaria solani) " * 10),
    ("token_usage.total_tokens", 3_000_000_000),
    ("token_usage.total_tokens", 1e20),
])
def test_a_value_longer_or_larger_than_its_column_is_stored_fitted_not_lost(farmer, mock, session, path, value):
    section, key = path.split(".")

    def answer(req):
        result = n8n_result("result_full_tr.json", json.loads(req.body)["analysis_id"])
        result.setdefault(section, {})[key] = value
        return 200, {}, json.dumps(result)

    mock.add_callback(responses.POST, N8N_URL, callback=answer)
    submit(farmer)
    assert len(sent_to_n8n(mock)) == 1
    analysis = session.scalar(select(Analysis))
    assert (analysis.status, analysis.failure_reason) == ("completed", None)
    assert session.scalars(select(UsageLedger.kind)).all() == ["charge"]
    assert analysis.result[section][key] == value  # the raw JSON whole
    assert "6/10" in farmer.graph.sent[-1]["interactive"]["body"]["text"]


# --- N8N's words in a template parameter ----------------------------------------------------------------

AWKWARD_TEXT = {
    "a line break": "Erken yanıklık\n(fungal)",
    "a tab": "Erken\tyanıklık",
    "five spaces": "Erken     yanıklık",
    "more than 1,024 characters": "Erken yanıklık " * 80,
}


def answer_with(concern: str, action: str):
    def answer(req):
        result = n8n_result("result_full_tr.json", json.loads(req.body)["analysis_id"])
        result["summary"]["primary_concern"] = concern
        result["recommendations"]["immediate"][0]["action"] = action
        return 200, {}, json.dumps(result)
    return answer


def go_quiet_for_a_day(farmer: Farmer, app) -> int:
    """Submit, then the farmer is out of the 24-hour window when the analysis runs; its id."""
    farmer.photo("biber", media_id=MEDIA_ID)
    farmer.taps("Geç")
    farmer.deliver(farmer.message("interactive", {"type": "button_reply", "button_reply": {
        "id": farmer.last_bodies[-1]["interactive"]["action"]["buttons"][0]["reply"]["id"], "title": "Gönder"}}),
        run=False)
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(FarmerRow).values(last_inbound_at=utcnow() - timedelta(hours=25)))
    run_jobs(app)
    with app.extensions["db"].reader() as s:
        return s.scalar(select(Analysis.id))


@pytest.mark.parametrize("field", ["primary concern", "first immediate action"])
@pytest.mark.parametrize("awkward", list(AWKWARD_TEXT))
def test_awkward_text_from_n8n_in_a_template_parameter_never_loses_the_diagnosis(farmer, mock, session, app,
                                                                                  field, awkward):
    text = AWKWARD_TEXT[awkward]
    plain = "Hastalıklı alt yaprakları toplayıp imha edin"
    concern, action = (text, plain) if field == "primary concern" else ("Erken yanıklık (fungal)", text)
    mock.add_callback(responses.POST, N8N_URL, callback=answer_with(concern, action))
    go_quiet_for_a_day(farmer, app)
    assert len(sent_to_n8n(mock)) == 1  # answered once, never asked again
    analysis = session.scalar(select(Analysis))
    assert (analysis.status, analysis.failure_reason) == ("completed", None)
    assert session.scalars(select(UsageLedger.kind)).all() == ["charge"]
    last = farmer.graph.sent[-1]
    assert last["type"] == "template" and last["template"]["name"] == "urgent_health_alert_tr"
    params = [p["text"] for p in last["template"]["components"][0]["parameters"]]
    for param in params:
        assert "\n" not in param and "\t" not in param and "     " not in param and len(param) <= 400
    expected = " ".join(text.split())
    shown = params[1] if field == "primary concern" else params[2]
    assert shown == expected or (shown.endswith("…") and expected.startswith(shown[:-1]))


def test_awkward_text_inside_the_window_completes_with_the_summary(farmer, mock, session):
    mock.add_callback(responses.POST, N8N_URL, callback=answer_with("Erken\nyanıklık", "Yaprakları\ttoplayın"))
    submit(farmer)
    assert len(sent_to_n8n(mock)) == 1
    assert session.scalar(select(Analysis.status)) == "completed"
    text = farmer.graph.sent[-1]["interactive"]["body"]["text"]
    assert "Erken\nyanıklık" in text and "Yaprakları\ttoplayın" in text  # the chat may hold them as written


# --- a result that cannot be answered as planned ------------------------------------------------------


def test_a_summary_that_cannot_be_built_is_replaced_by_the_result_template(farmer, mock, session, monkeypatch):
    def broken(locale, view):
        raise ValueError("a word the summary cannot hold")

    monkeypatch.setattr(replies, "analysis_result", broken)
    mock.add_callback(responses.POST, N8N_URL, callback=echo_result)
    submit(farmer)
    assert len(sent_to_n8n(mock)) == 1
    assert session.scalar(select(Analysis.status)) == "completed"
    last = farmer.graph.sent[-1]
    assert last["type"] == "template" and last["template"]["name"] == "urgent_health_alert_tr"


def test_a_connection_lost_while_storing_the_result_stores_it_again_without_asking_n8n_again(farmer, mock, session,
                                                                                           monkeypatch):


    store = services.analysis.store_result
    lost: list[int] = []

    def once_lost(analysis_id, raw, result):
        if not lost:
            lost.append(analysis_id)
            raise OperationalError("UPDATE analyses", {}, Exception("terminating connection"))
        return store(analysis_id, raw, result)

    monkeypatch.setattr(services.analysis, "STORE_PAUSES", (0.0, 0.0))
    monkeypatch.setattr(services.analysis, "store_result", once_lost)
    mock.add_callback(responses.POST, N8N_URL, callback=echo_result)
    submit(farmer)
    assert lost and len(sent_to_n8n(mock)) == 1
    analysis = session.scalar(select(Analysis))
    assert (analysis.status, analysis.attempts) == ("completed", 1)
    assert session.scalars(select(UsageLedger.kind)).all() == ["charge"]
    assert "6/10" in farmer.graph.sent[-1]["interactive"]["body"]["text"]


def break_the_reply(monkeypatch) -> None:
    def broken(farmer, a, result):
        raise RuntimeError("the reply cannot be built")

    monkeypatch.setattr(services.analysis, "result_template", broken)


def test_a_result_that_cannot_be_answered_ends_failed_and_refunded_without_asking_n8n_again(farmer, mock, session,
                                                                                            monkeypatch):
    break_the_reply(monkeypatch)
    mock.add_callback(responses.POST, N8N_URL, callback=echo_result)
    submit(farmer)
    assert len(sent_to_n8n(mock)) == 1  # N8N answered: it is never asked again
    analysis = session.scalar(select(Analysis))
    assert analysis.status == "failed" and "the reply cannot be built" in analysis.failure_reason
    assert session.scalars(select(UsageLedger.kind).order_by(UsageLedger.id)).all() == ["charge", "refund"]
    told = farmer.graph.sent[-1]["text"]["body"]
    assert "bizden kaynaklanan" in told and "hakkınızdan düşülmedi" in told.lower()


def test_a_callback_result_that_cannot_be_answered_ends_failed_not_processing_forever(callback_app, mock, session,
                                                                                     monkeypatch):

    farmer = accepted_in_callback_mode(callback_app, mock)
    analysis_id = session.scalar(select(Analysis.id))
    break_the_reply(monkeypatch)
    client = callback_app.test_client()
    raw = json.dumps(n8n_result("result_full_tr.json", analysis_id)).encode()
    url = f"/webhooks/n8n/{analysis_id}"
    assert client.post(url, data=raw, headers=n8n_headers(raw, analysis_id)).json == {"status": "accepted"}
    run_jobs(callback_app)
    session.expire_all()
    analysis = session.get_one(Analysis, analysis_id)
    assert analysis.status == "failed" and "the reply cannot be built" in analysis.failure_reason
    assert session.scalars(select(UsageLedger.kind).order_by(UsageLedger.id)).all() == ["charge", "refund"]
    assert "bizden kaynaklanan" in farmer.graph.sent[-1]["text"]["body"]
    assert len(sent_to_n8n(mock)) == 1


def test_the_pipeline_fixtures_exist():
    assert Path(FIXTURES / "n8n" / "result_full_tr.json").exists()


def test_unexpected_error_after_the_last_retry_still_ends_failed_and_refunded(farmer, mock, session, app,
                                                                               monkeypatch):
    def broken_put(key: str, data: bytes, content_type: str) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(app.extensions["storage"], "put", broken_put)
    submit(farmer)
    analysis = session.scalar(select(Analysis))
    assert analysis.status == "failed" and "disk full" in analysis.failure_reason
    assert session.scalar(select(func.count()).select_from(UsageLedger).where(UsageLedger.kind == "refund")) == 1
    assert "hakkınızdan düşülmedi" in farmer.graph.sent[-1]["text"]["body"].lower()


# --- N8N accepted it and never answered ---------------------------------------------------------------


def time_passes(app, seconds: int) -> None:
    """The analysis was queued (and first taken) `seconds` ago."""
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(Analysis).values(queued_at=utcnow() - timedelta(seconds=seconds),
                                          processing_at=utcnow() - timedelta(seconds=seconds)))


def test_a_callback_that_never_comes_ends_the_analysis_failed_and_refunded_after_the_maximum_wait(
        callback_app, mock, session):

    assert "end_overdue" in [t.name for t in periodic_tasks(callback_app)]  # the scheduler runs it
    farmer = accepted_in_callback_mode(callback_app, mock)
    analysis_id = session.scalar(select(Analysis.id))
    assert session.scalar(select(Analysis.status)) == "processing"
    max_wait = callback_app.extensions["settings"].ANALYSIS_MAX_WAIT_SECONDS
    time_passes(callback_app, max_wait - 60)
    with callback_app.app_context():
        assert end_overdue() == 0  # still within the bound: N8N may yet answer
    time_passes(callback_app, max_wait + 1)
    with callback_app.app_context():
        assert end_overdue() == 1
        assert end_overdue() == 0  # once
    run_jobs(callback_app)
    session.expire_all()
    analysis = session.get_one(Analysis, analysis_id)
    assert analysis.status == "failed" and analysis.failure_reason == "no result from N8N within the maximum wait"
    assert session.scalars(select(UsageLedger.kind).order_by(UsageLedger.id)).all() == ["charge", "refund"]
    told = farmer.graph.sent[-1]["text"]["body"]
    assert "yeniden gönderebilirsiniz" in told and "hakkınızdan düşülmedi" in told.lower()
    # A result that arrives after that is ignored: the farmer was told and refunded.
    raw = json.dumps(n8n_result("result_full_tr.json", analysis_id)).encode()
    response = callback_app.test_client().post(f"/webhooks/n8n/{analysis_id}", data=raw,
                                               headers=n8n_headers(raw, analysis_id))
    assert response.json == {"status": "ignored"}
    run_jobs(callback_app)
    session.expire_all()
    assert session.get_one(Analysis, analysis_id).status == "failed"
    assert len(sent_to_n8n(mock)) == 1


def test_an_overdue_analysis_a_worker_holds_or_that_completed_is_left_alone(callback_app, mock, session):
    accepted_in_callback_mode(callback_app, mock)
    analysis_id = session.scalar(select(Analysis.id))
    time_passes(callback_app, 3 * 3600)
    with callback_app.extensions["db"].session() as s, s.begin():  # a live worker holds it
        s.execute(update(Analysis).values(lease_owner="another worker", lease_until=utcnow() + timedelta(seconds=20)))
    with callback_app.app_context():
        assert end_overdue() == 0
        assert end_if_overdue(analysis_id, utcnow()) is False  # checked again under the row's lock
    with callback_app.extensions["db"].session() as s, s.begin():
        s.execute(update(Analysis).values(lease_owner=None, lease_until=utcnow(), status="completed"))
    with callback_app.app_context():
        assert end_overdue() == 0 and end_if_overdue(analysis_id, utcnow()) is False
    assert session.scalars(select(UsageLedger.kind)).all() == ["charge"]


def test_two_sweepers_ending_the_same_overdue_analysis_refund_it_once(callback_app, mock, session):
    accepted_in_callback_mode(callback_app, mock)
    analysis_id = session.scalar(select(Analysis.id))
    time_passes(callback_app, 3 * 3600)
    results: list[bool] = []
    start = threading.Barrier(2)

    def sweep() -> None:
        with callback_app.app_context():
            start.wait()
            results.append(end_if_overdue(analysis_id, utcnow()))

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]
    assert session.scalars(select(UsageLedger.kind).order_by(UsageLedger.id)).all() == ["charge", "refund"]


# --- an album: several photos, one analysis -------------------------------------------------------------

ALBUM = [MEDIA_ID, "2234567890123456", "3234567890123456"]


def album_photos() -> dict[str, bytes]:
    underside = Image.new("RGB", (1200, 1600), (90, 160, 70))  # portrait, another size
    out = io.BytesIO()
    underside.save(out, "PNG")
    plant = io.BytesIO()
    Image.new("RGB", (640, 480), (40, 120, 40)).save(plant, "WEBP")
    return {ALBUM[1]: out.getvalue(), ALBUM[2]: plant.getvalue()}


@pytest.fixture
def album(mock):
    """The Graph API serves two more photos, and every analysis the conversation submits names all three
    (the bot side fills `media_ids`; here a mapper event stands in for it)."""

    for n, (media_id, photo) in enumerate(album_photos().items(), 2):
        url = f"{MEDIA_URL}{n}"
        mock.get(f"{GRAPH}/{media_id}", json={"url": url, "mime_type": "image/jpeg", "id": media_id,
                                              "sha256": hashlib.sha256(photo).hexdigest(), "file_size": len(photo)})
        mock.get(url, body=photo, content_type="image/jpeg")

    def name_every_photo(mapper, connection, target: Analysis) -> None:
        target.media_ids = list(ALBUM)

    event.listen(Analysis, "before_insert", name_every_photo)
    yield ALBUM
    event.remove(Analysis, "before_insert", name_every_photo)


def echo_result(req) -> tuple[int, dict, str]:
    return 200, {}, json.dumps(n8n_result("result_full_tr.json", json.loads(req.body)["analysis_id"]))


def test_every_photo_of_an_album_is_stored_and_sent_to_n8n_with_one_charge(farmer, mock, album, session, app,
                                                                           client):

    mock.add_callback(responses.POST, N8N_URL, callback=echo_result)
    submit(farmer)
    analysis = session.scalar(select(Analysis))
    assert analysis.status == "completed" and analysis.media_ids == ALBUM
    storage = app.extensions["storage"]
    assert len(analysis.image_keys) == len(analysis.original_keys) == 3
    assert (analysis.image_keys[0], analysis.original_keys[0]) == (analysis.image_key, analysis.original_key)
    originals = [leaf_jpeg(), *album_photos().values()]
    assert [storage.get(k) for k in analysis.original_keys] == originals  # as the farmer sent them, in order
    for key in analysis.image_keys:  # each optimised for the AI
        small = Image.open(io.BytesIO(storage.get(key)))
        assert small.format == "JPEG" and small.size[0] <= 800 and small.size[1] <= 600
    # One request, carrying a signed link to each optimised photo, the first being image_url.
    [call] = sent_to_n8n(mock)
    assert call.request.body is not None
    body = json.loads(call.request.body)
    assert len(body["image_urls"]) == 3 and body["image_urls"][0] == body["image_url"]
    served = [app.test_client().get(url.removeprefix("https://bot.test")).data for url in body["image_urls"]]
    assert served == [storage.get(k) for k in analysis.image_keys]
    # One analysis, one charge; one download of each photo.
    kinds = session.scalars(select(UsageLedger.kind)).all()
    assert kinds == ["charge"]
    downloads = [c.request.url for c in mock.calls if c.request.url.startswith(MEDIA_URL)]
    assert sorted(downloads) == sorted([MEDIA_URL, f"{MEDIA_URL}2", f"{MEDIA_URL}3"])
    # Support sees every photo, through fresh signed links.
    detail = client.get(f"/api/v1/analyses/{analysis.id}", headers=bearer(token_for(app, client, "support")))
    assert detail.status_code == 200
    view = detail.get_json()
    assert view["media_ids"] == ALBUM and len(view["photo_urls"]) == 3 and len(view["original_photo_urls"]) == 3
    assert [client.get(u).data for u in view["photo_urls"]] == served
    assert [client.get(u).data for u in view["original_photo_urls"]] == originals


def test_an_unreadable_photo_of_an_album_is_left_out(farmer, mock, album, session, app):
    mock.replace(responses.GET, f"{MEDIA_URL}2", body=b"not a photo at all" * 10, content_type="image/jpeg")
    mock.replace(responses.GET, f"{GRAPH}/{ALBUM[1]}", json={"url": f"{MEDIA_URL}2", "mime_type": "image/jpeg",
                                                              "id": ALBUM[1]})
    mock.add_callback(responses.POST, N8N_URL, callback=echo_result)
    replies = submit(farmer)
    analysis = session.scalar(select(Analysis))
    assert analysis.status == "completed" and len(analysis.image_keys) == 2
    [call] = sent_to_n8n(mock)
    assert call.request.body is not None and len(json.loads(call.request.body)["image_urls"]) == 2
    told = [r for r in replies if "kullanılamadı" in r]
    assert told == ["Fotoğraflarınızdan 1 tanesi kullanılamadı (çok büyük ya da okunamıyor); aşağıdaki sonuç diğer 2 "
                    "fotoğrafa göre."]
    assert replies.index(told[0]) < next(i for i, r in enumerate(replies) if "Domates" in r or "domates" in r)


def test_a_retry_sends_the_stored_photos_again_without_downloading_them(farmer, mock, album, session, app):
    mock.add_callback(responses.POST, N8N_URL, callback=echo_result)
    submit(farmer)
    analysis_id = session.scalar(select(Analysis.id))
    keys = session.scalar(select(Analysis.image_keys))
    downloads = len([c for c in mock.calls if c.request.url.startswith(MEDIA_URL)])
    with app.extensions["db"].session() as s, s.begin():
        s.get_one(Analysis, analysis_id).status = "queued"
    with app.app_context():
        assert run_analysis(analysis_id) == "completed"
    assert len([c for c in mock.calls if c.request.url.startswith(MEDIA_URL)]) == downloads
    second = sent_to_n8n(mock)[-1].request.body
    assert second is not None and len(json.loads(second)["image_urls"]) == len(keys) == 3


def test_older_rows_without_media_ids_have_their_one_photo():
    assert photo_ids("m1", None) == ("m1",)
    assert photo_ids("m1", ["m1", "m2", "m2"]) == ("m1", "m2")
    assert photo_ids("m1", ["m2"]) == ("m1", "m2")  # media_id is always first
    assert photo_ids(None, ["a", "b", "c", "d", "e", "f"]) == ("a", "b", "c", "d", "e")
    assert stored_keys(None, "k") == ("k",) and stored_keys(["k", "l"], "k") == ("k", "l")
    assert stored_keys(None, None) == ()


# --- the wait for N8N has an end -------------------------------------------------------------------------


def test_wait_decision_never_waits_past_the_bound():
    start = datetime(2026, 12, 1, 8, 0)
    hour = timedelta(hours=1)
    assert wait_decision(start, start + hour, 60, 7200) == timedelta(seconds=60)
    assert wait_decision(start, start + hour, None, 7200) == timedelta(seconds=1)
    assert wait_decision(start, start + 2 * hour - timedelta(seconds=20), 60, 7200) == timedelta(seconds=20)
    assert wait_decision(start, start + 2 * hour, 60, 7200) is None
    assert wait_decision(start, start + 3 * hour, 60, 7200) is None


def test_an_analysis_that_waited_too_long_for_n8n_fails_refunded_and_the_farmer_may_send_again(
        farmer, mock, session, app):



    mock.post(N8N_URL, status=503, body="down")
    breaker = n8n_client().breaker
    assert breaker is not None
    for _ in range(5):
        breaker.record_failure()
    submit(farmer)
    analysis = session.scalar(select(Analysis))
    assert analysis.status == "processing"  # waiting, within the bound
    # Time passes: the analysis was queued longer ago than ANALYSIS_MAX_WAIT_SECONDS (7200), N8N still down.
    assert app.extensions["settings"].ANALYSIS_MAX_WAIT_SECONDS == 7200
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(Analysis).values(queued_at=utcnow() - timedelta(seconds=7201)))
    with app.app_context(), pytest.raises(AnalysisFailed):
        run_analysis(analysis.id)  # the scheduled wake-up
    run_jobs(app)
    session.expire_all()
    analysis = session.scalar(select(Analysis))
    assert analysis.status == "failed" and "maximum wait" in analysis.failure_reason
    assert sent_to_n8n(mock) == []
    assert session.scalars(select(UsageLedger.kind).order_by(UsageLedger.id)).all() == ["charge", "refund"]
    told = farmer.graph.sent[-1]["text"]["body"]
    assert "uzun süredir ulaşılamadığı" in told and "yeniden gönderebilirsiniz" in told
    assert "hakkınızdan düşülmedi" in told.lower()
