"""Sentences any part of the bot may need (errors, fallbacks, shared button titles).

They live in a real source file so `pybabel extract` and `translations.check` see them.
"""

from __future__ import annotations

from translations import N_, gettext, ngettext

# Titles of buttons every flow offers (reply button titles: at most 20 characters once translated).
BUTTON_TITLES: dict[str, str] = {
    "menu": N_("Menu"),
    "help": N_("Help"),
    "cancel": N_("Cancel"),
}


def button_title(locale: str | None, key: str) -> str:
    return gettext(locale, BUTTON_TITLES[key])


def sorry(locale: str | None) -> str:
    """Our failure, never the farmer's: say so and when to try again."""
    return gettext(locale, "Sorry, something went wrong on our side. Please try again in a few minutes.")


def not_understood(locale: str | None, hint: str) -> str:
    """`hint` (already translated) says what is expected now and the way out."""
    return gettext(locale, "I didn't understand that. %(hint)s", hint=hint)


def unsupported_message(locale: str | None) -> str:
    """Voice, video, documents, stickers...: a kind answer, never silence."""
    return gettext(locale, "I can only read photos and text messages. Please send a photo of your plant or write "
                           "to me.")


def try_again_in(locale: str | None, minutes: int) -> str:
    return ngettext(locale, "Please try again in %(n)d minute.", "Please try again in %(n)d minutes.", minutes)
