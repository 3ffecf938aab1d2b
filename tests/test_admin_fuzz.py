"""The admin API fuzzed against its own OpenAPI document (no 5xx for any input).

Schemathesis loads `/api/v1/openapi.json` from the app itself (in-process WSGI, no server) and, for
every documented operation, sends the document's examples, boundary and malformed values (the coverage
phase: empty, too long, wrong type, NUL characters, huge integers...) and random valid and invalid
requests (the fuzzing phase). Every response is checked: never a 5xx, and the status code, content
type, headers and body are the ones the document promises; a protected operation is also replayed
without a token (must be 401) and with undocumented methods (must be 405 with `Allow`). A failure
prints a `curl` line that reproduces it.

Each case is sent as every role its operation admits (admin; support and/or a sponsor user of sponsor
1), a public operation without a token. Tokens come from the normal login, once; logout and refresh
only ever see random refresh tokens and no access token (logout would revoke one it is sent with). The rate
limits are raised through the settings. Seeded first, so the document's path examples (id 1, code
AGRI-7KQ3-M9XP, job analysis-2, tier M) hit real rows: sponsors 1 (L package) and 2 (S package) with
codes, farmer 1 with messages, an analysis paid for by sponsor 1's redeemed code and its charge, a
purchase request of sponsor 1, a failed analysis with its failed job, and another failed job.

Schemathesis' own strings hold no lone surrogates and its numbers stay within a float, so two more
sources of hostile input: the `date-time`, `date` and `email` formats are registered with strategies that
also produce the ends of the calendar in far-away offsets and addresses with NUL; and
`test_hostile_values_in_any_documented_operation_are_4xx_never_5xx` sends every documented operation bodies
and query strings from tests/hostile.py (surrogates, NUL, nesting beyond any limit, numbers beyond a float).

Bounded for CI: `FUZZ_EXAMPLES` random cases per operation (default 8; the examples and coverage
phases add their own), derandomized with a fixed seed (`FUZZ_SEED`), so every run sends the same
requests. Longer locally: `FUZZ_EXAMPLES=500 .venv/bin/pytest tests/test_admin_fuzz.py -q`;
`FUZZ_STATS=/tmp/fuzz.json` writes how many requests each operation, role and status got.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rq import SimpleWorker
from rq.registry import FailedJobRegistry
from schemathesis.config import SchemathesisConfig
from sqlalchemy import update

from app import create_app
from models import Analysis, AnalysisStatus, Farmer, Message, SponsorCode, utcnow
from services import quota, sponsorship
from services.queue import get_queue
from tests.admin_helpers import bearer, login, make_staff
from tests.helpers import clean_stores, make_settings
from tests.hostile import any_dates, hostile_headers, hostile_values, raw_json

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20261122"))
NO_LIMITS = {"ADMIN_REQUESTS_PER_MINUTE": 10**9, "ADMIN_LOGIN_FAILURES_PER_ACCOUNT": 10**9,
             "ADMIN_LOGIN_FAILURES_PER_IP": 10**9}
PHONE = "+905321234567"
EXAMPLE_CODE = "AGRI-7KQ3-M9XP"
STATUSES: Counter[tuple[str, str, int]] = Counter()


def always_fails(value: int) -> None:
    """A job for the failed-job registry (RQ imports it by name)."""
    raise RuntimeError(f"seeded failure {value}")


def _fail_job(app: Flask, queue: str, job_id: str) -> None:
    redis = app.extensions["redis"]
    get_queue(queue, redis).enqueue("tests.test_admin_fuzz.always_fails", 1, job_id=job_id)
    SimpleWorker([get_queue(queue, redis)], connection=redis).work(burst=True)
    assert job_id in FailedJobRegistry(queue=get_queue(queue, redis))


def seed(app: Flask) -> None:
    """Sponsor 1 (L) and 2 (S) with codes; farmer 1 with messages, analyses, a charge and a redeemed code;
    a failed analysis job and a failed plain job."""
    now = utcnow()
    with app.extensions["db"].session() as s, s.begin():
        quota.seed_tiers(s)
        first = sponsorship.create_sponsor(s, "Anadolu Tohum", contact_email="info@anadolu.test")
        second = sponsorship.create_sponsor(s, "Bereket Gübre")
        _, codes = sponsorship.create_purchase(s, first.id, "L", 5, 90, 30, now)
        sponsorship.create_purchase(s, second.id, "S", 3, 90, 30, now)
        farmer = Farmer(phone=PHONE, profile_name="Mehmet Yılmaz", created_at=now, updated_at=now)
        s.add(farmer)
        s.flush()
        quota.start_trial(s, farmer.id, now)
        paid = sponsorship.redeem(s, farmer.id, sorted(codes)[0], now)
        request = sponsorship.file_purchase_request(s, first.id, "XL", 2, 90, 30, "fuzz", None, now)
        inbound = Message(direction="in", wamid="wamid.fuzz-in", phone=PHONE, farmer_id=farmer.id, type="text",
                          text="Merhaba, domatesimde leke var", status="processed", created_at=now)
        outbound = Message(direction="out", wamid="wamid.fuzz-out", phone=PHONE, farmer_id=farmer.id, type="text",
                           text="Fotoğraf gönderin", status="failed", error_code=131047,
                           error_title="Re-engagement message", created_at=now + timedelta(seconds=1))
        s.add_all([inbound, outbound])
        s.flush()
        completed = Analysis(farmer_id=farmer.id, sponsor_id=first.id, subscription_id=paid.subscription_id,
                             message_id=inbound.id, crop="domates",
                             status=AnalysisStatus.COMPLETED.value, health_score=4, primary_concern="Erken yanıklık",
                             diseases=[{"type": "Alternaria solani"}], pests=[],
                             result={"summary": {"overall_health_score": 4}}, created_at=now, received_at=now,
                             completed_at=now)
        failed = Analysis(farmer_id=farmer.id, crop="biber", status=AnalysisStatus.FAILED.value,
                          failure_reason="photo unreadable", created_at=now, received_at=now, failed_at=now)
        s.add_all([completed, failed])
        s.flush()
        quota.charge(s, farmer.id, now, analysis_id=completed.id)
        # The document's path examples name these rows: sponsor, farmer and analysis 1, code
        # AGRI-7KQ3-M9XP, job analysis-2, tier M; the examples phase and the coverage phase start there.
        assert (first.id, farmer.id, completed.id, failed.id, request.id) == (1, 1, 1, 2, 1)
        s.execute(update(SponsorCode).where(SponsorCode.code == sorted(codes)[1]).values(code=EXAMPLE_CODE))
    _fail_job(app, "analysis", "analysis-2")
    _fail_job(app, "default", "fuzz-failed-job")


# Hostile values inside the formats the document uses, so schemathesis' run sends them too.
schemathesis.openapi.format("date-time", st.datetimes(timezones=st.just(UTC)).map(
    lambda d: d.isoformat().replace("+00:00", "Z")) | any_dates)
schemathesis.openapi.format("date", st.dates().map(str) | st.sampled_from(["0001-01-01", "9999-12-31"]))
# Only NUL here: schemathesis' negative mode validates what it generates with a validator that cannot
# encode a lone surrogate (it raises before any request); surrogates in an address are sent by
# `test_a_lone_surrogate_or_nul_in_any_body_field_is_a_400_naming_it` and the hostile requests below.
schemathesis.openapi.format("email", st.emails() | st.builds(lambda before: f"info{before}\x00@anadolu.test",
                                                               st.text(max_size=6)))

# An app only to read the OpenAPI document and the routes' roles from at collection time (no database).
DOCUMENT_APP = create_app(make_settings("sqlite://"))


def _roles_by_operation(app: Flask) -> dict[str, tuple[str, ...]]:
    """`"GET /api/v1/sponsors/{sponsor_id}"` -> the roles its view admits (empty for a public one)."""
    roles = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            roles[f"{method} {path}"] = tuple(getattr(app.view_functions[rule.endpoint], "required_roles", ()))
    return roles


ROLES_BY_OPERATION = _roles_by_operation(DOCUMENT_APP)


# Valid and invalid inputs ("all"); every check schemathesis has runs except the two that judge the
# request schemas' precision: `positive_data_acceptance` (a 400 for input the document admits: our rules
# that JSON Schema cannot say, e.g. `until` later than `since`, an active tier, a sponsor that exists) and
# `negative_data_rejection` (a 2xx for input the document forbids: the API trims whitespace and takes
# `1` for `1.0`). What matters here is the answer: never a 5xx, and the documented status, content
# type, headers and body; plus 401 without a token and 405 with `Allow` for undocumented methods.
CONFIG = SchemathesisConfig.from_dict({
    "seed": FUZZ_SEED,
    "generation": {"mode": "all", "max-examples": FUZZ_EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {"stateful": {"enabled": False}},
    "checks": {"positive_data_acceptance": {"enabled": False}, "negative_data_rejection": {"enabled": False}},
})
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", DOCUMENT_APP, config=CONFIG)


@pytest.fixture(scope="module")
def fuzz_app(database_url: str) -> Iterator[Flask]:
    """One seeded app for the whole module, with the rate limits out of the way (thousands of requests a
    minute from one user and from one IP)."""
    app = create_app(make_settings(database_url, **NO_LIMITS))
    clean_stores(app)
    with app.app_context():
        seed(app)
        yield app
    app.extensions["db"].engine.dispose()
    if os.environ.get("FUZZ_STATS"):  # where the fuzz went: operation, caller, status -> requests
        rows = [{"operation": op, "caller": role, "status": status, "requests": n}
                for (op, role, status), n in sorted(STATUSES.items())]
        Path(os.environ["FUZZ_STATS"]).write_text(json.dumps(rows, indent=1))


@pytest.fixture(scope="module")
def tokens(fuzz_app: Flask) -> dict[str, dict[str, str]]:
    """Bearer headers from the normal login, per role (the sponsor user belongs to sponsor 1)."""
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    for role in ("admin", "sponsor", "support"):
        email = f"{role}@fuzz.test"
        make_staff(fuzz_app, role, email, sponsor_id=1 if role == "sponsor" else None)
        response = login(fuzz_app.test_client(), email)
        assert response.status_code == 200, response.get_json()
        headers[role] = bearer(response.get_json()["access_token"])
    return headers


def test_the_fuzzed_document_is_the_one_the_app_serves(fuzz_app: Flask) -> None:
    served = fuzz_app.test_client().get("/api/v1/openapi.json").get_json()
    assert served == schema.raw_schema


@schema.parametrize()
def test_api_answers_as_documented(case: schemathesis.Case, fuzz_app: Flask, tokens: dict[str, dict[str, str]]) -> None:
    """Each case is sent as every role the operation admits (a public one: without a token). A role it
    does not admit gets a 403 before the input is read (each admin test file's role test), and schemathesis'
    `ignored_auth` check replays protected cases without a token and with a wrong one (401)."""
    for role in ROLES_BY_OPERATION[case.operation.label] or ("anonymous",):
        response = case.call_and_validate(app=fuzz_app, headers=tokens[role])
        STATUSES[(case.operation.label, role, response.status_code)] += 1


def test_the_tokens_survived_the_fuzzing(fuzz_app: Flask, tokens: dict[str, dict[str, str]]) -> None:
    """Runs after the fuzzing: had a fuzzed call revoked or outdated a token, the cases after it would
    only have seen 401s."""
    client = fuzz_app.test_client()
    assert client.get("/api/v1/staff", headers=tokens["admin"]).status_code == 200
    assert client.get("/api/v1/messages", headers=tokens["support"]).status_code == 200
    assert client.get("/api/v1/sponsors/1/codes", headers=tokens["sponsor"]).status_code == 200


# --- regressions: what the fuzzing found --------------------------------------------------------------

BEYOND_INTEGER = 2**31  # one past PostgreSQL's INTEGER: these ids once reached the database -> 500


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/api/v1/analyses/{id}", None),
    ("GET", "/api/v1/farmers/{id}/messages", None),
    ("GET", "/api/v1/farmers/{id}/ledger", None),
    ("GET", "/api/v1/farmers/{id}/subscription", None),
    ("POST", "/api/v1/farmers/{id}/subscriptions", {"tier_code": "M", "days": 30}),
    ("GET", "/api/v1/sponsors/{id}", None),
    ("PATCH", "/api/v1/sponsors/{id}", {"name": "Yeni Ad"}),
    ("POST", "/api/v1/sponsors/{id}/purchases", {"tier": "M", "quantity": 1}),
    ("GET", "/api/v1/sponsors/{id}/purchase-requests", None),
    ("GET", "/api/v1/sponsors/1/purchase-requests/{id}", None),
    ("POST", "/api/v1/purchase-requests/{id}/approve", None),
    ("POST", "/api/v1/purchase-requests/{id}/reject", {"reason": "Ödeme yok"}),
    ("GET", "/api/v1/sponsors/{id}/codes", None),
    ("GET", "/api/v1/sponsors/{id}/codes.csv", None),
    ("POST", f"/api/v1/sponsors/{{id}}/codes/{EXAMPLE_CODE}/revoke", None),
    ("GET", "/api/v1/sponsors/{id}/statistics", None),
    ("GET", "/api/v1/sponsors/{id}/analyses", None),
    ("GET", "/api/v1/sponsors/1/analyses/{id}", None),
])
@pytest.mark.parametrize("row_id", [BEYOND_INTEGER, 2**63 - 1, 2**64])
def test_ids_beyond_the_integer_columns_are_404(fuzz_app: Flask, tokens: dict[str, dict[str, str]], method: str,
                                                path: str, body: dict[str, object] | None, row_id: int) -> None:
    """Found on PostgreSQL: an id above 2**31 - 1 in the path was a 500 ("integer out of range")."""
    response = fuzz_app.test_client().open(path.format(id=row_id), method=method, json=body,
                                           headers=tokens["admin"])
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(("path", "name"), [("/api/v1/analyses", "farmer_id"), ("/api/v1/audit", "user_id")])
def test_id_filters_beyond_the_integer_columns_are_400(fuzz_app: Flask, tokens: dict[str, dict[str, str]], path: str,
                                                        name: str) -> None:
    response = fuzz_app.test_client().get(path, query_string={name: BEYOND_INTEGER}, headers=tokens["admin"])
    assert response.status_code == 400
    assert [e["field"] for e in response.get_json()["errors"]] == [name]
    assert fuzz_app.test_client().get(path, query_string={name: BEYOND_INTEGER - 1},
                                      headers=tokens["admin"]).get_json()["total"] == 0


def test_an_undocumented_method_is_405_with_allow(fuzz_app: Flask, tokens: dict[str, dict[str, str]]) -> None:
    """Found by the fuzzing: a 405 from routing (e.g. TRACE) had no `Allow` header (RFC 9110 requires one)."""
    response = fuzz_app.test_client().open("/api/v1/sponsors", method="TRACE", headers=tokens["admin"])
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert {m.strip() for m in response.headers["Allow"].split(",")} >= {"GET", "POST"}


# --- hostile input on every documented operation --------------------------------------------------------
# Read from the document, so an operation added later is covered without touching these tests.

DOCUMENT = schema.raw_schema
BODY_METHODS = {"post", "patch", "put"}
# Bare, and inside values that pass each field's own format check (a URL, an email address, a phone number).
HOSTILE_STRINGS = ["\ud800", "lone \udfff low surrogate", "nul\x00inside", "https://logo.test/a\x00.png",
                   "info\x00@anadolu.test", "info\udc80@anadolu.test", "+90212\x001234567"]
# Each overflows once converted to UTC; the same dates in UTC are fine (see the test).
EXTREME_DATES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00.000001+14:00",
                 "9999-12-31T23:59:59.999999-00:01"]


def _operations() -> Iterator[tuple[str, str, dict]]:
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "responses" in operation:
                yield method.upper(), path, operation


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = DOCUMENT["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _url(path: str, operation: dict, **values: str) -> str:
    """The path with each parameter replaced by `values` or else the document's example."""
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            value = values.get(parameter["name"], parameter.get("example", 1))
            path = path.replace("{" + parameter["name"] + "}", str(value))
    return path


def _caller(method: str, path: str, tokens: dict[str, dict[str, str]]) -> dict[str, str]:
    roles = ROLES_BY_OPERATION[f"{method} {path}"]
    return tokens["admin" if "admin" in roles else roles[0]] if roles else {}


def _body_fields(operation: dict) -> list[str]:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    return sorted(_resolve(content.get("schema", {})).get("properties", {})) or ["anything"]


BODY_FIELDS = [(m, p, f) for m, p, op in _operations() if m.lower() in BODY_METHODS and "requestBody" in op
               for f in _body_fields(op)]
BODY_OPERATIONS = sorted({(m, p) for m, p, _ in BODY_FIELDS})
DATE_FILTERS = [(p, q["name"]) for m, p, op in _operations() if m == "GET"
                for q in op.get("parameters", []) if q["in"] == "query" and q["schema"].get("format") == "date-time"]
QUERY_PARAMS = [(p, q["name"]) for m, p, op in _operations() if m == "GET"
                for q in op.get("parameters", []) if q["in"] == "query"]
STRING_PATH_PARAMS = [(m, p, q["name"]) for m, p, op in _operations() for q in op.get("parameters", [])
                      if q["in"] == "path" and "string" in str(q["schema"].get("type"))]


def _operation(method: str, path: str) -> dict:
    return DOCUMENT["paths"][path][method.lower()]


def _is_problem(response, status: int) -> bool:
    return response.status_code == status and response.mimetype == "application/problem+json"


def test_the_hostile_input_tests_cover_the_api():
    """Guards the guards: the lists above come from the document, so they must not be empty."""
    assert {("POST", "/api/v1/auth/login"), ("POST", "/api/v1/sponsors"), ("PATCH", "/api/v1/settings")} <= set(
        BODY_OPERATIONS)
    assert {p for p, _ in DATE_FILTERS} >= {"/api/v1/analyses", "/api/v1/messages",
                                            "/api/v1/sponsors/{sponsor_id}/analyses"}
    assert ("POST", "/api/v1/sponsors/{sponsor_id}/codes/{code}/revoke", "code") in STRING_PATH_PARAMS


@pytest.mark.parametrize("text", HOSTILE_STRINGS, ids=["surrogate", "low-surrogate", "nul", "nul-url", "nul-email",
                                                         "surrogate-email", "nul-phone"])
@pytest.mark.parametrize(("method", "path", "field"), BODY_FIELDS)
def test_a_lone_surrogate_or_nul_in_any_body_field_is_a_400_naming_it(
        fuzz_app: Flask, tokens: dict[str, dict[str, str]], method: str, path: str, field: str, text: str) -> None:
    """Found by the adversarial review: a lone surrogate was a 500 where a value is hashed or written (login,
    refresh, logout, sponsors...), and NUL a 500 on PostgreSQL (sponsor logo_url, contact_email...).
    Also inside a nested value, and in a key."""
    url = _url(path, _operation(method, path))
    for body in ({field: text}, {field: [text]}, {field: {text: 1}}):
        raw = json.dumps(body).encode()  # `\ud800` and `\u0000` escapes: valid JSON, no storable string
        response = fuzz_app.test_client().open(url, method=method, data=raw, content_type="application/json",
                                               headers=_caller(method, path, tokens))
        assert _is_problem(response, 400), (body, response.status_code, response.get_data(as_text=True)[:300])
        assert field in [e["field"] for e in response.get_json().get("errors", [])], response.get_json()


@pytest.mark.parametrize("raw", [
    b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # beyond Python's own recursion limit
    b'{"x": ' + b"[" * 65 + b"]" * 65 + b"}",  # beyond the depth guard
    b'{"x": 1e400}', b'{"x": -1e400}', b'{"x": NaN}', b'{"x": Infinity}',
    b'{"x": 1' + b"0" * 5000 + b"}",  # more digits than Python converts
    b'{"x": "\xff\xfe"}',  # not UTF-8
], ids=["deeper-than-python", "deeper-than-64", "1e400", "-1e400", "nan", "infinity", "5000-digits", "not-utf8"])
@pytest.mark.parametrize(("method", "path"), BODY_OPERATIONS)
def test_a_body_that_is_not_sound_json_is_a_400_on_every_operation(
        fuzz_app: Flask, tokens: dict[str, dict[str, str]], method: str, path: str, raw: bytes) -> None:
    """Deep nesting was a RecursionError (500) on every operation with a body."""
    response = fuzz_app.test_client().open(_url(path, _operation(method, path)), method=method, data=raw,
                                           content_type="application/json", headers=_caller(method, path, tokens))
    assert _is_problem(response, 400), (response.status_code, response.get_data(as_text=True)[:300])


def test_every_other_route_with_a_body_refuses_deep_nesting_without_a_5xx(fuzz_app: Flask) -> None:
    """The webhooks and the development tools too (whatever their answer otherwise: 400, 401, 403...)."""
    deep = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    client = fuzz_app.test_client()
    checked = []
    for rule in fuzz_app.url_map.iter_rules():
        methods = (rule.methods or set()) & {"POST", "PATCH", "PUT"}
        if not methods or rule.rule.startswith("/api/v1/"):
            continue
        url = re.sub(r"<(?:int:)?[^>]+>", "1", rule.rule)
        for method in methods:
            response = client.open(url, method=method, data=deep, content_type="application/json")
            assert 400 <= response.status_code < 500, (method, url, response.status_code)
            checked.append(url)
    assert "/webhooks/whatsapp" in checked and "/dev/chat/api/text" in checked


@pytest.mark.parametrize("value", EXTREME_DATES)
@pytest.mark.parametrize(("path", "name"), DATE_FILTERS)
def test_extreme_dates_in_a_date_filter_are_a_400_naming_it(
        fuzz_app: Flask, tokens: dict[str, dict[str, str]], path: str, name: str, value: str) -> None:
    """Found by the adversarial review: converting these to UTC overflowed (OverflowError: 500, for every role)."""
    url = _url(path, _operation("GET", path))
    for caller in {role for role in ROLES_BY_OPERATION[f"GET {path}"]}:
        response = fuzz_app.test_client().get(url, query_string={name: value}, headers=tokens[caller])
        assert _is_problem(response, 400), (caller, response.status_code)
        assert [e["field"] for e in response.get_json()["errors"]] == [name]
    in_range = value[:4] + ("-01-01T00:00:00Z" if value.startswith("0001") else "-12-31T23:59:59Z")
    response = fuzz_app.test_client().get(url, query_string={name: in_range}, headers=_caller("GET", path, tokens))
    assert response.status_code == 200, in_range  # the ends of the range themselves are dates like any other


@pytest.mark.parametrize(("path", "name"), QUERY_PARAMS)
def test_nul_in_any_query_parameter_is_a_400(fuzz_app: Flask, tokens: dict[str, dict[str, str]], path: str,
                                             name: str) -> None:
    url = _url(path, _operation("GET", path))
    response = fuzz_app.test_client().get(url, query_string={name: "a\x00b"}, headers=_caller("GET", path, tokens))
    assert _is_problem(response, 400), response.status_code


@pytest.mark.parametrize(("method", "path", "name"), STRING_PATH_PARAMS)
def test_nul_in_a_path_parameter_is_a_404(fuzz_app: Flask, tokens: dict[str, dict[str, str]], method: str,
                                          path: str, name: str) -> None:
    """PostgreSQL cannot compare a string with NUL in it: no row can match, so it is not found (was a 500)."""
    operation = _operation(method, path)
    url = _url(path, operation, **{name: "M%00X"})
    response = fuzz_app.test_client().open(url, method=method, json={}, headers=_caller(method, path, tokens))
    assert _is_problem(response, 404), (url, response.status_code)


# --- hostile values on every documented operation (hypothesis, beside schemathesis) ----------------------

OPERATIONS = sorted((m, p) for m, p, _ in _operations())
query_values = any_dates | st.text(max_size=10) | st.text(max_size=5).map(lambda t: t + "\x00") | st.sampled_from(
    ["99999999999999999999", "-1", "1e400", "NaN", str(2**31), str(2**63)])


@st.composite
def hostile_requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes | None]:
    """An operation, its query string and (if it takes one) a body of documented and other fields, where
    each value may be hostile."""
    method, path = draw(st.sampled_from(OPERATIONS))
    operation = _operation(method, path)
    names = [q["name"] for q in operation.get("parameters", []) if q["in"] == "query"]
    query = draw(st.fixed_dictionaries({}, optional={name: query_values for name in names}))
    body = None
    if "requestBody" in operation:
        fields = draw(st.lists(st.sampled_from(_body_fields(operation)) | st.text(max_size=6), max_size=4))
        value = {name: draw(hostile_values | st.text(max_size=20) | st.integers()) for name in fields}
        body = raw_json(draw(st.just(value) | hostile_values))  # a body that is not even an object, too
    return method, path, query, body


@settings(max_examples=25 * FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(request=hostile_requests())
def test_hostile_values_in_any_documented_operation_are_4xx_never_5xx(
        fuzz_app: Flask, tokens: dict[str, dict[str, str]], request: tuple) -> None:
    method, path, query, body = request
    response = fuzz_app.test_client().open(
        _url(path, _operation(method, path)), method=method, query_string=query, data=body,
        content_type="application/json" if body is not None else None, headers=_caller(method, path, tokens))
    assert response.status_code < 500, (method, path, query, (body or b"")[:300])
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"
        assert str(response.status_code) in _operation(method, path)["responses"], (method, path, response.status_code)


# --- hostile headers on every route (the API, the RQ dashboard, the console, the webhooks, the rest) -------


def _routes() -> list[tuple[str, str, str]]:
    """(blueprint, method, url) of every route, its variable parts as 1; POST too, but not the development
    tools' (they act without a login)."""
    routes = set()
    for rule in DOCUMENT_APP.url_map.iter_rules():
        for method in (rule.methods or set()) & {"GET", "POST"}:
            if method == "GET" or not rule.rule.startswith("/dev/"):
                url = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", "1", rule.rule)
                routes.add((rule.endpoint.rpartition(".")[0], method, url))
    return sorted(routes)


ROUTES = [(method, url) for _, method, url in _routes()]
# One route per blueprint and method (they share their sign-in and header handling), and /metrics (its own).
SAMPLE_ROUTES = sorted({*{(bp, method): (method, url) for bp, method, url in reversed(_routes())}.values(),
                        ("GET", "/metrics")})
# What the security probe sent: Latin-1 text where Basic's base64 goes was a 500 on the RQ dashboard.
PROBE_AUTHORIZATION = ["Basic \u00c3\u00a9", "Bearer \u00c3\u00a9", "Basic //79", "Basic ="]


def _refused_properly(method: str, url: str, response) -> None:
    assert response.status_code < 500, (method, url, response.status_code, response.get_data(as_text=True)[:300])
    if url.startswith("/admin/rq/"):
        assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("value", PROBE_AUTHORIZATION)
def test_an_authorization_header_that_cannot_be_decoded_is_refused_on_every_route(fuzz_app: Flask, value: str) -> None:
    assert {("GET", "/admin/rq/"), ("GET", "/metrics"), ("POST", "/api/v1/sponsors")} <= set(ROUTES)  # the app's
    client = fuzz_app.test_client()
    for method, url in ROUTES:
        _refused_properly(method, url, client.open(url, method=method, headers={"Authorization": value}))


@settings(max_examples=25 * FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(headers=hostile_headers)
def test_hostile_headers_are_never_a_5xx(fuzz_app: Flask, headers: dict[str, str]) -> None:
    """Each set of headers on a route of every blueprint: credentials that cannot be decoded, a cookie,
    dates, ranges and languages no client sends."""
    client = fuzz_app.test_client()
    for method, url in SAMPLE_ROUTES:
        _refused_properly(method, url, client.open(url, method=method, headers=headers))
