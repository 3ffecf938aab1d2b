"""Support and admin operations: analyses, failed jobs, subscriptions and ledger, tiers, staff, audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rq import SimpleWorker
from rq.registry import FailedJobRegistry
from sqlalchemy import func, select

from models import Analysis, AuditLog, Farmer, StaffUser, Subscription, UsageLedger, utcnow
from services import quota
from services.queue import ANALYSIS, DEFAULT, QUEUE_NAMES, get_queue
from tests.admin_helpers import bearer, make_sponsor, token_for

PROBLEM = "application/problem+json"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
PHONE = "+905321234567"


def boom(value: Any) -> None:
    """A job that always fails (RQ imports it by name in the worker)."""
    raise RuntimeError(f"kaboom {value}\nsecond line: the summary")


def add_farmer(app, phone: str = PHONE) -> int:
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)
        farmer = Farmer(phone=phone, profile_name="Mehmet", created_at=T0, updated_at=T0)
        s.add(farmer)
        s.flush()
        return farmer.id


def add_analysis(app, farmer_id: int, **fields: Any) -> int:
    row = {"status": "completed", "crop": "Domates", "created_at": T0, "received_at": T0, **fields}
    with app.extensions["db"].session() as s, s.begin():
        a = Analysis(farmer_id=farmer_id, **row)
        s.add(a)
        s.flush()
        return a.id


def fail_job(app, queue: str, job_id: str, value: Any = 1) -> None:
    redis = app.extensions["redis"]
    get_queue(queue, redis).enqueue("tests.test_admin_operations.boom", value, job_id=job_id)
    with app.app_context():
        SimpleWorker([get_queue(queue, redis)], connection=redis).work(burst=True)
    assert job_id in FailedJobRegistry(queue=get_queue(queue, redis))


@pytest.fixture
def tokens(app, client) -> dict[str, dict[str, str]]:
    return {role: bearer(token_for(app, client, role)) for role in ("admin", "sponsor", "support")}


# --- role matrix ---------------------------------------------------------------------------------


def test_each_operations_route_admits_only_the_roles_it_should(app, client, tokens):
    farmer_id = add_farmer(app)
    analysis_id = add_analysis(app, farmer_id)
    support_ok = {None: 401, "sponsor": 403, "support": 200, "admin": 200}
    admin_only = {None: 401, "sponsor": 403, "support": 403, "admin": 200}
    routes: list[tuple[str, str, dict[str, Any] | None, dict[str | None, int]]] = [
        ("GET", "/api/v1/analyses", None, support_ok),
        ("GET", f"/api/v1/analyses/{analysis_id}", None, support_ok),
        ("GET", "/api/v1/jobs/failed", None, support_ok),
        ("GET", f"/api/v1/farmers/{farmer_id}/subscription", None, support_ok),
        ("GET", f"/api/v1/farmers/{farmer_id}/ledger", None, support_ok),
        ("GET", "/api/v1/tiers", None, admin_only),
        ("GET", "/api/v1/staff", None, admin_only),
        ("GET", "/api/v1/audit", None, admin_only),
        ("PATCH", "/api/v1/tiers/S", {"active": True}, admin_only),
        ("GET", "/api/v1/settings", None, admin_only),
        ("PATCH", "/api/v1/settings", {"image_quality": 65}, admin_only),
    ]
    for method, path, body, expected in routes:
        for role, status in expected.items():
            response = client.open(path, method=method, json=body, headers=tokens[role] if role else {})
            assert response.status_code == status, (method, path, role, response.get_json())
            if status >= 400:
                assert response.mimetype == PROBLEM

    # state-changing routes: everyone but the admin is refused before anything happens
    changes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", f"/api/v1/farmers/{farmer_id}/subscriptions", {"tier_code": "S", "days": 30}),
        ("POST", "/api/v1/staff", {"email": "x@ziraai.test", "password": "long enough pw", "role": "support"}),
        ("POST", "/api/v1/jobs/failed/nope/retry", None),
    ]
    for method, path, body in changes:
        for role, status in {None: 401, "sponsor": 403}.items():
            response = client.open(path, method=method, json=body, headers=tokens[role] if role else {})
            assert response.status_code == status, (path, role)
    assert client.post(f"/api/v1/farmers/{farmer_id}/subscriptions", json={"tier_code": "S", "days": 30},
                       headers=tokens["support"]).status_code == 403
    assert client.post("/api/v1/staff", json={"email": "x@ziraai.test", "password": "long enough pw",
                                              "role": "support"}, headers=tokens["support"]).status_code == 403
    assert client.post("/api/v1/jobs/failed/nope/retry", headers=tokens["support"]).status_code == 404
    assert client.post(f"/api/v1/farmers/{farmer_id}/subscriptions", json={"tier_code": "S", "days": 30},
                       headers=tokens["admin"]).status_code == 201
    assert client.post("/api/v1/staff", json={"email": "x@ziraai.test", "password": "long enough pw",
                                              "role": "support"}, headers=tokens["admin"]).status_code == 201


# --- analyses ------------------------------------------------------------------------------------


def test_analyses_filters_masking_and_detail(app, client, tokens):
    farmer_id = add_farmer(app)
    other = add_farmer(app, "+905559876543")
    a = add_analysis(app, farmer_id, result={"raw": True, "health_score": 7}, health_score=7)
    b = add_analysis(app, farmer_id, status="failed", crop="Biber", failure_reason="n8n timeout",
                     created_at=T0 + timedelta(days=1), failed_at=T0 + timedelta(days=1))
    c = add_analysis(app, other, crop="domates sırık", created_at=T0 + timedelta(days=2))

    def ids(headers: dict[str, str], **params: Any) -> list[int]:
        response = client.get("/api/v1/analyses", query_string=params, headers=headers)
        assert response.status_code == 200, response.get_json()
        return [item["id"] for item in response.get_json()["items"]]

    support = tokens["support"]
    assert ids(support) == [c, b, a]
    assert ids(support, status="failed") == [b]
    assert ids(support, farmer_id=farmer_id) == [b, a]
    assert ids(support, since="2026-11-02T00:00:00Z") == [c, b]
    assert ids(support, until="2026-11-02T00:00:00") == [a]
    assert ids(support, crop="DOMATES") == [c, a]

    listed = client.get("/api/v1/analyses", query_string={"farmer_id": farmer_id}, headers=support).get_json()
    assert {item["farmer_phone"] for item in listed["items"]} == {"+90 532 *** ** 67"}
    admin_listed = client.get("/api/v1/analyses", query_string={"farmer_id": farmer_id},
                              headers=tokens["admin"]).get_json()
    assert {item["farmer_phone"] for item in admin_listed["items"]} == {PHONE}

    detail = client.get(f"/api/v1/analyses/{a}", headers=support).get_json()
    assert detail["result"] == {"raw": True, "health_score": 7}
    assert detail["farmer_phone"] == "+90 532 *** ** 67"
    assert detail["received_at"].startswith("2026-11-01T09:00")
    failed = client.get(f"/api/v1/analyses/{b}", headers=support).get_json()
    assert failed["failure_reason"] == "n8n timeout" and failed["failed_at"]
    assert client.get("/api/v1/analyses/999999", headers=support).status_code == 404
    assert client.get(f"/api/v1/analyses/{2**70}", headers=support).status_code == 404

    with app.extensions["db"].reader() as s:
        actions = s.scalars(select(AuditLog.action).where(AuditLog.record_id == str(a))).all()
    assert "analysis.read" in actions


# --- failed jobs ---------------------------------------------------------------------------------


def test_failed_jobs_listing_and_retry(app, client, tokens):
    fail_job(app, DEFAULT, "job-one", 41)
    fail_job(app, DEFAULT, "job-two", 42)
    support = tokens["support"]
    body = client.get("/api/v1/jobs/failed", headers=support).get_json()
    assert body["total"] == 2
    job = {j["id"]: j for j in body["items"]}["job-one"]
    assert job["queue"] == DEFAULT
    assert job["function"] == "tests.test_admin_operations.boom"
    assert job["args"] == ["41"]
    assert job["exc_summary"] == "second line: the summary"  # the last line of the traceback
    assert job["ended_at"]

    page = client.get("/api/v1/jobs/failed", query_string={"per_page": 1, "page": 2}, headers=support).get_json()
    assert page["total"] == 2 and len(page["items"]) == 1

    response = client.post("/api/v1/jobs/failed/job-one/retry", headers=support)
    assert response.status_code == 200, response.get_json()
    redis = app.extensions["redis"]
    assert "job-one" in get_queue(DEFAULT, redis).job_ids
    assert "job-one" not in FailedJobRegistry(queue=get_queue(DEFAULT, redis))
    assert client.post("/api/v1/jobs/failed/job-one/retry", headers=support).status_code == 404
    assert client.post("/api/v1/jobs/failed/bad.id'--/retry", headers=support).status_code == 404
    assert client.post("/api/v1/jobs/failed/job-two/retry", query_string={"force": "yes"},
                       headers=support).status_code == 400
    with app.extensions["db"].reader() as s:
        assert s.scalars(select(AuditLog).where(AuditLog.action == "job.retry",
                                                AuditLog.record_id == "job-one")).first() is not None


def test_retry_of_a_failed_analysis_is_explained(app, client, tokens):
    farmer_id = add_farmer(app)
    failed = add_analysis(app, farmer_id, status="failed", failure_reason="n8n down")
    stuck = add_analysis(app, farmer_id, status="processing")
    fail_job(app, ANALYSIS, f"analysis-{failed}", failed)
    fail_job(app, ANALYSIS, f"analysis-{stuck}", stuck)

    response = client.post(f"/api/v1/jobs/failed/analysis-{failed}/retry", headers=tokens["support"])
    assert response.status_code == 409 and response.mimetype == PROBLEM
    assert "refunded" in response.get_json()["detail"]
    assert client.post(f"/api/v1/jobs/failed/analysis-{failed}/retry", query_string={"force": "true"},
                       headers=tokens["support"]).status_code == 403
    assert client.post(f"/api/v1/jobs/failed/analysis-{failed}/retry", query_string={"force": "true"},
                       headers=tokens["admin"]).status_code == 200
    assert client.post(f"/api/v1/jobs/failed/analysis-{stuck}/retry", headers=tokens["support"]).status_code == 200
    assert set(get_queue(ANALYSIS, app.extensions["redis"]).job_ids) == {f"analysis-{failed}", f"analysis-{stuck}"}


# --- subscriptions and ledger ---------------------------------------------------------------------


def test_grant_subscription_shows_up_and_queues_behind_a_paid_one(app, client, tokens):
    farmer_id = add_farmer(app)
    admin = tokens["admin"]
    empty = client.get(f"/api/v1/farmers/{farmer_id}/subscription", headers=tokens["support"]).get_json()
    assert empty == {"farmer_id": farmer_id, "current": None, "queued": [], "quota": None}

    with app.extensions["db"].session() as s, s.begin():
        quota.start_trial(s, farmer_id, utcnow())
    first = client.post(f"/api/v1/farmers/{farmer_id}/subscriptions", json={"tier_code": "m", "days": 30},
                        headers=admin)
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["status"] == "active"  # a Trial is replaced, like by a code
    second = client.post(f"/api/v1/farmers/{farmer_id}/subscriptions", json={"tier_code": "L", "days": 10},
                         headers=admin)
    assert second.status_code == 201 and second.get_json()["status"] == "queued"
    assert second.get_json()["starts_at"] == first.get_json()["ends_at"]
    assert client.post(f"/api/v1/farmers/{farmer_id}/subscriptions", json={"tier_code": "XL", "days": 10},
                       headers=admin).status_code == 409

    body = client.get(f"/api/v1/farmers/{farmer_id}/subscription", headers=tokens["support"]).get_json()
    assert body["current"]["tier_code"] == "M"
    assert [q["tier_code"] for q in body["queued"]] == ["L"]
    assert body["quota"]["daily_limit"] == 20 and body["quota"]["daily_used"] == 0

    for bad in ({"tier_code": "TRIAL", "days": 5}, {"tier_code": "ZZ", "days": 5}, {"tier_code": "S", "days": 0},
                {"tier_code": "S", "days": "5"}, {"tier_code": 5, "days": 5}, {"tier_code": "S"}):
        response = client.post(f"/api/v1/farmers/{farmer_id}/subscriptions", json=bad, headers=admin)
        assert response.status_code == 400, bad
        assert response.get_json()["errors"], bad
    assert client.post("/api/v1/farmers/999999/subscriptions", json={"tier_code": "S", "days": 5},
                       headers=admin).status_code == 404


def test_ledger_lists_charges_and_refunds(app, client, tokens):
    farmer_id = add_farmer(app)
    now = utcnow()
    with app.extensions["db"].session() as s, s.begin():
        quota.start_trial(s, farmer_id, now)
        charged = quota.charge(s, farmer_id, now)
        assert charged.ok and charged.ledger_id
        quota.refund(s, charged.ledger_id, now)
    body = client.get(f"/api/v1/farmers/{farmer_id}/ledger", headers=tokens["support"]).get_json()
    assert body["total"] == 2
    assert sorted(row["kind"] for row in body["items"]) == ["charge", "refund"]
    with app.extensions["db"].reader() as s:
        assert s.scalar(select(UsageLedger.id).where(UsageLedger.kind == "refund")) in [r["id"] for r in body["items"]]
    assert client.get("/api/v1/farmers/999999/ledger", headers=tokens["support"]).status_code == 404


# --- tiers ---------------------------------------------------------------------------------------


def test_tier_edit_and_validation(app, client, tokens):
    add_farmer(app)  # seeds the tiers
    admin = tokens["admin"]
    response = client.patch("/api/v1/tiers/s", json={"daily_limit": 7, "monthly_limit": 70, "price_try": "129.5",
                                                     "active": False}, headers=admin)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() | {} == {**response.get_json(), "code": "S", "daily_limit": 7, "monthly_limit": 70,
                                        "price_try": "129.50", "active": False}
    tiers = {t["code"]: t for t in client.get("/api/v1/tiers", headers=admin).get_json()["items"]}
    assert tiers["S"]["daily_limit"] == 7 and tiers["S"]["active"] is False

    bad_bodies = [
        ({"daily_limit": -1}, "daily_limit"),
        ({"daily_limit": "5"}, "daily_limit"),
        ({"daily_limit": True}, "daily_limit"),
        ({"monthly_limit": 1.5}, "monthly_limit"),
        ({"price_try": "abc"}, "price_try"),
        ({"price_try": -3}, "price_try"),
        ({"price_try": "1.234"}, "price_try"),
        ({"price_try": "NaN"}, "price_try"),
        *(({"price_try": text}, "price_try") for text in ("-0", "١٢٣", "1e2", " 5 ", "5_000", "0E-10", "+5")),
        ({"active": "yes"}, "active"),
        ({"name": "x"}, "name"),
        ({"daily_limit": 1000}, "daily_limit"),  # more than the monthly limit
        ({}, "body"),
    ]
    for body, field in bad_bodies:
        response = client.patch("/api/v1/tiers/S", json=body, headers=admin)
        assert response.status_code == 400, body
        assert response.mimetype == PROBLEM
        assert field in [e["field"] for e in response.get_json()["errors"]], body
    assert client.patch("/api/v1/tiers/S", data="not json", headers=admin).status_code == 400
    assert client.patch("/api/v1/tiers/NOPE", json={"active": True}, headers=admin).status_code == 404
    assert client.patch("/api/v1/tiers/S';--", json={"active": True}, headers=admin).status_code == 404
    with app.extensions["db"].reader() as s:
        row = s.scalars(select(AuditLog).where(AuditLog.action == "tier.update")).one()
    assert row.details["after"]["daily_limit"] == 7


# --- staff ---------------------------------------------------------------------------------------


def test_unknown_fields_of_a_new_staff_user_or_a_grant_are_400s_naming_them(app, client, tokens, session):
    admin = tokens["admin"]
    farmer_id = add_farmer(app)
    staff = client.post("/api/v1/staff", json={"email": "x@ziraai.test", "password": "long enough pw",
                                               "role": "support", "active": False}, headers=admin)
    grant = client.post(f"/api/v1/farmers/{farmer_id}/subscriptions", json={"tier_code": "M", "day": 365},
                        headers=admin)
    for response, field in ((staff, "active"), (grant, "day")):
        assert response.status_code == 400 and response.mimetype == PROBLEM
        assert field in [e["field"] for e in response.get_json()["errors"]]
    assert session.scalars(select(StaffUser).where(StaffUser.email == "x@ziraai.test")).first() is None
    assert session.scalar(select(func.count()).select_from(Subscription)) == 0


def test_staff_creation_never_returns_hashes(app, client, tokens):
    admin = tokens["admin"]
    sponsor_id = make_sponsor(app, "Tohum A.Ş.")
    response = client.post("/api/v1/staff", json={"email": "Ayse@ZiraAI.test", "password": "a long password",
                                                 "role": "sponsor", "sponsor_id": sponsor_id}, headers=admin)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["email"] == "ayse@ziraai.test" and created["sponsor_id"] == sponsor_id
    listed = client.get("/api/v1/staff", headers=admin)
    with app.extensions["db"].reader() as s:
        hashes = s.scalars(select(StaffUser.password_hash)).all()
    for text in (response.get_data(as_text=True), listed.get_data(as_text=True)):
        assert "password" not in text and "scrypt" not in text and "pbkdf2" not in text
        assert not any(h in text for h in hashes)
    assert listed.get_json()["total"] == 4
    assert client.get("/api/v1/staff", query_string={"role": "sponsor"}, headers=admin).get_json()["total"] == 2
    assert client.post("/api/v1/auth/login", json={"email": "ayse@ziraai.test",
                                                   "password": "a long password"}).status_code == 200

    assert client.post("/api/v1/staff", json={"email": "ayse@ziraai.test", "password": "a long password",
                                              "role": "support"}, headers=admin).status_code == 409
    for body, field in [
        ({"email": "x@ziraai.test", "password": "short", "role": "support"}, "password"),
        ({"email": "not-an-email", "password": "a long password", "role": "support"}, "email"),
        ({"email": "a@b", "password": "a long password", "role": "support"}, "email"),
        ({"email": "ı@ı.ı", "password": "a long password", "role": "support"}, "email"),
        ({"email": "y@ziraai.test", "password": "a long password", "role": "root"}, "role"),
        ({"email": "y@ziraai.test", "password": "a long password", "role": "sponsor"}, "sponsor_id"),
        ({"email": "y@ziraai.test", "password": "a long password", "role": "sponsor", "sponsor_id": 99999},
         "sponsor_id"),
        ({"email": "y@ziraai.test", "password": "a long password", "role": "support", "sponsor_id": "1"},
         "sponsor_id"),
        ({"email": 5, "password": "a long password", "role": "support"}, "email"),
    ]:
        response = client.post("/api/v1/staff", json=body, headers=admin)
        assert response.status_code == 400, body
        assert field in [e["field"] for e in response.get_json()["errors"]], (body, response.get_json())


# --- audit log -----------------------------------------------------------------------------------


def test_audit_log_admin_only_newest_first_and_filtered(app, client, tokens):
    farmer_id = add_farmer(app)
    client.get(f"/api/v1/farmers/{farmer_id}/subscription", headers=tokens["support"])
    client.get(f"/api/v1/farmers/{farmer_id}/ledger", headers=tokens["support"])
    assert client.get("/api/v1/audit", headers=tokens["support"]).status_code == 403
    assert client.get("/api/v1/audit", headers=tokens["sponsor"]).status_code == 403
    body = client.get("/api/v1/audit", headers=tokens["admin"]).get_json()
    ats = [row["at"] for row in body["items"]]
    assert ats == sorted(ats, reverse=True)
    assert body["items"][0]["action"] == "farmer.ledger.read"
    with app.extensions["db"].reader() as s:
        support_id = s.scalar(select(StaffUser.id).where(StaffUser.role == "support"))
    mine = client.get("/api/v1/audit", query_string={"user_id": support_id}, headers=tokens["admin"]).get_json()
    assert {row["user_id"] for row in mine["items"]} == {support_id}
    assert {row["action"] for row in mine["items"]} >= {"farmer.subscription.read", "farmer.ledger.read"}
    only = client.get("/api/v1/audit", query_string={"action": "farmer.ledger.read"},
                      headers=tokens["admin"]).get_json()
    assert only["total"] == 1 and only["items"][0]["record_id"] == str(farmer_id)


# --- hostile query strings -----------------------------------------------------------------------


HOSTILE = ["' OR 1=1 --", "1; DROP TABLE analyses", "%", "_", "\\", "1e3", "-1", "99999999999999999999999",
           "true", "[]", "\x00", "ş" * 300]


@pytest.mark.parametrize("path,params", [
    ("/api/v1/analyses", ("status", "farmer_id", "since", "until", "crop", "page", "per_page")),
    ("/api/v1/jobs/failed", ("page", "per_page")),
    ("/api/v1/farmers/{farmer}/ledger", ("page", "per_page")),
    ("/api/v1/tiers", ("page", "per_page")),
    ("/api/v1/staff", ("role", "page", "per_page")),
    ("/api/v1/audit", ("user_id", "action", "page", "per_page")),
])
def test_hostile_filters_are_400_or_empty(app, client, tokens, path, params):
    farmer_id = add_farmer(app)
    path = path.format(farmer=farmer_id)
    for name in params:
        for value in HOSTILE:
            response = client.get(path, query_string={name: value}, headers=tokens["admin"])
            assert response.status_code in (200, 400), (name, value, response.status_code)
            if response.status_code == 400:
                assert response.mimetype == PROBLEM and response.get_json()["errors"]
            elif name not in ("page", "per_page"):
                assert response.get_json()["total"] in (0, 1, 2, 3, 4, 5), (name, value)
    capped = client.get(path, query_string={"per_page": 100000}, headers=tokens["admin"])
    assert capped.status_code == 200 and capped.get_json()["per_page"] == 100
    for bad_path in ("/api/v1/farmers/abc/subscription", "/api/v1/analyses/1%20OR%201=1",
                     f"/api/v1/farmers/{2**70}/subscription", f"/api/v1/farmers/{2**70}/ledger"):
        assert client.get(bad_path, headers=tokens["admin"]).status_code == 404


def test_crop_filter_is_literal(app, client, tokens):
    farmer_id = add_farmer(app)
    add_analysis(app, farmer_id, crop="Domates")
    for value in ("%", "_", "' OR '1'='1"):
        body = client.get("/api/v1/analyses", query_string={"crop": value}, headers=tokens["support"]).get_json()
        assert body["total"] == 0, value
    assert set(QUEUE_NAMES) >= {ANALYSIS, DEFAULT}
    with app.extensions["db"].reader() as s:
        assert s.scalar(select(Subscription.id)) is None


def test_a_per_page_of_any_length_is_capped_and_a_huge_page_says_its_bound(app, client, tokens):
    for per_page in ("9" * 19, "9" * 400):
        capped = client.get("/api/v1/tiers", query_string={"per_page": per_page}, headers=tokens["admin"])
        assert capped.status_code == 200 and capped.get_json()["per_page"] == 100, per_page
    far = client.get("/api/v1/tiers", query_string={"page": "9" * 20}, headers=tokens["admin"])
    assert far.status_code == 400 and far.get_json()["errors"] == [
        {"field": "page", "message": "must be at most 1000000"}]
    for value in ("--5", "-", "+5", "5-", "٥", "9" * 4001):
        refused = client.get("/api/v1/tiers", query_string={"per_page": value}, headers=tokens["admin"])
        assert refused.status_code == 400 and refused.mimetype == PROBLEM, value
        assert refused.get_json()["errors"] == [{"field": "per_page", "message": "must be an integer"}], value


def test_the_error_code_filter_is_bounded_as_the_document_says(app, client, tokens):
    document = client.get("/api/v1/openapi.json").get_json()
    params = document["paths"]["/api/v1/messages"]["get"]["parameters"]
    schema = next(p["schema"] for p in params if p["name"] == "error_code")
    assert schema["maximum"] == 2**31 - 1
    over = client.get("/api/v1/messages", query_string={"error_code": 2**31}, headers=tokens["support"])
    assert over.status_code == 400 and over.get_json()["errors"][0]["field"] == "error_code"
    assert client.get("/api/v1/messages", query_string={"error_code": 2**31 - 1},
                      headers=tokens["support"]).status_code == 200
