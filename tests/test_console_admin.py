"""The console's admin pages: sponsors, purchase requests, staff and reset links, tiers, runtime
settings and the audit log; each one admin only (404 for other roles), each change audited."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from models import AuditLog, PurchaseRequest, Sponsor, SponsorCode, StaffUser, Tier, utcnow
from services import quota, sponsorship
from tests.admin_helpers import PASSWORD, bearer, login, make_sponsor, make_staff
from tests.console_helpers import console_login, post, post_twice_at_once, signed_in

ADMIN_PAGES = ("/console/admin", "/console/admin/sponsors", "/console/admin/purchase-requests",
               "/console/admin/staff", "/console/admin/tiers", "/console/admin/settings", "/console/admin/audit")


@pytest.fixture
def admin(app: Flask, client: FlaskClient) -> int:
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)
    return signed_in(app, client, "admin")


def actions(session: Any) -> list[str]:
    return list(session.scalars(select(AuditLog.action).order_by(AuditLog.id)))


def file_request(app: Flask, sponsor_id: int, quantity: int = 5) -> int:
    with app.extensions["db"].session() as s, s.begin():
        return sponsorship.file_purchase_request(s, sponsor_id, "M", quantity, 90, 30, None, None, utcnow()).id


@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_every_admin_page_opens_for_an_admin(admin: int, client: FlaskClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200, page
    assert "Content-Security-Policy" in response.headers


@pytest.mark.parametrize("role", ["sponsor", "support"])
def test_admin_pages_are_404_for_other_roles(app: Flask, client: FlaskClient, role: str) -> None:
    signed_in(app, client, role)
    for page in ADMIN_PAGES:
        assert client.get(page).status_code == 404, page
    assert post(client, "/console/admin/sponsors", {"name": "Sneaky"}).status_code == 404


def test_an_admin_creates_a_sponsor_and_sees_its_page(admin: int, client: FlaskClient, session) -> None:
    created = post(client, "/console/admin/sponsors", {"name": "Tarım A.Ş.", "contact_email": "info@tarim.test"})
    assert created.status_code == 302
    sponsor = session.scalars(select(Sponsor)).one()
    assert created.headers["Location"].endswith(f"/console/admin/sponsors/{sponsor.id}")
    page = client.get(created.headers["Location"]).get_data(as_text=True)
    assert "Tarım A.Ş." in page and "info@tarim.test" in page
    assert "sponsor.create" in actions(session)
    assert "Tarım" in client.get("/console/admin/sponsors?q=tar").get_data(as_text=True)
    assert "Tarım" in client.get("/console/admin/sponsors?q=TARIM").get_data(as_text=True)  # folded, as typed


def test_a_sponsor_form_with_bad_fields_says_what_is_wrong(admin: int, client: FlaskClient, session) -> None:
    response = post(client, "/console/admin/sponsors", {"name": "", "contact_email": "not-an-email"})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "En fazla 200 karakterlik bir ad girin." in html and "Bir e-posta adresi girin." in html
    assert session.scalars(select(Sponsor)).first() is None


def test_the_sponsor_and_staff_forms_refuse_what_the_api_refuses(admin: int, client: FlaskClient, session) -> None:
    """The same checks as the API (services.contact_details): before, `a@b` and `2026-02-30` were taken."""
    response = post(client, "/console/admin/sponsors", {"name": "Tarım", "contact_email": "a@b",
                                                        "contact_phone": "2026-02-30"})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Bir e-posta adresi girin." in html and "+902121234567" in html
    assert session.scalars(select(Sponsor)).first() is None
    staff = post(client, "/console/admin/staff", {"email": "ı@ı.ı", "role": "support", "password": PASSWORD})
    assert staff.status_code == 400 and "Bir e-posta adresi girin." in staff.get_data(as_text=True)


def test_an_unknown_sponsor_is_404(admin: int, client: FlaskClient) -> None:
    assert client.get("/console/admin/sponsors/999999").status_code == 404


def test_an_admin_approves_a_purchase_request_and_codes_are_made(app: Flask, admin: int, client: FlaskClient,
                                                                 session) -> None:
    request_id = file_request(app, make_sponsor(app), quantity=3)
    assert f">{request_id}<" in client.get("/console/admin/purchase-requests").get_data(as_text=True)
    approved = post(client, f"/console/admin/purchase-requests/{request_id}/approve")
    assert approved.status_code == 302
    assert session.get(PurchaseRequest, request_id).status == "approved"
    assert len(session.scalars(select(SponsorCode)).all()) == 3
    row = session.scalars(select(AuditLog).where(AuditLog.action == "sponsor.purchase_request.approve")).one()
    assert row.user_id == admin and row.details["codes"] == 3
    again = post(client, f"/console/admin/purchase-requests/{request_id}/approve", follow_redirects=True)
    assert "Yalnızca bekleyen bir talep" in again.get_data(as_text=True)
    assert len(session.scalars(select(SponsorCode)).all()) == 3


def test_rejecting_a_request_needs_a_reason(app: Flask, admin: int, client: FlaskClient, session) -> None:
    request_id = file_request(app, make_sponsor(app))
    no_reason = post(client, f"/console/admin/purchase-requests/{request_id}/reject", {"reason": "  "},
                     follow_redirects=True)
    assert "gerekçe" in no_reason.get_data(as_text=True)
    assert session.get(PurchaseRequest, request_id).status == "pending"
    post(client, f"/console/admin/purchase-requests/{request_id}/reject", {"reason": "Bütçe onayı yok"})
    found = session.get(PurchaseRequest, request_id)
    assert found.status == "rejected" and found.rejection_reason == "Bütçe onayı yok"
    assert "sponsor.purchase_request.reject" in actions(session)


def test_a_refused_rejection_lets_the_same_form_reject_once_corrected_sent_again_or_twice_at_once(
        app: Flask, admin: int, client: FlaskClient, session) -> None:
    request_id = file_request(app, make_sponsor(app))
    path = f"/console/admin/purchase-requests/{request_id}/reject"

    twice = post_twice_at_once(app, client, path, {"reason": " ", "form_nonce": "one-form"})
    corrected = post(client, path, {"reason": "Bütçe onayı yok", "form_nonce": "one-form"}, follow_redirects=True)

    assert [r.status_code for r in twice] == [400, 400]
    assert "zaten gönderildi" not in corrected.get_data(as_text=True)
    assert session.get(PurchaseRequest, request_id).status == "rejected"


def test_a_reason_too_long_to_reject_with_stays_in_its_box(app: Flask, admin: int, client: FlaskClient,
                                                            session) -> None:
    request_id = file_request(app, make_sponsor(app))
    long_reason = "Ödeme gelmedi " * 43  # 601 characters once trimmed, over the 500 allowed

    refused = post(client, f"/console/admin/purchase-requests/{request_id}/reject", {"reason": long_reason})

    html = refused.get_data(as_text=True)
    assert refused.status_code == 400 and f'value="{long_reason.strip()}"' in html
    assert "en fazla 500 karakterlik" in html and "yazılan 601 karakter" in html
    assert session.get(PurchaseRequest, request_id).status == "pending"


def test_an_admin_creates_and_deactivates_staff(app: Flask, admin: int, client: FlaskClient, session) -> None:
    sponsor_id = make_sponsor(app)
    created = post(client, "/console/admin/staff", {"email": "Ayse@Sponsor.test", "role": "sponsor",
                                                    "sponsor_id": str(sponsor_id), "password": PASSWORD})
    assert created.status_code == 302
    user = session.scalars(select(StaffUser).where(StaffUser.email == "ayse@sponsor.test")).one()
    assert user.sponsor_id == sponsor_id and user.role == "sponsor"
    assert console_login(client.application.test_client(), "ayse@sponsor.test").status_code == 302
    post(client, f"/console/admin/staff/{user.id}/deactivate")
    session.expire_all()
    assert session.get(StaffUser, user.id).active is False
    assert console_login(client.application.test_client(), "ayse@sponsor.test").status_code == 401
    post(client, f"/console/admin/staff/{user.id}/activate")
    assert console_login(client.application.test_client(), "ayse@sponsor.test").status_code == 302
    assert {"staff.create", "staff.deactivate", "staff.activate"} <= set(actions(session))


def test_deactivating_staff_ends_their_api_logins_and_console_sessions_for_good(app: Flask, admin: int,
                                                                               client: FlaskClient) -> None:
    """Found by the security probe: deactivating only refused requests while it lasted, so reactivating
    brought back every login made before it (refresh tokens for 30 days, access tokens, console sessions)."""
    user_id = make_staff(app, "support", "support@ziraai.test")
    api, browser = app.test_client(), app.test_client()
    pair = login(api, "support@ziraai.test").get_json()
    assert console_login(browser, "support@ziraai.test").status_code == 302
    assert browser.get("/console/support").status_code == 200

    post(client, f"/console/admin/staff/{user_id}/deactivate")
    post(client, f"/console/admin/staff/{user_id}/activate")

    assert api.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
    assert api.get("/api/v1/jobs/failed", headers=bearer(pair["access_token"])).status_code == 401
    assert browser.get("/console/support").headers["Location"].startswith("/console/login")
    again = login(api, "support@ziraai.test")  # the person signs in again with their password
    assert api.get("/api/v1/jobs/failed", headers=bearer(again.get_json()["access_token"])).status_code == 200
    assert _refresh_works(api, again.get_json()["refresh_token"])
    assert console_login(browser, "support@ziraai.test").status_code == 302
    assert browser.get("/console/support").status_code == 200


def _refresh_works(api: FlaskClient, token: str) -> bool:
    return api.post("/api/v1/auth/refresh", json={"refresh_token": token}).status_code == 200


def test_a_staff_form_with_a_taken_email_or_short_password_is_refused(admin: int, client: FlaskClient) -> None:
    taken = post(client, "/console/admin/staff", {"email": "admin@ziraai.test", "role": "support",
                                                  "password": PASSWORD})
    short = post(client, "/console/admin/staff", {"email": "new@ziraai.test", "role": "support", "password": "short"})
    assert taken.status_code == short.status_code == 400
    assert "zaten var" in taken.get_data(as_text=True)
    assert "10 ile 1024" in short.get_data(as_text=True)
    unknown_role = post(client, "/console/admin/staff", {"email": "new@ziraai.test", "role": "owner",
                                                         "password": PASSWORD})
    assert unknown_role.status_code == 400 and "Bir rol seçin." in unknown_role.get_data(as_text=True)


def test_numbers_in_other_digits_than_ascii_are_refused_by_the_admin_forms(app: Flask, admin: int,
                                                                          client: FlaskClient, session) -> None:
    """`int()` reads `٧` as 7: a form took a limit, a setting or a sponsor typed in Arabic-Indic digits as
    the number. They are refused now, as the API refuses them."""
    tier = post(client, "/console/admin/tiers/M", {"daily_limit": "٧", "monthly_limit": "70", "price_try": "1"})
    assert tier.status_code == 400
    assert session.scalars(select(Tier.daily_limit).where(Tier.code == "M")).one() != 7
    setting = post(client, "/console/admin/settings", {"n8n_timeout_seconds": "٣٠"})
    assert setting.status_code == 400
    sponsor_id = make_sponsor(app)
    staff = post(client, "/console/admin/staff", {"email": "arabic@sponsor.test", "role": "sponsor",
                                                  "sponsor_id": str(sponsor_id).translate(ARABIC_INDIC),
                                                  "password": PASSWORD})
    assert staff.status_code == 400
    assert session.scalars(select(StaffUser).where(StaffUser.email == "arabic@sponsor.test")).all() == []
    by_actor = client.get(f"/console/admin/audit?actor={str(admin).translate(ARABIC_INDIC)}").get_data(as_text=True)
    assert "<code>auth.login</code>" not in by_actor


ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def test_an_admin_cannot_deactivate_themselves(admin: int, client: FlaskClient, session) -> None:
    post(client, f"/console/admin/staff/{admin}/deactivate")
    assert session.get(StaffUser, admin).active is True


def _reset_link(client: FlaskClient, user_id: int) -> str:
    page = post(client, f"/console/admin/staff/{user_id}/reset-link").get_data(as_text=True)
    found = re.search(r"https?://[^<\s]+/console/reset/[A-Za-z0-9_\-]+", page)
    assert found is not None
    return found.group(0).split("/console", 1)[1]


def test_a_reset_link_sets_a_new_password_once(app: Flask, admin: int, client: FlaskClient, session) -> None:
    user_id = make_staff(app, "support", "support@ziraai.test")
    path = "/console" + _reset_link(client, user_id)
    stored = [k.decode() if isinstance(k, bytes) else k for k in app.extensions["redis"].scan_iter("console:reset:*")]
    assert len(stored) == 1 and path.rsplit("/", 1)[1] not in stored[0]  # only the token's hash is kept
    person = app.test_client()
    assert person.get(path).status_code == 200
    done = post(person, path, {"new_password": "a fresh passphrase", "new_password_again": "a fresh passphrase"})
    assert done.status_code == 302 and done.headers["Location"].endswith("/console/login")
    assert console_login(app.test_client(), "support@ziraai.test", "a fresh passphrase").status_code == 302
    assert person.get(path).status_code == 404
    again = post(person, path, {"new_password": "another passphrase", "new_password_again": "another passphrase"})
    assert again.status_code == 404
    assert {"staff.reset_link", "auth.password_reset"} <= set(actions(session))


def test_a_reset_link_form_sent_twice_lands_on_the_staff_page_saying_how_to_get_another(
        app: Flask, admin: int, client: FlaskClient) -> None:
    user_id = make_staff(app, "support", "support@ziraai.test")
    path = f"/console/admin/staff/{user_id}/reset-link"

    first = post(client, path, {"form_nonce": "one-form"})
    again = post(client, path, {"form_nonce": "one-form"})
    # followed at once, as a browser does: a later page would show (and use up) the note instead
    landed = client.get("/console/admin/staff").get_data(as_text=True)
    at_once = post_twice_at_once(app, client, path, {"form_nonce": "another-form"})

    assert first.status_code == 200 and "/console/reset/" in first.get_data(as_text=True)
    assert again.status_code == 302 and again.headers["Location"] == "/console/admin/staff"
    assert "zaten bir sıfırlama bağlantısı oluşturuldu" in landed and "yeniden basın" in landed
    assert sorted(r.status_code for r in at_once) == [200, 302]
    assert [r.headers["Location"] for r in at_once if r.status_code == 302] == ["/console/admin/staff"]


def test_a_reset_link_of_a_deactivated_account_says_so_when_opened(app: Flask, admin: int,
                                                                  client: FlaskClient) -> None:
    user_id = make_staff(app, "support", "support@ziraai.test")
    path = "/console" + _reset_link(client, user_id)
    post(client, f"/console/admin/staff/{user_id}/deactivate")
    opened = app.test_client().get(path)
    html = opened.get_data(as_text=True)
    assert opened.status_code == 404 and "Bu hesap devre dışı" in html and 'name="new_password"' not in html
    assert "daha önce kullanılmış" not in html


def test_a_newer_reset_link_voids_the_older_one(app: Flask, admin: int, client: FlaskClient) -> None:
    user_id = make_staff(app, "support", "support@ziraai.test")
    first = "/console" + _reset_link(client, user_id)
    second = "/console" + _reset_link(client, user_id)
    person = app.test_client()
    assert person.get(first).status_code == 404
    assert person.get(second).status_code == 200


def test_a_reset_ends_the_sessions_of_that_person(app: Flask, admin: int, client: FlaskClient) -> None:
    user_id = make_staff(app, "support", "support@ziraai.test")
    them = app.test_client()
    console_login(them, "support@ziraai.test")
    assert them.get("/console/password").status_code == 200
    path = "/console" + _reset_link(client, user_id)
    person = app.test_client()
    person.get(path)
    post(person, path, {"new_password": "a fresh passphrase", "new_password_again": "a fresh passphrase"})
    assert them.get("/console/password").status_code == 302


def _api_login(client: FlaskClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200
    return response.get_json()


def _api_answers(client: FlaskClient, pair: dict[str, str]) -> tuple[int, int]:
    """What the access token gets from an API page, and what the refresh token gets from a refresh."""
    page = client.get("/api/v1/messages", headers={"Authorization": f"Bearer {pair['access_token']}"})
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    return page.status_code, refreshed.status_code


def test_a_reset_ends_the_api_logins_of_that_person(app: Flask, admin: int, client: FlaskClient) -> None:
    user_id = make_staff(app, "support", "support@ziraai.test")
    api = app.test_client()
    pairs = [_api_login(api, "support@ziraai.test"), _api_login(api, "support@ziraai.test")]  # two devices
    bystander = _api_login(api, "admin@ziraai.test")
    path = "/console" + _reset_link(client, user_id)
    person = app.test_client()
    person.get(path)
    post(person, path, {"new_password": "a fresh passphrase", "new_password_again": "a fresh passphrase"})

    assert [_api_answers(api, pair) for pair in pairs] == [(401, 401), (401, 401)]
    assert _api_answers(api, bystander) == (200, 200)
    fresh = _api_login(api, "support@ziraai.test", "a fresh passphrase")
    assert _api_answers(api, fresh) == (200, 200)


def test_a_password_change_ends_the_api_logins_and_other_sessions_but_not_this_one(app: Flask) -> None:
    make_staff(app, "support", "support@ziraai.test")
    here, elsewhere, api = app.test_client(), app.test_client(), app.test_client()
    console_login(here, "support@ziraai.test")
    console_login(elsewhere, "support@ziraai.test")
    pair = _api_login(api, "support@ziraai.test")
    changed = post(here, "/console/password", {"current_password": PASSWORD, "new_password": "a fresh passphrase",
                                               "new_password_again": "a fresh passphrase"})
    assert changed.status_code == 302

    assert _api_answers(api, pair) == (401, 401)
    assert elsewhere.get("/console/password").status_code == 302  # to the login page
    assert here.get("/console/password").status_code == 200


def test_a_reset_with_two_different_passwords_keeps_the_link(app: Flask, admin: int, client: FlaskClient) -> None:
    user_id = make_staff(app, "support", "support@ziraai.test")
    path = "/console" + _reset_link(client, user_id)
    person = app.test_client()
    person.get(path)
    differ = post(person, path, {"new_password": "a fresh passphrase", "new_password_again": "other passphrase"})
    assert differ.status_code == 400
    assert person.get(path).status_code == 200


def test_a_made_up_reset_token_is_404(client: FlaskClient) -> None:
    assert client.get("/console/reset/not-a-real-token").status_code == 404


def test_the_tiers_page_lists_the_tiers(admin: int, client: FlaskClient, session) -> None:
    html = client.get("/console/admin/tiers").get_data(as_text=True)
    for code in session.scalars(select(Tier.code)):
        assert f"<td>{code}</td>" in html


def test_an_admin_changes_a_runtime_setting_and_returns_it_to_default(admin: int, client: FlaskClient,
                                                                      session) -> None:
    from services.runtime_settings import SPECS

    name, spec = next((n, s) for n, s in SPECS.items() if s.kind == "integer")
    value = spec.minimum if spec.minimum is not None else 1
    saved = post(client, "/console/admin/settings", {name: str(value)})
    assert saved.status_code == 302
    assert f'value="{value}"' in client.get("/console/admin/settings").get_data(as_text=True)
    bad = post(client, "/console/admin/settings", {name: "not a number"})
    assert bad.status_code == 400
    post(client, "/console/admin/settings", {name: ""})
    rows = session.scalars(select(AuditLog).where(AuditLog.action == "settings.update")).all()
    assert len(rows) == 2 and rows[0].details[name]["after"] == value


def test_the_settings_page_explains_and_refuses_in_turkish_and_keeps_what_was_typed(admin: int,
                                                                                   client: FlaskClient) -> None:
    from console.admin import SETTING_DESCRIPTIONS
    from services.runtime_settings import SPECS

    assert set(SETTING_DESCRIPTIONS) == set(SPECS)
    html = client.get("/console/admin/settings").get_data(as_text=True)
    assert "Bir çiftçiden kabul edilen en büyük fotoğraf" in html and "Largest photo" not in html
    refused = post(client, "/console/admin/settings", {"image_quality": "-3", "quiet_hours_start": "25:00"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400
    assert "20 ile 95 arasında bir tam sayı olmalı" in html and "SS:DD biçiminde" in html and "must be" not in html
    assert 'name="image_quality" value="-3"' in html and 'name="quiet_hours_start" value="25:00"' in html


def settings_form(html: str) -> dict[str, str]:
    """Every field of the settings form as the page fills it (the inputs, hidden ones included)."""
    return {name: value for name, value in re.findall(r'<input[^>]*name="([^"]+)" value="([^"]*)"', html)
            if name != "csrf_token"}


def stored_settings(session: Any) -> dict[str, Any]:
    from models import RuntimeSetting

    session.expire_all()
    return {row.name: row.value for row in session.scalars(select(RuntimeSetting))}


def test_saving_the_settings_page_changes_only_what_this_admin_changed_not_another_admins_change(
        app: Flask, admin: int, client: FlaskClient, session) -> None:
    opened = settings_form(client.get("/console/admin/settings").get_data(as_text=True))  # admin A opens the page
    other = app.test_client()
    signed_in(app, other, "admin", "b@ziraai.test")
    b_form = settings_form(other.get("/console/admin/settings").get_data(as_text=True))
    assert post(other, "/console/admin/settings", b_form | {"sponsor_message_daily_cap": "3"}).status_code == 302
    saved = post(client, "/console/admin/settings", opened | {"support_takeover_minutes": "50"})
    assert saved.status_code == 302
    assert stored_settings(session) == {"sponsor_message_daily_cap": 3, "support_takeover_minutes": 50}
    row = session.scalars(select(AuditLog).where(AuditLog.action == "settings.update").order_by(AuditLog.id)).all()[-1]
    assert set(row.details) == {"support_takeover_minutes", "via"} and row.details["via"] == "console"


def test_a_setting_changed_by_someone_else_meanwhile_is_refused_with_its_current_value(
        app: Flask, admin: int, client: FlaskClient, session) -> None:
    opened = settings_form(client.get("/console/admin/settings").get_data(as_text=True))
    other = app.test_client()
    signed_in(app, other, "admin", "b@ziraai.test")
    post(other, "/console/admin/settings", {"sponsor_message_daily_cap": "3"})
    refused = post(client, "/console/admin/settings", opened | {"sponsor_message_daily_cap": "7",
                                                               "support_takeover_minutes": "50"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400
    assert "başka biri değiştirdi; şu an 3" in html
    assert 'name="sponsor_message_daily_cap" value="7"' in html and 'name="support_takeover_minutes" value="50"' in html
    assert stored_settings(session) == {"sponsor_message_daily_cap": 3}  # nothing silently overwritten
    again = post(client, "/console/admin/settings", settings_form(html))  # saved again, knowingly
    assert again.status_code == 302
    assert stored_settings(session) == {"sponsor_message_daily_cap": 7, "support_takeover_minutes": 50}


def test_a_refused_settings_form_keeps_every_value_typed(admin: int, client: FlaskClient, session) -> None:
    opened = settings_form(client.get("/console/admin/settings").get_data(as_text=True))
    refused = post(client, "/console/admin/settings", opened | {"quiet_hours_start": "25:00", "image_quality": "55",
                                                               "n8n_timeout_seconds": "45"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400 and stored_settings(session) == {}
    for name, value in (("quiet_hours_start", "25:00"), ("image_quality", "55"), ("n8n_timeout_seconds", "45")):
        assert f'name="{name}" value="{value}"' in html, name


def test_the_settings_page_shows_each_settings_bounds(admin: int, client: FlaskClient) -> None:
    from services.runtime_settings import SPECS

    html = client.get("/console/admin/settings").get_data(as_text=True)
    assert "Sınırlar" in html
    spec = SPECS["image_quality"]
    assert f"{spec.minimum}–{spec.maximum}" in html and "00:00–23:59" in html


def test_the_audit_log_action_filter_matches_the_action_exactly_not_as_a_prefix(
        app: Flask, admin: int, client: FlaskClient) -> None:
    from services.audit import audit

    with app.app_context():
        audit("farmer.reply", "farmer", 1, {"message_id": 1})
        audit("farmer.reply.template", "farmer", 1, {"message_id": 2})
    html = client.get("/console/admin/audit?action=farmer.reply").get_data(as_text=True)
    assert "<code>farmer.reply</code>" in html and "<code>farmer.reply.template</code>" not in html


def test_the_audit_log_filters_by_actor_action_and_date(app: Flask, admin: int, client: FlaskClient) -> None:
    post(client, "/console/admin/sponsors", {"name": "Filtre A.Ş."})
    by_action = client.get("/console/admin/audit?action=sponsor.create").get_data(as_text=True)
    assert "sponsor.create" in by_action and "<code>auth.login</code>" not in by_action
    by_actor = client.get("/console/admin/audit?actor=admin@ziraai").get_data(as_text=True)
    assert "<code>auth.login</code>" in by_actor
    nobody = client.get("/console/admin/audit?actor=nobody@x").get_data(as_text=True)
    assert "<code>auth.login</code>" not in nobody
    future = client.get("/console/admin/audit?from=2999-01-01").get_data(as_text=True)
    assert "<code>auth.login</code>" not in future
    past = client.get("/console/admin/audit?to=2000-01-01").get_data(as_text=True)
    assert "<code>auth.login</code>" not in past
    nonsense = client.get("/console/admin/audit?from=yesterday&to=%00&page=abc&action=%27--")
    assert nonsense.status_code == 200
    for edge in ("from=0001-01-01", "to=9999-12-31", "from=0001-01-01&to=9999-12-31"):
        everything = client.get(f"/console/admin/audit?{edge}")
        assert everything.status_code == 200 and "<code>auth.login</code>" in everything.get_data(as_text=True), edge


def test_the_overview_links_to_the_jobs_dashboard_and_the_api_docs(admin: int, client: FlaskClient) -> None:
    html = client.get("/console/admin").get_data(as_text=True)
    assert 'href="/admin/rq/"' in html and 'href="/api/v1/docs"' in html


def test_admin_forms_without_the_csrf_token_are_refused(app: Flask, admin: int, client: FlaskClient,
                                                        session) -> None:
    request_id = file_request(app, make_sponsor(app))
    for path, data in (("/console/admin/sponsors", {"name": "X"}),
                       (f"/console/admin/purchase-requests/{request_id}/approve", {}),
                       ("/console/admin/staff", {"email": "x@y.test", "role": "support", "password": PASSWORD}),
                       (f"/console/admin/staff/{admin}/reset-link", {}),
                       ("/console/admin/settings", {})):
        assert client.post(path, data=data).status_code == 400, path
    assert session.get(PurchaseRequest, request_id).status == "pending"
    assert session.scalars(select(Sponsor).where(Sponsor.name == "X")).first() is None


def test_a_paused_template_shows_the_account_banner_to_staff_but_not_to_sponsors(app: Flask, admin: int,
                                                                                  client: FlaskClient) -> None:
    from services.whatsapp.account import TemplateStatus
    from services.whatsapp.health import set_template_status

    assert "WhatsApp hesabı:" not in client.get("/console/admin").get_data(as_text=True)
    with app.extensions["db"].session() as s, s.begin():
        set_template_status(s, "analysis_complete_tr", "tr", TemplateStatus.PAUSED, "low quality", utcnow())
    html = client.get("/console/admin").get_data(as_text=True)
    assert "WhatsApp hesabı:" in html and "analysis_complete_tr (tr, PAUSED)" in html
    sponsor = app.test_client()
    signed_in(app, sponsor, "sponsor")
    assert "WhatsApp hesabı:" not in sponsor.get("/console/password").get_data(as_text=True)


def test_held_sends_and_a_violation_beside_a_restriction_show_in_the_banner(app: Flask, admin: int,
                                                                          client: FlaskClient) -> None:
    from services.whatsapp.account import parse_account_change
    from services.whatsapp.health import ACCOUNT_BLOCK_KEY, ACCOUNT_BLOCK_SECONDS, record_account_events

    app.extensions["redis"].set(ACCOUNT_BLOCK_KEY, "368: Temporarily blocked for policy violations",
                                ex=ACCOUNT_BLOCK_SECONDS)
    html = client.get("/console/admin").get_data(as_text=True)
    assert "WhatsApp hesabın mesajlarını reddetti (368: Temporarily blocked" in html
    now = int(utcnow().timestamp())
    restriction = {"event": "ACCOUNT_RESTRICTION", "restriction_info": [
        {"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING", "expiration": now + 86400}]}
    violation = {"event": "ACCOUNT_VIOLATION", "violation_info": {"violation_type": "SCAM"}}
    events = [parse_account_change("account_update", value, when)
              for when, value in ((now, restriction), (now + 10, violation))]
    with app.extensions["db"].session() as s, s.begin():
        record_account_events(s, [e for e in events if not isinstance(e, str)])
    html = client.get("/console/admin").get_data(as_text=True)
    assert "hesabı kısıtlandı" in html and "politika ihlali" in html


def test_the_demo_data_gives_the_admin_pages_something_to_show(app: Flask, client: FlaskClient, session) -> None:
    from devtools.demo import ADMIN_EMAIL, seed_demo
    from devtools.sponsor_demo import FARMERS as SPONSOR_DEMO_FARMERS
    from models import Analysis, Farmer, Message
    from services.whatsapp.updates import normalize_phone

    seed = seed_demo(app.extensions["db"])
    assert seed.admin_password is not None and seed_demo(app.extensions["db"]).admin_password is None
    assert len(session.scalars(select(Farmer)).all()) == 3 + len(SPONSOR_DEMO_FARMERS)  # a second run adds nothing
    failed = session.scalars(select(Message).where(Message.status == "failed")).one()
    assert failed.error_code == 131026 and failed.direction == "out"
    assert session.get(Farmer, failed.farmer_id).unreachable_at is not None  # the policy's effect, as it would be
    assert all(f.phone and normalize_phone(f.phone) == f.phone for f in session.scalars(select(Farmer)))
    assert {m.status for m in session.scalars(select(Message).where(Message.direction == "out"))} == {"read", "failed"}
    assert all(a.sponsor_id == seed.sponsor_id and a.health_score for a in session.scalars(select(Analysis)))
    assert session.scalars(select(SponsorCode).where(SponsorCode.status == "redeemed")).all()
    assert console_login(client, ADMIN_EMAIL, seed.admin_password).status_code == 302
    assert "Bahar kampanyası için" in client.get("/console/admin/purchase-requests").get_data(as_text=True)
    sponsor_page = client.get(f"/console/admin/sponsors/{seed.sponsor_id}").get_data(as_text=True)
    purchased = set(re.findall(r"<tr><td>\d+</td><td>(\w+)</td>", sponsor_page))
    assert purchased == {"S", "M", "L", "XL"}


def test_the_language_switch_after_a_post_page_returns_to_the_start(app: Flask, admin: int,
                                                                    client: FlaskClient) -> None:
    user_id = make_staff(app, "support", "support@ziraai.test")
    html = post(client, f"/console/admin/staff/{user_id}/reset-link").get_data(as_text=True)
    assert 'name="next" value="/console"' in html


def test_an_admin_changes_a_tier_as_the_api_allows(admin: int, client: FlaskClient, session) -> None:
    saved = post(client, "/console/admin/tiers/M", {"daily_limit": "7", "monthly_limit": "70", "price_try": "149,90"})
    assert saved.status_code == 302
    tier = session.scalars(select(Tier).where(Tier.code == "M")).one()
    assert (tier.daily_limit, tier.monthly_limit, str(tier.price_try), tier.active) == (7, 70, "149.90", False)
    row = session.scalars(select(AuditLog).where(AuditLog.action == "tier.update")).one()
    assert row.details["after"]["daily_limit"] == 7 and row.details["via"] == "console"
    over = post(client, "/console/admin/tiers/M", {"daily_limit": "80", "monthly_limit": "70", "price_try": "1",
                                                   "active": "on"})
    bad = post(client, "/console/admin/tiers/M", {"daily_limit": "-1", "monthly_limit": "x", "price_try": "1.999"})
    assert over.status_code == bad.status_code == 400
    assert "Günlük sınır aylık sınırı aşamaz." in over.get_data(as_text=True)
    session.expire_all()
    assert session.scalars(select(Tier.daily_limit).where(Tier.code == "M")).one() == 7
    assert post(client, "/console/admin/tiers/NOPE", {"daily_limit": "1", "monthly_limit": "2",
                                                      "price_try": "1"}).status_code == 404


def test_a_refused_tier_edit_shows_what_was_typed_not_the_stored_values(admin: int, client: FlaskClient) -> None:
    refused = post(client, "/console/admin/tiers/M", {"daily_limit": "80", "monthly_limit": "70",
                                                      "price_try": "12,5", "active": "on"})
    form = refused.get_data(as_text=True).split('id="tier-M"')[0].rsplit("<tr>", 1)[1]
    assert refused.status_code == 400
    assert 'value="80"' in form and 'value="70"' in form and 'value="12,5"' in form and " checked" in form
    other = refused.get_data(as_text=True).split('id="tier-M"')[1]
    assert 'value="80"' not in other  # the other tiers show their stored values


def test_the_sponsor_list_pages_keep_the_search_and_a_bad_page_number_is_page_one(
        admin: int, app: Flask, client: FlaskClient) -> None:
    with app.extensions["db"].session() as s, s.begin():
        s.add_all(Sponsor(name=f"Tohum {n:02}", created_at=utcnow()) for n in range(51))
    first = client.get("/console/admin/sponsors?q=Tohum").get_data(as_text=True)
    assert 'rel="next"' in first and 'rel="prev"' not in first
    assert re.search(r'href="[^"]*q=Tohum[^"]*page=2|href="[^"]*page=2[^"]*q=Tohum', first), first[-1500:]
    second = client.get("/console/admin/sponsors?q=Tohum&page=2").get_data(as_text=True)
    assert "Tohum 50" in second and 'rel="prev"' in second and 'rel="next"' not in second
    for page in ("²", "-1", "0", "99999999999", "abc"):
        response = client.get(f"/console/admin/sponsors?q=Tohum&page={page}")
        assert response.status_code == 200 and "Tohum 00" in response.get_data(as_text=True), page
