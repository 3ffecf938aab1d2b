"""Runtime settings: the admin API to change them, the per-process cache and its invalidation, and the
pipeline using them for the next job (in-process here; a separate worker process in
`test_runtime_settings_worker.py`)."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, time

import pytest
import requests
import responses
from PIL import Image
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import select

from app import create_app
from models import Analysis, AuditLog
from services import runtime_settings
from services.quota import ISTANBUL
from services.runtime_settings import SPECS, Values
from settings import Settings
from tests import test_analysis_pipeline as pipeline
from tests.admin_helpers import bearer, token_for
from tests.helpers import N8N_URL, make_settings
from tests.test_analysis_pipeline import n8n_result, submit

PROBLEM = "application/problem+json"
mock, farmer = pipeline.mock, pipeline.farmer  # the photo-to-diagnosis fixtures


@pytest.fixture
def admin(app, client) -> dict[str, str]:
    return bearer(token_for(app, client, "admin"))


def by_name(body: dict) -> dict[str, dict]:
    return {item["name"]: item for item in body["items"]}


def test_list_shows_every_setting_with_its_default(client, admin):
    response = client.get("/api/v1/settings", headers=admin)
    assert response.status_code == 200
    items = by_name(response.get_json())
    assert set(items) == set(SPECS)
    assert items["image_max_width"].items() >= {"value": 800, "default": 800, "overridden": False,
                                                "type": "integer", "minimum": 160, "maximum": 4000}.items()
    assert items["n8n_timeout_seconds"]["default"] == 120  # the environment's N8N_TIMEOUT_SECONDS
    assert items["sponsor_message_daily_cap"]["value"] == 10
    assert items["quiet_hours_start"]["type"] == "time"


def test_environment_gives_the_defaults(database_url):
    app = create_app(make_settings(database_url, N8N_TIMEOUT_SECONDS=45))
    with app.app_context():
        assert runtime_settings.current().n8n_timeout_seconds == 45
    app.extensions["db"].engine.dispose()


def test_an_integer_setting_written_with_a_zero_fraction_is_stored_as_an_integer(app, client, admin):
    """JSON Schema counts 566.0 as an integer (before: 400 "must be an integer")."""
    response = client.patch("/api/v1/settings", headers=admin, json={"image_max_upload_kb": 566.0})
    assert response.status_code == 200, response.get_json()
    value = by_name(response.get_json())["image_max_upload_kb"]["value"]
    assert value == 566 and type(value) is int
    with app.app_context():
        assert runtime_settings.current().image_max_upload_kb == 566


def test_patch_changes_audits_and_null_resets(app, client, admin, session):
    response = client.patch("/api/v1/settings", headers=admin,
                            json={"image_max_width": 640, "quiet_hours_start": "22:30", "n8n_timeout_seconds": 30})
    assert response.status_code == 200, response.get_json()
    items = by_name(response.get_json())
    assert (items["image_max_width"]["value"], items["image_max_width"]["overridden"]) == (640, True)
    assert items["image_max_width"]["updated_by"] is not None and items["image_max_width"]["updated_at"]
    assert items["quiet_hours_start"]["value"] == "22:30"
    with app.app_context():
        assert runtime_settings.current().image_max_width == 640
        assert runtime_settings.current().n8n_timeout_seconds == 30
    [row] = session.scalars(select(AuditLog).where(AuditLog.action == "settings.update")).all()
    assert row.details["image_max_width"] == {"before": 800, "after": 640}

    response = client.patch("/api/v1/settings", headers=admin, json={"image_max_width": None})
    assert by_name(response.get_json())["image_max_width"].items() >= {"value": 800, "overridden": False}.items()
    with app.app_context():
        assert runtime_settings.current().image_max_width == 800  # this process sees its own change at once


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"image_max_width": 10}, "image_max_width", "160..4000"),
    ({"image_max_width": "800"}, "image_max_width", "integer"),
    ({"image_max_width": True}, "image_max_width", "integer"),
    ({"image_quality": 99}, "image_quality", "20..95"),
    ({"sponsor_message_daily_cap": 11}, "sponsor_message_daily_cap", "0..10"),
    ({"quiet_hours_end": "24:00"}, "quiet_hours_end", "HH:MM"),
    ({"quiet_hours_end": 8}, "quiet_hours_end", "HH:MM"),
    ({"quiet_hours_end": "٠٨:٠٠"}, "quiet_hours_end", "HH:MM"),  # Arabic-Indic digits
    ({"quiet_hours_end": "08:00\n"}, "quiet_hours_end", "HH:MM"),
    ({"max_upload": 1}, "max_upload", "not a runtime setting"),
])
def test_bad_values_are_field_errors_and_change_nothing(app, client, admin, body, field, message):
    response = client.patch("/api/v1/settings", headers=admin, json={**body, "image_target_kb": 90})
    assert response.status_code == 400 and response.mimetype == PROBLEM
    [error] = [e for e in response.get_json()["errors"] if e["field"] == field]
    assert message in error["message"]
    with app.app_context():
        assert runtime_settings.current().image_target_kb == 100  # the valid part was not applied either


def test_an_empty_change_is_refused(client, admin):
    response = client.patch("/api/v1/settings", headers=admin, json={})
    assert response.status_code == 400 and response.get_json()["errors"][0]["field"] == "(body)"
    assert client.patch("/api/v1/settings", headers=admin, json=[1]).status_code == 400


@pytest.mark.parametrize("role", ["support", "sponsor"])
def test_only_admins_read_or_change_runtime_settings(app, client, role):
    headers = bearer(token_for(app, client, role))
    assert client.get("/api/v1/settings", headers=headers).status_code == 403
    assert client.patch("/api/v1/settings", headers=headers, json={"image_quality": 60}).status_code == 403
    assert client.get("/api/v1/settings").status_code == 401


def test_a_change_reaches_another_process_within_a_second(app, client, admin, database_url, monkeypatch):
    """Another web process or worker: its own app and cache, the same database and Redis."""
    other = create_app(make_settings(database_url))
    other.extensions["redis"] = app.extensions["redis"]  # fakeredis is per app; real Redis is shared anyway
    clock = [1000.0]
    monkeypatch.setattr("services.runtime_settings.time.monotonic", lambda: clock[0])
    with other.app_context():
        assert runtime_settings.current().image_quality == 70
    client.patch("/api/v1/settings", headers=admin, json={"image_quality": 55})
    with other.app_context():
        assert runtime_settings.current().image_quality == 70  # cached: checked less than a second ago
        clock[0] += runtime_settings.CHECK_SECONDS
        assert runtime_settings.current().image_quality == 55  # the version moved: reloaded
    other.extensions["db"].engine.dispose()


def test_without_redis_a_change_arrives_by_the_fallback_reload(app, client, admin, database_url, monkeypatch):
    other = create_app(make_settings(database_url))

    class DownRedis:
        def get(self, key: str) -> None:
            raise RedisConnectionError("down")

    other.extensions["redis"] = DownRedis()
    clock = [1000.0]
    monkeypatch.setattr("services.runtime_settings.time.monotonic", lambda: clock[0])
    with other.app_context():
        assert runtime_settings.current().image_quality == 70
        client.patch("/api/v1/settings", headers=admin, json={"image_quality": 50})
        clock[0] += runtime_settings.CHECK_SECONDS + 1
        assert runtime_settings.current().image_quality == 70  # no version to compare: waits for the fallback
        clock[0] += runtime_settings.FALLBACK_SECONDS
        assert runtime_settings.current().image_quality == 50
    other.extensions["db"].engine.dispose()


def test_a_stored_value_out_of_bounds_is_ignored(app, session):
    from models import RuntimeSetting

    with app.extensions["db"].session() as s, s.begin():
        s.add(RuntimeSetting(name="image_max_width", value=99999))
    with app.app_context():
        assert runtime_settings.current().image_max_width == 800


@pytest.mark.parametrize(("start", "end", "now_local", "until_local"), [
    ("21:00", "08:00", "23:30", "23 08:00"),
    ("21:00", "08:00", "03:00", "22 08:00"),
    ("21:00", "08:00", "12:00", None),
    ("21:00", "08:00", "08:00", None),
    ("21:00", "08:00", "21:00", "23 08:00"),
    ("12:00", "14:00", "13:00", "22 14:00"),
    ("12:00", "14:00", "14:30", None),
    ("00:00", "00:00", "03:00", None),  # equal: no quiet hours
])
def test_quiet_hours_are_istanbul_times(start, end, now_local, until_local):
    defaults = {name: spec.default(Settings()) for name, spec in SPECS.items()}
    values = Values(**{**defaults, "quiet_hours_start": start, "quiet_hours_end": end})
    now = datetime.combine(date(2026, 11, 22), time.fromisoformat(now_local), tzinfo=ISTANBUL).astimezone(UTC)
    until = values.quiet_until(now)
    if until_local is None:
        assert until is None
    else:
        day, hhmm = until_local.split()
        expected = datetime.combine(date(2026, 11, int(day)), time.fromisoformat(hhmm), tzinfo=ISTANBUL)
        assert until == expected and until.tzinfo == UTC


def test_the_pipeline_uses_the_current_image_and_timeout_settings(app, client, admin, farmer, mock, session,
                                                                   monkeypatch):
    seen_timeouts: list[object] = []
    original_post = requests.Session.post  # the class services.n8n posts with

    def spy(self, url, *args, **kwargs):
        if url == N8N_URL:
            seen_timeouts.append(kwargs.get("timeout"))
        return original_post(self, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "post", spy)
    mock.add_callback(responses.POST, N8N_URL, callback=lambda req: (
        200, {}, json.dumps(n8n_result("result_full_tr.json", json.loads(req.body)["analysis_id"]))))
    response = client.patch("/api/v1/settings", headers=admin,
                            json={"image_max_width": 400, "image_max_height": 300, "n8n_timeout_seconds": 33})
    assert response.status_code == 200
    submit(farmer)
    analysis = session.scalar(select(Analysis))
    small = Image.open(io.BytesIO(app.extensions["storage"].get(analysis.image_key)))
    assert small.size == (400, 300)  # the leaf photo is 1600x1200
    assert seen_timeouts and seen_timeouts[-1][1] == 33  # type: ignore[index]
