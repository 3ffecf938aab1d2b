"""`GET /r/<token>`: one analysis as a small, server-rendered page for the farmer's phone.

The `Detaylar` reply carries the link (`services.report_links`). The token is the analysis id signed with the
same itsdangerous signer and key as the media links, under its own salt (`REPORT_SALT`), so a media
token never opens a report and a report token never opens a photo. It expires after
`REPORT_URL_MAX_AGE` seconds (7 days by default): an old link is a 410 page that says how to get a
fresh one, anything else that is not ours a 404 page. Every page is HTML in the farmer's language.

The page loads nothing from anywhere else: the CSS is inline and allowed by its hash in the
Content-Security-Policy (so a `style="..."` attribute would be blocked: use a class), there is no
JavaScript, and the photos (every one of an album) are the optimised copies served by this server through
fresh `/media/` links. Values inside a result come from N8N in Turkish and are shown as they are; labels
are translated. The page shows what was found: values that say "no problem" or "not evaluated" are left
out, and one line says that nothing was seen elsewhere. It says nothing was found only when the whole
result agrees (`nothing_found`); a thin result that names a main concern, is urgent or scores low is told
as giving no detail instead.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, render_template

from bot.normalize import upper_first
from bot.replies import crop_name
from models import Analysis, AnalysisStatus, Farmer
from services import context
from services.analysis import photos_used, stored_keys
from services.analysis_result import (
    STRESS_ASPECTS,
    AnalysisResult,
    Finding,
    Recommendation,
    Recommendations,
    Severity,
    is_not_evaluated,
    is_nothing_found,
    normalise,
)
from services.report_links import (
    ReportLinkExpired,
    ReportLinkInvalid,
    photo_links,
    read_report_token,
    verifying_secrets,
)
from translations import N_, format_datetime, format_percent, gettext, ngettext, resolve_locale

log = logging.getLogger(__name__)
bp = Blueprint("report", __name__, template_folder="templates")

CSS = (Path(__file__).parent / "templates" / "report" / "report.css").read_text(encoding="utf-8")
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'self'; style-src 'sha256-{_CSS_HASH}'; img-src 'self'; script-src 'none'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Cache-Control": "private, no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}


# --- what the page shows --------------------------------------------------------------------------

# A level's colour, by Severity.rank (0 is the most pressing).
_LEVEL_CLASS = ("high", "high", "mid", "low")
PRIORITY_TITLES = (
    N_("Critical: do these first"),
    N_("High priority"),
    N_("Medium priority"),
    N_("Low priority"),
)
# A step whose priority is missing or unreadable is ranked by the list N8N put it in.
_SECTION_RANK = {"immediate": 1, "short_term": 2, "preventive": 3}
SECTION_NAMES = {"immediate": N_("Now"), "short_term": N_("In the coming days"), "preventive": N_("Prevention")}
SCORE_MEANINGS = (  # (lowest score, meaning), best first
    (9, N_("Healthy: the plant is in good shape.")),
    (7, N_("Mostly healthy: a few small problems to watch.")),
    (5, N_("Needs care: treat the problems soon.")),
    (3, N_("Poor: the plant needs treatment now.")),
    (1, N_("Very poor: act today to save the plant.")),
)
NUTRIENT_NAMES = {
    "nitrogen": N_("Nitrogen (N)"), "phosphorus": N_("Phosphorus (P)"), "potassium": N_("Potassium (K)"),
    "calcium": N_("Calcium (Ca)"), "magnesium": N_("Magnesium (Mg)"), "sulfur": N_("Sulphur (S)"),
    "iron": N_("Iron (Fe)"), "zinc": N_("Zinc (Zn)"), "manganese": N_("Manganese (Mn)"), "boron": N_("Boron (B)"),
    "copper": N_("Copper (Cu)"), "molybdenum": N_("Molybdenum (Mo)"), "chlorine": N_("Chlorine (Cl)"),
    "nickel": N_("Nickel (Ni)"),
}
STRESS_NAMES = dict(zip(STRESS_ASPECTS, (  # environmental_stress aspects
    N_("Water"), N_("Temperature"), N_("Light"), N_("Physical damage"), N_("Chemical damage"), N_("Soil"),
), strict=True))
PROBLEM_LABELS = {"disease": N_("Disease"), "pest": N_("Pest"), "nutrient": N_("Nutrient shortage")}


def rank_class(rank: int) -> str:
    """The CSS class (colour) of a level rank: high, mid or low."""
    return _LEVEL_CLASS[rank]


def level_class(level: Severity) -> str:
    return "" if level.rank is None else rank_class(level.rank)


def score_meaning(score: int) -> str:
    return next(text for lowest, text in SCORE_MEANINGS if score >= lowest)


def score_class(score: int) -> str:
    return "good" if score >= 7 else "mid" if score >= 5 else "bad"


@dataclass(frozen=True)
class Step:
    """One recommendation as the page lists it."""

    action: str
    details: str | None
    timeline: str | None
    section: str  # immediate | short_term | preventive


@dataclass(frozen=True)
class StepGroup:
    rank: int  # index into PRIORITY_TITLES
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Problem:
    label: str  # an untranslated msgid: PROBLEM_LABELS or a STRESS_NAMES label
    name: str
    severity: str | None = None  # as N8N wrote it
    level: Severity = Severity.UNKNOWN
    confidence: float | None = None  # 0-100
    details: tuple[str, ...] = ()
    elements: tuple[tuple[str, str], ...] = ()  # a nutrient shortage: (NUTRIENT_NAMES key, status) not normal


@dataclass(frozen=True)
class ReportPage:
    """What the completed page shows grouped its own way; the rest it reads from `result` as it is."""

    result: AnalysisResult
    problems: tuple[Problem, ...] = ()
    step_groups: tuple[StepGroup, ...] = ()
    signs: tuple[str, ...] = ()  # symptoms seen, without "none seen"
    # Nutrient statuses for their own section: only when no shortage is named (otherwise the shortage's
    # problem carries them, so the page says each thing once).
    nutrients: tuple[tuple[str, str], ...] = ()
    # No problem listed, and the rest of the result agrees (no main concern, not urgent, a good score): the page
    # may say nothing was found. Otherwise it says the analysis gave no detail, never "nothing found" beside
    # an `ACİL` banner or a 4/10.
    nothing_found: bool = False


def _problem(label: str, finding: Finding) -> Problem:
    return Problem(label, finding.name, finding.severity, finding.severity_level, finding.confidence,
                   tuple(p for p in (finding.category, *finding.affected_parts) if p))


def _problems(result: AnalysisResult) -> tuple[Problem, ...]:
    """Only what was found: the normalised result already leaves out "no problem" and "not evaluated"."""
    problems = [_problem(PROBLEM_LABELS["disease"], d) for d in result.diseases]
    problems += [_problem(PROBLEM_LABELS["pest"], p) for p in result.pests]
    problems += [Problem(STRESS_NAMES[aspect], value) for aspect, value in result.stresses]
    nutrients = result.nutrients
    deficiencies = tuple(d for d in (nutrients.primary_deficiency, *nutrients.secondary_deficiencies) if d)
    if deficiencies:
        problems.append(Problem(PROBLEM_LABELS["nutrient"], ", ".join(deficiencies), nutrients.severity,
                                nutrients.severity_level, elements=nutrients.statuses))
    return tuple(problems)


def _step_groups(recommendations: Recommendations) -> tuple[StepGroup, ...]:
    ranked: dict[int, list[Step]] = {}
    sections: tuple[tuple[str, tuple[Recommendation, ...]], ...] = (
        ("immediate", recommendations.immediate),
        ("short_term", recommendations.short_term),
        ("preventive", recommendations.preventive),
    )
    for section, items in sections:
        for item in items:
            rank = item.priority_level.rank
            rank = _SECTION_RANK[section] if rank is None else rank
            ranked.setdefault(rank, []).append(Step(item.action, item.details, item.timeline, section))
    return tuple(StepGroup(rank, tuple(ranked[rank])) for rank in sorted(ranked))


def nothing_found(result: AnalysisResult, problems: tuple[Problem, ...], signs: tuple[str, ...]) -> bool:
    """Whether "no problem was found" is true of the whole result, not only of its (maybe thin) problem lists."""
    good_score = result.health_score is None or score_class(result.health_score) == "good"
    concerns = [c for c in (result.primary_concern, *result.secondary_concerns) if shown(c)]  # not "görülmedi"
    return not (problems or signs or concerns or result.urgent) and good_score


def build_page(result: AnalysisResult) -> ReportPage:
    """The completed page's content; parts the result does not have are simply empty."""
    problems = _problems(result)
    merged = any(p.elements for p in problems)
    signs = tuple(sign for sign in result.signs if shown(sign))
    return ReportPage(result=result, problems=problems, step_groups=_step_groups(result.recommendations),
                      signs=signs, nutrients=() if merged else result.nutrients.statuses,
                      nothing_found=nothing_found(result, problems, signs))


# --- HTTP ----------------------------------------------------------------------------------------


def _render(template: str, status: int, locale: str, **values: Any) -> Response:
    html = render_template(template, css=CSS, locale=locale, _=gettext, ngettext=ngettext, **values)
    response = Response(html, status=status, mimetype="text/html")
    response.headers.update(HEADERS)
    return response


def _message(status: int, locale: str, kind: str, photos: int = 1) -> Response:
    """`photos`: how many the analysis has, so that an album is spoken of in the plural."""
    return _render("report/message.html", status, locale, kind=kind, photos=photos)


def _locale_of(session: Any, analysis: Analysis | None) -> str:
    farmer = session.get(Farmer, analysis.farmer_id) if analysis is not None else None
    return resolve_locale(farmer.locale if farmer is not None else None)


def photo_urls(analysis: Analysis) -> list[str]:
    """Fresh signed `/media/` links to every optimised photo of the analysis, in the farmer's order."""
    return photo_links(stored_keys(analysis.image_keys, analysis.image_key))


def shown(value: str | None) -> bool:
    """A problem-like value worth a line on the page (a severity, a risk): not empty, not "no problem", not
    "not evaluated"."""
    return not is_nothing_found(value)


def known(value: str | None) -> bool:
    """A descriptive value worth a line (an outlook, a growth stage): not empty and not "not evaluated"."""
    return not is_not_evaluated(value)


@bp.get("/r")
@bp.get("/r/")
def no_token() -> Response:
    """A link cut short (no token at all): the same kind 404 page as a token that is not ours."""
    return _message(404, "tr", "not_found")


@bp.get("/r/<path:token>")
def show(token: str) -> Response:
    max_age = context.settings().REPORT_URL_MAX_AGE
    try:
        analysis_id: int | None = read_report_token(token, verifying_secrets(), max_age)
    except ReportLinkExpired as exc:
        with context.db().reader() as session:
            expired = session.get(Analysis, exc.analysis_id) if exc.analysis_id else None
            locale = _locale_of(session, expired)
            owner = session.get(Farmer, expired.farmer_id) if expired is not None else None
        # A deleted farmer's report: "tap Details again" for a fresh link could not work.
        return _message(410, locale, "deleted" if owner is not None and owner.deleted_at is not None else "expired")
    except ReportLinkInvalid:
        log.info("report link refused: bad signature", extra={"token_chars": len(token)})
        return _message(404, "tr", "not_found")

    with context.db().reader() as session:
        analysis = session.get(Analysis, analysis_id)
        if analysis is None:
            return _message(404, "tr", "not_found")
        locale = _locale_of(session, analysis)
        farmer = session.get(Farmer, analysis.farmer_id)
        if farmer is not None and farmer.deleted_at is not None:  # nothing of theirs is shown, nor "still running"
            return _message(410, locale, "deleted")
        if analysis.status == AnalysisStatus.FAILED.value:
            return _message(200, locale, "failed", photos_used(analysis))
        if analysis.status != AnalysisStatus.COMPLETED.value or analysis.result is None:
            return _message(200, locale, "pending", photos_used(analysis))
        result = normalise(analysis.result)
        if not result.ok:  # stored as completed but unusable: say so kindly rather than show an empty page
            log.warning("completed analysis with an unusable result", extra={"analysis_id": analysis.id})
            return _message(200, locale, "failed", photos_used(analysis))
        when: datetime = analysis.completed_at or analysis.created_at
        return _render(
            "report/page.html", 200, locale,
            page=build_page(result),
            analysis_id=analysis.id,
            crop=upper_first(crop_name(locale, analysis.crop or result.crop_type or ""), locale) or None,
            species=upper_first(result.species or "", locale) or None,
            date=format_datetime(when, locale),
            photo_urls=photo_urls(analysis), shown=shown, known=known,
            score_meaning=score_meaning, score_class=score_class, level_class=level_class, rank_class=rank_class,
            format_percent=lambda value: format_percent(value / 100, locale),
            priority_titles=PRIORITY_TITLES, section_names=SECTION_NAMES, nutrient_names=NUTRIENT_NAMES,
        )
