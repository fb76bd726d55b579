"""The fast key partitioner picks exactly the partitions of aiokafka's (Kafka's Java murmur2)."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from ces.adapters.kafka.partitioner import KeyPartitioner, murmur2


@given(st.binary(max_size=600))  # past the cached word counts (255 bytes) too, every tail length
def test_murmur2_is_kafkas_for_any_bytes(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


def test_known_values_of_the_java_client() -> None:
    # Kafka's own test vectors (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java), signed.
    vectors = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536}
    for data, signed in vectors.items():
        assert murmur2(data) == signed & 0xFFFFFFFF


@given(st.integers(min_value=1, max_value=64))
def test_a_request_id_lands_where_aiokafka_puts_it(partitions: int) -> None:
    ours, theirs = KeyPartitioner(), DefaultPartitioner()
    all_partitions = list(range(partitions))
    for _ in range(20):
        key = str(uuid.uuid4()).encode()
        assert ours(key, all_partitions, all_partitions) == theirs(key, all_partitions, all_partitions)


def test_no_key_picks_an_available_partition() -> None:
    assert {KeyPartitioner()(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
    assert KeyPartitioner()(None, [0, 1, 2, 3], []) in {0, 1, 2, 3}
