"""The name-based id helper is `uuid.uuid5`, only cheaper."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from ces.events.ids import NameBasedIds
from ces.events.rates import RATE_NAMESPACE


@given(namespace=st.uuids() | st.just(RATE_NAMESPACE), name=st.text())
def test_equals_uuid5_for_any_namespace_and_name(namespace: uuid.UUID, name: str) -> None:
    ids = NameBasedIds(namespace)
    try:
        expected = uuid.uuid5(namespace, name)
    except UnicodeEncodeError:  # a lone surrogate: neither can encode it
        for form in (ids, ids.text):
            try:
                form(name)
            except UnicodeEncodeError:
                continue
            raise AssertionError("NameBasedIds accepted a name uuid5 refuses") from None
        return
    made = ids(name)
    assert made == expected and made.version == 5 and made.variant == uuid.RFC_4122
    assert ids.text(name) == str(expected)
    assert ids(name) == expected  # the fed namespace is copied, never consumed


@given(namespace=st.uuids() | st.just(RATE_NAMESPACE), prefix=st.text(), name=st.text())
def test_prefixed_ids_equal_uuid5_of_the_whole_name(namespace: uuid.UUID, prefix: str, name: str) -> None:
    try:
        expected = uuid.uuid5(namespace, prefix + name)
    except UnicodeEncodeError:  # a lone surrogate: covered above
        return
    prefixed = NameBasedIds(namespace).prefixed(prefix)
    assert prefixed(name) == expected
    assert prefixed.text(name) == str(expected)
    assert prefixed.text(name) == str(expected)  # the fed prefix is copied, never consumed
