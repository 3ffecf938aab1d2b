"""The console's foundation and admin pages in a real headless Chromium (laptop size, 1280x800, and a
phone, 390x844): sign in as the demo admin, use every admin page, a reset link, a password change, the
language switch and the API docs; no page may break its Content-Security-Policy (Chromium's console
would say "Refused to ...").

Needs Debian's `chromium` and `chromium-driver`; skipped without them except in CI (tests/browser.py).
Screenshots go to `tests/output/console/admin-*.png`; with `UPDATE_DOCS_SCREENSHOTS=1` those shown in
docs/CONSOLE_ADMIN.md are also copied to `docs/img/console/`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devtools.demo import ADMIN_EMAIL, seed_demo
from tests.browser import LAPTOP, PHONE, Console, chrome
from tests.dev_live import live_app


@pytest.fixture
def browser() -> Iterator[Any]:
    with chrome(*LAPTOP) as driver:
        yield driver


def test_an_admin_uses_every_admin_page_in_chromium(browser: Any, database_url: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    with live_app(database_url, worker=False) as live:
        seed = seed_demo(live.app.extensions["db"])
        assert seed.admin_password is not None
        c = Console(browser, live.base)
        violations: list[str] = []

        c.open("/console")
        assert c.path().startswith("/console/login") and "Giriş yap" in c.text()
        c.shot("admin-login", PHONE)
        c.fill({"email": ADMIN_EMAIL, "password": seed.admin_password})
        assert c.path() == "/console/admin"
        assert "Satın alma talepleri" in c.text() and "1 bekliyor" in c.text()
        c.shot("admin-overview")

        c.open("/console/admin/purchase-requests")
        assert "Bahar kampanyası için" in c.text()
        c.shot("admin-purchase-requests")
        c.click('form[action$="/approve"] button')
        assert "onaylandı: 50 kod oluşturuldu" in c.text()

        c.open("/console/admin/sponsors")
        assert "Demo Tarım A.Ş." in c.text()
        c.fill({"name": "Yeşil Vadi Tohumculuk", "contact_email": "iletisim@yesilvadi.test"})
        assert c.path().startswith("/console/admin/sponsors/") and "Yeşil Vadi Tohumculuk" in c.text()
        c.open("/console/admin/sponsors")
        c.shot("admin-sponsors")
        c.click('a[href$="/console/admin/sponsors/1"]')
        assert "Demo Tarım A.Ş." in c.text() and "M, L" in c.text().replace("S, ", "")
        c.shot("admin-sponsor")

        c.open("/console/admin/staff")
        c.fill({"email": "destek@ziraai.local", "role": "support", "password": "ilk parola 12345"},
               form="main section form.stack")
        assert "destek@ziraai.local personeli oluşturuldu." in c.text()
        row = next(r for r in c.all("tbody tr") if "destek@ziraai.local" in r.text)
        c.click('form[action$="/reset-link"] button', within=row)
        link = c.find("#reset-link").text.strip()
        assert "/console/reset/" in link
        c.shot("admin-staff")

        c.open("/console/admin/tiers")
        assert "Günlük sınır" in c.text()
        c.shot("admin-tiers", docs=False)
        c.open("/console/admin/settings")
        c.shot("admin-settings")
        c.open("/console/admin/audit?action=staff.reset_link")
        rows = c.find("tbody").text
        assert "staff.reset_link" in rows and "auth.login" not in rows
        c.open("/console/admin/audit")
        assert "sponsor.purchase_request.approve" in c.text() and "sponsor.create" in c.text()
        c.shot("admin-audit")
        violations += c.csp_violations()

        # The reset link, opened by the person it was made for (the admin's tab is signed out by it).
        c.driver.get(link)
        c.fill({"new_password": "yeni destek parolası", "new_password_again": "yeni destek parolası"})
        assert c.path() == "/console/login" and "Yeni parolanız kaydedildi" in c.text()
        c.fill({"email": "destek@ziraai.local", "password": "yeni destek parolası"})
        assert "Çıkış yap" in c.text()
        c.open("/console/admin")
        assert "Böyle bir sayfa yok." in c.text()  # support staff: admin pages do not exist for them
        c.click('form[action$="/logout"] button')
        c.driver.get(link)
        assert "geçerli değil" in c.text()  # used once

        # The admin changes their own password, in English.
        c.open("/console/login")
        c.fill({"email": ADMIN_EMAIL, "password": seed.admin_password})
        c.click('form.langswitch button[value="en"]')
        assert "Purchase requests" in c.text() and "Sign out" in c.text()
        c.shot("admin-overview-en", docs=False)
        c.open("/console/password")
        c.fill({"current_password": seed.admin_password, "new_password": "a brand new passphrase",
                "new_password_again": "a brand new passphrase"})
        assert "Your password has been changed." in c.text()
        c.click('form[action$="/logout"] button')
        c.fill({"email": ADMIN_EMAIL, "password": seed.admin_password})
        assert "Invalid email or password." in c.text()
        c.fill({"email": ADMIN_EMAIL, "password": "a brand new passphrase"})
        assert c.path() == "/console/admin"
        c.shot("admin-overview-phone", PHONE)
        violations += c.csp_violations()

        c.open("/api/v1")
        WebDriverWait(browser, 30, poll_frequency=0.2).until(
            lambda driver: driver.find_elements(c.by.CSS_SELECTOR, ".swagger-ui .opblock"), "Swagger UI")
        assert c.path() == "/api/v1/docs" and "/api/v1/auth/login" in c.text()
        c.shot("admin-api-docs", max_height=LAPTOP[1])
        violations += c.csp_violations()
        assert violations == []


def test_on_a_phone_every_settings_field_is_wide_enough_for_its_value(database_url: str) -> None:
    with live_app(database_url, worker=False) as live, chrome(*PHONE, mobile=True) as driver:
        seed = seed_demo(live.app.extensions["db"])
        assert seed.admin_password is not None
        c = Console(driver, live.base)
        c.open("/console/login")
        c.fill({"email": ADMIN_EMAIL, "password": seed.admin_password})
        c.open("/console/admin/settings")
        fields = c.all('table.settings input:not([type="hidden"])')
        assert fields
        for field in fields:
            driver.execute_script("arguments[0].value = '23:59';", field)
            cut = driver.execute_script("return arguments[0].scrollWidth > arguments[0].clientWidth;", field)
            assert not cut, field.get_attribute("name")
