"""FX rate provider clients: each turns one provider's wire format into `ProviderQuote`s.

Import a client from its module (`ces.adapters.providers.ecb`, `.fixer`): this package imports none of them,
so the bundled history (`ecb_history`, the offline backfill's source) loads without aiohttp.
"""
