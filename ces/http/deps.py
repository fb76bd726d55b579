"""What the gateway's handlers use, in one typed application key: ports, not clients.

`ces.bootstrap.gateway` fills it with the real adapters; the handler tests fill it with fakes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol
from uuid import UUID

from aiohttp import web

from ces.domain.conversion import Rejection, ValidRequest
from ces.domain.rates import DerivedRate, Rate
from ces.events.conversions import ConversionAudited, ConversionRequested, Decision
from ces.services.api_keys import KeyVerifier, RateLimiter
from ces.services.conversion_requests import Outcome
from ces.services.conversions import Priced
from ces.services.live_rates import RateBroadcast
from ces.settings import Settings

Readiness = Callable[[], Awaitable[dict[str, tuple[bool, str]]]]


class DecisionReads(Protocol):
    def get(self, request_ids: Sequence[UUID]) -> dict[UUID, Decision]: ...

    def get_audit(self, audit_id: UUID) -> ConversionAudited | None: ...

    def recent(self, limit: int) -> list[ConversionAudited]: ...


class RateReads(Protocol):
    def latest_per_pair(self, base: str | None = None) -> list[Rate]: ...

    def pair_history(
        self, base: str, target: str, pivot: str, *, start: datetime, end: datetime, after: datetime | None, limit: int
    ) -> list[DerivedRate]: ...

    def find(self, rate_id: UUID) -> tuple[Rate, object | None] | None: ...

    def daily(
        self, pivot: str, targets: set[str], start: date, end: date, *, newest_first: bool = False
    ) -> Iterator[tuple[date, list[Rate]]]: ...

    def spans(self, pivot: str, targets: set[str], start: date, end: date) -> dict[str, tuple[date, date]]: ...


class Conversions(Protocol):
    async def convert(self, request: ConversionRequested) -> tuple[Decision, bool]:
        """The decision for this request, and whether it was decided before (`ConversionRequester`)."""

    async def convert_many(
        self, requests: Sequence[ConversionRequested], *, timeout: float, leave_room: int = 0
    ) -> list[Outcome]:
        """Each request's outcome, in order, within one deadline (`ConversionRequester.convert_many`)."""


class LatestRates(Protocol):
    async def latest(self, base: str, target: str) -> DerivedRate | None: ...

    async def latest_many(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], DerivedRate | None]: ...


class Quotes(Protocol):
    async def quote(self, valid: ValidRequest, as_of: datetime | None) -> Priced | Rejection:
        """Price a request as a conversion would be priced (`ConversionDecider.quote`), recording nothing."""


@dataclass
class Deps:
    settings: Settings
    audits: DecisionReads
    rates: RateReads
    lookup: LatestRates
    requester: Conversions
    readiness: Readiness
    keys: KeyVerifier | None = None  # None: keys not required (CES_API_KEYS_REQUIRED=false)
    limiter: RateLimiter | None = None
    quotes: Quotes | None = None  # GET /v1/quote answers 503 unavailable without it
    live: RateBroadcast | None = None  # None: no live rate stream (GET /v1/rates/stream answers 503)


DEPS = web.AppKey("deps", Deps)
