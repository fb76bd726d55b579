"""The OpenAPI document describes exactly the routes the gateway serves, and every problem code."""

from __future__ import annotations

from ces.http.openapi import docs_html, openapi_document
from ces.http.problems import PROBLEMS
from ces.http.routes import ROUTES

UNDOCUMENTED = {"/openapi.json", "/docs"}  # the contract and its page describe the API, not part of it


def test_every_route_is_in_the_openapi_document_and_nothing_else() -> None:
    served = {(r.method.lower(), r.path) for r in ROUTES if r.path not in UNDOCUMENTED}  # type: ignore[attr-defined]
    documented = {(m, p) for p, ops in openapi_document()["paths"].items() for m in ops}
    assert served == documented


def test_problem_schema_lists_every_problem_code_and_the_docs_page_shows_them() -> None:
    schema = openapi_document()["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
    assert set(schema) == set(PROBLEMS)
    page = docs_html()
    assert all(f"/problems/{code}" in page for code in PROBLEMS)
    assert openapi_document()["openapi"] == "3.1.0"
