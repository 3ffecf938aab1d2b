"""Normalising N8N results: the three shared fixtures, key spellings, failures, scales, urgency."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from services.analysis_result import (
    LOCAL_ESTIMATE_SOURCE,
    AnalysisResult,
    Finding,
    Recommendation,
    Severity,
    confidence,
    health_score,
    is_no_problem,
    is_placeholder,
    normalise,
    queryable_columns,
    recommendations_of,
    snake_key,
)

FIXTURES = Path(__file__).parent / "fixtures" / "n8n"


def load(name: str, analysis_id: int = 42) -> dict[str, Any]:
    text = (FIXTURES / name).read_text("utf-8")
    return json.loads(text.replace("{{analysis_id}}", str(analysis_id)))


def full(**changes: Any) -> dict[str, Any]:
    """The full Turkish result with dotted-path changes: full(**{"summary.overall_health_score": 75})."""
    data = load("result_full_tr.json")
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return data


_DELETE = object()


# --- the fixtures ----------------------------------------------------------------------------

def test_a_full_turkish_result_is_read_field_by_field() -> None:
    r = normalise(load("result_full_tr.json"))
    assert r.ok and r.failure_reason is None
    assert r.analysis_id == "42"
    assert r.species == "Solanum lycopersicum"
    assert r.variety is None  # "Belirlenemedi" outside the key fields: unknown, not a failure
    assert r.species_confidence == 92.0
    assert r.crop_type == "domates"
    assert r.growth_stage == "meyve"
    assert r.health_score == 6
    assert r.severity == "orta"
    assert r.primary_concern == "Erken yanıklık (fungal)"
    assert r.secondary_concerns == ("azot eksikliği", "magnezyum eksikliği")
    assert r.diseases == (Finding("Erken yanıklık (Alternaria solani)", "fungal", "orta", 85.0, ("alt yapraklar",)),)
    assert r.pests == ()
    assert r.nutrients.primary_deficiency == "azot"
    assert r.nutrients.secondary_deficiencies == ("magnezyum",)
    assert r.nutrients.statuses == (("nitrogen", "eksik"), ("magnesium", "eksik"))
    assert r.nutrients.severity == "düşük"
    assert r.recommendations.immediate[0] == Recommendation(
        "Hastalıklı alt yaprakları toplayıp imha edin", "Yaprakları tarlada bırakmayın, yakın veya gömün.",
        "bugün", "kritik")
    assert [len(g) for g in (r.recommendations.immediate, r.recommendations.short_term,
                             r.recommendations.preventive, r.recommendations.monitoring)] == [2, 1, 2, 1]
    assert r.recommendations.monitoring[0].parameter == "yeni leke oluşumu"
    assert r.recommendations.monitoring[0].frequency == "2 günde bir"
    assert r.prognosis == "iyi"
    assert r.estimated_yield_impact == "orta"
    assert r.critical_issues_count == 1
    assert r.farmer_summary is not None and r.farmer_summary.startswith("Domatesinizde erken yanıklık")
    assert r.confidence == 85.0
    assert r.cross_factor_insights[0].confidence == 70.0  # 0.7 -> 70
    assert r.confidence_notes[0].confidence == 30.0  # 0.3 -> 30
    assert r.token_usage == 2380
    assert r.cost_usd == 0.0021
    assert r.model == "gpt-5-mini"
    assert r.is_local_estimate is False
    # Urgent only because an immediate action's priority is "kritik" (every severity is orta/düşük):
    assert r.urgent is True


def test_full_result_is_not_urgent_without_the_high_immediate_priorities() -> None:
    data = full()
    for rec in data["recommendations"]["immediate"]:
        rec["priority"] = "orta"
    r = normalise(data)
    assert r.ok and r.urgent is False


def test_drifted_keys_are_normalised() -> None:
    r = normalise(load("result_drifted_keys.json"))
    assert r.ok, r.failure_reason
    assert r.health_score == 3
    assert r.species == "Capsicum annuum"
    assert r.growth_stage == "çiçeklenme"
    assert r.severity == "yüksek"
    assert [p.name for p in r.pests] == ["Yaprak biti (Aphididae)"]  # given as "name"
    assert [d.name for d in r.diseases] == ["Hıyar mozaik virüsü (CMV)"]  # given as "type"
    assert (r.species_confidence, r.pests[0].confidence, r.diseases[0].confidence, r.confidence) == (
        88.0, 90.0, 70.0, 80.0)
    assert r.primary_concern == "Viral hastalık ve yaprak biti"
    assert r.critical_issues_count == 2
    assert r.prognosis == "zayıf"
    assert r.estimated_yield_impact == "önemli"
    assert r.farmer_summary is not None and r.farmer_summary.startswith("Biberinizde yaprak biti")
    assert r.recommendations.short_term[0].details == "Sarı yapışkan tuzak ve ruhsatlı insektisit."
    assert r.recommendations.preventive == () and r.recommendations.monitoring == ()
    assert r.nutrients.statuses == ()
    assert r.token_usage is None and r.cost_usd is None and r.model is None
    assert r.urgent is True


def test_a_failed_result_carries_its_reason_and_no_score() -> None:
    r = normalise(load("result_failed.json"))
    assert r.ok is False
    assert r.failure_reason is not None
    assert "n8n reported failure" in r.failure_reason
    assert "Görsel indirilemedi: zaman aşımı" in r.failure_reason
    assert r.urgent is False
    assert r.health_score is None  # never 0
    assert r.species is None and r.primary_concern is None and r.farmer_summary is None


def test_normalise_does_not_touch_the_raw_json() -> None:
    for name in ("result_full_tr.json", "result_drifted_keys.json", "result_failed.json"):
        raw = load(name)
        before = copy.deepcopy(raw)
        normalise(raw)
        assert raw == before


def test_result_is_frozen() -> None:
    r = normalise(load("result_full_tr.json"))
    assert isinstance(r, AnalysisResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.ok = False  # type: ignore[misc]
    hash(r)  # tuples all the way down


# --- failures --------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [None, [], [load("result_full_tr.json")], "ok", 42, True])
def test_not_a_dict_fails(raw: object) -> None:
    r = normalise(raw)
    assert not r.ok and r.failure_reason is not None and "not a JSON object" in r.failure_reason


@pytest.mark.parametrize("value", [0, 0.0, "0", None, _DELETE])
def test_health_score_zero_or_missing_fails(value: object) -> None:
    r = normalise(full(**{"summary.overall_health_score": value}))
    assert not r.ok and r.failure_reason is not None and "health score" in r.failure_reason
    assert r.health_score is None and r.urgent is False


@pytest.mark.parametrize("value", [-3, 101, 1000, "çok iyi", True])
def test_health_score_unusable_fails(value: object) -> None:
    r = normalise(full(**{"summary.overall_health_score": value}))
    assert not r.ok and r.failure_reason is not None and "health score" in r.failure_reason


def test_success_false_alone_fails() -> None:
    r = normalise(full(success=False))
    assert not r.ok
    assert r.failure_reason == "n8n reported failure without a message"


@pytest.mark.parametrize("success", ["false", "False", 0])
def test_success_false_spellings_fail(success: object) -> None:
    assert not normalise(full(success=success)).ok


@pytest.mark.parametrize("changes, text", [
    ({"error": True, "error_message": "Kota aşıldı"}, "Kota aşıldı"),
    ({"error_message": "Model yanıt vermedi"}, "Model yanıt vermedi"),
    ({"error": "upstream model timeout"}, "upstream model timeout"),
    ({"error": {"message": "rate limited by model"}}, "rate limited by model"),
])
def test_an_error_alone_fails_even_with_success_true(changes: dict[str, Any], text: str) -> None:
    r = normalise(full(**changes))
    assert not r.ok and r.failure_reason is not None
    assert text in r.failure_reason and r.failure_reason.startswith("n8n reported failure")


@pytest.mark.parametrize("changes", [{"error": False}, {"error": None}, {"error_message": ""},
                                     {"error": "", "error_message": None}])
def test_falsy_errors_do_not_fail(changes: dict[str, Any]) -> None:
    assert normalise(full(**changes)).ok


@pytest.mark.parametrize("path, value", [
    ("plant_identification.species", "Belirlenemedi"),
    ("summary.primary_concern", "Analiz edilemedi"),
    ("summary.primary_concern", "ANALİZ EDİLEMEDİ."),
    ("farmer_friendly_summary", "Sistem hatası"),
    ("farmer_friendly_summary", "SİSTEM HATASI: lütfen tekrar deneyin"),
    ("plant_identification.species", " belirlenemedi "),
])
def test_placeholders_in_key_fields_fail(path: str, value: str) -> None:
    r = normalise(full(**{path: value}))
    assert not r.ok and r.failure_reason is not None and "placeholder" in r.failure_reason


@pytest.mark.parametrize("path", ["plant_identification.variety", "environmental_stress.soil_indicators",
                                  "nutrient_status.iron", "summary.prognosis"])
def test_placeholders_elsewhere_do_not_fail(path: str) -> None:
    r = normalise(full(**{path: "Belirlenemedi"}))
    assert r.ok
    assert r.prognosis in ("iyi", None)  # a placeholder prognosis reads as unknown
    assert all(status != "Belirlenemedi" for _, status in r.nutrients.statuses)


def test_a_sentence_mentioning_a_placeholder_word_is_not_a_placeholder() -> None:
    assert not is_placeholder("Çeşit belirlenemedi ama hastalık açık: erken yanıklık.")
    assert normalise(full(farmer_friendly_summary="Çeşit belirlenemedi ama erken yanıklık var.")).ok


def test_the_first_reason_is_the_most_important() -> None:
    r = normalise(load("result_failed.json"))  # error, score 0 and three placeholders at once
    assert r.failure_reason is not None and r.failure_reason.startswith("n8n reported failure (image_fetch_failed)")
    only_placeholder = normalise(full(**{"summary.primary_concern": "Analiz edilemedi"}))
    assert only_placeholder.failure_reason == "placeholder primary concern: Analiz edilemedi"


def test_a_long_error_message_is_shortened() -> None:
    r = normalise(full(error_message="x" * 5000))
    assert not r.ok and r.failure_reason is not None and len(r.failure_reason) <= 200


# --- scales ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (6, 6), (1, 1), (10, 10), (6.5, 7), ("6", 6), ("6/10", 6), (0.4, 1),
    (75, 8), (85, 9), (100, 10), (11, 1), (34, 3), ("75/100", 8), ("75", 8),
])
def test_a_health_score_on_any_scale_becomes_1_to_10(value: object, expected: int) -> None:
    assert health_score(value) == (expected, None)
    r = normalise(full(**{"summary.overall_health_score": value}))
    assert r.ok and r.health_score == expected


@pytest.mark.parametrize("value, expected", [
    (0.88, 88.0), (0.9, 90.0), (70, 70.0), (0.07, 7.0), (1, 100.0), (0, 0.0), (100, 100.0),
    ("85%", 85.0), ("0,5", 50.0), (None, None), (150, None), (-0.2, None), ("yüksek", None), (True, None),
])
def test_a_confidence_on_any_scale_becomes_a_percentage_or_none(value: object, expected: float | None) -> None:
    assert confidence(value) == expected


def test_all_confidences_are_0_to_100() -> None:
    data = full()
    data["plant_identification"]["confidence"] = 0.92
    data["pest_disease"]["diseases_detected"][0]["confidence"] = 0.85
    data["summary"]["confidence_level"] = 0.6
    data["cross_factor_insights"][0]["confidence"] = 55
    r = normalise(data)
    assert (r.species_confidence, r.diseases[0].confidence, r.confidence, r.cross_factor_insights[0].confidence,
            r.confidence_notes[0].confidence) == (92.0, 85.0, 60.0, 55.0, 30.0)


# --- shapes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("key, expected", [
    ("OverallHealthScore", "overall_health_score"), ("overallHealthScore", "overall_health_score"),
    ("overall_health_score", "overall_health_score"), ("GPSCoordinates", "gps_coordinates"),
    ("AnalysisId", "analysis_id"), ("pest-disease", "pest_disease"), ("Success", "success"),
    ("FarmerFriendlySummary", "farmer_friendly_summary"), ("pests_detected", "pests_detected"),
])
def test_keys_in_any_case_become_snake_case(key: str, expected: str) -> None:
    assert snake_key(key) == expected


def test_camel_case_keys_at_every_level() -> None:
    raw = {
        "success": True,
        "plantIdentification": {"species": "Triticum aestivum", "growthStage": "başaklanma", "confidence": 0.75},
        "healthAssessment": {"severity": "düşük"},
        "pestDisease": {"diseasesDetected": [{"name": "Sarı pas", "affectedParts": ["yaprak"], "confidence": 0.6}],
                        "pestsDetected": ["Süne"]},
        "recommendations": {"shortTerm": [{"action": "Fungisit uygulayın", "priority": "orta"}],
                            "monitoring": [{"parameter": "pas püstülleri", "frequency": "haftalık"}]},
        "summary": {"overallHealthScore": 7, "primaryConcern": "Sarı pas", "secondaryConcerns": "süne",
                    "confidenceLevel": 70},
        "farmerFriendlySummary": "Buğdayınızda hafif sarı pas var.",
        "tokenUsage": {"promptTokens": 1000, "completionTokens": 300, "costUsd": "0.001"},
        "processingMetadata": {"aiModel": "gpt-5-mini"},
        "SomethingNew": {"Nested": 1},
    }
    r = normalise(raw)
    assert r.ok, r.failure_reason
    assert r.species == "Triticum aestivum" and r.growth_stage == "başaklanma" and r.species_confidence == 75.0
    assert r.health_score == 7 and r.primary_concern == "Sarı pas"
    assert r.secondary_concerns == ("süne",)  # a single string is a one-item list
    assert r.diseases == (Finding("Sarı pas", None, None, 60.0, ("yaprak",)),)
    assert r.pests == (Finding("Süne"),)
    assert r.recommendations.short_term[0].action == "Fungisit uygulayın"
    assert r.recommendations.monitoring[0].frequency == "haftalık"
    assert r.token_usage == 1300 and r.cost_usd == 0.001 and r.model == "gpt-5-mini"
    assert r.urgent is False


def test_snake_case_wins_over_another_spelling_of_the_same_key() -> None:
    r = normalise(full(Summary={"OverallHealthScore": 2, "PrimaryConcern": "eski"}))
    assert r.health_score == 6 and r.primary_concern == "Erken yanıklık (fungal)"


def test_missing_sections_are_empty_not_errors() -> None:
    r = normalise({"success": True, "summary": {"overall_health_score": 8}})
    assert r.ok and r.health_score == 8
    assert r.diseases == () and r.pests == () and r.secondary_concerns == ()
    assert r.recommendations.immediate == r.recommendations.short_term == r.recommendations.preventive == ()
    assert r.recommendations.monitoring == ()
    assert r.nutrients.statuses == () and r.nutrients.primary_deficiency is None
    assert r.cross_factor_insights == () and r.confidence_notes == ()
    assert r.species is None and r.severity is None and r.confidence is None
    assert r.token_usage is None and r.cost_usd is None and r.model is None
    assert r.urgent is False


def test_malformed_sections_are_empty_not_errors() -> None:
    r = normalise(full(pest_disease="yok", recommendations=["Sulayın"], nutrient_status=None,
                       cross_factor_insights={"insight": "x"}, token_usage="çok"))
    assert r.ok
    assert r.diseases == () and r.pests == () and r.recommendations.immediate == ()
    assert r.token_usage is None


def test_findings_without_a_name_are_skipped() -> None:
    data = full()
    data["pest_disease"]["diseases_detected"].append({"category": "fungal", "severity": "kritik"})
    data["pest_disease"]["pests_detected"] = [{"type": "Belirlenemedi"}, {"name": ""}]
    r = normalise(data)
    assert [d.name for d in r.diseases] == ["Erken yanıklık (Alternaria solani)"]
    assert r.pests == ()


@pytest.mark.parametrize("entry", [
    {"type": "yok", "severity": "yok", "confidence": 0},
    {"type": "Zararlı yok"}, {"name": "Sağlıklı"}, {"type": "healthy", "confidence": 0.9}, {"type": "No pests"},
    {"type": "Zararlı tespit edilmedi"}, {"type": "none"}, "yok",
    {"type": "Yaprak biti", "severity": "yok", "confidence": 0},  # 0% and no severity: nothing was found
])
def test_disease_and_pest_entries_that_say_none_are_left_out(entry: Any) -> None:
    data = full()
    data["pest_disease"]["pests_detected"] = [entry]
    data["pest_disease"]["diseases_detected"].append(entry)
    data["pest_disease"]["pests"] = [entry]
    r = normalise(data)
    assert r.pests == ()
    assert [d.name for d in r.diseases] == ["Erken yanıklık (Alternaria solani)"]
    assert queryable_columns(r)["pests"] == []


def test_a_pest_with_zero_confidence_but_a_severity_is_kept() -> None:
    data = full()
    data["pest_disease"]["pests_detected"] = [{"type": "Yaprak biti", "severity": "orta", "confidence": 0}]
    assert [p.name for p in normalise(data).pests] == ["Yaprak biti"]


def test_token_usage_as_a_plain_number() -> None:
    r = normalise(full(token_usage=1500, cost_usd=0.002))
    assert r.token_usage == 1500 and r.cost_usd == 0.002


# --- urgency ---------------------------------------------------------------------------------

def calm(**changes: Any) -> dict[str, Any]:
    """The full result with nothing high anywhere (not urgent), then `changes`."""
    data = full()
    for rec in data["recommendations"]["immediate"]:
        rec["priority"] = "orta"
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[leaf] = value
    return data


def test_calm_is_not_urgent() -> None:
    assert normalise(calm()).urgent is False


@pytest.mark.parametrize("path, value", [
    ("health_assessment.severity", "yüksek"),
    ("health_assessment.severity", "KRİTİK"),
    ("health_assessment.severity", "high"),
    ("health_assessment.severity", "Critical"),
    ("pest_disease.diseases_detected.0.severity", "yüksek"),
    ("nutrient_status.severity", "yuksek"),
    ("recommendations.immediate.0.priority", "kritik"),
    ("recommendations.immediate.1.priority", "high"),
])
def test_urgent_when_a_severity_or_an_immediate_priority_is_high(path: str, value: str) -> None:
    assert normalise(calm(**{path: value})).urgent is True


@pytest.mark.parametrize("path, value", [
    ("recommendations.preventive.0.priority", "yüksek"),  # a high-priority preventive step: not an emergency
    ("recommendations.short_term.0.priority", "kritik"),
    ("pest_disease.spread_risk", "yüksek"),  # a risk, not a severity
    ("health_assessment.severity", "orta"),
])
def test_not_urgent_for_high_values_outside_the_rule(path: str, value: str) -> None:
    assert normalise(calm(**{path: value})).urgent is False


def test_urgent_when_critical_issues_and_a_low_score() -> None:
    assert normalise(calm(**{"summary.critical_issues_count": 1, "summary.overall_health_score": 3})).urgent
    assert not normalise(calm(**{"summary.critical_issues_count": 1, "summary.overall_health_score": 4})).urgent
    assert not normalise(calm(**{"summary.critical_issues_count": 0, "summary.overall_health_score": 2})).urgent


def test_a_failed_result_is_never_urgent() -> None:
    data = full(success=False)
    data["health_assessment"]["severity"] = "kritik"
    assert normalise(data).urgent is False


# --- local estimate and columns ----------------------------------------------------------------

def test_a_local_estimate_is_recognised_by_its_source_marker() -> None:
    assert LOCAL_ESTIMATE_SOURCE == "local-estimate"
    assert normalise(full(**{"processing_metadata.source": "local-estimate"})).is_local_estimate is True
    assert normalise(full(processingMetadata={"Source": "Local-Estimate"}, processing_metadata=_DELETE)
                     ).is_local_estimate is True
    assert normalise(full(**{"processing_metadata.source": "n8n"})).is_local_estimate is False
    assert normalise(full()).is_local_estimate is False


def test_the_queryable_columns_hold_the_key_fields_as_plain_json() -> None:
    assert queryable_columns(normalise(load("result_full_tr.json"))) == {
        "health_score": 6,
        "severity": "orta",
        "primary_concern": "Erken yanıklık (fungal)",
        "species": "Solanum lycopersicum",
        "diseases": ["Erken yanıklık (Alternaria solani)"],
        "pests": [],
        "urgent": True,
        "prognosis": "iyi",
        "token_usage": 2380,
        "cost_usd": 0.0021,
    }
    drifted = queryable_columns(normalise(load("result_drifted_keys.json")))
    assert drifted["pests"] == ["Yaprak biti (Aphididae)"] and drifted["health_score"] == 3 and drifted["urgent"]
    json.dumps(drifted)  # plain JSON-able values


LONG_SEVERITY = "orta (alt yaprakların yaklaşık %20'si etkilenmiş, yayılma riski var)"


def test_every_queryable_value_fits_its_column_and_the_raw_json_keeps_it_whole() -> None:
    raw = full(**{"health_assessment.severity": LONG_SEVERITY, "summary.prognosis": "iyi, " * 40,
                  "summary.primary_concern": "Erken yanıklık " * 30, "plant_identification.species": "S" * 250,
                  "token_usage": {"total_tokens": 3_000_000_000}})
    before = copy.deepcopy(raw)
    columns = queryable_columns(normalise(raw))
    assert len(columns["severity"]) == 50 and columns["severity"].endswith("…")
    assert LONG_SEVERITY.startswith(columns["severity"][:-1])
    assert len(columns["prognosis"]) <= 100 and columns["prognosis"].endswith("…")
    assert len(columns["primary_concern"]) <= 300 and len(columns["species"]) == 200
    assert columns["token_usage"] is None  # beyond the column's 32 bits: unknown, not wrong
    assert raw == before  # the raw JSON is stored whole
    for tokens, kept in ((2_147_483_647, 2_147_483_647), (10**20, None), (-5, None)):
        assert queryable_columns(normalise(full(token_usage={"total_tokens": tokens})))["token_usage"] == kept
    assert queryable_columns(normalise(full(token_usage=1e20)))["token_usage"] is None


@pytest.mark.parametrize(("text", "level"), [
    ("Orta-Yüksek", Severity.HIGH), ("medium-high", Severity.HIGH), ("Düşük-Orta", Severity.MEDIUM),
    ("low to moderate", Severity.MEDIUM), ("çok ciddi", Severity.CRITICAL), ("ÇOK CİDDİ", Severity.CRITICAL),
    ("kritik seviye", Severity.CRITICAL), ("Orta seviye", Severity.MEDIUM), ("high level", Severity.HIGH),
    ("yüksek derecede", Severity.HIGH), ("extremely severe", Severity.CRITICAL), ("çok düşük", Severity.LOW),
    ("yüksek değil", Severity.UNKNOWN), ("süper-kötü", Severity.UNKNOWN), ("çok", Severity.UNKNOWN),
    ("seviye", Severity.UNKNOWN),
])
def test_a_compound_intensified_or_padded_severity_reads_as_its_higher_level(text: str, level: Severity) -> None:
    """Before: each of these was UNKNOWN, so it was left out of the farmer's text and made nothing urgent."""
    assert Severity(text) is level
    assert Finding("x", severity=text).severity_level is level


def test_a_very_serious_finding_is_at_least_as_pressing_as_a_serious_one() -> None:
    assert Severity("çok ciddi").rank <= Severity("ciddi").rank  # type: ignore[operator]
    assert Severity("kritik seviye").rank <= Severity("kritik").rank  # type: ignore[operator]
    assert Severity("Orta-Yüksek").urgent and not Severity("Düşük-Orta").urgent


@pytest.mark.parametrize(("text", "level"), [
    ("KRİTİK", Severity.CRITICAL), ("çok yüksek", Severity.CRITICAL), ("Very High", Severity.CRITICAL),
    ("yüksek", Severity.HIGH), ("high", Severity.HIGH), ("Orta", Severity.MEDIUM), ("moderate", Severity.MEDIUM),
    ("düşük", Severity.LOW), ("hafif", Severity.LOW), ("", Severity.UNKNOWN), (None, Severity.UNKNOWN),
    ("biraz", Severity.UNKNOWN), ("Severe", Severity.HIGH), ("şiddetli", Severity.HIGH),
    ("very severe", Severity.CRITICAL), ("minor", Severity.LOW), (3, Severity.UNKNOWN),
])
def test_a_severity_word_is_read_once_into_a_ranked_level(text: str | None, level: Severity) -> None:
    assert Severity(text) is level  # type: ignore[arg-type]  # None: a missing word reads as UNKNOWN
    assert level.urgent == (level in (Severity.CRITICAL, Severity.HIGH))
    assert level.rank == {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}.get(level)
    assert Finding("x", severity=text).severity_level is level
    assert Recommendation("x", priority=text).priority_level is level


def test_what_is_wrong_besides_diseases_and_pests() -> None:
    r = normalise(full(**{
        "environmental_stress.water_status": "stres yok",
        "environmental_stress.temperature_stress": "Yüksek sıcaklık",
        "environmental_stress.light_stress": "NORMAL",
        "environmental_stress.physical_damage": "no damage",
        "environmental_stress.chemical_damage": "Belirlenemedi",
        "environmental_stress.soil_indicators": "Tuzlanma",
        "health_assessment.stress_indicators": ["solgunluk", "sararma", "solgunluk"],
        "health_assessment.disease_symptoms": "sararma",
        "pest_disease.affected_area_percentage": "35,5 %",
        "pest_disease.spread_risk": "orta",
        "risk_assessment.timeline_to_worsen": "1 hafta",
    }))
    assert r.stresses == (("temperature_stress", "Yüksek sıcaklık"), ("soil_indicators", "Tuzlanma"))
    assert r.signs == ("solgunluk", "sararma")
    assert (r.affected_area, r.spread_risk, r.timeline_to_worsen) == (35.5, "orta", "1 hafta")
    assert normalise(full(**{"pest_disease.affected_area_percentage": 0})).affected_area is None
    assert all(is_no_problem(v) for v in ("yok", "Stres yok", "None detected", "  ", "Sağlıklı"))
    assert not is_no_problem("hafif kuraklık")


@pytest.mark.parametrize("raw", [
    load("result_full_tr.json"), load("result_drifted_keys.json"), load("result_failed.json"), None, [], {},
    {"Recommendations": {"Immediate": ["Sula"]}, "recommendations": {"immediate": ["Budama yap"]}},
    {"recommendations": ["Sula"]},
])
def test_recommendations_alone_read_as_the_whole_result_reads_them(raw: Any) -> None:
    assert recommendations_of(raw) == normalise(raw).recommendations
