"""The reconciliation's accounting: every request message ends in one decision or a dead letter, counted
per partition; duplicates, poison matched through the dead letters, double decisions, hostile bytes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ces.events.requests import parse_request
from ces.services.reconcile import (
    AUDITED,
    REJECTED,
    DoubleDecision,
    Ledger,
    Missing,
    ReconcileReport,
    parse_since,
    reconcile,
    render_lines,
    request_id_of,
)

TOPIC = "p-conversion-requests"


def request(rid: uuid.UUID, **extra: object) -> bytes:
    body = {"request_id": str(rid), "base_currency": "USD", "target_currency": "EUR", "amount": "1.00", **extra}
    return json.dumps(body).encode()


def audited(rid: uuid.UUID, output: str = "0.92") -> tuple[bytes, bytes]:
    return str(rid).encode(), json.dumps({"request_id": str(rid), "output_amount": output}).encode()


def rejected(rid: uuid.UUID, reason: str = "no_rate") -> tuple[bytes, bytes]:
    return str(rid).encode(), json.dumps({"request_id": str(rid), "reason": reason}).encode()


def dlq(partition: int, offset: int, reason: str = "invalid_json", topic: str = TOPIC) -> list[tuple[str, bytes]]:
    return [
        ("ces.dlq.reason", reason.encode()),
        ("ces.dlq.error", b"whatever"),
        ("ces.dlq.source.topic", topic.encode()),
        ("ces.dlq.source.partition", str(partition).encode()),
        ("ces.dlq.source.offset", str(offset).encode()),
    ]


def test_every_message_accounted_for_per_partition() -> None:
    a, b, c, d = (uuid.uuid4() for _ in range(4))
    ledger = Ledger(TOPIC)
    ledger.add_partition(2)  # empty, still reported
    ledger.add_request(0, 0, request(a))
    ledger.add_request(0, 1, request(a))  # a producer retry: answered by a's one decision
    ledger.add_request(0, 2, request(b))
    ledger.add_request(1, 0, b"\xff\xfenot json")  # poison, dead-lettered by offset
    ledger.add_request(1, 1, request(c))
    ledger.add_request(1, 2, request(d))  # no outcome: the gap
    ledger.add_decision(AUDITED, *audited(a))
    ledger.add_decision(AUDITED, *audited(a))  # the redelivered, identical decision
    ledger.add_decision(REJECTED, *rejected(b))
    ledger.add_decision(AUDITED, *audited(c))
    ledger.add_decision(AUDITED, *audited(uuid.uuid4()))  # a request outside the window
    ledger.add_dead_letter(dlq(1, 0))
    ledger.add_dead_letter(dlq(0, 2, topic="p-rates-fetched"))  # another topic's dead letter: not ours

    report = ledger.report()

    by_partition = {p.partition: p for p in report.partitions}
    assert [p.partition for p in report.partitions] == [0, 1, 2]
    p0, p1, p2 = by_partition[0], by_partition[1], by_partition[2]
    assert (p0.produced, p0.request_ids, p0.audited, p0.rejected, p0.dead_lettered, p0.missing) == (3, 2, 2, 1, 0, 0)
    assert (p1.produced, p1.request_ids, p1.audited, p1.rejected, p1.dead_lettered, p1.missing) == (3, 2, 1, 0, 1, 1)
    assert (p2.produced, p2.missing) == (0, 0)
    t = report.totals
    assert (t.produced, t.request_ids, t.audited, t.rejected, t.dead_lettered, t.missing) == (6, 4, 3, 1, 1, 1)
    assert report.missing == [Missing(1, 2, d)]
    assert report.double_decisions == []
    assert report.decisions_read == 5
    assert report.unmatched_decisions == 1
    assert report.dead_letter_reasons == {"invalid_json": 1}
    assert not report.ok


def test_no_gap_is_ok() -> None:
    a = uuid.uuid4()
    ledger = Ledger(TOPIC)
    ledger.add_request(0, 7, request(a))
    ledger.add_request(0, 8, b"")  # an empty value, dead-lettered
    ledger.add_decision(AUDITED, *audited(a))
    ledger.add_dead_letter(dlq(0, 8))
    report = ledger.report()
    assert report.ok
    assert report.totals.produced == report.totals.audited + report.totals.dead_lettered == 2


def test_a_missing_message_without_a_request_id_is_listed_by_offset() -> None:
    ledger = Ledger(TOPIC)
    ledger.add_request(3, 41, b'{"no": "id"}')
    report = ledger.report()
    assert report.missing == [Missing(3, 41, None)]
    assert report.totals.request_ids == 0


def test_a_dead_lettered_message_whose_id_was_decided_elsewhere_counts_once() -> None:
    a = uuid.uuid4()
    ledger = Ledger(TOPIC)
    ledger.add_request(0, 0, request(a))
    ledger.add_request(0, 1, request(a, event_type="Other"))  # the handler dead-letters this one
    ledger.add_decision(AUDITED, *audited(a))
    ledger.add_dead_letter(dlq(0, 1, "unexpected_event_type"))
    t = ledger.report().totals
    assert (t.produced, t.audited, t.dead_lettered, t.missing) == (2, 1, 1, 0)


def test_double_decisions() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ledger = Ledger(TOPIC)
    for offset, rid in enumerate((a, b, c)):
        ledger.add_request(0, offset, request(rid))
    ledger.add_decision(AUDITED, *audited(a))
    ledger.add_decision(REJECTED, *rejected(a))  # audited and rejected
    ledger.add_decision(AUDITED, *audited(b, "1.00"))
    ledger.add_decision(AUDITED, *audited(b, "1.01"))  # two audits that differ
    ledger.add_decision(AUDITED, *audited(b, "1.00"))  # a redelivery of the first: not a third
    ledger.add_decision(REJECTED, *rejected(c))
    ledger.add_decision(REJECTED, *rejected(c))  # identical: fine

    report = ledger.report()

    assert sorted(report.double_decisions, key=lambda d: d.request_id) == sorted(
        [DoubleDecision(a, (AUDITED, REJECTED)), DoubleDecision(b, (AUDITED, AUDITED))], key=lambda d: d.request_id
    )
    assert report.totals.missing == 0
    assert report.totals.audited == 2  # each message once, by the first decision seen
    assert not report.ok
    assert any("decided more than once" in line for line in render_lines(report))


def test_decision_read_from_the_body_when_the_key_is_missing_or_garbage() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    ledger = Ledger(TOPIC)
    ledger.add_request(0, 0, request(a))
    ledger.add_request(0, 1, request(b))
    ledger.add_decision(AUDITED, None, audited(a)[1])
    ledger.add_decision(REJECTED, b"\xff\xff", rejected(b)[1])
    ledger.add_decision(REJECTED, b"nope", b"\x00garbage")
    report = ledger.report()
    assert report.ok
    assert report.unreadable_decisions == 1


def test_request_ids_are_normalised_like_the_handler_does() -> None:
    a = uuid.uuid4()
    ledger = Ledger(TOPIC)
    ledger.add_request(0, 0, json.dumps({"request_id": str(a).upper()}).encode())
    ledger.add_request(0, 1, json.dumps({"request_id": a.hex}).encode())
    ledger.add_decision(AUDITED, *audited(a))
    assert ledger.report().totals.audited == 2


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe\xfd",
        b"[" * 100_000,  # deep nesting, oversized
        b"[" * 10_000,  # deep nesting under the size limit: RecursionError inside json
        b'{"a":' * 3000,
        b'{"request_id": 1' + b"9" * 5000 + b"}",  # past Python's int digit limit
        b'{"request_id": "' + b"a" * 100 + b'"}',
        b'{"request_id": null}',
        b'["request_id"]',
        b'{"request_id": "not-a-uuid"}',
        b'"just a string"',
        b"NaN",
    ],
)
def test_nasty_bytes_have_no_request_id(raw: bytes) -> None:
    assert request_id_of(raw) is None
    ledger = Ledger(TOPIC)
    ledger.add_request(0, 0, raw)
    ledger.add_decision(AUDITED, raw, raw)
    ledger.add_dead_letter([("ces.dlq.source.topic", raw), ("ces.dlq.source.partition", raw)])
    ledger.add_dead_letter([("ces.dlq.source.topic", TOPIC.encode()), ("ces.dlq.source.partition", None)])
    ledger.add_dead_letter([*dlq(0, 0)[:4], ("ces.dlq.source.offset", raw)])
    report = ledger.report()
    assert report.missing == [Missing(0, 0, None)]
    assert report.unreadable_decisions == 1


def test_oversized_request_id_is_sniffed_from_the_head_like_the_handler() -> None:
    a = uuid.uuid4()
    raw = b'{"request_id": "' + str(a).encode() + b'", "pad": "' + b"x" * 20_000 + b'"}'
    assert request_id_of(raw) == a


@given(st.binary(max_size=2000))
def test_any_bytes_never_raise(raw: bytes) -> None:
    request_id_of(raw)
    Ledger(TOPIC).add_decision(AUDITED, raw, raw)


_ids = st.uuids().flatmap(
    lambda u: st.sampled_from([str(u), str(u).upper(), u.hex, "{" + str(u) + "}", "urn:uuid:" + str(u)])
)
_values = st.none() | st.booleans() | st.integers() | st.text(max_size=20) | _ids


@given(
    st.dictionaries(st.sampled_from(["request_id", "amount", "event_type", "x"]), _values, max_size=4)
    | st.lists(_values, max_size=3)
    | _values
)
def test_reads_every_request_id_the_handler_reads(payload: object) -> None:
    raw = json.dumps(payload).encode()
    try:
        parsed = parse_request(raw, max_amount=Decimal(10))
    except Exception:  # the handler dead-letters (or fails): matched by offset, not by id
        return
    assert request_id_of(raw) == parsed.request_id


def test_parse_since() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_since("15m", now) == now - timedelta(minutes=15)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("1.5d", now) == now - timedelta(hours=36)
    assert parse_since("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_since("2026-01-01T02:00:00+02:00") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_since("2026-01-01") == datetime(2026, 1, 1, tzinfo=UTC)
    # Unicode digits and spaces are not ASCII ones: "١٢h" (Arabic-Indic) was once read as 12 hours.
    for bad in ("yesterday", "2026-01-01T00:00:00", "15 minutes", "-2h", "١٢h", "１２m", "2\u2003h", "٢٠٢٦-01-01"):
        with pytest.raises(ValueError, match=r"offset|duration"):
            parse_since(bad)


class FakeSource:
    """The requests at once; one more decision becomes readable per outcome read."""

    def __init__(self, rids: list[uuid.UUID]) -> None:
        self.rids = rids
        self.reads = 0

    async def read_requests(self, ledger: Ledger) -> None:
        for offset, rid in enumerate(self.rids):
            ledger.add_request(0, offset, request(rid))

    async def read_outcomes(self, ledger: Ledger) -> None:
        if self.reads < len(self.rids):
            ledger.add_decision(AUDITED, *audited(self.rids[self.reads]))
        self.reads += 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_wait_reads_outcomes_again_until_no_gap() -> None:
    clock = FakeClock()
    source = FakeSource([uuid.uuid4() for _ in range(3)])
    report = await reconcile(source, TOPIC, wait_seconds=10, poll_seconds=1, clock=clock, sleep=clock.sleep)
    assert report.ok
    assert source.reads == 3
    assert clock.now == 2.0


async def test_wait_gives_up_at_the_deadline_with_the_gap() -> None:
    clock = FakeClock()
    source = FakeSource([uuid.uuid4() for _ in range(10)])
    report = await reconcile(source, TOPIC, wait_seconds=2.5, poll_seconds=1, clock=clock, sleep=clock.sleep)
    assert not report.ok
    assert report.totals.missing == 6  # reads at t=0, 1, 2, 2.5
    assert clock.now == 2.5


async def test_without_wait_outcomes_are_read_once() -> None:
    source = FakeSource([uuid.uuid4() for _ in range(2)])
    report: ReconcileReport = await reconcile(source, TOPIC)
    assert source.reads == 1
    assert report.totals.missing == 1
    assert report.as_dict()["totals"]["missing"] == 1
    json.dumps(report.as_dict())  # serialisable as it is


def test_cli_arguments() -> None:
    from ces.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["reconcile", "--since", "2h", "--wait", "5", "--json", "--limit", "3"])
    assert (args.wait, args.json, args.limit) == (5.0, True, 3)
    assert timedelta(hours=2) - timedelta(seconds=5) < datetime.now(UTC) - args.since < timedelta(hours=2, seconds=5)
    for bad in (["--wait", "-1"], ["--wait", "nan"], ["--limit", "-1"], ["--since", "soon"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["reconcile", *bad])
