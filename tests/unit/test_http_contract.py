"""The OpenAPI document describes exactly the routes the gateway serves, from the models the handlers use."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from ces.domain.as_of import AS_OF_SCHEMA_PATTERN, read_as_of
from ces.domain.money import DECIMAL_PATTERN, currencies, parse_decimal
from ces.http.app import ALL_ROUTES
from ces.http.openapi import docs_html, openapi_document
from ces.http.problems import PROBLEMS, Problem
from ces.http.schemas import ConversionBody, audit_body, audit_json
from tests.fakes import audited

# The contract and its page describe the API, not part of it; the dashboard is a page that uses it.
UNDOCUMENTED = {"/openapi.json", "/docs", "/", "/dashboard", "/dashboard/static/{name}"}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = openapi_document()["components"]["schemas"]
    return schemas


def test_every_route_is_in_the_openapi_document_and_nothing_else() -> None:
    # A path parameter's pattern (`{audit_id:regex}`) is the router's business: the contract names the parameter.
    routes = [
        (r.method.lower(), re.sub(r"\{(\w+):[^}]*\}", r"{\1}", r.path))  # type: ignore[attr-defined]
        for r in ALL_ROUTES
    ]
    served = {(method, path) for method, path in routes if path not in UNDOCUMENTED}
    documented = {(m, p) for p, ops in openapi_document()["paths"].items() for m in ops}
    assert served == documented


def test_every_schema_reference_resolves() -> None:
    text = str(openapi_document())
    refs = set(re.findall(r"#/components/schemas/(\w+)", text))
    assert refs and refs <= set(_schemas())


def test_problem_schema_lists_every_problem_code_and_the_docs_page_shows_them() -> None:
    schema = _schemas()["Problem"]["properties"]["code"]["enum"]
    assert set(schema) == set(PROBLEMS)
    page = docs_html()
    assert all(f"/problems/{code}" in page for code in PROBLEMS)
    assert openapi_document()["openapi"] == "3.1.0"


def test_the_schemas_are_the_models_json_schemas() -> None:
    assert _schemas()["Problem"] == Problem.model_json_schema(mode="serialization")
    assert _schemas()["ConversionBody"] == ConversionBody.model_json_schema()


def test_every_decimal_pattern_is_the_parsers_pattern() -> None:
    patterns = set(re.findall(r"'pattern': '([^']*)'", str(openapi_document())))
    # The other pattern is as_of's (a date or an RFC 3339 instant), checked below.
    assert patterns == {f"^(?:{DECIMAL_PATTERN})$".replace("\\", "\\\\"), AS_OF_SCHEMA_PATTERN.replace("\\", "\\\\")}
    as_of = re.compile(_schemas()["ConversionBody"]["properties"]["as_of"]["pattern"])
    for text in ["2008-09-15", "2008-09-15T12:00:00Z", "2008-09-15T12:00:00.5+02:00"]:
        assert as_of.search(text) and read_as_of(text)
    for text in ["2008-09-15T12:00:00", "15/09/2008", "2008-09-15 ", "yesterday"]:
        assert not as_of.search(text)
    pattern = re.compile(_schemas()["ConversionBody"]["properties"]["amount"]["pattern"])
    for text in ["1", "-1.5", ".5", "5.", "0.00000012"]:
        assert pattern.search(text) and parse_decimal(text) is not None
    for text in ["1e5", "+1", "１２", "NaN", " 1", "1 ", ""]:
        assert not pattern.search(text)


def test_currency_codes_in_requests_are_the_supported_set_upper_case() -> None:
    supported = sorted(currencies())
    body = _schemas()["ConversionBody"]["properties"]
    assert body["base_currency"]["enum"] == body["target_currency"]["enum"] == supported
    rate = openapi_document()["paths"]["/v1/rates/{base}/{target}"]["get"]
    assert [p["schema"]["enum"] for p in rate["parameters"]] == [supported, supported]
    assert "unsupported_pair" in rate["description"] and "422" in rate["responses"]


def test_every_rejection_reason_is_a_documented_problem() -> None:
    """A rejection's reason is its problem code over HTTP: one vocabulary, no mapping to keep in step."""
    from ces.domain.conversion import RejectionReason
    from ces.http.problems import PROBLEMS

    assert {reason.value for reason in RejectionReason} <= set(PROBLEMS)


@pytest.mark.parametrize("as_of", [None, datetime(2024, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)])
@pytest.mark.parametrize("requested_by", [None, uuid.uuid4()])
def test_the_audit_body_is_the_audit_json_serialized(as_of: datetime | None, requested_by: uuid.UUID | None) -> None:
    # The conversions' responses are serialized by pydantic in one step (`audit_body`); they must say exactly
    # what `audit_json` (the batch slots, the dashboard) says, member by member and in the same order.
    audit = audited(uuid.uuid4(), "EUR", "JPY", Decimal("1234.5")).model_copy(
        update={"as_of": as_of, "requested_by": requested_by, "rate_ids": [uuid.uuid4(), uuid.uuid4()]}
    )
    body = json.loads(audit_body(audit))
    assert list(body.items()) == list(audit_json(audit).items())
    assert "requested_by" not in body and body["status"] == "audited"
