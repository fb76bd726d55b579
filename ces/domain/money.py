"""Currencies (ISO 4217, from the maintained `iso4217` data package) and exact decimal parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache

import iso4217

# Codes that are not money one converts (precious metals, testing and fund codes, "no currency").
_NON_CONVERTIBLE = {"XAU", "XAG", "XPT", "XPD", "XTS", "XXX", "XDR", "XSU", "XUA", "XBA", "XBB", "XBC", "XBD"}
_CODE = re.compile(r"[A-Z]{3}")
# Plain decimal notation only: ASCII digits (`Decimal()` reads any Unicode digit, "１２" included), no
# exponent, no sign other than '-', no NaN/Infinity, no spaces. Matched whole (`fullmatch`): `$` would let
# a trailing newline through.
DECIMAL_PATTERN = r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DECIMAL_TEXT = re.compile(DECIMAL_PATTERN)
# Longer decimal text is refused (no rate or amount needs it; it bounds the work of a hostile value).
MAX_DECIMAL_TEXT = 64
# The same text as a JSON Schema pattern (ECMA 262, searched, so anchored; ECMA `$` is the end of input).
DECIMAL_SCHEMA_PATTERN = f"^(?:{DECIMAL_PATTERN})$"


class UnknownCurrency(ValueError):
    def __init__(self, code: str) -> None:
        super().__init__(f"unknown currency code {code!r} (ISO 4217)")
        self.code = code


class InvalidDecimal(ValueError):
    pass


@dataclass(frozen=True)
class Currency:
    code: str
    name: str
    minor_units: int

    @property
    def quantum(self) -> Decimal:
        """The smallest amount: Decimal('0.01') for USD, Decimal('1') for JPY."""
        return Decimal(1).scaleb(-self.minor_units)


@cache
def currencies() -> dict[str, Currency]:
    """Every active ISO 4217 currency with defined minor units."""
    result = {}
    for entry in iso4217.Currency:
        code = entry.code
        if code in _NON_CONVERTIBLE or entry.exponent is None:
            continue
        result[code] = Currency(code=code, name=entry.currency_name, minor_units=int(entry.exponent))
    return result


def code_as_typed(text: str) -> str:
    """A currency code as a caller typed it, upper-cased ("usd" -> "USD") only when it is ASCII: Unicode
    upper-casing maps other letters onto A-Z ("\u017f".upper() == "S"), and "u\u017fd" is no spelling of USD."""
    return text.upper() if text.isascii() else text


def currency(code: str) -> Currency:
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise UnknownCurrency(str(code))
    try:
        return currencies()[code]
    except KeyError:
        raise UnknownCurrency(code) from None


def is_currency_code(code: str) -> bool:
    try:
        currency(code)
    except UnknownCurrency:
        return False
    return True


def parse_decimal(text: str, *, max_length: int = MAX_DECIMAL_TEXT) -> Decimal:
    """Exact Decimal from plain decimal text ("1.0712"); anything else raises InvalidDecimal."""
    if not isinstance(text, str):
        raise InvalidDecimal(f"expected a decimal string, got {type(text).__name__}")
    if len(text) > max_length:
        raise InvalidDecimal(f"decimal text longer than {max_length} characters")
    if not _DECIMAL_TEXT.fullmatch(text):
        raise InvalidDecimal(f"not a plain decimal number: {text[:40]!r}")
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the pattern already excludes these
        raise InvalidDecimal(str(exc)) from exc
