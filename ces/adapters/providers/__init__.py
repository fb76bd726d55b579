"""FX rate provider clients: each turns one provider's wire format into `ProviderQuote`s."""

from __future__ import annotations

from ces.adapters.providers.ecb import EcbClient
from ces.adapters.providers.fixer import FixerClient

__all__ = ["EcbClient", "FixerClient"]
