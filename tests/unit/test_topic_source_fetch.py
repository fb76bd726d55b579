"""`KafkaTopicSource.fetch` fills a batch from several fetches: its consumer fetches at most 1 MiB a partition
(docs/replay.md, "Peak memory"), fewer records than a batch."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from ces.adapters.kafka.connection import KafkaConnection
from ces.adapters.kafka.topic_source import FILL_WAIT_MS, KafkaTopicSource
from ces.projections.replay import Partition

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def records(tp: TopicPartition, offsets: range) -> list[ConsumerRecord[bytes, bytes]]:
    return [ConsumerRecord(tp.topic, tp.partition, o, 0, 0, None, b"%d" % o, None, 0, 0, ()) for o in offsets]


class FakeConsumer:
    """Hands out its fetches in order, at most `max_records` at a time; then nothing (as at a partition's end)."""

    def __init__(self, fetches: list[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]]) -> None:
        self.fetches = fetches
        self.calls: list[tuple[tuple[TopicPartition, ...], int, int]] = []

    async def getmany(self, *tps: TopicPartition, timeout_ms: int, max_records: int) -> dict[TopicPartition, Any]:
        self.calls.append((tps, timeout_ms, max_records))
        if not self.fetches:
            return {}
        fetch, taken, left = self.fetches[0], {}, max_records
        for tp, recs in list(fetch.items()):
            taken[tp], fetch[tp] = recs[:left], recs[left:]
            left -= len(taken[tp])
            if not fetch[tp]:
                del fetch[tp]
        if not fetch:
            self.fetches.pop(0)
        return {tp: recs for tp, recs in taken.items() if recs}


def source_with(consumer: FakeConsumer) -> KafkaTopicSource:
    source = KafkaTopicSource(KafkaConnection("localhost:9092"), batch_size=5)
    source._consumer = consumer
    return source


def fetch(consumer: FakeConsumer, max_records: int) -> list[tuple[str, int, int, bytes]]:
    return asyncio.run(source_with(consumer).fetch([Partition("t", 0), Partition("t", 1)], max_records))


def test_a_batch_is_filled_from_several_fetches_in_each_partitions_order() -> None:
    consumer = FakeConsumer([{A: records(A, range(0, 2)), B: records(B, range(0, 1))}, {A: records(A, range(2, 6))}])
    got = fetch(consumer, 5)
    assert [(p, o) for _, p, o, _ in got] == [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3)]
    assert [r[3] for r in got] == [b"0", b"1", b"0", b"2", b"3"]
    # The first call waits up to a second for anything, the next ones briefly for more, each for what is left.
    assert [(timeout, most) for _, timeout, most in consumer.calls] == [(1000, 5), (FILL_WAIT_MS, 2)]
    assert fetch(consumer, 5) == [("t", 0, 4, b"4"), ("t", 0, 5, b"5")]  # the rest stayed for the next batch


def test_a_batch_ends_short_when_nothing_more_comes_and_empty_when_nothing_came() -> None:
    consumer = FakeConsumer([{B: records(B, range(7, 9))}])
    assert [o for _, _, o, _ in fetch(consumer, 5)] == [7, 8]
    assert [(timeout, most) for _, timeout, most in consumer.calls] == [(1000, 5), (FILL_WAIT_MS, 3)]
    assert fetch(FakeConsumer([]), 5) == []
