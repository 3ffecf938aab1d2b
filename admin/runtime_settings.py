"""`/settings`: the runtime settings admins change while the service runs (`services.runtime_settings`).

Every process picks a change up within about a second (web processes and workers alike), without a
restart. `null` returns a setting to its default. Both reading and changing are admin only; a change
is audited with the old and new values.
"""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify

from admin import bp
from admin.auth import require_roles
from admin.errors import field_error
from admin.openapi import AUTHED_ERRORS, declare, json_body, json_response, problem_response, ref
from admin.validation import Body
from models import RuntimeSetting, utcnow
from services import context, runtime_settings
from services.audit import audit
from services.json_input import iso, json_integer
from services.runtime_settings import SPECS, Values


def _listing(values: Values, rows: dict[str, RuntimeSetting]) -> dict[str, Any]:
    items = []
    for name, spec in SPECS.items():
        row = rows.get(name)
        item: dict[str, Any] = {
            "name": name, "value": getattr(values, name), "default": spec.default(context.settings()),
            "overridden": row is not None, "type": spec.kind, "description": spec.description,
            "updated_at": iso(row.updated_at) if row is not None else None,
            "updated_by": row.updated_by if row is not None else None,
        }
        if spec.kind == "integer":
            item.update(minimum=spec.minimum, maximum=spec.maximum)
        items.append(item)
    return {"items": items}


@bp.get("/settings")
@require_roles("admin")
def list_runtime_settings() -> Response:
    with context.db().reader() as session:
        values, rows = runtime_settings.load(session, context.settings())
        result = _listing(values, rows)
    return jsonify(result)


@bp.patch("/settings")
@require_roles("admin")
def update_runtime_settings() -> Response:
    body = Body.load()
    changes: dict[str, Any] = {}
    for name in sorted(body.data):
        spec = SPECS.get(name)
        value = body.data[name]
        if spec is None:
            body.errors.append(field_error(name, "is not a runtime setting; known: " + ", ".join(SPECS)))
        elif value is not None and (problem := spec.check(value)) is not None:
            body.errors.append(field_error(name, problem))
        else:
            changes[name] = json_integer(value) if spec.kind == "integer" and value is not None else value
    if not body.data:
        body.errors.append(field_error("(body)", "name at least one setting to change"))
    body.raise_if_errors()
    with context.db().session() as session, session.begin():
        before, _ = runtime_settings.load(session, context.settings())
        runtime_settings.save(session, changes, g.staff_user.id, utcnow())
        after, rows = runtime_settings.load(session, context.settings())
        audit("settings.update", "runtime_settings", None,
              {name: {"before": getattr(before, name), "after": getattr(after, name)} for name in changes},
              session=session)
        result = _listing(after, rows)
    runtime_settings.announce()
    return jsonify(result)


# --- OpenAPI ------------------------------------------------------------------------------------

_VALUE = {"type": ["integer", "string"]}
_TIME = {"type": ["string", "null"], "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}
_SETTINGS_PROPS: dict[str, Any] = {
    name: {"description": spec.description,
           **({"type": ["integer", "null"], "minimum": spec.minimum, "maximum": spec.maximum}
              if spec.kind == "integer" else _TIME)}
    for name, spec in SPECS.items()
}

SCHEMAS: dict[str, Any] = {
    "RuntimeSetting": {
        "type": "object", "required": ["name", "value", "default", "overridden", "type"],
        "properties": {"name": {"enum": list(SPECS)}, "value": _VALUE, "default": _VALUE,
                       "overridden": {"type": "boolean"}, "type": {"enum": ["integer", "time"]},
                       "description": {"type": "string"}, "minimum": {"type": "integer"},
                       "maximum": {"type": "integer"},
                       "updated_at": {"type": ["string", "null"], "format": "date-time"},
                       "updated_by": {"type": ["integer", "null"]}}},
    "RuntimeSettings": {"type": "object", "required": ["items"],
                        "properties": {"items": {"type": "array", "items": ref("RuntimeSetting")}}},
    "RuntimeSettingsUpdate": {"type": "object", "minProperties": 1, "additionalProperties": False,
                              "properties": _SETTINGS_PROPS,
                              "description": "The settings to change; null returns one to its default."},
}

PATHS: dict[str, Any] = {
    "/api/v1/settings": {
        "get": {"operationId": "listRuntimeSettings", "tags": ["admin"],
                "summary": "Runtime settings with their values, defaults and bounds (admin).",
                "responses": {"200": json_response("Every runtime setting.", ref("RuntimeSettings")), **AUTHED_ERRORS}},
        "patch": {"operationId": "updateRuntimeSettings", "tags": ["admin"],
                  "summary": "Change runtime settings (admin); every process uses them within about a second. "
                             "Audited.",
                  "requestBody": json_body("RuntimeSettingsUpdate"),
                  "responses": {"200": json_response("Every runtime setting, after the change.",
                                                     ref("RuntimeSettings")),
                                **AUTHED_ERRORS, "400": problem_response("Unknown setting or invalid value "
                                                                         "(`errors` lists each field).")}},
    },
}
declare(PATHS, SCHEMAS)
