"""The gateway's producer compresses requests as `CES_GATEWAY_COMPRESSION` says (none by default), not as the
other producers do (`CES_KAFKA_COMPRESSION`), unless told to inherit it."""

from __future__ import annotations

from ces.bootstrap import build_producer
from ces.bootstrap.gateway import request_compression
from ces.settings import Settings


async def test_the_gateway_sends_requests_uncompressed_by_default_and_can_inherit_the_shared_codec() -> None:
    assert Settings().gateway_compression == "none"
    assert request_compression(Settings(kafka_compression="zstd")) == "none"
    assert request_compression(Settings(kafka_compression="lz4", gateway_compression="inherit")) == "lz4"
    assert request_compression(Settings(kafka_compression="zstd", gateway_compression="gzip")) == "gzip"
    gateway = build_producer(Settings(kafka_compression="zstd"), linger_ms=0, compression="none")
    shared = build_producer(Settings(kafka_compression="zstd"), linger_ms=0)
    assert gateway._compression_type is None and shared._compression_type == "zstd"
