"""Catalogs, locale formatting, the catalog check and the WhatsApp template definitions."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

from services.whatsapp.errors import LimitError
from services.whatsapp.messages import build_template as build
from settings import PROJECT_ROOT
from translations import (
    N_,
    PLURAL_FORMS,
    SUPPORTED_LOCALES,
    catalog_path,
    format_currency,
    format_date,
    format_datetime,
    format_decimal,
    format_number,
    format_percent,
    format_time,
    gettext,
    ngettext,
    resolve_locale,
)
from translations.check import POT, check, extract, main
from translations.fix_headers import fix_headers
from translations.templates import TEMPLATES, QuickReply, Template

CANCEL = "Cancel"
SPONSORED = "Sponsored by: %(sponsor)s"
MORE = ("You can send %(num)s more analysis today.", "You can send %(num)s more analyses today.")
# 2026-11-22 21:30 UTC is already the 23rd in Istanbul (UTC+3).
MOMENT = datetime(2026, 11, 22, 21, 30, tzinfo=UTC)


# --- the committed catalogs ---------------------------------------------------------------------


def test_committed_catalogs_pass_the_check() -> None:
    assert check() == []


def test_the_check_command_exits_zero_on_the_committed_catalogs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "translations: OK" in capsys.readouterr().out


def test_turkish_catalog_declares_two_plural_forms() -> None:
    header = catalog_path("tr").read_text(encoding="utf-8")
    assert '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"' in header


# --- gettext / ngettext ---------------------------------------------------------------------------


def test_sentences_come_in_the_farmers_language() -> None:
    assert gettext("tr", CANCEL) == "İptal"
    assert gettext("en", CANCEL) == "Cancel"
    assert gettext("tr", N_("Menu")) == "Menü"


def test_parameters_are_formatted_after_translation() -> None:
    assert gettext("tr", SPONSORED, sponsor="Anadolu Tohum") == "Sponsor: Anadolu Tohum"
    assert gettext("en", SPONSORED, sponsor="50% done") == "Sponsored by: 50% done"  # values are not re-read


def test_turkish_keeps_one_plural_form_and_english_two() -> None:
    assert ngettext("tr", *MORE, 1, num="1") == "Bugün 1 analiz daha gönderebilirsiniz."
    assert ngettext("tr", *MORE, 2, num="2") == "Bugün 2 analiz daha gönderebilirsiniz."
    assert ngettext("tr", *MORE, 0, num="0") == "Bugün 0 analiz daha gönderebilirsiniz."
    assert ngettext("en", *MORE, 1, num="1") == "You can send 1 more analysis today."
    assert ngettext("en", *MORE, 5, num="5") == "You can send 5 more analyses today."
    assert ngettext("en", *MORE, 0, num="0") == "You can send 0 more analyses today."


@pytest.mark.parametrize("locale", ["de", "", None, "xx_YY", "turkish"])
def test_unknown_locale_falls_back_to_turkish(locale: str | None) -> None:
    assert resolve_locale(locale) == "tr"
    assert gettext(locale, CANCEL) == gettext("tr", CANCEL) == "İptal"
    assert ngettext(locale, *MORE, 1, num="1") == "Bugün 1 analiz daha gönderebilirsiniz."


@pytest.mark.parametrize(("locale", "resolved"), [("tr_TR", "tr"), ("TR", "tr"), ("en-GB", "en"), ("en_US", "en")])
def test_locale_variants_resolve_to_a_supported_locale(locale: str, resolved: str) -> None:
    assert resolve_locale(locale) == resolved


def test_empty_msgid_is_refused_rather_than_returning_the_catalog_header() -> None:
    with pytest.raises(ValueError, match="empty msgid"):
        gettext("tr", "")


def test_a_msgid_without_translation_is_shown_as_written() -> None:
    assert gettext("tr", "Not in any catalog") == "Not in any catalog"


# --- dates and numbers ------------------------------------------------------------------------------


def test_dates_are_shown_in_istanbul_for_the_farmers_locale() -> None:
    assert format_date(MOMENT, "tr") == "23 Kasım 2026"
    assert format_date(MOMENT, "en") == "November 23, 2026"
    assert format_datetime(MOMENT, "tr") == "23 Kas 2026 00:30"
    assert format_datetime(MOMENT, "en") == "Nov 23, 2026, 12:30\u202fAM"
    assert format_time(MOMENT, "tr") == "00:30"
    assert format_date(date(2026, 11, 22), "tr") == "22 Kasım 2026"  # a date is a calendar day: no shift
    assert format_datetime(MOMENT.replace(tzinfo=None), "tr") == "23 Kas 2026 00:30"  # naive means UTC
    assert format_date(MOMENT, "de") == "23 Kasım 2026"


def test_numbers_and_money_for_the_farmers_locale() -> None:
    assert format_number(1234567, "tr") == "1.234.567"
    assert format_number(1234567, "en") == "1,234,567"
    assert format_decimal(3.5, "tr") == "3,5"
    assert format_decimal(3.5, "en") == "3.5"
    assert format_currency(1234.5, "TRY", "tr") == "₺1.234,50"
    assert format_percent(0.5, "tr") == "%50"
    assert format_percent(0.5, "en") == "50%"


# --- the check catches what would reach a farmer wrong ---------------------------------------------

SOURCE = '''
from translations import N_, gettext, ngettext

TITLES = {"ok": N_("All right")}


def hello(locale, name):
    return gettext(locale, "Hello %(name)s, welcome.", name=name)


def minutes(locale, n):
    return ngettext(locale, "%(n)d minute", "%(n)d minutes", n)
'''
TR: dict[str, str | tuple[str, ...]] = {
    "All right": "Tamam",
    "Hello %(name)s, welcome.": "Merhaba %(name)s, hoş geldiniz.",
    "%(n)d minute": ("bir dakika", "%(n)d dakika"),
}


def _write_catalog(path: Path, catalog: Catalog) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as po:
        write_po(po, catalog)


def _translated(template: Catalog, locale: str, strings: dict[str, str | tuple[str, ...]]) -> Catalog:
    catalog = Catalog(locale=locale)
    catalog.mime_headers = [("Plural-Forms", PLURAL_FORMS[locale])]
    for message in template:
        if message.id:
            key = message.id if isinstance(message.id, str) else message.id[0]
            catalog.add(message.id, strings.get(key, "" if isinstance(message.id, str) else ("", "")))
    return catalog


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A small project laid out like this one, whose catalogs pass the check."""
    shutil.copy(PROJECT_ROOT / "babel.cfg", tmp_path / "babel.cfg")
    (tmp_path / "bot").mkdir()
    (tmp_path / "bot" / "sample.py").write_text(SOURCE, encoding="utf-8")
    template = extract(tmp_path)
    _write_catalog(tmp_path / POT, template)
    _write_catalog(catalog_path("tr", tmp_path / "translations"), _translated(template, "tr", TR))
    _write_catalog(catalog_path("en", tmp_path / "translations"), _translated(template, "en", {}))
    assert check(tmp_path) == []
    return tmp_path


def _edit_tr(project: Path, key: str, **changes: object) -> None:
    template = extract(project)
    catalog = _translated(template, "tr", TR)
    message = catalog[key]
    for name, value in changes.items():
        setattr(message, name, value)
    _write_catalog(catalog_path("tr", project / "translations"), catalog)


def _problems(project: Path) -> str:
    return "\n".join(check(project))


def test_check_catches_a_missing_turkish_entry(project: Path) -> None:
    template = extract(project)
    catalog = _translated(template, "tr", TR)
    catalog.delete("All right")
    _write_catalog(catalog_path("tr", project / "translations"), catalog)
    assert re.search(r"tr \(messages.po\): 'All right' is missing", _problems(project))


def test_check_catches_an_untranslated_turkish_entry_but_allows_an_empty_english_one(project: Path) -> None:
    _edit_tr(project, "All right", string="")
    problems = check(project)
    assert problems == ["tr (messages.po): 'All right': not translated"]


def test_check_catches_a_fuzzy_entry(project: Path) -> None:
    _edit_tr(project, "All right", flags={"fuzzy"})
    assert "'All right': fuzzy (ignored at run time)" in _problems(project)


def test_check_catches_an_out_of_date_pot(project: Path) -> None:
    source = project / "bot" / "sample.py"
    source.write_text(source.read_text().replace('N_("All right")', 'N_("All right!")'), encoding="utf-8")
    problems = _problems(project)
    assert "translations/messages.pot: 'All right!' (in bot/sample.py:4) is missing; run `make messages`" in problems
    assert "translations/messages.pot: 'All right' is no longer in the code; run `make messages`" in problems


def test_check_catches_a_placeholder_mismatch(project: Path) -> None:
    _edit_tr(project, "Hello %(name)s, welcome.", string="Merhaba %(isim)s, hoş geldiniz.")
    assert ("msgstr placeholders differ from the msgid: unknown ['%(isim)s'], missing ['%(name)s']"
            in _problems(project))


def test_check_catches_a_percent_sign_that_would_break_formatting(project: Path) -> None:
    _edit_tr(project, "Hello %(name)s, welcome.", string="Merhaba %(name)s, %50 indirim.")
    assert "msgstr does not format (write a literal percent sign as %%)" in _problems(project)


def test_check_catches_incomplete_plural_forms(project: Path) -> None:
    _edit_tr(project, "%(n)d minute", string=("bir dakika", ""))
    assert "'%(n)d minute / %(n)d minutes': plural forms incomplete" in _problems(project)


def test_check_lets_the_turkish_singular_form_leave_out_the_count_but_not_the_plural(project: Path) -> None:
    _edit_tr(project, "%(n)d minute", string=("bir dakika", "birkaç dakika"))
    assert "msgstr[1] placeholders differ from the msgid: unknown [], missing ['%(n)d']" in _problems(project)


def test_check_catches_the_turkish_plural_header_babel_writes(project: Path) -> None:
    path = catalog_path("tr", project / "translations")
    text = path.read_text(encoding="utf-8").replace("nplurals=2; plural=(n != 1);", "nplurals=1; plural=0;")
    path.write_text(text, encoding="utf-8")
    assert "header Plural-Forms is 'nplurals=1; plural=0;', must be 'nplurals=2; plural=(n != 1);'" in _problems(
        project)


def test_check_catches_a_missing_catalog_and_exits_non_zero(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog_path("en", project / "translations").unlink()
    assert main([str(project)]) == 1
    err = capsys.readouterr().err
    assert "translations: 1 problem(s)" in err and "en (messages.po): cannot read" in err


def test_fix_headers_gives_turkish_two_plural_forms_once(project: Path) -> None:
    """What `pybabel init -l tr` writes (nplurals=1, one msgstr) becomes a two-form catalog the check accepts."""
    path = catalog_path("tr", project / "translations")
    catalog = Catalog(locale="tr")  # Babel's own Turkish plural rule: nplurals=1
    catalog.add("All right", "Tamam")
    catalog.add("Hello %(name)s, welcome.", "Merhaba %(name)s, hoş geldiniz.")
    catalog.add(("%(n)d minute", "%(n)d minutes"), ("bir dakika",))
    _write_catalog(path, catalog)
    assert "must be 'nplurals=2; plural=(n != 1);'" in _problems(project)

    assert fix_headers(project / "translations") == [path]
    text = path.read_text(encoding="utf-8")
    assert '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"' in text
    assert 'msgstr[0] "bir dakika"\nmsgstr[1] ""' in text  # the new form waits for the translator
    assert fix_headers(project / "translations") == []  # idempotent


def test_supported_locales_all_have_committed_catalogs() -> None:
    assert all(catalog_path(locale).exists() for locale in SUPPORTED_LOCALES)


# --- WhatsApp templates -------------------------------------------------------------------------------

EXPECTED_TEMPLATES = {
    "analysis_complete_tr": 4,
    "urgent_health_alert_tr": 3,
    "subscription_expiry_tr": 3,
    "redemption_confirmation_tr": 5,
    "usage_alert_tr": 3,
    "welcome_message_tr": 1,
    "sponsor_message_tr": 2,
}


def test_every_template_of_the_design_is_defined() -> None:
    assert {name: len(t.param_names) for name, t in TEMPLATES.items()} == EXPECTED_TEMPLATES


@pytest.mark.parametrize("name", sorted(EXPECTED_TEMPLATES))
def test_template_parameters_match_the_body(name: str) -> None:
    t = TEMPLATES[name]
    distinct = sorted({int(n) for n in re.findall(r"\{\{(\d+)\}\}", t.body)})
    assert distinct == list(range(1, len(t.param_names) + 1))
    assert len(t.example) == len(t.param_names)
    body = t.body.strip()
    assert not re.match(r"\{\{\d+\}\}", body), "Meta rejects a body starting with a parameter"
    assert not re.search(r"\{\{\d+\}\}[\s.!?]*$", body), "Meta rejects a body ending with a parameter"
    assert t.language == "tr" and t.category in ("UTILITY", "MARKETING")
    assert all(len(b.text) <= 20 for b in t.buttons)


@pytest.mark.parametrize("name", sorted(EXPECTED_TEMPLATES))
def test_build_sends_the_parameters_in_order(name: str) -> None:
    t = TEMPLATES[name]
    out = build(name, "+905321234567", list(t.example))
    assert out.type == "template" and out.template_name == name and out.template_params == list(t.example)
    content = out.body["template"]
    assert content["language"] == {"code": "tr"}
    assert [p["text"] for p in content["components"][0]["parameters"]] == list(t.example)
    payloads = [c["parameters"][0]["payload"] for c in content["components"][1:]]
    assert payloads == [b.payload for b in t.buttons]
    assert out.text and "{{" not in out.text and all(value in out.text for value in t.example)


def test_build_rejects_a_wrong_parameter_count() -> None:
    with pytest.raises(LimitError, match="exactly 4"):
        build("analysis_complete_tr", "+905321234567", ["Mehmet", "Domates", "6/10"])
    with pytest.raises(LimitError, match="exactly 1"):
        build("welcome_message_tr", "+905321234567", ["Mehmet", "fazla"])
    with pytest.raises(LimitError):
        build("welcome_message_tr", "+905321234567", {"name": "Mehmet"})
    with pytest.raises(KeyError, match="unknown template"):
        build("no_such_template", "+905321234567", [])


def test_build_takes_parameters_by_name() -> None:
    out = build("welcome_message_tr", "+905321234567", {"farmer name": "Ayşe"})
    assert out.template_params == ["Ayşe"]
    assert out.text and out.text.startswith("Merhaba Ayşe, ")


def test_a_template_meta_would_reject_cannot_be_defined() -> None:
    with pytest.raises(ValueError, match="must not start or end with a parameter"):
        Template("bad_tr", "UTILITY", "{{1}} merhaba", ("name",), ("Ali",))
    with pytest.raises(ValueError, match="without gaps"):
        Template("bad_tr", "UTILITY", "Merhaba {{1}} ve {{3}}.", ("a", "b"), ("x", "y"))
    with pytest.raises(ValueError, match="1 placeholders, 2 param_names"):
        Template("bad_tr", "UTILITY", "Merhaba {{1}}.", ("a", "b"), ("x", "y"))
    with pytest.raises(ValueError, match="quick replies"):
        Template("bad_tr", "UTILITY", "Merhaba {{1}}.", ("a",), ("x",), (QuickReply("x" * 26, "p"),))


def test_meta_definition_has_the_body_and_its_example() -> None:
    meta = TEMPLATES["usage_alert_tr"].to_meta()
    assert meta["name"] == "usage_alert_tr" and meta["language"] == "tr" and meta["category"] == "UTILITY"
    body = meta["components"][0]
    assert body["type"] == "BODY" and "{{3}}" in body["text"]
    assert body["example"] == {"body_text": [["4", "5", "23 Kas 2026 00:00"]]}
    assert meta["components"][1]["buttons"][0] == {"type": "QUICK_REPLY", "text": "Kalan hakkım"}


# --- the CLI --------------------------------------------------------------------------------------------


def test_templates_command_prints_every_definition(runner) -> None:
    result = runner.invoke(args=["templates"])
    assert result.exit_code == 0, result.output
    for name, t in TEMPLATES.items():
        assert name in result.output
        assert t.example[0] in result.output
    assert "{{4}} main concern" in result.output


def test_templates_command_prints_metas_json(runner) -> None:
    result = runner.invoke(args=["templates", "--json"])
    assert result.exit_code == 0, result.output
    definitions = json.loads(result.output)
    assert [d["name"] for d in definitions] == list(TEMPLATES)
    assert definitions[0]["components"][0]["example"]["body_text"] == [list(TEMPLATES["analysis_complete_tr"].example)]
    assert "Sağlık puanı" in result.output  # UTF-8, not \\u escapes
