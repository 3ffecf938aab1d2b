"""A sponsor writes to the farmer of one of its sponsored analyses, if an L or XL code paid for THAT
analysis (`services.visibility`: the same per-analysis tier as what the sponsor sees of it).

Sponsors know farmers only through their analyses (farmer ids are not theirs to see), so the message
is addressed by analysis. The rules are `services.sponsor_messages`': never to a farmer who opted out,
whose number WhatsApp reported unreachable or who stopped marketing messages (409, saying which), not
while Meta has paused, disabled or rejected the template (503: no sponsor message can go), at most
`sponsor_message_daily_cap` a day per farmer by the Istanbul day it reaches them (429 with `Retry-After`),
and held until quiet hours or Meta's marketing pause for the farmer end (the answer's `send_after`).
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from admin import bp
from admin.auth import require_roles
from admin.errors import ApiError, field_error
from admin.openapi import AUTHED_ERRORS, ROW_ID, declare, json_body, json_response, path_param, problem_response, ref
from admin.sponsored_analyses import sponsored_analysis
from admin.sponsors import SPONSOR_ID, own_sponsor
from admin.validation import Body
from models import utcnow
from services import context, runtime_settings
from services.audit import audit
from services.json_input import iso
from services.sponsor_messages import MAX_TEXT, Refusal, queue_sponsor_message
from services.visibility import sees_identity
from services.whatsapp.messages import one_line

NOT_IN_PACKAGE = ("Messaging farmers comes with the L and XL packages; the code that paid for this analysis is from "
                  "the {tier} package.")
FARMER_REFUSALS = {
    Refusal.OPTED_OUT: "This farmer does not receive messages (opted out).",
    Refusal.UNREACHABLE: "WhatsApp reported this farmer's number unreachable: no sponsor message can be sent to it "
                         "until the farmer writes to us again.",
    Refusal.MARKETING_OPT_OUT: "This farmer stopped marketing messages in WhatsApp, so sponsor messages are not sent.",
}
TEMPLATE_BLOCKED = "Sponsor messages cannot be sent at the moment: {reason}. Nothing was queued; try again later."


@bp.post("/sponsors/<int:sponsor_id>/analyses/<int:analysis_id>/message")
@require_roles("admin", "sponsor")
def message_farmer(sponsor_id: int, analysis_id: int) -> tuple[Response, int]:
    body = Body.load()
    text = body.string("text", max_length=2000)
    if text is not None and not 1 <= len(one_line(text)) <= MAX_TEXT:
        body.errors.append(field_error("text", f"must be 1..{MAX_TEXT} characters (line breaks become spaces)"))
    body.refuse_unknown(("text",))
    now = utcnow()
    with context.db().session() as session, session.begin():
        sponsor = own_sponsor(session, sponsor_id)  # 404 before field errors: reveal nothing of others
        analysis, tier = sponsored_analysis(session, sponsor_id, analysis_id)
        if not sees_identity(tier):
            raise ApiError(403, NOT_IN_PACKAGE.format(tier=tier))
        body.raise_if_errors()
        assert text is not None
        result = queue_sponsor_message(session, sponsor.name, analysis.farmer_id, text, now,
                                       runtime_settings.current())
        if result.refusal in FARMER_REFUSALS:
            raise ApiError(409, FARMER_REFUSALS[result.refusal])
        if result.refusal is Refusal.TEMPLATE_BLOCKED:
            assert result.template is not None
            raise ApiError(503, TEMPLATE_BLOCKED.format(reason=result.template.reason))
        if result.refusal is Refusal.DAILY_CAP:
            assert result.retry_after is not None
            wait = max(1, int((result.retry_after - now).total_seconds()))
            raise ApiError(429, f"This farmer already gets {result.daily_cap} sponsor messages on the day this one "
                                "would reach them; try again once that day is over.",
                           headers={"Retry-After": str(wait)})
        audit("sponsor.message.send", "message", result.message_id,
              {"sponsor_id": sponsor_id, "analysis_id": analysis_id, "farmer_id": analysis.farmer_id,
               "chars": len(one_line(text))}, session=session)
    assert result.message_id is not None  # the outbox's senders deliver it (after quiet hours, if need be)
    return jsonify({
        "message_id": result.message_id, "status": "pending", "template": "sponsor_message_tr",
        "send_after": iso(result.send_after),
        "sent_today": result.sent_today, "daily_cap": result.daily_cap,
    }), 202


SCHEMAS: dict[str, Any] = {
    "SponsorMessageRequest": {
        "type": "object", "required": ["text"], "additionalProperties": False,
        "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 2000,
                                "description": f"1..{MAX_TEXT} characters once line breaks and runs of spaces "
                                               "are collapsed (WhatsApp template parameters are one line)."}}},
    "SponsorMessageQueued": {
        "type": "object", "required": ["message_id", "status", "template", "sent_today", "daily_cap"],
        "properties": {"message_id": {"type": "integer"}, "status": {"const": "pending"},
                       "template": {"const": "sponsor_message_tr"},
                       "send_after": {"type": ["string", "null"], "format": "date-time",
                                      "description": "Not sent before this: written in quiet hours, or while "
                                                     "Meta pauses marketing messages to this farmer (after "
                                                     "131049 / 130472); null: sent at once."},
                       "sent_today": {"type": "integer", "description": "The farmer's sponsor messages (all "
                                      "sponsors, this one included) of the Istanbul day this one reaches them: "
                                      "today, or the day `send_after` falls on."},
                       "daily_cap": {"type": "integer"}}},
}

PATHS: dict[str, Any] = {
    "/api/v1/sponsors/{sponsor_id}/analyses/{analysis_id}/message": {
        "post": {
            "operationId": "messageSponsoredFarmer", "tags": ["sponsors"],
            "summary": "Message the farmer of a sponsored analysis with the `sponsor_message_tr` template "
                       "(when an L or XL code paid for that analysis; admin, or the sponsor itself). Audited.",
            "parameters": [SPONSOR_ID, path_param("analysis_id", ROW_ID, 1)],
            "requestBody": json_body("SponsorMessageRequest"),
            "responses": {
                "202": json_response("Queued; sent at once, or at `send_after`.", ref("SponsorMessageQueued")),
                **AUTHED_ERRORS,
                "403": problem_response("The role may not use this endpoint, or the code that paid for this "
                                        "analysis is below L."),
                "404": problem_response("No such sponsor, or not this sponsor's analysis."),
                "409": problem_response("The farmer does not receive sponsor messages; `detail` says why: opted "
                                        "out, number reported unreachable by WhatsApp, or marketing messages "
                                        "stopped in WhatsApp."),
                "503": problem_response("WhatsApp does not allow the `sponsor_message_tr` template now (paused, "
                                        "disabled or rejected: `detail` names it); nothing was queued."),
                "429": {**AUTHED_ERRORS["429"], "description": "The farmer's daily cap of sponsor messages is "
                        "reached on the Istanbul day this one would reach them (`Retry-After`: seconds to the end "
                        "of that day), or the request rate limit."},
            },
        },
    },
}
declare(PATHS, SCHEMAS)
