"""The WhatsApp account banner: what Meta told us that staff must know now (services.whatsapp.health).

Shown on every staff page (not to sponsors) while something is wrong: the account restricted,
scheduled for disabling or disabled, a policy violation (beside a restriction too), every send held
after Meta refused the account's messages (368, 131031, 131042), templates paused/disabled/rejected
(the bot cannot send them), a template whose quality is RED, a number flagged or downgraded.
"""

from __future__ import annotations

from models import utcnow
from services import context
from services.whatsapp.account import AccountStatus, Quality
from services.whatsapp.health import send_block, snapshot
from translations import N_, console_text, format_datetime

ACCOUNT_TEXT = {
    AccountStatus.VIOLATION: N_("Meta reported a policy violation on the WhatsApp account."),
    AccountStatus.RESTRICTED: N_("The WhatsApp account is restricted: some messages are refused until "
                                 "the restriction ends."),
    AccountStatus.SCHEDULED_FOR_DISABLE: N_("The WhatsApp account is scheduled to be disabled."),
    AccountStatus.DISABLED: N_("The WhatsApp account is disabled: no message can be sent."),
}
NUMBER_EVENTS = {"FLAGGED", "DOWNGRADE"}


def account_warnings(locale: str) -> list[str]:
    """Translated sentences, one per problem (empty when all is well)."""
    with context.db().reader() as session:
        shot = snapshot(session)
    warnings = []
    if shot.account_status in ACCOUNT_TEXT:
        warnings.append(console_text(locale, ACCOUNT_TEXT[shot.account_status]))
    if shot.violation is not None and shot.account_status is not AccountStatus.VIOLATION:
        warnings.append(console_text(locale, ACCOUNT_TEXT[AccountStatus.VIOLATION]))
    block = send_block(context.redis(), utcnow())
    if block is not None and block.until is not None:
        warnings.append(console_text(
            locale, "WhatsApp refused the account's messages (%(reason)s): every message waits, tried again at "
            "%(until)s.", reason=block.reason, until=format_datetime(block.until, locale)))
    elif block is not None:
        warnings.append(console_text(locale, "WhatsApp refused the account's messages (%(reason)s): every message "
                                     "waits until the block is lifted.", reason=block.reason))
    blocked = sorted({f"{t.name} ({t.language}, {t.status})" for t in shot.blocked_templates})
    if blocked:
        warnings.append(console_text(locale, "Templates the bot cannot send: %(names)s.", names=", ".join(blocked)))
    red = sorted({f"{t.name} ({t.language})" for t in shot.templates
                  if t.quality == Quality.RED.value and not t.blocked})
    if red:
        warnings.append(console_text(locale, "Template quality is low (red), Meta may pause them: %(names)s.",
                                     names=", ".join(red)))
    numbers = sorted(number for number, state in shot.numbers.items() if state.get("event") in NUMBER_EVENTS)
    if numbers:
        warnings.append(console_text(locale, "Meta flagged or downgraded the phone number: %(numbers)s.",
                                     numbers=", ".join(numbers)))
    return warnings
