"""The replay's reading of a fetched batch: each record as an event, or as its target's rows straight from its
bytes (record by record, or a topic's records at once), or counted as undecodable."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from ces.events.base import Event
from ces.events.registry import UndecodableEvent, decode
from ces.projections.replay.model import LOGGER, MAX_WARNINGS, PhaseReport, Prepared, PreparedBatch, Record, Written
from ces.projections.replay.ports import Batcher, Preparer

log = logging.getLogger(LOGGER)

Failure = tuple[Record, UndecodableEvent]


def read(
    records: list[Record],
    expected: Mapping[str, tuple[type[Event], ...]],
    preparers: Mapping[str, Preparer | None],
    batchers: Mapping[str, Batcher],
    report: PhaseReport,
) -> list[Written]:
    """What the target writes for `records`; the undecodable ones are counted (and the first logged)."""
    items: list[Written] | None = None
    if len(batchers) == 1:  # one topic per phase has a batch path so far
        items = _batched(records, expected, preparers, *next(iter(batchers.items())), report)
    if items is None:
        each, failures = _each(records, expected, preparers)
        _count(failures, report)
        report.applied += len(each)
        items = list(each)
    report.events += len(records)
    return items


def _batched(
    records: list[Record],
    expected: Mapping[str, tuple[type[Event], ...]],
    preparers: Mapping[str, Preparer | None],
    topic: str,
    batcher: Batcher,
    report: PhaseReport,
) -> list[Written] | None:
    values = [value for name, _, _, value in records if name == topic]
    batch = batcher(values) if values else None
    if batch is None:
        return None
    if len(values) == len(records):
        report.applied += len(values)
        return [batch]
    rest, failures = _each([r for r in records if r[0] != topic], expected, preparers)
    keys = set(batch.keys)
    if any((e.key if isinstance(e, Prepared) else e.key()) in keys for e in rest):
        return None  # which of two decisions for a request id stands depends on their order: record by record
    _count(failures, report)
    report.applied += len(values) + len(rest)
    return [batch, *rest]


def _each(
    records: list[Record], expected: Mapping[str, tuple[type[Event], ...]], preparers: Mapping[str, Preparer | None]
) -> tuple[list[Event | Prepared], list[Failure]]:
    events: list[Event | Prepared] = []
    failures: list[Failure] = []
    for record in records:
        topic, _, _, value = record
        prepare = preparers[topic]
        if prepare is not None:
            prepared = prepare(value)
            if prepared is not None:
                events.append(prepared)
                continue
        try:
            events.append(decode(value, expected=expected[topic]))
        except UndecodableEvent as exc:
            failures.append((record, exc))
    return events, failures


def _count(failures: list[Failure], report: PhaseReport) -> None:
    for (topic, partition, offset, _), exc in failures:
        if sum(report.undecodable.values()) < MAX_WARNINGS:
            log.warning("skipping undecodable message %s[%d]@%d: %s", topic, partition, offset, exc)
        report.undecodable[(topic, exc.reason)] += 1


def as_events(items: Sequence[Written]) -> list[Event]:
    """The items decoded again (a prepared record decodes: a preparer takes only bytes the decoder accepts), for
    the one-by-one retry of a refused batch, whose log lines are then what they are without the byte path."""
    events: list[Event] = []
    for item in items:
        if isinstance(item, PreparedBatch):
            events.extend(decode(raw) for raw in item.raws)
        elif isinstance(item, Prepared):
            events.append(decode(item.raw))
        else:
            events.append(item)
    return events
