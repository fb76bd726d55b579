"""The gateway's OpenAPI 3.1 contract (written by hand, kept true by tests) and its human docs page."""

from __future__ import annotations

import html
from functools import cache
from typing import Any

from ces.http.problems import PROBLEMS

DECIMAL = {"type": "string", "pattern": r"^-?(\d+(\.\d*)?|\.\d+)$", "examples": ["100.00"]}
CODE = {"type": "string", "pattern": "^[A-Za-z]{3}$", "examples": ["USD"]}
UPPER_CODE = {"type": "string", "pattern": "^[A-Z]{3}$"}
UUID = {"type": "string", "format": "uuid"}
TIMESTAMP = {"type": "string", "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref("Problem")}}}


def _problems(*statuses: int) -> dict[str, Any]:
    return {str(s): _problem(", ".join(c for c, (st, _) in PROBLEMS.items() if st == s) or "error") for s in statuses}


PAIR_PARAMS = [
    {"name": "base", "in": "path", "required": True, "schema": CODE},
    {"name": "target", "in": "path", "required": True, "schema": CODE},
]

SCHEMAS: dict[str, Any] = {
    "ConversionRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["base_currency", "target_currency", "amount"],
        "properties": {
            "base_currency": CODE,
            "target_currency": CODE,
            "amount": {**DECIMAL, "description": "positive, at most the base currency's minor-unit decimals"},
            "request_id": {**UUID, "description": "idempotency key; or send the Idempotency-Key header"},
        },
    },
    "Conversion": {
        "type": "object",
        "required": [
            "status",
            "audit_id",
            "request_id",
            "rate_id",
            "rate_ids",
            "rate_kind",
            "base_currency",
            "target_currency",
            "input_amount",
            "rate_value",
            "margin",
            "output_amount",
            "converted_at",
        ],
        "properties": {
            "status": {"const": "audited"},
            "audit_id": UUID,
            "request_id": UUID,
            "rate_id": UUID,
            "rate_ids": {"type": "array", "items": UUID, "minItems": 1, "maxItems": 2},
            "rate_kind": {"enum": ["direct", "inverse", "cross"]},
            "base_currency": UPPER_CODE,
            "target_currency": UPPER_CODE,
            "input_amount": DECIMAL,
            "rate_value": DECIMAL,
            "margin": DECIMAL,
            "output_amount": DECIMAL,
            "converted_at": TIMESTAMP,
        },
    },
    "Rejection": {
        "type": "object",
        "required": ["status", "request_id", "reason", "message", "rejected_at"],
        "properties": {
            "status": {"const": "rejected"},
            "request_id": UUID,
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "rejected_at": TIMESTAMP,
        },
    },
    "RateLeg": {
        "type": "object",
        "required": ["rate_id", "base_currency", "target_currency", "rate_value", "provider_name", "published_at"],
        "properties": {
            "rate_id": UUID,
            "base_currency": UPPER_CODE,
            "target_currency": UPPER_CODE,
            "rate_value": DECIMAL,
            "provider_name": {"type": "string"},
            "published_at": TIMESTAMP,
            "fetched_at": TIMESTAMP,
        },
    },
    "Rate": {
        "type": "object",
        "required": [
            "base_currency",
            "target_currency",
            "rate_value",
            "kind",
            "rate_id",
            "rate_ids",
            "provider_name",
            "published_at",
            "fetched_at",
            "age_seconds",
            "legs",
        ],
        "properties": {
            "base_currency": UPPER_CODE,
            "target_currency": UPPER_CODE,
            "rate_value": DECIMAL,
            "kind": {"enum": ["direct", "inverse", "cross"]},
            "rate_id": UUID,
            "rate_ids": {"type": "array", "items": UUID},
            "provider_name": {"type": "string"},
            "published_at": TIMESTAMP,
            "fetched_at": TIMESTAMP,
            "age_seconds": {"type": "integer"},
            "legs": {"type": "array", "items": _ref("RateLeg")},
        },
    },
    "RatesTable": {
        "type": "object",
        "required": ["base_currency", "rates", "missing"],
        "properties": {
            "base_currency": UPPER_CODE,
            "rates": {"type": "object", "additionalProperties": _ref("Rate")},
            "missing": {"type": "array", "items": UPPER_CODE},
        },
    },
    "RateHistory": {
        "type": "object",
        "required": ["base_currency", "target_currency", "items", "next"],
        "properties": {
            "base_currency": UPPER_CODE,
            "target_currency": UPPER_CODE,
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["rate_value", "kind", "published_at", "rate_ids", "legs"],
                    "properties": {
                        "rate_value": DECIMAL,
                        "kind": {"enum": ["direct", "inverse", "cross"]},
                        "published_at": TIMESTAMP,
                        "rate_ids": {"type": "array", "items": UUID},
                        "legs": {"type": "array", "items": _ref("RateLeg")},
                    },
                },
            },
            "next": {"type": ["string", "null"], "description": "URL of the next page, null on the last"},
        },
    },
    "Currencies": {
        "type": "object",
        "required": ["currencies"],
        "properties": {
            "currencies": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["code", "name", "minor_units"],
                    "properties": {"code": UPPER_CODE, "name": {"type": "string"}, "minor_units": {"type": "integer"}},
                },
            }
        },
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "code"],
        "properties": {
            "type": {"type": "string", "description": "/problems/<code>"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"enum": sorted(PROBLEMS)},
            "request_id": UUID,
        },
    },
    "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
}


@cache
def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/conversions": {
            "post": {
                "summary": "Convert an amount (waits for the audited result)",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False, "schema": UUID}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ConversionRequest")}},
                },
                "responses": {
                    "201": {
                        **_json(_ref("Conversion"), "Converted; Location names the audit"),
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    **_problems(400, 404, 409, 413, 415, 422, 503, 504),
                },
            }
        },
        "/v1/conversions/{audit_id}": {
            "get": {
                "summary": "One audited conversion",
                "parameters": [{"name": "audit_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json(_ref("Conversion"), "The audit"), **_problems(404)},
            }
        },
        "/v1/conversion-requests/{request_id}": {
            "get": {
                "summary": "The decision for a request id (audit or rejection)",
                "parameters": [{"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": _json({"oneOf": [_ref("Conversion"), _ref("Rejection")]}, "The decision"),
                    **_problems(404),
                },
            }
        },
        "/v1/rates": {
            "get": {
                "summary": "Latest rates for a base currency",
                "parameters": [
                    {"name": "base", "in": "query", "required": False, "schema": CODE},
                    {"name": "symbols", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
                "responses": {"200": _json(_ref("RatesTable"), "The table"), **_problems(422)},
            }
        },
        "/v1/rates/{base}/{target}": {
            "get": {
                "summary": "Latest rate of any pair, with the rows it came from",
                "parameters": PAIR_PARAMS,
                "responses": {"200": _json(_ref("Rate"), "The rate"), **_problems(404, 422)},
            }
        },
        "/v1/rates/{base}/{target}/history": {
            "get": {
                "summary": "Immutable rate history of a pair, oldest first, paginated",
                "parameters": [
                    *PAIR_PARAMS,
                    {"name": "start", "in": "query", "required": True, "schema": {"type": "string", "format": "date"}},
                    {"name": "end", "in": "query", "required": True, "schema": {"type": "string", "format": "date"}},
                    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}},
                    {"name": "after", "in": "query", "required": False, "schema": TIMESTAMP},
                ],
                "responses": {"200": _json(_ref("RateHistory"), "One page"), **_problems(422)},
            }
        },
        "/v1/currencies": {
            "get": {"summary": "Currencies CES can convert", "responses": {"200": _json(_ref("Currencies"), "List")}}
        },
        "/healthz": {"get": {"summary": "Process is up", "responses": {"200": _json(_ref("Status"), "Up")}}},
        "/readyz": {
            "get": {
                "summary": "Kafka, PostgreSQL and Redis reachable",
                "responses": {"200": _json(_ref("Status"), "Ready"), **_problems(503)},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {"description": "text format", "content": {"text/plain": {"schema": {"type": "string"}}}}
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CES gateway",
            "version": "1",
            "description": "Currency conversions over HTTP. Money and rates are decimal strings. Errors are "
            "application/problem+json (RFC 9457) with a stable `code`.",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }


def docs_html() -> str:
    doc = openapi_document()
    rows = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            statuses = ", ".join(op["responses"])
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}</td><td>{statuses}</td></tr>"
            )
    problems = "".join(
        f"<tr><td><code>/problems/{code}</code></td><td>{status}</td><td>{html.escape(title)}</td></tr>"
        for code, (status, title) in PROBLEMS.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>CES gateway</title></head><body>"
        "<h1>CES gateway</h1><p>Machine-readable contract: <a href='/openapi.json'>/openapi.json</a> "
        "(OpenAPI 3.1). Money and rates are decimal strings.</p>"
        "<h2>Endpoints</h2><table border='1' cellpadding='4'><tr><th>method</th><th>path</th><th>what</th>"
        f"<th>statuses</th></tr>{''.join(rows)}</table>"
        "<h2>Problems</h2><table border='1' cellpadding='4'><tr><th>type</th><th>status</th><th>title</th></tr>"
        f"{problems}</table></body></html>"
    )
