"""Purchases are money: a sponsor user files a purchase request, only an admin records a purchase (by
approving a request, or directly). And what a sponsor sees of an analysis follows the tier of the code
that paid for it, so a package bought later reveals nothing more of earlier farmers."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import responses
from sqlalchemy import func, select, update

from models import (
    Analysis,
    AuditLog,
    PurchaseRequest,
    SponsorCode,
    SponsorPurchase,
    StaffUser,
    Subscription,
    Tier,
    utcnow,
)
from services import sponsorship
from tests import test_admin_sponsors as sponsors_tests
from tests.admin_helpers import make_sponsor
from tests.chat import Farmer as ChatFarmer
from tests.chat import GraphStub
from tests.test_admin_sponsors import PROBLEM, RESULT, file_request

tiers, world = sponsors_tests.tiers, sponsors_tests.world  # fixtures: tiers seeded, sponsors A/B and tokens
REQUEST = {"tier": "L", "quantity": 25, "code_valid_days": 60, "subscription_days": 45,
           "note": "Antalya bayileri için, havale yapıldı"}


def file(client, world, body: dict[str, Any] | None = None, sponsor: str = "a") -> Any:
    return client.post(f"/api/v1/sponsors/{world[sponsor]}/purchase-requests", headers=world[f"sponsor_{sponsor}"],
                       json=REQUEST if body is None else body)


def decide(client, world, request_id: int, action: str, body: dict[str, Any] | None = None,
           role: str = "admin") -> Any:
    return client.post(f"/api/v1/purchase-requests/{request_id}/{action}", headers=world[role], json=body)


def counts(session) -> tuple[int, int]:
    """(purchases, codes) in the database."""
    return (session.scalar(select(func.count()).select_from(SponsorPurchase)) or 0,
            session.scalar(select(func.count()).select_from(SponsorCode)) or 0)


# --- visibility follows the code that paid for the analysis --------------------------


def test_a_sponsor_sold_xl_after_a_farmer_redeemed_its_m_code_still_sees_that_analysis_without_name_or_phone(
        app, client, world, session):
    a = world["a"]
    m_purchase = client.post(f"/api/v1/sponsors/{a}/purchases", headers=world["admin"],
                             json={"tier": "M", "quantity": 1})
    assert m_purchase.status_code == 201, m_purchase.get_json()
    [m_code] = m_purchase.get_json()["codes"]

    # The farmer redeems A's M code and submits a photo, through the real webhook and conversation.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        farmer = ChatFarmer(app, GraphStub(mock), phone="905321234567", name="Mehmet Yılmaz",
                            queues=("inbound",))
        farmer.onboard()
        assert "Kod kabul edildi" in farmer.says(m_code)[0]
        farmer.photo("domates yaprakları sararıyor")
        farmer.taps("Geç")
        farmer.taps("Gönder")
    analysis = session.scalars(select(Analysis)).one()
    assert analysis.sponsor_id == a and analysis.subscription_id is not None
    with app.extensions["db"].session() as s, s.begin():  # the pipeline's part, which has tests of its own
        s.execute(update(Analysis).where(Analysis.id == analysis.id).values(
            status="completed", completed_at=utcnow(), health_score=4, primary_concern="Erken yanıklık",
            diseases=[{"type": "Alternaria solani"}], pests=[], result=RESULT))

    # Later an admin sells A an XL package.
    xl_purchase = client.post(f"/api/v1/sponsors/{a}/purchases", headers=world["admin"],
                              json={"tier": "XL", "quantity": 10})
    assert xl_purchase.status_code == 201
    assert client.get(f"/api/v1/sponsors/{a}", headers=world["admin"]).get_json()["tiers"] == ["M", "XL"]

    listing = client.get(f"/api/v1/sponsors/{a}/analyses", headers=world["sponsor_a"])
    detail = client.get(f"/api/v1/sponsors/{a}/analyses/{analysis.id}", headers=world["sponsor_a"])

    assert listing.status_code == 200 and detail.status_code == 200
    [row] = listing.get_json()["items"]
    assert row["id"] == analysis.id and row["tier"] == detail.get_json()["tier"] == "M"
    assert (row["crop"], row["health_score"], row["main_concern"]) == ("domates", 4, "Erken yanıklık")
    for view in (row, detail.get_json()):
        assert not {"farmer_name", "farmer_phone_masked", "farmer_phone", "report", "recommendations"} & set(view)
    body = listing.get_data(as_text=True) + detail.get_data(as_text=True)
    assert "Mehmet" not in body and "Yılmaz" not in body and "1234567" not in body and "+90 532" not in body
    message = client.post(f"/api/v1/sponsors/{a}/analyses/{analysis.id}/message", headers=world["sponsor_a"],
                          json={"text": "Merhaba"})
    assert message.status_code == 403 and message.mimetype == PROBLEM


# --- filing, approving, rejecting ------------------------------------------------------------------------


def test_a_request_creates_nothing_until_an_admin_approves_it_then_exactly_that_many_codes_of_that_tier(
        app, client, world, session):
    a = world["a"]
    filed = file(client, world)
    assert filed.status_code == 201, filed.get_json()
    request = filed.get_json()
    assert request | {"id": 0, "created_at": ""} == {
        "id": 0, "sponsor_id": a, "tier": "L", "quantity": 25, "code_valid_days": 60, "subscription_days": 45,
        "note": REQUEST["note"], "status": "pending", "created_at": "", "decided_at": None, "rejection_reason": None,
        "purchase_id": None}
    assert counts(session) == (0, 0)
    own = client.get(f"/api/v1/sponsors/{a}/purchase-requests", headers=world["sponsor_a"]).get_json()
    assert [(r["id"], r["status"]) for r in own["items"]] == [(request["id"], "pending")]

    approved = decide(client, world, request["id"], "approve")

    assert approved.status_code == 200, approved.get_json()
    assert approved.get_json()["status"] == "approved" and approved.get_json()["decided_at"] is not None
    purchase = session.get(SponsorPurchase, approved.get_json()["purchase_id"])
    assert (purchase.sponsor_id, purchase.quantity, purchase.code_valid_days, purchase.subscription_days) == (
        a, 25, 60, 45)
    assert session.get(Tier, purchase.tier_id).code == "L"
    codes = session.scalars(select(SponsorCode)).all()
    assert len(codes) == len({c.code for c in codes}) == 25
    assert {(c.purchase_id, c.sponsor_id, c.tier_id, c.status) for c in codes} == {
        (purchase.id, a, purchase.tier_id, "unused")}
    assert all(abs(c.expires_at - (purchase.created_at + timedelta(days=60))) < timedelta(seconds=1) for c in codes)
    seen = client.get(f"/api/v1/sponsors/{a}/purchase-requests/{request['id']}", headers=world["sponsor_a"])
    assert (seen.get_json()["status"], seen.get_json()["purchase_id"]) == ("approved", purchase.id)
    listed = client.get(f"/api/v1/sponsors/{a}/codes", headers=world["sponsor_a"]).get_json()
    assert listed["total"] == 25 and {c["tier"] for c in listed["items"]} == {"L"}


def test_a_rejection_needs_a_reason_and_creates_nothing(app, client, world, session):
    request_id = file(client, world).get_json()["id"]
    for body in (None, {}, {"reason": ""}, {"reason": "   "}, {"reason": 5}, {"reason": "x" * 501},
                 {"reason": "a\x00b"}, {"reason": "ok", "refund": True}):
        refused = decide(client, world, request_id, "reject", body)
        assert refused.status_code == 400 and refused.mimetype == PROBLEM, (body, refused.get_json())
    assert session.get(PurchaseRequest, request_id).status == "pending"

    rejected = decide(client, world, request_id, "reject", {"reason": "  Ödeme ulaşmadı  "})

    assert rejected.status_code == 200
    assert (rejected.get_json()["status"], rejected.get_json()["rejection_reason"]) == ("rejected", "Ödeme ulaşmadı")
    assert rejected.get_json()["purchase_id"] is None and counts(session) == (0, 0)
    seen = client.get(f"/api/v1/sponsors/{world['a']}/purchase-requests/{request_id}", headers=world["sponsor_a"])
    assert (seen.get_json()["status"], seen.get_json()["rejection_reason"]) == ("rejected", "Ödeme ulaşmadı")
    late_approval = decide(client, world, request_id, "approve")
    assert late_approval.status_code == 409 and late_approval.mimetype == PROBLEM
    assert "rejected" in late_approval.get_json()["detail"]
    assert decide(client, world, request_id, "reject", {"reason": "again"}).status_code == 409
    assert counts(session) == (0, 0)


def test_approving_twice_is_a_conflict_and_creates_the_codes_once(app, client, world, session):
    request_id = file(client, world).get_json()["id"]
    assert decide(client, world, request_id, "approve").status_code == 200
    again = decide(client, world, request_id, "approve")
    assert again.status_code == 409 and again.mimetype == PROBLEM and "approved" in again.get_json()["detail"]
    rejected_late = decide(client, world, request_id, "reject", {"reason": "too late"})
    assert rejected_late.status_code == 409
    assert counts(session) == (1, 25)
    assert session.get(PurchaseRequest, request_id).rejection_reason is None


def test_two_admins_approving_at_once_create_one_purchase(app, session):
    request_id = file_request(app, make_sponsor(app), "M", 3)
    db = app.extensions["db"]
    barrier = threading.Barrier(2)
    outcomes: list[bool] = []
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            barrier.wait()
            with db.session() as s, s.begin():
                outcomes.append(sponsorship.approve_purchase_request(s, request_id, None, utcnow()) is not None)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(outcomes) == [False, True]
    assert counts(session) == (1, 3)


def test_a_request_whose_tier_was_withdrawn_cannot_be_approved_and_stays_pending(app, client, world, session):
    request_id = file(client, world).get_json()["id"]
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(Tier).where(Tier.code == "L").values(active=False))
    refused = decide(client, world, request_id, "approve")
    assert refused.status_code == 409 and refused.mimetype == PROBLEM
    assert session.get(PurchaseRequest, request_id).status == "pending" and counts(session) == (0, 0)


@pytest.mark.parametrize(("body", "field"), [
    ({"tier": "XXL", "quantity": 1}, "tier"),
    ({"tier": "TRIAL", "quantity": 1}, "tier"),
    ({"tier": "xl", "quantity": 1}, "tier"),  # the schema's enum is exact
    ({"tier": " M", "quantity": 1}, "tier"),
    ({"tier": "M", "quantity": 1, "code_valid_days": None}, "code_valid_days"),  # integer, not nullable
    ({"tier": "M", "quantity": 1, "subscription_days": None}, "subscription_days"),
    ({"tier": "M", "quantity": 1.5}, "quantity"),
    ({"tier": "M", "quantity": 0}, "quantity"),
    ({"tier": "M", "quantity": 10_001}, "quantity"),
    ({"tier": "M", "quantity": "5"}, "quantity"),
    ({"tier": "M"}, "quantity"),
    ({"tier": "M", "quantity": 1, "code_valid_days": 0}, "code_valid_days"),
    ({"tier": "M", "quantity": 1, "subscription_days": 3651}, "subscription_days"),
    ({"tier": "M", "quantity": 1, "note": "x" * 501}, "note"),
    ({"tier": "M", "quantity": 1, "note": 7}, "note"),
    ({"tier": "M", "quantity": 1, "note": "a\x00b"}, "note"),
    ({"tier": "M", "quantity": 1, "status": "approved"}, "status"),
])
def test_a_bad_request_is_a_field_error_and_files_nothing(app, client, world, session, body, field):
    response = file(client, world, body)
    assert response.status_code == 400 and response.mimetype == PROBLEM
    assert field in {e["field"] for e in response.get_json()["errors"]}
    assert session.scalar(select(PurchaseRequest.id)) is None


def test_an_integer_written_with_a_zero_fraction_is_an_integer_as_in_json_schema(app, client, world):
    """JSON Schema counts 141.0 as an integer (before: 400 "must be an integer")."""
    response = file(client, world, {"tier": "S", "quantity": 141.0, "code_valid_days": 60.0})
    assert response.status_code == 201, response.get_json()
    assert (response.get_json()["quantity"], response.get_json()["code_valid_days"]) == (141, 60)


def test_quantity_is_one_to_ten_thousand(app, client, world):
    for quantity in (1, 10_000):
        response = file(client, world, {"tier": "XL", "quantity": quantity})
        assert response.status_code == 201 and response.get_json()["quantity"] == quantity
        assert response.get_json()["tier"] == "XL" and response.get_json()["note"] is None


# --- who may see and do what --------------------------------------------------------------------------------


def test_another_sponsors_request_is_404(app, client, world, session):
    a, b = world["a"], world["b"]
    request_id = file(client, world).get_json()["id"]
    mine = file(client, world, {"tier": "S", "quantity": 3}, sponsor="b").get_json()["id"]
    headers = world["sponsor_b"]
    for path in (f"/api/v1/sponsors/{a}/purchase-requests", f"/api/v1/sponsors/{a}/purchase-requests/{request_id}",
                 f"/api/v1/sponsors/{b}/purchase-requests/{request_id}",
                 f"/api/v1/sponsors/{b}/purchase-requests/999999"):
        response = client.get(path, headers=headers)
        assert response.status_code == 404 and response.mimetype == PROBLEM, path
    assert file(client, {**world, "sponsor_a": headers}, {"tier": "XL", "quantity": 1}).status_code == 404
    own = client.get(f"/api/v1/sponsors/{b}/purchase-requests", headers=headers).get_json()
    assert [r["id"] for r in own["items"]] == [mine]
    assert session.scalar(select(func.count()).select_from(PurchaseRequest)) == 2


def test_support_cannot_see_or_act_on_purchase_requests(app, client, world, session):
    a = world["a"]
    request_id = file(client, world).get_json()["id"]
    headers = world["support"]
    for method, path, body in [
        ("GET", "/api/v1/purchase-requests", None),
        ("GET", f"/api/v1/sponsors/{a}/purchase-requests", None),
        ("GET", f"/api/v1/sponsors/{a}/purchase-requests/{request_id}", None),
        ("POST", f"/api/v1/sponsors/{a}/purchase-requests", {"tier": "M", "quantity": 1}),
        ("POST", f"/api/v1/purchase-requests/{request_id}/approve", None),
        ("POST", f"/api/v1/purchase-requests/{request_id}/reject", {"reason": "no"}),
    ]:
        response = client.open(path, method=method, json=body, headers=headers)
        assert response.status_code == 403 and response.mimetype == PROBLEM, (method, path)
        assert "Mehmet" not in response.get_data(as_text=True) and "havale" not in response.get_data(as_text=True)
    assert session.scalars(select(PurchaseRequest.status)).all() == ["pending"] and counts(session) == (0, 0)


def test_a_sponsor_user_cannot_decide_and_an_admin_does_not_file(app, client, world, session):
    request_id = file(client, world).get_json()["id"]
    for action, body in (("approve", None), ("reject", {"reason": "kendim"})):
        assert decide(client, world, request_id, action, body, role="sponsor_a").status_code == 403
    by_admin = client.post(f"/api/v1/sponsors/{world['a']}/purchase-requests", headers=world["admin"],
                           json={"tier": "M", "quantity": 1})
    assert by_admin.status_code == 403 and "/purchases" in by_admin.get_json()["detail"]
    assert session.scalars(select(PurchaseRequest.status)).all() == ["pending"] and counts(session) == (0, 0)


def test_the_admin_list_filters_by_status_and_sponsor_and_pages(app, client, world):
    a, b = world["a"], world["b"]
    first, second, third = (file(client, world).get_json()["id"] for _ in range(3))
    theirs = file(client, world, {"tier": "M", "quantity": 2}, sponsor="b").get_json()["id"]
    decide(client, world, first, "approve")
    decide(client, world, second, "reject", {"reason": "Ödeme yok"})
    url = "/api/v1/purchase-requests"

    def ids(**query: Any) -> list[int]:
        response = client.get(url, headers=world["admin"], query_string=query)
        assert response.status_code == 200, response.get_json()
        return [r["id"] for r in response.get_json()["items"]]

    assert ids() == [theirs, third, second, first]
    assert ids(status="pending") == [theirs, third]
    assert ids(status="pending", sponsor_id=a) == [third]
    assert ids(sponsor_id=b) == [theirs]
    assert ids(status="rejected") == [second] and ids(status="approved") == [first]
    page = client.get(url, headers=world["admin"], query_string={"per_page": 3, "page": 2}).get_json()
    assert (page["total"], page["page"], page["per_page"], [r["id"] for r in page["items"]]) == (4, 2, 3, [first])
    for query in ({"status": "done"}, {"sponsor_id": "x"}, {"sponsor_id": 2**31}, {"page": 0}):
        response = client.get(url, headers=world["admin"], query_string=query)
        assert response.status_code == 400 and response.mimetype == PROBLEM, query
    for missing in (999_999, 2**31, 2**63):
        assert decide(client, world, missing, "approve").status_code == 404
        assert decide(client, world, missing, "reject", {"reason": "x"}).status_code == 404


def test_filing_approving_and_rejecting_are_audited(app, client, world, session):
    a = world["a"]
    approved_id = file(client, world).get_json()["id"]
    rejected_id = file(client, world, {"tier": "M", "quantity": 2}).get_json()["id"]
    decide(client, world, approved_id, "approve")
    decide(client, world, rejected_id, "reject", {"reason": "Fatura eksik"})
    users = {u.role: u.id for u in session.scalars(select(StaffUser)) if u.sponsor_id in (None, a)}
    rows = session.scalars(select(AuditLog).where(AuditLog.action.like("sponsor.purchase_request.%"))
                           .order_by(AuditLog.id)).all()
    assert [(r.action, r.record_type, r.record_id, r.user_id) for r in rows] == [
        ("sponsor.purchase_request.create", "purchase_request", str(approved_id), users["sponsor"]),
        ("sponsor.purchase_request.create", "purchase_request", str(rejected_id), users["sponsor"]),
        ("sponsor.purchase_request.approve", "purchase_request", str(approved_id), users["admin"]),
        ("sponsor.purchase_request.reject", "purchase_request", str(rejected_id), users["admin"]),
    ]
    assert rows[0].details == {"sponsor_id": a, "tier": "L", "quantity": 25, "code_valid_days": 60,
                               "subscription_days": 45}
    purchase_id = session.get(PurchaseRequest, approved_id).purchase_id
    assert rows[2].details == {"sponsor_id": a, "purchase_id": purchase_id, "codes": 25}
    assert rows[3].details == {"sponsor_id": a, "reason": "Fatura eksik"}
    assert all(r.ip == "127.0.0.1" for r in rows)


def test_a_code_from_an_approved_request_pays_for_analyses_at_its_own_tier(app, client, world, session):
    """The whole path: request -> approval -> the farmer redeems a code -> the sponsor sees that analysis
    at the request's tier."""
    a = world["a"]
    request_id = file(client, world, {"tier": "XL", "quantity": 1}).get_json()["id"]
    purchase_id = decide(client, world, request_id, "approve").get_json()["purchase_id"]
    code = session.scalar(select(SponsorCode.code).where(SponsorCode.purchase_id == purchase_id))
    analysis_id = sponsors_tests.add_analysis(app, a, sponsors_tests.add_farmer(app), code=code)
    sub = session.scalar(select(Subscription).where(Subscription.code_id.is_not(None)))
    assert sub is not None and sub.sponsor_id == a
    detail = client.get(f"/api/v1/sponsors/{a}/analyses/{analysis_id}", headers=world["sponsor_a"]).get_json()
    assert detail["tier"] == "XL" and detail["farmer_phone"] == sponsors_tests.PHONE
