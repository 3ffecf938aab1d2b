"""Fail loudly when the code and the catalogs disagree: `python -m translations.check` (CI, tests).

A farmer must never get an English sentence because a translation was missing, fuzzy (skipped at
run time) or out of date, nor a crash because a translator changed a `%(name)s` placeholder.
The messages are extracted from the source tree in memory, with babel.cfg and the same keywords
as `make messages`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from babel.messages.catalog import PYTHON_FORMAT, Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_keywords, parse_mapping_cfg
from babel.messages.pofile import read_po

from translations import CONSOLE_DOMAIN, DOMAIN, PLURAL_FORMS, SOURCE_LOCALE, SUPPORTED_LOCALES, catalog_path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Keep in step with the Makefile's `messages` target (a drift shows up here as an out-of-date messages.pot).
KEYWORDS = ("gettext:2", "ngettext:2,3", "_:2", "N_")
COMMENT_TAGS = ("TRANSLATORS:",)
POT = Path("translations") / f"{DOMAIN}.pot"
# The staff console's catalog (console.po): checked against its code directly, no .pot in git (several
# branches add console text at once, and a .pot would only conflict; `make console-messages` rebuilds it).
CONSOLE_CFG = "babel-console.cfg"
CONSOLE_KEYWORDS = ("_", "_n:1,2", "console_text:2", "console_ntext:2,3", "flash_text:2", "refuse", "N_")

Key = tuple[str | None, str | tuple[str, ...]]


def extract(root: Path = PROJECT_ROOT, config: str = "babel.cfg", keywords: Iterable[str] = KEYWORDS) -> Catalog:
    """What `pybabel extract -F <config>` would write to the .pot, without writing anything."""
    with (root / config).open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg, config)
    template = Catalog()
    for filename, lineno, message, comments, context in extract_from_dir(
        root, method_map, options_map, keywords=parse_keywords(list(keywords)), comment_tags=COMMENT_TAGS,
        strip_comment_tags=True,
    ):
        template.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return template


def check(root: Path = PROJECT_ROOT) -> list[str]:
    """Every problem found, as readable lines; an empty list means the catalogs are good."""
    problems: list[str] = []
    source = extract(root)
    pot_path = root / POT
    try:
        template = _read(pot_path)
    except OSError as exc:
        return [f"{POT}: cannot read ({exc.strerror}); run `make messages`"]
    in_code, in_pot = _messages(source), _messages(template)
    for key in sorted(in_code.keys() - in_pot.keys(), key=str):
        where = ", ".join(f"{f}:{line}" for f, line in in_code[key].locations)
        problems.append(f"{POT}: {_show(key)} (in {where}) is missing; run `make messages`")
    for key in sorted(in_pot.keys() - in_code.keys(), key=str):
        problems.append(f"{POT}: {_show(key)} is no longer in the code; run `make messages`")
    for message in in_pot.values():
        problems.extend(f"{POT}: {_show(_key(message))}: {p}" for p in _msgid_problems(message))
    for locale in SUPPORTED_LOCALES:
        problems.extend(_check_locale(locale, catalog_path(locale, root / "translations"), in_pot))
    return problems


def check_console(root: Path = PROJECT_ROOT) -> list[str]:
    """The console catalogs against the console's code (nothing to check where there is no console)."""
    if not (root / CONSOLE_CFG).exists():
        return []
    in_code = _messages(extract(root, CONSOLE_CFG, CONSOLE_KEYWORDS))
    problems = [f"console: {_show(_key(m))}: {p}" for m in in_code.values() for p in _msgid_problems(m)]
    for locale in SUPPORTED_LOCALES:
        problems.extend(_check_locale(locale, catalog_path(locale, root / "translations", CONSOLE_DOMAIN), in_code,
                                      source="the console's code", command="make console-messages"))
    return problems


def _check_locale(locale: str, path: Path, in_pot: dict[Key, Message], source: str = "messages.pot",
                  command: str = "make messages") -> list[str]:
    name = f"{locale} ({path.name})"
    try:
        catalog = _read(path, locale)
    except OSError as exc:
        return [f"{name}: cannot read {path} ({exc.strerror})"]
    problems: list[str] = []
    expected = PLURAL_FORMS.get(locale)
    if expected and catalog.plural_forms != expected:
        problems.append(f"{name}: header Plural-Forms is {catalog.plural_forms!r}, must be {expected!r}")
    in_po = _messages(catalog)
    for key in sorted(in_po.keys() - in_pot.keys(), key=str):
        problems.append(f"{name}: {_show(key)} is not in {source}; run `{command}`")
    for key, message_source in in_pot.items():
        message = in_po.get(key)
        if message is None:
            problems.append(f"{name}: {_show(key)} is missing; run `{command}`")
            continue
        problems.extend(f"{name}: {_show(key)}: {p}"
                        for p in _entry_problems(locale, catalog, message_source, message))
    return problems


def _msgid_problems(message: Message) -> list[str]:
    """The English source is what a farmer reads when a translation is empty: it must format too."""
    ids = _texts(message.id)
    if any(not p.startswith("%(") for i in ids for p in _placeholders(i)):
        return ["use named placeholders, %(name)s, not positional ones"]
    formatted = len(ids) > 1 or any(_placeholders(i) for i in ids)
    if formatted and not all(_formats(i) for i in ids):
        return ["does not format (write a literal percent sign as %%)"]
    return []


def _entry_problems(locale: str, catalog: Catalog, source: Message, message: Message) -> list[str]:
    """A translation that is missing, skipped at run time (fuzzy), or that would not format."""
    problems: list[str] = []
    if message.fuzzy:
        problems.append("fuzzy (ignored at run time): check the translation and remove the flag")
    forms = _texts(message.string)
    plural = isinstance(source.id, tuple)
    if plural and len(forms) != catalog.num_plurals:
        problems.append(f"{len(forms)} plural forms, the catalog declares {catalog.num_plurals}")
    if all(not form for form in forms):
        if locale != SOURCE_LOCALE:
            problems.append("not translated")
        return problems
    if any(not form for form in forms):
        problems.append("plural forms incomplete: fill every msgstr[n]")
    problems.extend(_placeholder_problems(source, forms))
    return problems


def _placeholder_problems(source: Message, forms: Iterable[str]) -> list[str]:
    """msgstr must use the msgid's placeholders: an unknown one is a KeyError, a lost one a lost fact.

    In a plural entry the first form ("one") may leave the count out (`bir dakika`), and `%(n)...`
    is always known because ngettext passes n.
    """
    plural = isinstance(source.id, tuple)
    ids = _texts(source.id)
    known = set().union(*(_placeholders(i) for i in ids))
    problems: list[str] = []
    for index, form in enumerate(forms):
        if not form:
            continue
        found = _placeholders(form)
        required = set() if plural and index == 0 else _placeholders(ids[-1])
        unknown = {p for p in found - known if not (plural and p.startswith("%(n)"))}
        missing = required - found
        label = f"msgstr[{index}]" if plural else "msgstr"
        if unknown or missing:
            problems.append(f"{label} placeholders differ from the msgid: unknown {sorted(unknown)}, "
                            f"missing {sorted(missing)}")
        elif (plural or known) and not _formats(form):
            problems.append(f"{label} does not format (write a literal percent sign as %%): {form!r}")
    return problems


class _AnyParams(dict[str, object]):
    def __missing__(self, key: str) -> object:
        return 1


def _texts(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """A message's id or string as its forms: one for a plain entry, several for a plural one."""
    if value is None:
        return ("",)
    return (value,) if isinstance(value, str) else tuple(value)


def _formats(text: str) -> bool:
    try:
        text % _AnyParams()
    except (ValueError, TypeError, KeyError):
        return False
    return True


def _placeholders(text: str) -> set[str]:
    """`%(name)s` style placeholders as `%(name)s` (flags dropped); positional ones as `%s`; `%%` skipped."""
    return {f"%({name}){conv}" if name else f"%{conv}" for name, _flags, conv in PYTHON_FORMAT.findall(text)
            if conv != "%"}


def _read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as po:
        return read_po(po, locale=locale, domain=DOMAIN)


def _key(message: Message) -> Key:
    return (message.context, tuple(message.id) if isinstance(message.id, list | tuple) else message.id)


def _messages(catalog: Catalog) -> dict[Key, Message]:
    return {_key(m): m for m in catalog if m.id}


def _show(key: Key) -> str:
    context, msgid = key
    text = " / ".join(msgid) if isinstance(msgid, tuple) else msgid
    text = text if len(text) <= 70 else text[:67] + "..."
    return repr(text) + (f" (context {context!r})" if context else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m translations.check", description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", type=Path, default=PROJECT_ROOT, help="project root (with babel.cfg)")
    args = parser.parse_args(argv)
    problems = check(args.root) + check_console(args.root)
    if problems:
        print(f"translations: {len(problems)} problem(s)", *(f"  - {p}" for p in problems), sep="\n", file=sys.stderr)
        return 1
    count = len(_messages(extract(args.root)))
    has_console = (args.root / CONSOLE_CFG).exists()
    console = len(_messages(extract(args.root, CONSOLE_CFG, CONSOLE_KEYWORDS))) if has_console else 0
    print(f"translations: OK ({count} messages, {console} console texts; locales {', '.join(SUPPORTED_LOCALES)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
