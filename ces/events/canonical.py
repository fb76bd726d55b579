"""The canonical fast path: reading bytes in exactly the layout `Event.to_json()` writes, without pydantic's
Python validators, and declining (None) anything else so the full decoder decides.

Almost every event on CES's topics was written by CES, so its bytes have one layout: the model's fields in
declaration order, no whitespace, every field present, each value in the one form its serializer writes
(plain decimal text, `...Z` timestamps). For each event class a regex of that layout is derived from the
model's fields (`layout_of`); a match is converted field by field in one pydantic-core call (UUIDs by the
full decoder's own UUID schema, decimals by `Decimal`, timestamps by `datetime.fromisoformat`, strings as
`json` unescapes them) and the model is built as `model_validate` would build it. A value the full decoder might read
differently, or refuse, makes the whole read decline: the fast path never decides a refusal.
tests/unit/test_canonical_decoding.py proves it against the full decoder with hypothesis.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import operator
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

import annotated_types
from pydantic_core import SchemaValidator
from pydantic_core import core_schema as cs

from ces.domain.money import MAX_DECIMAL_TEXT
from ces.events.base import CurrencyCode, DecimalStr, Event, UtcDatetime

_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
SURROGATE = re.compile("[\ud800-\udfff]")  # a lone UTF-16 surrogate: no Unicode character


def _unescape(text: str) -> str:
    """The content of a JSON string (without its quotes) as `json` reads it. A lone surrogate (`\\ud800`)
    declines: what pydantic and the serializer make of one is the full decoder's to decide."""
    if "\\" not in text:
        return text
    value = _scanstring(text + '"', 0)[0]
    if SURROGATE.search(value):
        raise ValueError("surrogate")
    return value


@dataclass(frozen=True)
class _Kind:
    """One JSON value form: `inner` matches its text (inside the quotes when `quoted`); `native` converts
    that text to the model's value (pydantic-core schema); `plain` converts it to what `json` reads."""

    inner: str
    quoted: bool
    native: cs.CoreSchema
    plain: Callable[[str], Any]
    nullable: bool = False  # `null` too (read as None)

    def pattern(self) -> str:
        return f'"{self.inner}"' if self.quoted else self.inner

    def group(self) -> str:
        """Its regex with one group: the text inside the quotes, unset for `null`."""
        one = f'"({self.inner})"' if self.quoted else f"({self.inner})"
        return f"(?:null|{one})" if self.nullable else one


def _fn(fn: Callable[[Any], Any]) -> cs.CoreSchema:
    return cs.no_info_plain_validator_function(fn)


def _str(text: str) -> str:
    return text


# The text of a JSON string up to its closing quote (`[^"]` is the cheapest class `re` scans). Only for a
# value whose schema refuses every text with a `\\` or a control character: then `json` would have read
# the same text, or refused it.
_ANY_TEXT = '[^"]*'


def _json_text(text: str) -> str:
    """Any text between two quotes as `json` reads it: escapes, and a control character refused."""
    value = _scanstring(text + '"', 0)[0]
    if SURROGATE.search(value):
        raise ValueError("surrogate")
    return value


# The full decoder's own UUID schema: any text it takes (upper case, braces, no hyphens) gives the same UUID.
_UUID = _Kind(_ANY_TEXT, True, cs.uuid_schema(), _json_text)
# In a list (parsed again by pydantic-core's JSON parser), no escape at all.
_LISTED_UUID = _Kind('[^"\\\\]*', True, cs.uuid_schema(), _str)


# Plain decimal text (what `format(d, "f")` writes has no leading zeros) of at most 64 characters (the
# lookahead reaches the closing quote): the full decoder reads it with `Decimal(text)` too. `Decimal` is
# called straight from pydantic-core (a Python function around it would cost as much again).
_DECIMAL = _Kind(f'(?=[^"]{{1,{MAX_DECIMAL_TEXT}}}")-?(?:0|[1-9][0-9]*)(?:\\.[0-9]+)?', True, _fn(Decimal), _str)
_CODE = _Kind("[A-Z]{3}", True, cs.str_schema(), _str)
# `rfc3339`: UTC, `Z`, microseconds only when non-zero. `fromisoformat` reads it with `datetime.UTC`, the
# tzinfo `_utc` gives; a text it refuses (month 13, second 60, year 0) declines.
_UTC = _Kind(
    "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.][0-9]{6})?Z", True, _fn(datetime.fromisoformat), _str
)
# Any JSON string: no raw control character (json refuses them), escapes as JSON spells them.
_CHARS = r'[^"\\\x00-\x1f]*'
_STRING = rf'{_CHARS}(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{{4}}){_CHARS})*'
_INT = "-?(?:0|[1-9][0-9]{0,17})"
_BOOL = _Kind("true|false", False, cs.bool_schema(), "true".__eq__)
_WHOLE = _Kind(_INT, False, cs.int_schema(), int)
_MARKED: tuple[tuple[Any, _Kind], ...] = ((DecimalStr, _DECIMAL), (CurrencyCode, _CODE), (UtcDatetime, _UTC))
# A list's item kinds: (the item's kind, its kind in a list), texts without escapes.
_LISTED = ((_UUID, _LISTED_UUID), (_DECIMAL, _DECIMAL), (_CODE, _CODE), (_UTC, _UTC), (_BOOL, _BOOL), (_WHOLE, _WHOLE))


def _string_kind(constraints: dict[str, Any]) -> _Kind:
    native = cs.chain_schema([_fn(_unescape), cs.str_schema(**constraints)])
    return _Kind(_STRING, True, native, _unescape)


def _literal_kind(values: tuple[Any, ...]) -> _Kind | None:
    if not (all(type(v) is str for v in values) or all(type(v) is int for v in values)):
        return None
    texts = [json.dumps(v) for v in values]
    if any("\\" in t for t in texts):
        return None
    quoted = isinstance(values[0], str)
    by_text = {(t[1:-1] if quoted else t): v for t, v in zip(texts, values, strict=True)}
    inner = "|".join(re.escape(t) for t in by_text)
    # The regex admits only the values' own texts: an int's text is read by a (lax) int schema.
    native = cs.literal_schema(list(values)) if quoted else cs.int_schema()
    return _Kind(f"(?:{inner})", quoted, native, by_text.__getitem__)


def _enum_kind(cls: type[enum.Enum]) -> _Kind | None:
    if not all(type(m.value) is str and json.dumps(m.value)[1:-1] == m.value for m in cls):
        return None
    inner = "|".join(re.escape(m.value) for m in cls)
    return _Kind(f"(?:{inner})", True, _fn(cls), _str)


def _checked(kind: _Kind, constraints: dict[str, Any]) -> _Kind:
    """`kind` with numeric bounds (`gt`, `ge`, `lt`, `le`) checked after conversion."""
    if not constraints:
        return kind
    checks = [(_COMPARE[name], bound) for name, bound in constraints.items()]

    def check(value: Any) -> Any:
        for compare, bound in checks:
            if not compare(value, bound):
                raise ValueError("out of bounds")
        return value

    return _Kind(kind.inner, kind.quoted, cs.chain_schema([kind.native, _fn(check)]), kind.plain)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
_NUMERIC = frozenset(_COMPARE)
_TEXTUAL = frozenset({"min_length", "max_length", "pattern"})


def _constraints(items: list[Any]) -> dict[str, Any] | None:
    """The field's constraints as keyword arguments, or None when one is of a kind not understood here."""
    result: dict[str, Any] = {}
    for item in items:
        if isinstance(item, annotated_types.Gt | annotated_types.Ge | annotated_types.Lt | annotated_types.Le):
            name = type(item).__name__.lower()
            result[name] = getattr(item, name)
        elif isinstance(item, annotated_types.MinLen):
            result["min_length"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            result["max_length"] = item.max_length
        elif type(item).__name__ == "_PydanticGeneralMetadata" and set(vars(item)) == {"pattern"}:
            result["pattern"] = item.pattern
        else:
            return None
    return result


def _kind(annotation: Any, metadata: list[Any]) -> _Kind | None:
    """The value form of a field typed `annotation` with `metadata`; None when there is none here."""
    if typing.get_origin(annotation) is Annotated:
        return _kind(annotation.__origin__, [*annotation.__metadata__, *metadata])
    for marked, kind in _MARKED:
        marks = marked.__metadata__
        if annotation is marked.__origin__ and all(any(m is item for item in metadata) for m in marks):
            extra = _constraints([item for item in metadata if not any(m is item for m in marks)])
            if extra is None or not set(extra) <= _NUMERIC or (extra and kind is not _DECIMAL):
                return None
            return _checked(kind, extra)
    constraints = _constraints(metadata)
    if constraints is None:
        return None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union) and len(args) == 2 and type(None) in args:
        inner = _kind(next(a for a in args if a is not type(None)), metadata)
        if inner is None or inner.nullable:
            return None
        return _Kind(inner.inner, inner.quoted, cs.nullable_schema(inner.native), inner.plain, nullable=True)
    if origin is typing.Literal:
        return _literal_kind(args) if not constraints else None
    if origin is list and len(args) == 1:
        item = _kind(args[0], [])
        listed = next((in_list for kind, in_list in _LISTED if kind is item), None)
        return _list_kind(listed) if listed is not None and not constraints else None
    if annotation is str and set(constraints) <= _TEXTUAL:
        return _string_kind(constraints)
    if annotation is int and set(constraints) <= _NUMERIC:
        return _Kind(_INT, False, cs.int_schema(**constraints), int) if constraints else _WHOLE
    if constraints:
        return None
    if annotation is UUID:
        return _UUID
    if annotation is bool:
        return _BOOL
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum_kind(annotation)
    return None


def _list_kind(item: _Kind) -> _Kind:
    # The list's text is canonical JSON (the regex saw to it): pydantic-core parses it (no Python call) and
    # hands each item to the item's schema as the text `json` reads for it.
    one = item.pattern()
    native = cs.json_schema(cs.list_schema(item.native))
    return _Kind(rf"\[(?:{one}(?:,{one})*)?\]", False, native, json.loads)


@dataclass(frozen=True)
class Layout:
    """The canonical layout of one event class: its regex (a group per field), a native validator converting
    the groups, and per field the converter to what `json` reads."""

    cls: type[Event]
    regex: re.Pattern[str]
    names: tuple[str, ...]  # the fields, in order
    native: SchemaValidator  # their groups -> their values, in pydantic-core (no Python validator of the model)
    plains: tuple[Callable[[str], Any], ...]

    def match(self, raw: bytes) -> re.Match[str] | None:
        try:
            text = raw.decode("utf-8")  # strict: the full decoder decides on what strict UTF-8 refuses
        except UnicodeDecodeError:
            return None
        return self.regex.fullmatch(text)

    def read(self, raw: bytes) -> Event | None:
        """The event, exactly as the full decoder builds it from `raw`, or None (declined)."""
        found = self.match(raw)
        if found is None:
            return None
        try:
            converted = self.native.validate_python(found.groups())
        except Exception:  # whatever a converter refuses is declined: the full decoder decides
            return None
        values = dict(zip(self.names, converted, strict=True))
        # What `model_validate` sets for an input with every field (pydantic-core makes it without
        # `__init__` too). The model's own validator cannot be given other field schemas: pydantic-core
        # reuses a class's prebuilt validator for its model schema.
        event = _new(self.cls)
        _set(event, "__dict__", values)
        _set(event, "__pydantic_fields_set__", set(values))
        _set(event, "__pydantic_extra__", None)
        _set(event, "__pydantic_private__", None)
        return event

    def payload(self, raw: bytes) -> dict[str, Any] | None:
        """`raw` as `json` reads it (a dict of str, int, bool, None, lists), or None (declined)."""
        found = self.match(raw)
        if found is None:
            return None
        values: dict[str, Any] = {}
        try:
            for name, text, plain in zip(self.names, found.groups(), self.plains, strict=True):
                values[name] = None if text is None else plain(text)
        except ValueError:
            return None
        return values


_set = object.__setattr__
_new = object.__new__
_PLAIN_CONFIG = frozenset({"frozen", "extra", "title"})


@functools.cache
def layout_of(cls: type[Event]) -> Layout | None:
    """The canonical layout of `cls`, or None when one of its fields has a type or rule not handled here
    (then `cls` is always decoded in full)."""
    decorators = cls.__pydantic_decorators__
    if any(getattr(decorators, f.name) for f in dataclasses.fields(decorators)):
        return None  # a validator or serializer of its own
    if cls.__pydantic_post_init__ or cls.__private_attributes__ or cls.__pydantic_root_model__:
        return None  # `model_validate` would do more than set the fields
    if not set(cls.model_config) <= _PLAIN_CONFIG or cls.model_config.get("extra") != "forbid":
        return None  # a setting that changes how values are read (strict, strip whitespace, ...)
    parts, natives, plains = [], [], []
    for name, info in cls.model_fields.items():
        kind = _kind(info.annotation, list(info.metadata))
        if kind is None or info.alias or info.validation_alias or info.serialization_alias or info.exclude:
            return None
        if json.dumps(name) != f'"{name}"':
            return None
        parts.append(f"{re.escape(json.dumps(name))}:{kind.group()}")
        natives.append(kind.native)
        plains.append(kind.plain)
    regex = re.compile(r"\{" + ",".join(parts) + r"\}")
    native = SchemaValidator(cs.tuple_schema(natives))
    return Layout(cls, regex, tuple(cls.model_fields), native, tuple(plains))


_EVENT_TYPE = b'"event_type":"'


def layout_for(raw: bytes, classes: Mapping[str, type[Event]]) -> Layout | None:
    """The layout of the class `raw` names in its `event_type`, when it has one."""
    at = raw.find(_EVENT_TYPE)
    if at < 0:
        return None
    start = at + len(_EVENT_TYPE)
    name = raw[start : raw.find(b'"', start)]
    known = _BY_NAME.get(name)
    # `classes` (the registry) may change: a class is looked up again when its name maps to another one.
    if known is None or classes.get(known[0]) is not known[1]:
        text = name.decode("latin-1")
        cls = classes.get(text)
        if cls is None:
            return None
        known = _BY_NAME[name] = (text, cls, layout_of(cls))
    return known[2]


_BY_NAME: dict[bytes, tuple[str, type[Event], Layout | None]] = {}


def read(raw: bytes, classes: Mapping[str, type[Event]]) -> Event | None:
    """The event in `raw` when it is in its class's canonical layout, else None (decode it in full)."""
    layout = layout_for(raw, classes)
    return None if layout is None else layout.read(raw)
