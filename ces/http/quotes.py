"""GET /v1/quote: what a conversion would come to, now or at a past `as_of`, priced as one is and recorded nowhere."""

from __future__ import annotations

from datetime import datetime, timedelta

from aiohttp import web

from ces.domain.as_of import AsOfError, parse_as_of
from ces.domain.conversion import Rejection, validate
from ces.domain.money import code_as_typed
from ces.events.base import utc_now
from ces.http.deps import DEPS
from ces.http.problems import problem
from ces.http.schemas import quote_json

REQUIRED = ("base", "target", "amount")


async def get_quote(request: web.Request) -> web.Response:
    """The same validation, lookup, staleness rule, margin and rounding as `POST /v1/conversions`
    (`ConversionDecider.quote`): a quote and a conversion decided at the same instant agree to the digit."""
    deps = request.app[DEPS]
    query = request.query
    # Undeclared and repeated names were refused already (ces.http.query_params).
    missing = [name for name in REQUIRED if not query.get(name)]
    if missing:
        return problem("invalid_request", f"missing query parameter(s): {', '.join(missing)}")
    checked = validate(
        code_as_typed(query["base"]),
        code_as_typed(query["target"]),
        query["amount"],
        max_amount=deps.settings.max_amount,
    )
    if isinstance(checked, Rejection):
        return problem(checked.reason.value, checked.message)
    now = utc_now()
    as_of: datetime | None = None
    if "as_of" in query:
        try:
            as_of = parse_as_of(query["as_of"], now, timedelta(seconds=deps.settings.max_clock_skew_seconds))
        except AsOfError as exc:
            return problem(exc.reason, exc.message)
    if deps.quotes is None:
        return problem("unavailable", "quotes are not configured on this gateway")
    outcome = await deps.quotes.quote(checked, as_of)
    if isinstance(outcome, Rejection):
        return problem(outcome.reason.value, outcome.message)
    body = quote_json(outcome.rate, checked.amount, outcome.margin, outcome.output_amount, now, as_of)
    return web.json_response(body)


QUOTE_ROUTES = [web.get("/v1/quote", get_quote)]
