"""The name-based id helper is `uuid.uuid5`, only cheaper."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from ces.events.ids import NameBasedIds


@given(namespace=st.uuids(), name=st.text())
def test_equals_uuid5_for_any_namespace_and_name(namespace: uuid.UUID, name: str) -> None:
    try:
        expected = uuid.uuid5(namespace, name)
    except UnicodeEncodeError:  # a lone surrogate: neither can encode it
        try:
            NameBasedIds(namespace)(name)
        except UnicodeEncodeError:
            return
        raise AssertionError("NameBasedIds accepted a name uuid5 refuses") from None
    made = NameBasedIds(namespace)(name)
    assert made == expected and made.version == 5 and made.variant == uuid.RFC_4122
