"""Build Cloud API message bodies, checking Meta's limits first so a bad message fails in our code.

Each builder returns an `Outbound`: the exact JSON body to POST plus the columns the message log keeps.
Pure functions: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bot import reply_ids
from bot.types import Reply
from services.whatsapp.errors import LimitError
from translations.templates import TEMPLATES

TEXT_BODY_MAX = 4096
INTERACTIVE_BODY_MAX = 1024
BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
BUTTON_ID_MAX = 256
LIST_BUTTON_MAX = 20
LIST_ROWS_MAX = 10
LIST_SECTIONS_MAX = 10
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
ROW_ID_MAX = 200
SECTION_TITLE_MAX = 24
HEADER_MAX = 60
FOOTER_MAX = 60
CAPTION_MAX = 1024
TEMPLATE_PARAM_MAX = 1024


@dataclass(frozen=True)
class Outbound:
    type: str
    body: dict[str, Any]
    text: str | None = None
    template_name: str | None = None
    template_params: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    id: str
    title: str
    description: str | None = None


@dataclass(frozen=True)
class Section:
    title: str | None
    rows: Sequence[Row]


def _check_len(name: str, value: str | None, limit: int, *, required: bool = True) -> None:
    if value is None or value == "":
        if required:
            raise LimitError(name, "must not be empty", value)
        return
    if len(value) > limit:
        raise LimitError(name, f"at most {limit} characters", len(value))


def is_phone_address(address: str) -> bool:
    """A phone number (`+905321234567`), as opposed to Meta's business-scoped user id (`TR.1234...`)."""
    digits = address.removeprefix("+")
    return digits.isascii() and digits.isdigit()


def address_field(address: str) -> dict[str, str]:
    """Meta takes a phone in `to` and a user id in `recipient`; never a user id in `to`."""
    return {"to": address} if is_phone_address(address) else {"recipient": address}


def _envelope(to: str, kind: str, content: dict[str, Any], reply_to: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", **address_field(to),
                            "type": kind, kind: content}
    if reply_to:
        body["context"] = {"message_id": reply_to}
    return body


def _header_footer(content: dict[str, Any], header: str | None, footer: str | None) -> None:
    _check_len("header", header, HEADER_MAX, required=False)
    _check_len("footer", footer, FOOTER_MAX, required=False)
    if header:
        content["header"] = {"type": "text", "text": header}
    if footer:
        content["footer"] = {"text": footer}


def text(to: str, body: str, *, preview_url: bool = False, reply_to: str | None = None) -> Outbound:
    _check_len("text.body", body, TEXT_BODY_MAX)
    return Outbound("text", _envelope(to, "text", {"body": body, "preview_url": preview_url}, reply_to), text=body)


def buttons(to: str, body: str, choices: Sequence[tuple[str, str]], *, header: str | None = None,
            footer: str | None = None, reply_to: str | None = None) -> Outbound:
    """Reply buttons: `choices` are (id, title) pairs."""
    _check_len("interactive.body", body, INTERACTIVE_BODY_MAX)
    if not 1 <= len(choices) <= BUTTONS_MAX:
        raise LimitError("buttons", f"1 to {BUTTONS_MAX} buttons", len(choices))
    ids = [i for i, _ in choices]
    if len(set(ids)) != len(ids):
        raise LimitError("buttons.id", "ids must be unique", ids)
    for button_id, title in choices:
        _check_len("button.id", button_id, BUTTON_ID_MAX)
        _check_len("button.title", title, BUTTON_TITLE_MAX)
    content: dict[str, Any] = {
        "type": "button",
        "body": {"text": body},
        "action": {"buttons": [{"type": "reply", "reply": {"id": i, "title": t}} for i, t in choices]},
    }
    _header_footer(content, header, footer)
    return Outbound("interactive", _envelope(to, "interactive", content, reply_to), text=body)


def list_message(to: str, body: str, button: str, sections: Sequence[Section], *, header: str | None = None,
                 footer: str | None = None, reply_to: str | None = None) -> Outbound:
    _check_len("interactive.body", body, INTERACTIVE_BODY_MAX)
    _check_len("list.button", button, LIST_BUTTON_MAX)
    if not 1 <= len(sections) <= LIST_SECTIONS_MAX:
        raise LimitError("list.sections", f"1 to {LIST_SECTIONS_MAX} sections", len(sections))
    rows = [row for section in sections for row in section.rows]
    if not 1 <= len(rows) <= LIST_ROWS_MAX:
        raise LimitError("list.rows", f"1 to {LIST_ROWS_MAX} rows in total", len(rows))
    if len({r.id for r in rows}) != len(rows):
        raise LimitError("list.row.id", "ids must be unique", [r.id for r in rows])
    if len(sections) > 1 and any(not s.title for s in sections):
        raise LimitError("list.section.title", "required when there is more than one section", None)
    for section in sections:
        _check_len("list.section.title", section.title, SECTION_TITLE_MAX, required=False)
    for row in rows:
        _check_len("list.row.id", row.id, ROW_ID_MAX)
        _check_len("list.row.title", row.title, ROW_TITLE_MAX)
        _check_len("list.row.description", row.description, ROW_DESCRIPTION_MAX, required=False)
    content: dict[str, Any] = {
        "type": "list",
        "body": {"text": body},
        "action": {
            "button": button,
            "sections": [
                {
                    **({"title": s.title} if s.title else {}),
                    "rows": [
                        {"id": r.id, "title": r.title, **({"description": r.description} if r.description else {})}
                        for r in s.rows
                    ],
                }
                for s in sections
            ],
        },
    }
    _header_footer(content, header, footer)
    return Outbound("interactive", _envelope(to, "interactive", content, reply_to), text=body)


def to_outbound(phone: str, reply: Reply) -> Outbound:
    """A reply of the conversation (`bot`) as the message that carries it: buttons, a list or text; here
    so that the inbound job and the analysis pipeline build it alike."""
    if reply.buttons:
        return buttons(phone, reply.text, [(reply_ids.encode(b.id), b.title) for b in reply.buttons])
    if reply.rows:
        rows = [Row(reply_ids.encode(r.id), r.title, r.description) for r in reply.rows]
        return list_message(phone, reply.text, reply.list_button or "Menü", [Section(None, rows)])
    return text(phone, reply.text)


def image(to: str, *, link: str | None = None, media_id: str | None = None, caption: str | None = None,
          reply_to: str | None = None) -> Outbound:
    if bool(link) == bool(media_id):
        raise LimitError("image", "exactly one of link or media_id", {"link": link, "media_id": media_id})
    _check_len("image.caption", caption, CAPTION_MAX, required=False)
    content: dict[str, Any] = {"link": link} if link else {"id": media_id}
    if caption:
        content["caption"] = caption
    return Outbound("image", _envelope(to, "image", content, reply_to), text=caption)


def one_line(value: str) -> str:
    """Every run of whitespace (line breaks, tabs, runs of spaces) as one space, the ends trimmed."""
    return " ".join(value.split())


def template_param_text(value: object, limit: int = TEMPLATE_PARAM_MAX, *, empty: str = "-") -> str:
    """Outside or farmer text (N8N's words, a farmer's name or crop, a sponsor's message) made a valid template
    parameter, which Meta refuses with line breaks, tabs, five spaces in a row or more than 1,024 characters:
    on one line (`one_line`), cut to `limit` with an ellipsis, and `empty` when nothing is left (a parameter
    may not be empty). Every template parameter built from such text goes through here."""
    text = one_line("" if value is None else str(value))
    if len(text) > limit:
        text = text[: max(0, limit - 1)].rstrip() + "…"
    return text or empty


def template(to: str, name: str, params: Sequence[str], *, language: str = "tr",
             expected_params: int | None = None) -> Outbound:
    """Positional body parameters; the count is checked when the definition is known (132000 otherwise)."""
    _check_len("template.name", name, 512)
    if expected_params is not None and len(params) != expected_params:
        raise LimitError(f"template {name} parameters", f"exactly {expected_params}", len(params))
    for i, value in enumerate(params):
        _check_len(f"template {name} parameter {i + 1}", value, TEMPLATE_PARAM_MAX)
        if "\n" in value or "\t" in value or "     " in value:
            raise LimitError(f"template {name} parameter {i + 1}", "no newlines, tabs or 5+ spaces in a row", value)
    content: dict[str, Any] = {"name": name, "language": {"code": language}}
    if params:
        content["components"] = [{"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}]
    return Outbound("template", _envelope(to, "template", content, None), template_name=name,
                    template_params=list(params))


def build_template(name: str, to: str, params: Sequence[str] | Mapping[str, str]) -> Outbound:
    """A template message for `to` from its definition in `translations.templates` (the only way one is built);
    `params` positional, or by param name. Raises LimitError on a wrong count, or on a parameter Meta would refuse:
    build parameters from outside text with `template_param_text`."""
    definition = TEMPLATES.get(name)
    if definition is None:
        raise KeyError(f"unknown template {name!r}; known: {', '.join(TEMPLATES)}")
    if isinstance(params, Mapping):
        if set(params) != set(definition.param_names):
            raise LimitError(f"template {name} parameters", f"exactly {list(definition.param_names)}",
                             sorted(params))
        params = [params[p] for p in definition.param_names]
    values = [str(p) for p in params]
    out = template(to, name, values, language=definition.language, expected_params=len(definition.param_names))
    if definition.buttons:  # the payloads come back in the webhook when the farmer taps a button
        content = out.body["template"]
        content["components"] = [*content.get("components", []), *(
            {"type": "button", "sub_type": "quick_reply", "index": str(i),
             "parameters": [{"type": "payload", "payload": b.payload}]}
            for i, b in enumerate(definition.buttons)
        )]
    return replace(out, text=definition.render(values))
