"""Support pages of the console (roles support and admin): conversations, a farmer's page with the
transcript, takeover, replies and notes; the KVKK deletion queue; failed jobs; canned replies.

The rules live in services/support.py and services/deletion.py; this module parses forms, calls them
in one transaction, sends what was queued after the commit, and redirects (post/redirect/get).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from flask import abort, current_app, redirect, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from console.pages import audit_view, flash_text, nav_item, refuse, render, whole_number
from console.security import console_blueprint
from console.session import current_locale, current_staff, staff_required, take_draft
from models import Analysis, AuditLog, CannedReply, Farmer, Message, PhotoState, StaffUser, UsageLedger, utcnow
from services import context, deletion, failed_jobs, quota, runtime_settings, support
from services.audit import audit
from services.queue import QUEUE_NAMES
from services.report_links import photo_links, report_link
from services.whatsapp.errors import EFFECT_BY_CODE, Effect, Policy, policy_for
from services.whatsapp.outbox import send_queued
from translations import N_, console_text, format_datetime

bp = console_blueprint("console_support", __name__)
ROLES = ("support", "admin")
PER_PAGE = 25
MAX_PAGE = 10_000
SEARCH_MAX = 100
TEMPLATE_PARAMS_MAX = 10

nav_item("console_support.index", N_("Conversations"), *ROLES, order=20)
nav_item("console_support.deletions", N_("Deletion requests"), *ROLES, order=21)
nav_item("console_support.failed_jobs", N_("Failed jobs"), *ROLES, order=22)
nav_item("console_support.canned", N_("Canned replies"), *ROLES, order=23)


def _t(msgid: str, **params: Any) -> str:
    return console_text(current_locale(), msgid, **params)


def _me() -> StaffUser:
    staff = current_staff()
    if staff is None:  # staff_required ran first; this only satisfies the type checker
        abort(404)
    return staff


# --- what a row or a bubble says ----------------------------------------------------------------------

FILTER_LABELS = {
    support.ListFilter.NEEDS_HUMAN: N_("Needs a human"),
    support.ListFilter.FAILED: N_("Failed deliveries"),
    support.ListFilter.DELETION: N_("Deletion requested"),
    support.ListFilter.OPTED_OUT: N_("Opted out"),
    support.ListFilter.UNREACHABLE: N_("Unreachable"),
}
STATUS_LABELS = {
    "received": N_("received"), "processed": N_("handled"), "pending": N_("waiting to be sent"),
    "accepted": N_("accepted by WhatsApp"), "sent": N_("sent"), "delivered": N_("delivered"), "read": N_("read"),
    "failed": N_("failed"),
}
# The bot's step, a ledger row's kind and an analysis' state, in the staff's language (raw values elsewhere).
STATE_LABELS = {
    "start": N_("not consented yet"), "await_consent": N_("asked for consent"), "menu": N_("at the menu"),
    "await_photo": N_("waiting for a photo"), "await_crop": N_("waiting for the crop"),
    "await_crop_text": N_("waiting for the crop's name"), "await_location": N_("waiting for the location"),
    "confirm": N_("confirming a submission"), "await_more_photo": N_("waiting for one more photo"),
    "await_code": N_("waiting for a code"), "history": N_("reading past analyses"),
    "await_language": N_("choosing a language"),
}
LEDGER_LABELS = {"charge": N_("analysis charged"), "refund": N_("analysis refunded")}
ANALYSIS_LABELS = {"received": N_("received"), "queued": N_("queued"), "processing": N_("in progress"),
                   "completed": N_("completed"), "failed": N_("failed")}
# What a template's parameters mean (`translations.templates`' `param_names`), for the fields support fills in.
PARAM_LABELS = {
    "farmer name": N_("farmer name"), "crop": N_("crop"), "health score (x/10)": N_("health score (x/10)"),
    "main concern": N_("main concern"), "problem": N_("problem"), "first urgent action": N_("first urgent action"),
    "tier": N_("package"), "end date": N_("end date"), "days left": N_("days left"), "sponsor": N_("sponsor"),
    "daily limit": N_("daily limit"), "monthly limit": N_("monthly limit"), "used today": N_("used today"),
    "reset time": N_("reset time"), "sponsor name": N_("sponsor name"), "message text": N_("message text"),
}
TICKS = {"pending": "◷", "accepted": "✓", "sent": "✓", "delivered": "✓✓", "read": "✓✓", "failed": "✗"}
# What Meta's error codes mean for support (services/whatsapp/errors.py holds what we do about them).
ERROR_MEANINGS = {
    131047: N_("More than 24 hours since the farmer's last message: only a template may be sent."),
    131026: N_("The number cannot receive WhatsApp messages (not on WhatsApp, or an old app)."),
    131050: N_("The farmer stopped marketing messages in WhatsApp."),
    131049: N_("Meta limits marketing messages to this farmer for now."),
    130472: N_("The farmer's number is in one of Meta's experiments: no marketing message now."),
    131051: N_("WhatsApp does not support this kind of message."),
    131056: N_("Too many messages to this farmer in a short time."),
    131052: N_("The farmer's photo could not be downloaded."),
    131053: N_("The farmer's photo could not be uploaded or read."),
    131062: N_("This message cannot go to a user id; it needs the phone number."),
}
POLICY_MEANINGS = {
    Policy.RETRY: N_("A temporary problem at WhatsApp; it was retried."),
    Policy.RETRY_PAIR: N_("Too many messages to this farmer in a short time."),
    Policy.ALERT: N_("A problem of our WhatsApp account or template: an operator must look."),
    Policy.AUTH: N_("Our WhatsApp access token is invalid: an operator must look."),
}
EFFECT_MEANINGS = {
    Effect.TEMPLATE_BLOCKED: N_("The template is paused or disabled by Meta."),
    Effect.ACCOUNT_BLOCKED: N_("Our WhatsApp account is blocked (payment, policy or lock)."),
}


def failure_meaning(code: int | None) -> str:
    """A sentence for a failed message's code (a msgid, translated in the template)."""
    if code is None:
        return N_("Not sent by us (see the reason).")
    if code in ERROR_MEANINGS:
        return ERROR_MEANINGS[code]
    effect = EFFECT_BY_CODE.get(code)
    if effect in EFFECT_MEANINGS:
        return EFFECT_MEANINGS[effect]
    return POLICY_MEANINGS.get(policy_for(code, None), N_("WhatsApp refused the message."))


def display_name(farmer: Farmer) -> str:
    locale = current_locale()
    if farmer.deleted_at is not None:
        return console_text(locale, "Deleted farmer #%(id)s", id=farmer.id)
    return farmer.profile_name or farmer.username or farmer.phone or farmer.user_id or f"#{farmer.id}"


def left_text(left: timedelta | None) -> str:
    locale = current_locale()
    if left is None:
        return ""
    minutes = int(left.total_seconds() // 60)
    return console_text(locale, "%(h)s h %(m)s min left", h=minutes // 60, m=minutes % 60)


# --- forms --------------------------------------------------------------------------------------------


_CONTROL = dict.fromkeys(c for c in range(32) if chr(c) not in "\n\t")


def clean(value: str | None) -> str:
    """Form text without control characters (NUL would fail on PostgreSQL); line breaks and tabs stay."""
    return (value or "").translate(_CONTROL).replace("\r", "")


@dataclass(frozen=True)
class ListArgs:
    q: str | None
    kind: support.ListFilter | None
    page: int

    @classmethod
    def parse(cls, args: MultiDict[str, str]) -> ListArgs:
        """Anything unusable is ignored (a list page never fails on its query string)."""
        q = " ".join(clean(args.get("q")).split())[:SEARCH_MAX] or None
        try:
            kind = support.ListFilter(args.get("filter") or "")
        except ValueError:
            kind = None
        return cls(q, kind, whole_number(args.get("page"), 1, MAX_PAGE) or 1)


@dataclass(frozen=True)
class TemplateForm:
    name: str
    params: tuple[str, ...]

    @classmethod
    def parse(cls, form: MultiDict[str, str]) -> TemplateForm:
        params = []
        for i in range(TEMPLATE_PARAMS_MAX):
            if f"p{i}" not in form:
                break
            params.append(clean(form.get(f"p{i}")).strip())
        return cls(clean(form.get("template"))[:100], tuple(params))


# --- conversations ------------------------------------------------------------------------------------


@bp.get("/support")
@staff_required(*ROLES)
def index() -> ResponseReturnValue:
    args = ListArgs.parse(request.args)
    now = utcnow()
    with context.db().reader() as session:
        rows, total = support.conversations(session, now, q=args.q, kind=args.kind, page=args.page,
                                            per_page=PER_PAGE)
        pages = max(1, -(-total // PER_PAGE))
        if args.page > pages:  # a page past the end (an old link, a hand-typed number) shows the last one
            args = replace(args, page=pages)
            rows, total = support.conversations(session, now, q=args.q, kind=args.kind, page=args.page,
                                                per_page=PER_PAGE)
    audit_view("console.conversations.read", "farmer", None)
    return render("console/support_conversations.html", rows=rows, total=total, args=args, pages=pages,
                  filters=FILTER_LABELS, status_labels=STATUS_LABELS, state_labels=STATE_LABELS, ticks=TICKS, now=now,
                  display_name=display_name, is_taken=support.is_taken)


# --- a farmer's page ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A line between the bubbles: what happened that is not a message."""

    at: datetime
    text: str


EVENT_ACTIONS = {
    "farmer.takeover": N_("%(who)s took over the conversation"),
    "farmer.takeover.release": N_("%(who)s gave the conversation back to the bot"),
    "farmer.deletion.request": N_("%(who)s recorded a deletion request"),
}


def _events(session: Session, farmer: Farmer, emails: dict[int, str]) -> list[Event]:
    locale = current_locale()
    events = []
    for at, msgid in ((farmer.consent_at, N_("The farmer gave consent (KVKK)")),
                      (farmer.opted_out_at if support.opted_out_themselves(farmer) else None,
                       N_("The farmer opted out (DUR)")),
                      (farmer.human_requested_at, N_("The farmer asked for a person")),
                      (farmer.deletion_requested_at, N_("Deletion of the farmer's data was requested")),
                      (farmer.deleted_at, N_("The farmer's data was deleted")),
                      (farmer.unreachable_at, N_("WhatsApp reported the number unreachable"))):
        if at is not None:
            events.append(Event(at, _t(msgid)))
    audits = session.scalars(select(AuditLog).where(AuditLog.record_type == "farmer",
                                                    AuditLog.record_id == str(farmer.id),
                                                    AuditLog.action.in_(list(EVENT_ACTIONS))))
    for row in audits:
        who = emails.get(row.user_id or 0, console_text(locale, "someone"))
        events.append(Event(row.at, _t(EVENT_ACTIONS[row.action], who=who)))
    return events


PHOTO_DELETED = N_("Photo deleted with the farmer's data.")
PHOTO_WAITING = N_("Photo not stored yet: its analysis is downloading it.")
PHOTO_FAILED = N_("Photo not stored: it could not be downloaded for its analysis.")
PHOTO_PURGED = N_("Photo of an analysis: deleted after the media retention period.")
PHOTO_NOT_KEPT = N_("Photo not stored: we download a farmer's photo only for an analysis or when it is sent during "
                    "a takeover, and this one was neither (sent before consent, or never submitted).")
# A photo sent during a takeover, by what became of the copy kept for support (`PhotoState`; stored: shown).
KEPT_PHOTO_STATES = {
    PhotoState.WAITING.value: N_("Photo sent during the takeover: not stored yet, it is being downloaded."),
    PhotoState.NOT_DOWNLOADED.value: N_("Photo sent during the takeover: it could not be downloaded from WhatsApp."),
    PhotoState.REJECTED.value: N_("Photo sent during the takeover: rejected, it is not a photo we can read."),
    PhotoState.PURGED.value: N_("Photo sent during the takeover: deleted after the media retention period."),
}


def photos_of(session: Session, farmer: Farmer, messages: list[Message]) -> tuple[dict[str, str], dict[int, str]]:
    """The farmer's photos as support may see them: signed links to the stored ones, by the WhatsApp media id
    they came as; and for each photo message of theirs we hold no copy of, why (a msgid, by message id). We
    download a photo for its analysis, or for support when it was sent during a takeover (its copy's key is on
    the message); any other photo was never kept."""
    links: dict[str, str] = {}
    pending: dict[str, str] = {}  # media id -> why it has no copy though an analysis took it
    if farmer.deleted_at is None:
        for media_ids, media_id, image_keys, image_key, status in session.execute(
                select(Analysis.media_ids, Analysis.media_id, Analysis.image_keys, Analysis.image_key, Analysis.status)
                .where(Analysis.farmer_id == farmer.id)):  # not the results: only what names the photos
            media = [str(m) for m in (media_ids or ([media_id] if media_id else []))]
            keys = image_keys or ([image_key] if image_key else [])
            if keys:
                links.update(zip(media, photo_links(keys), strict=False))
            for one in media:  # completed without a copy: the retention purge took them
                pending[one] = (PHOTO_FAILED if status == "failed"
                                else PHOTO_PURGED if status == "completed" and not keys else PHOTO_WAITING)
        for m in messages:  # a photo kept for support: its own copy, unless an analysis holds one
            if m.media_id and m.photo_key and m.media_id not in links:
                links.update((m.media_id, link) for link in photo_links([m.photo_key]))
    missing = {}
    for m in messages:
        if m.direction == "out" or m.type != "image" or (m.media_id and m.media_id in links):
            continue
        if farmer.deleted_at is not None or not m.media_id:
            missing[m.id] = PHOTO_DELETED
        else:
            missing[m.id] = pending.get(m.media_id) or KEPT_PHOTO_STATES.get(m.photo_state or "", PHOTO_NOT_KEPT)
    return links, missing


def farmer_or_404(session: Session, farmer_id: int) -> Farmer:
    farmer = session.get(Farmer, farmer_id) if 0 < farmer_id < 2**31 else None
    if farmer is None:
        abort(404)
    return farmer


@bp.get("/support/farmers/<int:farmer_id>")
@staff_required(*ROLES)
def farmer(farmer_id: int) -> ResponseReturnValue:
    draft = take_draft(request.path)  # a reply or note posted after the session had ended
    if draft is None:
        return _farmer_page(farmer_id)
    text = str(draft["fields"].get("text", ""))
    flash_text("warning", "Your session had ended, so this was not sent or saved; what you typed is back in its box.")
    if str(draft["action"]).endswith("/notes"):
        return _farmer_page(farmer_id, note_typed=text)
    return _farmer_page(farmer_id, typed=text)


def _farmer_page(farmer_id: int, typed: str | None = None, http_status: int = 200,
                 note_typed: str = "") -> ResponseReturnValue:
    """The farmer's page; `typed` / `note_typed`: a refused reply's or note's text, put back in its box (not lost
    to a redirect)."""
    now = utcnow()
    with context.db().reader() as session:
        f = farmer_or_404(session, farmer_id)
        messages = support.transcript(session, f)
        conv = support.conversation_row(session, farmer_id)
        emails = {user_id: email for user_id, email in session.execute(select(StaffUser.id, StaffUser.email))}
        analyses = list(session.scalars(select(Analysis).where(Analysis.farmer_id == farmer_id)
                                        .order_by(Analysis.created_at.desc(), Analysis.id.desc()).limit(20)))
        ledger = list(session.scalars(select(UsageLedger).where(UsageLedger.farmer_id == farmer_id)
                                      .order_by(UsageLedger.created_at.desc(), UsageLedger.id.desc()).limit(20)))
        status = quota.quota_status(session, farmer_id, now)
        notes = support.notes_of(session, farmer_id)
        canned = support.canned_replies(session)
        templates = support.sendable_templates(session)
        events = _events(session, f, emails)
        photos, missing_photos = photos_of(session, f, messages)
    audit_view("console.farmer.read", "farmer", farmer_id)
    completed = {a.id for a in analyses if a.status == "completed"}
    timeline: list[tuple[datetime, int, Any]] = [(m.created_at, 0, m) for m in messages]
    timeline += [(e.at, 1, e) for e in events]
    timeline.sort(key=lambda item: (item[0], item[1]))
    prefill = typed or ""
    chosen = whole_number(request.args.get("canned"), 1, 2**31 - 1)
    if chosen is not None and typed is None:
        prefill = next((c.text for c in canned if c.id == chosen), "")
    left = support.window_left(f, now)
    return render(
        "console/support_farmer.html", http_status, farmer=f, timeline=timeline, conv=conv,
        taken=support.is_taken(conv, now),
        emails=emails, analyses=analyses, ledger=ledger, quota_status=status, notes=notes, canned=canned,
        templates=templates, window_left=left, window_text=left_text(left),
        window_deadline=(now + left).isoformat() if left else "", photos=photos, missing_photos=missing_photos,
        report_links={a_id: report_link(a_id) for a_id in completed}, ticks=TICKS, status_labels=STATUS_LABELS,
        state_labels=STATE_LABELS, ledger_labels=LEDGER_LABELS, analysis_labels=ANALYSIS_LABELS,
        param_labels=PARAM_LABELS, note_typed=note_typed,
        failure_meaning=failure_meaning, display_name=display_name, prefill=prefill, now=now,
        takeover_minutes=runtime_settings.current().support_takeover_minutes,
        days_left=deletion.days_left(f.deletion_requested_at, now) if f.deletion_requested_at else None,
        is_message=lambda item: isinstance(item, Message), opted_out=support.opted_out_themselves(f),
    )


def _back(farmer_id: int) -> ResponseReturnValue:
    return redirect(url_for("console_support.farmer", farmer_id=farmer_id) + "#reply")


def _deleted(farmer_id: int) -> bool:
    """404 for an unknown farmer; True (with the reason flashed) when their data was deleted: nothing to do."""
    with context.db().reader() as session:
        f = farmer_or_404(session, farmer_id)
    if f.deleted_at is not None:
        refuse("This farmer's data was deleted.")
        return True
    return False


@bp.post("/support/farmers/<int:farmer_id>/takeover")
@staff_required(*ROLES)
def take_over(farmer_id: int) -> ResponseReturnValue:
    if _deleted(farmer_id):
        return _back(farmer_id)
    typed = (request.form.get("minutes") or "").strip()
    minutes = whole_number(typed, 1, 24 * 60) if typed else runtime_settings.current().support_takeover_minutes
    if minutes is None:
        refuse("The minutes must be a whole number from 1 to 1440; the conversation was not taken over.")
        return _back(farmer_id)
    with context.db().session() as session, session.begin():
        conv = support.take_over(session, farmer_id, _me().id, utcnow(), minutes)
        until = conv.taken_until
    flash_text("success", "You answer this farmer now; the bot stays silent until %(until)s.",
               until=_format_time(until))
    return _back(farmer_id)


def _format_time(value: datetime | None) -> str:
    return format_datetime(value, current_locale()) if value else ""


@bp.post("/support/farmers/<int:farmer_id>/release")
@staff_required(*ROLES)
def release(farmer_id: int) -> ResponseReturnValue:
    if _deleted(farmer_id):
        return _back(farmer_id)
    with context.db().session() as session, session.begin():
        released = support.release(session, farmer_id, _me().id, utcnow())
    if released:
        flash_text("success", "The bot answers this farmer again.")
    else:
        flash_text("info", "The conversation was not taken.")
    return _back(farmer_id)


REFUSALS = {
    support.ReplyRefusal.EMPTY: N_("Write a message first."),
    support.ReplyRefusal.TOO_LONG: N_("The message is too long (at most 4096 characters)."),
    support.ReplyRefusal.WINDOW_CLOSED: N_("More than 24 hours since the farmer's last message: free text is not "
                                           "allowed, choose a template."),
    support.ReplyRefusal.UNKNOWN_TEMPLATE: N_("Choose one of the templates shown."),
    support.ReplyRefusal.BAD_PARAMS: N_("Fill every field of the template (one line each)."),
    support.ReplyRefusal.NO_ADDRESS: N_("This farmer's data was deleted."),
}


def _after_reply(farmer_id: int, result: support.ReplyResult, typed: str | None = None) -> ResponseReturnValue:
    """Sent: back to the page. Refused: a free-text reply (`typed`, even empty) gets the page again with the
    reason and the text still in the box (the window may have closed while it was being written); a template
    goes back to the page with the reason."""
    if result.refusal is not None:
        refuse(REFUSALS[result.refusal])
        return _farmer_page(farmer_id, typed, 400) if typed is not None else _back(farmer_id)
    if result.address:
        send_queued(result.address)
    flash_text("success", "Your reply is on its way.")
    return _back(farmer_id)


@bp.post("/support/farmers/<int:farmer_id>/reply")
@staff_required(*ROLES)
def reply(farmer_id: int) -> ResponseReturnValue:
    if _deleted(farmer_id):
        return _back(farmer_id)
    text = clean(request.form.get("text"))
    with context.db().session() as session, session.begin():
        result = support.reply_text(session, farmer_id, _me().id, text, utcnow())
    return _after_reply(farmer_id, result, request.form.get("text") or "")


@bp.post("/support/farmers/<int:farmer_id>/template")
@staff_required(*ROLES)
def reply_template(farmer_id: int) -> ResponseReturnValue:
    if _deleted(farmer_id):
        return _back(farmer_id)
    form = TemplateForm.parse(request.form)
    with context.db().session() as session, session.begin():
        result = support.reply_template(session, farmer_id, _me().id, form.name, form.params, utcnow())
    return _after_reply(farmer_id, result)


@bp.post("/support/farmers/<int:farmer_id>/notes")
@staff_required(*ROLES)
def add_note(farmer_id: int) -> ResponseReturnValue:
    if _deleted(farmer_id):
        return _back(farmer_id)
    text = clean(request.form.get("text")).strip()
    if not text or len(text) > support.NOTE_MAX:
        if text:
            refuse("The note is too long: at most %(n)s characters, it has %(length)s.",
                       n=support.NOTE_MAX, length=len(text))
        else:
            refuse("Write the note first.")
        return _farmer_page(farmer_id, http_status=400, note_typed=request.form.get("text") or "")
    with context.db().session() as session, session.begin():
        note = support.add_note(session, farmer_id, _me().id, text, utcnow())
        if note is not None:  # the note's text stays out of the log (it may hold personal data)
            audit("farmer.note", "farmer", farmer_id, {"note_id": note.id}, session=session)
    flash_text("success", "Note saved.")
    return redirect(url_for("console_support.farmer", farmer_id=farmer_id) + "#notes")


@bp.post("/support/farmers/<int:farmer_id>/deletion-request")
@staff_required(*ROLES)
def request_deletion(farmer_id: int) -> ResponseReturnValue:
    if _deleted(farmer_id):
        return _back(farmer_id)
    with context.db().session() as session, session.begin():
        recorded = deletion.request_deletion(session, farmer_id, _me().id, utcnow())
    if recorded:
        flash_text("success", "Deletion request recorded; it is in the queue.")
    else:
        flash_text("info", "A deletion request is already open.")
    return redirect(url_for("console_support.farmer", farmer_id=farmer_id))


@bp.post("/support/farmers/<int:farmer_id>/delete")
@staff_required(*ROLES)
def erase(farmer_id: int) -> ResponseReturnValue:
    if _deleted(farmer_id):
        return _back(farmer_id)
    if request.form.get("confirm") != "yes":
        refuse("Tick the box to confirm the deletion.")
        return redirect(url_for("console_support.farmer", farmer_id=farmer_id) + "#deletion")
    with context.db().session() as session, session.begin():
        erased = deletion.erase(session, farmer_id, _me().id, utcnow())
    if erased is None:
        flash_text("info", "This farmer's data was deleted.")
        return redirect(url_for("console_support.deletions"))
    deletion.delete_photos(current_app.extensions["storage"], erased.photo_keys)
    if erased.goodbye_address:
        send_queued(erased.goodbye_address)
        with context.db().session() as session, session.begin():
            deletion.forget_goodbyes(session)
    if erased.told:
        flash_text("success", "The farmer's data was deleted; they were told in the chat.")
    else:
        flash_text("success", "The farmer's data was deleted; they could not be told (no message from them in "
                              "24 hours).")
    return redirect(url_for("console_support.deletions"))


# --- deletion queue -----------------------------------------------------------------------------------


@bp.get("/support/deletions")
@staff_required(*ROLES)
def deletions() -> ResponseReturnValue:
    now = utcnow()
    with context.db().reader() as session:
        waiting = deletion.queue(session)
    audit_view("console.deletions.read", "farmer", None)
    rows = [(f, deletion.days_left(f.deletion_requested_at, now), deletion.due_at(f.deletion_requested_at))
            for f in waiting if f.deletion_requested_at is not None]
    return render("console/support_deletions.html", rows=rows, display_name=display_name)


# --- failed jobs --------------------------------------------------------------------------------------


@bp.get("/support/failed-jobs", endpoint="failed_jobs")
@staff_required(*ROLES)
def failed_jobs_page() -> ResponseReturnValue:
    redis = context.redis()
    db = context.db()
    jobs = [job for queue in QUEUE_NAMES for job in failed_jobs.latest_failed(redis, queue, 50)]
    jobs.sort(key=lambda j: j.ended_at or datetime.min.replace(tzinfo=utcnow().tzinfo), reverse=True)
    refunded = {j.id for j in jobs if failed_jobs.refunded_analysis(db, j.id)}
    return render("console/support_failed_jobs.html", jobs=jobs, refunded=refunded)


@bp.post("/support/failed-jobs/retry")
@staff_required(*ROLES)
def retry_job() -> ResponseReturnValue:
    job_id = request.form.get("job_id", "")[:100]
    queue = request.form.get("queue") if request.form.get("queue") in QUEUE_NAMES else None
    force = request.form.get("force") == "yes"
    outcome, where = failed_jobs.requeue(context.redis(), context.db(), job_id, queue=queue, force=force)
    audit("jobs.requeue", "job", job_id, {"queue": where, "outcome": outcome.value, "force": force, "via": "console"})
    if outcome == failed_jobs.Requeue.REQUEUED:
        flash_text("success", "The job is back in its queue.")
    elif outcome == failed_jobs.Requeue.NOT_FOUND:
        refuse("No such failed job (it may have been retried or expired).")
    else:
        refuse("This analysis failed and was refunded: retrying would run it for free. "
                            "Tick 'run it anyway' to retry.")
    return redirect(url_for("console_support.failed_jobs"))


# --- canned replies -----------------------------------------------------------------------------------


@bp.get("/support/canned")
@staff_required(*ROLES)
def canned() -> ResponseReturnValue:
    draft = take_draft(request.path)  # a canned reply saved after the session had ended
    if draft is None:
        return _canned_page()
    flash_text("warning", "Your session had ended, so this was not sent or saved; what you typed is back in its box.")
    fields = draft["fields"]
    return _canned_page(typed=CannedTyped(whole_number(fields.get("id"), 1, 2**31 - 1),
                                          str(fields.get("title", "")), str(fields.get("text", ""))))


@dataclass(frozen=True)
class CannedTyped:
    """A canned reply's form as typed (`id`: the row it edits, None for a new one), shown again in its box."""

    id: int | None
    title: str
    text: str


def _canned_page(http_status: int = 200, typed: CannedTyped | None = None) -> ResponseReturnValue:
    with context.db().reader() as session:
        rows = support.canned_replies(session)
    if typed is not None and typed.id is not None and all(row.id != typed.id for row in rows):
        typed = replace(typed, id=None)  # its row was deleted meanwhile: the text goes to the new reply's form
    return render("console/support_canned.html", http_status, rows=rows, can_edit=_me().role == "admin",
                  title_max=support.CANNED_TITLE_MAX, typed=typed)


def _admin_only() -> None:
    if _me().role != "admin":
        abort(404)


@bp.post("/support/canned")
@staff_required(*ROLES)
def save_canned() -> ResponseReturnValue:
    """A refused form (no such reply any more, or a title or text missing or too long) comes back with what was
    typed, in its box (HTTP 400)."""
    _admin_only()
    raw_id = request.form.get("id")
    canned_id = whole_number(raw_id, 1, 2**31 - 1) if raw_id else None
    typed = CannedTyped(canned_id, request.form.get("title", "")[:10_000], request.form.get("text", "")[:10_000])
    with context.db().session() as session, session.begin():
        if raw_id and (canned_id is None or session.get(CannedReply, canned_id) is None):
            refuse("No such canned reply.")  # deleted meanwhile, or a form not ours
            return _canned_page(400, replace(typed, id=None))
        row = support.save_canned(session, canned_id, clean(request.form.get("title")), clean(request.form.get("text")),
                                  _me().id, utcnow())
        if row is not None:
            audit("canned_reply.update" if canned_id else "canned_reply.create", "canned_reply", row.id,
                  {"title": row.title}, session=session)
    if row is None:
        refuse("A canned reply needs a title (at most 100 characters) and a text (at most 4096).")
        return _canned_page(400, typed)
    flash_text("success", "Canned reply saved.")
    return redirect(url_for("console_support.canned"))


@bp.post("/support/canned/<int:canned_id>/delete")
@staff_required(*ROLES)
def delete_canned(canned_id: int) -> ResponseReturnValue:
    _admin_only()
    with context.db().session() as session, session.begin():
        deleted = support.delete_canned(session, canned_id)
        if deleted:
            audit("canned_reply.delete", "canned_reply", canned_id, session=session)
    if deleted:
        flash_text("success", "Canned reply deleted.")
    else:
        refuse("No such canned reply.")
    return redirect(url_for("console_support.canned"))
