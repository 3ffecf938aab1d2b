"""The operator's toolbox: `flask requeue-failed`, `flask purge-media`, and the RQ dashboard at `/admin/rq`."""

from __future__ import annotations

import base64
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq import SimpleWorker
from rq.registry import FailedJobRegistry
from sqlalchemy import select

from app import create_app
from models import Analysis, AuditLog, Farmer, Message, StaffUser
from services import quota
from services.media_purge import purge_media
from services.queue import ANALYSIS, DEFAULT, INBOUND, get_queue
from services.storage import FallbackStorage, LocalStorage, S3Storage, new_key
from tests.admin_helpers import PASSWORD, make_staff
from tests.helpers import make_settings

DAY = 86400


def explode(value: Any) -> None:
    """A job that always fails (RQ imports it by name in the worker)."""
    raise RuntimeError(f"boom {value}")


def fail_job(app: Flask, queue: str, value: Any, job_id: str | None = None) -> str:
    redis = app.extensions["redis"]
    job = get_queue(queue, redis).enqueue("tests.test_operator_cli.explode", value, job_id=job_id)
    with app.app_context():
        SimpleWorker([get_queue(queue, redis)], connection=redis).work(burst=True)
    assert job.id in FailedJobRegistry(queue=get_queue(queue, redis))
    return job.id


def failed(app: Flask, queue: str) -> list[str]:
    return FailedJobRegistry(queue=get_queue(queue, app.extensions["redis"])).get_job_ids()


def queued(app: Flask, queue: str) -> list[str]:
    return get_queue(queue, app.extensions["redis"]).job_ids


def failed_analysis(app: Flask) -> int:
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)
        farmer = Farmer(phone="+905321234567")
        s.add(farmer)
        s.flush()
        analysis = Analysis(farmer_id=farmer.id, status="failed", failure_reason="N8N refused the request")
        s.add(analysis)
        s.flush()
        return analysis.id


# --- flask requeue-failed ------------------------------------------------------------------------------


def test_requeue_all_moves_failed_jobs_back_to_their_queues(app, runner):
    first, second = fail_job(app, DEFAULT, 1), fail_job(app, INBOUND, 2)
    result = runner.invoke(args=["requeue-failed", "--all"])
    assert result.exit_code == 0, result.output
    assert f"requeued {first} (default)" in result.output and f"requeued {second} (inbound)" in result.output
    assert "requeued 2 of 2 job(s)" in result.output
    assert failed(app, DEFAULT) == [] and failed(app, INBOUND) == []
    assert queued(app, DEFAULT) == [first] and queued(app, INBOUND) == [second]


def test_requeue_by_id_within_one_queue(app, runner):
    job_id = fail_job(app, DEFAULT, 1)
    other = fail_job(app, DEFAULT, 2)
    wrong_queue = runner.invoke(args=["requeue-failed", "--queue", "inbound", job_id])
    assert wrong_queue.exit_code == 1
    assert f"not found {job_id}: in no failed registry of inbound" in wrong_queue.output
    assert job_id in failed(app, DEFAULT)
    result = runner.invoke(args=["requeue-failed", "--queue", "default", job_id])
    assert result.exit_code == 0, result.output
    assert queued(app, DEFAULT) == [job_id] and failed(app, DEFAULT) == [other]  # only the one named


def test_requeue_all_of_one_queue_leaves_the_others(app, runner):
    in_default, in_inbound = fail_job(app, DEFAULT, 1), fail_job(app, INBOUND, 2)
    result = runner.invoke(args=["requeue-failed", "--all", "--queue", "inbound"])
    assert result.exit_code == 0 and "requeued 1 of 1" in result.output
    assert queued(app, INBOUND) == [in_inbound] and failed(app, DEFAULT) == [in_default]


def test_requeue_needs_either_all_or_ids(app, runner):
    assert runner.invoke(args=["requeue-failed"]).exit_code == 2
    assert runner.invoke(args=["requeue-failed", "--all", "some-id"]).exit_code == 2
    unknown_queue = runner.invoke(args=["requeue-failed", "--all", "--queue", "nope"])
    assert unknown_queue.exit_code == 2 and "nope" in unknown_queue.output


def test_a_refunded_analysis_is_skipped_unless_forced(app, runner):
    analysis_id = failed_analysis(app)
    job_id = fail_job(app, ANALYSIS, analysis_id, job_id=f"analysis-{analysis_id}")
    skipped = runner.invoke(args=["requeue-failed", "--all"])
    assert skipped.exit_code == 0 and "refunded" in skipped.output and "requeued 0 of 1" in skipped.output
    assert failed(app, ANALYSIS) == [job_id]
    forced = runner.invoke(args=["requeue-failed", "--force", job_id])
    assert forced.exit_code == 0 and f"requeued {job_id} (analysis)" in forced.output
    assert queued(app, ANALYSIS) == [job_id]


def test_unknown_job_id_is_reported(app, runner):
    result = runner.invoke(args=["requeue-failed", "no-such-job", "../../etc"])
    assert result.exit_code == 1
    assert "not found no-such-job" in result.output and "not found ../../etc" in result.output


# --- flask purge-media ---------------------------------------------------------------------------------


@pytest.fixture
def media_app(database_url: str, tmp_path: Path, app: Flask):
    """An app whose photos live in a directory of this test only (`app` cleaned the database)."""
    own = create_app(make_settings(database_url, MEDIA_DIR=str(tmp_path / "media")))
    with own.app_context():
        yield own
    own.extensions["db"].engine.dispose()


def store(app: Flask, kind: str, data: bytes, age_days: float) -> str:
    storage = app.extensions["storage"]
    key = new_key(kind, "jpg")
    storage.put(key, data, "image/jpeg")
    stamp = time.time() - age_days * DAY
    os.utime(storage.root / key, (stamp, stamp))
    return key


def test_purge_media_deletes_only_photos_older_than_n_days(media_app, session):
    app = media_app
    old_original, old_small = store(app, "original", b"o" * 3000, 40), store(app, "analysis", b"a" * 900, 31)
    new_original, new_small = store(app, "original", b"n" * 2000, 29), store(app, "analysis", b"m" * 500, 1)
    stray = app.extensions["storage"].root / "original" / ".tmp-halfwritten"
    stray.write_bytes(b"x")
    os.utime(stray, (time.time() - 90 * DAY,) * 2)
    farmer_id = failed_analysis(app)
    with app.extensions["db"].session() as s, s.begin():
        s.add_all([Analysis(farmer_id=farmer_id, status="completed", original_key=old_original, image_key=old_small),
                   Analysis(farmer_id=farmer_id, status="completed", original_key=new_original, image_key=new_small)])

    runner = app.test_cli_runner()
    dry = runner.invoke(args=["purge-media", "--older-than-days", "30", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "original: would delete 1 file(s), 3000 bytes" in dry.output
    assert "analysis: would delete 1 file(s), 900 bytes" in dry.output
    assert app.extensions["storage"].get(old_original)  # nothing deleted

    result = runner.invoke(args=["purge-media", "--older-than-days", "30"])
    assert result.exit_code == 0, result.output
    assert "total: deleted 2 file(s), 3900 bytes" in result.output
    assert "photo keys cleared on analyses and messages: 2" in result.output
    storage = app.extensions["storage"]
    for key in (old_original, old_small):
        with pytest.raises(KeyError):
            storage.get(key)
    assert storage.get(new_original) == b"n" * 2000 and storage.get(new_small) == b"m" * 500
    assert stray.exists()  # not a key of ours: never touched
    rows = session.execute(select(Analysis.status, Analysis.original_key, Analysis.image_key)
                           .where(Analysis.status == "completed").order_by(Analysis.id)).all()
    assert [tuple(r) for r in rows] == [("completed", None, None), ("completed", new_original, new_small)]

    again = runner.invoke(args=["purge-media", "--older-than-days", "30"])
    assert "total: deleted 0 file(s), 0 bytes" in again.output


def test_purge_media_deletes_an_old_photo_kept_for_support_and_says_so_on_its_message(media_app, session):
    app = media_app
    old, new = store(app, "support", b"s" * 700, 40), store(app, "support", b"t" * 600, 2)
    farmer_id = session.scalar(select(Analysis.farmer_id).where(Analysis.id == failed_analysis(app)))
    with app.extensions["db"].session() as s, s.begin():
        for n, key in enumerate((old, new)):
            s.add(Message(direction="in", phone="+905321234567", farmer_id=farmer_id, type="image",
                          media_id=f"55500{n}", status="processed", photo_state="stored", photo_key=key))

    result = app.test_cli_runner().invoke(args=["purge-media", "--older-than-days", "30"])
    assert result.exit_code == 0, result.output
    assert "support: deleted 1 file(s), 700 bytes" in result.output
    assert "photo keys cleared on analyses and messages: 1" in result.output
    with pytest.raises(KeyError):
        app.extensions["storage"].get(old)
    rows = session.execute(select(Message.photo_state, Message.photo_key).order_by(Message.id)).all()
    assert [tuple(r) for r in rows] == [("purged", None), ("stored", new)]


def test_purge_media_refuses_a_bad_age(media_app):
    runner = media_app.test_cli_runner()
    assert runner.invoke(args=["purge-media"]).exit_code == 2
    assert runner.invoke(args=["purge-media", "--older-than-days", "0"]).exit_code == 2
    assert runner.invoke(args=["purge-media", "--older-than-days", "soon"]).exit_code == 2


class FakeS3:
    """The few calls of boto3's S3 client that S3Storage and the purge make."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, datetime]] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> None:
        self.objects[Key] = (Body, datetime.now(UTC))

    def delete_object(self, *, Bucket: str, Key: str) -> None:
        self.objects.pop(Key, None)

    def get_paginator(self, name: str) -> Any:
        assert name == "list_objects_v2"
        fake = self

        class Paginator:
            def paginate(self, *, Bucket: str, Prefix: str) -> list[dict[str, Any]]:
                keys = sorted(k for k in fake.objects if k.startswith(Prefix))
                pages = [keys[i:i + 2] for i in range(0, len(keys), 2)] or [[]]  # two per page: paging is used
                return [{"Contents": [{"Key": k, "Size": len(fake.objects[k][0]), "LastModified": fake.objects[k][1]}
                                      for k in page]} if page else {} for page in pages]

        return Paginator()


def test_purge_media_on_s3_and_its_local_fallback(app, tmp_path):
    s3 = FakeS3()
    bucket = S3Storage("photos", prefix="ziraai/", client=s3)
    local = LocalStorage(tmp_path)
    storage = FallbackStorage(bucket, local)
    now = datetime.now(UTC)
    old_keys = [new_key("original", "jpg"), new_key("analysis", "jpg"), new_key("analysis", "jpg")]
    new_keys = [new_key("original", "png"), new_key("analysis", "jpg")]
    for key in old_keys + new_keys:
        bucket.put(key, b"12345", "image/jpeg")
    for key in old_keys:
        s3.objects["ziraai/" + key] = (b"12345", now - timedelta(days=10))
    s3.objects["ziraai/original/not-a-key.txt"] = (b"?", now - timedelta(days=99))
    fallback_old = new_key("original", "jpg")
    local.put(fallback_old, b"local!", "image/jpeg")
    os.utime(local.root / fallback_old, (time.time() - 10 * DAY,) * 2)

    report = purge_media(storage, app.extensions["db"], 7, now=now)
    assert report.files == {"original": 2, "analysis": 2, "support": 0}
    assert sum(report.bytes.values()) == 3 * 5 + len(b"local!")
    assert sorted(s3.objects) == sorted(["ziraai/" + k for k in new_keys] + ["ziraai/original/not-a-key.txt"])
    with pytest.raises(KeyError):
        local.get(fallback_old)


# --- the RQ dashboard ---------------------------------------------------------------------------------


def basic(email: str, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()}


ADMIN = "admin@ziraai.test"


@pytest.fixture
def admin(app: Flask) -> int:
    return make_staff(app, "admin", ADMIN)


def test_dashboard_refuses_without_credentials(client: FlaskClient):
    response = client.get("/admin/rq/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert client.post("/admin/rq/jobs/x/requeue").status_code == 401
    assert client.get("/admin/rq/", headers={"Authorization": "Bearer abc"}).status_code == 401
    nul = base64.b64encode(b"a\x00@x.com:pw").decode()
    assert client.get("/admin/rq/", headers={"Authorization": f"Basic {nul}"}).status_code == 401


@pytest.mark.parametrize("value", ["Basic \u00c3\u00a9", "Basic \u00e9", "basic \u00ff\u00fe==", "Basic //79",
                                   "Basic =", "Basic", "Basic \u00c3\u00a9:\u00c3\u00a9"])
def test_dashboard_answers_undecodable_basic_credentials_with_a_challenge(client: FlaskClient, value: str):
    """Found by the security probe: non-ASCII text where the base64 goes (`Basic \\xc3\\xa9` from curl) was a
    500 with a traceback; it is bad credentials like any other (the header arrives as Latin-1 text)."""
    response = client.get("/admin/rq/", headers={"Authorization": value})
    assert response.status_code == 401, response.get_data(as_text=True)[:300]
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")


def test_dashboard_refuses_a_support_user_and_a_wrong_password(app, client, admin):
    make_staff(app, "support", "support@ziraai.test")
    support = client.get("/admin/rq/", headers=basic("support@ziraai.test"))
    assert support.status_code == 401 and "WWW-Authenticate" in support.headers
    assert client.get("/admin/rq/", headers=basic(ADMIN, "wrong password!")).status_code == 401
    assert client.get("/admin/rq/", headers=basic("nobody@ziraai.test")).status_code == 401


def test_dashboard_refuses_an_inactive_admin(app, client, admin):
    with app.extensions["db"].session() as s, s.begin():
        s.get_one(StaffUser, admin).active = False
    assert client.get("/admin/rq/", headers=basic(ADMIN)).status_code == 401


def test_dashboard_shows_queues_and_failed_jobs_to_an_admin(app, client, session, admin):
    job_id = fail_job(app, DEFAULT, "<script>alert(1)</script>")
    get_queue(INBOUND, app.extensions["redis"]).enqueue("tests.test_operator_cli.explode", 2)
    response = client.get("/admin/rq/", headers=basic(ADMIN))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for name in ("inbound", "analysis", "default"):
        assert f"<td>{name}</td>" in page
    assert re.search(r"<td>inbound</td><td class=\"n\">1</td>", page)  # one waiting
    assert job_id in page and "tests.test_operator_cli.explode" in page
    assert "RuntimeError: boom &lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Frame-Options"] == "DENY"
    audit = session.scalars(select(AuditLog).where(AuditLog.action == "rq_dashboard.view")).all()
    assert [(a.user_id, a.ip) for a in audit] == [(admin, "127.0.0.1")]


def test_dashboard_requeue_button_moves_the_job_back(app, client, session, admin):
    job_id = fail_job(app, DEFAULT, 1)
    page = client.get("/admin/rq/", headers=basic(ADMIN)).get_data(as_text=True)
    token = re.search(r'name="token" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]

    forged = client.post(f"/admin/rq/jobs/{job_id}/requeue", headers=basic(ADMIN), data={"token": "0" * 64})
    assert forged.status_code == 403 and job_id in failed(app, DEFAULT)

    response = client.post(f"/admin/rq/jobs/{job_id}/requeue", headers=basic(ADMIN), data={"token": token})
    assert response.status_code == 303
    assert queued(app, DEFAULT) == [job_id] and failed(app, DEFAULT) == []
    follow = client.get(response.headers["Location"], headers=basic(ADMIN)).get_data(as_text=True)
    assert f"Job {job_id} is back in queue default." in follow
    retry = session.scalars(select(AuditLog).where(AuditLog.action == "job.retry")).one()
    assert (retry.user_id, retry.record_id, retry.details) == (admin, job_id,
                                                               {"queue": "default", "force": False,
                                                                "via": "rq_dashboard"})
    again = client.post(f"/admin/rq/jobs/{job_id}/requeue", headers=basic(ADMIN), data={"token": token})
    assert "done=not_found" in again.headers["Location"]


def test_dashboard_keeps_the_refund_rule(app, client, admin):
    analysis_id = failed_analysis(app)
    job_id = fail_job(app, ANALYSIS, analysis_id, job_id=f"analysis-{analysis_id}")
    page = client.get("/admin/rq/", headers=basic(ADMIN)).get_data(as_text=True)
    token = re.search(r'name="token" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    refused = client.post(f"/admin/rq/jobs/{job_id}/requeue", headers=basic(ADMIN), data={"token": token})
    assert "done=refunded" in refused.headers["Location"] and failed(app, ANALYSIS) == [job_id]
    forced = client.post(f"/admin/rq/jobs/{job_id}/requeue", headers=basic(ADMIN),
                         data={"token": token, "force": "1"})
    assert "done=requeued" in forced.headers["Location"] and queued(app, ANALYSIS) == [job_id]


def test_dashboard_shares_the_login_failure_limits(app, client, admin):
    for _ in range(5):
        assert client.get("/admin/rq/", headers=basic(ADMIN, "wrong password!")).status_code == 401
    limited = client.get("/admin/rq/", headers=basic(ADMIN))  # even the right password, for now
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    api = client.post("/api/v1/auth/login", json={"email": ADMIN, "password": PASSWORD})
    assert api.status_code == 429  # the same account window as the API's login


def test_dashboard_successes_do_not_use_up_the_limits(app, client, admin):
    for _ in range(8):
        assert client.get("/admin/rq/", headers=basic(ADMIN)).status_code == 200


class UnreachableS3(FakeS3):
    def get_paginator(self, name: str) -> Any:
        raise ConnectionError("bucket out of reach")


def test_purge_media_still_purges_the_local_store_when_the_bucket_is_out_of_reach(app, tmp_path):
    local = LocalStorage(tmp_path)
    old = new_key("analysis", "jpg")
    local.put(old, b"old", "image/jpeg")
    os.utime(local.root / old, (time.time() - 10 * DAY,) * 2)
    report = purge_media(FallbackStorage(S3Storage("photos", client=UnreachableS3()), local), app.extensions["db"], 7)
    assert report.unreachable == ["S3Storage(bucket='photos', prefix='')"]
    assert report.files["analysis"] == 1
    with pytest.raises(KeyError):
        local.get(old)


@pytest.mark.parametrize("command", [["whatsapp-unblock"], ["sweep"], ["requeue-failed", "--all"], ["sender"],
                                     ["scheduler"], ["worker", "--burst"]])
def test_a_command_that_needs_the_services_redis_refuses_without_a_redis_url(database_url, command):
    """Started apart from a service on its embedded defaults, it would act on an empty Redis of its own and
    report success: it says why it cannot, and fails."""
    app = create_app(make_settings(database_url, REDIS_URL="", TESTING=False))
    result = app.test_cli_runner().invoke(args=command)
    assert result.exit_code == 1, result.output
    assert "no REDIS_URL" in result.output and "cannot reach" in result.output
    assert "lifted" not in result.output and "queued" not in result.output and "requeued" not in result.output
    app.extensions["db"].engine.dispose()


def test_whatsapp_status_without_a_redis_url_does_not_claim_sends_are_fine(database_url):
    app = create_app(make_settings(database_url, REDIS_URL="", TESTING=False))
    result = app.test_cli_runner().invoke(args=["whatsapp-status"])
    assert result.exit_code == 0 and "sends: unknown here (no REDIS_URL" in result.output
    app.extensions["db"].engine.dispose()


def test_flask_chat_says_in_one_line_when_the_app_cannot_be_reached(runner):
    result = runner.invoke(args=["chat", "--url", "http://127.0.0.1:9"], input="merhaba\n")
    assert result.exit_code == 1
    assert "cannot reach the app at http://127.0.0.1:9" in result.output and "Traceback" not in result.output
