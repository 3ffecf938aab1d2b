"""Every sentence the bot says, rendered in the farmer's language from the catalogs.

Pure functions of plain values: the state machine calls the ones that need nothing from the
database; the job calls the others with what it loaded (quota, code outcome, history).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot import crops
from bot import reply_ids as rid
from bot.draft import MAX_PHOTOS, ConversationData, Draft
from bot.place import tidy_place
from bot.types import Button, ListRow, QuotaBlock, Reply, State
from translations import N_, format_date, format_datetime, format_number, gettext, ngettext

__all__ = ["LANGUAGES", "Reply"]

LANGUAGES = {"tr": "Türkçe", "en": "English"}  # each language's own name: not translated
PRIVACY_URL = "https://ziraai.com/kvkk"


def _(locale: str, msgid: str, **params: Any) -> str:
    return gettext(locale, msgid, **params)


def tier_label(locale: str, code: str) -> str:
    """Package names: the trial is translated, the paid packages keep their letters (S, M, L, XL)."""
    return _(locale, "Trial") if code == "TRIAL" else code


def crop_name(locale: str, crop: str) -> str:
    """A known crop in the farmer's language; a crop they typed themselves, as they typed it."""
    msgid = crops.display_name(crop)
    return gettext(locale, msgid) if msgid else crop


# --- onboarding ------------------------------------------------------------------------------------


def privacy_notice(locale: str) -> Reply:
    text = gettext(
        locale,
        "Hello! I am ZiraAI's plant health assistant. Send me a photo of a plant and I will tell you what is "
        "wrong with it and what to do.\n\nPrivacy notice (KVKK): we store your phone number, your name on "
        "WhatsApp, your messages and photos to analyse your plants and to answer you. Details: %(url)s\n\n"
        "Do you accept?",
        url=PRIVACY_URL,
    )
    return Reply(text, buttons=(Button(rid.Consent(True), _(locale, "I accept")),
                                Button(rid.Consent(False), _(locale, "I do not accept"))))


def consent_hint(locale: str) -> Reply:
    return Reply(_(locale, "Please tap one of the buttons: do you accept the privacy notice?"),
                 buttons=(Button(rid.Consent(True), _(locale, "I accept")),
                          Button(rid.Consent(False), _(locale, "I do not accept"))))


def consent_refused(locale: str) -> Reply:
    return Reply(_(locale, "All right, I will not process any of your data. If you change your mind, just write "
                           "'hello' and you will see the notice again."))


def consent_withdrawn(locale: str) -> Reply:
    """Consent taken back after it was given: what stops, what stays, and how to have it deleted."""
    return Reply(_(locale, "All right, you have withdrawn your consent: from now on I will not process your messages "
                           "or photos, and we will not write to you first. To have what we have stored so far "
                           "deleted, write 'delete my data': our support team will delete it within 30 days. To "
                           "use the service again, write 'hello'."))


def welcome(locale: str, trial_started: bool) -> Reply:
    """Consent given: the Trial is named only when accepting started it (a farmer who had one, or has a package,
    accepts again without one)."""
    if trial_started:
        return Reply(_(locale, "Thank you! Your free trial has started: 1 analysis a day for 30 days."))
    return Reply(_(locale, "Thank you! Your consent is recorded."))


# --- menu, help ------------------------------------------------------------------------------------


def menu(locale: str) -> Reply:
    choice = rid.MenuChoice
    items = (
        ListRow(rid.Menu(choice.ANALYZE), _(locale, "Send analysis"), _(locale, "Send a photo of your plant")),
        ListRow(rid.Menu(choice.QUOTA), _(locale, "My remaining quota"),
                _(locale, "Analyses left today and this month")),
        ListRow(rid.Menu(choice.CODE), _(locale, "Use a code"), _(locale, "Redeem a sponsor code")),
        ListRow(rid.Menu(choice.HISTORY), _(locale, "My recent analyses"), _(locale, "Your last 5 analyses")),
        ListRow(rid.Menu(choice.HELP), _(locale, "Help"), None),
        ListRow(rid.Menu(choice.LANGUAGE), "Dil / Language", "Türkçe, English"),
    )
    rows = tuple(ListRow(row.id, f"{n}. {row.title}", row.description) for n, row in enumerate(items, 1))
    return Reply(_(locale, "What would you like to do? Choose from the list, type its number, or simply send a "
                           "photo of your plant."), rows=rows, list_button=_(locale, "Menu"))


def help_text(locale: str) -> Reply:
    return Reply(_(locale, "How it works: send a photo of the sick leaf, fruit or stem, tell me the crop and, if "
                           "you like, the place; I will send the diagnosis in a few minutes.\n\nYou can write at any "
                           "time: 'menu' for the menu, 'cancel' to cancel, 'quota' for your remaining analyses, "
                           "a sponsor code to redeem it, 'language' to change the language, 'STOP' to stop "
                           "messages."))


def not_understood(locale: str) -> Reply:
    return Reply(_(locale, "Sorry, I did not understand that."))


def cancelled(locale: str) -> Reply:
    return Reply(_(locale, "Cancelled. Nothing was sent and nothing was charged."))


def submission_dropped(locale: str) -> Reply:
    """`menü` in the middle of a submission: it is dropped, nothing was charged."""
    return Reply(_(locale, "Your unfinished submission was cancelled: nothing was sent and nothing was charged."))


def hello_mid_submission(locale: str) -> Reply:
    return Reply(_(locale, "Hello! What you started is kept, so let us go on (write 'cancel' to drop it)."))


def you_are_welcome(locale: str) -> Reply:
    return Reply(_(locale, "You are welcome! I am here whenever you need me."))


def nothing_to_cancel(locale: str) -> Reply:
    return Reply(_(locale, "There is nothing to cancel."))


def expired(locale: str, photo_lost: bool = False, photos: int = 1) -> Reply:
    """The conversation timed out with a question open. `photo_lost`: a submission's `photos` went with it (never
    sent): the farmer is told to send them again, whatever they wrote now (a code, an answer to the old question)."""
    if photo_lost:
        return Reply(ngettext(locale, "Your previous request timed out after 30 minutes without being sent: nothing "
                                      "was charged. To have the plant analysed, send the photo again.",
                              "Your previous request timed out after 30 minutes without being sent: nothing was "
                              "charged. To have the plant analysed, send the photos again.", photos))
    return Reply(_(locale, "Your previous request timed out after 30 minutes, so we are starting again."))


def nothing_in_progress(locale: str) -> Reply:
    """A button or row of a question no longer open (`Geç`, a crop), or a place shared, with no analysis in
    progress: not "I did not understand" (it is our own button), but what to do instead."""
    return Reply(_(locale, "No analysis is in progress, so there is nothing to add this to. To have a plant "
                           "analysed, send its photo."))


def confirmation_expired(locale: str, photos: int = 1) -> Reply:
    """A confirmation's button tapped after the conversation timed out: that submission (of `photos`) was never
    sent."""
    return Reply(ngettext(locale, "That confirmation timed out after 30 minutes without being sent: nothing was sent "
                                  "and nothing was charged. To have the plant analysed, send the photo again.",
                          "That confirmation timed out after 30 minutes without being sent: nothing was sent and "
                          "nothing was charged. To have the plant analysed, send the photos again.", photos))


def unsupported(locale: str, message_type: str | None, no_analysis_left: bool = False) -> Reply:
    """`no_analysis_left`: the quota is used up now, so a reaction's thanks invites no photo (it would wait)."""
    if message_type in ("audio", "voice"):
        text = _(locale, "I cannot listen to voice messages yet. Please write to me, or send a photo of your plant.")
    elif message_type == "reaction" and no_analysis_left:
        text = _(locale, "Thank you!")
    elif message_type == "reaction":
        text = _(locale, "Thank you! Send a photo whenever you want a new analysis.")
    else:
        text = _(locale, "I can only read text messages and photos (JPEG or PNG). Please send a photo of your plant "
                         "or write 'menu'.")
    return Reply(text)


# --- submission --------------------------------------------------------------------------------------


def ask_photo(locale: str) -> Reply:
    return Reply(_(locale, "Please send a clear photo of the affected leaves, fruit or stem, in daylight."))


def photo_kept(locale: str, count: int = 1) -> Reply:
    """The photo (or the album's `count` photos) that waited, for consent or for a code, goes on now."""
    return Reply(ngettext(locale, "I have your photo; let us continue with it.",
                          "I have your photos; let us continue with them.", count))


def photo_added(locale: str, count: int) -> Reply:
    return Reply(_(locale, "Photo added (%(count)s of %(max)s).", count=format_number(count, locale),
                   max=format_number(MAX_PHOTOS, locale)))


def ask_more_photo(locale: str, count: int) -> Reply:
    return Reply(_(locale, "Send one more photo of the same plant (%(count)s of %(max)s so far).",
                   count=format_number(count, locale), max=format_number(MAX_PHOTOS, locale)))


def photo_not_added(locale: str) -> Reply:
    """A photo beyond a full album: not added, and the album is kept as it is."""
    return Reply(_(locale, "One analysis takes at most %(max)s photos and this one has %(max)s already, so I did not "
                           "add this photo; your %(max)s photos are kept. To have it analysed too, send it again "
                           "once this analysis is sent or cancelled.", max=format_number(MAX_PHOTOS, locale)))


def album_full(locale: str) -> Reply:
    """`Fotoğraf ekle` under a confirmation whose album is full."""
    return Reply(_(locale, "One analysis takes at most %(max)s photos and this one has %(max)s already, so no photo "
                           "can be added to it.", max=format_number(MAX_PHOTOS, locale)))


def album_changed(locale: str, count: int) -> Reply:
    """`Gönder` under a confirmation that showed fewer photos than the submission has now: check it again."""
    return Reply(ngettext(locale, "This analysis now has %(num)s photo; please check it again before I send it.",
                          "This analysis now has %(num)s photos; please check it again before I send it.", count,
                          num=format_number(count, locale)))


def photo_limit_kept(locale: str) -> Reply:
    """Before consent: a photo beyond a full album is not kept (there is one submission to take up)."""
    return Reply(_(locale, "One analysis takes at most %(max)s photos, so I kept the first %(max)s.",
                   max=format_number(MAX_PHOTOS, locale)))


def crop_rows(locale: str) -> tuple[ListRow, ...]:
    rows = tuple(ListRow(rid.Crop(key), gettext(locale, name)) for key, name, _aliases in crops.LIST_CROPS)
    return (*rows, ListRow(rid.Crop(crops.OTHER), _(locale, "Other"), _(locale, "I will type it")))


def ask_crop(locale: str) -> Reply:
    return Reply(_(locale, "Which crop is it? Choose from the list or type its name (for example: hazelnut, apple)."),
                 rows=crop_rows(locale), list_button=_(locale, "Crops"))


def crop_hint(locale: str) -> Reply:
    return Reply(_(locale, "I could not take that as a crop's name. If your crop is not in the list, choose "
                           "'Other' and type its name."))


def ask_crop_text(locale: str) -> Reply:
    return Reply(_(locale, "Please type the name of the crop."))


def crop_text_hint(locale: str) -> Reply:
    return Reply(_(locale, "Please type just the crop's name, in a few words (for example: fasulye)."))


def photo_received_with_crop(locale: str, crop: str) -> Reply:
    return Reply(_(locale, "Photo received: %(crop)s.", crop=crop_name(locale, crop)))


def ask_location(locale: str) -> Reply:
    return Reply(_(locale, "Where is the field? Share your location with 📎 > Location, type the province and "
                           "district, or tap 'Skip'."),
                 buttons=(Button(rid.SkipLocation(), _(locale, "Skip")),))


def location_hint(locale: str) -> Reply:
    return Reply(_(locale, "I could not take that as a place (for example: Konya Selçuklu)."))


def _shorten(text: str, limit: int = 200) -> str:
    """What the farmer wrote, shown back: a photo caption may be 1,024 characters, and with it the
    confirmation would break Meta's limit of 1,024 for a message with buttons."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def confirm(locale: str, draft: Draft) -> Reply:
    lines = [_(locale, "Please check before I send it:"),
             _(locale, "Crop: %(crop)s", crop=crop_name(locale, draft.crop or ""))]
    if draft.location_text or draft.latitude is not None:
        place = tidy_place(draft.location_text) or (f"{draft.latitude:.4f}, {draft.longitude:.4f}"
                                                    if draft.latitude is not None else draft.location_text or "")
        lines.append(_(locale, "Location: %(place)s", place=_shorten(place)))
    else:
        lines.append(_(locale, "Location: not given"))
    if draft.notes:
        lines.append(_(locale, "Your note: %(notes)s", notes=_shorten(draft.notes)))
    lines.append(ngettext(locale, "Photos: %(num)s photo", "Photos: %(num)s photos", draft.photo_count,
                          num=format_number(draft.photo_count, locale)))
    lines.append(_(locale, "This uses 1 analysis from your quota."))
    return Reply("\n".join(lines), buttons=confirm_buttons(locale, draft))


def confirm_buttons(locale: str, draft: Draft) -> tuple[Button, ...]:
    """`Gönder`, `Fotoğraf ekle` (below a full album) and `İptal` of the submission `draft`."""
    buttons = [Button(rid.SendPending(draft.photo_message_id, draft.photo_count), _(locale, "Send"))]
    if draft.photo_count < MAX_PHOTOS:
        buttons.append(Button(rid.AddPhoto(draft.photo_message_id), _(locale, "Add a photo")))
    buttons.append(Button(rid.CancelConfirm(draft.photo_message_id), _(locale, "Cancel")))
    return tuple(buttons)


def confirm_hint(locale: str, photos: int = 1) -> Reply:
    return Reply(ngettext(locale, "Tap 'Send' to send the photo for analysis, or 'Cancel'.",
                          "Tap 'Send' to send the photos for analysis, or 'Cancel'.", photos))


def more_photo_hint(locale: str, draft: Draft) -> Reply:
    """After `Fotoğraf ekle`, words instead of the photo (`tamam`, `evet`): nothing is sent; the photo is awaited,
    and the confirmation's buttons send or cancel what there is."""
    return Reply(ngettext(locale, "Send the photo now; or tap 'Send' to send the %(num)s photo you have, or "
                                  "'Cancel'.",
                          "Send the photo now; or tap 'Send' to send the %(num)s photos you have, or 'Cancel'.",
                          draft.photo_count, num=format_number(draft.photo_count, locale)),
                 buttons=confirm_buttons(locale, draft))


def submission_not_sent(locale: str) -> Reply:
    """A confirmation's button whose submission no longer waits and never became an analysis (cancelled, or
    forgotten among too many confirmations)."""
    return Reply(_(locale, "That request was never sent and nothing was charged: it was cancelled or is no longer "
                           "waiting. Send a new photo for a new analysis."))


def submitted(locale: str) -> Reply:
    return Reply(_(locale, "Your analysis is in the queue; the result will arrive in a few minutes."))


def already_sent(locale: str, status: str) -> Reply:
    """`Gönder` of a submission that was sent already (a second tap, another confirmation of it): where its
    analysis is (`status`, the analysis's), and that it was charged once."""
    if status == "completed":
        return Reply(_(locale, "This analysis was already sent and its result has arrived (see above, or write "
                               "'my analyses'). You were charged only once."))
    if status == "failed":
        return Reply(_(locale, "This analysis was already sent and could not be completed; the reason came above, "
                               "and nothing was charged for it. Send a new photo for a new analysis."))
    return Reply(_(locale, "This analysis was already sent and is being analysed; the result will arrive here in a "
                           "few minutes. You were charged only once."))


def quota_exhausted(locale: str, block: QuotaBlock | None) -> Reply:
    """Which limit is reached and when analyses come back (or that the package ends); a sponsor code is offered
    only where it helps: at once (`block.code_helps`), or to continue after the package ends. Without a `block`
    (the `kota` answer to a farmer with no package) nothing was refused."""
    which = block.reason if block is not None else None
    if block is not None and block.package_ends_at is not None and which in ("daily", "monthly"):
        when = format_datetime(block.package_ends_at, locale)
        text = (_(locale, "Your daily analyses are used up, and your package ends on %(when)s.", when=when)
                if which == "daily" else
                _(locale, "Your monthly analyses are used up, and your package ends on %(when)s.", when=when))
        return Reply(text + "\n" + _(locale, "To continue, redeem a sponsor code: just write the code here."),
                     quota_refusal=which)
    if which == "daily" and block is not None and block.resets_at:
        text = _(locale, "Your daily analyses are used up; they renew on %(when)s.",
                 when=format_datetime(block.resets_at, locale))
    elif which == "monthly" and block is not None and block.resets_at:
        text = _(locale, "Your monthly analyses are used up; they renew on %(when)s.",
                 when=format_datetime(block.resets_at, locale))
    else:
        text = _(locale, "You have no active package at the moment.")
    if block is not None and not block.code_helps:
        return Reply(text, quota_refusal=which)
    return Reply(text + "\n" + _(locale, "To get more, redeem a sponsor code: just write the code here."),
                 quota_refusal=which)


def quota_wait(locale: str, block: QuotaBlock, photos: int = 1) -> Reply:
    """No analysis left when the photo comes (or at `Gönder` of an album of `photos`): which limit, when it resets,
    and what becomes of the photos: they wait for a code when one would start at once; otherwise they cannot be
    analysed now."""
    refused = quota_exhausted(locale, block)
    if block.code_helps:
        kept = ngettext(locale, "Your photo is kept: as soon as a code is accepted, we continue with it. No code? "
                                "Write 'cancel', and send the photo again when you have analyses left.",
                        "Your photos are kept: as soon as a code is accepted, we continue with them. No code? Write "
                        "'cancel', and send the photos again when you have analyses left.", photos)
        return Reply(refused.text + "\n" + kept, quota_refusal=block.reason)
    later = ngettext(locale, "I cannot analyse this photo now; please send it again when you have analyses left.",
                     "I cannot analyse these photos now; please send them again when you have analyses left.", photos)
    return Reply(refused.text + "\n" + later, quota_refusal=block.reason)


# --- quota, codes, history ------------------------------------------------------------------------


@dataclass(frozen=True)
class QuotaView:
    tier_code: str
    daily_used: int
    daily_limit: int
    monthly_used: int
    monthly_limit: int
    day_resets_at: datetime
    month_resets_at: datetime
    ends_at: datetime | None
    sponsor_name: str | None
    queued: tuple[tuple[str, datetime], ...] = ()  # (tier code, starts_at)


def quota(locale: str, view: QuotaView | None) -> Reply:
    if view is None:
        return quota_exhausted(locale, None)
    n = format_number
    daily, monthly = n(view.daily_used, locale), n(view.monthly_used, locale)
    # A limit that would renew only after the package has ended does not renew: say when the package ends.
    if view.ends_at is not None and view.day_resets_at >= view.ends_at:
        today = _(locale, "Today: %(used)s of %(limit)s used (your package ends %(when)s)", used=daily,
                  limit=n(view.daily_limit, locale), when=format_datetime(view.ends_at, locale))
    else:
        today = _(locale, "Today: %(used)s of %(limit)s used (renews %(when)s)", used=daily,
                  limit=n(view.daily_limit, locale), when=format_datetime(view.day_resets_at, locale))
    if view.ends_at is not None and view.month_resets_at >= view.ends_at:
        month = _(locale, "This month: %(used)s of %(limit)s used (your package ends %(when)s)", used=monthly,
                  limit=n(view.monthly_limit, locale), when=format_date(view.ends_at, locale))
    else:
        month = _(locale, "This month: %(used)s of %(limit)s used (renews %(when)s)", used=monthly,
                  limit=n(view.monthly_limit, locale), when=format_date(view.month_resets_at, locale))
    lines = [_(locale, "Package: %(tier)s", tier=tier_label(locale, view.tier_code)), today, month]
    left = max(0, min(view.daily_limit - view.daily_used, view.monthly_limit - view.monthly_used))
    if left:
        lines.append(ngettext(locale, "You can send %(num)s more analysis today.",
                              "You can send %(num)s more analyses today.", left, num=n(left, locale)))
    else:
        lines.append(_(locale, "You cannot send any more analyses today."))
    if view.ends_at:
        lines.append(_(locale, "Valid until: %(date)s", date=format_date(view.ends_at, locale)))
    if view.sponsor_name:
        lines.append(_(locale, "Sponsored by: %(sponsor)s", sponsor=view.sponsor_name))
    for tier, starts in view.queued:
        lines.append(_(locale, "Next package: %(tier)s from %(date)s", tier=tier_label(locale, tier),
                       date=format_date(starts, locale)))
    return Reply("\n".join(lines))


@dataclass(frozen=True)
class RedeemView:
    outcome: str  # ok, queued, unknown, used, expired, revoked, not_now; own_active, own_queued, own_ended
    tier_code: str | None = None
    daily_limit: int | None = None
    monthly_limit: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    sponsor_name: str | None = None
    code_expires_at: datetime | None = None  # not_now: until when the code itself is valid


def ask_code(locale: str) -> Reply:
    return Reply(_(locale, "Please type your sponsor code (for example AGRI-7KQ3-M9XP)."))


def not_a_code(locale: str, photo_waits: bool, analysis_left: bool = False, photos: int = 1) -> Reply:
    """While a code is awaited, a message that is not one (`kodum yok`, `tamam`): the way out, not "not found".
    `analysis_left`: the `photos` could go on without a code (the way back to their question)."""
    if photo_waits and analysis_left:
        way_out = ngettext(locale, "If you have no code, write 'continue' to go on with your photo.",
                           "If you have no code, write 'continue' to go on with your photos.", photos)
    elif photo_waits:
        way_out = ngettext(locale, "If you have no code, write 'cancel': nothing is sent or charged, and you can "
                                   "send the photo again when you have analyses left.",
                           "If you have no code, write 'cancel': nothing is sent or charged, and you can send the "
                           "photos again when you have analyses left.", photos)
    else:
        way_out = _(locale, "If you have no code, write 'menu' to go back to the menu.")
    return Reply(_(locale, "That does not look like a code: a code is written like AGRI-7KQ3-M9XP.") + " " + way_out)


def redeem(locale: str, view: RedeemView) -> Reply:
    if view.outcome in ("ok", "queued"):
        details = _(locale, "%(tier)s package from %(sponsor)s: %(daily)s analyses a day, %(monthly)s a month, "
                            "until %(end)s.", tier=tier_label(locale, view.tier_code or ""),
                    sponsor=view.sponsor_name or "ZiraAI",
                    daily=format_number(view.daily_limit or 0, locale),
                    monthly=format_number(view.monthly_limit or 0, locale),
                    end=format_date(view.ends_at, locale) if view.ends_at else "-")
        if view.outcome == "ok":
            return Reply(_(locale, "Code accepted! %(details)s", details=details))
        return Reply(_(locale, "Code accepted! It starts on %(date)s, when your current package ends. %(details)s",
                       date=format_date(view.starts_at, locale) if view.starts_at else "-", details=details))
    if view.outcome == "own_active":
        return Reply(_(locale, "You have already redeemed this code: it is yours and its %(tier)s package is active "
                               "until %(end)s.", tier=tier_label(locale, view.tier_code or ""),
                       end=format_date(view.ends_at, locale) if view.ends_at else "-"))
    if view.outcome == "own_queued":
        return Reply(_(locale, "You have already redeemed this code: it is yours and its %(tier)s package starts on "
                               "%(date)s.", tier=tier_label(locale, view.tier_code or ""),
                       date=format_date(view.starts_at, locale) if view.starts_at else "-"))
    if view.outcome == "own_ended":
        return Reply(_(locale, "You redeemed this code yourself; its package has ended. For more analyses, ask your "
                               "sponsor for a new code."))
    messages = {
        "unknown": N_("I could not find this code. Please check it and try again, letters and digits exactly as "
                      "written. If you have no code, write 'menu'."),
        "used": N_("This code has already been used. Each code works once; please ask your sponsor for a new one."),
        "expired": N_("This code has expired. Please ask your sponsor for a new one."),
        "revoked": N_("This code has been cancelled by its sponsor. Please ask your sponsor for a new one."),
    }
    if view.outcome == "not_now":
        return not_now(locale, view.starts_at, view.code_expires_at)
    return Reply(gettext(locale, messages.get(view.outcome, messages["unknown"])))


def not_now(locale: str, starts_at: datetime | None, code_expires_at: datetime | None) -> Reply:
    """A package is waiting to start already: the code can be redeemed once that one has started (`starts_at`),
    and only if it is still valid then; it may expire before, and the farmer must hear that, not "later"."""
    if starts_at is None or code_expires_at is None:
        return Reply(_(locale, "You already have a package waiting to start. You can redeem this code after it has "
                               "started, if the code is still valid then."))
    same_day = format_date(starts_at, locale) == format_date(code_expires_at, locale)
    fmt = format_datetime if same_day else format_date  # on one day, the hours tell which comes first
    start, expires = fmt(starts_at, locale), fmt(code_expires_at, locale)
    if code_expires_at > starts_at:
        return Reply(_(locale, "You already have a package waiting to start on %(start)s. You can redeem this code "
                               "from then on: it is valid until %(expires)s.", start=start, expires=expires))
    return Reply(_(locale, "You already have a package waiting to start on %(start)s, and this code expires on "
                           "%(expires)s, before that. So you cannot use this code before it expires; please contact "
                           "your sponsor about it.", start=start, expires=expires))


@dataclass(frozen=True)
class HistoryItem:
    analysis_id: int
    created_at: datetime
    crop: str
    status: str
    health_score: int | None


STATUS_NAMES = {
    "received": N_("waiting"),
    "queued": N_("in the queue"),
    "processing": N_("being analysed"),
    "completed": N_("done"),
    "failed": N_("failed"),
}


def history(locale: str, items: list[HistoryItem]) -> Reply:
    if not items:
        return Reply(_(locale, "You have no analyses yet. Send a photo of your plant to start."))
    rows = []
    for item in items[:5]:
        score = f"{item.health_score}/10" if item.health_score is not None else gettext(locale,
                                                                                         STATUS_NAMES[item.status])
        rows.append(ListRow(rid.HistoryPick(item.analysis_id), crop_name(locale, item.crop)[:24],
                            f"{format_date(item.created_at, locale)} · {score}"[:72]))
    return Reply(_(locale, "Your last analyses. Choose one to see its summary."), rows=tuple(rows),
                 list_button=_(locale, "Analyses"))


def analysis_summary(locale: str, item: HistoryItem | None, concern: str | None = None,
                     report_url: str | None = None, report_expires_at: datetime | None = None) -> Reply:
    """A past analysis from the history; a completed one offers its report and `Details`, as the result does."""
    if item is None:
        return Reply(_(locale, "I could not find that analysis."))
    lines = [_(locale, "Analysis of %(date)s: %(crop)s", date=format_date(item.created_at, locale),
               crop=crop_name(locale, item.crop)),
             _(locale, "Status: %(status)s", status=gettext(locale, STATUS_NAMES[item.status]))]
    if item.health_score is not None:
        lines.append(_(locale, "Health score: %(score)s/10", score=item.health_score))
    if concern:
        lines.append(_(locale, "Main problem: %(concern)s", concern=concern))
    if item.status != "completed":
        return Reply("\n".join(lines))
    if report_url:
        lines.append(_(locale, "Full report: %(url)s", url=report_url))
        if report_expires_at is not None:
            lines.append(_(locale, "The link works until %(date)s.", date=format_date(report_expires_at, locale)))
    return Reply("\n".join(lines), buttons=result_buttons(locale, item.analysis_id))


# --- language, opt-out, deletion --------------------------------------------------------------------


def ask_language(locale: str) -> Reply:
    return Reply("Dil seçin / Choose your language",
                 buttons=tuple(Button(rid.Language(code), name) for code, name in LANGUAGES.items()))


def language_set(locale: str) -> Reply:
    return Reply(_(locale, "Language changed: I will write to you in English."))


def opted_out(locale: str) -> Reply:
    return Reply(_(locale, "You will not receive any more notifications from us. You can still write to me at any "
                           "time. To receive them again, write 'START'."))


def already_opted_in(locale: str) -> Reply:
    return Reply(_(locale, "You are already receiving our messages. Write 'STOP' to stop them."))


def opted_in(locale: str) -> Reply:
    return Reply(_(locale, "Welcome back! You will receive notifications again. Write 'STOP' to stop them."))


def human_requested(locale: str) -> Reply:
    return Reply(_(locale, "A person from our support team will write to you here as soon as possible. Until then "
                           "you can keep using the menu."))


def deletion_requested(locale: str) -> Reply:
    return Reply(_(locale, "Your request to delete your data has been recorded. Our support team will complete it "
                           "and let you know."))


def data_deleted(locale: str) -> Reply:
    """The last message before the farmer's number is erased (services/deletion.py)."""
    return Reply(_(locale, "Your data has been deleted as you asked: your messages, photos and number. "
                           "If you write to us again, we will start afresh."))


# --- what to ask again after a help text or an unexpected message ------------------------------------


def reprompt(state: State, locale: str, data: ConversationData) -> tuple[Reply, ...]:
    """The question the farmer still has to answer in `state` (none when idle)."""
    if state in (State.START, State.AWAIT_CONSENT):
        return (privacy_notice(locale),)
    if state is State.AWAIT_PHOTO:
        return (ask_photo(locale),)
    if state is State.AWAIT_CROP:
        return (ask_crop(locale),)
    if state is State.AWAIT_CROP_TEXT:
        return (ask_crop_text(locale),)
    if state is State.AWAIT_LOCATION:
        return (ask_location(locale),)
    if state is State.CONFIRM and data.draft is not None:
        return (confirm(locale, data.draft),)
    if state is State.AWAIT_MORE_PHOTO and data.draft is not None:
        return (ask_more_photo(locale, data.draft.photo_count),)
    if state is State.AWAIT_CODE:
        return (ask_code(locale),)
    if state is State.AWAIT_LANGUAGE:
        return (ask_language(locale),)
    return ()


# --- analysis results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultView:
    """What the farmer sees of a completed analysis (values from N8N are already Turkish)."""

    analysis_id: int
    crop: str
    health_score: int | None
    primary_concern: str | None
    urgent: bool
    urgent_actions: tuple[str, ...]
    summary: str | None
    local_estimate: bool = False
    photos: int = 1  # how many photos the result rests on (an album: several)
    findings: tuple[str, ...] = ()  # diseases and pests, "name (severity)"
    nutrients: tuple[str, ...] = ()
    short_term: tuple[str, ...] = ()
    preventive: tuple[str, ...] = ()
    monitoring: tuple[str, ...] = ()
    # The farmer's report page and until when its link works; made by services/ (the bot signs nothing).
    report_url: str | None = None
    report_expires_at: datetime | None = None


def result_buttons(locale: str, analysis_id: int) -> tuple[Button, ...]:
    return (Button(rid.Details(analysis_id), _(locale, "Details")),
            Button(rid.NewAnalysis(), _(locale, "New analysis")),
            Button(rid.BackToMenu(), _(locale, "Menu")))


# A finding's severity as the chat names it, by its ranked level (`services.analysis_result.Severity`'s values):
# N8N may write it in English or Turkish, the farmer reads it in their own language.
SEVERITY_NAMES = {"critical": N_("critical"), "high": N_("high"), "medium": N_("medium"), "low": N_("low")}


def severity_name(locale: str, level: str) -> str | None:
    """`high` -> `yüksek` for a Turkish farmer; None for an unknown level (nothing is shown then)."""
    msgid = SEVERITY_NAMES.get(level)
    return gettext(locale, msgid) if msgid else None


RESULT_ACTIONS = 3  # immediate actions in the result's summary; `Detaylar` lists them all


def analysis_result(locale: str, view: ResultView) -> Reply:
    lines = []
    if view.urgent:
        lines.append(_(locale, "⚠️ URGENT: this needs action now."))
    lines.append(_(locale, "Your analysis is ready: %(crop)s", crop=crop_name(locale, view.crop)))
    if view.health_score is not None:
        lines.append(_(locale, "Health score: %(score)s/10", score=view.health_score))
    if view.primary_concern:
        lines.append(_(locale, "Main problem: %(concern)s", concern=view.primary_concern))
    if view.urgent_actions:
        lines.append(_(locale, "What to do first:"))
        lines.extend(f"{n}. {action}" for n, action in enumerate(view.urgent_actions[:RESULT_ACTIONS], 1))
    if view.summary:
        lines.append("")
        lines.append(view.summary)
    if view.local_estimate:  # said once, here: the local analyser's own summary does not repeat it
        lines.append(ngettext(locale, "Automatic local estimate from the photo's colours, not an expert diagnosis.",
                              "Automatic local estimate from the photos' colours, not an expert diagnosis.",
                              view.photos))
    text = "\n".join(lines)
    if len(text) > 1000:  # Meta's limit for a message with buttons is 1024 characters
        text = text[:997] + "..."
    return Reply(text, buttons=result_buttons(locale, view.analysis_id))


def analysis_details(locale: str, view: ResultView) -> list[Reply]:
    """The rest of the result in readable parts, one message per topic that has something to say. Every
    immediate action comes first: the result's summary shows only the first few (`RESULT_ACTIONS`), and one
    picked from the history none."""
    parts = []
    if view.urgent_actions:
        parts.append(_(locale, "What to do first:") + "\n"
                     + "\n".join(f"{n}. {action}" for n, action in enumerate(view.urgent_actions, 1)))
    if view.findings:
        parts.append(_(locale, "Diseases and pests:") + "\n" + "\n".join(f"• {f}" for f in view.findings))
    if view.nutrients:
        parts.append(_(locale, "Nutrients:") + "\n" + "\n".join(f"• {n}" for n in view.nutrients))
    if view.short_term:
        parts.append(_(locale, "In the coming days:") + "\n" + "\n".join(f"• {r}" for r in view.short_term))
    if view.preventive:
        parts.append(_(locale, "Prevention:") + "\n" + "\n".join(f"• {r}" for r in view.preventive))
    if view.monitoring:
        parts.append(_(locale, "Keep an eye on:") + "\n" + "\n".join(f"• {m}" for m in view.monitoring))
    if not parts and not view.report_url:
        parts.append(_(locale, "There are no further details for this analysis."))
    if view.report_url:
        link = _(locale, "Full report: %(url)s", url=view.report_url)
        if view.report_expires_at is not None:
            link += "\n" + _(locale, "The link works until %(date)s.", date=format_date(view.report_expires_at, locale))
        parts.append(link)
    return [Reply(p[:4000]) for p in parts]


def analysis_failed(locale: str, photo_problem: bool, photos: int = 1) -> Reply:
    """`photos`: how many the analysis had (an album is spoken of in the plural)."""
    if photo_problem:
        text = ngettext(locale, "I could not read your photo. Please send it again as a clear photo (JPEG or PNG, "
                                "under 5 MB). Nothing was charged for this one.",
                        "I could not read your photos. Please send them again as clear photos (JPEG or PNG, under "
                        "5 MB each). Nothing was charged for this analysis.", photos)
    else:
        text = ngettext(locale, "Sorry, the analysis could not be completed because of a problem on our side. "
                                "Nothing was charged; please send the photo again in a little while.",
                        "Sorry, the analysis could not be completed because of a problem on our side. Nothing was "
                        "charged; please send the photos again in a little while.", photos)
    return Reply(text)


def photos_left_out(locale: str, left_out: int, used: int) -> Reply:
    """Some photos of an album could not be used (too large, corrupt, not a photo): the result that follows is the
    others'. Which of those it was is not kept with the analysis, so both are named."""
    return Reply(ngettext(locale, "%(num)s of your photos could not be used (too large or unreadable), so the result "
                                  "below is based on the other photo.",
                          "%(num)s of your photos could not be used (too large or unreadable), so the result below "
                          "is based on the other %(used)s photos.", used,
                          num=format_number(left_out, locale), used=format_number(used, locale)))


def analysis_photo_unusable(locale: str, photos: int = 1) -> Reply:
    """The analyser could not judge the plant in the photo (none seen, blurred, dark): the same photo would
    fail again, so say what to photograph instead."""
    return Reply(ngettext(locale, "I could not see a plant clearly enough in your photo to analyse it. Please take a "
                                  "new photo of the affected leaves, fruit or stem from close up (about a hand's "
                                  "width away), in daylight and in focus, and send it. Nothing was charged for this "
                                  "one.",
                          "I could not see a plant clearly enough in your photos to analyse them. Please take new "
                          "photos of the affected leaves, fruit or stem from close up (about a hand's width away), "
                          "in daylight and in focus, and send them. Nothing was charged for this analysis.", photos))


def analysis_gave_up_waiting(locale: str, photos: int = 1) -> Reply:
    """The analysis service stayed unreachable for too long: the analysis was ended and refunded."""
    return Reply(ngettext(locale, "Sorry, our analysis service has been unavailable for a long time, so I could not "
                                  "analyse your photo. Nothing was charged. You can send the photo again whenever "
                                  "you like.",
                          "Sorry, our analysis service has been unavailable for a long time, so I could not analyse "
                          "your photos. Nothing was charged. You can send the photos again whenever you like.",
                          photos))


def analysis_delayed(locale: str) -> Reply:
    return Reply(_(locale, "Your analysis is taking longer than usual. It is still in progress and the result will "
                           "come here as soon as it is ready."))


def handling_failed(locale: str) -> Reply:
    return Reply(_(locale, "Sorry, something went wrong with your last message. Please send it again, or write "
                           "'menu' to start over."))


def no_result_yet(locale: str) -> Reply:
    return Reply(_(locale, "There is no completed analysis to show yet."))
