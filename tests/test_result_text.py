"""What the farmer reads of a result in the chat: the summary and `Detaylar`, built from the normalised
result (pure: no app, no database). Said once, no brackets in brackets, only what was found."""

from __future__ import annotations

import io
import json
import re
from types import SimpleNamespace

import pytest
from PIL import Image, ImageDraw

from bot import replies
from bot.draft import Draft
from bot.place import PROVINCES, province_in, tidy_place
from devtools.local_analyser import LOCAL_ESTIMATE_NOTE, estimate
from services.analysis import result_view
from services.analysis_result import annotated, is_nothing_found, normalise
from tests.helpers import FIXTURES


def spotted_leaf() -> bytes:
    image = Image.new("RGB", (400, 300), (245, 245, 245))
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 30, 360, 270), fill=(60, 140, 50))
    draw.ellipse((120, 90, 220, 190), fill=(110, 65, 30))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def chat(result: dict, locale: str = "tr") -> tuple[str, list[str]]:
    view = result_view(SimpleNamespace(id=7, crop="domates"), normalise(result), locale)  # type: ignore[arg-type]
    return replies.analysis_result(locale, view).text, [r.text for r in replies.analysis_details(locale, view)]


def test_a_local_estimate_says_so_once_without_double_brackets_or_empty_nutrients() -> None:
    summary, details = chat(estimate(spotted_leaf(), {"analysis_id": 7, "crop_type": "domates"}))
    everything = "\n".join([summary, *details])
    assert everything.count("yerel tahmin") == 1 and LOCAL_ESTIMATE_NOTE not in everything
    assert "Fotoğraftaki renklerden yapılmış otomatik yerel tahmindir, uzman teşhisi değildir." in summary
    assert not re.search(r"\)\s*\(", everything) and "((" not in everything and "))" not in everything
    assert "(Fotoğraftaki" not in summary  # the notice is a sentence, not a bracket
    assert re.search(r"Kahverengi yaprak lekeleri \(olası fungal hastalık, renk tahmini\): (düşük|orta|yüksek)\n",
                     everything)
    assert "Besin durumu" not in everything and "görülmedi" not in everything  # nothing found: no nutrient part


def test_the_english_notice_is_said_once_too() -> None:
    summary, _ = chat(estimate(spotted_leaf(), {"analysis_id": 7}), "en")
    assert summary.count("local estimate") == 1
    assert "Automatic local estimate from the photo's colours, not an expert diagnosis." in summary


def test_nutrients_are_listed_when_something_was_found() -> None:
    full = json.loads((FIXTURES / "n8n" / "result_full_tr.json").read_text().replace("{{analysis_id}}", "7"))
    summary, details = chat(full)
    assert any(d.startswith("Besin durumu:") and "azot" in d for d in details)
    assert "yerel tahmin" not in summary  # a real result carries no local-estimate notice


def test_details_leave_out_disease_and_pest_entries_that_say_none() -> None:
    full = json.loads((FIXTURES / "n8n" / "result_full_tr.json").read_text().replace("{{analysis_id}}", "7"))
    full["pest_disease"]["pests_detected"] = [{"type": "yok", "severity": "yok", "confidence": 0}]
    _, details = chat(full)
    everything = "\n".join(details)
    assert "• yok" not in everything and "(yok)" not in everything
    assert "Erken yanıklık (Alternaria solani): orta" in everything  # the real disease is still there


def full_result() -> dict:
    return json.loads((FIXTURES / "n8n" / "result_full_tr.json").read_text().replace("{{analysis_id}}", "7"))


def test_a_name_or_step_that_is_not_words_is_left_out_never_shown_as_a_number() -> None:
    full = full_result()
    full["pest_disease"]["diseases_detected"] = [{"type": 5, "severity": 3}, {"type": 6, "name": "Külleme"}, 8,
                                                 {"type": "Erken yanıklık", "severity": 2}]
    full["recommendations"]["immediate"] = [7, {"action": 9, "priority": "kritik"}, "Sulamayı azaltın"]
    full["recommendations"]["monitoring"] = [{"parameter": 4, "frequency": "haftalık"}]
    summary, details = chat(full)
    everything = "\n".join([summary, *details])
    assert "1. Sulamayı azaltın" in summary and "1. 7" not in summary and "9" not in summary
    assert "• Külleme\n" in everything + "\n" and "• Erken yanıklık\n" in everything + "\n"
    assert not re.search(r"• [0-9]", everything) and "(3)" not in everything and "(2)" not in everything
    assert "haftalık" not in everything  # the monitored parameter had no name


@pytest.mark.parametrize("written, tr, en", [
    ("high", "yüksek", "high"), ("Severe", "yüksek", "high"), ("moderate", "orta", "medium"),
    ("low", "düşük", "low"), ("CRITICAL", "kritik", "critical"), ("Yüksek", "yüksek", "high"),
    ("hafif", "düşük", "low"),
    ("Orta-Yüksek", "yüksek", "high"), ("Düşük-Orta", "orta", "medium"), ("çok ciddi", "kritik", "critical"),
    ("kritik seviye", "kritik", "critical"), ("Orta seviye", "orta", "medium"),  # before: left out (unknown)
])
def test_a_known_severity_reads_in_the_farmers_language_whatever_language_n8n_wrote_it_in(written, tr, en) -> None:
    full = full_result()
    full["pest_disease"]["diseases_detected"] = [{"type": "Early blight", "severity": written}]
    assert "• Early blight (" + tr + ")" in "\n".join(chat(full)[1])
    assert "• Early blight (" + en + ")" in "\n".join(chat(full, "en")[1])


@pytest.mark.parametrize("written", ["süper-kötü", "3/5", "biraz"])
def test_an_unknown_severity_is_not_shown(written) -> None:
    full = full_result()
    full["pest_disease"]["diseases_detected"] = [{"type": "Erken yanıklık (Alternaria solani)", "severity": written}]
    everything = "\n".join(chat(full)[1])
    assert "• Erken yanıklık (Alternaria solani)\n" in everything + "\n" and written not in everything


def test_annotated_never_puts_brackets_after_brackets() -> None:
    assert annotated("Erken yanıklık", "orta") == "Erken yanıklık (orta)"
    assert annotated("Erken yanıklık (Alternaria solani)", "orta") == "Erken yanıklık (Alternaria solani): orta"
    assert annotated("Sulayın", None) == "Sulayın"


def test_words_meaning_nothing_found_are_recognised_and_findings_are_not() -> None:
    for value in ("değerlendirilmedi", "Görülmedi", "bilinmiyor", "yok", "normal", "Not assessed", None, " "):
        assert is_nothing_found(value), value
    for value in ("eksik", "olası eksik", "azot (olası)", "hafif su stresi"):
        assert not is_nothing_found(value), value


@pytest.mark.parametrize("place,province", [
    ("Hüseyin Evil Çiftliği, Karaköy Mah. Lale Sk. No:5, 42250 Selçuklu/Konya", "Konya"),
    ("Konya, Selçuklu", "Konya"),
    ("ŞANLIURFA merkez", "Şanlıurfa"),
    ("Urfa", "Şanlıurfa"),
    ("Agri merkez", "Ağrı"),  # typed without Turkish letters
    ("IĞDIR", "Iğdır"),
    ("istanbul", "İstanbul"),
    ("Ankara Yolu No:12, Meram/Konya", "Konya"),
    ("Konya Cad. 4, Muratpaşa", None),  # a street named after a province is not the province
    ("Ali'nin bağı, dere kenarı", None),
    ("37.8746, 32.4932", None),
    ("", None),
    (None, None),
])
def test_the_province_of_a_place_is_one_of_the_81_or_none(place, province) -> None:
    assert province_in(place) == province


def test_every_province_is_found_by_its_own_name() -> None:
    assert len(set(PROVINCES)) == 81
    assert [province_in(f"Merkez, {name}") for name in PROVINCES] == list(PROVINCES)


def test_a_place_is_said_once() -> None:
    assert tidy_place("Konya", "Selçuklu, Konya") == "Konya, Selçuklu"
    assert tidy_place("Konya, Selçuklu, Konya") == "Konya, Selçuklu"
    assert tidy_place("İzmir", "Konak, izmir") == "İzmir, Konak"
    assert tidy_place(None, "  ", "Seyhan ,  Adana") == "Seyhan, Adana"
    draft = Draft(photo_message_id=1, crop="domates", latitude=37.87, longitude=32.49,
                  location_text="Konya, Selçuklu, Konya")
    assert "Konum: Konya, Selçuklu\n" in replies.confirm("tr", draft).text
    pinned = Draft(photo_message_id=1, crop="domates", latitude=37.87461, longitude=32.49321)
    assert "Konum: 37.8746, 32.4932" in replies.confirm("tr", pinned).text
    assert "Konum: , \n" in replies.confirm("tr", Draft(photo_message_id=1, location_text=", ")).text  # as typed
