"""The sponsor's console in a real headless Chromium, at a laptop's width and a phone's: sign in as a sponsor
user, the dashboard with its two SVG charts (switching to days), the codes, the sponsored analyses (an M
row without the farmer, an L row with the masked phone), one analysis, and filing a purchase request.

Runs the test app on a real port (`tests.dev_live.live_app`, no worker needed) with the demo activity of
`devtools.sponsor_demo`. Needs Debian's `chromium` and `chromium-driver`; skipped without them except in CI
(tests/browser.py). Screenshots go to `tests/output/console/sponsor-*.png`; with `UPDATE_DOCS_SCREENSHOTS=1`
the laptop ones (and the phone's charts) are also copied to `docs/img/console/` for docs/CONSOLE_SPONSOR.md.
"""

from __future__ import annotations

import pytest

from devtools.sponsor_demo import seed_sponsor_activity
from models import utcnow
from tests.admin_helpers import PASSWORD, make_sponsor, make_staff
from tests.browser import LAPTOP, PHONE, chrome, save_screenshot
from tests.dev_live import live_app

SIZES = {"laptop": LAPTOP, "phone": PHONE}
EMAIL = "satis@anadolu.test"


def _shot(driver, name: str, size: str) -> None:
    """The laptop's screenshots (and the phone's charts) are the docs' ones; the laptop's carry no size."""
    save_screenshot(driver, f"console/sponsor-{name}" + ("" if size == "laptop" else f"-{size}"),
                    docs=size == "laptop" or name == "charts")


@pytest.mark.parametrize("size", list(SIZES))
def test_a_sponsor_signs_in_reads_the_dashboard_codes_and_analyses_and_files_a_request(database_url, size):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    with live_app(database_url, worker=False) as live:
        sponsor = make_sponsor(live.app, "Anadolu Tohum A.Ş.")
        with live.app.extensions["db"].session() as session, session.begin():
            seed_sponsor_activity(session, sponsor, utcnow())
        make_staff(live.app, "sponsor", EMAIL, sponsor_id=sponsor)
        width, height = SIZES[size]
        with chrome(width, height, mobile=size == "phone") as driver:
            wait = WebDriverWait(driver, 20, poll_frequency=0.2)
            driver.get(f"{live.base}/console/login")
            driver.find_element(By.NAME, "email").send_keys(EMAIL)
            driver.find_element(By.NAME, "password").send_keys(PASSWORD)
            driver.find_element(By.CSS_SELECTOR, "form button[type=submit].primary").click()

            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "svg.chart"))
            charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart[role=img]")
            assert len(charts) == 2
            assert charts[0].size["width"] <= width  # scales to the page, no sideways scrolling
            assert driver.find_element(By.ID, "fig-bought").text == "40"
            assert int(driver.find_element(By.ID, "fig-reached").text) == 10
            assert driver.find_elements(By.CSS_SELECTOR, "#top-provinces tbody tr")
            assert driver.execute_script("return document.documentElement.scrollWidth") <= width
            _shot(driver, "dashboard", size)
            driver.execute_script("document.getElementById('activity-heading').scrollIntoView()")
            _shot(driver, "charts", size)

            driver.find_element(By.CSS_SELECTOR, "a[href$='interval=day']").click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart-analyses rect.bar")) == 30)

            driver.get(f"{live.base}/console/sponsors/{sponsor}/codes?status=redeemed")
            rows = driver.find_elements(By.CSS_SELECTOR, "#codes tbody tr")
            assert len(rows) == 10 and not driver.find_elements(By.CSS_SELECTOR, "#codes button.danger")
            driver.get(f"{live.base}/console/sponsors/{sponsor}/codes")
            assert driver.find_elements(By.CSS_SELECTOR, "#codes button.danger")
            _shot(driver, "codes", size)

            driver.get(f"{live.base}/console/sponsors/{sponsor}/analyses")
            m_row = driver.find_element(By.CSS_SELECTOR, "#analyses tr[data-tier='M']")
            l_row = driver.find_element(By.CSS_SELECTOR, "#analyses tr[data-tier='L']")
            assert "+90" not in m_row.text and "*** **" in l_row.text
            _shot(driver, "analyses", size)

            l_row.find_element(By.CSS_SELECTOR, "a").click()
            wait.until(lambda d: d.find_elements(By.ID, "farmer-facts"))
            assert "*** **" in driver.find_element(By.ID, "farmer-facts").text
            assert driver.find_elements(By.ID, "cap")
            _shot(driver, "analysis", size)

            driver.get(f"{live.base}/console/sponsors/{sponsor}/purchase-requests")
            Select(driver.find_element(By.NAME, "tier")).select_by_value("L")
            driver.find_element(By.NAME, "quantity").send_keys("250")
            driver.find_element(By.NAME, "note").send_keys("Ekim kampanyası")
            driver.find_element(By.CSS_SELECTOR, "form.stack button.primary").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".flash"))
            row = driver.find_element(By.CSS_SELECTOR, "#requests tbody tr")
            assert "250" in row.text and "Ekim kampanyası" in row.text
            _shot(driver, "requests", size)
