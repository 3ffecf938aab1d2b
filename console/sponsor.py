"""The sponsor's pages: dashboard, codes, purchase requests, sponsored analyses, messaging a farmer.

Who: a sponsor user sees only its own sponsor (`/console/sponsors/<id>/...`); an admin may open any
sponsor's pages, as the admin API allows; another sponsor's id, or a sponsor that does not exist, is a
404, and so is every page for support (`staff_required`). The rules are the API's, from the same
services: what an analysis shows is `services.visibility`'s table applied to the tier of the code that
paid for THAT analysis; revoking, the CSV, purchase requests and messages go through
`services.sponsorship` and `services.sponsor_messages`. Pages showing farmer data and every change
write the audit log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Response, abort, redirect, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from bot.replies import crop_name
from console.charts import BarChart, bar_chart_svg
from console.pages import Pager, flash_text, nav_item, page_number, refuse, render, whole_number
from console.security import console_blueprint
from console.session import current_locale, current_staff, staff_required, take_draft
from models import (
    Analysis,
    Farmer,
    PurchaseRequest,
    Sponsor,
    SponsorCode,
    StaffRole,
    Tier,
    utcnow,
)
from models.db import MAX_ROW_ID
from services import context, runtime_settings
from services.analysis_result import Recommendations
from services.audit import audit
from services.sponsor_export import export_sponsored_analyses_csv
from services.sponsor_messages import (
    MAX_TEXT,
    Refusal,
    SponsorMessageResult,
    counted_against_cap,
    farmer_refusal,
    queue_sponsor_message,
    template_blocked,
)
from services.sponsor_stats import (
    Bucket,
    Interval,
    activity_series,
    finding_name,
    invalidate_stats,
    purchased_tiers,
    sponsor_figures,
)
from services.sponsorship import (
    CODE_STATUSES,
    MAX_QUANTITY,
    TIER_ORDER,
    effective_status,
    export_codes_csv,
    file_purchase_request,
    has_effective_status,
    revoke_sponsor_code,
)
from services.visibility import (
    ANALYSIS_TIERS,
    analysis_view,
    crop_matches,
    find_sponsored_analysis,
    may_see_sponsor,
    paying_tier,
    paying_tiers,
    sees_analyses,
    sees_identity,
    sponsored_analyses,
)
from services.whatsapp.messages import one_line
from translations import N_, console_text

bp = console_blueprint("console_sponsor", __name__)

PER_PAGE = 50
MAX_DAYS = 3650
MAX_NOTE = 500
DEFAULT_VALID_DAYS = 90
DEFAULT_SUBSCRIPTION_DAYS = 30


nav_item("console_sponsor.index", N_("Dashboard"), "sponsor", order=10)
nav_item("console_sponsor.codes_start", N_("Codes"), "sponsor", order=20)
nav_item("console_sponsor.analyses_start", N_("Analyses"), "sponsor", order=30)
nav_item("console_sponsor.requests_start", N_("Purchase requests"), "sponsor", order=40)
nav_item("console_sponsor.index", N_("Sponsor view"), "admin", order=25)


def _(msgid: str, **params: Any) -> str:
    """A console text in the page's language (the name `make console-messages` extracts)."""
    return console_text(current_locale(), msgid, **params)


def own_sponsor(session: Session, sponsor_id: int) -> Sponsor:
    """The sponsor if the signed-in person may see it (an admin any, a sponsor user only its own); else 404."""
    if not may_see_sponsor(current_staff(), sponsor_id):
        abort(404)
    sponsor = session.get(Sponsor, sponsor_id) if 1 <= sponsor_id <= MAX_ROW_ID else None
    if sponsor is None:
        abort(404)
    return sponsor


def _own_id() -> int:
    """A sponsor user's own sponsor id (404 for an account bound to none)."""
    user = current_staff()
    if user is None or user.sponsor_id is None:
        abort(404)
    return user.sponsor_id


def _base(sponsor: Sponsor, section: str, **extra: Any) -> dict[str, Any]:
    return {"sponsor": sponsor, "section": section, **extra}


# --- start: a sponsor goes to its dashboard, an admin picks a sponsor ---------------------------------


@bp.get("/sponsor")
@staff_required("sponsor", "admin")
def index() -> Any:
    user = current_staff()
    assert user is not None
    if user.role == StaffRole.SPONSOR.value:
        return redirect(url_for(".dashboard", sponsor_id=_own_id()))
    with context.db().reader() as session:
        sponsors = session.execute(select(Sponsor.id, Sponsor.name).order_by(Sponsor.name, Sponsor.id)).all()
    return render("console/sponsor_index.html", sponsors=sponsors)


@bp.get("/sponsor/codes")
@staff_required("sponsor")
def codes_start() -> BaseResponse:
    return redirect(url_for(".codes", sponsor_id=_own_id()))


@bp.get("/sponsor/analyses")
@staff_required("sponsor")
def analyses_start() -> BaseResponse:
    return redirect(url_for(".analyses", sponsor_id=_own_id()))


@bp.get("/sponsor/purchase-requests")
@staff_required("sponsor")
def requests_start() -> BaseResponse:
    return redirect(url_for(".purchase_requests", sponsor_id=_own_id()))


# --- dashboard ------------------------------------------------------------------------------------------

INTERVAL_LABELS: dict[Interval, str] = {Interval.DAY: N_("Day"), Interval.WEEK: N_("Week"),
                                        Interval.MONTH: N_("Month")}
SPAN_LABELS: dict[Interval, str] = {Interval.DAY: N_("the last 30 days"), Interval.WEEK: N_("the last 12 weeks"),
                                    Interval.MONTH: N_("the last 12 months")}


def bucket_label(bucket: Bucket, interval: Interval) -> str:
    """A short x-axis label: 05.12 for a day or a week's Monday, 12.2026 for a month."""
    if interval is Interval.MONTH:
        return f"{bucket.start:%m.%Y}"
    return f"{bucket.start:%d.%m}"


def activity_charts(series: list[Bucket], interval: Interval) -> list[tuple[BarChart, list[tuple[str, int]]]]:
    """The two charts (redemptions, analyses) with their data as rows for the table beside them."""
    labels = tuple(bucket_label(b, interval) for b in series)
    x_label = _(INTERVAL_LABELS[interval])
    span = _(SPAN_LABELS[interval])
    charts = []
    for chart_id, title, values in (
        ("chart-redemptions", _("Codes redeemed"), tuple(b.redemptions for b in series)),
        ("chart-analyses", _("Analyses"), tuple(b.analyses for b in series)),
    ):
        chart = BarChart(chart_id=chart_id, title=f"{title} ({span})",
                         description=_("%(total)s in %(span)s, per %(unit)s.", total=sum(values), span=span,
                                        unit=x_label.lower()),
                         x_label=x_label, y_label=title, labels=labels, values=values)
        charts.append((chart, list(zip(labels, values, strict=True))))
    return charts


@bp.get("/sponsors/<int:sponsor_id>")
@staff_required("sponsor", "admin")
def dashboard(sponsor_id: int) -> Any:
    raw = request.args.get("interval", Interval.WEEK.value)
    interval = Interval(raw) if raw in {i.value for i in Interval} else Interval.WEEK
    now = utcnow()
    with context.db().reader() as session:
        sponsor = own_sponsor(session, sponsor_id)
        figures = sponsor_figures(session, sponsor_id, now)
        series = activity_series(session, sponsor_id, interval, now)
        tiers = purchased_tiers(session, sponsor_id)
    charts = [(bar_chart_svg(chart), chart, rows) for chart, rows in activity_charts(series, interval)]
    crops = [(crop_name(current_locale(), name), n) for name, n in figures.crops]
    return render("console/sponsor_dashboard.html", **_base(sponsor, "dashboard"), figures=figures, charts=charts,
                  crops=crops, interval=interval, intervals=[(i, INTERVAL_LABELS[i]) for i in Interval], tiers=tiers)


# --- codes ----------------------------------------------------------------------------------------------

STATUS_LABELS: dict[str, str] = {"unused": N_("unused"), "redeemed": N_("redeemed"), "expired": N_("expired"),
                                 "revoked": N_("revoked")}


@bp.get("/sponsors/<int:sponsor_id>/codes")
@staff_required("sponsor", "admin")
def codes(sponsor_id: int) -> Any:
    status = request.args.get("status") or None
    if status not in CODE_STATUSES:
        status = None
    now = utcnow()
    with context.db().reader() as session:
        sponsor = own_sponsor(session, sponsor_id)
        stmt = (select(SponsorCode.code, SponsorCode.status, SponsorCode.expires_at, SponsorCode.redeemed_at,
                       SponsorCode.revoked_at, SponsorCode.exported_at, Tier.code.label("tier"))
                .join(Tier, Tier.id == SponsorCode.tier_id).where(SponsorCode.sponsor_id == sponsor_id))
        if status is not None:
            stmt = stmt.where(has_effective_status(status, now))
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        pager = Pager(page_number(), PER_PAGE, total)
        rows = session.execute(stmt.order_by(SponsorCode.id).limit(PER_PAGE).offset(pager.offset)).all()
    items = [{"code": r.code, "tier": r.tier, "status": effective_status(r.status, r.expires_at, now),
              "expires_at": r.expires_at, "redeemed_at": r.redeemed_at, "revoked_at": r.revoked_at,
              "exported_at": r.exported_at} for r in rows]
    return render("console/sponsor_codes.html", **_base(sponsor, "codes"), items=items, pager=pager,
                  status_filter=status, statuses=[(s, STATUS_LABELS[s]) for s in CODE_STATUSES],
                  status_labels=STATUS_LABELS)


@bp.get("/sponsors/<int:sponsor_id>/codes.csv")
@staff_required("sponsor", "admin")
def codes_csv(sponsor_id: int) -> Response:
    """The same CSV as the API's (code, tier, status, expires_at, redeemed_at; no farmer)."""
    now = utcnow()
    with context.db().session() as session, session.begin():
        own_sponsor(session, sponsor_id)
        body = export_codes_csv(session, sponsor_id, now, via="console")
    response = Response(body, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="sponsor-{sponsor_id}-codes.csv"'
    return response


@bp.get("/sponsors/<int:sponsor_id>/analyses.csv")
@staff_required("sponsor", "admin")
def analyses_csv(sponsor_id: int) -> Response:
    """The API's CSV of the sponsored analyses (each row as its own code's tier may see it), with the page's
    crop filter."""
    crop = (request.args.get("crop") or "").strip()[:100] or None
    with context.db().session() as session, session.begin():
        own_sponsor(session, sponsor_id)
        body = export_sponsored_analyses_csv(session, sponsor_id, crop=crop, via="console",
                                             locale=current_locale())
    response = Response(body, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="sponsor-{sponsor_id}-analyses.csv"'
    return response


@bp.post("/sponsors/<int:sponsor_id>/codes/<code>/revoke")
@staff_required("sponsor", "admin")
def revoke(sponsor_id: int, code: str) -> BaseResponse:
    now = utcnow()
    with context.db().session() as session, session.begin():
        own_sponsor(session, sponsor_id)
        done = revoke_sponsor_code(session, sponsor_id, code, now, via="console")
        if done.code_id is None:
            abort(404)
    if done.revoked:
        invalidate_stats(context.redis(), sponsor_id)
        flash_text("success", "Code %(code)s is revoked: nobody can redeem it now.", code=done.code)
    else:
        refuse("Only an unused code can be revoked; %(code)s is %(status)s.", code=done.code,
                   status=_(STATUS_LABELS.get(done.status or "", done.status or "")))
    back = request.form.get("status")
    return redirect(url_for(".codes", sponsor_id=sponsor_id, status=back if back in CODE_STATUSES else None))


# --- purchase requests -----------------------------------------------------------------------------------

REQUEST_STATUS_LABELS: dict[str, str] = {"pending": N_("pending"), "approved": N_("approved"),
                                         "rejected": N_("rejected")}


@dataclass(frozen=True)
class PurchaseRequestForm:
    """A purchase request as filed from the form: the API's terms (same limits, same defaults)."""

    tier: str
    quantity: int
    code_valid_days: int
    subscription_days: int
    note: str | None


def _integer(form: Mapping[str, str], name: str, low: int, high: int, default: int | None,
             errors: dict[str, str]) -> int | None:
    raw = (form.get(name) or "").strip()
    if not raw and default is not None:
        return default
    value = whole_number(raw, low, high)
    if value is None:
        errors[name] = _("Enter a whole number from %(low)s to %(high)s.", low=low, high=high)
    return value


def parse_purchase_request(form: Mapping[str, str]) -> tuple[PurchaseRequestForm | None, dict[str, str]]:
    """The form as terms, or None and a message per wrong field (messages already translated)."""
    errors: dict[str, str] = {}
    tier = (form.get("tier") or "").strip().upper()
    if tier not in TIER_ORDER:
        errors["tier"] = _("Choose a package.")
    quantity = _integer(form, "quantity", 1, MAX_QUANTITY, None, errors)
    valid_days = _integer(form, "code_valid_days", 1, MAX_DAYS, DEFAULT_VALID_DAYS, errors)
    days = _integer(form, "subscription_days", 1, MAX_DAYS, DEFAULT_SUBSCRIPTION_DAYS, errors)
    note = " ".join((form.get("note") or "").split()) or None
    if note is not None and len(note) > MAX_NOTE:
        errors["note"] = _("At most %(n)s characters.", n=MAX_NOTE)
    if errors or quantity is None or valid_days is None or days is None:
        return None, errors
    return PurchaseRequestForm(tier, quantity, valid_days, days, note), {}


def _requests_page(sponsor: Sponsor, form: Mapping[str, str], errors: dict[str, str], status: int = 200) -> Any:
    with context.db().reader() as session:
        tier_codes = {tier_id: code for tier_id, code in session.execute(select(Tier.id, Tier.code))}
        total = session.scalar(select(func.count()).select_from(PurchaseRequest)
                               .where(PurchaseRequest.sponsor_id == sponsor.id)) or 0
        pager = Pager(page_number(), PER_PAGE, total)
        rows = list(session.scalars(select(PurchaseRequest).where(PurchaseRequest.sponsor_id == sponsor.id)
                                    .order_by(PurchaseRequest.id.desc()).limit(PER_PAGE).offset(pager.offset)))
    user = current_staff()
    return render("console/sponsor_requests.html", status, **_base(sponsor, "requests"), rows=rows,
                  tier_codes=tier_codes, pager=pager, form=form, errors=errors, tiers=TIER_ORDER,
                  can_file=user is not None and user.role == StaffRole.SPONSOR.value,
                  status_labels=REQUEST_STATUS_LABELS, max_quantity=MAX_QUANTITY, max_days=MAX_DAYS,
                  max_note=MAX_NOTE, defaults={"code_valid_days": DEFAULT_VALID_DAYS,
                                               "subscription_days": DEFAULT_SUBSCRIPTION_DAYS})


@bp.get("/sponsors/<int:sponsor_id>/purchase-requests")
@staff_required("sponsor", "admin")
def purchase_requests(sponsor_id: int) -> Any:
    with context.db().reader() as session:
        sponsor = own_sponsor(session, sponsor_id)
    return _requests_page(sponsor, {}, {})


@bp.post("/sponsors/<int:sponsor_id>/purchase-requests")
@staff_required("sponsor")
def file_request(sponsor_id: int) -> Any:
    """Filed by the sponsor's own users only: an admin records a purchase directly, after payment."""
    with context.db().reader() as session:
        sponsor = own_sponsor(session, sponsor_id)
    terms, errors = parse_purchase_request(request.form)
    if terms is None:
        return _requests_page(sponsor, request.form, errors, 422)
    user = current_staff()
    assert user is not None
    with context.db().session() as session, session.begin():
        try:
            filed = file_purchase_request(session, sponsor_id, terms.tier, terms.quantity, terms.code_valid_days,
                                          terms.subscription_days, terms.note, user.id, utcnow())
        except ValueError:  # a tier no longer sold
            filed = None
        if filed is not None:
            audit("sponsor.purchase_request.create", "purchase_request", filed.id,
                  {"sponsor_id": sponsor_id, "tier": terms.tier, "quantity": terms.quantity,
                   "code_valid_days": terms.code_valid_days, "subscription_days": terms.subscription_days,
                   "via": "console"}, session=session)
    if filed is None:
        return _requests_page(sponsor, request.form, {"tier": _("This package is not sold at the moment.")}, 422)
    flash_text("success", "Your request for %(quantity)s %(tier)s codes is filed; an admin approves it after payment.",
               quantity=terms.quantity, tier=terms.tier)
    return redirect(url_for(".purchase_requests", sponsor_id=sponsor_id))


# --- sponsored analyses ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisRow:
    """An analysis as its tier shows it (`view`, keys exactly `services.visibility.COLUMNS[tier]`) and
    what the page needs to display it: the time, and the names of what was found."""

    view: dict[str, Any]
    when: datetime
    diseases: list[str]
    pests: list[str]


RECOMMENDATION_GROUPS: tuple[tuple[str, str], ...] = (
    ("immediate", N_("Now")), ("short_term", N_("In the coming days")), ("preventive", N_("To prevent it")),
    ("monitoring", N_("To watch")))


def recommendation_groups(found: Recommendations | None) -> list[tuple[str, list[str]]]:
    """An L or XL view's recommendations (`services.visibility`) as (group label msgid, lines), in the
    farmer's report's order."""
    if found is None:
        return []
    groups: list[tuple[str, list[str]]] = []
    for key, label in RECOMMENDATION_GROUPS:
        if key == "monitoring":
            lines = [", ".join(p for p in (m.parameter, m.frequency, m.threshold) if p) for m in found.monitoring]
        else:
            lines = [" - ".join(p for p in (r.action, r.details, r.timeline) if p) for r in getattr(found, key)]
        if lines:
            groups.append((label, lines))
    return groups


def analysis_row(analysis: Analysis, view: dict[str, Any]) -> AnalysisRow:
    names = [n for n in (finding_name(item) for item in view["diseases"]) if n]
    pests = [n for n in (finding_name(item) for item in view["pests"]) if n]
    return AnalysisRow(view, analysis.completed_at or analysis.created_at, names, pests)


def _totals_only(session: Session, sponsor_id: int) -> int:
    """Completed analyses the sponsor paid for that no M, L or XL code paid for (counted in totals only)."""
    stmt = sponsored_analyses(sponsor_id).where(paying_tier().not_in(ANALYSIS_TIERS) | paying_tier().is_(None))
    return session.scalar(select(func.count()).select_from(stmt.subquery())) or 0


@bp.get("/sponsors/<int:sponsor_id>/analyses")
@staff_required("sponsor", "admin")
def analyses(sponsor_id: int) -> Any:
    crop = (request.args.get("crop") or "").strip()[:100] or None
    with context.db().reader() as session:
        sponsor = own_sponsor(session, sponsor_id)
        stmt = sponsored_analyses(sponsor_id).where(paying_tier().in_(ANALYSIS_TIERS))
        if crop is not None:
            stmt = stmt.where(crop_matches(crop))
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        pager = Pager(page_number(), PER_PAGE, total)
        rows = list(session.scalars(stmt.order_by(Analysis.created_at.desc(), Analysis.id.desc())
                                    .limit(PER_PAGE).offset(pager.offset)))
        farmers = {f.id: f for f in session.scalars(select(Farmer).where(
            Farmer.id.in_({a.farmer_id for a in rows})))}
        tiers = paying_tiers(session, [a.id for a in rows])
        items = [analysis_row(a, view) for a in rows
                 if (view := analysis_view(a, farmers.get(a.farmer_id), tiers.get(a.id))) is not None]
        hidden = _totals_only(session, sponsor_id)
    audit("sponsor.analyses.read", "sponsor", sponsor_id,
          {"page": pager.page, "total": total, "ids": [i.view["id"] for i in items],
           "tiers": [i.view["tier"] for i in items], "via": "console"})
    return render("console/sponsor_analyses.html", **_base(sponsor, "analyses"), items=items, pager=pager,
                  crop_filter=crop or "", hidden=hidden)


# Why a message is refused (`services.sponsor_messages`, the API's reasons), and the page's status then.
REFUSALS: dict[Refusal, str] = {
    Refusal.OPTED_OUT: N_("This farmer does not receive messages (opted out)."),
    Refusal.UNREACHABLE: N_("WhatsApp reported this farmer's number unreachable: no message can be sent to it until "
                            "the farmer writes to us again."),
    Refusal.MARKETING_OPT_OUT: N_("This farmer stopped marketing messages in WhatsApp, so sponsor messages are not "
                                  "sent."),
    Refusal.TEMPLATE_BLOCKED: N_("Sponsor messages cannot be sent at the moment: WhatsApp has set their template to "
                                 "%(status)s. Nothing was sent; try again later."),
    Refusal.DAILY_CAP: N_("This farmer already gets %(cap)s sponsor messages on the day this one would reach them; "
                          "try again once that day is over."),
}
REFUSAL_STATUS: dict[Refusal, int] = {Refusal.TEMPLATE_BLOCKED: 503, Refusal.DAILY_CAP: 429}  # otherwise 409


def _refusal_text(refusal: Refusal, template_status: str | None, cap: int) -> str:
    return _(REFUSALS[refusal], status=template_status or "", cap=cap)


def _analysis_page(sponsor: Sponsor, analysis_id: int, text: str = "", error: str | None = None,
                   status: int = 200) -> Any:
    now = utcnow()
    rs = runtime_settings.current()
    cap = rs.sponsor_message_daily_cap
    refused = None  # why no message can go now, known before the sponsor writes one
    with context.db().reader() as session:
        found = find_sponsored_analysis(session, sponsor.id, analysis_id) if analysis_id <= MAX_ROW_ID else None
        if found is None or not sees_analyses(found[1]):
            abort(404)  # not its analysis, or an S code paid for it: totals only
        analysis, tier = found
        farmer = session.get(Farmer, analysis.farmer_id)
        view = analysis_view(analysis, farmer, tier) or {}
        today = counted_against_cap(session, farmer, now, rs) if sees_identity(tier) and farmer else 0
        if sees_identity(tier) and farmer is not None:
            blocked = template_blocked(session)
            refusal = farmer_refusal(farmer) or (Refusal.TEMPLATE_BLOCKED if blocked is not None else None)
            refused = _refusal_text(refusal, blocked.status if blocked else None, cap) if refusal else None
    audit("sponsor.analysis.read", "analysis", analysis_id, {"sponsor_id": sponsor.id, "tier": tier, "via": "console"})
    report = json.dumps(view["report"], ensure_ascii=False, indent=2) if view.get("report") is not None else None
    return render("console/sponsor_analysis.html", status, **_base(sponsor, "analyses"),
                  row=analysis_row(analysis, view), recommendations=recommendation_groups(view.get("recommendations")),
                  report=report, sent_today=today, daily_cap=cap, text=text, error=error, max_text=MAX_TEXT,
                  refused=refused)


@bp.get("/sponsors/<int:sponsor_id>/analyses/<int:analysis_id>")
@staff_required("sponsor", "admin")
def analysis(sponsor_id: int, analysis_id: int) -> Any:
    with context.db().reader() as session:
        sponsor = own_sponsor(session, sponsor_id)
    draft = take_draft(request.path)  # a message posted after the session had ended
    if draft is None:
        return _analysis_page(sponsor, analysis_id)
    flash_text("warning", "Your session had ended, so this was not sent or saved; what you typed is back in its box.")
    return _analysis_page(sponsor, analysis_id, str(draft["fields"].get("text", "")))


@bp.post("/sponsors/<int:sponsor_id>/analyses/<int:analysis_id>/message")
@staff_required("sponsor", "admin")
def message(sponsor_id: int, analysis_id: int) -> Any:
    """The API's rules and refusals: an L or XL code paid for this analysis, 1..MAX_TEXT characters on one
    line, never to a farmer who opted out, is unreachable or stopped marketing messages, not while Meta
    blocks the template, at most the daily cap a day per farmer, held until quiet hours end."""
    text = request.form.get("text", "")[:2000]
    now = utcnow()
    result: SponsorMessageResult | None = None
    with context.db().session() as session, session.begin():
        sponsor = own_sponsor(session, sponsor_id)
        found = find_sponsored_analysis(session, sponsor_id, analysis_id) if analysis_id <= MAX_ROW_ID else None
        if found is None or not sees_analyses(found[1]):
            abort(404)
        analysis, tier = found
        if not sees_identity(tier):
            abort(404)  # the page offers no form below L
        if 1 <= len(one_line(text)) <= MAX_TEXT:
            result = queue_sponsor_message(session, sponsor.name, analysis.farmer_id, text, now,
                                           runtime_settings.current())
            if result.refusal is None:
                audit("sponsor.message.send", "message", result.message_id,
                      {"sponsor_id": sponsor_id, "analysis_id": analysis_id, "farmer_id": analysis.farmer_id,
                       "chars": len(one_line(text)), "via": "console"}, session=session)
    if result is None:
        return _analysis_page(sponsor, analysis_id, text, _("Write 1 to %(n)s characters.", n=MAX_TEXT), 422)
    if result.refusal is not None:
        error = _refusal_text(result.refusal, result.template.status if result.template else None, result.daily_cap)
        return _analysis_page(sponsor, analysis_id, text, error, REFUSAL_STATUS.get(result.refusal, 409))
    if result.send_after is None:
        flash_text("success", "Message queued; it is on its way to the farmer.")
    elif result.send_after == runtime_settings.current().quiet_until(now):
        flash_text("success", "Message queued; it is sent when quiet hours end.")
    else:
        flash_text("success", "Message queued; WhatsApp holds marketing messages to this farmer for now, so it is "
                              "sent later.")
    return redirect(url_for(".analysis", sponsor_id=sponsor_id, analysis_id=analysis_id))

