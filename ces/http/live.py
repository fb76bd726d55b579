"""`GET /v1/rates/stream`: new rates as server-sent events, as they land on `rates-fetched`.

Events: `ready` once subscribed; `rates` with `{"rates": [row, ...], "dropped": n}` (rows as stored:
provider base -> X, decimal strings, each with its `rate_id`; `n`: updates this client missed just before
this one because its queue was full); `heartbeat` every `HEARTBEAT_SECONDS` so proxies and clients can tell
a quiet stream from a dead one. A slow client loses updates (counted in `dropped`), it
never slows the feed or other clients. The route needs the `read` scope like every other rate read.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ces.events.base import rfc3339, utc_now
from ces.http.deps import DEPS
from ces.http.problems import problem
from ces.http.schemas import leg_out

HEARTBEAT_SECONDS = 15.0
LIVE_HEARTBEAT = web.AppKey("live_heartbeat_seconds", float)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def rates_stream(request: web.Request) -> web.StreamResponse:
    deps = request.app[DEPS]
    if deps.live is None:
        return problem("unavailable", "live rates are not enabled on this gateway")
    listener = deps.live.subscribe()
    if listener is None:
        return problem("overloaded", "too many live listeners on this gateway; retry later")
    heartbeat = request.app.get(LIVE_HEARTBEAT, HEARTBEAT_SECONDS)
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # a buffering proxy would hold events back
            }
        )
        await response.prepare(request)
        await response.write(b"retry: 3000\n" + _event("ready", {"at": rfc3339(utc_now())}))
        while True:
            update = await listener.next(heartbeat)
            if update is None:
                await response.write(_event("heartbeat", {"at": rfc3339(utc_now())}))
            else:
                rows = [leg_out(rate).json_body() for rate in update.rates]
                await response.write(_event("rates", {"rates": rows, "dropped": update.dropped}))
    except ConnectionResetError:
        return response
    finally:
        deps.live.unsubscribe(listener)


LIVE_ROUTES = [web.get("/v1/rates/stream", rates_stream)]
