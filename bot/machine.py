"""The farmer's conversation as one table of (state, event kind) -> handler, with global intents
and fallbacks. Pure: it takes the conversation and an event and returns the next state and the
actions for the job to carry out; it reads no database and sends nothing.

Order of decisions for each event (see `step`):
1. an expired conversation starts again from the menu;
2. before consent only the privacy question, language and opt-out/in are possible; a photo or a
   question is kept and taken up right after consent;
3. global intents (menu, hello, thanks, cancel, help, quota, language, opt-out/in, data deletion,
   consent taken back), a photo (starts a submission, or joins the one in progress as an album), a
   sponsor code, a tapped `Gönder` of any pending submission;
4. the table for the current state;
5. the state's fallback: a hint of what is expected now, and the way out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from bot import codes, crops, intents, replies
from bot import reply_ids as rid
from bot.draft import MAX_PHOTOS, ConversationData, Draft
from bot.intents import Intent
from bot.normalize import fold
from bot.place import province_in, tidy_place
from bot.types import (
    Action,
    Conversation,
    Event,
    EventKind,
    ExplainNotPending,
    QuotaBlock,
    RecordConsent,
    RedeemCode,
    RequestDeletion,
    RequestHuman,
    Send,
    SetLocale,
    SetOptOut,
    ShowAnalysis,
    ShowDetails,
    ShowHistory,
    ShowQuota,
    State,
    Step,
    Submit,
)

IDLE_TIMEOUT = timedelta(minutes=30)
MAX_PENDING = 25  # submissions waiting for `Gönder`, kept so an older button still works
LOCATION_TEXT_MAX = 300  # a shared place's name and address, as the analysis keeps them

Handler = Callable[[Conversation, Event], Step]


def _step(conv: Conversation, state: State, *actions: Action, data: ConversationData | None = None) -> Step:
    return Step(state, conv.data if data is None else data, tuple(actions))


def _say(conv: Conversation, state: State, *reply_makers: replies.Reply, data: ConversationData | None = None,
         before: tuple[Action, ...] = ()) -> Step:
    return _step(conv, state, *before, *(Send(r) for r in reply_makers), data=data)


def _menu(conv: Conversation, *prefix: replies.Reply, locale: str | None = None,
          before: tuple[Action, ...] = ()) -> Step:
    loc = locale or conv.locale
    return _say(conv, State.MENU, *prefix, replies.menu(loc), data=conv.data.keep_pending(), before=before)


# --- consent ------------------------------------------------------------------------------------

# What a message written before consent may ask for once consent is given (the rest is a question: a photo
# is asked for, or a greeting: the menu).
REPLAYED_INTENTS = {Intent.QUOTA, Intent.HISTORY, Intent.ANALYZE, Intent.CODE}


def _held(conv: Conversation, event: Event) -> ConversationData:
    """A text before consent is kept (the latest one) to be answered once the farmer has accepted."""
    if event.kind is EventKind.TEXT and (event.text or "").strip():
        return replace(conv.data, held_text=(event.text or "").strip()[:1000])
    return conv.data


def ask_consent(conv: Conversation, event: Event) -> Step:
    return _say(conv, State.AWAIT_CONSENT, replies.privacy_notice(conv.locale), data=_held(conv, event))


def accepts_consent(event: Event) -> bool:
    """Is this event a yes to the privacy question (when one is open)? The caller reads whether accepting starts
    the Trial only for such events, so the welcome's look-up is not paid on every message before consent."""
    return event.reply == rid.Consent(True) or (event.kind is EventKind.TEXT and intents.is_yes(event.text))


def on_consent_reply(conv: Conversation, event: Event) -> Step:
    if accepts_consent(event):
        return _after_consent(conv, event)
    if event.reply == rid.Consent(False) or (event.kind is EventKind.TEXT and intents.is_no(event.text)):
        # Refusing forgets what was kept: the photo and the question are not processed.
        return _say(conv, State.START, replies.consent_refused(conv.locale), before=(RecordConsent(False),),
                    data=ConversationData())
    return _say(conv, State.AWAIT_CONSENT, replies.consent_hint(conv.locale), data=_held(conv, event))


def _after_consent(conv: Conversation, event: Event) -> Step:
    """The welcome, then what the farmer came for: the photo they sent, the question they wrote, or the menu."""
    welcome = replies.welcome(conv.locale, trial_started=conv.new_trial)
    given: tuple[Action, ...] = (RecordConsent(True),)
    consented = replace(conv, consented=True, state=State.MENU, data=ConversationData(pending=conv.data.pending))
    held = conv.data.held_text
    if conv.data.draft is not None:
        draft = _with_note(conv.data.draft, held)
        code = held if held and codes.looks_like_code(held) else _code_line(draft.notes)
        if code is not None:  # redeemed now, as typed after consent; `after_redeem` takes the photos on
            draft = replace(draft, notes=_without_code_lines(draft.notes))
            return _step(consented, State.AWAIT_CODE, *given, Send(welcome), RedeemCode(code),
                         data=replace(consented.data, draft=draft))
        return _continue(replace(consented, data=replace(consented.data, draft=draft)), draft,
                         welcome, replies.photo_kept(conv.locale, draft.photo_count), before=given)
    if held:
        intent = intents.match(held)
        if intent in REPLAYED_INTENTS or (intent is None and codes.looks_like_code(held)):
            result = _decide(consented, Event(EventKind.TEXT, event.message_id, text=held))
            return Step(result.state, result.data, (*given, Send(welcome), *result.actions))
        if intent is None:  # a question: it is answered from a photo
            return _say(consented, State.AWAIT_PHOTO, welcome, replies.ask_photo(conv.locale), before=given)
    return _menu(consented, welcome, before=given)


def _code_line(notes: str | None) -> str | None:
    """The caption (a line of the note) that carries a code, kept before consent."""
    return next((line for line in (notes or "").split("\n") if codes.looks_like_code(line)), None)


def _without_code_lines(notes: str | None) -> str | None:
    """The note with its captions' codes taken out (what is left of each caption stays)."""
    lines = (codes.without_code(line) if codes.looks_like_code(line) else line for line in (notes or "").split("\n"))
    return "\n".join(line for line in lines if line) or None


def _with_note(draft: Draft, held: str | None) -> Draft:
    """A question written with the photos before consent (`domatesimde lekeler var ne yapmalıyım`) is about
    them: it counts as a caption would (the note, and the crop if it names one). A command or a code does not."""
    if not held or intents.match(held) is not None or codes.looks_like_code(held):
        return draft
    return replace(draft, notes=f"{draft.notes}\n{held}" if draft.notes else held,
                   crop=draft.crop or crops.find_crop(held))


def on_consent_again(conv: Conversation, event: Event) -> Step:
    """A privacy button tapped once consent is given. `Kabul etmiyorum` takes consent back. `Kabul ediyorum`
    (a double tap, or typed then tapped) is harmless: the open question comes again and what was kept goes on;
    with none open, the menu."""
    if event.reply == rid.Consent(False):
        return withdraw_consent(conv, event)
    again = replies.reprompt(conv.state, conv.locale, conv.data)
    return _say(conv, conv.state, *again) if again else _menu(conv)


def withdraw_consent(conv: Conversation, event: Event) -> Step:
    """Consent taken back (`Kabul etmiyorum` tapped on the notice, or written, after accepting): nothing more is
    processed (as after a refusal: the conversation forgets its drafts and starts from the notice) and we write
    first no more (as after `DUR`). Nothing is deleted by this: the reply says how to ask for that
    (`verilerimi sil`, honoured in every state)."""
    return _say(conv, State.START, replies.consent_withdrawn(conv.locale),
                before=(RecordConsent(False), SetOptOut(True)), data=ConversationData())


def _hold_photo(conv: Conversation, event: Event) -> Step:
    """A photo before consent waits in the draft (an album too, up to `MAX_PHOTOS`); only the privacy question
    is answered, once for the album."""
    current = conv.data.draft
    if current is not None and current.has_photo(event.message_id):
        return _step(conv, conv.state)
    if current is None:
        draft = Draft(event.message_id, media_id=event.media_id, notes=event.text,
                      crop=crops.find_crop(event.text), first_at=event.sent_at)
        return _say(conv, State.AWAIT_CONSENT, replies.privacy_notice(conv.locale),
                    data=replace(conv.data, draft=draft))
    in_window = _in_album_window(conv, current, event)
    if current.photo_count < MAX_PHOTOS:
        data = replace(conv.data, draft=_with_photo(current, event))
        if in_window:  # kept quietly: the notice was given for the album
            return _step(conv, State.AWAIT_CONSENT, data=data)
        return _say(conv, State.AWAIT_CONSENT, replies.privacy_notice(conv.locale), data=data)
    # Beyond a full album: not kept. The farmer hears the limit, and the photo opens a window of its own (as
    # after consent, where it would start a new submission): the rest of its album is not answered again; a
    # photo sent later hears the notice again too.
    if in_window and current.limit_said:
        return _step(conv, State.AWAIT_CONSENT)
    notice = () if in_window else (replies.privacy_notice(conv.locale),)
    held = replace(current, limit_said=True, first_at=event.sent_at or current.first_at)
    return _say(conv, State.AWAIT_CONSENT, replies.photo_limit_kept(conv.locale), *notice,
                data=replace(conv.data, draft=held))


# --- menu ---------------------------------------------------------------------------------------

MENU_CHOICES = {str(n): rid.Menu(choice) for n, choice in enumerate(rid.MenuChoice, 1)}  # the list's numbers


def on_menu_choice(conv: Conversation, event: Event) -> Step:
    choice = event.reply or MENU_CHOICES.get((event.text or "").strip().rstrip(".)"))
    match choice:
        case rid.Menu(choice=rid.MenuChoice.ANALYZE) | rid.NewAnalysis():
            return _say(conv, State.AWAIT_PHOTO, replies.ask_photo(conv.locale), data=conv.data.keep_pending())
        case rid.Menu(choice=rid.MenuChoice.QUOTA):
            return _step(conv, State.MENU, ShowQuota())
        case rid.Menu(choice=rid.MenuChoice.CODE):
            return ask_code(conv, event)
        case rid.Menu(choice=rid.MenuChoice.HISTORY):
            return _step(conv, State.HISTORY, ShowHistory(), data=conv.data.keep_pending())
        case rid.Menu(choice=rid.MenuChoice.HELP):
            return _say(conv, State.MENU, replies.help_text(conv.locale))
        case rid.Menu(choice=rid.MenuChoice.LANGUAGE):
            return choose_language(conv, event)
        case rid.Details(analysis_id=analysis_id):  # None: a template's button, the latest result
            return _step(conv, conv.state, ShowDetails(analysis_id))
        case rid.BackToMenu():
            return _menu(conv)
    return fallback(conv, event)


def menu_fallback(conv: Conversation, event: Event) -> Step:
    return _menu(conv, replies.not_understood(conv.locale))


# --- submission: photo(s) -> crop -> location -> confirm -------------------------------------------

# While the farmer is asked about a submission (before its confirmation), a photo joins it as the album's next.
ALBUM_STATES = {State.AWAIT_CROP, State.AWAIT_CROP_TEXT, State.AWAIT_LOCATION, State.AWAIT_MORE_PHOTO,
                State.AWAIT_CODE}
SUBMISSION_STATES = ALBUM_STATES | {State.CONFIRM}  # a draft is in progress: a code keeps it


def _in_album_window(conv: Conversation, draft: Draft, event: Event) -> bool:
    if draft.first_at is None or event.sent_at is None:
        return False
    return timedelta(0) <= event.sent_at - draft.first_at <= conv.album_window


def on_photo(conv: Conversation, event: Event) -> Step:
    """A photo joins the submission in progress (an album, up to `MAX_PHOTOS`) when it comes within the album
    window of the first or before the confirmation; otherwise it starts a new submission. A full album is kept
    whole (`_album_full`)."""
    current = conv.data.draft
    if current is not None and current.has_photo(event.message_id):
        return _step(conv, conv.state)  # the same photo again: nothing new
    if current is not None and (conv.state in ALBUM_STATES or _in_album_window(conv, current, event)):
        if current.photo_count >= MAX_PHOTOS:
            return _album_full(conv, current, event)
        if codes.looks_like_code(event.text) or (conv.state is State.AWAIT_CODE and codes.is_code_attempt(event.text)):
            return _add_photo_with_code(conv, current, event)
        return _add_photo(conv, current, event)
    return _new_submission(conv, event)


def _new_submission(conv: Conversation, event: Event, *before: Action) -> Step:
    """A caption naming a crop skips a question; with no analysis left, the photo waits for a code. A code in the
    caption is redeemed as if typed, whatever the quota (the rest of the caption is the caption): the photo waits
    for the redemption's outcome, and `after_redeem` takes it on to its question when an analysis is possible."""
    code_in_caption = codes.looks_like_code(event.text)
    caption = codes.without_code(event.text or "") or None if code_in_caption else event.text
    crop = crops.find_crop(caption)
    draft = Draft(event.message_id, media_id=event.media_id, notes=caption, crop=crop, first_at=event.sent_at)
    data = replace(conv.data.keep_pending(), draft=draft)
    if code_in_caption:
        return _step(conv, State.AWAIT_CODE, *before, RedeemCode(event.text or ""), data=data)
    if event.quota is not None and not event.quota.code_helps:
        return _no_analysis_now(conv, event.quota, data, before)
    if event.quota is not None:
        return _say(conv, State.AWAIT_CODE, replies.quota_wait(conv.locale, event.quota), data=data, before=before)
    if crop:
        return _say(conv, State.AWAIT_LOCATION, replies.photo_received_with_crop(conv.locale, crop),
                    replies.ask_location(conv.locale), data=data, before=before)
    return _say(conv, State.AWAIT_CROP, replies.ask_crop(conv.locale), data=data, before=before)


def _album_full(conv: Conversation, current: Draft, event: Event) -> Step:
    """A photo beyond a full album is not added, and the album is kept: starting again with this photo would lose
    five photos and the answers given for them. The farmer hears it once for a burst (`limit_said`, the photo
    opening a window of its own, as before consent), and the open question again."""
    in_window = _in_album_window(conv, current, event)
    if in_window and current.limit_said:
        return _step(conv, conv.state)
    held = replace(current, limit_said=True, first_at=event.sent_at or current.first_at)
    data = replace(conv.data, draft=held)
    if conv.data.pending_draft(held.photo_message_id) is not None:
        data = data.with_pending(held, MAX_PENDING)
    return _say(conv, conv.state, replies.photo_not_added(conv.locale),
                *replies.reprompt(conv.state, conv.locale, data), data=data)


def _no_analysis_now(conv: Conversation, quota: QuotaBlock, data: ConversationData,
                     before: tuple[Action, ...] = (), photos: int = 1) -> Step:
    """No analysis left and a code would only be queued: nothing to wait for. Say when analyses come back,
    and the menu (the `photos` do not wait; a confirmed submission keeps its `Gönder`)."""
    return _say(conv, State.MENU, replies.quota_wait(conv.locale, quota, photos), replies.menu(conv.locale),
                data=data.keep_pending(), before=before)


def _add_photo(conv: Conversation, current: Draft, event: Event) -> Step:
    """An album's next photo. Within the window it joins quietly (the question was asked once); later, the
    farmer hears it was added. The first photo after `Fotoğraf ekle` brings the confirmation again and opens a
    window of its own, so the rest of its album joins too, quietly: one confirmation for the burst (its
    `Gönder` carries the count it showed, see `_submit`)."""
    joined = _with_photo(current, event)
    if conv.state is State.AWAIT_MORE_PHOTO:  # the first photo after `Fotoğraf ekle`: an album may follow it
        joined = replace(joined, first_at=event.sent_at)
    data = replace(conv.data, draft=joined)
    if conv.data.pending_draft(joined.photo_message_id) is not None:
        data = data.with_pending(joined, MAX_PENDING)
    if conv.state is State.AWAIT_MORE_PHOTO:
        return _say(conv, State.CONFIRM, replies.confirm(conv.locale, joined), data=data)
    if conv.state in (State.AWAIT_CROP, State.AWAIT_CROP_TEXT) and joined.crop:  # its caption named the crop
        return _say(conv, State.AWAIT_LOCATION, replies.photo_received_with_crop(conv.locale, joined.crop),
                    replies.ask_location(conv.locale), data=data)
    if _in_album_window(conv, current, event):
        return _step(conv, conv.state, data=data)
    if conv.state is State.CONFIRM:
        return _say(conv, State.CONFIRM, replies.confirm(conv.locale, joined), data=data)
    return _say(conv, conv.state, replies.photo_added(conv.locale, joined.photo_count), data=data)


def _add_photo_with_code(conv: Conversation, current: Draft, event: Event) -> Step:
    """An album's next photo whose caption carries a code (or, while a code is awaited, is a code attempt): the
    photo joins, and the code is redeemed as typed text would be (the rest of the caption counts as a caption);
    the job then asks `after_redeem` what comes next (the open question again, or, waiting for a code, whether the
    submission goes on). The first photo after `Fotoğraf ekle` leads to the confirmation, as without a code."""
    joined = _with_photo(current, replace(event, text=codes.without_code(event.text or "")))
    state = conv.state
    if state is State.AWAIT_MORE_PHOTO:
        joined, state = replace(joined, first_at=event.sent_at), State.CONFIRM
    data = replace(conv.data, draft=joined)
    if conv.data.pending_draft(joined.photo_message_id) is not None:
        data = data.with_pending(joined, MAX_PENDING)
    return _step(conv, state, RedeemCode(event.text or ""), data=data)


def _with_photo(current: Draft, event: Event) -> Draft:
    """An album's next photo with its caption, which counts as the first photo's does: it is added to the
    note, and names the crop unless one is known already."""
    joined = current.with_photo(event.message_id, event.media_id)
    caption = (event.text or "").strip()
    if not caption:
        return joined
    return replace(joined, notes=f"{current.notes}\n{caption}" if current.notes else caption,
                   crop=current.crop or crops.find_crop(caption))


def _continue(conv: Conversation, draft: Draft, *prefix: replies.Reply, before: tuple[Action, ...] = ()) -> Step:
    """A submission that waited (for consent, or for a code) goes on at its next question."""
    data = replace(conv.data, draft=draft, held_text=None)
    if conv.data.pending_draft(draft.photo_message_id) is not None:  # confirmed already: only `Gönder` is left
        return _say(conv, State.CONFIRM, *prefix, replies.confirm(conv.locale, draft), data=data, before=before)
    if draft.crop:
        return _say(conv, State.AWAIT_LOCATION, *prefix, replies.ask_location(conv.locale), data=data, before=before)
    return _say(conv, State.AWAIT_CROP, *prefix, replies.ask_crop(conv.locale), data=data, before=before)


def _not_pending(conv: Conversation, photo_message_id: int, photos: int = 1) -> Step:
    """A confirmation's button whose submission no longer waits: it timed out unsent (said on every tap), or it
    was sent or cancelled. `photos`: how many its confirmation showed, when the button says (`Gönder` does)."""
    if photo_message_id in conv.data.lapsed:
        return _step(conv, conv.state, Send(replies.confirmation_expired(conv.locale, photos)))
    return _step(conv, conv.state, ExplainNotPending(photo_message_id))


def on_add_photo(conv: Conversation, event: Event) -> Step:
    """`Fotoğraf ekle` under a confirmation: the next photo joins that submission. A full one says why no photo
    can join, with its confirmation."""
    if not isinstance(event.reply, rid.AddPhoto):
        return fallback(conv, event)
    pending = conv.data.pending_draft(event.reply.photo_message_id)
    if pending is None:
        return _not_pending(conv, event.reply.photo_message_id)
    data = replace(conv.data, draft=pending)
    if pending.photo_count >= MAX_PHOTOS:
        return _say(conv, State.CONFIRM, replies.album_full(conv.locale), replies.confirm(conv.locale, pending),
                    data=data)
    return _say(conv, State.AWAIT_MORE_PHOTO, replies.ask_more_photo(conv.locale, pending.photo_count), data=data)


def on_crop(conv: Conversation, event: Event) -> Step:
    if event.reply == rid.Crop(crops.OTHER):
        return _say(conv, State.AWAIT_CROP_TEXT, replies.ask_crop_text(conv.locale))
    crop = event.reply.key if isinstance(event.reply, rid.Crop) else crops.find_crop(event.text)
    if crop and crops.display_name(crop) is not None:
        return _with_crop(conv, crop)
    if event.kind is EventKind.TEXT and _crop_name(event.text):  # a crop the list does not have, as `Diğer` takes it
        return _with_crop(conv, (event.text or "").strip())
    return _say(conv, State.AWAIT_CROP, replies.crop_hint(conv.locale), replies.ask_crop(conv.locale))


def _crop_name(text: str | None) -> bool:
    return crops.looks_like_name(text) and not intents.is_small_talk(text)


def on_crop_text(conv: Conversation, event: Event) -> Step:
    """After `Diğer`: a known crop named (or its emoji), or a short name as the crop question takes it; a number,
    an emoji or a sentence hears an example."""
    crop = crops.find_crop(event.text)
    if crop:
        return _with_crop(conv, crop)
    if _crop_name(event.text):
        return _with_crop(conv, (event.text or "").strip())
    return _say(conv, State.AWAIT_CROP_TEXT, replies.crop_text_hint(conv.locale))


def _with_crop(conv: Conversation, crop: str) -> Step:
    if conv.data.draft is None:  # a question without its photo (a row left half-way): start again
        return _menu(conv)
    data = replace(conv.data, draft=replace(conv.data.draft, crop=crop))
    return _say(conv, State.AWAIT_LOCATION, replies.ask_location(conv.locale), data=data)


def on_location(conv: Conversation, event: Event) -> Step:
    draft = conv.data.draft
    if draft is None:  # a question without its photo (a row left half-way): start again
        return _menu(conv)
    if event.kind is EventKind.LOCATION:
        place = tidy_place(event.location_name, event.location_address)
        draft = replace(draft, latitude=event.latitude, longitude=event.longitude,
                        location_text=place[:LOCATION_TEXT_MAX] or None)
    elif event.reply == rid.SkipLocation() or intents.is_skip(event.text) or intents.is_continue(event.text):
        draft = replace(draft, latitude=None, longitude=None, location_text=None)
    elif event.kind is EventKind.TEXT and event.text and len(event.text.strip()) <= 100 and _place_text(event.text):
        draft = replace(draft, latitude=None, longitude=None, location_text=event.text.strip())
    else:
        return _say(conv, State.AWAIT_LOCATION, replies.location_hint(conv.locale), replies.ask_location(conv.locale))
    data = replace(conv.data.with_pending(draft, MAX_PENDING), draft=draft)
    return _say(conv, State.CONFIRM, replies.confirm(conv.locale, draft), data=data)


def _place_text(text: str) -> bool:
    """Could the farmer mean a place? A province named (`Konya`, `Of, Trabzon`), or at least three letters that
    are neither a word of conversation (`slm`, `evet`, `teşekkürler`) nor a sentence (`bunlar aynı bitki`,
    `yapraklar neden sarardı`); an emoji or a number alone is not a place."""
    if province_in(text):
        return True
    return (sum(c.isalpha() for c in text) >= 3 and not intents.is_small_talk(text)
            and not intents.is_sentence(text))


def on_confirm_text(conv: Conversation, event: Event) -> Step:
    """Words at the confirmation, which asks whether to send: a yes (`evet`, `tamam`, `gönder`, `devam`) sends as
    its `Gönder` does, a no (`hayır`) cancels as its `İptal` does."""
    draft = conv.data.draft
    if draft is not None and (intents.is_yes(event.text) or intents.is_continue(event.text)):
        return _submit(conv, draft.photo_message_id)
    if intents.is_no(event.text):
        return cancel(conv, event)
    return _say(conv, State.CONFIRM, replies.confirm_hint(conv.locale, draft.photo_count if draft else 1))


def on_more_photo_text(conv: Conversation, event: Event) -> Step:
    """Words after `Fotoğraf ekle`, where the photo is awaited, not an answer to "send it?": `tamam`, `evet`
    ("I will send one") hear how to go on, with the confirmation's buttons, and send nothing; `hayır`, `yok`,
    `vazgeçtim ekleme` ("no more photos") bring the confirmation again. Only the button's own word, `gönder`
    typed, sends (`iptal` cancels, as anywhere)."""
    draft = conv.data.draft
    if draft is None:
        return fallback(conv, event)
    if intents.is_send(event.text):
        return _submit(conv, draft.photo_message_id)
    if intents.is_no_more(event.text):
        return _say(conv, State.CONFIRM, replies.confirm(conv.locale, draft))
    return _say(conv, State.AWAIT_MORE_PHOTO, replies.more_photo_hint(conv.locale, draft))


def on_send_button(conv: Conversation, event: Event) -> Step:
    """The `Gönder` of a confirmation: works for any submission still waiting, from any state. One that is no
    longer waiting: the job says whether it was sent (and how far it got) or never sent (`ExplainNotPending`).
    One whose album changed since that confirmation was shown (photos joined after it) is not sent unseen: the
    confirmation comes again with the photos it has now."""
    if not isinstance(event.reply, rid.SendPending):
        return fallback(conv, event)
    number, shown = event.reply.photo_message_id, event.reply.photo_count
    draft = conv.data.pending_draft(number)
    if draft is None:
        return _not_pending(conv, number, shown or 1)
    if shown is not None and shown != draft.photo_count:
        return _say(conv, conv.state, replies.album_changed(conv.locale, draft.photo_count),
                    replies.confirm(conv.locale, draft))
    return _submit(conv, number)


def _submit(conv: Conversation, photo_message_id: int) -> Step:
    draft = conv.data.pending_draft(photo_message_id)
    if draft is None:
        return _not_pending(conv, photo_message_id)
    current = conv.data.draft
    data = conv.data.without_pending(photo_message_id).keep_pending()
    if current is not None and current.photo_message_id != photo_message_id and conv.state is not State.CONFIRM:
        data = replace(data, draft=current)  # a tap on an older button does not lose the flow in progress
    submit = Submit(
        photo_message_id=photo_message_id,
        media_id=draft.media_id,
        crop=draft.crop,
        notes=draft.notes,
        location_text=draft.location_text,
        latitude=draft.latitude,
        longitude=draft.longitude,
        media_ids=draft.media_ids,
        draft=draft,
    )
    state = conv.state if data.draft is not None else State.MENU
    return Step(state, data, (submit,))


def charge_refused(conv: Conversation, refused: Draft, quota: QuotaBlock) -> Step:
    """After the job found no analysis left at `Gönder`: the submission waits again (its `Gönder` keeps
    working) and, unless another one is in progress, for a code."""
    data = conv.data.with_pending(refused, MAX_PENDING)
    if conv.data.draft is not None and conv.data.draft.photo_message_id != refused.photo_message_id:
        return _say(conv, conv.state, replies.quota_exhausted(conv.locale, quota), data=data)
    if not quota.code_helps:
        return _no_analysis_now(conv, quota, data, photos=refused.photo_count)
    return _say(conv, State.AWAIT_CODE, replies.quota_wait(conv.locale, quota, refused.photo_count),
                data=replace(data, draft=refused))


def after_redeem(conv: Conversation, quota: QuotaBlock | None) -> Step:
    """After the job redeemed a code: a photo waiting for one goes on if an analysis is possible now; a
    question the code interrupted is asked again. `quota`: what blocks a charge now (None: nothing)."""
    draft = conv.data.draft
    if draft is None:
        return _step(conv, conv.state)
    if conv.state is State.AWAIT_CODE:
        if quota is not None and not quota.code_helps:  # the code was queued: it cannot help this photo today
            return _no_analysis_now(conv, quota, conv.data, photos=draft.photo_count)
        if quota is not None:
            return _step(conv, conv.state)  # the code's answer said why; the photo still waits
        return _continue(conv, draft, replies.photo_kept(conv.locale, draft.photo_count))
    return _say(conv, conv.state, *replies.reprompt(conv.state, conv.locale, conv.data))


# --- codes, history, language ------------------------------------------------------------------


def ask_code(conv: Conversation, event: Event) -> Step:
    """`Kod kullan`: a submission in progress (or a photo waiting for a code) waits for the code and goes on
    after it, as when the code is typed straight away."""
    keeps = conv.data.draft is not None and conv.state in SUBMISSION_STATES
    return _say(conv, State.AWAIT_CODE, replies.ask_code(conv.locale),
                data=conv.data if keeps else conv.data.keep_pending())


def on_code_text(conv: Conversation, event: Event) -> Step:
    """While a code is awaited, what is shaped like one is tried; words (`kodum yok`, `tamam`) hear the way out.
    A submission waiting here while an analysis is possible (`kod` typed at one of its questions; the job looks the
    quota up) goes back to its question at `devam`, `yok`, `Geç` (its old button too): the code was optional."""
    text = (event.text or "").strip()
    if event.kind is EventKind.TEXT and not text:
        return _say(conv, State.AWAIT_CODE, replies.ask_code(conv.locale))
    if event.kind is EventKind.TEXT and codes.is_code_attempt(text):
        return _redeem(conv, text)
    draft = conv.data.draft
    analysis_left = draft is not None and event.quota is None
    going_on = (event.reply == rid.SkipLocation() or intents.is_continue(text) or intents.is_skip(text)
                or intents.is_no(text))
    if draft is not None and analysis_left and going_on:
        return _continue(conv, draft, replies.photo_kept(conv.locale, draft.photo_count))
    return _say(conv, State.AWAIT_CODE, replies.not_a_code(conv.locale, photo_waits=draft is not None,
                                                           analysis_left=analysis_left,
                                                           photos=draft.photo_count if draft else 1))


def _redeem(conv: Conversation, text: str) -> Step:
    """A submission in progress (or waiting for this code) stays; the job asks `after_redeem` what next."""
    if conv.data.draft is not None and conv.state in SUBMISSION_STATES:
        return _step(conv, conv.state, RedeemCode(text))
    return _step(conv, State.MENU, RedeemCode(text), data=conv.data.keep_pending())


def on_history_choice(conv: Conversation, event: Event) -> Step:
    if isinstance(event.reply, rid.HistoryPick):
        return _step(conv, State.MENU, ShowAnalysis(event.reply.analysis_id), data=conv.data.keep_pending())
    return on_menu_choice(conv, event)


def on_language_choice(conv: Conversation, event: Event) -> Step:
    if event.reply is None:
        choice = _language_from_text(event.text)
    else:
        choice = event.reply.code if isinstance(event.reply, rid.Language) else ""
    if choice not in replies.LANGUAGES:
        return _say(conv, State.AWAIT_LANGUAGE, replies.ask_language(conv.locale))
    again = replies.reprompt(conv.state, choice, conv.data) if conv.state is not State.AWAIT_LANGUAGE else ()
    if again:  # a question was open (the photos of a submission too): it stays open, asked in the new language
        return _say(conv, conv.state, replies.language_set(choice), *again, before=(SetLocale(choice),))
    return _menu(conv, replies.language_set(choice), locale=choice, before=(SetLocale(choice),))


def _language_from_text(text: str | None) -> str:
    folded = fold(text)
    if folded in {"turkce", "turkish", "tr", "1"}:
        return "tr"
    if folded in {"english", "ingilizce", "en", "2"}:
        return "en"
    return ""


# --- global intents ----------------------------------------------------------------------------


def cancel(conv: Conversation, event: Event) -> Step:
    """The submission in progress is dropped, and so is its `Gönder`: an older confirmation cannot send it."""
    current = conv.data.draft
    if current is None and conv.state in (State.MENU, State.HISTORY):
        return _menu(conv, replies.nothing_to_cancel(conv.locale))
    if current is not None:
        conv = replace(conv, data=conv.data.without_pending(current.photo_message_id))
    return _menu(conv, replies.cancelled(conv.locale))


def on_cancel_button(conv: Conversation, event: Event) -> Step:
    """The `İptal` of a confirmation cancels that submission, whichever confirmation it was; one in progress
    that it does not name goes on."""
    if not isinstance(event.reply, rid.CancelConfirm):
        return fallback(conv, event)
    number = event.reply.photo_message_id
    current = conv.data.draft
    if number is None or (current is not None and current.photo_message_id == number):
        return cancel(conv, event)
    if conv.data.pending_draft(number) is None:
        return _not_pending(conv, number)
    return _say(conv, conv.state, replies.cancelled(conv.locale), *replies.reprompt(conv.state, conv.locale, conv.data),
                data=conv.data.without_pending(number))


def opt_in(conv: Conversation, event: Event) -> Step:
    if not conv.opted_out:
        return _say(conv, conv.state, replies.already_opted_in(conv.locale))
    return _say(conv, conv.state, replies.opted_in(conv.locale), before=(SetOptOut(False),))


def show_help(conv: Conversation, event: Event) -> Step:
    return _say(conv, conv.state, replies.help_text(conv.locale), *replies.reprompt(conv.state, conv.locale, conv.data))


def to_menu(conv: Conversation, event: Event) -> Step:
    """`menü`: the menu. A submission in progress that is not yet waiting for its `Gönder` is dropped: say so."""
    draft = conv.data.draft
    if draft is not None and conv.state in SUBMISSION_STATES and not conv.data.pending_draft(draft.photo_message_id):
        return _menu(conv, replies.submission_dropped(conv.locale))
    return _menu(conv)


def greet(conv: Conversation, event: Event) -> Step:
    """`Merhaba`, `slm`, 👋: the menu; in the middle of a submission, a hello back and its question again (the
    photos are kept; `iptal` drops them)."""
    if conv.data.draft is not None and conv.state in SUBMISSION_STATES:
        return _say(conv, conv.state, replies.hello_mid_submission(conv.locale),
                    *replies.reprompt(conv.state, conv.locale, conv.data))
    return _menu(conv)


def thank(conv: Conversation, event: Event) -> Step:
    """`Teşekkürler`, `sağol`, 🙏: a kind word, and the open question again if there is one."""
    return _say(conv, conv.state, replies.you_are_welcome(conv.locale),
                *replies.reprompt(conv.state, conv.locale, conv.data))


def choose_language(conv: Conversation, event: Event) -> Step:
    """`dil`: the language question; `Türkçe`, `English` typed: that language at once (asking would be a loop).
    With a question open, its buttons come and the question stays open: a tap switches and asks it again."""
    if _language_from_text(event.text):
        return on_language_choice(conv, event)
    if conv.state is not State.AWAIT_LANGUAGE and replies.reprompt(conv.state, conv.locale, conv.data):
        return _say(conv, conv.state, replies.ask_language(conv.locale))
    return _say(conv, State.AWAIT_LANGUAGE, replies.ask_language(conv.locale), data=conv.data.keep_pending())


GLOBAL: dict[Intent, Handler] = {
    Intent.MENU: to_menu,
    Intent.GREETING: greet,
    Intent.THANKS: thank,
    Intent.CANCEL: cancel,
    Intent.HELP: show_help,
    Intent.QUOTA: lambda conv, event: _step(conv, conv.state, ShowQuota()),
    Intent.LANGUAGE: choose_language,
    Intent.OPT_OUT: lambda conv, event: _say(conv, conv.state, replies.opted_out(conv.locale),
                                             before=(SetOptOut(True),)),
    Intent.OPT_IN: opt_in,
    Intent.DELETE_DATA: lambda conv, event: _say(conv, conv.state, replies.deletion_requested(conv.locale),
                                                 before=(RequestDeletion(),)),
    Intent.WITHDRAW_CONSENT: withdraw_consent,
    Intent.HUMAN: lambda conv, event: _say(conv, conv.state, replies.human_requested(conv.locale),
                                           before=(RequestHuman(),)),
    Intent.HISTORY: lambda conv, event: _step(conv, State.HISTORY, ShowHistory(), data=conv.data.keep_pending()),
    Intent.ANALYZE: lambda conv, event: _say(conv, State.AWAIT_PHOTO, replies.ask_photo(conv.locale),
                                             data=conv.data.keep_pending()),
    Intent.CODE: ask_code,
}


def unsupported(conv: Conversation, event: Event) -> Step:
    return _say(conv, conv.state, replies.unsupported(conv.locale, event.message_type, event.quota is not None),
                *replies.reprompt(conv.state, conv.locale, conv.data))


# --- the table -----------------------------------------------------------------------------------

TABLE: dict[tuple[State, EventKind], Handler] = {
    (State.START, EventKind.TEXT): ask_consent,
    (State.START, EventKind.REPLY): on_consent_reply,
    (State.AWAIT_CONSENT, EventKind.TEXT): on_consent_reply,
    (State.AWAIT_CONSENT, EventKind.REPLY): on_consent_reply,
    (State.MENU, EventKind.TEXT): on_menu_choice,
    (State.MENU, EventKind.REPLY): on_menu_choice,
    (State.AWAIT_CROP, EventKind.TEXT): on_crop,
    (State.AWAIT_CROP, EventKind.REPLY): on_crop,
    (State.AWAIT_CROP_TEXT, EventKind.TEXT): on_crop_text,
    (State.AWAIT_LOCATION, EventKind.TEXT): on_location,
    (State.AWAIT_LOCATION, EventKind.REPLY): on_location,
    (State.AWAIT_LOCATION, EventKind.LOCATION): on_location,
    (State.CONFIRM, EventKind.TEXT): on_confirm_text,
    (State.AWAIT_MORE_PHOTO, EventKind.TEXT): on_more_photo_text,
    (State.AWAIT_CODE, EventKind.TEXT): on_code_text,
    (State.AWAIT_CODE, EventKind.REPLY): on_code_text,
    (State.HISTORY, EventKind.REPLY): on_history_choice,
    (State.HISTORY, EventKind.TEXT): on_menu_choice,
    (State.AWAIT_LANGUAGE, EventKind.TEXT): on_language_choice,
    (State.AWAIT_LANGUAGE, EventKind.REPLY): on_language_choice,
}


def fallback(conv: Conversation, event: Event) -> Step:
    """Anything the state does not expect: a short hint of what is expected now, and the way out. `devam`
    ("go on") where there is nothing to go on with: the open question again, or the menu."""
    if event.kind is EventKind.TEXT and intents.is_continue(event.text):
        again = replies.reprompt(conv.state, conv.locale, conv.data)
        return _say(conv, conv.state, *again) if again else _menu(conv)
    if conv.data.draft is None and _answers_a_submission(event):  # our own old button: say what to do instead
        again = replies.reprompt(conv.state, conv.locale, conv.data)
        return (_say(conv, conv.state, replies.nothing_in_progress(conv.locale), *again) if again
                else _menu(conv, replies.nothing_in_progress(conv.locale)))
    if conv.state in (State.MENU, State.HISTORY):
        return menu_fallback(conv, event)
    return _say(conv, conv.state, replies.not_understood(conv.locale),
                *replies.reprompt(conv.state, conv.locale, conv.data))


def step(conv: Conversation, event: Event, now: datetime) -> Step:
    """Decide what happens with one message. The caller stores `Step.state`/`data` and runs the actions."""
    if conv.consented and conv.expires_at is not None and now >= conv.expires_at:
        return _after_timeout(conv, event)
    return _decide(conv, event)


def _after_timeout(conv: Conversation, event: Event) -> Step:
    """30 idle minutes: the conversation starts again from the menu and its drafts expire (a waiting confirmation
    becomes a lapsed one: its buttons say it timed out unsent, on every tap). With a question left open, the farmer
    hears why we start again, and to send the photo again if one went with it; an answer to that question (a
    place, a crop, its button) hears only that, with the menu: never "I did not understand"."""
    fresh = replace(conv, state=State.MENU, data=conv.data.timed_out(MAX_PENDING), expires_at=None)
    result = _decide(fresh, event)
    if conv.state is State.MENU or _confirmation_of(event) in fresh.data.lapsed:
        return result  # nothing was open, or the button's own answer says it timed out
    lost = {d.photo_message_id: d.photo_count for d in (*conv.data.pending, conv.data.draft) if d is not None}
    notice = replies.expired(conv.locale, photo_lost=bool(lost) and event.kind is not EventKind.PHOTO,
                             photos=sum(lost.values()))
    if _answers_a_question(event):
        return _menu(fresh, notice)
    return Step(result.state, result.data, (Send(notice), *result.actions))


def _confirmation_of(event: Event) -> int | None:
    """The submission a confirmation's button (`Gönder`, `Fotoğraf ekle`, `İptal`) names."""
    reply = event.reply
    return reply.photo_message_id if isinstance(reply, (rid.SendPending, rid.AddPhoto, rid.CancelConfirm)) else None


def _answers_a_submission(event: Event) -> bool:
    """A submission question's own button or list row (`Geç`, a crop), or a shared place."""
    return event.kind is EventKind.LOCATION or isinstance(event.reply, (rid.Crop, rid.SkipLocation))


def _answers_a_question(event: Event) -> bool:
    """After a timeout: an answer to the question left open (text the menu takes as no command, choice or code;
    a submission question's button; a place) rather than something new."""
    if event.kind is EventKind.TEXT:
        text = event.text or ""
        return (intents.match(text) is None and not codes.looks_like_code(text)
                and text.strip().rstrip(".)") not in MENU_CHOICES)
    return _answers_a_submission(event) or (event.kind is EventKind.REPLY and event.reply is None)


def _before_consent(conv: Conversation, event: Event, intent: Intent | None) -> Step:
    """Only the privacy question, language, help, opt-out/in and a deletion request: no personal data is
    processed."""
    typed = _language_from_text(event.text) if intent is Intent.LANGUAGE else ""
    if intent is Intent.LANGUAGE and not typed:
        return _say(conv, State.AWAIT_CONSENT, replies.ask_language(conv.locale))
    if typed or (isinstance(event.reply, rid.Language) and event.reply.code in replies.LANGUAGES):
        choice = typed or (event.reply.code if isinstance(event.reply, rid.Language) else conv.locale)
        return _say(conv, State.AWAIT_CONSENT, replies.privacy_notice(choice), before=(SetLocale(choice),))
    if intent in (Intent.OPT_OUT, Intent.OPT_IN, Intent.HELP):
        return GLOBAL[intent](conv, event)
    if intent is Intent.DELETE_DATA:  # recorded as after consent; what was kept for after consent is forgotten
        return _say(conv, conv.state, replies.deletion_requested(conv.locale), before=(RequestDeletion(),),
                    data=ConversationData())
    if event.kind is EventKind.PHOTO:
        return _hold_photo(conv, event)
    if conv.state is State.AWAIT_CONSENT or isinstance(event.reply, rid.Consent):
        return on_consent_reply(conv, event)
    return ask_consent(conv, event)


# Buttons and list rows stay tappable in old messages: these work whatever the current state.
GLOBAL_REPLIES: dict[type[rid.ReplyId], Handler] = {
    rid.SendPending: on_send_button,
    rid.AddPhoto: on_add_photo,
    rid.CancelConfirm: on_cancel_button,
    rid.Menu: on_menu_choice,
    rid.Details: on_menu_choice,
    rid.NewAnalysis: on_menu_choice,
    rid.BackToMenu: on_menu_choice,
    rid.HistoryPick: on_history_choice,
    rid.Language: on_language_choice,
    rid.Consent: on_consent_again,
}


def _decide(conv: Conversation, event: Event) -> Step:
    intent = intents.match(event.text) if event.kind is EventKind.TEXT else None
    if not conv.consented:
        return _before_consent(conv, event, intent)
    if event.kind is EventKind.PHOTO:
        return on_photo(conv, event)
    if event.kind is EventKind.UNSUPPORTED:
        return unsupported(conv, event)
    if event.kind is EventKind.REPLY:
        if event.reply is None:  # forged, or cut short: text this state did not expect
            return fallback(conv, event)
        if type(event.reply) in GLOBAL_REPLIES:
            return GLOBAL_REPLIES[type(event.reply)](conv, event)
    if intent is not None:
        return GLOBAL[intent](conv, event)
    if event.kind is EventKind.TEXT and codes.looks_like_code(event.text):
        return _redeem(conv, event.text or "")
    return TABLE.get((conv.state, event.kind), fallback)(conv, event)
