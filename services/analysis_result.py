"""Validate and normalise an N8N analysis result (docs/ANALYSIS.md, "Reading the result").

`normalise(raw)` never raises: anything it cannot use makes the result FAILED with a short English
`failure_reason` for operators. The caller stores the raw JSON untouched next to the result (unknown
keys live on there); this module only reads it.

Reading rules:
- Keys are read in snake_case at every level: `OverallHealthScore`, `overallHealthScore` and
  `overall_health_score` are the same key (when two spellings collide, the snake_case one wins).
- Pests and diseases are named by `type` or `name`; a plain string item is a name.
- A missing or malformed section is empty (empty tuples, None), never an error.
- `summary.overall_health_score` is 1-10; a value above 10 is taken as 0-100 and scaled (75 -> 8,
  half up). Shown to farmers as `x/10`.
- Every confidence (plant identification, diseases, pests, `summary.confidence_level`, cross-factor
  insights, confidence notes) is 0-100: a value <= 1 is a 0-1 fraction (0.88 -> 88, 1 -> 100).

FAILED (never completed) when: the result is not a JSON object; `success` is false; `error` or
`error_message` is truthy; the health score is missing, 0 or unreadable; or one of the key fields
(species, primary concern, farmer summary) is a placeholder (`Analiz edilemedi`, `Belirlenemedi`,
`Sistem hatası`, alone or followed by punctuation and more text). Placeholders elsewhere are normal
(`variety: Belirlenemedi` just means the variety is unknown) and read as None.

URGENT (only for a completed result) when any of:
- `health_assessment.severity`, `nutrient_status.severity`, or a disease's or pest's severity is high;
- an *immediate* recommendation's priority is high (a high-priority preventive or short-term step
  is not an emergency);
- `summary.critical_issues_count > 0` and the health score is 3 or lower.
"High" is `Severity.urgent`: CRITICAL or HIGH (words in Turkish or English, compared folded: `YÜKSEK` = `yuksek`).

SEVERITY: every severity and priority keeps N8N's own words (the report page shows them as they are) and is
also read once into a ranked `Severity` (`severity_level`, `priority_level`): CRITICAL, HIGH, MEDIUM, LOW, or
UNKNOWN for a missing or unknown word. A compound reads as its higher level (`Orta-Yüksek`: high), `çok`/`very`
raises a high word to critical (`çok ciddi`), and `seviye`/`level`/`derecede` are passed over. The chat names a
finding's severity by its level, in the farmer's language (`high` reads `yüksek` in Turkish), and leaves an
unknown one out.

WORDS ONLY: a name (disease, pest, step, monitored parameter), a severity or a priority that is not a string
(`{"type": 5, "severity": 3}`, an immediate step `7`) is left out, never shown as a number.

NO FINDING: a disease or pest entry that says nothing was found (`{"type": "yok", "severity": "yok",
"confidence": 0}`, `Sağlıklı`, `Zararlı tespit edilmedi`, or 0% confidence with no severity) is left out of
`diseases` and `pests`, as "none" values are left out of stresses and nutrients (`is_no_finding`).

WHAT IS WRONG besides diseases and pests: `stresses` holds the `environmental_stress` aspects N8N names a
problem for (`yok`, `normal`, `stres yok`, `no damage`... mean nothing is wrong, and `değerlendirilmedi`,
`görülmedi`, `bilinmiyor` that nothing was looked at or found: both are left out, see `is_nothing_found`;
nutrient statuses and deficiencies are read the same way); `signs` the symptoms seen
(`health_assessment.stress_indicators` then `disease_symptoms`, each once).

LOCAL ESTIMATE: the development stand-in for N8N marks its results with
`processing_metadata.source == "local-estimate"` (`LOCAL_ESTIMATE_SOURCE`, compared
case-insensitively); `is_local_estimate` is then True.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from bot.enums import LenientStrEnum
from bot.normalize import fold
from models import Analysis
from models.db import fitted_to_columns

LOCAL_ESTIMATE_SOURCE = "local-estimate"
PLACEHOLDERS = ("Analiz edilemedi", "Belirlenemedi", "Sistem hatası")
NUTRIENT_ELEMENTS = (
    "nitrogen", "phosphorus", "potassium", "calcium", "magnesium", "sulfur", "iron", "zinc", "manganese",
    "boron", "copper", "molybdenum", "chlorine", "nickel",
)
# environmental_stress aspects, in the order a report lists them.
STRESS_ASPECTS = ("water_status", "temperature_stress", "light_stress", "physical_damage", "chemical_damage",
                  "soil_indicators")
# An aspect's whole value (folded) that says nothing is wrong with it.
NO_PROBLEM_WORDS = frozenset({"yok", "normal", "none", "no", "iyi", "good", "ok", "saglikli", "healthy", "yeterli",
                              "uygun", "adequate", "sufficient", "optimal"})
_NORMAL_STATUS = frozenset({"normal"})
# A value (folded) that says the aspect was not looked at or nothing was found: never shown as a finding.
NOTHING_FOUND_WORDS = frozenset({"degerlendirilmedi", "gorulmedi", "bulunmadi", "tespit edilmedi", "saptanmadi",
                                 "belirlenmedi", "bilinmiyor", "not assessed", "not evaluated", "unknown",
                                 "not detected", "none detected", "not found", "n a"})
_FOLDED_PLACEHOLDERS = tuple(fold(p) for p in PLACEHOLDERS)
_REASON_MAX = 200


class Severity(LenientStrEnum):
    """A severity or priority as N8N writes it, ranked; any word in Turkish or English is read once
    (`Severity("Yüksek")` is HIGH) and an unknown or missing one is UNKNOWN, never an error. A compound takes
    its higher level (`Orta-Yüksek` is HIGH, `low to moderate` MEDIUM), an intensifier raises a high one
    (`çok ciddi` is CRITICAL, as `çok yüksek` is) and filler words are passed over (`kritik seviye`)."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    UNKNOWN = "unknown"  # missing, or a word not in `_SEVERITY_WORDS`

    @classmethod
    def _missing_(cls, value: Any) -> Severity:
        return _severity_of(fold(value)) if isinstance(value, str) else cls.UNKNOWN

    @property
    def rank(self) -> int | None:
        """0 (critical) .. 3 (low); None when unknown."""
        return None if self is Severity.UNKNOWN else _RANKS.index(self)

    @property
    def urgent(self) -> bool:
        """High enough to make a result URGENT."""
        return self in (Severity.CRITICAL, Severity.HIGH)


_RANKS = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW)
_SEVERITY_WORDS = {fold(word): level for level, words in (
    (Severity.CRITICAL, ("kritik", "critical", "acil", "urgent", "çok yüksek", "very high", "çok şiddetli",
                         "very severe", "extreme")),
    (Severity.HIGH, ("yüksek", "high", "şiddetli", "ciddi", "severe", "serious")),
    (Severity.MEDIUM, ("orta", "medium", "moderate", "orta düzey", "intermediate")),
    (Severity.LOW, ("düşük", "low", "hafif", "mild", "çok düşük", "very low", "minor", "slight")),
) for word in words}
_INTENSIFIERS = frozenset(fold(w) for w in ("çok", "very", "extremely", "highly", "aşırı"))
_FILLERS = frozenset(fold(w) for w in ("seviye", "seviyede", "seviyesi", "level", "düzey", "düzeyde", "düzeyi",
                                       "derece", "derecede", "degree", "to", "ile", "arası", "ve", "and"))


def _severity_of(folded: str) -> Severity:
    """A folded severity: a known phrase, else its words, each a level, an intensifier or a filler (any other
    word, `yüksek değil` say, makes it UNKNOWN); the highest level named wins."""
    known = _SEVERITY_WORDS.get(folded)
    if known is not None:
        return known
    levels: list[Severity] = []
    intensified = False
    for word in folded.split():
        if word in _FILLERS:
            continue
        if word in _INTENSIFIERS:
            intensified = True
            continue
        level = _SEVERITY_WORDS.get(word)
        if level is None:
            return Severity.UNKNOWN
        levels.append(Severity.CRITICAL if intensified and level is Severity.HIGH else level)
        intensified = False
    return min(levels, key=_RANKS.index) if levels else Severity.UNKNOWN


def _set_level(instance: object, name: str, text: str | None) -> None:
    """Fill a frozen dataclass's parsed level from its text, once, at construction."""
    object.__setattr__(instance, name, Severity(text or ""))


@dataclass(frozen=True)
class Finding:
    """A disease or a pest."""

    name: str
    category: str | None = None
    severity: str | None = None  # as N8N wrote it
    confidence: float | None = None  # 0-100
    affected_parts: tuple[str, ...] = ()
    severity_level: Severity = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _set_level(self, "severity_level", self.severity)


@dataclass(frozen=True)
class Nutrients:
    primary_deficiency: str | None = None
    secondary_deficiencies: tuple[str, ...] = ()
    # (element, status) for every element whose status is not "normal", in NUTRIENT_ELEMENTS order.
    statuses: tuple[tuple[str, str], ...] = ()
    severity: str | None = None
    severity_level: Severity = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _set_level(self, "severity_level", self.severity)


@dataclass(frozen=True)
class Recommendation:
    action: str
    details: str | None = None
    timeline: str | None = None
    priority: str | None = None
    priority_level: Severity = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _set_level(self, "priority_level", self.priority)


@dataclass(frozen=True)
class Monitoring:
    parameter: str
    frequency: str | None = None
    threshold: str | None = None


@dataclass(frozen=True)
class Recommendations:
    immediate: tuple[Recommendation, ...] = ()
    short_term: tuple[Recommendation, ...] = ()
    preventive: tuple[Recommendation, ...] = ()
    monitoring: tuple[Monitoring, ...] = ()


@dataclass(frozen=True)
class Insight:
    """One of `cross_factor_insights`."""

    insight: str
    confidence: float | None = None  # 0-100
    affected_aspects: tuple[str, ...] = ()
    impact_level: str | None = None


@dataclass(frozen=True)
class ConfidenceNote:
    aspect: str
    confidence: float | None = None  # 0-100
    reason: str | None = None


@dataclass(frozen=True)
class AnalysisResult:
    ok: bool
    failure_reason: str | None = None
    error_type: str | None = None  # N8N's code for a failure it reported (`no_plant_detected`), lower case
    analysis_id: str | None = None  # as echoed by N8N (a string), for checking it matches
    species: str | None = None
    variety: str | None = None
    species_confidence: float | None = None  # plant identification, 0-100
    crop_type: str | None = None
    growth_stage: str | None = None
    health_score: int | None = None  # 1-10
    severity: str | None = None  # health_assessment.severity, as N8N wrote it
    primary_concern: str | None = None
    secondary_concerns: tuple[str, ...] = ()
    diseases: tuple[Finding, ...] = ()
    pests: tuple[Finding, ...] = ()
    affected_area: float | None = None  # pest_disease.affected_area_percentage, 0-100 (0 reads as None)
    spread_risk: str | None = None  # pest_disease.spread_risk
    stresses: tuple[tuple[str, str], ...] = ()  # (STRESS_ASPECTS key, what N8N says), problems only
    signs: tuple[str, ...] = ()  # symptoms seen on the plant
    nutrients: Nutrients = field(default_factory=Nutrients)
    recommendations: Recommendations = field(default_factory=Recommendations)
    prognosis: str | None = None
    estimated_yield_impact: str | None = None
    critical_issues_count: int | None = None
    timeline_to_worsen: str | None = None  # risk_assessment.timeline_to_worsen
    urgent: bool = False
    farmer_summary: str | None = None
    confidence: float | None = None  # summary.confidence_level, 0-100
    cross_factor_insights: tuple[Insight, ...] = ()
    confidence_notes: tuple[ConfidenceNote, ...] = ()
    token_usage: int | None = None  # total tokens
    cost_usd: float | None = None
    model: str | None = None
    is_local_estimate: bool = False
    severity_level: Severity = field(init=False, compare=False)

    def __post_init__(self) -> None:
        _set_level(self, "severity_level", self.severity)


# --- keys ------------------------------------------------------------------------------------

_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SEPARATORS = re.compile(r"[\s\-.]+")


def snake_key(key: str) -> str:
    """`OverallHealthScore`, `overallHealthScore`, `GPSCoordinates`, `pest-disease` -> snake_case."""
    key = _SEPARATORS.sub("_", key.strip())
    key = _ACRONYM.sub(r"\1_\2", key)
    key = _CAMEL.sub(r"\1_\2", key)
    return re.sub(r"_+", "_", key).lower()


def snake_keys(value: Any) -> Any:
    """A copy with every dict key in snake_case, recursively (values untouched)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = snake_key(key) if isinstance(key, str) else str(key)
            if name not in out or key == name:
                out[name] = snake_keys(item)
        return out
    if isinstance(value, list):
        return [snake_keys(item) for item in value]
    return value


# --- values ----------------------------------------------------------------------------------

def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if value is None or value == "":
        return []
    return [value]


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value).strip()
    return text or None


def is_placeholder(value: Any) -> bool:
    """`Belirlenemedi`, `SİSTEM HATASI`, `Analiz edilemedi.` or `Analiz edilemedi: görsel bulanık`."""
    text = _text(value)
    if text is None:
        return False
    folded = fold(text)
    return any(folded == p or folded.startswith(p + " ") for p in _FOLDED_PLACEHOLDERS)


def _clean(value: Any) -> str | None:
    """Text, with a placeholder read as unknown."""
    text = _text(value)
    return None if text is None or is_placeholder(text) else text


def _word(value: Any) -> str | None:
    """A name, a step, a severity or a priority: words only (`_clean`). A number or any other JSON value is
    none of these (`{"type": 5, "severity": 3}` names no disease), so the farmer never reads "• 5 (3)"."""
    return _clean(value) if isinstance(value, str) else None


def _texts(value: Any) -> tuple[str, ...]:
    return tuple(t for t in (_clean(v) for v in _items(value)) if t)


def _number(value: Any) -> float | None:
    """A finite number from a number or a numeric string (`"85"`, `"85%"`, `"0,85"`); never a bool."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().rstrip("%").strip().replace(",", ".")
        try:
            number = float(text)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _half_up(number: float) -> int:
    return math.floor(number + 0.5)


def confidence(value: Any) -> float | None:
    """0-1 or 0-100 -> 0-100 (rounded to 2 decimals); None when missing or out of range."""
    number = _number(value)
    if number is None or number < 0 or number > 100:
        return None
    if number <= 1:
        number *= 100
    return round(number, 2)


def health_score(value: Any) -> tuple[int | None, str | None]:
    """(score 1-10, None) or (None, why it is unusable). Above 10 is a 0-100 score, scaled."""
    if isinstance(value, str) and "/" in value:  # "6/10", "75/100"
        top, _, bottom = value.partition("/")
        num, den = _number(top), _number(bottom)
        if num is None or not den:
            return None, f"health score unreadable: {value[:40]!r}"
        value = num / den * 10
    number = _number(value)
    if number is None:
        if value is None:
            return None, "health score missing"
        return None, f"health score unreadable: {str(value)[:40]!r}"
    if number == 0:
        return None, "health score is 0 (placeholder)"
    if number < 0 or number > 100:
        return None, f"health score out of range: {number:g}"
    if number > 10:
        number /= 10
    return min(10, max(1, _half_up(number))), None


def _int(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _is_false(value: Any) -> bool:
    if value is False:
        return True
    if isinstance(value, str):
        return fold(value) in {"false", "0", "no", "hayir"}
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0


def _is_error(value: Any) -> bool:
    if value is None or value is False or _is_false(value):
        return False
    if isinstance(value, str):
        return bool(value.strip())
    return bool(value)


def _error_text(data: dict[str, Any]) -> str | None:
    for candidate in (data.get("error_message"), data.get("error")):
        if isinstance(candidate, dict):
            candidate = candidate.get("message") or candidate.get("error_message")
        text = _text(candidate)
        if text and not _is_false(text) and fold(text) != "true":
            return text
    return None


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 1] + "…"


def is_no_problem(value: str) -> bool:
    """`yok`, `normal`, `stres yok`, `no damage`: N8N saying there is nothing wrong with this aspect."""
    words = fold(value).split()
    return not words or " ".join(words) in NO_PROBLEM_WORDS or words[-1] == "yok" or words[0] in {"no", "none"}


def is_nothing_found(value: str | None) -> bool:
    """Nothing to show the farmer: no problem (`is_no_problem`), or the aspect was not evaluated or nothing
    was found (`değerlendirilmedi`, `görülmedi`, `bilinmiyor`, `not assessed`)."""
    return value is None or is_no_problem(value) or is_not_evaluated(value)


def is_not_evaluated(value: str | None) -> bool:
    """`değerlendirilmedi`, `görülmedi`, `bilinmiyor`, `not assessed`: nothing was looked at or found."""
    words = fold(value).split()
    text = " ".join(words)
    return not words or text in NOTHING_FOUND_WORDS or any(text.endswith(" " + w) for w in NOTHING_FOUND_WORDS)


def annotated(text: str, note: str | None) -> str:
    """`text (note)` for a chat line; when the text already ends in brackets, `text: note` (never
    two pairs of brackets in a row)."""
    if not note:
        return text
    return f"{text}: {note}" if text.rstrip().endswith(")") else f"{text} ({note})"


def _percent(value: Any) -> float | None:
    """A share in percent, 0 < share <= 100 (`"35%"`, `"35,5"`, 35); None otherwise."""
    number = _number(value)
    return number if number is not None and 0 < number <= 100 else None


# --- sections --------------------------------------------------------------------------------

def is_no_finding(finding: Finding) -> bool:
    """A disease or pest entry that says nothing was found: named `yok`, `sağlıklı`, `no pests`, `tespit
    edilmedi` (`is_nothing_found`), or given 0% confidence with no severity (or a "none" one)."""
    return is_nothing_found(finding.name) or (finding.confidence == 0 and is_nothing_found(finding.severity))


def _findings(value: Any) -> tuple[Finding, ...]:
    found = []
    for item in _items(value):
        if isinstance(item, dict):
            name = _word(item.get("type")) or _word(item.get("name"))
            if name:
                found.append(Finding(
                    name=name,
                    category=_clean(item.get("category")),
                    severity=_word(item.get("severity")),
                    confidence=confidence(item.get("confidence")),
                    affected_parts=_texts(item.get("affected_parts")),
                ))
        elif (name := _word(item)) is not None:
            found.append(Finding(name=name))
    return tuple(f for f in found if not is_no_finding(f))


def _nutrients(section: dict[str, Any]) -> Nutrients:
    statuses = []
    for element in NUTRIENT_ELEMENTS:
        status = _clean(section.get(element))
        if status and fold(status) not in _NORMAL_STATUS and not is_nothing_found(status):
            statuses.append((element, status))
    primary = _clean(section.get("primary_deficiency"))
    return Nutrients(
        primary_deficiency=None if is_nothing_found(primary) else primary,
        secondary_deficiencies=tuple(d for d in _texts(section.get("secondary_deficiencies"))
                                     if not is_nothing_found(d)),
        statuses=tuple(statuses),
        severity=_word(section.get("severity")),
    )


def _recommendation_list(value: Any) -> tuple[Recommendation, ...]:
    out = []
    for item in _items(value):
        if isinstance(item, dict):
            action = _word(item.get("action")) or _word(item.get("recommendation"))
            if action:
                out.append(Recommendation(
                    action=action,
                    details=_clean(item.get("details")),
                    timeline=_clean(item.get("timeline")),
                    priority=_word(item.get("priority")),
                ))
        elif (action := _word(item)) is not None:
            out.append(Recommendation(action=action))
    return tuple(out)


def _recommendations(section: dict[str, Any]) -> Recommendations:
    monitoring = []
    for item in _items(section.get("monitoring")):
        if isinstance(item, dict):
            parameter = _word(item.get("parameter"))
            if parameter:
                monitoring.append(Monitoring(parameter, _clean(item.get("frequency")), _clean(item.get("threshold"))))
        elif (parameter := _word(item)) is not None:
            monitoring.append(Monitoring(parameter))
    return Recommendations(
        immediate=_recommendation_list(section.get("immediate")),
        short_term=_recommendation_list(section.get("short_term")),
        preventive=_recommendation_list(section.get("preventive")),
        monitoring=tuple(monitoring),
    )


def _stresses(section: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    found = ((aspect, _clean(section.get(aspect))) for aspect in STRESS_ASPECTS)
    return tuple((aspect, value) for aspect, value in found if value and not is_nothing_found(value))


def _insights(value: Any) -> tuple[Insight, ...]:
    out = []
    for item in _items(value):
        if isinstance(item, dict) and (text := _clean(item.get("insight"))):
            out.append(Insight(text, confidence(item.get("confidence")), _texts(item.get("affected_aspects")),
                               _clean(item.get("impact_level"))))
    return tuple(out)


def _confidence_notes(value: Any) -> tuple[ConfidenceNote, ...]:
    out = []
    for item in _items(value):
        if isinstance(item, dict) and (aspect := _clean(item.get("aspect"))):
            out.append(ConfidenceNote(aspect, confidence(item.get("confidence")), _clean(item.get("reason"))))
    return tuple(out)


def _usage(data: dict[str, Any], meta: dict[str, Any]) -> tuple[int | None, float | None]:
    usage = data.get("token_usage")
    tokens: int | None = None
    cost = _number(data.get("cost_usd"))
    if isinstance(usage, dict):
        tokens = _int(usage.get("total_tokens"))
        if tokens is None:
            parts = [_int(usage.get(k)) for k in ("prompt_tokens", "completion_tokens")]
            if any(p is not None for p in parts):
                tokens = sum(p or 0 for p in parts)
        if cost is None:
            cost = _number(usage.get("cost_usd"))
    else:
        tokens = _int(usage)
    if cost is None:
        cost = _number(meta.get("cost_usd"))
    if tokens is not None and tokens < 0:
        tokens = None
    if cost is not None and cost < 0:
        cost = None
    return tokens, cost


# --- the result ------------------------------------------------------------------------------

def normalise(raw: object) -> AnalysisResult:
    if not isinstance(raw, dict):
        return AnalysisResult(ok=False, failure_reason=f"result is not a JSON object ({type(raw).__name__})")
    data = snake_keys(raw)
    plant = _section(data, "plant_identification")
    health = _section(data, "health_assessment")
    pest_disease = _section(data, "pest_disease")
    summary = _section(data, "summary")
    meta = _section(data, "processing_metadata")
    risk = _section(data, "risk_assessment")

    score_value = summary["overall_health_score"] if "overall_health_score" in summary \
        else data.get("overall_health_score")
    score, score_problem = health_score(score_value)

    reasons: list[str] = []
    error_text = _error_text(data)
    error_type = _text(data.get("error_type"))
    if _is_error(data.get("error")) or _is_error(data.get("error_message")) or _is_false(data.get("success")):
        label = f"n8n reported failure ({error_type})" if error_type else "n8n reported failure"
        reasons.append(f"{label}: {error_text}" if error_text else f"{label} without a message")
    if score_problem:
        reasons.append(score_problem)
    for label, value in (("species", plant.get("species")), ("primary concern", summary.get("primary_concern")),
                         ("farmer summary", data.get("farmer_friendly_summary"))):
        if is_placeholder(value):
            reasons.append(f"placeholder {label}: {_text(value)}")

    diseases = _findings(pest_disease.get("diseases_detected", pest_disease.get("diseases")))
    pests = _findings(pest_disease.get("pests_detected", pest_disease.get("pests")))
    nutrients = _nutrients(_section(data, "nutrient_status"))
    recommendations = _recommendations(_section(data, "recommendations"))
    severity = _word(health.get("severity"))
    critical = _int(summary.get("critical_issues_count"))
    ok = not reasons
    urgent = ok and (
        Severity(severity or "").urgent
        or nutrients.severity_level.urgent
        or any(f.severity_level.urgent for f in diseases + pests)
        or any(r.priority_level.urgent for r in recommendations.immediate)
        or (critical is not None and critical > 0 and score is not None and score <= 3)
    )
    tokens, cost = _usage(data, meta)
    analysis_id = data.get("analysis_id")

    return AnalysisResult(
        ok=ok,
        failure_reason=_shorten(reasons[0]) if reasons else None,
        error_type=error_type.lower() if error_type and not ok else None,
        analysis_id=None if analysis_id is None else str(analysis_id),
        species=_clean(plant.get("species")),
        variety=_clean(plant.get("variety")),
        species_confidence=confidence(plant.get("confidence")),
        crop_type=_clean(data.get("crop_type")) or _clean(plant.get("crop_type")),
        growth_stage=_clean(plant.get("growth_stage")),
        health_score=score,
        severity=severity,
        primary_concern=_clean(summary.get("primary_concern")) or _clean(pest_disease.get("primary_issue")),
        secondary_concerns=_texts(summary.get("secondary_concerns")),
        diseases=diseases,
        pests=pests,
        affected_area=_percent(pest_disease.get("affected_area_percentage")),
        spread_risk=_clean(pest_disease.get("spread_risk")),
        stresses=_stresses(_section(data, "environmental_stress")),
        signs=tuple(dict.fromkeys(_texts(health.get("stress_indicators")) + _texts(health.get("disease_symptoms")))),
        nutrients=nutrients,
        recommendations=recommendations,
        prognosis=_clean(summary.get("prognosis")),
        estimated_yield_impact=_clean(summary.get("estimated_yield_impact")),
        critical_issues_count=critical,
        timeline_to_worsen=_clean(risk.get("timeline_to_worsen")),
        urgent=urgent,
        farmer_summary=_clean(data.get("farmer_friendly_summary")),
        confidence=confidence(summary.get("confidence_level")),
        cross_factor_insights=_insights(data.get("cross_factor_insights")),
        confidence_notes=_confidence_notes(data.get("confidence_notes")),
        token_usage=tokens,
        cost_usd=cost,
        model=_clean(meta.get("ai_model")) or _clean(meta.get("model")) or _clean(data.get("model")),
        is_local_estimate=fold(_text(meta.get("source")) or "") == fold(LOCAL_ESTIMATE_SOURCE),
    )


def recommendations_of(raw: object) -> Recommendations:
    """`normalise(raw).recommendations` without reading the rest (a few times cheaper): for views of many
    results at once."""
    if not isinstance(raw, dict):
        return Recommendations()
    data = snake_keys({k: v for k, v in raw.items() if isinstance(k, str) and snake_key(k) == "recommendations"})
    return _recommendations(_section(data, "recommendations"))


def queryable_columns(result: AnalysisResult) -> dict[str, Any]:
    """The columns an analysis row stores next to the raw JSON, each value fitted to its column
    (`fitted_to_columns`: a text longer than the column cut, a number beyond it None), so no value N8N
    sends can make storing the result fail; the raw JSON keeps every value whole."""
    return fitted_to_columns(Analysis, {
        "health_score": result.health_score,
        "severity": result.severity,
        "primary_concern": result.primary_concern,
        "species": result.species,
        "diseases": [d.name for d in result.diseases],
        "pests": [p.name for p in result.pests],
        "urgent": result.urgent,
        "prognosis": result.prognosis,
        "token_usage": result.token_usage,
        "cost_usd": result.cost_usd,
    })
