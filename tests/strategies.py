"""Hypothesis strategies more than one test module builds events from.

Each module keeps its own value strategies (which decimals, which instants: what it probes differs); the
shape of an event is written once here.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from hypothesis import strategies as st

from ces.events.conversions import ConversionAudited

codes = st.from_regex(r"[A-Z]{3}", fullmatch=True)


def audits_of(
    amounts: st.SearchStrategy[str] | st.SearchStrategy[Decimal],
    instants: st.SearchStrategy[datetime],
    *,
    currencies: st.SearchStrategy[str] = codes,
    min_rate_ids: int = 1,
    max_rate_ids: int = 3,
) -> st.SearchStrategy[ConversionAudited]:
    """`ConversionAudited` events whose four amounts are drawn from `amounts` and whose instants from `instants`."""
    return st.builds(
        ConversionAudited,
        event_id=st.uuids(),
        occurred_at=instants,
        audit_id=st.uuids(),
        request_id=st.uuids(),
        rate_id=st.uuids(),
        rate_ids=st.lists(st.uuids(), min_size=min_rate_ids, max_size=max_rate_ids),
        rate_kind=st.sampled_from(["direct", "inverse", "cross"]),
        base_currency=currencies,
        target_currency=currencies,
        input_amount=amounts,
        rate_value=amounts,
        margin=amounts,
        output_amount=amounts,
        converted_at=instants,
        requested_by=st.none() | st.uuids(),
        as_of=st.none() | instants,
    )
