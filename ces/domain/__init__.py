"""The pure core: money, currencies, rates and conversions in `Decimal`, with no framework imports."""
