"""Health endpoints, JSON logs with a correlation id, and phone numbers masked in logs."""

from __future__ import annotations

import io
import json
import logging
import threading
import time

import pytest

from app import create_app
from services.logs import JsonFormatter, correlation
from services.masking import mask_phones_in
from services.worker import (
    EMBEDDED_WORKER_THREAD,
    PRESENCE_KEY,
    PRESENCE_SECONDS,
    embedded_worker_alive,
    keep_present,
    workers_present,
)
from tests.fault_helpers import worker_process
from tests.helpers import REAL_REDIS, fixture_bytes, make_settings, post_webhook, wait_until


def test_health_live_answers_ok(client):
    r = client.get("/health/live")
    assert r.status_code == 200 and r.json == {"status": "ok"}


def test_ready_reports_each_check(client):
    r = client.get("/health/ready")
    assert r.status_code == 200
    assert r.json["checks"]["database"] == {"status": "ok"}
    assert r.json["checks"]["redis"] == {"status": "ok"}


@pytest.mark.skipif(REAL_REDIS, reason="embedded mode: no REDIS_URL")
def test_ready_shows_whether_the_embedded_worker_runs_without_failing_for_it(client):
    wait_until(lambda: not embedded_worker_alive(), 10, what="earlier tests' worker threads to end")
    r = client.get("/health/ready")
    assert r.status_code == 200  # the web server still takes and stores every message
    assert r.json["workers"] == {"status": "error", "mode": "embedded", "count": 0}
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name=EMBEDDED_WORKER_THREAD, daemon=True)
    thread.start()
    try:
        assert client.get("/health/ready").json["workers"] == {"status": "ok", "mode": "embedded", "count": 1}
    finally:
        stop.set()
        thread.join()


@pytest.mark.skipif(not REAL_REDIS, reason="worker processes say they are alive in a real Redis (TEST_REDIS_URL)")
def test_ready_counts_a_worker_process_while_it_runs_and_not_a_minute_after_it_was_killed(client, app, database_url):
    assert client.get("/health/ready").json["workers"]["mode"] == "processes"
    app.extensions["redis"].delete(PRESENCE_KEY)  # earlier tests' workers
    process = worker_process(database_url, "http://127.0.0.1:9", "http://127.0.0.1:9/n8n", burst=False)
    try:
        wait_until(lambda: client.get("/health/ready").json["workers"]["count"] == 1, 30, what="the worker counted")
        assert client.get("/health/ready").json["workers"]["status"] == "ok"
        process.kill()  # SIGKILL: no goodbye; RQ's own registration of it lives on for minutes
        process.wait(10)
        started = time.monotonic()
        wait_until(lambda: client.get("/health/ready").json["workers"] == {
            "status": "error", "mode": "processes", "count": 0}, PRESENCE_SECONDS + 10, what="the dead worker dropped")
        assert time.monotonic() - started <= PRESENCE_SECONDS + 10
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_a_worker_is_counted_while_it_says_it_is_alive_and_leaves_when_it_stops(client, app):
    redis = app.extensions["redis"]
    redis.delete(PRESENCE_KEY)
    stop = threading.Event()
    thread = keep_present(redis, stop)
    wait_until(lambda: workers_present(redis, time.time()) == 1, 5, what="the first beat")
    assert workers_present(redis, time.time() + PRESENCE_SECONDS + 1) == 0  # silent that long: not counted
    stop.set()
    thread.join(10)
    assert workers_present(redis, time.time()) == 0


def test_ready_is_503_when_redis_is_unreachable(database_url):
    app = create_app(make_settings(database_url, REDIS_URL="redis://127.0.0.1:1/0"))
    r = app.test_client().get("/health/ready")
    assert r.status_code == 503
    assert r.json is not None
    assert r.json["checks"]["redis"]["status"] == "error"
    assert r.json["checks"]["database"]["status"] == "ok"
    app.extensions["db"].engine.dispose()


def test_ready_is_503_when_the_database_is_unreachable():
    app = create_app(make_settings("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    r = app.test_client().get("/health/ready")
    assert r.status_code == 503
    assert r.json is not None
    assert r.json["checks"]["database"]["status"] == "error"


def test_unknown_route_is_problem_json(client):
    r = client.get("/nope")
    assert r.status_code == 404 and r.mimetype == "application/problem+json"
    assert r.json["status"] == 404


def test_phone_numbers_inside_log_text_are_masked_by_the_one_rule():
    assert mask_phones_in("farmer +905321234567 wrote") == "farmer +90 532 *** ** 67 wrote"
    assert mask_phones_in("wa_id 905321234567") == "wa_id +90 532 *** ** 67"
    assert mask_phones_in("ts 1763780000 id 42") == "ts 1763780000 id 42"


def test_json_formatter_masks_and_carries_the_correlation_id():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "from %s", ("+905321234567",), None)
    record.phone = "+905339876543"
    with correlation("inbound-7"):
        line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["msg"] == "from +90 532 *** ** 67"
    assert data["phone"] == "+90 533 *** ** 43"
    assert data["correlation_id"] == "inbound-7"
    assert "905321234567" not in line and "905339876543" not in line


def test_webhook_logs_never_show_a_full_phone_number(client):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        post_webhook(client, fixture_bytes("two_entries.json"))
        post_webhook(client, b"not json")  # a refusal is logged too
    finally:
        logging.getLogger().removeHandler(handler)
    out = stream.getvalue()
    assert "webhook accepted" in out
    assert "5321234567" not in out and "5339876543" not in out


FARMERS_WAMID = "wamid.HBgMOTA1MzIxMTEwMDgxFQIAEhgUQUJDREVGMDEyMzQ1Njc4OUFCQ0QA"  # base64 of 905321110081 and more
OUR_WAMID = "wamid.HBgMOTA1MzIxMTEwMDgxFQIAERgSOUEzQ0E1QjNENENENkU2N0U3AA=="


def test_a_wamid_in_any_log_field_keeps_only_its_end_which_cannot_be_decoded_to_the_phone():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "reply to %s", (FARMERS_WAMID,), None)
    record.wamid = OUR_WAMID
    record.wamids = [FARMERS_WAMID, "wamid.IN7"]
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["msg"] == "reply to wamid…Njc4OUFCQ0QA"
    assert data["wamid"] == "wamid…NkU2N0U3AA=="
    assert data["wamids"] == ["wamid…Njc4OUFCQ0QA", "wamid…IN7"]
    assert "HBgM" not in line and "OTA1MzIx" not in line


def test_the_webhook_and_the_outbox_log_wamids_without_the_phone_inside_them(app, client):
    import responses

    from tests.helpers import GRAPH, PHONE_NUMBER_ID, run_jobs

    body = json.loads(fixture_bytes("text.json"))
    body["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = FARMERS_WAMID
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as graph:
            graph.add(responses.POST, f"{GRAPH}/{PHONE_NUMBER_ID}/messages",
                      json={"messaging_product": "whatsapp", "messages": [{"id": OUR_WAMID}]})
            assert post_webhook(client, body).status_code == 200
            run_jobs(app)
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [accepted] = [line for line in lines if line["msg"] == "webhook accepted"]
    assert accepted["wamids"] == ["wamid…Njc4OUFCQ0QA"]
    assert any(line["msg"] == "outbound message accepted" and line["wamid"] == "wamid…NkU2N0U3AA==" for line in lines)
    assert "HBgM" not in stream.getvalue()


@pytest.mark.parametrize(("module", "function", "path", "pattern"), [
    ("web.report", "read_report_token", "/r/{token}", "/r/<path:token>"),
    ("web.media", "unsign_media", "/media/{token}", "/media/<token>"),
])
def test_an_error_on_a_link_with_a_token_logs_the_route_not_the_token(app, client, caplog, monkeypatch, module,
                                                                      function, path, pattern):
    """Found by the adversarial review: Flask's "Exception on /r/<the farmer's token>" line put a working
    report link in the log. The line names the route pattern instead."""
    import importlib

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(importlib.import_module(module), function, broken)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)  # as outside tests: a 500, and the log line
    token = "eyJhbGciOiJIUzI1NiJ9.SECRET-TOKEN-1234567890.abcdef"
    caplog.set_level(logging.ERROR)
    assert client.get(path.format(token=token)).status_code == 500
    assert f"Exception on {pattern} [GET]" in caplog.text
    assert "SECRET-TOKEN" not in caplog.text
