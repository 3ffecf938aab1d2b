"""Signature version 2 (`services.signing`): the worked example, one test per refusal reason, rotation,
and the `N8N_SECRET` list in the settings; and Meta's `X-Hub-Signature-256`."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from services.signing import (
    HEADER,
    TOLERANCE_SECONDS,
    Purpose,
    Refusal,
    check_body_id,
    mac,
    meta_signature,
    meta_signature_ok,
    sign,
    verify,
)
from settings import SettingsError, check_settings, load_settings
from tests.test_settings import STRONG

SECRET = "test-n8n-secret-0123456789"
OLD = "old-n8n-secret-0123456789"
NOW = 1_767_225_600.0
RAW = json.dumps({"analysis_id": 42, "success": True, "note": "Yapraklarda sarı lekeler"}, ensure_ascii=False).encode()


def check(header: str | None, *, raw: bytes = RAW, purpose: Purpose = Purpose.RESULT, analysis_id: int = 42,
          secrets: tuple[str, ...] = (SECRET,), now: float = NOW) -> Refusal | None:
    return verify(raw, header, purpose=purpose, analysis_id=analysis_id, secrets=secrets, now=now)


def header_for(raw: bytes = RAW, *, purpose: Purpose = Purpose.RESULT, analysis_id: int = 42,
               secrets: tuple[str, ...] = (SECRET,), now: float = NOW) -> str:
    return sign(raw, purpose=purpose, analysis_id=analysis_id, secrets=secrets, now=now)


def test_the_documented_worked_example_signs_and_verifies() -> None:
    # secret s3cret, t 1767225600, purpose result, id 42, body {"analysis_id":42}
    raw = b'{"analysis_id":42}'
    expected = "f5ad3498e2ba74749d8af776b37ed192126d164effd03253777b28372b6413f6"
    assert hmac.new(b"s3cret", b'1767225600.result.42.{"analysis_id":42}', hashlib.sha256).hexdigest() == expected
    assert mac("s3cret", "1767225600", Purpose.RESULT, 42, raw) == expected
    header = sign(raw, purpose=Purpose.RESULT, analysis_id=42, secrets=("s3cret",), now=1767225600.9)
    assert header == f"t=1767225600,v1={expected}"
    assert verify(raw, header, purpose=Purpose.RESULT, analysis_id=42, secrets=("s3cret",), now=1767225600) is None
    assert HEADER == "X-ZiraAI-Signature"


def test_a_good_signature_is_accepted_across_the_whole_tolerance() -> None:
    header = header_for()
    for now in (NOW, NOW - TOLERANCE_SECONDS, NOW + TOLERANCE_SECONDS):
        assert check(header, now=now) is None
    assert check(header.upper().replace("T=", "t=").replace("V1=", "v1=")) is None  # hex case does not matter
    assert check(header.replace(",", " , ")) is None  # spaces around the parts


def test_a_missing_header_is_refused() -> None:
    assert check(None) is Refusal.MISSING
    assert check("") is Refusal.MISSING
    assert check("   ") is Refusal.MISSING


@pytest.mark.parametrize("header", [
    "sha256=" + "0" * 64,  # version 1
    f"t={int(NOW)}",  # no MAC
    "v1=" + "0" * 64,  # no time
    f"t=soon,v1={'0' * 64}",
    f"t=-5,v1={'0' * 64}",
    f"t={int(NOW)},t={int(NOW)},v1={'0' * 64}",  # two times
    f"t={int(NOW)},v1=abc",
    f"t={int(NOW)},v1={'g' * 64}",
    f"t={int(NOW)},v1={'0' * 64}x",
    f"t={int(NOW)},v1={'ğ' * 64}",  # non-ASCII: refused, no exception
    f"t={int(NOW)};v1={'0' * 64}",
    f"t={int(NOW)}," + ",".join(["v1=" + "0" * 64] * 9),  # more MACs than any rotation needs
    "t=1" + "0" * 20 + ",v1=" + "0" * 64,  # a time no clock reaches
])
def test_a_malformed_header_is_refused(header: str) -> None:
    assert check(header) is Refusal.MALFORMED


def test_unknown_keys_beside_v1_are_ignored() -> None:
    assert check(header_for() + ",v2=something-newer") is None


@pytest.mark.parametrize("age", [TOLERANCE_SECONDS + 1, -(TOLERANCE_SECONDS + 1), 86_400, -86_400])
def test_a_stale_signature_is_refused_in_both_directions(age: int) -> None:
    header = header_for(now=NOW - age)  # age < 0: signed in the future
    assert check(header) is Refusal.STALE


def test_our_own_request_replayed_as_a_result_is_the_wrong_purpose() -> None:
    request = header_for(purpose=Purpose.REQUEST)
    assert check(request, purpose=Purpose.RESULT) is Refusal.WRONG_PURPOSE
    assert check(header_for(), purpose=Purpose.REQUEST) is Refusal.WRONG_PURPOSE  # and the other way round


def test_a_result_for_analysis_7_posted_for_analysis_8_is_the_wrong_id() -> None:
    raw = json.dumps({"analysis_id": 7, "success": True}).encode()
    captured = header_for(raw, analysis_id=7)
    assert check(captured, raw=raw, analysis_id=7) is None
    assert check(captured, raw=raw, analysis_id=8) is Refusal.WRONG_ID


@pytest.mark.parametrize(("body", "refusal"), [
    ({"analysis_id": 42}, None),
    ({"analysis_id": "42"}, None),  # the decimal id as a string, as some workflows echo it
    ({"analysis_id": 7}, Refusal.WRONG_ID),
    ({"analysis_id": "042x"}, Refusal.WRONG_ID),
    ({"analysis_id": True}, Refusal.WRONG_ID),
    ({"analysis_id": 42.0}, Refusal.WRONG_ID),
    ({}, Refusal.WRONG_ID),
    ([42], Refusal.WRONG_ID),
])
def test_the_body_must_name_the_signed_analysis(body: object, refusal: Refusal | None) -> None:
    assert check_body_id(body, 42) is refusal


@pytest.mark.parametrize("tamper", [
    lambda h: h[:-1] + ("0" if h[-1] != "0" else "1"),  # another MAC
    lambda h: h.replace(f"t={int(NOW)}", f"t={int(NOW) + 1}"),  # another time, same MAC
])
def test_a_wrong_mac_is_refused(tamper) -> None:
    assert check(tamper(header_for())) is Refusal.BAD_MAC
    assert check(header_for(), raw=RAW + b" ") is Refusal.BAD_MAC  # another body
    assert check(header_for(secrets=("another-secret-0123456789",))) is Refusal.BAD_MAC


def test_a_receiver_without_a_secret_refuses_everything() -> None:
    assert check(header_for(), secrets=()) is Refusal.NO_SECRET
    assert check(header_for(), secrets=("",)) is Refusal.NO_SECRET
    with pytest.raises(TypeError):
        check(header_for(), secrets=SECRET)  # type: ignore[arg-type]  # one string is not a list


def test_a_second_v1_may_be_the_one_that_matches() -> None:
    good = header_for().split(",")[1]
    assert check(f"t={int(NOW)},v1={'0' * 64},{good}") is None
    assert check(f"t={int(NOW)},{good},v1={'0' * 64}") is None


def test_rotation_with_a_comma_separated_secret() -> None:
    # 1. The service lists new,old: each of its signatures carries both MACs; a peer with the old one accepts.
    both = header_for(secrets=(SECRET, OLD))
    assert both.count("v1=") == 2 and both.split(",")[1] == header_for().split(",")[1]  # the new one first
    assert check(both, secrets=(OLD,)) is None
    # 2. The peer moved to the new secret: the service, still listing both, accepts it.
    assert check(header_for(), secrets=(SECRET, OLD)) is None
    assert check(header_for(secrets=(OLD,)), secrets=(SECRET, OLD)) is None  # and a late one by the old secret
    # 3. The old secret is removed from the list: what it signs is refused.
    assert check(header_for(secrets=(OLD,)), secrets=(SECRET,)) is Refusal.BAD_MAC


def test_sign_refuses_to_sign_without_a_secret() -> None:
    for secrets in ((), ("",), (SECRET, "")):
        with pytest.raises(ValueError):
            sign(RAW, purpose=Purpose.RESULT, analysis_id=42, secrets=secrets, now=NOW)
    with pytest.raises(ValueError):
        sign(RAW, purpose=Purpose.RESULT, analysis_id=42, secrets=SECRET, now=NOW)


# --- N8N_SECRET as a list ---------------------------------------------------------------------------

def test_n8n_secret_may_list_several_secrets() -> None:
    settings = load_settings({"N8N_SECRET": f" {SECRET} , {OLD} ,"}, environ={}, dotenv_path=None)
    assert settings.n8n_secrets == (SECRET, OLD)
    assert load_settings({"N8N_SECRET": SECRET}, environ={}, dotenv_path=None).n8n_secrets == (SECRET,)


def test_production_accepts_a_list_of_strong_secrets() -> None:
    check_settings(load_settings(environ={**STRONG, "N8N_SECRET": f"{STRONG['N8N_SECRET']},{SECRET}"},
                                 dotenv_path=None))


@pytest.mark.parametrize(("value", "problem"), [
    (f"{STRONG['N8N_SECRET']},short-secret", "N8N_SECRET (secret 2 of 2) must be at least 16 characters"),
    (f"dev-n8n-secret,{STRONG['N8N_SECRET']}", "N8N_SECRET (secret 1 of 2) is a default or placeholder value"),
    (f"{STRONG['N8N_SECRET']},change-me-0123456789", "N8N_SECRET (secret 2 of 2) is a default or placeholder"),
    (" , ", "N8N_SECRET is not set"),
])
def test_production_refuses_a_list_with_a_weak_secret(value: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        check_settings(load_settings(environ={**STRONG, "N8N_SECRET": value}, dotenv_path=None))


def test_meta_signature_is_sha256_of_the_raw_body_by_the_app_secret() -> None:
    expected = "sha256=" + hmac.new(b"app-secret", RAW, hashlib.sha256).hexdigest()
    assert meta_signature(RAW, "app-secret") == expected
    assert meta_signature_ok(RAW, expected, "app-secret")
    assert meta_signature_ok(RAW, f"  {expected.upper().replace('SHA256=', 'sha256=')} ", "app-secret")  # case, blanks
    assert meta_signature_ok(RAW, expected, ("new-secret", "app-secret"))  # any one of several
    assert not meta_signature_ok(RAW, expected, "other-secret")
    assert not meta_signature_ok(RAW + b" ", expected, "app-secret")
    assert not meta_signature_ok(RAW, expected.removeprefix("sha256="), "app-secret")
    assert not meta_signature_ok(RAW, "sha256=ünicode", "app-secret")
    assert not meta_signature_ok(RAW, expected, ())
