"""Differential test: the decoder with its native fast paths accepts and refuses exactly what the previous,
all-Python validators did, with the same reasons and messages, and builds equal events.

The oracle is the previous implementation, frozen here (validators, `parse_decimal`, the JSON step and
`decode`), applied to oracle copies of every event class in which only the changed field types differ.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, TypeAdapter, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_core import PydanticSerializationError, PydanticUndefined

from ces.events import base
from ces.events.base import CurrencyCode, DecimalStr, Event, printable
from ces.events.conversions import ConversionAudited, ConversionRejected, ConversionRequested
from ces.events.rates import RateFetched, RateFetchFailed, RateRevoked
from ces.events.registry import EVENT_TYPES, UndecodableEvent, decode, validation_detail
from ces.events.upcasters import upcast

# --- the oracle: the validators and the decoder as they were before the native fast paths ---------------

_OLD_DECIMAL_TEXT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_OLD_CODE = re.compile(r"[A-Z]{3}")


def _old_parse_decimal(text: str, *, max_length: int = 64) -> Decimal:
    if not isinstance(text, str):
        raise ValueError(f"expected a decimal string, got {type(text).__name__}")
    if len(text) > max_length:
        raise ValueError(f"decimal text longer than {max_length} characters")
    if not _OLD_DECIMAL_TEXT.fullmatch(text):
        raise ValueError(f"not a plain decimal number: {text[:40]!r}")
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover
        raise ValueError(str(exc)) from exc


def _old_decimal_from_text(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str):
        raise ValueError('must be a decimal string such as "1.0712", not a JSON number')
    return _old_parse_decimal(value)


def _old_currency_code(value: str) -> str:
    if not _OLD_CODE.fullmatch(value):
        raise ValueError("must be a three-letter upper-case ISO 4217 code")
    return value


OldDecimalStr = Annotated[Decimal, BeforeValidator(_old_decimal_from_text)]
OldCurrencyCode = Annotated[str, AfterValidator(_old_currency_code)]


def _old_metadata(info: FieldInfo) -> list[Any] | None:
    """The field's metadata with the old validators in place of the new ones; None when nothing changed."""
    result: list[Any] = []
    changed = False
    for item in info.metadata:
        if isinstance(item, base._NativeFirst):
            changed = True
        elif isinstance(item, base._CoreSchemaOnly):
            changed = True
            result.append(AfterValidator(_old_currency_code))
        elif isinstance(item, BeforeValidator) and item.func is base._decimal_from_text:
            result.append(BeforeValidator(_old_decimal_from_text))
        else:
            result.append(item)
    return result if changed else None


def _oracle_class(cls: type[Event]) -> tuple[type[Event], int]:
    overrides: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        metadata = _old_metadata(info)
        if metadata is not None:
            default = ... if info.default is PydanticUndefined and info.default_factory is None else info.default
            overrides[name] = (Annotated[(info.annotation, *metadata)], default)  # type: ignore[misc]
    return create_model(f"Old{cls.__name__}", __base__=cls, **overrides), len(overrides)


ORACLES = {event_type: _oracle_class(cls) for event_type, cls in EVENT_TYPES.items()}


def _old_unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key[:40]!r}")
            seen.add(key)
    return result


def _old_parse_json_object(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, bytes | bytearray):
        raise UndecodableEvent("invalid_json", f"expected bytes, got {type(raw).__name__}")
    try:
        payload = json.loads(raw, object_pairs_hook=_old_unique_keys)
    except (ValueError, RecursionError) as exc:
        raise UndecodableEvent("invalid_json", printable(f"{type(exc).__name__}: {exc}")[:200]) from exc
    if not isinstance(payload, dict):
        raise UndecodableEvent("not_an_object", f"expected a JSON object, got {type(payload).__name__}")
    return payload


def _encodable(value: Any) -> bool:
    """Every string of a JSON value encodes to UTF-8 (the oracle's own walk, by the encoder's verdict)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack += [*item, *item.values()]
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
    return True


def old_decode(raw: Any, expected: type[Event] | tuple[type[Event], ...] | None = None) -> Event:
    allowed = (expected,) if isinstance(expected, type) else expected
    payload = _old_parse_json_object(raw)
    # The one rule the decoder added since: no lone surrogate in an event (no UTF-8 encoder takes one).
    if not _encodable(payload):
        raise UndecodableEvent("invalid_json", "a string holds a lone UTF-16 surrogate, not a Unicode character")
    event_type = payload.get("event_type")
    if allowed and event_type is None:
        event_type = allowed[0].model_fields["event_type"].default
        payload["event_type"] = event_type
    cls = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if cls is None:
        raise UndecodableEvent("unknown_event_type", f"event_type {event_type!r}")
    if allowed and cls not in allowed:
        names = " or ".join(c.__name__ for c in allowed)
        raise UndecodableEvent("unexpected_event_type", f"{event_type} where {names} belongs")
    current = cls.model_fields["schema_version"].default
    version = payload.get("schema_version", current)
    if not isinstance(version, int) or version > current or version < 0:
        raise UndecodableEvent("unsupported_schema_version", f"{event_type} v{version!r}")
    try:
        payload = upcast(payload, current)
        return ORACLES[event_type][0].model_validate(payload)
    except ValidationError as exc:
        raise UndecodableEvent("invalid_event", printable(validation_detail(exc))) from exc
    except Exception as exc:
        raise UndecodableEvent("invalid_event", printable(f"{type(exc).__name__}: {exc}")[:500]) from exc


# --- comparing outcomes ---------------------------------------------------------------------------------


def _same_value(a: Any, b: Any) -> bool:
    """Equal, and equal in what `==` ignores: Decimal exponents ("1.0" vs "1.00"), datetime tzinfo."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, datetime):
        return a == b and a.tzinfo is b.tzinfo and a.fold == b.fold
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _same_event(new: BaseModel, old: BaseModel) -> bool:
    if type(old).__mro__[1] is not type(new):  # the oracle class subclasses the real one
        return False
    names = type(new).model_fields
    return all(_same_value(getattr(new, n), getattr(old, n)) for n in names) and _json_or_error(new) == (
        _json_or_error(old)
    )


def _json_or_error(model: BaseModel) -> str:
    # A model built from Python values may hold a lone surrogate (model_validate takes any `str`): both
    # sides must then fail to serialize alike.
    try:
        return model.model_dump_json()
    except PydanticSerializationError as exc:
        return f"unserializable: {exc}"


def _outcome(fn: Any, *args: Any) -> tuple[str, Any, Any]:
    try:
        return ("ok", fn(*args), None)
    except UndecodableEvent as exc:
        return ("refused", exc.reason, exc.detail)
    except ValidationError as exc:
        return ("invalid", validation_detail(exc), None)


def assert_same(new: tuple[str, Any, Any], old: tuple[str, Any, Any]) -> None:
    assert new[0] == old[0], (new, old)
    if new[0] == "ok":
        assert _same_event(new[1], old[1]) if isinstance(new[1], BaseModel) else _same_value(new[1], old[1]), (
            new,
            old,
        )
    else:
        assert new[1:] == old[1:]


def assert_same_decoding(raw: Any, expected: Any = None) -> None:
    assert_same(_outcome(decode, raw, expected), _outcome(old_decode, raw, expected))


# --- inputs ---------------------------------------------------------------------------------------------

UUID_A, UUID_B, UUID_C = (f"{c * 8}-0000-4000-8000-{c * 12}" for c in "abc")
NOW = "2026-11-25T20:12:42.123456Z"

VALID: dict[type[Event], dict[str, Any]] = {
    ConversionAudited: {
        "event_type": "ConversionAudited",
        "schema_version": 3,
        "event_id": UUID_A,
        "occurred_at": NOW,
        "audit_id": UUID_B,
        "request_id": UUID_C,
        "rate_id": UUID_A,
        "rate_ids": [UUID_A, UUID_B],
        "rate_kind": "cross",
        "base_currency": "USD",
        "target_currency": "JPY",
        "input_amount": "1234.56",
        "rate_value": "148.6137532133676",
        "margin": "0.01",
        "output_amount": "181643",
        "converted_at": NOW,
        "requested_by": None,
        "as_of": None,
    },
    RateFetched: {
        "event_type": "RateFetched",
        "schema_version": 1,
        "event_id": UUID_A,
        "occurred_at": NOW,
        "rate_id": UUID_B,
        "base_currency": "EUR",
        "target_currency": "USD",
        "rate_value": "1.0712",
        "provider_name": "ecb",
        "published_at": "2026-11-25T14:00:00Z",
        "fetched_at": NOW,
        "fetch_id": UUID_C,
    },
    ConversionRequested: {
        "event_type": "ConversionRequested",
        "event_id": UUID_A,
        "occurred_at": NOW,
        "request_id": UUID_C,
        "base_currency": "EUR",
        "target_currency": "USD",
        "amount": "100.00",
    },
    RateRevoked: {
        "event_type": "RateRevoked",
        "event_id": UUID_A,
        "occurred_at": NOW,
        "rate_id": UUID_B,
        "base_currency": "EUR",
        "target_currency": "USD",
        "reason": "wrong",
        "revoked_by": "ops",
        "revoked_at": NOW,
    },
    ConversionRejected: {
        "event_type": "ConversionRejected",
        "schema_version": 3,
        "event_id": UUID_A,
        "occurred_at": NOW,
        "request_id": UUID_C,
        "reason": "unknown_currency",
        "message": "no such currency",
        "rejected_at": NOW,
    },
}

NASTY_DECIMAL_TEXT = [
    "0", "-0", "1", "1.", ".5", "-.5", "1.0712", "00012.3400", "1" * 64, "1" * 65, "9" * 63 + ".", "." + "9" * 63,
    "1e5", "1E-7", "1.5e+3", "NaN", "nan", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "+1", "+0.5", "--1",
    "", "-", ".", "-.", " 1", "1 ", "1\n", "\n1", "1\t", "1\r\n", "1\x00", "\x00", "1_000", "1,5", "0x10",
    "١٢٣", "١.٥", "１２", "1２", "𝟏", "१२", "²", "½", "\u00a01", "1\u2003", "\ud800", "1\udfff", "١" * 65,
    "1" * 10_000, "-" + "0" * 64, "Ⅻ",
]  # fmt: skip
NASTY_CODE_TEXT = [
    "USD", "EUR", "XXX", "usd", "Usd", "US", "USDD", "", "USD\n", "\nUSD", " USD", "USD ", "U\x00D", "ÜSD",
    "ＵＳＤ", "ᴜsᴅ", "US\ud800", "\ud800\udc00A", "ǅAB", "ABC" * 1000,
]  # fmt: skip
NASTY_TIMESTAMPS = [
    NOW, "2026-11-25T20:12:42Z", "2026-11-25T20:12:42", "2026-11-25T20:12:42.1234567Z", "2026-11-25 20:12:42Z",
    "2026-11-25t20:12:42z", "2026-11-25T20:12:42+05:30", "2026-11-25T20:12:42-23:59", "2026-11-25T20:12:42+24:00",
    "2026-11-25T20:12:42+0530", "2026-11-25T20:12:42+05", "2026-11-25", "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.999999-00:01", "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00Z", "0000-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-25T24:00:00Z",
    "2026-11-25T23:59:60Z", "٢٠٢٦-11-25T20:12:42Z", "2026-11-25T20:12:42Z\n", " 2026-11-25T20:12:42Z", "now",
    "",
]  # fmt: skip
OTHER_VALUES = [
    None, True, False, 0, 1, -1, 10**30, 1.5, 1e-7, 1e300, float("inf"), float("nan"), [], {}, ["1.0"],
    {"value": "1"}, 1700000000, 1700000000.5, -62135596801,
]  # fmt: skip

text_values = st.one_of(
    st.sampled_from(NASTY_DECIMAL_TEXT + NASTY_CODE_TEXT + NASTY_TIMESTAMPS),
    st.from_regex(r"-?[0-9]{0,70}(\.[0-9]{0,5})?", fullmatch=True),
    st.text(max_size=80),
    st.text(alphabet=st.characters(categories=["Nd", "No", "Zs", "Cc", "Cs"]), max_size=6),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: format(d, "f")),
    st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat()),
)
json_values = st.one_of(text_values, st.sampled_from(OTHER_VALUES), st.integers(), st.floats())
python_values = st.one_of(
    json_values,
    st.decimals(allow_nan=True, allow_infinity=True),
    st.sampled_from([Decimal("1E+2"), Decimal("-0"), Decimal("NaN"), Decimal("sNaN"), Decimal("-Infinity")]),
    st.datetimes(timezones=st.timezones() | st.none()),
)


@st.composite
def mutated_payloads(draw: st.DrawFn, values: st.SearchStrategy[Any] = json_values) -> dict[str, Any]:
    cls = draw(st.sampled_from(sorted(VALID, key=lambda c: c.__name__)))
    payload = dict(VALID[cls])
    for name in draw(st.lists(st.sampled_from(sorted(cls.model_fields)), min_size=1, max_size=3)):
        if draw(st.integers(0, 9)) == 0 and name not in ("event_id", "occurred_at"):  # random defaults
            payload.pop(name, None)
        else:
            payload[name] = draw(values)
    return payload


def _dumps(payload: Any, ascii_only: bool) -> bytes:
    text = json.dumps(payload, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


# --- the properties -------------------------------------------------------------------------------------


def test_the_oracle_differs_from_the_decoder_only_in_the_changed_types() -> None:
    changed = {event_type: n for event_type, (_, n) in ORACLES.items()}
    # ConversionAudited: 2 currencies + 4 amounts; RateFetched: 2 + 1; ConversionRequested: 2 + 1
    assert changed["ConversionAudited"] == 6 and changed["RateFetched"] == 3 and changed["ConversionRequested"] == 3
    assert changed["RateRevoked"] == 2 and changed["ConversionRejected"] == 0 and changed["RateFetchFailed"] == 0
    assert {RateFetched, RateRevoked, RateFetchFailed, ConversionRequested, ConversionAudited} <= set(
        EVENT_TYPES.values()
    )


@pytest.mark.parametrize("value", NASTY_DECIMAL_TEXT + OTHER_VALUES + [Decimal("1E+2"), Decimal("NaN")])
def test_decimal_str_alone(value: Any) -> None:
    for new, old in (
        (DecimalStr, OldDecimalStr),
        (Annotated[DecimalStr, Field(gt=Decimal(0))], Annotated[OldDecimalStr, Field(gt=Decimal(0))]),
        (list[DecimalStr], list[OldDecimalStr]),
    ):
        wrapped = [value] if "list" in str(new) else value
        assert_same(
            _outcome(TypeAdapter(new).validate_python, wrapped), _outcome(TypeAdapter(old).validate_python, wrapped)
        )


@pytest.mark.parametrize("value", NASTY_CODE_TEXT + OTHER_VALUES)
def test_currency_code_alone(value: Any) -> None:
    for new, old in ((CurrencyCode, OldCurrencyCode), (list[CurrencyCode] | None, list[OldCurrencyCode] | None)):
        wrapped = [value] if "list" in str(new) else value
        assert_same(
            _outcome(TypeAdapter(new).validate_python, wrapped), _outcome(TypeAdapter(old).validate_python, wrapped)
        )


def test_unicode_digits_are_refused_everywhere_a_decimal_is_read() -> None:
    # Python reads them ("١٢٣" is 123), and so would a `\\d` pattern: the refusal is CES's own rule.
    assert Decimal("١٢٣") == 123 and Decimal("１２") == 12 and re.fullmatch(r"\d+", "١٢٣")
    for digits in ("١٢٣", "１２", "१२", "𝟏", "1٫5", "١.٥"):
        with pytest.raises(ValidationError, match="not a plain decimal number"):
            TypeAdapter(DecimalStr).validate_python(digits)
        payload = {**VALID[ConversionAudited], "input_amount": digits}
        with pytest.raises(UndecodableEvent, match="input_amount: Value error, not a plain decimal number"):
            decode(json.dumps(payload).encode(), ConversionAudited)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=mutated_payloads(), ascii_only=st.booleans(), typed=st.booleans())
@example(payload={**VALID[ConversionAudited], "converted_at": "9999-12-31T23:59:59-01:00"}, ascii_only=True, typed=True)
@example(payload={**VALID[RateFetched], "rate_value": "0"}, ascii_only=True, typed=True)
@example(payload={**VALID[RateFetched], "rate_value": "-1.5"}, ascii_only=True, typed=False)
@example(payload={**VALID[ConversionAudited], "margin": "١٢٣"}, ascii_only=False, typed=True)
@example(payload={**VALID[ConversionAudited], "base_currency": "US\ud800"}, ascii_only=True, typed=True)
def test_decode_agrees_on_mutated_events(payload: dict[str, Any], ascii_only: bool, typed: bool) -> None:
    raw = _dumps(payload, ascii_only)
    expected = (
        EVENT_TYPES.get(payload.get("event_type")) if typed and isinstance(payload.get("event_type"), str) else None
    )
    assert_same_decoding(raw, expected)


@settings(max_examples=300, deadline=None)
@given(payload=mutated_payloads(python_values))
@example(payload={**VALID[ConversionRejected], "message": "\ud800"})  # valid for model_validate, not for JSON
def test_model_validate_agrees_on_python_values(payload: dict[str, Any]) -> None:
    event_type = payload.get("event_type")
    cls = (EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None) or ConversionAudited
    oracle = ORACLES[cls.model_fields["event_type"].default][0]
    try:
        new: tuple[str, Any, Any] = ("ok", cls.model_validate(payload), None)
    except ValidationError as exc:
        new = ("invalid", validation_detail(exc), None)
    try:
        old: tuple[str, Any, Any] = ("ok", oracle.model_validate(payload), None)
    except ValidationError as exc:
        old = ("invalid", validation_detail(exc), None)
    assert_same(new, old)


json_documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text_values,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


framed_documents = st.tuples(
    st.sampled_from([b"", b" ", b"\n\t", b"\xef\xbb\xbf", b"\x00", b"\xa0"]),
    json_documents.map(lambda v: _dumps(v, False)),
    st.sampled_from([b"", b" ", b"\r\n", b"x", b"\x00", b"{}", b"]"]),
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.one_of(
        st.binary(max_size=200),
        json_documents.map(lambda v: _dumps(v, False)),
        framed_documents,
        st.tuples(json_documents, st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])).map(
            lambda t: json.dumps(t[0]).encode(t[1])
        ),
    )
)
def test_decode_agrees_on_arbitrary_bytes(raw: bytes) -> None:
    assert_same_decoding(raw)
    assert_same_decoding(raw, ConversionAudited)


def _valid_text(cls: type[Event]) -> str:
    return json.dumps(VALID[cls])


NASTY_BYTES = [
    None,
    b"",
    b"null",
    b"[]",
    b'"x"',
    b"\xff\xfe",
    b"{}",
    # repeated names, first or last one valid
    _valid_text(ConversionAudited).replace('"margin": "0.01"', '"margin": "0.01", "margin": "1000"').encode(),
    _valid_text(ConversionAudited).replace('"margin": "0.01"', '"margin": "1e3", "margin": "0.01"').encode(),
    b'{"a": {"b": 1, "b": 2}}',
    # numbers where strings belong, and numbers json reads with special meaning
    _valid_text(ConversionAudited).replace('"0.01"', "0.01").encode(),
    _valid_text(ConversionAudited).replace('"0.01"', "1e400").encode(),
    _valid_text(ConversionAudited).replace('"0.01"', "NaN").encode(),
    _valid_text(ConversionAudited).replace('"0.01"', "-Infinity").encode(),
    _valid_text(ConversionAudited).replace('"0.01"', "9" * 5000).encode(),
    _valid_text(ConversionAudited).replace('"0.01"', "9" * 4300).encode(),
    _valid_text(ConversionAudited).replace('"schema_version": 3', '"schema_version": 3.0').encode(),
    _valid_text(ConversionAudited).replace('"schema_version": 3', '"schema_version": ' + "9" * 5000).encode(),
    _valid_text(ConversionAudited).replace('"schema_version": 3', '"schema_version": true').encode(),
    # text that is not UTF-8, or UTF-8 of a surrogate (surrogatepass reads it), NUL, escapes, BOMs, UTF-16
    _valid_text(ConversionAudited).encode().replace(b"0.01", b"0.0\xff"),
    _valid_text(ConversionAudited).encode().replace(b"USD", b"U\xed\xa0\x80D"),
    _valid_text(ConversionAudited).replace("USD", "US\\ud800").encode(),
    _valid_text(ConversionAudited).replace("USD", "US\\u0000").encode(),
    _valid_text(ConversionAudited).replace("0.01", "0.01\\u0000").encode(),
    _valid_text(ConversionAudited).replace("0.01", "\\u0661\\u0662").encode(),
    b"\xef\xbb\xbf" + _valid_text(ConversionAudited).encode(),
    _valid_text(ConversionAudited).encode("utf-16"),
    _valid_text(ConversionAudited).encode("utf-16-le"),
    _valid_text(ConversionAudited).encode("utf-32"),
    # nesting past the recursion limit, and a little below it
    b"[" * (sys.getrecursionlimit() + 10) + b"]" * (sys.getrecursionlimit() + 10),
    b'{"event_type": "ConversionAudited", "x": ' + b"[" * 500 + b"]" * 500 + b"}",
    b'{"a": ' * 2000 + b"1" + b"}" * 2000,
    # whitespace and text around the object, and the encoding decided by the first bytes
    b" " + _valid_text(ConversionAudited).encode() + b"\r\n\t ",
    _valid_text(ConversionAudited).encode() + b" x",
    _valid_text(ConversionAudited).encode() + b"{}",
    _valid_text(ConversionAudited).encode() + b"\x00",
    _valid_text(ConversionAudited).encode() + b"\xa0",
    b"\xc2\xa0" + _valid_text(ConversionAudited).encode(),
    b"{",
    b"{\x00",
    b"{\x00\x00\x00",
    b"{\x00}",
    b"\x00{}",
    b"{}",
    b"{} ",
    b"  ",
    b"1 2",
    b'{"a": }',
    b'{"a": [1, }',
    b"{\xff}",
    # a huge string and a huge amount
    _valid_text(ConversionAudited).replace("0.01", "1" * 1_000_000).encode(),
    _valid_text(ConversionAudited).replace("0.01", "0." + "1" * 62).encode(),
]


@pytest.mark.parametrize("raw", NASTY_BYTES, ids=range(len(NASTY_BYTES)))
def test_decode_agrees_on_nasty_bytes(raw: Any) -> None:
    for expected in (None, ConversionAudited, (ConversionAudited, ConversionRejected)):
        assert_same_decoding(raw, expected)


def test_a_valid_event_decodes_to_the_same_event_either_way() -> None:
    # The assertions above could all pass on refusals alone: make sure the valid events are accepted.
    for cls, payload in VALID.items():
        outcome = _outcome(decode, json.dumps(payload).encode(), cls)
        assert outcome[0] == "ok" and isinstance(outcome[1], cls)
        assert_same_decoding(json.dumps(payload).encode(), cls)
    event = decode(json.dumps(VALID[ConversionAudited]).encode())
    assert isinstance(event, ConversionAudited)
    assert event.output_amount.as_tuple() == Decimal("181643").as_tuple()
    assert event.converted_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("cls", "field", "raw_text"),
    [
        (ConversionRejected, "message", b'"no rate \\ud800"'),
        (ConversionRejected, "message", b'"\\udc00 trailing half"'),
        (RateFetched, "provider_name", b'"ecb\\ud83d"'),  # a high half with no low half after it
        (RateFetched, "provider_name", '"ecb\udfff"'.encode("utf-8", "surrogatepass")),  # surrogate bytes
    ],
)
def test_a_lone_surrogate_in_an_event_is_malformed_json(cls: type[Event], field: str, raw_text: bytes) -> None:
    # Such text cannot be stored or re-serialized; refused as one message, it never fails a whole batch.
    raw = json.dumps({**VALID[cls], field: "@@"}).encode().replace(b'"@@"', raw_text)
    with pytest.raises(UndecodableEvent) as info:
        decode(raw, cls)
    assert info.value.reason == "invalid_json" and "surrogate" in info.value.detail


def test_a_surrogate_pair_is_one_character_and_decodes() -> None:
    raw = json.dumps({**VALID[ConversionRejected], "message": "@@"}).encode().replace(b'"@@"', b'"ok \\ud83d\\ude00"')
    event = decode(raw, ConversionRejected)
    assert isinstance(event, ConversionRejected) and event.message == "ok \U0001f600"
