"""POST /v1/conversions/batch: many conversions in one request, one result per item, in the items' order.

Rules (docs/http.md, "Batches"):
- the body is `{"items": [...]}`, at most `CES_GATEWAY_MAX_BATCH_BODY_BYTES` (413) and
  `CES_GATEWAY_MAX_BATCH_ITEMS` items (413 `too_many_items`); each item is read exactly as the body of
  `POST /v1/conversions` (`read_request`) and needs its own `request_id`. An item that is not a JSON object,
  or a request id given to two items, refuses the whole batch (422): nothing is published.
- an item that breaks the single endpoint's rules gets that endpoint's problem in its slot and is not
  published; the valid ones are published together (`ConversionRequester.convert_many`).
- the API key's rate limit is charged one token per item once the body is a well-formed list of objects,
  before the items are read, so a batch refused for an item (a duplicated id) is charged too (the bucket
  may go into debt for a batch bigger than its burst, so batching is no way around the limit).
- one deadline for the batch: `CES_GATEWAY_TIMEOUT_SECONDS + items * CES_GATEWAY_BATCH_SECONDS_PER_ITEM`;
  an item undecided by then is `result_timeout` (504) in its slot, the others keep their decisions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar
from uuid import UUID

from aiohttp import web

from ces.events.conversions import ConversionRequested
from ces.events.registry import UndecodableEvent, parse_json_object
from ces.http.auth import API_KEY
from ces.http.conversion_input import Refusal, read_request
from ces.http.deps import DEPS, Deps
from ces.http.outcomes import decided_result, refused_result
from ces.http.problems import problem
from ces.metrics import AUTH_REFUSALS, CACHE_ERRORS
from ces.services.ports import CacheUnavailable

log = logging.getLogger(__name__)

BATCH_PATH = "/v1/conversions/batch"
MAX_NAMED = 100  # duplicates or non-object items named in a refusal
SLICE = 500  # items handled between two returns to the event loop
T = TypeVar("T")
R = TypeVar("R")


async def post_conversion_batch(request: web.Request) -> web.StreamResponse:
    deps = request.app[DEPS]
    settings = deps.settings
    if request.content_type != "application/json":
        return problem("invalid_request", "send the body as application/json")
    if "Idempotency-Key" in request.headers:
        return problem("invalid_request", "a batch takes no Idempotency-Key: each item carries its request_id")
    # The app's body limit is the single endpoint's; this route alone reads up to the batch limit.
    raw = await request.clone(client_max_size=settings.gateway_max_batch_body_bytes).read()
    try:
        payload = parse_json_object(raw)
    except UndecodableEvent as exc:
        return problem("malformed_json", f"the body must be a JSON object ({exc.detail})")
    items = payload.get("items")
    if set(payload) != {"items"} or not isinstance(items, list) or not items:
        return problem(
            "invalid_request", 'send {"items": [...]}: a non-empty list of conversion requests, nothing else'
        )
    if len(items) > settings.gateway_max_batch_items:
        return problem("too_many_items", f"{len(items)} items; at most {settings.gateway_max_batch_items} per batch")
    not_objects = [i for i, item in enumerate(items) if not isinstance(item, dict)]
    if not_objects:
        named = ", ".join(map(str, not_objects[:MAX_NAMED]))
        return problem("invalid_request", f"every item must be a JSON object; items {named} are not")
    caller = request.get(API_KEY)
    requested_by = caller.id if caller else None
    # Charged before the items are read (the route's dearest work), so a batch refused for its items
    # (a duplicated id) costs them too and a caller out of tokens cannot have batches read for free.
    refused = await _charge(deps, requested_by, len(items))
    if refused is not None:
        return refused
    skew = timedelta(seconds=settings.max_clock_skew_seconds)
    read = await _in_slices(
        items,
        lambda _, item: read_request(
            item, idempotency_key=None, max_amount=settings.max_amount, max_clock_skew=skew, requested_by=requested_by
        ),
    )
    duplicates = _duplicates(items, read)
    if duplicates:
        return problem(
            "duplicate_request_id",
            f"{len(duplicates)} request ids appear more than once; send each request once",
            duplicates=duplicates[:MAX_NAMED],
        )
    wanted = [r for r in read if isinstance(r, ConversionRequested)]
    timeout = settings.gateway_timeout_seconds + len(items) * settings.gateway_batch_seconds_per_item
    # A fifth of the pending bound stays free for single requests however many batches run.
    leave = settings.gateway_max_pending // 5
    outcomes = iter(await deps.requester.convert_many(wanted, timeout=timeout, leave_room=leave) if wanted else [])
    results = await _in_slices(
        read,
        lambda i, r: {
            "index": i,
            **(refused_result(r) if isinstance(r, Refusal) else decided_result(r, next(outcomes), timeout)),
        },
    )
    counts = Counter(r["outcome"] for r in results)
    body = {"results": results, "counts": {k: counts[k] for k in ("audited", "rejected", "refused", "undecided")}}
    return web.Response(text=json.dumps(body), content_type="application/json")


async def _in_slices(items: Sequence[T], work: Callable[[int, T], R]) -> list[R]:
    """`work` on each item in order, giving the event loop back between slices: reading or answering 10,000
    items takes the gateway a second of CPU, which other requests on this process must not wait behind."""
    done: list[R] = []
    for start in range(0, len(items), SLICE):
        done.extend(work(i, items[i]) for i in range(start, min(len(items), start + SLICE)))
        await asyncio.sleep(0)
    return done


def _duplicates(items: list[dict[str, Any]], read: list[ConversionRequested | Refusal]) -> list[str]:
    """Request ids given to more than one item, refused or not: the id is taken from the item itself, since an
    item the body's schema refuses (a JSON-number amount) has a refusal without one."""
    pairs = zip(items, read, strict=True)
    ids = [str(r.request_id) if isinstance(r, ConversionRequested) else _item_id(item) for item, r in pairs]
    return [rid for rid, n in Counter(i for i in ids if i is not None).items() if n > 1]


def _item_id(item: dict[str, Any]) -> str | None:
    value = item.get("request_id")
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(UUID(value))
    except ValueError:
        return None


async def _charge(deps: Deps, key_id: Any, cost: int) -> web.Response | None:
    """One token per item, from the caller's bucket; `None` when the batch may go ahead."""
    if deps.limiter is None or key_id is None:
        return None
    try:
        wait = await deps.limiter.take(key_id, cost)
    except CacheUnavailable as exc:
        CACHE_ERRORS.labels("rate_limit").inc()  # fail open, as for single requests (ces.http.auth)
        log.warning("rate limiter unavailable (%s); batch let through", exc)
        return None
    if wait <= 0:
        return None
    AUTH_REFUSALS.labels("rate_limited").inc()
    return problem(
        "rate_limited",
        f"this batch costs {cost} of the API key's rate limit (one per item); retry in {wait:.3g}s",
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


BATCH_ROUTES = [web.post(BATCH_PATH, post_conversion_batch)]
