"""The rate fetch timer: a thin Faust timer over `RateFetcher`."""

from __future__ import annotations

import logging

import faust

from ces.metrics import TIMER_ERRORS
from ces.services.rate_fetching import RateFetcher

log = logging.getLogger(__name__)


def register_fetch_timer(
    app: faust.App, *, fetcher: RateFetcher, provider_name: str, fetch_interval_seconds: float
) -> None:
    # The timer ticks often and only on the leader; `RateFetcher.tick` fetches when the cluster-wide
    # slot for the interval is free, so the first tick after start-up fetches and a double tick
    # around a rebalance does not.
    tick = min(1.0, fetch_interval_seconds)

    @app.timer(interval=tick, on_leader=True, name="rates.fetch_tick")  # type: ignore[untyped-decorator]
    async def fetch_rates() -> None:
        await tick_once(fetcher, provider_name)


async def tick_once(fetcher: RateFetcher, provider_name: str) -> None:
    """One timer tick that never raises: an exception escaping a Faust timer stops the worker, so a tick
    that failed (a publish timeout, the provider client raising) is logged and counted, and the next
    tick retries (`RateFetcher` has already shortened its lease)."""
    try:
        await fetcher.tick(provider_name)
    except Exception:
        TIMER_ERRORS.labels(provider_name).inc()
        log.exception("rate fetch tick failed; the timer goes on")
