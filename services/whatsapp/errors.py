"""Typed WhatsApp errors and the policy table (docs/OPERATIONS.md, section 7), keyed by Graph API error code."""

from __future__ import annotations

import enum


class Policy(enum.StrEnum):
    RETRY = "retry"  # throughput limits and transient errors: back off and try again
    RETRY_PAIR = "retry_pair"  # 131056: same farmer too fast; 4^n s backoff
    TEMPLATE = "template"  # 131047: outside the 24 h window; send the matching template instead
    MEDIA = "media"  # 131052/131053: ask the farmer to send the photo again
    FAIL = "fail"  # undeliverable, unsupported: no retry, visible to support
    ALERT = "alert"  # spam limits, template problems: no retry, an operator must look
    HOLD = "hold"  # the account is blocked (payment, integrity, lock): held with every other send until lifted
    AUTH = "auth"  # token invalid/expired: no retry, alert loudly, readiness goes red
    USER_ID = "user_id"  # 131062: a user id is not allowed for this message; the phone instead, if known


POLICY_BY_CODE: dict[int, Policy] = {
    130429: Policy.RETRY,
    4: Policy.RETRY,
    80007: Policy.RETRY,
    131056: Policy.RETRY_PAIR,
    131000: Policy.RETRY,
    131016: Policy.RETRY,
    131057: Policy.RETRY,
    131047: Policy.TEMPLATE,
    131026: Policy.FAIL,
    131051: Policy.FAIL,
    131050: Policy.FAIL,  # the farmer stopped marketing messages
    130472: Policy.FAIL,  # the farmer's number is in one of Meta's experiments: no marketing message now
    131048: Policy.ALERT,
    131049: Policy.ALERT,
    131042: Policy.HOLD,  # payment problem of the business account
    131031: Policy.HOLD,  # business account locked
    368: Policy.HOLD,  # temporarily blocked for policy (integrity) violations
    131052: Policy.MEDIA,
    131053: Policy.MEDIA,
    **{code: Policy.ALERT for code in (132000, 132001, 132005, 132007, 132012, 132015, 132016)},
    131062: Policy.USER_ID,
    0: Policy.AUTH,
    190: Policy.AUTH,
}


class Effect(enum.StrEnum):
    """What a failure says beyond the one message (the same whether Graph answered with it or a `failed`
    status brought it later); services/whatsapp/failures.py acts on each."""

    UNREACHABLE = "unreachable"  # the number cannot receive WhatsApp messages: no more proactive sends
    MARKETING_PAUSED = "marketing_paused"  # Meta's per-user marketing limit or experiment: none for a while
    MARKETING_OPT_OUT = "marketing_opt_out"  # the farmer stopped marketing messages in WhatsApp
    PACE = "pace"  # too many messages to this farmer: at most one per PACE_SECONDS for a while
    TEMPLATE_BLOCKED = "template_blocked"  # the template is paused or disabled: stop using it, alert
    ACCOUNT_BLOCKED = "account_blocked"  # payment, integrity or lock: stop sending, alert


EFFECT_BY_CODE: dict[int, Effect] = {
    131026: Effect.UNREACHABLE,
    131049: Effect.MARKETING_PAUSED,
    130472: Effect.MARKETING_PAUSED,
    131050: Effect.MARKETING_OPT_OUT,
    131056: Effect.PACE,
    132015: Effect.TEMPLATE_BLOCKED,
    132016: Effect.TEMPLATE_BLOCKED,
    131042: Effect.ACCOUNT_BLOCKED,
    368: Effect.ACCOUNT_BLOCKED,
    131031: Effect.ACCOUNT_BLOCKED,
}


def policy_for(code: int | None, http_status: int | None) -> Policy:
    if code is not None and code in POLICY_BY_CODE:
        return POLICY_BY_CODE[code]
    if http_status is None or http_status >= 500 or http_status == 429:
        return Policy.RETRY  # network errors, 5xx and unknown throttling are transient
    return Policy.FAIL  # any other 4xx: our request is wrong; retrying will not help


class WhatsAppError(Exception):
    """Base for everything the WhatsApp client raises."""


class LimitError(WhatsAppError, ValueError):
    """A message breaks one of Meta's limits; raised before any HTTP call."""

    def __init__(self, field: str, limit: str, actual: object) -> None:
        super().__init__(f"{field}: {limit} (got {actual!r})")
        self.field = field
        self.limit = limit
        self.actual = actual


class GraphAPIError(WhatsAppError):
    def __init__(self, code: int | None, title: str, http_status: int | None = None,
                 subcode: int | None = None, details: str | None = None) -> None:
        super().__init__(f"Graph API error {code} (HTTP {http_status}): {title}")
        self.code = code
        self.title = title
        self.http_status = http_status
        self.subcode = subcode
        self.details = details
        self.policy = policy_for(code, http_status)

    @property
    def retryable(self) -> bool:
        return self.policy in (Policy.RETRY, Policy.RETRY_PAIR)

    @property
    def needs_template(self) -> bool:
        return self.policy is Policy.TEMPLATE


class MediaError(WhatsAppError):
    """A media file could not be fetched or is not acceptable (too large, checksum mismatch)."""
