"""The gateway's OpenAPI 3.1 contract, its schemas generated from the models the handlers use, and its docs page."""

from __future__ import annotations

import html
from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from ces.domain.as_of import AS_OF_DESCRIPTION, AS_OF_SCHEMA_PATTERN
from ces.domain.money import DECIMAL_SCHEMA_PATTERN
from ces.http.auth import ROUTE_SCOPES
from ces.http.problems import PROBLEMS, Problem
from ces.http.schemas import (
    RESPONSE_MODELS,
    SUPPORTED_CODE,
    BatchBody,
    BatchResults,
    Conversion,
    ConversionBody,
    Currencies,
    FluctuationOut,
    Quote,
    RateHistory,
    RateOut,
    RateRow,
    RatesTable,
    RecentConversions,
    Rejection,
    Status,
    TimeSeries,
)

REF = "#/components/schemas/{model}"
UUID = {"type": "string", "format": "uuid"}


def _ref(model: type) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _param(name: str, where: str, schema: dict[str, Any], required: bool = False, **more: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema, **more}


def _ok(status: int, schema: dict[str, Any], description: str, **more: Any) -> dict[str, Any]:
    return {str(status): {"description": description, "content": {"application/json": {"schema": schema}}, **more}}


def _problems(*statuses: int) -> dict[str, Any]:
    return {
        str(s): {
            "description": ", ".join(c for c, (st, _) in PROBLEMS.items() if st == s),
            "content": {"application/problem+json": {"schema": _ref(Problem)}},
        }
        for s in statuses
    }


PAIR = [_param("base", "path", SUPPORTED_CODE), _param("target", "path", SUPPORTED_CODE)]
DAY = {"type": "string", "format": "date"}
RANGE = [
    _param("base", "query", SUPPORTED_CODE),
    _param(
        "symbols", "query", {"type": "array", "items": SUPPORTED_CODE, "maxItems": 200}, style="form", explode=False
    ),
    _param("start", "query", DAY, required=True),
    _param("end", "query", DAY, required=True),
]
RANGE_422 = "422 invalid_range when start is after end or a date is outside 1900-01-01..9998-12-31."


def _series_paths() -> dict[str, Any]:
    return {
        "/v1/timeseries": {
            "get": {
                "summary": "One rate per day per symbol over a range (Fixer's shape), with the rows behind each",
                "description": f"Streamed (chunked) for long ranges. {RANGE_422}",
                "parameters": [*RANGE, _param("provenance", "query", {"type": "boolean", "default": True})],
                "responses": {**_ok(200, _ref(TimeSeries), "The series"), **_problems(422)},
            }
        },
        "/v1/fluctuation": {
            "get": {
                "summary": "First and last rate of each symbol in a range, the change and the change in percent",
                "description": RANGE_422,
                "parameters": RANGE,
                "responses": {**_ok(200, _ref(FluctuationOut), "Per symbol"), **_problems(422)},
            }
        },
        "/v1/rates/stream": {
            "get": {
                "summary": "New rates as server-sent events (ready, rates, dropped, heartbeat)",
                "responses": {
                    "200": {
                        "description": "text/event-stream; each `rates` event's data is {rates: [RateLeg], dropped}",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_problems(503),
                },
            }
        },
        "/v1/rate-rows/{rate_id}": {
            "get": {
                "summary": "One stored rate row by id (revoked or not)",
                "parameters": [_param("rate_id", "path", {"type": "string"})],
                "responses": {**_ok(200, _ref(RateRow), "The row"), **_problems(404)},
            }
        },
    }


PAIR_422 = "422 unsupported_pair when base and target are the same currency (JSON Schema cannot say so)"


def _paths() -> dict[str, Any]:
    return {
        "/v1/conversions": {
            "post": {
                "summary": "Convert an amount (waits for the audited result)",
                "description": "422 when the amount does not fit the base currency (sign, decimals, maximum), "
                "when the currencies are the same, or when neither request_id nor Idempotency-Key is sent.",
                "parameters": [_param("Idempotency-Key", "header", UUID)],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(ConversionBody)}}},
                "responses": {
                    **_ok(
                        201,
                        _ref(Conversion),
                        "Converted; Location names the audit",
                        headers={"Location": {"schema": {"type": "string"}}},
                    ),
                    **_problems(400, 404, 409, 413, 415, 422, 503, 504),
                },
            },
            "get": {
                "summary": "The newest audited conversions, newest first",
                "parameters": [_param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100})],
                "responses": {**_ok(200, _ref(RecentConversions), "Newest first"), **_problems(422)},
            },
        },
        "/v1/conversions/batch": {
            "post": {
                "summary": "Convert many amounts in one request: one result per item, in order",
                "description": "Each item has the fields and rules of POST /v1/conversions and its own request_id "
                "(idempotent per item). An item that breaks them gets that endpoint's problem in its slot "
                "(outcome `refused`) and is not converted. The whole batch is refused, nothing converted, when an "
                "item is not a JSON object (422), a request_id appears twice (422 duplicate_request_id), it has "
                "too many items (413 too_many_items) or too many bytes (413). Charged one rate-limit token per "
                "item. Items undecided within the batch's deadline (CES_GATEWAY_TIMEOUT_SECONDS + items x "
                "CES_GATEWAY_BATCH_SECONDS_PER_ITEM) are `undecided` with a 504 result_timeout problem.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(BatchBody)}}},
                "responses": {
                    **_ok(200, _ref(BatchResults), "One result per item"),
                    **_problems(400, 413, 415, 422),
                },
            }
        },
        "/v1/conversions/{audit_id}": {
            "get": {
                "summary": "One audited conversion",
                "parameters": [_param("audit_id", "path", {"type": "string"})],
                "responses": {**_ok(200, _ref(Conversion), "The audit"), **_problems(404)},
            }
        },
        "/v1/conversion-requests/{request_id}": {
            "get": {
                "summary": "The decision for a request id (audit or rejection)",
                "parameters": [_param("request_id", "path", {"type": "string"})],
                "responses": {
                    **_ok(200, {"oneOf": [_ref(Conversion), _ref(Rejection)]}, "The decision"),
                    **_problems(404),
                },
            }
        },
        "/v1/rates": {
            "get": {
                "summary": "Latest rates for a base currency",
                "parameters": [
                    _param("base", "query", SUPPORTED_CODE),
                    _param(
                        "symbols",
                        "query",
                        {"type": "array", "items": SUPPORTED_CODE, "maxItems": 200},
                        style="form",
                        explode=False,
                    ),
                ],
                "responses": {**_ok(200, _ref(RatesTable), "The table"), **_problems(422)},
            }
        },
        "/v1/rates/{base}/{target}": {
            "get": {
                "summary": "Latest rate of any pair, with the rows it came from",
                "description": PAIR_422,
                "parameters": PAIR,
                "responses": {**_ok(200, _ref(RateOut), "The rate"), **_problems(404, 422)},
            }
        },
        "/v1/rates/{base}/{target}/history": {
            "get": {
                "summary": "Immutable rate history of a pair, oldest first, paginated",
                "description": f"{PAIR_422}; 422 invalid_request when end is before start or past year 9999.",
                "parameters": [
                    *PAIR,
                    _param("start", "query", {"type": "string", "format": "date"}, required=True),
                    _param("end", "query", {"type": "string", "format": "date"}, required=True),
                    _param("limit", "query", {"type": "integer"}),
                    _param("after", "query", {"type": "string", "format": "date-time"}),
                ],
                "responses": {**_ok(200, _ref(RateHistory), "One page"), **_problems(422)},
            }
        },
        "/v1/quote": {
            "get": {
                "summary": "What a conversion would come to, now or as of a past moment; not a conversion of record",
                "description": "Priced exactly as POST /v1/conversions prices (lookup, staleness rule, margin, "
                "rounding) and names the rate rows used, but records nothing: no audit, no request id, "
                "`conversion_of_record` is always false. 422 as for a conversion (unsupported_pair when base and "
                "target are the same, invalid_amount for the amount's sign, decimals and maximum), and "
                "invalid_as_of / as_of_in_future for an as_of that is not a real date or lies after today; "
                "404 no_rate, 409 stale_rate as for a conversion.",
                "parameters": [
                    _param("base", "query", SUPPORTED_CODE, required=True),
                    _param("target", "query", SUPPORTED_CODE, required=True),
                    _param(
                        "amount",
                        "query",
                        {"type": "string", "pattern": DECIMAL_SCHEMA_PATTERN, "examples": ["100.00"]},
                        required=True,
                    ),
                    _param(
                        "as_of",
                        "query",
                        {"type": "string", "pattern": AS_OF_SCHEMA_PATTERN, "examples": ["2008-09-15"]},
                        description=AS_OF_DESCRIPTION,
                    ),
                ],
                "responses": {**_ok(200, _ref(Quote), "The quote"), **_problems(404, 409, 422, 503)},
            }
        },
        "/v1/currencies": {
            "get": {"summary": "Currencies CES can convert", "responses": _ok(200, _ref(Currencies), "List")}
        },
        "/healthz": {"get": {"summary": "Process is up", "responses": _ok(200, _ref(Status), "Up")}},
        "/readyz": {
            "get": {
                "summary": "Kafka, PostgreSQL and Redis reachable",
                "responses": {**_ok(200, _ref(Status), "Ready"), **_problems(503)},
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


@cache
def openapi_document() -> dict[str, Any]:
    models = [
        (ConversionBody, "validation"),
        (BatchBody, "validation"),
        *((m, "serialization") for m in [*RESPONSE_MODELS, Problem]),
    ]
    _, definitions = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CES gateway",
            "version": "1",
            "description": "Currency conversions over HTTP. Money and rates are decimal strings. Errors are "
            "application/problem+json (RFC 9457) with a stable `code`.",
        },
        "paths": _secured({**_paths(), **_series_paths()}),
        "components": {
            "schemas": definitions["$defs"],
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from `ces keys create` (scopes: convert, read)",
                }
            },
        },
    }


def _secured(paths: dict[str, Any]) -> dict[str, Any]:
    """Declare the key each route needs (from the same table the gateway enforces) and its 401/403/429."""
    for path, methods in ROUTE_SCOPES.items():
        for method, scope in methods.items():
            op = paths[path][method.lower()]
            op["security"] = [{"apiKey": []}]
            op["x-ces-scope"] = scope.value
            op["responses"] = {**op["responses"], **_problems(401, 403, 429)}
    return paths


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
