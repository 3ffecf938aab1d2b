"""Every sentence a farmer reads comes from here: the catalogs, and dates/numbers in their locale.

Convention (the only one `pybabel extract` and `translations.check` understand):

    gettext(locale, "English source sentence, %(name)s.", name=farmer_name)
    ngettext(locale, "%(n)s analysis left.", "%(n)s analyses left.", n)   # `n` is always a parameter
    CROPS = {"domates": N_("Tomato")}  # a table: marked now, translated later with gettext(locale, CROPS[key])
    _(locale, "...")                   # a short alias of gettext, extracted the same way

- The locale is always passed explicitly, never taken from Flask: RQ workers build most replies,
  and Flask-Babel's gettext outside a request silently returns the English source.
- msgids are literal English sentences (the extractor reads only string literals). Parameters use
  Python's named `%(name)s` format, so pybabel flags them `python-format`; formatting happens after
  translation, so a translator can move a parameter. A message formatted with parameters must
  write a literal percent sign as `%%` (Turkish writes `%50`); `translations.check` catches it.
- Catalogs are `translations/<locale>/LC_MESSAGES/messages.po`, compiled in memory on first use
  (no compile step, no binary in git). An unknown locale gets the default locale, Turkish.
- `make messages` extracts the strings and updates the catalogs; then fill every empty Turkish
  `msgstr`. An empty English `msgstr` means "use the source sentence". `python -m translations.check`
  (also run by the tests) fails when the catalogs and the code disagree.
- Dates and times are shown in Europe/Istanbul; a naive datetime is taken as UTC (as Babel does).

The staff console (console/) has its own catalog, `translations/<locale>/LC_MESSAGES/console.po`
(domain `console`): staff text never mixes with what farmers read. Python calls
`console_text(locale, "English source")` / `console_ntext(locale, singular, plural, n)`, templates
`_("...")` / `_n(singular, plural, n)`; `make console-messages` extracts them (babel-console.cfg)
into the catalogs and `translations.check` fails when the code and console.po disagree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import dates, numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

__all__ = [
    "DEFAULT_LOCALE",
    "N_",
    "PLURAL_FORMS",
    "SUPPORTED_LOCALES",
    "TIMEZONE",
    "_",
    "console_ntext",
    "console_text",
    "format_currency",
    "format_date",
    "format_datetime",
    "format_decimal",
    "format_number",
    "format_percent",
    "format_time",
    "gettext",
    "ngettext",
    "resolve_locale",
]

SUPPORTED_LOCALES: tuple[str, ...] = ("tr", "en")
DEFAULT_LOCALE = "tr"
SOURCE_LOCALE = "en"  # msgids are English: an empty `en` msgstr falls back to them
TIMEZONE = ZoneInfo("Europe/Istanbul")
CATALOG_DIR = Path(__file__).resolve().parent
DOMAIN = "messages"
CONSOLE_DOMAIN = "console"
# Written explicitly in each catalog's header: Babel 2.18 writes `nplurals=1` for Turkish, which would
# leave one form for "1 analiz" and "2 analiz" and no way to say "bir dakika" for n=1.
PLURAL_FORMS: dict[str, str] = {"tr": "nplurals=2; plural=(n != 1);", "en": "nplurals=2; plural=(n != 1);"}

Number = int | float | Decimal


def catalog_path(locale: str, directory: Path = CATALOG_DIR, domain: str = DOMAIN) -> Path:
    return directory / locale / "LC_MESSAGES" / f"{domain}.po"


def resolve_locale(locale: str | None) -> str:
    """`tr`, `tr_TR`, `TR-tr`, `en_GB` -> a supported locale; anything else (or None) -> Turkish."""
    language = (locale or "").replace("-", "_").split("_")[0].lower()
    return language if language in SUPPORTED_LOCALES else DEFAULT_LOCALE


@cache
def _translations(locale: str, domain: str = DOMAIN) -> Translations:
    """The locale's catalog, compiled from the .po into memory once per process (fuzzy entries skipped)."""
    with catalog_path(locale, domain=domain).open("rb") as po:
        catalog = read_po(po, locale=locale, domain=domain)
    mo = BytesIO()
    write_mo(mo, catalog)
    mo.seek(0)
    return Translations(mo, domain=domain)


def gettext(locale: str | None, msgid: str, /, **params: Any) -> str:
    """The sentence in the farmer's language, then formatted with `params` (only when there are any)."""
    if not msgid:
        raise ValueError("empty msgid: gettext('') is the catalog header, never a sentence")
    text = _translations(resolve_locale(locale)).gettext(msgid)
    return text % params if params else text


def ngettext(locale: str | None, singular: str, plural: str, n: int, /, **params: Any) -> str:
    """The plural form for `n` in the farmer's language, formatted with `n` and `params`."""
    text = _translations(resolve_locale(locale)).ngettext(singular, plural, n)
    return text % {"n": n, **params}


_ = gettext


def console_text(locale: str | None, msgid: str, /, **params: Any) -> str:
    """Staff console text in the staff member's language (catalog `console`), formatted with `params`."""
    if not msgid:
        raise ValueError("empty msgid: console_text('') is the catalog header, never a sentence")
    text = _translations(resolve_locale(locale), CONSOLE_DOMAIN).gettext(msgid)
    return text % params if params else text


def console_ntext(locale: str | None, singular: str, plural: str, n: int, /, **params: Any) -> str:
    """The plural form of a console text for `n`, formatted with `n` and `params`."""
    text = _translations(resolve_locale(locale), CONSOLE_DOMAIN).ngettext(singular, plural, n)
    return text % {"n": n, **params}


def N_(msgid: str) -> str:
    """Mark a table string for extraction; translate it where it is shown, with gettext(locale, value)."""
    return msgid


def _local(value: datetime) -> datetime:
    """The moment in Istanbul; a naive datetime is UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(TIMEZONE)


def format_date(value: date | datetime, locale: str | None, format: str = "long") -> str:
    """`22 Kasım 2026` / `November 22, 2026`; a datetime is first moved to Istanbul (it may change the day)."""
    if isinstance(value, datetime):
        value = _local(value)
    return dates.format_date(value, format, locale=resolve_locale(locale))


def format_time(value: datetime | time, locale: str | None, format: str = "short") -> str:
    """`00:30` / `12:30 AM` in Istanbul."""
    if isinstance(value, datetime):
        value = _local(value)
    return dates.format_time(value, format, locale=resolve_locale(locale))


def format_datetime(value: datetime, locale: str | None) -> str:
    """A short moment with its date: `23 Kas 2026 00:30` / `Nov 23, 2026, 12:30 AM` in Istanbul."""
    loc = resolve_locale(locale)
    value = _local(value)
    pattern = str(dates.get_datetime_format("medium", locale=loc)).replace("'", "")
    return (pattern.replace("{0}", dates.format_time(value, "short", locale=loc))
            .replace("{1}", dates.format_date(value, "medium", locale=loc)))


def format_number(value: Number, locale: str | None) -> str:
    """`1.234.567` / `1,234,567`."""
    return numbers.format_decimal(value, locale=resolve_locale(locale))


def format_decimal(value: Number, locale: str | None, format: str | None = None) -> str:
    """`3,5` / `3.5`; `format` is a Babel number pattern such as `#,##0.0`."""
    return numbers.format_decimal(value, format=format, locale=resolve_locale(locale))


def format_percent(value: Number, locale: str | None) -> str:
    """0.5 -> `%50` / `50%` (Turkish puts the sign first)."""
    return numbers.format_percent(value, locale=resolve_locale(locale))


def format_currency(value: Number, currency: str, locale: str | None) -> str:
    """`₺1.234,50` / `TRY1,234.50`."""
    return numbers.format_currency(value, currency, locale=resolve_locale(locale))
