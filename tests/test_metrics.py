"""`/metrics`: every series is exposed, and each one moves when the traffic it counts flows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from app import create_app
from models import Farmer, utcnow
from services import quota
from services.circuit import CircuitBreaker
from services.n8n import CircuitOpen, N8NClient, N8NTransientError, build_request
from services.queue import DEFAULT, INBOUND, get_queue
from services.whatsapp import messages as wa
from services.whatsapp.errors import GraphAPIError
from services.whatsapp.outbox import queue_message
from settings import PROJECT_ROOT
from tests.chat import MESSAGES_URL, GraphStub
from tests.chat import Farmer as ChatFarmer
from tests.helpers import N8N_SECRET, N8N_URL, make_settings, post_webhook, run_jobs, send_outbox

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SERIES = {
    "ziraai_webhooks_total": "counter",
    "ziraai_jobs_total": "counter",
    "ziraai_job_duration_seconds": "histogram",
    "ziraai_queue_depth": "gauge",
    "ziraai_failed_jobs": "gauge",
    "ziraai_n8n_request_duration_seconds": "histogram",
    "ziraai_n8n_circuit_open": "gauge",
    "ziraai_graph_api_errors_total": "counter",
    "ziraai_outbound_sends_total": "counter",
    "ziraai_quota_rejections_total": "counter",
    "ziraai_redis_up": "gauge",
}
PHONE = "905321234567"


def scrape(client: FlaskClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def text_message(wamid: str) -> dict:
    return {"object": "whatsapp_business_account", "entry": [{"id": "211497375401331", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "908502221133", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Ayşe"}, "wa_id": PHONE}],
            "messages": [{"from": PHONE, "id": wamid, "timestamp": "1763800000", "type": "text",
                          "text": {"body": "merhaba"}}]}}]}]}


# --- exposition ------------------------------------------------------------------------------------


def test_every_series_is_described_with_its_type(client):
    text = client.get("/metrics").get_data(as_text=True)
    for name, kind in SERIES.items():
        assert f"# TYPE {name} {kind}" in text, name


def test_queue_and_circuit_gauges_start_at_zero(client):
    samples = scrape(client)
    for queue in ("inbound", "analysis", "default"):
        assert value(samples, "ziraai_queue_depth", queue=queue) == 0
        assert ("ziraai_failed_jobs", frozenset({("queue", queue)})) in samples
    assert value(samples, "ziraai_n8n_circuit_open") == 0
    assert value(samples, "ziraai_redis_up") == 1


def test_openmetrics_when_asked_for(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.content_type.startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")


# --- the series move -------------------------------------------------------------------------------


def test_webhooks_counted_once_each_by_outcome(app, client):
    before = scrape(client)
    body = json.dumps(text_message("wamid.METRICS1")).encode()
    assert post_webhook(client, body).status_code == 200  # accepted
    assert post_webhook(client, body).status_code == 200  # duplicate
    unknown = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "a_field_we_do_not_handle", "value": {"event": "VERIFIED_ACCOUNT"}}]}]}
    assert post_webhook(client, unknown).status_code == 200  # unhandled
    assert client.post("/webhooks/whatsapp", data=body, content_type="application/json").status_code == 401
    assert post_webhook(client, body, secret="someone-else").status_code == 403
    assert post_webhook(client, b"{not json").status_code == 400
    too_big = b" " * (3 * 1024 * 1024 + 1)
    assert post_webhook(client, too_big).status_code == 413
    after = scrape(client)
    for outcome in ("accepted", "duplicate", "unhandled", "unsigned", "bad_signature", "malformed", "too_large"):
        assert delta(before, after, "ziraai_webhooks_total", outcome=outcome) == 1, outcome
    assert delta(before, after, "ziraai_webhooks_total", outcome="error") == 0


def test_queue_depth_reflects_enqueued_jobs(app, client):
    queue = get_queue(DEFAULT, app.extensions["redis"])
    for n in range(3):
        queue.enqueue("services.jobs.handle_inbound", n)
    samples = scrape(client)
    assert value(samples, "ziraai_queue_depth", queue="default") == 3
    assert value(samples, "ziraai_queue_depth", queue="inbound") == 0


def test_a_job_run_by_a_worker_moves_the_jobs_counter_and_histogram(app, client):
    before = scrape(client)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        farmer = ChatFarmer(app, GraphStub(mock), phone=PHONE)
        farmer.deliver(farmer.text("merhaba"), run=False)
        assert value(scrape(client), "ziraai_queue_depth", queue="inbound") == 1
        run_jobs(app)  # SimpleWorker, as a worker runs them
        assert farmer.graph.sent  # the job really ran: the farmer got the privacy notice
    after = scrape(client)
    assert delta(before, after, "ziraai_jobs_total", queue="inbound", outcome="succeeded") == 1
    assert delta(before, after, "ziraai_job_duration_seconds_count", queue="inbound") == 1
    # the one run is one observation in the histogram's buckets (how long it took is bench/'s business)
    assert delta(before, after, "ziraai_job_duration_seconds_bucket", queue="inbound", le="+Inf") == 1
    assert value(after, "ziraai_queue_depth", queue="inbound") == 0


def test_a_failing_graph_send_counts_errors_by_code_and_retried_then_failed_sends(app, client):
    before = scrape(client)
    with app.extensions["db"].session() as s, s.begin():
        queue_message(s, "+" + PHONE, wa.text("+" + PHONE, "Analiziniz hazır"), utcnow())
    error = {"error": {"message": "Service temporarily unavailable", "type": "OAuthException", "code": 131000}}
    with responses.RequestsMock() as mock:
        mock.post(MESSAGES_URL, json=error, status=500)
        send_outbox(app)  # 1 try + 4 retries (backoff base 0 in tests)
        mock.replace(responses.POST, MESSAGES_URL, json={"messages": [{"id": "wamid.M1"}]})
        with app.extensions["db"].session() as s, s.begin():
            queue_message(s, "+" + PHONE, wa.text("+" + PHONE, "Tekrar"), utcnow())
        send_outbox(app)
    after = scrape(client)
    assert delta(before, after, "ziraai_graph_api_errors_total", code="131000") == 5
    assert delta(before, after, "ziraai_outbound_sends_total", outcome="retried") == 4
    assert delta(before, after, "ziraai_outbound_sends_total", outcome="failed") == 1
    assert delta(before, after, "ziraai_outbound_sends_total", outcome="sent") == 1


def test_graph_errors_without_a_code_count_by_http_status_or_network(app, client):
    from services import whatsapp

    before = scrape(client)
    with responses.RequestsMock() as mock:
        mock.post(MESSAGES_URL, body="<html>Bad gateway</html>", status=502)
        mock.post(MESSAGES_URL, body=requests.ConnectionError("refused"))
        for _ in range(2):
            with pytest.raises(GraphAPIError):
                whatsapp.client().send(wa.text("+" + PHONE, "merhaba").body)
    after = scrape(client)
    assert delta(before, after, "ziraai_graph_api_errors_total", code="http_502") == 1
    assert delta(before, after, "ziraai_graph_api_errors_total", code="network") == 1


def test_n8n_calls_observe_latency_by_outcome(app, client):
    redis = app.extensions["redis"]
    breaker = CircuitBreaker(redis, "metrics-test", failure_threshold=2, cooldown_seconds=60)
    n8n = N8NClient(N8N_URL, (N8N_SECRET,), breaker=breaker)
    body = build_request(analysis_id=1, image_url="https://bot.test/media/x", farmer_ref="Fabc", crop_type="domates",
                         location=None, lat=None, lng=None, notes=None)
    before = scrape(client)
    with responses.RequestsMock() as mock:
        mock.post(N8N_URL, json={"success": True, "plant_identification": {"species": "Solanum"}})
        mock.post(N8N_URL, json={"error": "busy"}, status=503)
        mock.post(N8N_URL, body=requests.ConnectTimeout("slow"))
        answer = n8n.submit(body)
        assert answer is not None and answer["success"] is True
        for _ in range(2):
            with pytest.raises(N8NTransientError):
                n8n.submit(body)
        with pytest.raises(CircuitOpen):  # two failures opened this breaker: no call, nothing observed
            n8n.submit(body)
    after = scrape(client)
    assert delta(before, after, "ziraai_n8n_request_duration_seconds_count", outcome="ok") == 1
    assert delta(before, after, "ziraai_n8n_request_duration_seconds_count", outcome="http_5xx") == 1
    assert delta(before, after, "ziraai_n8n_request_duration_seconds_count", outcome="timeout") == 1
    total = sum(v for (name, _), v in after.items() if name == "ziraai_n8n_request_duration_seconds_count")
    assert total - sum(v for (name, _), v in before.items() if name == "ziraai_n8n_request_duration_seconds_count") == 3


def test_circuit_gauge_reads_the_shared_breaker(app, client):
    breaker = CircuitBreaker(app.extensions["redis"], "n8n", failure_threshold=1, cooldown_seconds=60)
    breaker.record_failure()
    assert value(scrape(client), "ziraai_n8n_circuit_open") == 1
    breaker.record_success()
    assert value(scrape(client), "ziraai_n8n_circuit_open") == 0


def test_quota_rejections_count_each_refusal_the_farmer_is_told_by_reason(app, client, graph):
    """The farmer meets the limit at the photo (no charge is even tried) and at `Gönder` (the charge fails):
    each is one refusal, counted once; the `kota` answer and a charge refused without a word count nothing."""
    farmer = ChatFarmer(app, graph, phone=PHONE, queues=("inbound",))
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)
    farmer.onboard()
    farmer.photo("domates")
    farmer.taps("Geç")
    with app.extensions["db"].session() as s, s.begin():  # the Trial's one analysis of the day goes elsewhere
        farmer_id = s.scalar(select(Farmer.id).where(Farmer.phone == "+" + PHONE))
        assert quota.charge(s, farmer_id, datetime.now(UTC)).ok
        before = scrape(client)
        assert quota.charge(s, farmer_id, datetime.now(UTC)).reason == "daily"  # no farmer told: not counted
    assert delta(before, scrape(client), "ziraai_quota_rejections_total", reason="daily") == 0

    [refused] = farmer.taps("Gönder")
    assert "Günlük analiz hakkınız doldu" in refused
    farmer.says("iptal")  # the refused photo is let go; the next one starts anew
    [waits] = farmer.photo()
    assert "Günlük analiz hakkınız doldu" in waits
    farmer.says("kota")
    after = scrape(client)
    assert delta(before, after, "ziraai_quota_rejections_total", reason="daily") == 2
    assert delta(before, after, "ziraai_quota_rejections_total", reason="monthly") == 0
    assert delta(before, after, "ziraai_quota_rejections_total", reason="no_subscription") == 0


def test_no_personal_data_in_the_metrics(app, client):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        farmer = ChatFarmer(app, GraphStub(mock), phone=PHONE, name="Ayşe Kaya")
        farmer.says("merhaba")
    text = client.get("/metrics").get_data(as_text=True)
    assert "5321234567" not in text and "Ayşe" not in text and "merhaba" not in text


# --- protection and failure --------------------------------------------------------------------------


def test_metrics_token_required_when_set(database_url):
    app = create_app(make_settings(database_url, METRICS_TOKEN="s3cret-metrics-token"))
    client = app.test_client()
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "ziraai" not in missing.get_data(as_text=True)
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic czNjcmV0"}).status_code == 401
    assert scrape(client, Authorization="Bearer s3cret-metrics-token")
    app.extensions["db"].engine.dispose()


def test_two_metrics_tokens_for_a_rotation(database_url):
    """METRICS_TOKEN=old,new while Prometheus is switched over: both scrape, anything else does not."""
    app = create_app(make_settings(database_url, METRICS_TOKEN="old-metrics-token-0001,new-metrics-token-0002"))
    client = app.test_client()
    assert scrape(client, Authorization="Bearer old-metrics-token-0001")
    assert scrape(client, Authorization="Bearer new-metrics-token-0002")
    for wrong in ("old-metrics-token-0001,new-metrics-token-0002", "", "new-metrics-token-000"):
        assert client.get("/metrics", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
    app.extensions["db"].engine.dispose()


def test_open_without_a_token_in_development(client):
    assert client.get("/metrics").status_code == 200


def test_redis_down_still_answers_with_redis_up_zero(database_url):
    app = create_app(make_settings(database_url, REDIS_URL="redis://127.0.0.1:1/0"))
    samples = scrape(app.test_client())
    assert value(samples, "ziraai_redis_up") == 0
    assert not any(name == "ziraai_queue_depth" for name, _ in samples)
    app.extensions["db"].engine.dispose()


# --- multiprocess mode: several processes add up -----------------------------------------------------


MULTIPROCESS_SCRIPT = """
import os, sys
from services import metrics

metrics.webhook("accepted")  # the "web" process
for _ in range(3):  # a worker running three jobs in its own process, as ours do
    metrics.job("inbound", "succeeded", 0.2)
pid = os.fork()
if pid == 0:  # another process of the machine (a second gunicorn worker, say)
    metrics.webhook("accepted")
    os._exit(0)
os.waitpid(pid, 0)

import fakeredis
body, _ = metrics.render(fakeredis.FakeRedis())
sys.stdout.write(body.decode())
"""


def test_multiprocess_mode_adds_up_every_process_and_keeps_one_file_per_process(tmp_path: Path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(MULTIPROCESS_SCRIPT)], env=env, cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    samples: Samples = {}
    for family in text_string_to_metric_families(result.stdout):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    assert value(samples, "ziraai_jobs_total", queue="inbound", outcome="succeeded") == 3
    assert value(samples, "ziraai_job_duration_seconds_count", queue="inbound") == 3
    assert value(samples, "ziraai_webhooks_total", outcome="accepted") == 2
    files = sorted(p.name for p in (tmp_path / "prom").iterdir())
    counter_files = [f for f in files if f.startswith("counter_")]
    assert len(counter_files) == 2, files  # one per process, however many jobs ran in it


def test_the_worker_runs_its_jobs_in_its_own_process_without_forking(app: Flask):
    """No work-horse: a job's counts go to the worker process's own metrics files."""
    from services import worker as worker_module

    redis = app.extensions["redis"]
    job = get_queue(INBOUND, redis).enqueue("os.getpid")
    worker_module.AppWorker([get_queue(INBOUND, redis)], connection=redis).work(burst=True)
    job.refresh()
    assert job.return_value() == os.getpid()
