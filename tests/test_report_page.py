"""The farmer's report page `GET /r/<token>`: content in Turkish and English, kind pages for links that are
expired, wrong or early, headers, weight, nothing loaded from elsewhere, and the `Detaylar` reply's link."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest
import responses
from PIL import Image

from bot import replies
from models import Analysis, Farmer
from services import quota
from services.report_links import read_report_token, sign_report
from services.storage import new_key, sign_media
from tests.chat import Farmer as ChatFarmer
from tests.chat import GraphStub
from tests.helpers import FIXTURES
from web.report import CSS

DONE_AT = datetime(2026, 11, 21, 10, 16, tzinfo=UTC)  # 13:16 in Istanbul
DAY = 24 * 3600


class _Page(HTMLParser):
    """The text a reader sees (tags dropped, whitespace folded), every URL-bearing attribute, the <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self.urls: list[str] = []
        self.style = ""
        self._in_style = False
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.urls += [v for k, v in attrs if k in {"src", "href", "action", "srcset", "poster", "data"} and v]
        self._in_style = tag == "style"
        if tag in {"p", "li", "h1", "h2", "h3", "div", "section", "br", "title"}:
            self.chunks.append("\0")  # a block starts: a new line in `text`

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        else:
            self.chunks.append(data)

    @property
    def text(self) -> str:
        lines = (" ".join(block.split()) for block in "".join(self.chunks).split("\0"))
        return "\n".join(line for line in lines if line)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def fixture_result(name: str, analysis_id: int = 1) -> dict[str, Any]:
    return json.loads((FIXTURES / "n8n" / name).read_text().replace("{{analysis_id}}", str(analysis_id)))


def add_analysis(app, *, locale: str = "tr", status: str = "completed", result: dict[str, Any] | None = None,
                 crop: str | None = "domates", image_key: str | None = None, phone: str = "+905321234567") -> int:
    with app.extensions["db"].session() as s, s.begin():
        farmer = s.query(Farmer).filter_by(phone=phone).one_or_none()
        if farmer is None:
            farmer = Farmer(phone=phone, locale=locale)
            s.add(farmer)
            s.flush()
        analysis = Analysis(farmer_id=farmer.id, crop=crop, status=status, result=result, image_key=image_key,
                            completed_at=DONE_AT if status == "completed" else None, created_at=DONE_AT)
        s.add(analysis)
        s.flush()
        return analysis.id


def token_for(app, analysis_id: int) -> str:
    return sign_report(analysis_id, app.extensions["media_secret"])


def get_page(client, app, analysis_id: int):
    return client.get(f"/r/{token_for(app, analysis_id)}")


def stored_photo(app) -> tuple[str, bytes]:
    out = io.BytesIO()
    Image.new("RGB", (80, 60), (60, 140, 50)).save(out, "JPEG")
    key = new_key("photos", "jpg")
    app.extensions["storage"].put(key, out.getvalue(), "image/jpeg")
    return key, out.getvalue()


def assert_safe_headers(response) -> None:
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    # The inline <style> is exactly the one the policy allows by its hash (otherwise a browser drops the CSS).
    style = parse(response.get_data(as_text=True)).style
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert style == CSS and f"'sha256-{digest}'" in csp


def assert_self_contained(html: str) -> None:
    """No external fonts, images, scripts or links: every URL is a path on this server."""
    assert not re.search(r"https?:|//[a-z0-9]", html, re.IGNORECASE)
    assert "<script" not in html.lower() and "@import" not in html and "url(" not in html
    assert all(u.startswith("/") and not u.startswith("//") for u in parse(html).urls)


# --- the completed page ---------------------------------------------------------------------------


def test_full_result_in_turkish_shows_every_section(app, client):
    key, photo = stored_photo(app)
    analysis_id = add_analysis(app, result=fixture_result("result_full_tr.json"), image_key=key)

    response = get_page(client, app, analysis_id)
    assert response.status_code == 200
    assert_safe_headers(response)
    html = response.get_data(as_text=True)
    page = parse(html)
    text = page.text
    assert '<html lang="tr">' in html
    assert ('meta', {'name': 'viewport', 'content': 'width=device-width, initial-scale=1'}) in page.tags
    # Heading, date, urgency, score and its meaning.
    assert "Domates analiz raporu" in text and "21 Kas 2026 13:16" in text
    assert "⚠️ ACİL: hemen müdahale gerekiyor." in text
    assert "Sağlık puanı\n6/10\nBakım istiyor: sorunlara kısa sürede müdahale edin." in text
    assert "Ana sorun: Erken yanıklık (fungal)" in text
    assert "Ayrıca: azot eksikliği, magnezyum eksikliği" in text
    assert "Gidişat: iyi" in text and "Verime etkisi: orta" in text
    assert "Domatesinizde erken yanıklık denen mantar hastalığı başlamış" in text
    assert "Bitki: Solanum lycopersicum" in text and "Gelişme dönemi: meyve" in text
    assert "Belirlenemedi" not in text and "belirlenemedi" not in text  # placeholders are never shown
    # Problems: the disease with severity and certainty, the abiotic stress, the nutrient shortage.
    assert "Hastalık Erken yanıklık (Alternaria solani)\nfungal · alt yapraklar\nŞiddet: orta Kesinlik: %85" in text
    assert "Su hafif su stresi" in text
    assert "yok" not in text.split()  # "no temperature stress" etc. is not a problem
    assert "Besin eksikliği azot, magnezyum\nAzot (N): eksik · Magnezyum (Mg): eksik\nŞiddet: düşük" in text
    assert "Etkilenen alan: %20" in text and "Yayılma riski: orta" in text
    assert "Önlem alınmazsa kötüleşebileceği süre: 1-2 hafta" in text
    assert "konsantrik halkalı kahverengi lekeler" in text and "alt yapraklarda kloroz" in text
    # Nutrients: only what is not normal, said once (with the shortage), its severity once.
    assert "Fosfor" not in text and text.count("Azot (N)") == 1 and "Besin durumu" not in text
    assert text.count("Şiddet: düşük") == 1
    # Every recommendation, grouped by priority (most pressing first), with its timeline.
    steps = text[text.index("Ne yapmalı"):text.index("Takip edin")]
    expected = [
        ("Kritik: önce bunları yapın", "Hastalıklı alt yaprakları toplayıp imha edin", "Hemen Ne zaman: bugün"),
        ("Yüksek öncelik", "Ruhsatlı bir fungisit uygulayın", "Hemen Ne zaman: 1-2 gün"),
        ("Orta öncelik", "Azotlu gübre verin", "Önümüzdeki günlerde Ne zaman: 1 hafta"),
        ("Orta öncelik", "Yaprakları ıslatmayın", "Önlem Ne zaman: sürekli"),
        ("Düşük öncelik", "Ekim nöbeti uygulayın", "Önlem Ne zaman: sonraki sezon"),
    ]
    positions = [steps.index(action) for _, action, _ in expected]
    assert positions == sorted(positions)
    for group, action, tags in expected:
        assert steps.index(group) < steps.index(action)
        assert f"{action}\n" in steps and tags in steps[steps.index(action):]
    assert "Bakır veya mankozeb içerikli, etiketteki dozda." in steps
    # Monitoring, insight, overall confidence, and no local-estimate notice for a real result.
    assert "yeni leke oluşumu\nNe sıklıkla: 2 günde bir\nNe zaman harekete geçmeli: üst yapraklara ulaşırsa" in text
    assert "Azot eksikliği bitkiyi yaprak hastalıklarına karşı daha duyarlı hale getiriyor." in text
    assert "Analizin genel güven düzeyi: %85" in text
    assert "otomatik bir tahmindir" not in text
    # The photo: the optimised copy, through a fresh signed link on this same server.
    [photo_url] = [u for u in page.urls if u != "/favicon.svg"]  # the photo, beside the tab's icon
    assert photo_url.startswith("/media/")
    image = client.get(photo_url)
    assert image.status_code == 200 and image.data == photo
    assert_self_contained(html)
    assert len(response.data) < 30_000


def test_full_result_in_english(app, client):
    analysis_id = add_analysis(app, locale="en", result=fixture_result("result_full_tr.json"))
    response = get_page(client, app, analysis_id)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    text = parse(html).text
    assert '<html lang="en">' in html
    assert "Tomato: analysis report" in text and "Nov 21, 2026" in text
    assert "⚠️ URGENT: this needs action now." in text
    assert "Health score\n6/10\nNeeds care: treat the problems soon." in text
    assert "Disease Erken yanıklık (Alternaria solani)" in text and "Certainty: 85%" in text
    assert "Nitrogen (N): eksik" in text and "Water hafif su stresi" in text
    assert "Critical: do these first" in text and "Low priority" in text and "When: sonraki sezon" in text
    assert "How often: 2 günde bir" in text
    # Values from N8N stay as written (Turkish); no Turkish label is left.
    for label in ("Sağlık puanı", "Ne yapmalı", "Bulunan sorunlar", "Şiddet", "ACİL"):
        assert label not in text
    assert_self_contained(html)


def test_a_result_with_drifted_keys_still_renders_in_full(app, client):
    analysis_id = add_analysis(app, crop="biber", result=fixture_result("result_drifted_keys.json"))
    text = parse(get_page(client, app, analysis_id).get_data(as_text=True)).text
    assert "Biber analiz raporu" in text and "3/10" in text and "Kötü: bitkinin hemen tedavi edilmesi" in text
    assert "Zararlı Yaprak biti (Aphididae)\nböcek\nŞiddet: yüksek Kesinlik: %90" in text
    assert "Hastalık Hıyar mozaik virüsü (CMV)" in text and "Kesinlik: %70" in text
    assert "Kritik: önce bunları yapın\nVirüslü bitkileri söküp uzaklaştırın" in text
    assert "Yüksek öncelik\nYaprak bitine karşı mücadele edin\nSarı yapışkan tuzak" in text
    assert "Ne zaman:" not in text  # no timelines in this result: none invented


def test_a_result_with_most_parts_missing(app, client):
    result = {"summary": {"overall_health_score": 9}}
    analysis_id = add_analysis(app, crop=None, result=result)
    response = get_page(client, app, analysis_id)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    text = parse(html).text
    assert "Analiz raporu" in text and "9/10" in text and "Sağlıklı: bitki iyi durumda." in text
    assert "Hastalık, zararlı ya da başka bir sorun bulunmadı." in text
    for absent in ("ACİL", "Kısaca", "Besin durumu", "Ne yapmalı", "Takip edin", "Bilmeniz iyi olur", "Ana sorun",
                   "Bitki:", "<img", "genel güven", "None"):
        assert absent not in html
    assert_self_contained(html)


def test_priorities_missing_or_unknown_follow_the_list_they_came_in(app, client):
    result = {
        "summary": {"overall_health_score": 7},
        "recommendations": {
            "immediate": [{"action": "Bugün sulayın"}],
            "short_term": ["Gübre verin"],
            "preventive": [{"action": "Malçlayın", "priority": "bilinmiyor"}],
        },
    }
    text = parse(get_page(client, app, add_analysis(app, result=result)).get_data(as_text=True)).text
    assert "Yüksek öncelik\nBugün sulayın" in text
    assert "Orta öncelik\nGübre verin" in text
    assert "Düşük öncelik\nMalçlayın" in text
    assert "Genel olarak sağlıklı" in text and "ACİL" not in text


def test_only_real_abiotic_stress_is_a_problem(app, client):
    stress = {"water_status": "yeterli", "temperature_stress": "sıcaklık stresi yok", "light_stress": "No stress",
              "physical_damage": "dolu hasarı", "chemical_damage": "NORMAL", "soil_indicators": "Belirlenemedi"}
    result = {"summary": {"overall_health_score": 7}, "environmental_stress": stress}
    text = parse(get_page(client, app, add_analysis(app, result=result)).get_data(as_text=True)).text
    problems = text[text.index("Bulunan sorunlar"):]
    assert "Fiziksel hasar dolu hasarı" in problems
    for shown_nowhere in ("yeterli", "stresi yok", "No stress", "NORMAL", "Belirlenemedi", "Su ", "Toprak"):
        assert shown_nowhere not in problems


def test_local_estimate_is_said_so(app, client):
    result = fixture_result("result_full_tr.json")
    result["processing_metadata"]["source"] = "local-estimate"
    text = parse(get_page(client, app, add_analysis(app, result=result)).get_data(as_text=True)).text
    assert "Bu, fotoğrafınızdaki renklerden yapılmış otomatik bir tahmindir, uzman teşhisi değildir." in text


def test_values_from_n8n_are_escaped(app, client):
    result = {"summary": {"overall_health_score": 5, "primary_concern": "<script>alert(1)</script>"},
              "farmer_friendly_summary": '<img src="https://evil.example/x.png">'}
    html = get_page(client, app, add_analysis(app, result=result)).get_data(as_text=True)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<img src="https' not in html and "&lt;img" in html
    assert parse(html).urls == ["/favicon.svg"]  # the tab's icon alone: no link from a value


# --- analyses that have no report (yet) -----------------------------------------------------------


@pytest.mark.parametrize("status", ["received", "queued", "processing"])
def test_pending_analysis_gets_a_kind_sentence(app, client, status):
    response = get_page(client, app, add_analysis(app, status=status))
    assert response.status_code == 200
    assert_safe_headers(response)
    text = parse(response.get_data(as_text=True)).text
    assert "Analiziniz henüz hazır değil" in text and "birkaç dakika içinde WhatsApp'tan" in text


def test_failed_analysis_gets_a_kind_sentence_in_the_farmers_language(app, client):
    response = get_page(client, app, add_analysis(app, locale="en", status="failed"))
    assert response.status_code == 200
    text = parse(response.get_data(as_text=True)).text
    assert "This analysis could not be completed" in text and "nothing was charged" in text


def test_completed_but_unusable_result_is_not_an_error(app, client):
    analysis_id = add_analysis(app, result={"success": False, "error": "Görsel indirilemedi"})
    response = get_page(client, app, analysis_id)
    assert response.status_code == 200 and "Bu analiz tamamlanamadı" in parse(response.get_data(as_text=True)).text


# --- links that do not open a report -------------------------------------------------------------


def test_a_deleted_farmers_report_link_says_the_report_was_deleted_not_that_it_is_still_running(app, client):
    from services import deletion

    analysis_id = add_analysis(app, result=fixture_result("result_full_tr.json"))
    with app.extensions["db"].session() as s, s.begin():
        farmer_id = s.get_one(Analysis, analysis_id).farmer_id
        deletion.erase(s, farmer_id, None, datetime.now(UTC))
    response = get_page(client, app, analysis_id)
    assert response.status_code == 410
    assert_safe_headers(response)
    text = parse(response.get_data(as_text=True)).text
    assert "Bu rapor silindi" in text and "henüz hazır değil" not in text and "Erken yanıklık" not in text



def signed_days_ago(app, analysis_id: int, days: float, monkeypatch: pytest.MonkeyPatch) -> str:
    signed_at = time.time() - days * DAY
    with monkeypatch.context() as m:
        m.setattr("itsdangerous.timed.time.time", lambda: signed_at)
        return token_for(app, analysis_id)


def test_expired_link_is_410_with_a_kind_turkish_page(app, client, monkeypatch):
    analysis_id = add_analysis(app, result=fixture_result("result_full_tr.json"))
    still_good = signed_days_ago(app, analysis_id, 6.9, monkeypatch)
    assert client.get(f"/r/{still_good}").status_code == 200
    response = client.get(f"/r/{signed_days_ago(app, analysis_id, 7.1, monkeypatch)}")
    assert response.status_code == 410
    assert_safe_headers(response)
    html = response.get_data(as_text=True)
    text = parse(html).text
    assert "Bu bağlantının süresi doldu" in text and "'Detaylar' düğmesine yeniden dokunun" in text
    assert "Erken yanıklık" not in text  # nothing of the report
    assert_self_contained(html)


def test_an_expired_link_to_a_deleted_farmers_report_says_it_was_deleted_not_to_ask_again(app, client, monkeypatch):
    from services import deletion

    analysis_id = add_analysis(app, result=fixture_result("result_full_tr.json"))
    old = signed_days_ago(app, analysis_id, 8, monkeypatch)
    with app.extensions["db"].session() as s, s.begin():
        deletion.erase(s, s.get_one(Analysis, analysis_id).farmer_id, None, datetime.now(UTC))
    response = client.get(f"/r/{old}")
    assert response.status_code == 410
    text = parse(response.get_data(as_text=True)).text
    assert "Bu rapor silindi" in text and "Detaylar" not in text and "süresi doldu" not in text


def test_expired_link_speaks_the_farmers_language(app, client, monkeypatch):
    analysis_id = add_analysis(app, locale="en", result=fixture_result("result_full_tr.json"))
    response = client.get(f"/r/{signed_days_ago(app, analysis_id, 8, monkeypatch)}")
    assert response.status_code == 410
    assert "This link has expired" in parse(response.get_data(as_text=True)).text


@pytest.mark.parametrize("mangle", [
    # the signature's first character (its last one may carry only padding bits, which decode the same)
    lambda t: t[:t.rindex(".") + 1] + ("B" if t[t.rindex(".") + 1] == "A" else "A") + t[t.rindex(".") + 2:],
    lambda t: t[:-6],  # truncated
    lambda t: "x" + t,
    lambda t: t.replace(".", "", 1),
    lambda t: "not-a-token",
    lambda t: "a/b/../../etc/passwd",
    lambda t: "%00",
    lambda t: "ü" * 300,
])
def test_tampered_links_are_a_404_page(app, client, mangle):
    token = token_for(app, add_analysis(app, result=fixture_result("result_full_tr.json")))
    response = client.get(f"/r/{mangle(token)}")
    assert response.status_code == 404
    assert_safe_headers(response)
    text = parse(response.get_data(as_text=True)).text
    assert "Rapor bulunamadı" in text and "Erken yanıklık" not in text


def test_a_good_signature_for_a_missing_analysis_is_a_404(app, client):
    assert client.get(f"/r/{token_for(app, 987654)}").status_code == 404


@pytest.mark.parametrize("analysis_id", [2**31, 2**63, 2**64 + 5])
def test_a_good_signature_for_an_id_no_row_can_have_is_the_404_page(app, client, analysis_id):
    response = client.get(f"/r/{token_for(app, analysis_id)}")
    assert response.status_code == 404 and "Rapor bulunamadı" in parse(response.get_data(as_text=True)).text


def test_the_page_has_its_tab_icon_from_this_server_which_its_policy_allows(app, client):
    response = get_page(client, app, add_analysis(app, result=fixture_result("result_full_tr.json")))
    icons = [attrs for tag, attrs in parse(response.get_data(as_text=True)).tags
             if tag == "link" and attrs.get("rel") == "icon"]
    assert [icon["href"] for icon in icons] == ["/favicon.svg"]
    assert "img-src 'self'" in response.headers["Content-Security-Policy"]
    icon = client.get("/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml" and b"<svg" in icon.data
    assert client.get("/favicon.ico").status_code == 204  # a page without a link asks here: no error


@pytest.mark.parametrize("path", ["/r", "/r/"])
def test_a_link_without_its_token_is_the_kind_404_page(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert_safe_headers(response)
    assert "Rapor bulunamadı" in parse(response.get_data(as_text=True)).text


def test_other_keys_and_salts_cannot_open_a_report(app, client):
    analysis_id = add_analysis(app, result=fixture_result("result_full_tr.json"))
    assert client.get(f"/r/{sign_report(analysis_id, 'another-secret-entirely')}").status_code == 404
    key, _ = stored_photo(app)
    media_token = sign_media(key, app.extensions["media_secret"], "").removeprefix("/media/")
    assert client.get(f"/r/{media_token}").status_code == 404  # a media token never opens a report
    assert client.get(f"/media/{token_for(app, analysis_id)}").status_code == 403  # and vice versa


def test_token_round_trip_and_refusals():
    token = sign_report(42, "s3cret-for-this-test")
    assert read_report_token(token, "s3cret-for-this-test", DAY) == 42
    assert len(token) < 60  # a short link for WhatsApp
    with pytest.raises(Exception, match="invalid"):
        read_report_token(token, "another", DAY)


# --- the Detaylar reply carries the link ----------------------------------------------------------


@pytest.fixture
def chat_farmer(app):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        with app.extensions["db"].session() as s, s.begin():
            quota.seed_tiers(s)
        farmer = ChatFarmer(app, GraphStub(mock))
        farmer.onboard()
        yield farmer


def test_detaylar_reply_carries_a_working_link(app, client, chat_farmer):
    analysis_id = add_analysis(app, result=fixture_result("result_full_tr.json"))
    details = chat_farmer.tap_id(f"result:details:{analysis_id}", "Detaylar")
    # Every immediate action, the topics as before, then the link as a line of plain text.
    assert details[0].startswith("Önce yapmanız gerekenler:") and details[1].startswith("Hastalıklar ve zararlılar:")
    last = details[-1]
    match = re.fullmatch(r"Tüm rapor: (https://bot\.test/r/(\S+))\nBağlantı (.+) tarihine kadar açılır\.", last)
    assert match, last
    url, token, until = match.groups()
    assert re.search(r"\d{1,2} \w+ 20\d\d", until)
    assert chat_farmer.last_bodies[-1]["text"]["body"] == last
    assert read_report_token(token, app.extensions["media_secret"], 60) == analysis_id
    response = client.get(url.removeprefix("https://bot.test"))
    assert response.status_code == 200
    assert "Domates analiz raporu" in parse(response.get_data(as_text=True)).text


def test_template_details_button_links_the_latest_report_in_english(app, client, chat_farmer):
    add_analysis(app, result=fixture_result("result_full_tr.json"))
    latest = add_analysis(app, crop="biber", result=fixture_result("result_drifted_keys.json"))
    chat_farmer.says("dil")
    chat_farmer.taps("lang:en")
    details = chat_farmer.tap_id("result:details", "Details")
    url = re.search(r"Full report: (https://bot\.test/r/\S+)\nThe link works until", details[-1])
    assert url, details[-1]
    token = url.group(1).rsplit("/", 1)[1]
    assert read_report_token(token, app.extensions["media_secret"], 60) == latest
    text = parse(client.get(f"/r/{token}").get_data(as_text=True)).text
    assert "Pepper: analysis report" in text


def test_analysis_details_reply_without_and_with_a_link():
    view = replies.ResultView(analysis_id=1, crop="domates", health_score=6, primary_concern=None, urgent=False,
                              urgent_actions=(), summary=None, monitoring=("yaprak: haftada bir",))
    without = [r.text for r in replies.analysis_details("tr", view)]
    assert without == ["Takip edin:\n• yaprak: haftada bir"]
    until = datetime(2026, 11, 28, 21, 30, tzinfo=UTC)  # already the 29th in Istanbul
    linked = replies.analysis_details("tr", replace(view, report_url="https://bot.test/r/abc", report_expires_at=until))
    link = "Tüm rapor: https://bot.test/r/abc\nBağlantı 29 Kasım 2026 tarihine kadar açılır."
    assert [r.text for r in linked] == [*without, link]
    empty = replace(view, monitoring=())
    assert [r.text for r in replies.analysis_details("tr", empty)] == ["Bu analiz için başka ayrıntı yok."]
    only_link = replies.analysis_details("en", replace(empty, report_url="https://bot.test/r/abc"))
    assert [r.text for r in only_link] == ["Full report: https://bot.test/r/abc"]


# --- what was found, every photo, small enough for a phone -------------------------------------------------


def local_result(spots: bool) -> dict[str, Any]:
    from PIL import ImageDraw

    from devtools.local_analyser import estimate

    image = Image.new("RGB", (400, 300), (125, 78, 36))  # brown soil
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 30, 360, 270), fill=(60, 140, 50))
    if spots:
        draw.ellipse((120, 90, 220, 190), fill=(110, 65, 30))
    out = io.BytesIO()
    image.save(out, "PNG")
    return estimate(out.getvalue(), {"analysis_id": 1, "crop_type": "domates"})


def screen_lines(text: str, chars: int = 40) -> int:
    """Lines the page's text takes on a 390 px wide phone at the page's 16 px font (about 40 characters a line)."""
    return sum(max(1, -(-len(line) // chars)) for line in text.splitlines())


def test_every_photo_of_an_album_is_shown_in_order(app, client):
    photos = [stored_photo(app) for _ in range(3)]
    analysis_id = add_analysis(app, result=fixture_result("result_full_tr.json"), image_key=photos[0][0])
    with app.extensions["db"].session() as s, s.begin():
        s.get_one(Analysis, analysis_id).image_keys = [key for key, _ in photos]
    html = get_page(client, app, analysis_id).get_data(as_text=True)
    urls = [u for u in parse(html).urls if u != "/favicon.svg"]
    assert len(urls) == 3 and all(u.startswith("/media/") for u in urls)
    assert [client.get(u).data for u in urls] == [data for _, data in photos]
    assert_self_contained(html)


def test_only_what_was_found_is_shown(app, client):
    result = local_result(spots=True)
    text = parse(get_page(client, app, add_analysis(app, result=result)).get_data(as_text=True)).text
    assert "Kahverengi yaprak lekeleri" in text
    assert "Diğer alanlarda sorun görülmedi." in text
    for never in ("değerlendirilmedi", "bilinmiyor", "görülmedi\n", "Besin durumu", "Besin eksikliği", "Şiddet: yok",
                  "Yayılma riski: düşük\nYayılma"):
        assert never not in text, never
    assert text.count("otomatik bir tahmindir") == 1  # the local estimate is said once


def test_no_problem_entries_of_diseases_and_pests_are_not_shown_as_findings(app, client):
    result = fixture_result("result_full_tr.json")
    result["pest_disease"]["pests_detected"] = [{"type": "yok", "severity": "yok", "confidence": 0}]
    result["pest_disease"]["diseases_detected"] = [{"type": "Hastalık tespit edilmedi", "confidence": 0}]
    text = parse(get_page(client, app, add_analysis(app, result=result)).get_data(as_text=True)).text
    assert "Zararlı" not in text and "Hastalık tespit" not in text and "Kesinlik: %0" not in text
    assert "Şiddet: yok" not in text and "Besin eksikliği azot, magnezyum" in text  # real findings stay


def test_nutrient_statuses_without_a_named_shortage_keep_their_own_section(app, client):
    result = fixture_result("result_full_tr.json")
    result["nutrient_status"].update(primary_deficiency="yok", secondary_deficiencies=[])
    text = parse(get_page(client, app, add_analysis(app, result=result)).get_data(as_text=True)).text
    assert "Besin eksikliği" not in text
    assert "Besin durumu\nAzot (N): eksik\nMagnezyum (Mg): eksik\nŞiddet: düşük" in text


@pytest.mark.parametrize("summary", [
    {"overall_health_score": 8, "primary_concern": "Hafif besin eksikliği"},
    {"overall_health_score": 4},
    {"overall_health_score": 8, "critical_issues_count": 1, "secondary_concerns": ["Yaprak kıvrılması"]},
], ids=["main concern", "low score", "other concerns"])
def test_a_thin_result_never_says_nothing_was_found_beside_a_concern_or_a_low_score(app, client, summary):
    text = parse(get_page(client, app, add_analysis(app, result={"summary": summary})).get_data(as_text=True)).text
    assert "bulunmadı" not in text
    assert "Analiz, sorun hakkında daha fazla ayrıntı vermedi." in text


def test_an_urgent_thin_result_in_english_says_no_detail_was_given(app, client):
    result = {"summary": {"overall_health_score": 8}, "health_assessment": {"severity": "kritik"}}
    text = parse(get_page(client, app, add_analysis(app, locale="en", result=result, phone="+905321234599"))
                 .get_data(as_text=True)).text
    assert "URGENT" in text and "No disease" not in text
    assert "The analysis gave no further detail about the problem." in text


def test_a_crop_and_plant_the_bot_does_not_know_are_capitalised_the_turkish_way(app, client):
    result = {"summary": {"overall_health_score": 9}, "plant_identification": {"species": "incir"}}
    text = parse(get_page(client, app, add_analysis(app, crop="ıhlamur", result=result)).get_data(as_text=True)).text
    assert "Ihlamur analiz raporu" in text and "Bitki: İncir" in text
    text = parse(get_page(client, app, add_analysis(app, crop="buğday", result=result)).get_data(as_text=True)).text
    assert "Buğday analiz raporu" in text


def test_a_healthy_local_estimate_has_no_problem_rows(app, client):
    text = parse(get_page(client, app, add_analysis(app, result=local_result(spots=False))).get_data(
        as_text=True)).text
    assert "Hastalık, zararlı ya da başka bir sorun bulunmadı." in text
    assert "Diğer alanlarda" not in text and "Besin durumu" not in text and "değerlendirilmedi" not in text


def test_one_finding_fits_about_two_phone_screens(app, client):
    """An 844 px high phone shows about 36 lines of 22 px: two screens are some 70 lines, headings and margins
    included. The page's CSS is compact: 16 px text, small paddings."""
    text = parse(get_page(client, app, add_analysis(app, result=local_result(spots=True))).get_data(
        as_text=True)).text
    assert screen_lines(text) <= 64  # this one measures 60
    assert "font:16px/1.4" in CSS and "padding:8px 10px" in CSS


def test_an_album_is_spoken_of_in_the_plural_on_the_report_page(app, client):
    result = fixture_result("result_full_tr.json")
    result["processing_metadata"]["source"] = "local-estimate"
    photos = [stored_photo(app) for _ in range(3)]
    analysis_id = add_analysis(app, result=result, image_key=photos[0][0])
    pending_id = add_analysis(app, status="queued")
    with app.extensions["db"].session() as s, s.begin():
        s.get_one(Analysis, analysis_id).image_keys = [key for key, _ in photos]
        s.get_one(Analysis, pending_id).media_ids = ["m1", "m2", "m3"]
    text = parse(get_page(client, app, analysis_id).get_data(as_text=True)).text
    assert "fotoğraflarınızdaki renklerden" in text and "fotoğrafınızdaki" not in text
    pending = parse(get_page(client, app, pending_id).get_data(as_text=True)).text
    assert "Fotoğraflarınızı hâlâ inceliyoruz" in pending
