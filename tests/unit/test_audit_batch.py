"""Differential test of the replay's batch path for audits (`audit_rows.audited_batch`) against its per-record
path (`audited_rows`, itself proven against the decoder and `bulk_audit` by test_audit_rows.py): for any batch
of records, it takes the batch exactly when the per-record path takes every record, no request id comes twice
and no time is a February 29th; and then its COPY texts are the per-record lines' rows, in order: the same
value in every column (a time's `Z` where the per-record line has `+00:00`, NULL as an empty field where it
has `\\N`, both read by PostgreSQL as the same value). And how the replay reads a fetched batch with it
(`decoding.read`): a batch shares no request id with the other records' events, or it is read record by record.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import event, given
from hypothesis import strategies as st

from ces.adapters.postgres.audit_rows import BATCH_AUDITS, BATCH_REQUESTS, BATCH_SLICE, audited_batch, audited_rows
from ces.adapters.postgres.bulk_audit import _AUDITS, _REQUESTS, Pieces, _claimed_lines
from ces.events.conversions import ConversionAudited, ConversionRejected
from ces.projections.replay import PhaseReport, Prepared, PreparedBatch, Record
from ces.projections.replay.decoding import as_events, read
from tests.strategies import audits_of
from tests.unit.test_audit_rows import FIELDS, ODD_VALUES, SETTINGS, VALUE, audits

TIMES = {b"decided_at", b"converted_at", b"as_of"}
Row = dict[bytes, bytes | None]


def columns(statement: str) -> list[bytes]:
    return [c.encode() for c in statement[statement.index("(") + 1 : statement.index(")")].split(", ")]


def rows(text: bytes, statement: str, null: bytes) -> list[Row]:
    """The rows a text-format COPY of `text` with `statement`'s columns denotes (there is no escape in it)."""
    assert b"\\" not in text.replace(b"\\N", b"")
    assert text.endswith(b"\n") or not text
    return [
        dict(zip(columns(statement), (None if f == null else f for f in line.split(b"\t")), strict=True))
        for line in text.split(b"\n")[:-1]
    ]


def as_offset(row: Row) -> Row:
    """A batch row's times as `isoformat()` writes the same instant: `Z` is `+00:00`."""
    for name in TIMES & row.keys():
        value = row[name]
        if value is not None:
            assert value.endswith(b"Z")
            row[name] = value[:-1] + b"+00:00"
    return row


def per_record_rows(prepared: list[Prepared]) -> tuple[list[Row], list[Row]]:
    requests = rows(b"".join(p.rows[0] for p in prepared), _REQUESTS, b"\\N")
    audits_ = rows(b"".join(p.rows[1] for p in prepared), _AUDITS, b"\\N")
    return requests, audits_


def assert_batch_agrees(raws: list[bytes], slice_size: int = BATCH_SLICE) -> bool:
    """`audited_batch` takes exactly the batches it should, with the per-record path's rows, in a piece of whole
    lines per slice; True when taken."""
    batch = audited_batch(raws, slice_size)
    each = [audited_rows(raw) for raw in raws]
    prepared = [p for p in each if p is not None]
    should = (
        bool(raws)
        and len(prepared) == len(raws)
        and len({p.key for p in prepared}) == len(raws)
        and not any(b"-02-29T" in raw for raw in raws)  # only a time can hold it in a record the byte path takes
    )
    assert (batch is not None) == should, raws
    if batch is None:
        return False
    assert batch.raws == raws and batch.keys == [p.key for p in prepared]
    requests, audits_ = per_record_rows(prepared)
    slices = [raws[i : i + slice_size] for i in range(0, len(raws), slice_size)]
    for pieces in batch.rows:
        assert [piece.count(b"\n") for piece in pieces] == [len(s) for s in slices]
    assert [as_offset(r) for r in rows(b"".join(batch.rows[0]), BATCH_REQUESTS, b"")] == requests
    assert [as_offset(r) for r in rows(b"".join(batch.rows[1]), BATCH_AUDITS, b"")] == audits_
    return True


def changed(event: ConversionAudited, changes: list[tuple[str, str]]) -> bytes:
    text = event.to_json().decode()
    for name, value in changes:
        text = re.sub(VALUE.format(name=name), lambda m, v=value: m.group(1) + v, text, count=1)  # type: ignore[misc]
    return text.encode()


def _month_end(year: int, month: int, day: int) -> datetime | None:
    try:
        return datetime(year, month, day, tzinfo=UTC)
    except ValueError:
        return None


ends = st.builds(_month_end, st.sampled_from([2023, 2024, 1900, 2000]), st.integers(1, 12), st.integers(28, 31))
at_month_ends = st.builds(
    lambda e, when, which: e.model_copy(update={which: when}),
    audits,
    ends.filter(lambda t: t is not None),
    st.sampled_from(["occurred_at", "converted_at", "as_of"]),
)
# Audits in the forms CES writes, all taken by the per-record path (but for a February 29th now and then).
amounts = st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,12})?", fullmatch=True).map(Decimal)
instants = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)),
    ends.filter(lambda t: t is not None),
)
ces_audits = audits_of(amounts, instants, max_rate_ids=2)
usual = (
    st.one_of(ces_audits, at_month_ends).map(lambda e: e.to_json()).filter(lambda raw: audited_rows(raw) is not None)
)
odd = st.one_of(
    st.builds(changed, audits, st.lists(st.tuples(st.sampled_from(FIELDS), st.sampled_from(ODD_VALUES)), max_size=2)),
    audits.map(lambda e: e.to_json().replace(b",", b",\n", 1)),  # a raw newline
    audits.map(lambda e: e.to_json() + b"\n" + e.to_json()),  # two records in one value
    st.binary(max_size=40),
    st.sampled_from([b"", b"\n", b"{}", b"null"]),
)


@SETTINGS
@given(
    st.lists(usual, max_size=6),
    st.lists(st.tuples(st.integers(0, 6), odd), max_size=2),
    st.lists(st.integers(0, 5), max_size=2),
    st.booleans(),
    st.sampled_from([BATCH_SLICE, 1, 2, 3]),
)
def test_the_batch_path_is_the_per_record_path_or_declines(
    raws: list[bytes], odds: list[tuple[int, bytes]], repeats: list[int], republish: bool, slice_size: int
) -> None:
    raws = list(raws)
    for at, value in odds:  # a record the per-record path may or may not take, anywhere in the batch
        raws.insert(at, value)
    for i in repeats:  # the same record twice, or the same request id with another decision
        if i < len(raws):
            raws.append(raws[i].replace(b'"output_amount":"', b'"output_amount":"1') if republish else raws[i])
    event(f"taken: {assert_batch_agrees(raws, slice_size)}, {len(raws)} records in slices of {slice_size}")


@SETTINGS
@given(st.lists(usual.filter(lambda raw: b"-02-29T" not in raw), min_size=1, max_size=8), st.integers(1, 9))
def test_audits_ces_writes_take_the_batch_path(raws: list[bytes], slice_size: int) -> None:
    assert assert_batch_agrees(raws, slice_size)
    event(f"{len(raws)} records in slices of {slice_size}")


def audit(request: uuid.UUID, **update: object) -> ConversionAudited:
    return ConversionAudited(
        occurred_at=datetime(2026, 11, 26, 3, 4, 5, 6, tzinfo=UTC),
        audit_id=uuid.uuid4(),
        request_id=request,
        rate_id=uuid.UUID(int=1),
        rate_ids=[uuid.UUID(int=1)],
        rate_kind="direct",
        base_currency="EUR",
        target_currency="USD",
        input_amount=Decimal("100.00"),
        rate_value=Decimal("1.0892"),
        margin=Decimal("0.01"),
        output_amount=Decimal("108.83"),
        converted_at=datetime(2026, 11, 26, 3, 4, 5, 6, tzinfo=UTC),
    ).model_copy(update=update)


def reject(request: uuid.UUID) -> ConversionRejected:
    now = datetime(2026, 11, 26, tzinfo=UTC)
    return ConversionRejected(occurred_at=now, request_id=request, reason="no_rate", message="no", rejected_at=now)


EXPECTED = {"a": (ConversionAudited,), "r": (ConversionRejected,)}


def read_as_replay(values: list[tuple[str, bytes]]) -> tuple[list[object], PhaseReport]:
    report = PhaseReport("audit")
    records: list[Record] = [(topic, 0, offset, value) for offset, (topic, value) in enumerate(values)]
    items = read(records, EXPECTED, {"a": audited_rows, "r": None}, {"a": audited_batch}, report)
    return list(items), report


def test_the_replay_reads_a_topics_audits_as_one_batch_and_the_rest_record_by_record() -> None:
    a, b, c = (uuid.uuid4() for _ in range(3))
    items, report = read_as_replay(
        [("a", audit(a).to_json()), ("r", reject(b).to_json()), ("r", b"not json"), ("a", audit(c).to_json())]
    )
    assert isinstance(items[0], PreparedBatch) and items[0].keys == [str(a).encode(), str(c).encode()]
    assert isinstance(items[1], ConversionRejected) and len(items) == 2
    assert (report.events, report.applied, report.undecodable) == (4, 3, Counter({("r", "invalid_json"): 1}))
    assert [e.key() for e in as_events(items)] == [str(a).encode(), str(c).encode(), str(b).encode()]


def test_a_batch_sharing_a_request_id_with_another_record_is_read_record_by_record() -> None:
    # Which decision stands depends on their order, which a batch does not keep.
    a, b = uuid.uuid4(), uuid.uuid4()
    items, report = read_as_replay(
        [("r", reject(a).to_json()), ("a", audit(a).to_json()), ("a", audit(b).to_json()), ("r", b"{")]
    )
    assert [type(i) for i in items] == [ConversionRejected, Prepared, Prepared]
    assert (report.events, report.applied, sum(report.undecodable.values())) == (4, 3, 1)  # counted once


def test_a_batch_the_batch_path_declines_is_read_record_by_record() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    leap = audit(b, as_of=datetime(2024, 2, 29, tzinfo=UTC))
    items, report = read_as_replay([("a", audit(a).to_json()), ("a", leap.to_json())])
    assert [type(i) for i in items] == [Prepared, Prepared]
    assert (report.events, report.applied) == (2, 2)


def plain(n: int) -> list[bytes]:
    return [audit(uuid.uuid4()).to_json() for _ in range(n)]


def test_slices_at_and_around_the_batch_boundaries_give_the_one_slice_rows() -> None:
    for n in (1, 2, 3, 4, 5, 6, 7):
        raws = plain(n)
        whole, sliced = audited_batch(raws, n), audited_batch(raws, 3)
        assert whole is not None and sliced is not None
        assert [len(pieces) for pieces in sliced.rows] == [(n + 2) // 3] * 2
        assert [len(pieces) for pieces in whole.rows] == [1, 1]
        assert [b"".join(pieces) for pieces in sliced.rows] == [whole.rows[0][0], whole.rows[1][0]]
        assert sliced.keys == whole.keys and sliced.raws is raws


def test_a_declining_slice_declines_the_whole_batch() -> None:
    leap = audit(uuid.uuid4(), converted_at=datetime(2024, 2, 29, 1, tzinfo=UTC)).to_json()
    repeated = plain(4)
    for raws in (
        [*plain(6), b"not json"],  # a record the byte path does not take, alone in the last slice
        [*plain(3), leap, *plain(2)],  # a February 29th in the second slice
        repeated + plain(2) + [repeated[1]],  # the same request id in the first and the last slice
    ):
        assert audited_batch(raws, 3) is None
        assert not assert_batch_agrees(raws, 3)
    assert audited_batch([], 3) is None


def test_slices_of_one_and_larger_than_the_batch() -> None:
    raws = plain(4)
    assert assert_batch_agrees(raws, 1) and assert_batch_agrees(raws, 10**6)
    one = audited_batch(raws, 1)
    assert one is not None and [len(p) for p in one.rows] == [4, 4]


def test_copy_reads_the_pieces_as_they_are_skipping_empty_ones_and_chunking_large_ones() -> None:
    data = Pieces([b"", b"a\n", b"", b"", b"bcdef\n", b""])
    assert [data.read(4) for _ in range(5)] == [b"a\n", b"bcde", b"f\n", b"", b""]
    assert Pieces([]).read(4) == b"" and Pieces([b"", b""]).read(4) == b""
    assert Pieces([b"x\n", b"yz\n"]).read(-1) == b"x\n"


def test_the_claimed_lines_of_a_sliced_batch_keep_each_key_with_its_line() -> None:
    raws = plain(7)
    batch = audited_batch(raws, 3)
    assert batch is not None
    claimed = {batch.keys[i] for i in (3, 4, 6)}  # none of the first slice's
    pieces = _claimed_lines(batch, claimed)
    assert pieces[0] == b"" and [p.count(b"\n") for p in pieces] == [0, 2, 1]
    lines = b"".join(pieces).split(b"\n")[:-1]
    assert [line.split(b"\t")[1] for line in lines] == [batch.keys[i] for i in (3, 4, 6)]
    reader = Pieces(pieces)
    assert [reader.read(1 << 20) for _ in range(3)] == [pieces[1], pieces[2], b""]
