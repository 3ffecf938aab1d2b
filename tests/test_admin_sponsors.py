"""Sponsor endpoints of the admin API: CRUD, purchases and codes, CSV export, revoke, statistics and
the sponsored analyses, each filtered by the tier of the code that paid for it (`services.visibility`)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from models import Analysis, AuditLog, Farmer, SponsorCode, SponsorPurchase, Subscription, utcnow
from services import quota, sponsorship
from services.masking import mask_phone
from services.quota import ISTANBUL
from services.sponsor_stats import compute_statistics, invalidate_stats, purchased_tiers, stats_key
from services.sponsorship import RedeemOutcome
from services.visibility import COLUMNS, analysis_view, paying_tiers
from tests.admin_helpers import bearer, login, make_sponsor, make_staff, token_for

PROBLEM = "application/problem+json"
PHONE = "+905321234567"
RESULT = {"plant_identification": {"species": "Solanum lycopersicum"},
          "recommendations": {"immediate": [{"action": "Bakırlı ilaç uygula", "priority": "high"}],
                              "preventive": ["Sulamayı sabah yap"]},
          "summary": {"overall_health_score": 4}}


@pytest.fixture(autouse=True)
def tiers(app):
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)


def sponsor_token(app, client, sponsor_id: int, email: str) -> dict[str, str]:
    make_staff(app, "sponsor", email, sponsor_id=sponsor_id)
    response = login(client, email)
    assert response.status_code == 200, response.get_json()
    return bearer(response.get_json()["access_token"])


def staff_token(app, client, role: str) -> dict[str, str]:
    email = f"{role}@ziraai.test"
    make_staff(app, role, email)
    return bearer(login(client, email).get_json()["access_token"])


@pytest.fixture
def world(app, client) -> dict[str | None, Any]:
    """Sponsors A and B, and tokens for admin, support, a user of A and a user of B."""
    a = make_sponsor(app, "Anadolu Tohum")
    b = make_sponsor(app, "Bereket Gübre")
    return {"a": a, "b": b, "admin": staff_token(app, client, "admin"), "support": staff_token(app, client, "support"),
            "sponsor_a": sponsor_token(app, client, a, "a@sponsor.test"),
            "sponsor_b": sponsor_token(app, client, b, "b@sponsor.test"), None: {}}


def buy(app, sponsor_id: int, tier: str = "M", quantity: int = 3, valid_days: int = 90) -> list[str]:
    with app.extensions["db"].session() as s, s.begin():
        _, codes = sponsorship.create_purchase(s, sponsor_id, tier, quantity, valid_days, 30, utcnow())
    return sorted(codes)


def add_farmer(app, phone: str = PHONE, name: str = "Mehmet Yılmaz") -> int:
    with app.extensions["db"].session() as s, s.begin():
        farmer = Farmer(phone=phone, profile_name=name, created_at=utcnow(), updated_at=utcnow())
        s.add(farmer)
        s.flush()
        return farmer.id


def paid_subscription(app, farmer_id: int, code: str) -> int:
    """The subscription `code` gives the farmer: redeemed here for real, unless the farmer already did."""
    with app.extensions["db"].session() as s, s.begin():
        existing = s.scalar(select(Subscription.id).join(SponsorCode, SponsorCode.id == Subscription.code_id)
                            .where(SponsorCode.code == code, Subscription.farmer_id == farmer_id))
        if existing is not None:
            return existing
        result = sponsorship.redeem(s, farmer_id, code, utcnow())
        assert result.outcome in (RedeemOutcome.OK, RedeemOutcome.QUEUED) and result.subscription_id, result
        return result.subscription_id


def add_analysis(app, sponsor_id: int | None, farmer_id: int, *, code: str | None = None,
                 **fields: Any) -> int:
    """A completed analysis attributed to `sponsor_id`; with `code`, paid for by the subscription that code
    gives the farmer, as a submission records it (without, it counts for the sponsor's totals only)."""
    now = utcnow()
    row = {"crop": "domates", "location_text": "Antalya", "status": "completed", "health_score": 4,
           "primary_concern": "Erken yanıklık", "diseases": [{"type": "Alternaria solani"}], "pests": [],
           "result": RESULT, "created_at": now, "received_at": now, "completed_at": now, **fields}
    if code is not None:
        row["subscription_id"] = paid_subscription(app, farmer_id, code)
    with app.extensions["db"].session() as s, s.begin():
        analysis = Analysis(farmer_id=farmer_id, sponsor_id=sponsor_id, **row)
        s.add(analysis)
        s.flush()
        return analysis.id


def set_code(app, code: str, **values: Any) -> None:
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(SponsorCode).where(SponsorCode.code == code).values(**values))


# --- the visibility table ---------------------------------------------------------------------------


def test_a_masked_phone_keeps_only_its_prefix_and_last_two_digits():
    assert mask_phone("+905321234567") == "+90 532 *** ** 67"
    assert mask_phone("+4915112345678") == "+49 *********78"
    assert mask_phone(None) is None


def test_an_analysis_counts_the_tier_of_the_code_that_paid_for_it_never_the_sponsors_highest(app, session):
    a, b = make_sponsor(app, "A"), make_sponsor(app, "B")
    paid_by = {}
    for i, tier in enumerate(("S", "M", "L")):
        [code] = buy(app, a, tier, 1)
        paid_by[tier] = add_analysis(app, a, add_farmer(app, f"+90532000000{i}"), code=code)
    buy(app, a, "XL", 1)  # bought later, redeemed by nobody: it changes nothing above
    [b_code] = buy(app, b, "XL", 1)
    unpaid = add_analysis(app, a, add_farmer(app, "+905320000009"))
    foreign = add_analysis(app, a, add_farmer(app, "+905320000008"), code=b_code)  # B's code, attributed to A

    tiers = paying_tiers(session, [*paid_by.values(), unpaid, foreign])

    assert tiers == {paid_by["S"]: "S", paid_by["M"]: "M", paid_by["L"]: "L", unpaid: None, foreign: None}
    assert paying_tiers(session, []) == {}


def test_the_sponsor_record_lists_the_tiers_it_bought(app, session):
    sponsor = make_sponsor(app)
    assert purchased_tiers(session, sponsor) == []
    buy(app, sponsor, "XL", 1)
    buy(app, sponsor, "S", 1)
    buy(app, sponsor, "S", 1)
    assert purchased_tiers(session, sponsor) == ["S", "XL"]


def test_analysis_view_is_none_for_s_and_no_tier(app, session):
    farmer = session.get(Farmer, add_farmer(app))
    analysis = session.get(Analysis, add_analysis(app, None, farmer.id))
    assert analysis_view(analysis, farmer, "S") is None
    assert analysis_view(analysis, farmer, None) is None
    assert set(analysis_view(analysis, farmer, "XL") or {}) == set(COLUMNS["XL"])


def test_the_api_keeps_a_crops_key_and_its_filter_finds_the_crop_by_its_name_too(app, client, world):
    a = world["a"]
    [m1, m2] = buy(app, a, "M", 2)
    cucumber = add_analysis(app, a, add_farmer(app), code=m1, crop="salatalik")
    add_analysis(app, a, add_farmer(app, "+905321234599"), code=m2, crop="Şeker pancarı")  # typed, not listed
    headers = world["sponsor_a"]

    for given in ("salatalik", "Salatalık", "SALATALIK", "Cucumber", "hıyar", "sala"):
        items = client.get(f"/api/v1/sponsors/{a}/analyses", query_string={"crop": given},
                           headers=headers).get_json()["items"]
        assert [(i["id"], i["crop"]) for i in items] == [(cucumber, "salatalik")], given
        rows = list(csv.DictReader(io.StringIO(client.get(f"/api/v1/sponsors/{a}/analyses.csv",
                                                          query_string={"crop": given},
                                                          headers=headers).get_data(as_text=True))))
        assert [r["crop"] for r in rows] == ["salatalik"], given
    typed = client.get(f"/api/v1/sponsors/{a}/analyses", query_string={"crop": "SEKER"}, headers=headers)
    assert [i["crop"] for i in typed.get_json()["items"]] == ["Şeker pancarı"]


@pytest.mark.parametrize("tier", ["M", "L", "XL"])
def test_each_tier_sees_exactly_its_columns(app, client, world, tier):
    a = world["a"]
    [code] = buy(app, a, tier, 1)
    farmer = add_farmer(app)
    analysis_id = add_analysis(app, a, farmer, code=code)
    headers = world["sponsor_a"]

    listing = client.get(f"/api/v1/sponsors/{a}/analyses", headers=headers)
    detail = client.get(f"/api/v1/sponsors/{a}/analyses/{analysis_id}", headers=headers)

    assert listing.status_code == 200 and detail.status_code == 200
    [row] = listing.get_json()["items"]
    assert row["tier"] == detail.get_json()["tier"] == tier
    assert set(row) == set(detail.get_json()) == set(COLUMNS[tier])
    assert (row["crop"], row["province"], row["health_score"], row["main_concern"]) == (
        "domates", "Antalya", 4, "Erken yanıklık")
    assert row["diseases"] == [{"type": "Alternaria solani"}] and row["pests"] == []
    body = listing.get_data(as_text=True) + detail.get_data(as_text=True)
    if tier == "M":
        assert "Mehmet" not in body and "1234567" not in body and "+90 532" not in body
    if tier == "L":
        assert row["farmer_name"] == "Mehmet Yılmaz"
        assert row["farmer_phone_masked"] == "+90 532 *** ** 67"
        assert row["recommendations"] == {  # as the farmer's report reads them, not N8N's raw JSON
            "immediate": [{"action": "Bakırlı ilaç uygula", "details": None, "timeline": None, "priority": "high",
                           "priority_level": "high"}],
            "short_term": [],
            "preventive": [{"action": "Sulamayı sabah yap", "details": None, "timeline": None, "priority": None,
                            "priority_level": "unknown"}],
            "monitoring": []}
        assert row["can_message"] is True
        assert PHONE not in body and "5321234567" not in body
    if tier == "XL":
        assert row["farmer_phone"] == PHONE and row["report"] == RESULT
        assert row["farmer_phone_masked"] == "+90 532 *** ** 67"


@pytest.mark.parametrize("tier", ["M", "L"])
def test_a_sponsor_sees_the_province_of_a_place_never_the_address_or_a_name_in_it(app, client, world, tier):
    a = world["a"]
    [code] = buy(app, a, tier, 1)
    place = "Hüseyin Evil Çiftliği, Karaköy Mah. Lale Sk. No:5, 42250 Selçuklu/Konya"
    analysis_id = add_analysis(app, a, add_farmer(app), code=code, location_text=place)
    unknown_id = add_analysis(app, a, add_farmer(app, "+905321112200"), code=buy(app, a, tier, 1)[0],
                              location_text="Ali'nin bağı, dere kenarı")

    listing = client.get(f"/api/v1/sponsors/{a}/analyses", headers=world["sponsor_a"])
    detail = client.get(f"/api/v1/sponsors/{a}/analyses/{analysis_id}", headers=world["sponsor_a"])

    rows = {row["id"]: row for row in listing.get_json()["items"]}
    assert rows[analysis_id]["province"] == detail.get_json()["province"] == "Konya"
    assert rows[unknown_id]["province"] is None
    body = listing.get_data(as_text=True) + detail.get_data(as_text=True)
    # "42250" alone could be a timestamp's digits: the post code is looked for with its district
    for piece in ("Hüseyin", "Karaköy", "Lale Sk", "42250 Selçuklu", "Ali'nin"):
        assert piece not in body


def test_an_l_sponsor_never_sees_the_place_the_ai_wrote_into_its_recommendations(app, client, world):
    """N8N's prompt feeds the farmer's place to the AI, which writes it back in `localized_recommendations`;
    an L sponsor reads the recommendations as the farmer's report shows them, where it is not."""
    a = world["a"]
    place = "Hasan Amca'nın Bahçesi, Çamlık Sk. No 12, Kumluca, Antalya"
    result = {**RESULT, "recommendations": {"immediate": [{"action": "Bakırlı ilaç uygula"}],
                                            "localized_recommendations": {"region": place, "notes": place}}}
    analysis_id = add_analysis(app, a, add_farmer(app), code=buy(app, a, "L", 1)[0], result=result)
    listing = client.get(f"/api/v1/sponsors/{a}/analyses", headers=world["sponsor_a"])
    detail = client.get(f"/api/v1/sponsors/{a}/analyses/{analysis_id}", headers=world["sponsor_a"])
    assert detail.get_json()["recommendations"]["immediate"][0]["action"] == "Bakırlı ilaç uygula"
    body = listing.get_data(as_text=True) + detail.get_data(as_text=True)
    assert "Hasan" not in body and "Çamlık" not in body and "Kumluca" not in body


def test_an_analysis_paid_for_by_an_s_code_shows_in_the_totals_only(app, client, world):
    a = world["a"]
    codes = buy(app, a, "S", 2)
    analysis_id = add_analysis(app, a, add_farmer(app), code=codes[0])
    listing = client.get(f"/api/v1/sponsors/{a}/analyses", headers=world["sponsor_a"])
    assert listing.status_code == 200 and listing.get_json()["items"] == [] and listing.get_json()["total"] == 0
    detail = client.get(f"/api/v1/sponsors/{a}/analyses/{analysis_id}", headers=world["sponsor_a"])
    assert detail.status_code == 403 and detail.mimetype == PROBLEM
    assert "totals" in detail.get_json()["detail"] and "Mehmet" not in detail.get_data(as_text=True)
    stats = client.get(f"/api/v1/sponsors/{a}/statistics", headers=world["sponsor_a"])
    assert stats.status_code == 200 and stats.get_json()["analyses"]["total"] == 1


def test_analyses_are_only_the_sponsors_own_and_completed(app, client, world):
    a, b = world["a"], world["b"]
    [mine_code] = buy(app, a, "M", 1)
    [their_code] = buy(app, b, "M", 1)
    farmer = add_farmer(app)
    mine = add_analysis(app, a, farmer, code=mine_code)
    theirs = add_analysis(app, b, farmer, code=their_code)
    add_analysis(app, a, farmer, code=mine_code, status="processing", completed_at=None)
    add_analysis(app, None, farmer)

    response = client.get(f"/api/v1/sponsors/{a}/analyses", headers=world["sponsor_a"])
    assert [r["id"] for r in response.get_json()["items"]] == [mine]
    assert client.get(f"/api/v1/sponsors/{a}/analyses/{theirs}", headers=world["sponsor_a"]).status_code == 404
    assert client.get(f"/api/v1/sponsors/{a}/analyses/{theirs}", headers=world["admin"]).status_code == 404


def test_reading_sponsored_analyses_is_audited(app, client, world, session):
    a = world["a"]
    [code] = buy(app, a, "L", 1)
    analysis_id = add_analysis(app, a, add_farmer(app), code=code)
    client.get(f"/api/v1/sponsors/{a}/analyses", headers=world["sponsor_a"])
    client.get(f"/api/v1/sponsors/{a}/analyses/{analysis_id}", headers=world["sponsor_a"])
    listed, read = session.scalars(select(AuditLog).where(AuditLog.action.like("sponsor.analys%"))
                                   .order_by(AuditLog.id)).all()
    assert (listed.action, listed.details["ids"], listed.details["tiers"]) == ("sponsor.analyses.read", [analysis_id],
                                                                               ["L"])
    assert (read.action, read.record_id, read.details["tier"]) == ("sponsor.analysis.read", str(analysis_id), "L")


def _csv_rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200 and response.mimetype == "text/csv", response.get_data(as_text=True)
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_the_analyses_csv_gives_each_row_exactly_what_its_own_tier_shows(app, client, world, session):
    a = world["a"]
    m_id = add_analysis(app, a, add_farmer(app, "+905321110001", "Ayşe"), code=buy(app, a, "M", 1)[0])
    l_id = add_analysis(app, a, add_farmer(app, "+905321110002", "Veli"), code=buy(app, a, "L", 1)[0])
    xl_id = add_analysis(app, a, add_farmer(app, PHONE), code=buy(app, a, "XL", 1)[0])
    add_analysis(app, a, add_farmer(app, "+905321110004", "Sadece Toplam"), code=buy(app, a, "S", 1)[0])

    response = client.get(f"/api/v1/sponsors/{a}/analyses.csv", headers=world["sponsor_a"])

    rows = {int(r["id"]): r for r in _csv_rows(response)}
    assert list(rows) == [xl_id, l_id, m_id]  # newest first, as the list; the S-paid one is not there
    assert response.headers["Content-Disposition"] == f'attachment; filename="sponsor-{a}-analyses.csv"'
    assert response.headers["Cache-Control"] == "no-store"
    header = response.get_data(as_text=True).split("\r\n", 1)[0].split(",")
    assert tuple(header) == COLUMNS["XL"]
    for analysis_id, tier in ((m_id, "M"), (l_id, "L"), (xl_id, "XL")):
        row = rows[analysis_id]
        assert row["tier"] == tier
        assert {c for c, v in row.items() if v} <= set(COLUMNS[tier])  # nothing beyond its tier
        assert (row["crop"], row["province"], row["health_score"]) == ("domates", "Antalya", "4")
        assert json.loads(row["diseases"]) == [{"type": "Alternaria solani"}]
    assert rows[m_id]["farmer_name"] == "" and "Ayşe" not in response.get_data(as_text=True)
    assert rows[l_id]["farmer_name"] == "Veli" and rows[l_id]["farmer_phone"] == ""
    assert rows[l_id]["farmer_phone_masked"] == "'+90 532 *** ** 02"  # made inert, as every cell starting with +
    detail = client.get(f"/api/v1/sponsors/{a}/analyses/{l_id}", headers=world["sponsor_a"]).get_json()
    assert json.loads(rows[l_id]["recommendations"]) == detail["recommendations"]  # as the API shows them
    assert rows[xl_id]["farmer_phone"] == "'" + PHONE and json.loads(rows[xl_id]["report"]) == RESULT
    assert "+905321110002" not in response.get_data(as_text=True)
    exported = session.scalars(select(AuditLog).where(AuditLog.action == "sponsor.analyses.export")).one()
    assert (exported.record_id, exported.details["ids"], exported.details["tiers"]) == (
        str(a), [xl_id, l_id, m_id], ["XL", "L", "M"])


def test_the_analyses_csv_has_only_the_columns_of_the_highest_tier_in_it(app, client, world):
    a = world["a"]
    add_analysis(app, a, add_farmer(app), code=buy(app, a, "M", 1)[0])
    response = client.get(f"/api/v1/sponsors/{a}/analyses.csv", headers=world["sponsor_a"])
    assert tuple(response.get_data(as_text=True).split("\r\n", 1)[0].split(",")) == COLUMNS["M"]
    assert "Mehmet" not in response.get_data(as_text=True)


def test_the_analyses_csv_makes_formula_cells_inert(app, client, world):
    a = world["a"]
    farmer = add_farmer(app, name='=HYPERLINK("http://evil.test","Tıkla")')
    add_analysis(app, a, farmer, code=buy(app, a, "L", 1)[0], crop="@SUM(A1:A9)", primary_concern="-2+3")
    [row] = _csv_rows(client.get(f"/api/v1/sponsors/{a}/analyses.csv", headers=world["sponsor_a"]))
    assert row["farmer_name"] == '\'=HYPERLINK("http://evil.test","Tıkla")'
    assert (row["crop"], row["main_concern"]) == ("'@SUM(A1:A9)", "'-2+3")


def test_the_analyses_csv_follows_the_lists_filters_and_access(app, client, world):
    a, b = world["a"], world["b"]
    tomato = add_analysis(app, a, add_farmer(app), code=buy(app, a, "M", 1)[0])
    add_analysis(app, a, add_farmer(app, "+905321110005"), code=buy(app, a, "M", 1)[0], crop="biber")
    add_analysis(app, b, add_farmer(app, "+905321110006"), code=buy(app, b, "XL", 1)[0])
    url = f"/api/v1/sponsors/{a}/analyses.csv"

    assert [int(r["id"]) for r in _csv_rows(client.get(url, query_string={"crop": "DOMA"},
                                                       headers=world["sponsor_a"]))] == [tomato]
    assert len(_csv_rows(client.get(url, headers=world["admin"]))) == 2
    assert client.get(url, headers=world["sponsor_b"]).status_code == 404
    assert client.get(url, headers=world["support"]).status_code == 403
    assert client.get(url).status_code == 401
    assert client.get(url, query_string={"since": "2026-01-02", "until": "2026-01-01"},
                      headers=world["sponsor_a"]).status_code == 400


# --- role matrix --------------------------------------------------------------------------------------

ROLES = (None, "admin", "sponsor_a", "sponsor_b", "support")


def file_request(app, sponsor_id: int, tier: str = "M", quantity: int = 2) -> int:
    with app.extensions["db"].session() as s, s.begin():
        return sponsorship.file_purchase_request(s, sponsor_id, tier, quantity, 90, 30, None, None, utcnow()).id


def test_each_sponsor_route_admits_only_the_roles_it_should(app, client, world):
    a = world["a"]
    *codes, paying = buy(app, a, "L", 6)
    analysis_id = add_analysis(app, a, add_farmer(app), code=paying)
    to_approve, to_reject, to_read = file_request(app, a), file_request(app, a), file_request(app, a)
    admin_only = {None: 401, "admin": 200, "sponsor_a": 403, "sponsor_b": 403, "support": 403}
    own = {None: 401, "admin": 200, "sponsor_a": 200, "sponsor_b": 404, "support": 403}
    sponsor_files = {None: 401, "admin": 403, "sponsor_a": 201, "sponsor_b": 404, "support": 403}
    revoke_code = dict(zip(ROLES, codes, strict=True))  # each role tries a different unused code
    routes: list[tuple[str, str, Any, dict[Any, int]]] = [
        ("post", "/api/v1/sponsors", {"name": "Yeni Sponsor"}, {**admin_only, "admin": 201}),
        ("get", "/api/v1/sponsors", None, admin_only),
        ("get", f"/api/v1/sponsors/{a}", None, admin_only),
        ("patch", f"/api/v1/sponsors/{a}", {"contact_email": "info@anadolu.test"}, admin_only),
        ("post", f"/api/v1/sponsors/{a}/purchases", {"tier": "M", "quantity": 2}, {**admin_only, "admin": 201}),
        ("post", f"/api/v1/sponsors/{a}/purchase-requests", {"tier": "XL", "quantity": 5}, sponsor_files),
        ("get", f"/api/v1/sponsors/{a}/purchase-requests", None, own),
        ("get", f"/api/v1/sponsors/{a}/purchase-requests/{to_read}", None, own),
        ("get", "/api/v1/purchase-requests", None, admin_only),
        ("post", f"/api/v1/purchase-requests/{to_approve}/approve", None, admin_only),
        ("post", f"/api/v1/purchase-requests/{to_reject}/reject", {"reason": "Ödeme gelmedi"}, admin_only),
        ("get", f"/api/v1/sponsors/{a}/codes", None, own),
        ("get", f"/api/v1/sponsors/{a}/codes.csv", None, own),
        ("post", f"/api/v1/sponsors/{a}/codes/{{code}}/revoke", None, own),
        ("get", f"/api/v1/sponsors/{a}/statistics", None, own),
        ("get", f"/api/v1/sponsors/{a}/analyses", None, own),
        ("get", f"/api/v1/sponsors/{a}/analyses/{analysis_id}", None, own),
        ("post", f"/api/v1/sponsors/{a}/analyses/{analysis_id}/message", {"text": "Merhaba"},
         {**own, "admin": 202, "sponsor_a": 202}),
    ]
    for method, path, body, expected in routes:
        for role in ROLES:
            url = path.replace("{code}", revoke_code[role])
            response = getattr(client, method)(url, headers=world[role], json=body)
            assert response.status_code == expected[role], (method, url, role, response.get_json(silent=True))
            if expected[role] >= 400:
                assert response.mimetype == PROBLEM


def test_sponsor_b_never_sees_that_a_exists(app, client, world):
    """Unknown and foreign ids answer alike (404), so ids cannot be probed."""
    a, b = world["a"], world["b"]
    for sponsor_id in (a, 999_999):
        for suffix in ("/codes", "/statistics", "/analyses", "/codes.csv", "/purchase-requests"):
            response = client.get(f"/api/v1/sponsors/{sponsor_id}{suffix}", headers=world["sponsor_b"])
            assert response.status_code == 404
    assert client.get(f"/api/v1/sponsors/{b}/codes", headers=world["sponsor_b"]).status_code == 200


# --- sponsors CRUD ----------------------------------------------------------------------------------------


def test_create_list_get_and_update_a_sponsor(app, client, world, session):
    headers = world["admin"]
    created = client.post("/api/v1/sponsors", headers=headers, json={
        "name": "  Tarım A.Ş. ", "logo_url": "https://cdn.test/logo.png", "contact_email": "a@tarim.test",
        "contact_phone": "+90 212 555 00 00"})
    assert created.status_code == 201, created.get_json()
    sponsor = created.get_json()
    assert sponsor["name"] == "Tarım A.Ş." and sponsor["logo_url"] == "https://cdn.test/logo.png"

    listing = client.get("/api/v1/sponsors", headers=headers, query_string={"q": "tarım", "per_page": 100000})
    assert [s["id"] for s in listing.get_json()["items"]] == [sponsor["id"]]
    assert listing.get_json()["per_page"] == 100
    assert client.get("/api/v1/sponsors", headers=headers).get_json()["total"] == 3

    patched = client.patch(f"/api/v1/sponsors/{sponsor['id']}", headers=headers, json={"logo_url": None,
                                                                                         "name": "Tarım"})
    assert patched.status_code == 200 and patched.get_json()["logo_url"] is None
    fetched = client.get(f"/api/v1/sponsors/{sponsor['id']}", headers=headers).get_json()
    assert fetched["name"] == "Tarım" and fetched["contact_email"] == "a@tarim.test" and fetched["tiers"] == []
    assert client.get("/api/v1/sponsors/987654", headers=headers).status_code == 404
    assert client.patch("/api/v1/sponsors/987654", headers=headers, json={"name": "x"}).status_code == 404
    actions = session.scalars(select(AuditLog.action)).all()
    assert "sponsor.create" in actions and "sponsor.update" in actions


@pytest.mark.parametrize("body,fields", [
    ({}, {"name"}),
    ({"name": ""}, {"name"}),
    ({"name": 42}, {"name"}),
    ({"name": "x" * 201}, {"name"}),
    ({"name": "ok", "logo_url": "javascript:alert(1)"}, {"logo_url"}),
    ({"name": "ok", "contact_email": "not-an-email"}, {"contact_email"}),
    ({"name": "ok", "contact_phone": "'; DROP TABLE sponsors; --"}, {"contact_phone"}),
    ({"name": "ok", "contact_email": ["a@b.c"]}, {"contact_email"}),
    ({"name": "ok", "is_admin": True}, {"is_admin"}),
])
def test_an_invalid_sponsor_body_names_exactly_the_fields_at_fault(client, world, body, fields):
    response = client.post("/api/v1/sponsors", headers=world["admin"], json=body)
    assert response.status_code == 400 and response.mimetype == PROBLEM
    assert {e["field"] for e in response.get_json()["errors"]} == fields


@pytest.mark.parametrize("phone", ["١٢٣", "2026-02-30", "-0", "00012", "((((-)))", "+90 555 ١١١", "+0 212 123 45 67"])
def test_a_contact_phone_that_is_not_a_phone_number_is_refused(client, world, phone):
    """Before: any mix of digits (of any script) and `+ ()-` was stored."""
    response = client.patch(f"/api/v1/sponsors/{world['a']}", headers=world["admin"], json={"contact_phone": phone})
    assert response.status_code == 400
    assert response.get_json()["errors"] == [{"field": "contact_phone",
                                              "message": "must be a phone number such as +902121234567"}]


@pytest.mark.parametrize("email", ["a@b", "ı@ı.ı", "a b@c.com", "a@b..com", "a@-b.com", "@b.com"])
def test_a_contact_email_that_is_not_an_email_address_is_refused(client, world, email):
    response = client.patch(f"/api/v1/sponsors/{world['a']}", headers=world["admin"], json={"contact_email": email})
    assert response.status_code == 400 and response.get_json()["errors"][0]["field"] == "contact_email"


@pytest.mark.parametrize(("phone", "email"), [("+902121234567", "info@anadolu.test"),
                                              ("+90 (212) 123-45-67", "satis@çiftçi.com.tr"),
                                              ("0212 123 45 67", "a.b+c@Example.COM")])
def test_phone_numbers_and_email_addresses_as_people_write_them_are_kept_as_written(client, world, phone, email):
    response = client.patch(f"/api/v1/sponsors/{world['a']}", headers=world["admin"],
                            json={"contact_phone": phone, "contact_email": email})
    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["contact_phone"], response.get_json()["contact_email"]) == (phone, email)


def test_a_body_that_is_not_a_json_object_is_400(client, world):
    for data in ("[1, 2]", "not json", '"name"'):
        response = client.post("/api/v1/sponsors", headers=world["admin"], data=data, content_type="application/json")
        assert response.status_code == 400
    response = client.patch(f"/api/v1/sponsors/{world['a']}", headers=world["admin"], json={"name": None})
    assert response.status_code == 400


# --- purchases, codes, CSV --------------------------------------------------------------------------------


def test_purchase_of_10000_codes_all_unique_and_the_csv_lists_exactly_them(app, client, world):
    a = world["a"]
    response = client.post(f"/api/v1/sponsors/{a}/purchases", headers=world["admin"],
                           json={"tier": "M", "quantity": 10_000, "code_valid_days": 60, "subscription_days": 45})
    assert response.status_code == 201, response.get_json()
    purchase = response.get_json()
    codes = purchase["codes"]
    assert (purchase["tier"], purchase["quantity"], purchase["subscription_days"]) == ("M", 10_000, 45)
    assert len(codes) == len(set(codes)) == 10_000

    export = client.get(f"/api/v1/sponsors/{a}/codes.csv", headers=world["sponsor_a"])
    assert export.status_code == 200 and export.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    assert list(rows[0]) == ["code", "tier", "status", "expires_at", "redeemed_at"]
    assert sorted(r["code"] for r in rows) == sorted(codes)
    assert {(r["tier"], r["status"], r["redeemed_at"]) for r in rows} == {("M", "unused", "")}

    listing = client.get(f"/api/v1/sponsors/{a}/codes", headers=world["sponsor_a"],
                         query_string={"status": "unused", "per_page": 100})
    assert listing.get_json()["total"] == 10_000 and len(listing.get_json()["items"]) == 100
    assert client.get(f"/api/v1/sponsors/{world['b']}/codes.csv", headers=world["admin"]).get_data(
        as_text=True).strip() == "code,tier,status,expires_at,redeemed_at"


def test_a_sponsor_cannot_record_a_purchase_for_itself(app, client, world, session):
    a = world["a"]
    for body in ({"tier": "XL", "quantity": 10_000}, {"tier": "XL", "quantity": 1}, {}):
        response = client.post(f"/api/v1/sponsors/{a}/purchases", headers=world["sponsor_a"], json=body)
        assert response.status_code == 403 and response.mimetype == PROBLEM
        assert "only an admin records one" in response.get_json()["detail"]
        assert "/api/v1/sponsors/{sponsor_id}/purchase-requests" in response.get_json()["detail"]
    assert session.scalar(select(SponsorPurchase.id)) is None and session.scalar(select(SponsorCode.id)) is None
    assert "sponsor.purchase.create" not in session.scalars(select(AuditLog.action)).all()


@pytest.mark.parametrize("body,field", [
    ({"tier": "XXL", "quantity": 1}, "tier"),
    ({"tier": "TRIAL", "quantity": 1}, "tier"),
    ({"tier": 5, "quantity": 1}, "tier"),
    ({"tier": "M", "quantity": 0}, "quantity"),
    ({"tier": "M", "quantity": 10_001}, "quantity"),
    ({"tier": "M", "quantity": "10"}, "quantity"),
    ({"tier": "M", "quantity": True}, "quantity"),
    ({"tier": "M", "quantity": 1.5}, "quantity"),
    ({"tier": "M"}, "quantity"),
    ({"tier": "M", "quantity": 1, "code_valid_days": 0}, "code_valid_days"),
    ({"tier": "M", "quantity": 1, "subscription_days": "30; DROP TABLE tiers"}, "subscription_days"),
])
def test_an_invalid_purchase_body_names_the_field_at_fault(client, world, body, field):
    response = client.post(f"/api/v1/sponsors/{world['a']}/purchases", headers=world["admin"], json=body)
    assert response.status_code == 400 and response.mimetype == PROBLEM
    assert field in {e["field"] for e in response.get_json()["errors"]}


def test_an_unknown_purchase_field_is_a_400_naming_it_and_nothing_is_bought(app, client, world, session):
    response = client.post(f"/api/v1/sponsors/{world['a']}/purchases", headers=world["admin"],
                           json={"tier": "M", "quantity": 2, "subscription_day": 365})
    assert response.status_code == 400 and response.mimetype == PROBLEM
    assert [e["field"] for e in response.get_json()["errors"]] == ["subscription_day"]
    assert session.scalar(select(func.count()).select_from(SponsorCode)) == 0


def test_codes_by_status_count_unused_past_expiry_as_expired(app, client, world):
    a = world["a"]
    codes = buy(app, a, "M", 4)
    set_code(app, codes[0], status="redeemed", redeemed_at=utcnow())
    set_code(app, codes[1], status="revoked", revoked_at=utcnow())
    set_code(app, codes[2], expires_at=utcnow() - timedelta(days=1))  # still "unused" in the database
    by_status = {}
    for status in ("unused", "redeemed", "expired", "revoked"):
        response = client.get(f"/api/v1/sponsors/{a}/codes", headers=world["sponsor_a"],
                              query_string={"status": status})
        by_status[status] = [(c["code"], c["status"]) for c in response.get_json()["items"]]
    assert by_status == {"unused": [(codes[3], "unused")], "redeemed": [(codes[0], "redeemed")],
                         "expired": [(codes[2], "expired")], "revoked": [(codes[1], "revoked")]}
    assert all("farmer" not in key for key in response.get_json()["items"][0])


# --- revoke -------------------------------------------------------------------------------------------------


def test_a_sponsor_revokes_only_its_own_unused_codes(app, client, world, session):
    a, b = world["a"], world["b"]
    codes = buy(app, a, "M", 3)
    other = buy(app, b, "M", 1)[0]
    set_code(app, codes[1], status="redeemed", redeemed_at=utcnow())
    set_code(app, codes[2], expires_at=utcnow() - timedelta(days=1))
    headers = world["sponsor_a"]
    url = f"/api/v1/sponsors/{a}/codes/{{}}/revoke"

    spaced = codes[0].lower().replace("-", " ")
    first = client.post(url.format(spaced), headers=headers)
    assert first.status_code == 200 and first.get_json()["status"] == "revoked"
    assert session.scalar(select(SponsorCode.status).where(SponsorCode.code == codes[0])) == "revoked"
    assert client.post(url.format(codes[0]), headers=headers).status_code == 409  # revoked already
    assert client.post(url.format(codes[1]), headers=headers).status_code == 409  # redeemed
    assert client.post(url.format(codes[2]), headers=headers).status_code == 409  # expired
    assert client.post(url.format(other), headers=headers).status_code == 404  # B's code under A
    assert client.post(url.format("AGRI-ZZZZ-ZZZZ"), headers=headers).status_code == 404
    assert client.post(url.format("' OR 1=1 --"), headers=headers).status_code == 404
    assert session.scalar(select(SponsorCode.status).where(SponsorCode.code == other)) == "unused"
    assert "sponsor.code.revoke" in session.scalars(select(AuditLog.action)).all()


# --- statistics ------------------------------------------------------------------------------------------


def test_sponsor_statistics_count_the_sponsors_codes_by_status_and_analyses_by_day(app, client, world):
    a = world["a"]
    codes = buy(app, a, "M", 5)
    buy(app, world["b"], "XL", 7)
    set_code(app, codes[0], status="redeemed", redeemed_at=utcnow())
    set_code(app, codes[1], status="revoked", revoked_at=utcnow())
    set_code(app, codes[2], expires_at=utcnow() - timedelta(days=1))
    farmer = add_farmer(app)
    now = utcnow()
    recent = [now - timedelta(minutes=5), now - timedelta(days=2), now - timedelta(days=2, minutes=1)]
    add_analysis(app, a, farmer, created_at=recent[0], crop="domates", health_score=4)
    add_analysis(app, a, farmer, created_at=recent[1], crop="biber", health_score=9)
    add_analysis(app, a, farmer, created_at=recent[2], crop="domates", health_score=4)
    add_analysis(app, a, farmer, created_at=now - timedelta(days=40), crop="domates", health_score=None)
    add_analysis(app, world["b"], farmer, created_at=now, crop="mısır", health_score=1)

    stats = client.get(f"/api/v1/sponsors/{a}/statistics", headers=world["sponsor_a"]).get_json()

    assert stats["tiers"] == ["M"]
    assert stats["codes"] == {"bought": 5, "unused": 2, "redeemed": 1, "expired": 1, "revoked": 1}
    per_day = {d["date"]: d["count"] for d in stats["analyses"]["per_day"]}
    assert len(per_day) == 30 and sum(per_day.values()) == 3
    assert per_day[recent[0].astimezone(ISTANBUL).date().isoformat()] >= 1
    assert stats["analyses"]["total"] == 4
    assert stats["analyses"]["crops"] == [{"crop": "domates", "count": 3}, {"crop": "biber", "count": 1}]
    assert stats["analyses"]["health_scores"] == {**{str(i): 0 for i in range(1, 11)}, "4": 2, "9": 1}


def test_statistics_count_analyses_per_istanbul_day(app, world, session):
    a = world["a"]
    farmer = add_farmer(app)
    now = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)  # 02:30 on the 11th in Istanbul
    add_analysis(app, a, farmer, created_at=datetime(2026, 3, 10, 22, 53, tzinfo=UTC))  # 01:53 on the 11th
    add_analysis(app, a, farmer, created_at=datetime(2026, 3, 10, 20, 59, tzinfo=UTC))  # 23:59 on the 10th
    add_analysis(app, a, farmer, created_at=datetime(2026, 2, 9, 21, 0, tzinfo=UTC))  # 00:00 on 10 Feb: 30th day
    add_analysis(app, a, farmer, created_at=datetime(2026, 2, 9, 20, 59, tzinfo=UTC))  # 23:59 on 9 Feb: before

    per_day = compute_statistics(session, a, now)["analyses"]["per_day"]

    assert per_day[0]["date"] == "2026-02-10" and per_day[-1]["date"] == "2026-03-11" and len(per_day) == 30
    counted = {d["date"]: d["count"] for d in per_day if d["count"]}
    assert counted == {"2026-02-10": 1, "2026-03-10": 1, "2026-03-11": 1}


def test_statistics_are_cached_and_invalidated(app, client, world):
    a = world["a"]
    codes = buy(app, a, "M", 3)
    redis = app.extensions["redis"]
    url = f"/api/v1/sponsors/{a}/statistics"

    assert client.get(url, headers=world["sponsor_a"]).get_json()["analyses"]["total"] == 0
    assert 0 < redis.ttl(stats_key(a)) <= 60
    add_analysis(app, a, add_farmer(app))
    assert client.get(url, headers=world["admin"]).get_json()["analyses"]["total"] == 0  # cached

    invalidate_stats(redis, a)
    assert redis.get(stats_key(a)) is None
    assert client.get(url, headers=world["sponsor_a"]).get_json()["analyses"]["total"] == 1

    assert client.post(f"/api/v1/sponsors/{a}/codes/{codes[0]}/revoke", headers=world["sponsor_a"]).status_code == 200
    assert client.get(url, headers=world["sponsor_a"]).get_json()["codes"]["revoked"] == 1  # revoke invalidates
    client.post(f"/api/v1/sponsors/{a}/purchases", headers=world["admin"], json={"tier": "L", "quantity": 2})
    stats = client.get(url, headers=world["sponsor_a"]).get_json()
    assert (stats["codes"]["bought"], stats["tiers"]) == (5, ["M", "L"])  # a purchase invalidates too
    approved = client.post(f"/api/v1/purchase-requests/{file_request(app, a, 'XL', 4)}/approve", headers=world["admin"])
    assert approved.status_code == 200
    stats = client.get(url, headers=world["sponsor_a"]).get_json()
    assert (stats["codes"]["bought"], stats["tiers"]) == (9, ["M", "L", "XL"])  # and so does an approved request


# --- hostile filters -----------------------------------------------------------------------------------------

NASTY = ["' OR 1=1 --", "1; DROP TABLE sponsors", "%", "_", "\\", "%' --", "\x00", "ä" * 201, "[]", "{}", "-1",
         "99999999999999999999999", "1e9", "null", "true"]


def test_sql_metacharacters_and_wrong_types_in_filters_never_500(app, client, world):
    a = world["a"]
    [code] = buy(app, a, "XL", 1)
    add_analysis(app, a, add_farmer(app), code=code)
    redis = app.extensions["redis"]
    checks = [
        ("/api/v1/sponsors", world["admin"], ("q", "page", "per_page")),
        (f"/api/v1/sponsors/{a}/codes", world["sponsor_a"], ("status", "page", "per_page")),
        (f"/api/v1/sponsors/{a}/analyses", world["sponsor_a"], ("crop", "since", "until", "page", "per_page")),
    ]
    for path, headers, params in checks:
        for param in params:
            for key in redis.scan_iter("admin:requests:*"):  # stay under the per-user rate limit
                redis.delete(key)
            for value in NASTY:
                response = client.get(path, headers=headers, query_string={param: value})
                assert response.status_code in (200, 400), (path, param, value, response.status_code)
                assert response.is_json
    # every query above came back; the tables are intact
    assert client.get("/api/v1/sponsors", headers=world["admin"]).get_json()["total"] == 2
    for path in ("/api/v1/sponsors/99999999999999999999999", f"/api/v1/sponsors/{a}/analyses/99999999999999999999999",
                 "/api/v1/sponsors/abc", f"/api/v1/sponsors/{a}/analyses/abc"):
        assert client.get(path, headers=world["admin"]).status_code == 404, path


def test_literal_matching_of_like_wildcards(app, client, world):
    make_sponsor(app, "100% Organik")
    listing = client.get("/api/v1/sponsors", headers=world["admin"], query_string={"q": "%"}).get_json()
    assert [s["name"] for s in listing["items"]] == ["100% Organik"]
    assert client.get("/api/v1/sponsors", headers=world["admin"], query_string={"q": "_"}).get_json()["total"] == 0


@pytest.mark.parametrize("typed", ["TARIM", "tarim", "Tarım", "TARİM", "tarım a.ş"])
def test_the_sponsor_search_folds_case_and_turkish_letters(app, client, typed):
    make_sponsor(app, "Demo Tarım A.Ş.")
    make_sponsor(app, "Bereket Gübre")
    admin = bearer(token_for(app, client, "admin"))
    found = client.get("/api/v1/sponsors", query_string={"q": typed}, headers=admin).get_json()
    assert [s["name"] for s in found["items"]] == ["Demo Tarım A.Ş."], typed
    assert client.get("/api/v1/sponsors", query_string={"q": "%"}, headers=admin).get_json()["total"] == 0
