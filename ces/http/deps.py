"""What the gateway's handlers use, in one typed application key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import Engine

from ces.adapters.postgres.audit_store import AuditStore
from ces.adapters.postgres.rate_store import RateRepository
from ces.services.conversion_requests import ConversionRequester
from ces.services.rate_lookup import RateLookup
from ces.settings import Settings

Readiness = Callable[[], Awaitable[dict[str, tuple[bool, str]]]]


@dataclass
class Deps:
    settings: Settings
    engine: Engine
    audits: AuditStore
    rates: RateRepository
    lookup: RateLookup
    requester: ConversionRequester
    readiness: Readiness


DEPS = web.AppKey("deps", Deps)
