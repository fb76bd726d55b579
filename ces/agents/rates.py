"""Rate agents: the fetch timer and the `rates-fetched` projection, thin loops over services."""

from __future__ import annotations

from typing import Any

import faust

from ces.agents.dead_letters import Received
from ces.projections.rate_handler import RateEventHandler
from ces.services.rate_fetching import RateFetcher


def received(event: Any) -> Received:
    message = event.message
    return Received(message.topic, message.partition, message.offset, message.key, message.value)


def register_rate_agents(
    app: faust.App,
    *,
    rates_topic: faust.TopicT,
    handler: RateEventHandler,
    fetcher: RateFetcher,
    provider_name: str,
    fetch_interval_seconds: float,
    batch_size: int,
) -> None:
    # The timer ticks often and only on the leader; `RateFetcher.tick` fetches when the cluster-wide
    # slot for the interval is free, so the first tick after start-up fetches and a double tick
    # around a rebalance does not.
    tick = min(1.0, fetch_interval_seconds)

    @app.timer(interval=tick, on_leader=True, name="rates.fetch_tick")  # type: ignore[untyped-decorator]
    async def fetch_rates() -> None:
        await fetcher.tick(provider_name)

    @app.agent(rates_topic, name="rates.project", concurrency=1)
    async def project_rates(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(batch_size, within=0.2):  # type: ignore[attr-defined]
            await handler.handle([received(e) for e in events])
