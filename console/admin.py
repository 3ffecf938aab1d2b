"""Admin pages of the console: sponsors, purchase requests, staff (with reset links), tiers, runtime
settings and the audit log, on the same services and audit actions as the admin API."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from flask import abort, redirect, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from console.pages import Pager, flash_text, nav_item, page_number, refuse, render
from console.security import console_blueprint, note_for_repeat
from console.session import current_locale, current_staff, staff_required
from models import (
    AuditLog,
    CodeStatus,
    PurchaseRequest,
    PurchaseRequestStatus,
    Sponsor,
    SponsorCode,
    SponsorPurchase,
    StaffRole,
    StaffUser,
    Tier,
    utcnow,
)
from services import context, runtime_settings
from services.audit import ACTION_PATTERN, audit
from services.contact_details import is_email_address, is_phone_number
from services.folding import contains_folded
from services.password_reset import RESET_SECONDS, issue_reset_token
from services.runtime_settings import SPECS
from services.sponsor_stats import invalidate_stats, purchased_tiers
from services.sponsorship import (
    approve_purchase_request,
    create_sponsor,
    has_effective_status,
    reject_purchase_request,
)
from services.staff_auth import ROLES, create_staff_user, set_active
from services.tiers import MAX_LIMIT, change_tier, parse_price
from translations import N_, TIMEZONE, console_text

bp = console_blueprint("console_admin", __name__)

nav_item("console_admin.index", N_("Overview"), "admin", order=10)
nav_item("console_admin.sponsors", N_("Sponsors"), "admin", order=20)
nav_item("console_admin.purchase_requests", N_("Purchase requests"), "admin", order=30)
nav_item("console_admin.staff", N_("Staff"), "admin", order=40)
nav_item("console_admin.tiers", N_("Tiers"), "admin", order=50)
nav_item("console_admin.settings", N_("Settings"), "admin", order=60)
nav_item("console_admin.audit_log", N_("Audit log"), "admin", order=70)

PER_PAGE = 50
MAX_REASON = 500
RQ_DASHBOARD = "/admin/rq/"
API_DOCS = "/api/v1/docs"


@bp.get("/admin")
@staff_required("admin")
def index() -> ResponseReturnValue:
    with context.db().reader() as session:
        pending = session.scalar(select(func.count()).select_from(PurchaseRequest)
                                 .where(PurchaseRequest.status == PurchaseRequestStatus.PENDING)) or 0
        sponsors = session.scalar(select(func.count()).select_from(Sponsor)) or 0
        staff = session.scalar(select(func.count()).select_from(StaffUser).where(StaffUser.active)) or 0
    return render("console/admin_index.html", pending=pending, sponsors=sponsors, staff_count=staff,
                  rq_dashboard=RQ_DASHBOARD, api_docs=API_DOCS)


# --- sponsors -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SponsorForm:
    name: str
    contact_email: str | None
    contact_phone: str | None

    @classmethod
    def parse(cls, form: dict[str, str]) -> tuple[SponsorForm | None, dict[str, str]]:
        """The form, or the problems by field (English msgids)."""
        errors = {}
        name = form.get("name", "").strip()
        email = form.get("contact_email", "").strip() or None
        phone = form.get("contact_phone", "").strip() or None
        if not name or len(name) > 200:
            errors["name"] = N_("Enter a name of up to 200 characters.")
        if email is not None and not is_email_address(email):
            errors["contact_email"] = N_("Enter an email address.")
        if phone is not None and (len(phone) > 20 or not is_phone_number(phone)):
            errors["contact_phone"] = N_("Enter a phone number such as +902121234567.")
        return (None if errors else cls(name, email, phone)), errors


@bp.route("/admin/sponsors", methods=["GET", "POST"])
@staff_required("admin")
def sponsors() -> ResponseReturnValue:
    errors: dict[str, str] = {}
    values = request.form.to_dict() if request.method == "POST" else {}
    if request.method == "POST":
        form, errors = SponsorForm.parse(values)
        if form is not None:
            with context.db().session() as session, session.begin():
                sponsor = create_sponsor(session, form.name, contact_email=form.contact_email,
                                         contact_phone=form.contact_phone)
                audit("sponsor.create", "sponsor", sponsor.id, {"name": sponsor.name, "via": "console"},
                      session=session)
                sponsor_id = sponsor.id
            flash_text("success", "Sponsor %(name)s created.", name=form.name)
            return redirect(url_for("console_admin.sponsor", sponsor_id=sponsor_id))
    q = request.args.get("q", "").strip()[:200]
    stmt = select(Sponsor)
    if q:
        stmt = stmt.where(contains_folded(Sponsor.name, q))
    with context.db().reader() as session:
        pager = Pager(page_number(), PER_PAGE,
                      session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
        rows = list(session.scalars(stmt.order_by(Sponsor.id).limit(PER_PAGE).offset(pager.offset)))
        codes = {sponsor_id: n for sponsor_id, n in session.execute(
            select(SponsorCode.sponsor_id, func.count()).group_by(SponsorCode.sponsor_id))}
    return render("console/admin_sponsors.html", status=400 if errors else 200, sponsors=rows, codes=codes, q=q,
                  pager=pager, errors=errors, values=values)


@bp.get("/admin/sponsors/<int:sponsor_id>")
@staff_required("admin")
def sponsor(sponsor_id: int) -> ResponseReturnValue:
    with context.db().reader() as session:
        found = session.get(Sponsor, sponsor_id)
        if found is None:
            abort(404)
        tiers = {t.id: t.code for t in session.scalars(select(Tier))}
        purchases = list(session.scalars(select(SponsorPurchase).where(SponsorPurchase.sponsor_id == sponsor_id)
                                         .order_by(SponsorPurchase.id.desc()).limit(100)))
        now = utcnow()
        code_status = {status: session.scalar(select(func.count()).select_from(SponsorCode).where(
            SponsorCode.sponsor_id == sponsor_id, has_effective_status(status, now))) or 0
            for status in CODE_STATUSES}
        users = list(session.scalars(select(StaffUser).where(StaffUser.sponsor_id == sponsor_id)
                                     .order_by(StaffUser.id)))
        bought = purchased_tiers(session, sponsor_id)
    return render("console/admin_sponsor.html", sponsor=found, tiers=tiers, purchases=purchases,
                  code_status=code_status, users=users, bought=bought, status_labels=STATUS_LABELS)


# --- purchase requests ----------------------------------------------------------------------------

STATUSES = tuple(s.value for s in PurchaseRequestStatus)
CODE_STATUSES = tuple(s.value for s in CodeStatus)
STATUS_LABELS = {"pending": N_("pending"), "approved": N_("approved"), "rejected": N_("rejected"),
                 "all": N_("all"), "unused": N_("unused"), "redeemed": N_("redeemed"), "expired": N_("expired"),
                 "revoked": N_("revoked")}


@bp.get("/admin/purchase-requests")
@staff_required("admin")
def purchase_requests() -> ResponseReturnValue:
    return _requests_page(request.args.get("status", PurchaseRequestStatus.PENDING.value))


def _requests_page(status: str, http_status: int = 200, typed: dict[int, str] | None = None,
                   errors: dict[int, str] | None = None) -> ResponseReturnValue:
    """The purchase requests in `status`; a refused rejection shows its reason as typed (`typed`) and why
    (`errors`), by request id."""
    if status not in STATUSES and status != "all":
        status = PurchaseRequestStatus.PENDING.value
    stmt = select(PurchaseRequest)
    if status != "all":
        stmt = stmt.where(PurchaseRequest.status == status)
    with context.db().reader() as session:
        rows = list(session.scalars(stmt.order_by(PurchaseRequest.id.desc()).limit(200)))
        names = {s.id: s.name for s in session.scalars(select(Sponsor).where(
            Sponsor.id.in_({r.sponsor_id for r in rows})))} if rows else {}
        tiers = {t.id: t.code for t in session.scalars(select(Tier))}
    return render("console/admin_purchase_requests.html", status=http_status, requests=rows, names=names,
                  tiers=tiers, shown=status, statuses=STATUSES, max_reason=MAX_REASON, status_labels=STATUS_LABELS,
                  typed=typed or {}, errors=errors or {})


@bp.post("/admin/purchase-requests/<int:request_id>/approve")
@staff_required("admin")
def approve(request_id: int) -> ResponseReturnValue:
    staff = current_staff()
    assert staff is not None
    with context.db().session() as session, session.begin():
        found = session.get(PurchaseRequest, request_id)
        if found is None:
            abort(404)
        sponsor_id = found.sponsor_id
        try:
            approved = approve_purchase_request(session, request_id, staff.id, utcnow())
        except ValueError as exc:  # the tier was withdrawn since: the request stays pending
            refuse("This request cannot be approved now: %(reason)s.", reason=str(exc))
            return redirect(url_for("console_admin.purchase_requests"))
        if approved is None:
            refuse("Only a pending request can be approved or rejected.")
            return redirect(url_for("console_admin.purchase_requests"))
        purchase, codes = approved
        audit("sponsor.purchase_request.approve", "purchase_request", request_id,
              {"sponsor_id": sponsor_id, "purchase_id": purchase.id, "codes": len(codes), "via": "console"},
              session=session)
    invalidate_stats(context.redis(), sponsor_id)
    flash_text("success", "Request %(id)s approved: %(n)s codes created.", id=request_id, n=len(codes))
    return redirect(url_for("console_admin.purchase_requests"))


@bp.post("/admin/purchase-requests/<int:request_id>/reject")
@staff_required("admin")
def reject(request_id: int) -> ResponseReturnValue:
    staff = current_staff()
    assert staff is not None
    reason = request.form.get("reason", "").strip()
    if not reason or len(reason) > MAX_REASON:  # the page again, the reason as typed in its box
        why = console_text(current_locale(), "Give a reason of up to %(max)s characters to reject a request; it "
                                             "has %(length)s.", max=MAX_REASON, length=len(reason))
        return _requests_page(PurchaseRequestStatus.PENDING.value, 400, {request_id: reason[:10_000]},
                              {request_id: why})
    with context.db().session() as session, session.begin():
        found = session.get(PurchaseRequest, request_id)
        if found is None:
            abort(404)
        if not reject_purchase_request(session, request_id, reason, staff.id, utcnow()):
            refuse("Only a pending request can be approved or rejected.")
            return redirect(url_for("console_admin.purchase_requests"))
        audit("sponsor.purchase_request.reject", "purchase_request", request_id,
              {"sponsor_id": found.sponsor_id, "reason": reason, "via": "console"}, session=session)
    flash_text("success", "Request %(id)s rejected.", id=request_id)
    return redirect(url_for("console_admin.purchase_requests"))


# --- staff ----------------------------------------------------------------------------------------

ROLE_LABELS = {StaffRole.ADMIN.value: N_("Admin"), StaffRole.SUPPORT.value: N_("Support"),
               StaffRole.SPONSOR.value: N_("Sponsor")}
CREATE_PROBLEMS = (  # create_staff_user's English refusals -> the console's words, the first that matches
    ("email must", N_("Enter an email address.")),
    ("already exists", N_("A staff member with this email already exists.")),
    ("password", N_("The password must be 10 to 1024 characters long.")),
    ("role must", N_("Choose a role.")),
    ("sponsor", N_("A sponsor user needs a sponsor; other roles have none.")),
)


def _staff_page(status: int = 200, errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                reset_link: str | None = None, reset_for: str | None = None) -> ResponseReturnValue:
    with context.db().reader() as session:
        users = list(session.scalars(select(StaffUser).order_by(StaffUser.id)))
        sponsors = list(session.scalars(select(Sponsor).order_by(Sponsor.name)))
    return render("console/admin_staff.html", status=status, users=users, sponsors=sponsors, roles=ROLES,
                  role_labels=ROLE_LABELS, errors=errors or {}, values=values or {}, reset_link=reset_link,
                  reset_for=reset_for, reset_hours=RESET_SECONDS // 3600)


@bp.route("/admin/staff", methods=["GET", "POST"])
@staff_required("admin")
def staff() -> ResponseReturnValue:
    if request.method == "GET":
        return _staff_page()
    values = {k: request.form.get(k, "")[:1024] for k in ("email", "role", "password", "sponsor_id")}
    sponsor_raw = values["sponsor_id"].strip()
    sponsor_id = int(sponsor_raw) if re.fullmatch(r"[0-9]{1,9}", sponsor_raw) else None
    try:
        with context.db().session() as session, session.begin():
            user = create_staff_user(session, values["email"], values["password"], values["role"],
                                     sponsor_id if values["role"] == StaffRole.SPONSOR else None, utcnow())
            audit("staff.create", "staff_user", user.id, {"role": user.role, "via": "console"}, session=session)
            email = user.email
    except ValueError as exc:
        message = next((text for key, text in CREATE_PROBLEMS if key in str(exc)), N_("Check the form."))
        values.pop("password")
        return _staff_page(400, {"form": console_text(current_locale(), message)}, values)
    flash_text("success", "Staff member %(email)s created.", email=email)
    return redirect(url_for("console_admin.staff"))


def _staff_or_404(session: Any, user_id: int) -> StaffUser:
    user = session.get(StaffUser, user_id)
    if user is None:
        abort(404)
    return user  # type: ignore[no-any-return]


@bp.post("/admin/staff/<int:user_id>/deactivate")
@staff_required("admin")
def deactivate(user_id: int) -> ResponseReturnValue:
    me = current_staff()
    assert me is not None
    if user_id == me.id:
        refuse("You cannot deactivate yourself.")
        return redirect(url_for("console_admin.staff"))
    flash_text("success", "%(email)s can no longer sign in.", email=_set_active(user_id, False))
    return redirect(url_for("console_admin.staff"))


@bp.post("/admin/staff/<int:user_id>/activate")
@staff_required("admin")
def activate(user_id: int) -> ResponseReturnValue:
    """Let a deactivated account sign in again (with its password, or a reset link); the logins it had
    before it was deactivated stay ended."""
    flash_text("success", "%(email)s can sign in again.", email=_set_active(user_id, True))
    return redirect(url_for("console_admin.staff"))


def _set_active(user_id: int, active: bool) -> str:
    """Switch an account on or off (audited as staff.activate / staff.deactivate; switching it off ends
    its logins); its email, for the notice."""
    with context.db().session() as session, session.begin():
        user = _staff_or_404(session, user_id)
        set_active(session, user, active, utcnow())
        audit("staff.activate" if active else "staff.deactivate", "staff_user", user_id, {"via": "console"},
              session=session)
        email = user.email
    return email


LINK_ALREADY_SHOWN = N_("A reset link was already made with this form and shown once; it cannot be shown again. To "
                        "give the person a link, press Reset link again: the new link replaces the old one.")


@bp.post("/admin/staff/<int:user_id>/reset-link")
@staff_required("admin")
def reset_link(user_id: int) -> ResponseReturnValue:
    """A one-time link for the person to set a new password, shown once on this page (never stored or
    flashed: only its hash is kept)."""
    with context.db().reader() as session:
        user = _staff_or_404(session, user_id)
        email, active = user.email, user.active
    if not active:
        refuse("An inactive account cannot sign in, so it gets no reset link.")
        return redirect(url_for("console_admin.staff"))
    token = issue_reset_token(context.redis(), user_id)
    audit("staff.reset_link", "staff_user", user_id, {"via": "console"})
    note_for_repeat(LINK_ALREADY_SHOWN)  # a double click or a refresh lands on the staff page, saying so
    link = context.settings().PUBLIC_BASE_URL.rstrip("/") + url_for("console_auth.reset", token=token)
    return _staff_page(reset_link=link, reset_for=email)


# --- tiers and runtime settings ---------------------------------------------------------------------


def _tiers_page(status: int = 200, errors: dict[str, str] | None = None,
                typed: dict[str, dict[str, str]] | None = None) -> ResponseReturnValue:
    """The tiers table; a refused row shows what was typed (`typed`, by tier code), not the stored values."""
    with context.db().reader() as session:
        rows = list(session.scalars(select(Tier).order_by(Tier.daily_limit, Tier.id)))
    return render("console/admin_tiers.html", status=status, tiers=rows, errors=errors or {}, typed=typed or {},
                  max_limit=MAX_LIMIT)


def _typed_tier(code: str) -> dict[str, dict[str, str]]:
    """The refused tier form as typed, to be shown again."""
    typed = {name: request.form.get(name, "")[:20] for name in ("daily_limit", "monthly_limit", "price_try")}
    return {code: typed | {"active": "on" if request.form.get("active") == "on" else ""}}


@dataclass(frozen=True)
class TierForm:
    daily_limit: int
    monthly_limit: int
    price_try: Decimal
    active: bool

    @classmethod
    def parse(cls, form: dict[str, str]) -> TierForm | None:
        """None when a field is out of its bounds (the same as the API's: services.tiers)."""
        def limit(name: str) -> int | None:
            raw = form.get(name, "").strip()
            return int(raw) if re.fullmatch(r"[0-9]{1,7}", raw) and int(raw) <= MAX_LIMIT else None

        daily, monthly = limit("daily_limit"), limit("monthly_limit")
        price = parse_price(form.get("price_try", "")[:20].strip().replace(",", "."))
        if daily is None or monthly is None or price is None:
            return None
        return cls(daily, monthly, price, form.get("active") == "on")


@bp.get("/admin/tiers")
@staff_required("admin")
def tiers() -> ResponseReturnValue:
    return _tiers_page()


@bp.post("/admin/tiers/<code>")
@staff_required("admin")
def tier(code: str) -> ResponseReturnValue:
    """Change a tier's limits, price or whether new purchases may use it (as PATCH /api/v1/tiers/{code})."""
    form = TierForm.parse(request.form.to_dict())
    if form is None:
        return _tiers_page(400, {code: console_text(current_locale(), "Limits are whole numbers from 0 to "
                                                    "%(max)s; the price has at most 2 decimals.", max=MAX_LIMIT)},
                           _typed_tier(code))
    with context.db().session() as session, session.begin():
        try:
            changed = change_tier(session, code[:10], asdict(form))
        except ValueError:  # nothing was changed
            return _tiers_page(400, {code: console_text(current_locale(),
                                                        "The daily limit may not exceed the monthly limit.")},
                               _typed_tier(code))
        if changed is None:
            abort(404)
        before, after = changed
        names = [k for k in ("daily_limit", "monthly_limit", "price_try", "active") if before[k] != after[k]]
        audit("tier.update", "tier", after["code"], {"before": {k: before[k] for k in names},
                                                     "after": {k: after[k] for k in names}, "via": "console"},
              session=session)
    flash_text("success", "Tier %(code)s saved.", code=after["code"])
    return redirect(url_for("console_admin.tiers"))


# What each runtime setting does, in the staff's language (the API's English is `Spec.description`).
SETTING_DESCRIPTIONS = {
    "image_max_upload_kb": N_("Largest photo accepted from a farmer, in KB (WhatsApp itself allows at most 5 MB)."),
    "image_max_width": N_("Width the photo is fitted into before N8N sees it (px)."),
    "image_max_height": N_("Height the photo is fitted into before N8N sees it (px)."),
    "image_target_kb": N_("Size the optimised photo must fit in (KB); quality is lowered step by step until it does."),
    "image_quality": N_("JPEG quality the optimisation starts from (it goes down to 20 if the photo does not fit "
                        "otherwise)."),
    "n8n_timeout_seconds": N_("How long one N8N call may take before it counts as failed and is retried."),
    "quiet_hours_start": N_("Proactive messages (sponsor messages) are not sent from this time (Europe/Istanbul)...; "
                            "equal start and end mean no quiet hours."),
    "quiet_hours_end": N_("...until this time; a message written meanwhile waits."),
    "sponsor_message_daily_cap": N_("Sponsor messages one farmer may receive per day (all sponsors together, "
                                    "Europe/Istanbul days)."),
    "support_takeover_minutes": N_("How long a support person's takeover of a conversation lasts unless they choose "
                                   "otherwise; the bot stays silent for that farmer meanwhile."),
}


SHOWN = "shown_"  # the hidden field carrying what the page showed in a setting's field when it was opened


def shown_value(values: runtime_settings.Values, rows: dict[str, Any], name: str) -> str:
    """What the settings page shows in a setting's field: its stored override, or nothing (the default applies)."""
    return str(getattr(values, name)) if name in rows else ""


def _setting_value(spec: runtime_settings.Spec, raw: str) -> Any:
    """A field as the value to store (None: back to the default; a string that is no number stays a string and
    fails the spec's check)."""
    if raw == "":
        return None
    return int(raw) if spec.kind == "integer" and re.fullmatch(r"-?[0-9]{1,9}", raw) else raw


@dataclass(frozen=True)
class SettingsForm:
    """The settings form: what was typed in each field and what the page showed there when it was opened.
    Only a field whose text differs from what it showed was changed by this person."""

    typed: dict[str, str]
    shown: dict[str, str | None]  # None: a form without the hidden field (compared with the stored value)

    @classmethod
    def parse(cls, form: dict[str, str]) -> SettingsForm:
        typed = {name: form[name].strip()[:20] for name in SPECS if name in form}
        shown = {name: form[SHOWN + name].strip()[:20] if SHOWN + name in form else None for name in typed}
        return cls(typed, shown)


def settings_decisions(form: SettingsForm, current: dict[str, str], values: runtime_settings.Values
                       ) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """What to save (the fields this person changed, as values), the refused fields by name (bounds: the
    English reason key "bounds"; changed by someone else meanwhile: "conflict"), from the form and the stored
    state (`current`: each field as the page would show it now). Fields nobody touched are never saved."""
    changes: dict[str, Any] = {}
    refused: dict[str, str] = {}
    for name, raw in form.typed.items():
        spec = SPECS[name]
        shown = form.shown[name]
        seen = current[name] if shown is None else shown
        if raw == seen:
            continue  # not touched: whatever is stored now stays
        value = _setting_value(spec, raw)
        if value is not None and spec.check(value) is not None:
            refused[name] = "bounds"
        elif current[name] != seen and raw != current[name]:
            refused[name] = "conflict"  # someone else saved this field since the page was opened
        elif value != getattr(values, name) or (value is None and current[name] != ""):
            changes[name] = value
    return changes, refused, {n: current[n] for n, why in refused.items() if why == "conflict"}


def _setting_refusal(spec: runtime_settings.Spec, why: str, now_value: str) -> str:
    """Why a value was refused, in the staff's language."""
    locale = current_locale()
    if why == "conflict":
        return console_text(locale, "Someone else changed this setting meanwhile; it is now %(value)s. Nothing was "
                                    "saved: check your value and save again.",
                            value=now_value or console_text(locale, "the default"))
    if spec.kind == "integer":
        return console_text(locale, "Must be a whole number from %(low)s to %(high)s.",
                            low=spec.minimum, high=spec.maximum)
    return console_text(locale, "Must be a time of day as HH:MM (00:00 to 23:59).")


def _bounds(spec: runtime_settings.Spec) -> str:
    return f"{spec.minimum}–{spec.maximum}" if spec.kind == "integer" else "00:00–23:59"


@bp.route("/admin/settings", methods=["GET", "POST"])
@staff_required("admin")
def settings() -> ResponseReturnValue:
    errors: dict[str, str] = {}
    form = SettingsForm({}, {})
    shown_now: dict[str, str] = {}  # a refused field's hidden "shown" value: the stored one it was compared with
    if request.method == "POST":
        form = SettingsForm.parse(request.form.to_dict())
        staff = current_staff()
        assert staff is not None
        with context.db().session() as session, session.begin():
            before, rows = runtime_settings.load(session, context.settings())
            current = {name: shown_value(before, rows, name) for name in SPECS}
            changes, refused, shown_now = settings_decisions(form, current, before)
            if not refused and changes:
                runtime_settings.save(session, changes, staff.id, utcnow())
                after, _ = runtime_settings.load(session, context.settings())
                audit("settings.update", "runtime_settings", None,
                      {n: {"before": getattr(before, n), "after": getattr(after, n)} for n in changes},
                      session=session)
        errors = {name: _setting_refusal(SPECS[name], why, current[name]) for name, why in refused.items()}
        if not errors:
            if changes:
                runtime_settings.announce()
                flash_text("success", "Settings saved.")
            else:
                flash_text("info", "Nothing was changed.")
            return redirect(url_for("console_admin.settings"))
    with context.db().reader() as session:
        values, rows = runtime_settings.load(session, context.settings())
    items = []
    for name, spec in SPECS.items():
        stored = shown_value(values, rows, name)
        shown = shown_now.get(name, form.shown.get(name))
        items.append({"name": name, "spec": spec, "default": spec.default(context.settings()), "row": rows.get(name),
                      "bounds": _bounds(spec), "error": errors.get(name), "description": SETTING_DESCRIPTIONS[name],
                      # a refused form keeps every field as typed, and what the page had shown when opened
                      "field": form.typed.get(name, stored), "shown": stored if shown is None else shown})
    return render("console/admin_settings.html", status=400 if errors else 200, items=items)


# --- the audit log ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditFilters:
    actor: str
    action: str
    since: datetime | None
    until: datetime | None

    @classmethod
    def parse(cls, args: dict[str, str]) -> AuditFilters:
        """Lenient: a filter that does not parse is ignored (and shown empty), never an error page."""
        return cls(args.get("actor", "").strip()[:254], args.get("action", "").strip()[:100],
                   _day(args.get("from", ""), 0), _day(args.get("to", ""), 1))


def _day(raw: str, shift: int) -> datetime | None:
    """A YYYY-MM-DD day in Istanbul as the UTC moment it starts (shift=1: the moment the day ends)."""
    try:
        day = datetime.strptime(raw.strip(), "%Y-%m-%d").date()
        return datetime.combine(day + timedelta(days=shift), time(0), TIMEZONE).astimezone(UTC)
    except (ValueError, OverflowError):  # not a day, or one at the calendar's edge (0001-01-01, 9999-12-31)
        return None


@bp.get("/admin/audit")
@staff_required("admin")
def audit_log() -> ResponseReturnValue:
    filters = AuditFilters.parse(request.args.to_dict())
    page = page_number()
    stmt = select(AuditLog, StaffUser.email).outerjoin(StaffUser, StaffUser.id == AuditLog.user_id)
    if filters.actor:
        if filters.actor.isascii() and filters.actor.isdigit() and len(filters.actor) < 10:
            stmt = stmt.where(AuditLog.user_id == int(filters.actor))
        else:
            stmt = stmt.where(StaffUser.email.icontains(filters.actor.lower(), autoescape=True))
    if filters.action and ACTION_PATTERN.fullmatch(filters.action):
        stmt = stmt.where(AuditLog.action == filters.action)  # exact, as the API's filter
    if filters.since is not None:
        stmt = stmt.where(AuditLog.at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(AuditLog.at < filters.until)
    with context.db().reader() as session:
        rows = session.execute(stmt.order_by(AuditLog.at.desc(), AuditLog.id.desc())
                               .limit(PER_PAGE + 1).offset((page - 1) * PER_PAGE)).all()
        actions = sorted(session.scalars(select(AuditLog.action).distinct()))
    return render("console/admin_audit.html", rows=rows[:PER_PAGE], more=len(rows) > PER_PAGE, page=page,
                  filters=filters, actions=actions, args=request.args.to_dict())
