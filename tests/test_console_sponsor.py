"""The console's sponsor pages (flask test client): who may open them, the dashboard's figures and charts,
codes (filter, CSV, revoke), purchase requests, the sponsored analyses as the tier of each one's code
shows them, and messaging a farmer within the daily cap. Also the pure parts beneath them: the SVG
charts and the dashboard's statistics."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select, update

from console.charts import BarChart, bar_chart_svg, label_every, nice_ticks
from console.sponsor import recommendation_groups
from devtools.sponsor_demo import seed_sponsor_activity
from models import Analysis, AuditLog, Farmer, Message, PurchaseRequest, SponsorCode, Subscription, utcnow
from services import quota, sponsorship
from services.analysis_result import normalise
from services.sponsor_messages import TEMPLATE
from services.sponsor_stats import Interval, activity_series, bucket_starts, compute_statistics, sponsor_figures
from services.sponsorship import RedeemOutcome
from services.whatsapp.account import TemplateStatus
from services.whatsapp.health import set_template_status
from tests.admin_helpers import PASSWORD, make_sponsor, make_staff
from tests.console_helpers import console_login, csrf, form_nonce, post, post_twice_at_once
from tests.helpers import set_runtime
from translations.templates import TEMPLATES

RESULT = {"recommendations": {"immediate": [{"action": "Bakırlı ilaç uygula", "priority": "high"}],
                              "preventive": ["Sulamayı sabah yap"]},
          "summary": {"overall_health_score": 4}}


@pytest.fixture(autouse=True)
def tiers(app):
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)


# --- helpers ----------------------------------------------------------------------------------------------


def sign_in(client, email: str) -> None:
    response = console_login(client, email)
    assert response.status_code == 302, response.get_data(as_text=True)[:500]


def buy(app, sponsor_id: int, tier: str, quantity: int = 1, valid_days: int = 90) -> list[str]:
    with app.extensions["db"].session() as s, s.begin():
        _, codes = sponsorship.create_purchase(s, sponsor_id, tier, quantity, valid_days, 30, utcnow())
    return sorted(codes)


def add_farmer(app, phone: str, name: str = "Mehmet Yılmaz", **fields: Any) -> int:
    with app.extensions["db"].session() as s, s.begin():
        farmer = Farmer(phone=phone, profile_name=name, created_at=utcnow(), updated_at=utcnow(), **fields)
        s.add(farmer)
        s.flush()
        return farmer.id


def add_analysis(app, sponsor_id: int, farmer_id: int, code: str | None = None, **fields: Any) -> int:
    """A completed analysis attributed to the sponsor, paid for by `code` (redeemed here) when given."""
    now = fields.pop("now", utcnow())
    sub_id = None
    with app.extensions["db"].session() as s, s.begin():
        if code is not None:
            sub_id = s.scalar(select(Subscription.id).join(SponsorCode, SponsorCode.id == Subscription.code_id)
                              .where(SponsorCode.code == code))
            if sub_id is None:
                result = sponsorship.redeem(s, farmer_id, code, now)
                assert result.outcome in (RedeemOutcome.OK, RedeemOutcome.QUEUED), result
                sub_id = result.subscription_id
        row = {"crop": "domates", "location_text": "Kumluca, Antalya", "status": "completed", "health_score": 4,
               "primary_concern": "Erken yanıklık", "diseases": ["Erken yanıklık"], "pests": [], "result": RESULT,
               "created_at": now, "received_at": now, "completed_at": now, **fields}
        analysis = Analysis(farmer_id=farmer_id, sponsor_id=sponsor_id, subscription_id=sub_id, **row)
        s.add(analysis)
        s.flush()
        return analysis.id


def audit_actions(session) -> list[str]:
    return list(session.scalars(select(AuditLog.action).order_by(AuditLog.id)))


@pytest.fixture
def world(app, client) -> dict[str, Any]:
    """Sponsors A and B, a user of each, an admin and a support user; A has analyses paid for by S, M, L
    and XL codes (one farmer each; the XL farmer has opted out)."""
    a, b = make_sponsor(app, "Anadolu Tohum"), make_sponsor(app, "Bereket Gübre")
    make_staff(app, "sponsor", "a@sponsor.test", sponsor_id=a)
    make_staff(app, "sponsor", "b@sponsor.test", sponsor_id=b)
    make_staff(app, "admin", "admin@ziraai.test")
    make_staff(app, "support", "support@ziraai.test")
    analyses = {}
    for i, tier in enumerate(("S", "M", "L", "XL")):
        [code] = buy(app, a, tier)
        farmer = add_farmer(app, f"+90532111220{i}", f"Çiftçi {tier}",
                            opted_out_at=utcnow() if tier == "XL" else None)
        analyses[tier] = add_analysis(app, a, farmer, code, crop=f"ürün-{tier.lower()}")
    return {"a": a, "b": b, "analyses": analyses}


# --- the charts ----------------------------------------------------------------------------------------------


def test_nice_ticks_are_round_and_cover_the_maximum():
    assert nice_ticks(0) == [0, 1]
    assert nice_ticks(3) == [0, 1, 2, 3]
    assert nice_ticks(7) == [0, 2, 4, 6, 8]
    assert nice_ticks(130) == [0, 50, 100, 150]
    assert label_every(30) == 5 and label_every(12) == 2 and label_every(5) == 1


def test_a_chart_is_an_accessible_svg_with_title_description_and_axis_labels():
    chart = BarChart("c1", "Analyses <last 12 weeks>", "12 in total.", "Week", "Analyses",
                     ("01.12", "08.12"), (5, 7))
    svg = str(bar_chart_svg(chart))

    assert svg.startswith("<svg") and 'role="img"' in svg and 'aria-labelledby="c1-title c1-desc"' in svg
    assert '<title id="c1-title">Analyses &lt;last 12 weeks&gt;</title>' in svg  # escaped
    assert '<desc id="c1-desc">12 in total. 01.12: 5, 08.12: 7</desc>' in svg
    assert svg.count('class="bar"') == 2 and ">Week</text>" in svg and 'rotate(-90' in svg
    assert "style=" not in svg and "<script" not in svg  # the console's CSP allows neither
    with pytest.raises(ValueError):
        bar_chart_svg(BarChart("c2", "t", "d", "x", "y", ("a",), (1, 2)))


def test_recommendations_are_grouped_as_the_farmers_report_reads_them():
    found = normalise({"recommendations": {
        "immediate": [{"action": "Bakırlı ilaç uygula", "details": "7 günde bir"}],
        "preventive": ["Sulamayı sabah yap"], "monitoring": [{"parameter": "Nem"}]}}).recommendations
    assert recommendation_groups(found) == [("Now", ["Bakırlı ilaç uygula - 7 günde bir"]),
                                            ("To prevent it", ["Sulamayı sabah yap"]), ("To watch", ["Nem"])]
    assert recommendation_groups(None) == []


# --- the statistics ------------------------------------------------------------------------------------------


def test_buckets_are_istanbul_days_monday_weeks_and_calendar_months():
    today = date(2026, 12, 6)  # a Sunday
    assert bucket_starts(today, Interval.DAY)[-1] == today and len(bucket_starts(today, Interval.DAY)) == 30
    weeks = bucket_starts(today, Interval.WEEK)
    assert weeks[-1] == date(2026, 11, 30) and weeks[0] == date(2026, 9, 14) and len(weeks) == 12
    months = bucket_starts(today, Interval.MONTH)
    assert months[0] == date(2026, 1, 1) and months[-1] == date(2026, 12, 1) and len(months) == 12


def test_redemptions_and_analyses_fall_in_the_istanbul_day_they_happened(app, session):
    sponsor = make_sponsor(app)
    [code] = buy(app, sponsor, "M")
    now = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    late_evening = datetime(2026, 12, 4, 22, 30, tzinfo=UTC)  # 01:30 on 5 December in Istanbul
    add_analysis(app, sponsor, add_farmer(app, "+905321112299"), code, now=late_evening)

    days = {b.start: b for b in activity_series(session, sponsor, Interval.DAY, now)}

    assert (days[date(2026, 12, 5)].redemptions, days[date(2026, 12, 5)].analyses) == (1, 1)
    assert days[date(2026, 12, 4)].analyses == 0
    [week] = [b for b in activity_series(session, sponsor, Interval.WEEK, now) if b.analyses]
    assert week.start == date(2026, 11, 30)


def test_the_figures_count_codes_farmers_crops_provinces_and_diseases(app, client, session, world):
    a = world["a"]
    buy(app, a, "M", 3)
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(Analysis).where(Analysis.id == world["analyses"]["L"])
                  .values(created_at=utcnow() - timedelta(days=45),
                          location_text="Karaköy Mah. No:5, 42250 Selçuklu/Konya",
                          diseases=[{"name": "Külleme"}, "Erken yanıklık"]))
        s.execute(update(Analysis).where(Analysis.id == world["analyses"]["M"])
                  .values(diseases=[" Pas ", {"type": "Pas"}, {"other": 1}, 7, "", "Erken yanıklık"]))
        s.execute(update(Analysis).where(Analysis.id == world["analyses"]["S"]).values(diseases={"not": "a list"}))

    figures = sponsor_figures(session, a, utcnow())

    assert (figures.codes_bought, figures.codes_redeemed, figures.codes_unused) == (7, 4, 3)
    assert figures.codes_distributed == 4  # the redeemed ones; nothing was exported yet
    assert (figures.farmers_reached, figures.farmers_active, figures.analyses) == (4, 3, 4)
    assert dict(figures.provinces) == {"Antalya": 3, "Konya": 1}
    assert dict(figures.diseases) == {"Erken yanıklık": 3, "Külleme": 1, "Pas": 1}  # each analysis once per name
    assert len(figures.crops) == 4


def test_a_refunded_or_unfinished_analysis_is_not_counted_anywhere_a_sponsor_looks(app, session, world):
    a = world["a"]
    [m1, m2] = buy(app, a, "M", 2)
    failed = add_analysis(app, a, add_farmer(app, "+905321112290"), m1, crop="bugday", location_text="Konya",
                          status="failed", health_score=None, diseases=[], completed_at=None)
    add_analysis(app, a, add_farmer(app, "+905321112291"), m2, crop="misir", location_text="Bursa",
                 status="processing", health_score=None, diseases=[], completed_at=None)
    now = utcnow()

    figures = sponsor_figures(session, a, now)
    stats = compute_statistics(session, a, now)

    assert (figures.analyses, figures.farmers_active) == (4, 4)  # the world's four completed ones
    assert figures.farmers_reached == 6  # both new farmers redeemed a code: reached, not active
    assert {c for c, _ in figures.crops} == {"ürün-s", "ürün-m", "ürün-l", "ürün-xl"}
    assert dict(figures.provinces) == {"Antalya": 4}
    assert sum(b.analyses for b in activity_series(session, a, Interval.DAY, now)) == 4
    assert stats["analyses"]["total"] == 4 and sum(d["count"] for d in stats["analyses"]["per_day"]) == 4
    assert {c["crop"] for c in stats["analyses"]["crops"]} == {"ürün-s", "ürün-m", "ürün-l", "ürün-xl"}
    assert session.get(Analysis, failed).status == "failed"


# --- who may open the pages -----------------------------------------------------------------------------------


def pages_of(sponsor_id: int, world: dict[str, Any]) -> list[str]:
    m = world["analyses"]["M"]
    return [f"/console/sponsors/{sponsor_id}", f"/console/sponsors/{sponsor_id}/codes",
            f"/console/sponsors/{sponsor_id}/codes.csv", f"/console/sponsors/{sponsor_id}/purchase-requests",
            f"/console/sponsors/{sponsor_id}/analyses", f"/console/sponsors/{sponsor_id}/analyses.csv",
            f"/console/sponsors/{sponsor_id}/analyses/{m}"]


def test_a_sponsor_opens_each_of_its_own_pages(client, world):
    sign_in(client, "a@sponsor.test")
    for path in pages_of(world["a"], world):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "Content-Security-Policy" in response.headers
    start = client.get("/console/sponsor")
    assert start.status_code == 302 and start.headers["Location"].endswith(f"/console/sponsors/{world['a']}")


def test_another_sponsors_pages_are_404_for_a_sponsor(client, world):
    sign_in(client, "b@sponsor.test")
    for path in pages_of(world["a"], world):
        assert client.get(path).status_code == 404, path
    for path in (f"/console/sponsors/{world['a']}/codes/X/revoke",
                 f"/console/sponsors/{world['a']}/purchase-requests",
                 f"/console/sponsors/{world['a']}/analyses/{world['analyses']['L']}/message"):
        assert client.post(path, data={"csrf_token": csrf(client), "text": "x", "quantity": "1",
                                       "tier": "M"}).status_code == 404, path


def test_a_sponsor_cannot_open_another_sponsors_analysis_through_its_own_id(client, world, app):
    other = add_analysis(app, world["b"], add_farmer(app, "+905321112277"), buy(app, world["b"], "XL")[0])
    sign_in(client, "a@sponsor.test")
    assert client.get(f"/console/sponsors/{world['a']}/analyses/{other}").status_code == 404
    assert client.get(f"/console/sponsors/{world['a']}/analyses/{2**40}").status_code == 404
    assert client.get(f"/console/sponsors/{2**40}").status_code == 404


def test_support_gets_404_on_every_sponsor_page(client, world):
    sign_in(client, "support@ziraai.test")
    for path in ["/console/sponsor", *pages_of(world["a"], world)]:
        assert client.get(path).status_code == 404, path


def test_an_admin_opens_any_sponsors_pages_and_a_missing_one_is_404(client, world):
    sign_in(client, "admin@ziraai.test")
    for sponsor in (world["a"], world["b"]):
        for path in pages_of(sponsor, world)[:5]:
            assert client.get(path).status_code == 200, path
    listing = client.get("/console/sponsor").get_data(as_text=True)
    assert "Anadolu Tohum" in listing and "Bereket Gübre" in listing
    assert client.get("/console/sponsors/999999").status_code == 404


def test_without_a_session_the_pages_send_to_the_login(client, world):
    response = client.get(f"/console/sponsors/{world['a']}/codes")
    assert response.status_code == 302 and "/console/login" in response.headers["Location"]


def test_hostile_query_and_form_values_get_a_page_never_a_5xx(client, session, world):
    sign_in(client, "a@sponsor.test")
    base = f"/console/sponsors/{world['a']}"
    for path in (f"{base}/codes?page=²", f"{base}/codes?page={'9' * 5000}", f"{base}/codes?page=-1&status=' OR 1=1",
                 f"{base}/analyses?crop=%25_%27;--&page=0", f"{base}/analyses?crop={'ç' * 5000}",
                 f"{base}?interval=%00", f"{base}/purchase-requests?page=1e9"):
        assert client.get(path).status_code == 200, path
    for quantity in ("²", "١٢", "9" * 5000, "-5", "1.5", ""):
        response = client.post(f"{base}/purchase-requests", data={"csrf_token": csrf(client), "tier": "M",
                                                                   "quantity": quantity, "note": "n" * 600})
        assert response.status_code == 422, quantity
    assert session.scalar(select(func.count()).select_from(PurchaseRequest)) == 0
    assert client.post(f"{base}/codes/{'A' * 300}/revoke", data={"csrf_token": csrf(client)}).status_code == 404


# --- dashboard --------------------------------------------------------------------------------------------------


def test_the_dashboard_shows_the_figures_and_two_charts_per_interval(client, world):
    sign_in(client, "a@sponsor.test")
    for interval, bars in (("day", 30), ("week", 12), ("month", 12)):
        page = client.get(f"/console/sponsors/{world['a']}?interval={interval}").get_data(as_text=True)
        assert page.count('role="img"') == 2, interval
        assert page.count('class="bar"') == 2 * bars, interval
        assert re.search(r'id="fig-bought">\s*4<', page) and re.search(r'id="fig-redeemed">\s*4<', page)
        assert re.search(r'id="fig-reached">\s*4<', page) and re.search(r'id="fig-active">\s*4<', page)
        assert "Antalya" in page and "Erken yanıklık" in page
    fallback = client.get(f"/console/sponsors/{world['a']}?interval=decade")
    assert fallback.status_code == 200 and fallback.get_data(as_text=True).count('class="bar"') == 24


def test_the_dashboard_is_in_turkish_by_default_and_english_when_chosen(client, world):
    sign_in(client, "a@sponsor.test")
    turkish = client.get(f"/console/sponsors/{world['a']}").get_data(as_text=True)
    assert 'lang="tr"' in turkish and "Dağıtılan" in turkish
    client.post("/console/language", data={"locale": "en", "csrf_token": csrf(client), "next": "/console"})
    english = client.get(f"/console/sponsors/{world['a']}").get_data(as_text=True)
    assert 'lang="en"' in english and "Distributed (exported)" in english


# --- codes ---------------------------------------------------------------------------------------------------------


def test_codes_are_listed_and_filtered_by_status(app, client, world):
    unused = buy(app, world["a"], "M", 2)
    sign_in(client, "a@sponsor.test")
    everything = client.get(f"/console/sponsors/{world['a']}/codes").get_data(as_text=True)
    assert everything.count("<tr data-code=") == 6
    only_unused = client.get(f"/console/sponsors/{world['a']}/codes?status=unused").get_data(as_text=True)
    assert only_unused.count("<tr data-code=") == 2 and all(c in only_unused for c in unused)
    assert client.get(f"/console/sponsors/{world['a']}/codes?status=nonsense").status_code == 200


def test_the_csv_is_the_apis_and_marks_the_codes_distributed(app, client, session, world):
    buy(app, world["a"], "L", 2)
    sign_in(client, "a@sponsor.test")
    response = client.get(f"/console/sponsors/{world['a']}/codes.csv")

    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == f'attachment; filename="sponsor-{world["a"]}-codes.csv"'
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert list(rows[0]) == ["code", "tier", "status", "expires_at", "redeemed_at"] and len(rows) == 6
    assert sponsor_figures(session, world["a"], utcnow()).codes_distributed == 6
    assert "sponsor.codes.export" in audit_actions(session)
    page = client.get(f"/console/sponsors/{world['a']}").get_data(as_text=True)
    assert re.search(r'id="fig-distributed">\s*6<', page)


def test_revoking_needs_the_csrf_token_and_is_audited(app, client, session, world):
    [code] = buy(app, world["a"], "M")
    sign_in(client, "a@sponsor.test")
    path = f"/console/sponsors/{world['a']}/codes/{code}/revoke"

    assert client.post(path).status_code == 400
    assert session.scalar(select(SponsorCode.status).where(SponsorCode.code == code)) == "unused"

    response = client.post(path, data={"csrf_token": csrf(client)}, follow_redirects=True)
    assert response.status_code == 200 and code in response.get_data(as_text=True)
    assert session.scalar(select(SponsorCode.status).where(SponsorCode.code == code)) == "revoked"
    assert audit_actions(session).count("sponsor.code.revoke") == 1


def test_revoking_and_exporting_audit_in_the_callers_transaction_saying_the_surface(app, session, world):
    [code, other] = buy(app, world["a"], "M", 2)
    db = app.extensions["db"]
    with db.session() as s, s.begin():
        assert sponsorship.revoke_sponsor_code(s, world["a"], code, utcnow(), via="console").revoked
        sponsorship.export_codes_csv(s, world["a"], utcnow())
    with db.session() as s:
        with s.begin():
            assert sponsorship.revoke_sponsor_code(s, world["a"], other, utcnow()).revoked
            s.rollback()  # the caller gives up: the revocation and its audit row go together
    assert not sponsorship.revoke_sponsor_code(session, world["a"], code, utcnow()).revoked  # already revoked

    codes = len(session.scalars(select(SponsorCode.id).where(SponsorCode.sponsor_id == world["a"])).all())
    rows = session.execute(select(AuditLog.action, AuditLog.details).order_by(AuditLog.id)).all()
    assert [(a, d) for a, d in rows if a.startswith("sponsor.code")] == [
        ("sponsor.code.revoke", {"sponsor_id": world["a"], "code": code, "via": "console"}),
        ("sponsor.codes.export", {"codes": codes})]
    assert session.scalar(select(SponsorCode.status).where(SponsorCode.code == other)) == "unused"


def test_a_redeemed_code_cannot_be_revoked_and_an_unknown_one_is_404(app, client, session, world):
    redeemed = session.scalar(select(SponsorCode.code).where(SponsorCode.sponsor_id == world["a"],
                                                              SponsorCode.status == "redeemed").limit(1))
    sign_in(client, "a@sponsor.test")
    response = client.post(f"/console/sponsors/{world['a']}/codes/{redeemed}/revoke",
                           data={"csrf_token": csrf(client)}, follow_redirects=True)
    assert 'class="flash error"' in response.get_data(as_text=True)
    assert session.scalar(select(SponsorCode.status).where(SponsorCode.code == redeemed)) == "redeemed"
    assert client.post(f"/console/sponsors/{world['a']}/codes/AGRI-ZZZZ-ZZZZ/revoke",
                       data={"csrf_token": csrf(client)}).status_code == 404
    [foreign] = buy(app, world["b"], "M")
    assert client.post(f"/console/sponsors/{world['a']}/codes/{foreign}/revoke",
                       data={"csrf_token": csrf(client)}).status_code == 404
    assert session.scalar(select(SponsorCode.status).where(SponsorCode.code == foreign)) == "unused"


# --- purchase requests -------------------------------------------------------------------------------------------


def test_a_sponsor_files_a_purchase_request_and_sees_it_pending(client, session, world):
    sign_in(client, "a@sponsor.test")
    path = f"/console/sponsors/{world['a']}/purchase-requests"
    response = client.post(path, data={"csrf_token": csrf(client), "tier": "L", "quantity": "250",
                                        "code_valid_days": "120", "subscription_days": "60", "note": "Ekim kampanyası"})
    assert response.status_code == 302

    filed = session.scalars(select(PurchaseRequest)).one()
    assert (filed.sponsor_id, filed.quantity, filed.code_valid_days, filed.subscription_days, filed.status) == (
        world["a"], 250, 120, 60, "pending")
    assert "sponsor.purchase_request.create" in audit_actions(session)
    page = client.get(path).get_data(as_text=True)
    assert "250" in page and "Ekim kampanyası" in page


def test_a_purchase_request_posted_twice_at_once_or_again_files_one_request(app, client, session, world):
    sign_in(client, "a@sponsor.test")
    path = f"/console/sponsors/{world['a']}/purchase-requests"
    terms = {"tier": "L", "quantity": "250", "code_valid_days": "120", "subscription_days": "60"}

    at_once = post_twice_at_once(app, client, path, {**terms, "form_nonce": form_nonce(client.get(path).get_data(
        as_text=True), path)})
    nonce = form_nonce(client.get(path).get_data(as_text=True), path)
    first = client.post(path, data={"csrf_token": csrf(client), **terms, "form_nonce": nonce})
    again = client.post(path, data={"csrf_token": csrf(client), **terms, "form_nonce": nonce}, follow_redirects=True)

    assert [a.status_code for a in at_once] == [302, 302] and first.status_code == 302
    assert again.request.path == path and "Bu form zaten gönderildi" in again.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(PurchaseRequest)) == 2  # one per form shown
    assert audit_actions(session).count("sponsor.purchase_request.create") == 2


def test_a_wrong_purchase_request_is_shown_again_with_its_message(client, session, world):
    sign_in(client, "a@sponsor.test")
    response = client.post(f"/console/sponsors/{world['a']}/purchase-requests",
                           data={"csrf_token": csrf(client), "tier": "XXL", "quantity": "0"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and 'id="err-tier"' in page and 'id="err-quantity"' in page
    assert session.scalar(select(func.count()).select_from(PurchaseRequest)) == 0


def test_an_admin_sees_the_requests_but_does_not_file_one(client, session, world):
    sign_in(client, "admin@ziraai.test")
    path = f"/console/sponsors/{world['a']}/purchase-requests"
    assert client.get(path).status_code == 200
    assert client.post(path, data={"csrf_token": csrf(client), "tier": "M", "quantity": "5"}).status_code == 404
    assert session.scalar(select(func.count()).select_from(PurchaseRequest)) == 0


# --- sponsored analyses and their tiers --------------------------------------------------------------------------


def test_the_list_shows_each_analysis_as_its_own_codes_tier_allows(client, session, world):
    sign_in(client, "a@sponsor.test")
    page = client.get(f"/console/sponsors/{world['a']}/analyses").get_data(as_text=True)

    assert page.count("<tr data-tier=") == 3  # the S analysis counts in the totals only
    assert 'data-tier="S"' not in page
    assert "Çiftçi M" not in page and "+90 532 111 22 01" not in page  # M: no name, no phone
    assert "Çiftçi L" in page and "+90 532 *** ** 02" in page and "+905321112202" not in page
    assert "Çiftçi XL" in page and "+905321112203" in page
    assert "sponsor.analyses.read" in audit_actions(session)


def crop_world(app, world) -> tuple[int, int]:
    """Sponsor A's M analyses of a cucumber (stored by its key) and of a crop the farmer typed."""
    [m1, m2] = buy(app, world["a"], "M", 2)
    cucumber = add_analysis(app, world["a"], add_farmer(app, "+905321112280"), m1, crop="salatalik")
    typed = add_analysis(app, world["a"], add_farmer(app, "+905321112281"), m2, crop="Şeker pancarı")
    return cucumber, typed


def test_a_known_crop_is_shown_by_its_name_in_the_readers_language_and_a_typed_one_as_typed(app, client, world):
    cucumber, typed = crop_world(app, world)
    a = world["a"]
    sign_in(client, "a@sponsor.test")
    for language, name in (("tr", "Salatalık"), ("en", "Cucumber")):
        post(client, "/console/language", {"locale": language, "next": "/console"})
        dashboard = client.get(f"/console/sponsors/{a}").get_data(as_text=True)
        crops = dashboard[dashboard.index('id="top-crops"'):]
        crops = crops[:crops.index("</table>")]
        listing = client.get(f"/console/sponsors/{a}/analyses").get_data(as_text=True)
        page = client.get(f"/console/sponsors/{a}/analyses/{cucumber}").get_data(as_text=True)
        rows = list(csv.DictReader(io.StringIO(client.get(f"/console/sponsors/{a}/analyses.csv")
                                               .get_data(as_text=True))))
        for shown in (crops, listing, page):
            assert f">{name}<" in shown and "salatalik" not in shown, language
        assert ">Şeker pancarı<" in crops and ">Şeker pancarı<" in listing
        assert {r["id"]: r["crop"] for r in rows}[str(cucumber)] == name
        assert {r["id"]: r["crop"] for r in rows}[str(typed)] == "Şeker pancarı"


@pytest.mark.parametrize("given", ["salatalik", "Salatalık", "SALATALIK", "salatalık", "Cucumber", "cucum"])
def test_the_crop_filter_finds_an_analysis_by_the_name_shown_or_its_key(app, client, world, given):
    cucumber, _ = crop_world(app, world)
    a = world["a"]
    sign_in(client, "a@sponsor.test")

    listing = client.get(f"/console/sponsors/{a}/analyses", query_string={"crop": given}).get_data(as_text=True)
    exported = client.get(f"/console/sponsors/{a}/analyses.csv", query_string={"crop": given})

    assert re.findall(r'<tr data-tier="[A-Z]+" data-id="(\d+)"', listing) == [str(cucumber)], given
    assert [r["id"] for r in csv.DictReader(io.StringIO(exported.get_data(as_text=True)))] == [str(cucumber)]


def test_the_crop_filter_folds_turkish_letters_of_a_typed_crop(app, client, world):
    _, typed = crop_world(app, world)
    sign_in(client, "a@sponsor.test")
    listing = client.get(f"/console/sponsors/{world['a']}/analyses", query_string={"crop": "SEKER PANCARI"})
    assert re.findall(r'<tr data-tier="[A-Z]+" data-id="(\d+)"', listing.get_data(as_text=True)) == [str(typed)]


def test_the_analyses_page_links_the_apis_csv_of_its_filter_audited_from_the_console(client, session, world):
    sign_in(client, "a@sponsor.test")
    page = client.get(f"/console/sponsors/{world['a']}/analyses?crop=%C3%BCr%C3%BCn-l").get_data(as_text=True)
    link = re.search(r'href="([^"]*/analyses\.csv[^"]*)"', page)
    assert link is not None
    response = client.get(html.unescape(link.group(1)))
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(r["id"], r["tier"], r["farmer_name"]) for r in rows] == [(str(world["analyses"]["L"]), "L", "Çiftçi L")]
    exported = session.scalars(select(AuditLog).where(AuditLog.action == "sponsor.analyses.export")).one()
    assert exported.details["via"] == "console" and exported.details["ids"] == [world["analyses"]["L"]]


def test_an_m_tier_analysis_shows_no_name_or_phone_and_offers_no_message(client, world):
    sign_in(client, "a@sponsor.test")
    page = client.get(f"/console/sponsors/{world['a']}/analyses/{world['analyses']['M']}").get_data(as_text=True)
    assert 'id="farmer-hidden"' in page and "Çiftçi M" not in page and "111 22 01" not in page
    assert "+905321112201" not in page and 'id="message"' not in page and "Bakırlı" not in page
    response = client.post(f"/console/sponsors/{world['a']}/analyses/{world['analyses']['M']}/message",
                           data={"csrf_token": csrf(client), "text": "Merhaba"})
    assert response.status_code == 404


def test_an_l_tier_analysis_shows_the_masked_phone_and_the_recommendations(client, session, world):
    sign_in(client, "a@sponsor.test")
    page = client.get(f"/console/sponsors/{world['a']}/analyses/{world['analyses']['L']}").get_data(as_text=True)
    assert "Çiftçi L" in page and "+90 532 *** ** 02" in page and "+905321112202" not in page
    assert "Bakırlı ilaç uygula" in page and 'id="message"' in page and "Whole report" not in page
    row = session.scalars(select(AuditLog).where(AuditLog.action == "sponsor.analysis.read")).one()
    assert row.record_id == str(world["analyses"]["L"]) and row.details["tier"] == "L"


def test_an_xl_tier_analysis_shows_the_full_phone_and_the_whole_report(client, world):
    sign_in(client, "a@sponsor.test")
    page = client.get(f"/console/sponsors/{world['a']}/analyses/{world['analyses']['XL']}").get_data(as_text=True)
    assert "+905321112203" in page and "overall_health_score" in page
    assert "opted out" in page or "almıyor" in page  # this farmer opted out: no form
    assert "<textarea" not in page


def test_the_console_and_the_api_apply_one_tier_table():
    import admin.sponsored_analyses as api
    import console.sponsor as pages
    from services import visibility

    for name in ("analysis_view", "paying_tier", "paying_tiers", "find_sponsored_analysis", "sponsored_analyses"):
        assert getattr(pages, name) is getattr(visibility, name), name
        assert getattr(api, name) is getattr(visibility, name), name


def test_an_s_tier_analysis_has_no_page(client, world):
    sign_in(client, "a@sponsor.test")
    assert client.get(f"/console/sponsors/{world['a']}/analyses/{world['analyses']['S']}").status_code == 404


# --- messaging ---------------------------------------------------------------------------------------------------


def sponsor_messages(session) -> int:
    return session.scalar(select(func.count()).select_from(Message).where(Message.template_name == TEMPLATE)) or 0


def test_a_message_to_an_l_tier_farmer_is_queued_and_audited(client, session, world):
    sign_in(client, "a@sponsor.test")
    path = f"/console/sponsors/{world['a']}/analyses/{world['analyses']['L']}"
    response = client.post(f"{path}/message", data={"csrf_token": csrf(client), "text": "Yeni ilaçlarımız\nçıktı"})
    assert response.status_code == 302
    assert sponsor_messages(session) == 1
    assert "sponsor.message.send" in audit_actions(session)
    assert re.search(r"1\D+10", client.get(path).get_data(as_text=True).split('id="cap"')[1][:200])


def message_form(client, world) -> tuple[str, str]:
    """The L analysis' page and its message form's one-time token, as the sponsor's browser has them."""
    path = f"/console/sponsors/{world['a']}/analyses/{world['analyses']['L']}"
    return path, form_nonce(client.get(path).get_data(as_text=True), f"{path}/message")


def test_a_message_form_posted_twice_at_once_queues_one_message(app, client, session, world):
    sign_in(client, "a@sponsor.test")
    path, nonce = message_form(client, world)

    answers = post_twice_at_once(app, client, f"{path}/message", {"text": "Yeni gübremiz çıktı", "form_nonce": nonce})

    assert [a.status_code for a in answers] == [302, 302]
    assert {a.headers["Location"] for a in answers} == {path}
    assert sponsor_messages(session) == 1
    assert audit_actions(session).count("sponsor.message.send") == 1
    assert re.search(r"1\D+10", client.get(path).get_data(as_text=True).split('id="cap"')[1][:200])


def test_a_message_form_sent_again_lands_on_the_analysis_saying_it_was_already_done(client, session, world):
    sign_in(client, "a@sponsor.test")
    path, nonce = message_form(client, world)
    form = {"csrf_token": csrf(client), "text": "Yeni gübremiz çıktı", "form_nonce": nonce}

    first = client.post(f"{path}/message", data=form)
    again = client.post(f"{path}/message", data=form, follow_redirects=True)

    assert first.status_code == 302 and again.status_code == 200 and again.request.path == path
    assert "Bu form zaten gönderildi; işlem ikinci kez yapılmadı." in again.get_data(as_text=True)
    assert sponsor_messages(session) == 1 and audit_actions(session).count("sponsor.message.send") == 1


def test_a_refused_message_lets_its_form_be_sent_again(client, session, world):
    sign_in(client, "a@sponsor.test")
    path, nonce = message_form(client, world)
    form = {"csrf_token": csrf(client), "form_nonce": nonce}

    assert client.post(f"{path}/message", data={**form, "text": " "}).status_code == 422  # nothing done
    assert client.post(f"{path}/message", data={**form, "text": "Yeni gübremiz çıktı"}).status_code == 302
    assert sponsor_messages(session) == 1


def signed_out_elsewhere_then_posted(client, world) -> tuple[str, str]:
    """The sponsor's message form, sent from a tab left open after signing out in another one: the analysis'
    page and where the answer sends the browser."""
    sign_in(client, "a@sponsor.test")
    path, nonce = message_form(client, world)
    stale = csrf(client)
    post(client, "/console/logout")
    response = client.post(f"{path}/message", data={"csrf_token": stale, "form_nonce": nonce,
                                                    "text": "Yeni gübremiz çıktı, bekleriz"})
    assert response.status_code == 302
    return path, response.headers["Location"]


def test_a_message_typed_after_the_session_ended_comes_back_in_its_box_after_signing_in_again(
        client, session, world):
    path, login = signed_out_elsewhere_then_posted(client, world)
    assert "Yazdıklarınız saklandı" in client.get(login).get_data(as_text=True)

    signed = post(client, "/console/login", {"email": "a@sponsor.test", "password": PASSWORD,
                                              "next": parse_qs(urlsplit(login).query)["next"][0]})
    html = client.get(signed.headers["Location"]).get_data(as_text=True)

    assert signed.headers["Location"] == path
    assert ">Yeni gübremiz çıktı, bekleriz</textarea>" in html and "gönderilmedi" in html
    assert sponsor_messages(session) == 0


def test_the_daily_cap_stops_the_next_message_and_is_shown(app, client, session, world):
    set_runtime(app, sponsor_message_daily_cap=2)
    sign_in(client, "a@sponsor.test")
    path = f"/console/sponsors/{world['a']}/analyses/{world['analyses']['L']}/message"
    for _ in range(2):
        assert client.post(path, data={"csrf_token": csrf(client), "text": "Merhaba"}).status_code == 302
    refused = client.post(path, data={"csrf_token": csrf(client), "text": "Merhaba"})
    assert refused.status_code == 429 and sponsor_messages(session) == 2
    page = client.get(path.removesuffix("/message")).get_data(as_text=True)
    assert "<textarea" not in page and re.search(r"2\D+2", page.split('id="cap"')[1][:200])


def test_an_empty_or_too_long_message_is_refused_with_a_message(client, session, world):
    sign_in(client, "a@sponsor.test")
    path = f"/console/sponsors/{world['a']}/analyses/{world['analyses']['L']}/message"
    assert client.post(path, data={"csrf_token": csrf(client), "text": "  \n "}).status_code == 422
    assert client.post(path, data={"csrf_token": csrf(client), "text": "x" * 501}).status_code == 422
    assert sponsor_messages(session) == 0


# --- demo data ---------------------------------------------------------------------------------------------------


def test_the_demo_activity_fills_several_weeks_once(app, session):
    sponsor = make_sponsor(app)
    with app.extensions["db"].session() as s, s.begin():
        first = seed_sponsor_activity(s, sponsor, utcnow())
    with app.extensions["db"].session() as s, s.begin():
        again = seed_sponsor_activity(s, sponsor, utcnow())

    assert first.farmers == 10 and first.analyses > 20 and again.farmers == 0
    weeks = [b for b in activity_series(session, sponsor, Interval.WEEK, utcnow()) if b.analyses]
    assert len(weeks) >= 4
    figures = sponsor_figures(session, sponsor, utcnow())
    assert len(figures.provinces) >= 4 and len(figures.diseases) >= 4 and len(figures.crops) >= 4


def test_the_demo_stores_crops_as_the_bot_does_so_the_english_dashboard_names_them_and_the_filter_finds_them(
        app, client, session):
    sponsor = make_sponsor(app)
    make_staff(app, "sponsor", "demo@sponsor.test", sponsor_id=sponsor)
    with app.extensions["db"].session() as s, s.begin():
        seed_sponsor_activity(s, sponsor, utcnow())
    sign_in(client, "demo@sponsor.test")
    post(client, "/console/language", {"locale": "en", "next": "/console"})

    stored = set(session.scalars(select(Analysis.crop).where(Analysis.sponsor_id == sponsor)))
    dashboard = client.get(f"/console/sponsors/{sponsor}").get_data(as_text=True)
    wheat = client.get(f"/console/sponsors/{sponsor}/analyses?crop=Wheat").get_data(as_text=True)

    assert {"bugday", "uzum", "salatalik"} <= stored and "buğday" not in stored
    assert "Wheat" in dashboard and "Grape" in dashboard and "buğday" not in dashboard and "patates" in dashboard
    assert "No analyses to show yet." not in wheat and "Wheat" in wheat


def test_a_farmer_reported_unreachable_is_refused_saying_so_not_opted_out(app, client, session, world):
    with app.extensions["db"].session() as s, s.begin():
        s.execute(update(Farmer).where(Farmer.phone == "+905321112202").values(unreachable_at=utcnow()))
    sign_in(client, "a@sponsor.test")
    path = f"/console/sponsors/{world['a']}/analyses/{world['analyses']['L']}"
    page = client.get(path).get_data(as_text=True)
    assert "ulaşılamadığını" in page and "almıyor" not in page and "<textarea" not in page
    refused = client.post(f"{path}/message", data={"csrf_token": csrf(client), "text": "Merhaba"})
    assert refused.status_code == 409 and "ulaşılamadığını" in refused.get_data(as_text=True)
    assert sponsor_messages(session) == 0


def test_a_paused_template_refuses_the_message_with_the_apis_reason(app, client, session, world):
    with app.extensions["db"].session() as s, s.begin():
        set_template_status(s, TEMPLATE, TEMPLATES[TEMPLATE].language, TemplateStatus.PAUSED, "Low quality", utcnow())
    sign_in(client, "a@sponsor.test")
    path = f"/console/sponsors/{world['a']}/analyses/{world['analyses']['L']}"
    page = client.get(path).get_data(as_text=True)
    assert "Sponsor mesajları şu anda gönderilemiyor" in page and "PAUSED" in page and "<textarea" not in page
    refused = client.post(f"{path}/message", data={"csrf_token": csrf(client), "text": "Merhaba"})
    assert refused.status_code == 503 and "PAUSED" in refused.get_data(as_text=True)
    assert sponsor_messages(session) == 0
