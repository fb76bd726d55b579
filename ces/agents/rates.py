"""The rate fetch timer: a thin Faust timer over `RateFetcher`."""

from __future__ import annotations

import faust

from ces.services.rate_fetching import RateFetcher


def register_fetch_timer(
    app: faust.App, *, fetcher: RateFetcher, provider_name: str, fetch_interval_seconds: float
) -> None:
    # The timer ticks often and only on the leader; `RateFetcher.tick` fetches when the cluster-wide
    # slot for the interval is free, so the first tick after start-up fetches and a double tick
    # around a rebalance does not.
    tick = min(1.0, fetch_interval_seconds)

    @app.timer(interval=tick, on_leader=True, name="rates.fetch_tick")  # type: ignore[untyped-decorator]
    async def fetch_rates() -> None:
        await fetcher.tick(provider_name)
