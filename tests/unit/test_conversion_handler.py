"""The conversion handler against fakes: decide, record, publish what stands, dead-letter poison last."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from ces.adapters.kafka.dead_letters import DeadLetters
from ces.events.base import utc_now
from ces.events.conversions import ConversionAudited, ConversionRejected
from ces.events.signing import SIGNATURE_HEADER, RequestSigner, RequestVerifier
from ces.services.conversion_handler import ConversionHandler
from ces.services.conversions import ConversionDecider
from ces.services.ports import Received
from tests.contracts.audit_store import audited
from tests.fakes import (
    AwaitedStore,
    DeadLetterSink,
    FakeAuditStore,
    FakePublisher,
    FakeRateLookup,
    StoreDown,
    stored_rate,
)

USD = stored_rate("USD", "1.0892", utc_now() - timedelta(minutes=5))
TOPIC = "conversion-requests"


class Rig:
    """A handler wired to fakes; `journal` is the order in which publishes and dead letters happened."""

    def __init__(self, store: FakeAuditStore | None = None, verifier: RequestVerifier | None = None) -> None:
        self.journal: list[str] = []
        self.lookup = FakeRateLookup([USD])
        self.store = store or FakeAuditStore()
        self.publisher = FakePublisher(journal=self.journal)
        self.dead = DeadLetterSink(self.journal)
        decider = ConversionDecider(
            self.lookup,  # type: ignore[arg-type]  # RateLookup is a class, not a Protocol
            default_margin=Decimal("0.0010"),
            margin_overrides={},
            max_rate_age=timedelta(hours=1),
        )
        self.handler = ConversionHandler(
            decider,
            AwaitedStore(self.store),
            self.publisher,
            DeadLetters(self.dead),
            max_amount=Decimal(1_000_000),
            verifier=verifier,
        )

    async def handle(self, values: Sequence[bytes]) -> int:
        return await self.handler.handle([message(v, offset) for offset, v in enumerate(values)])


def message(value: bytes, offset: int) -> Received:
    return Received(TOPIC, 0, offset, None, value, timestamp_ms=1_710_000_000_000 + offset)


def request(request_id: uuid.UUID, amount: str = "100.00", target: str = "USD") -> bytes:
    body = {"request_id": str(request_id), "base_currency": "EUR", "target_currency": target, "amount": amount}
    return json.dumps(body).encode()


def conversions(outcome: str) -> float:
    return REGISTRY.get_sample_value("ces_conversions_total", {"outcome": outcome}) or 0.0


async def test_a_mixed_batch_publishes_decisions_in_order_then_dead_letters_the_poison() -> None:
    rig = Rig()
    ok, bad_amount, no_rate = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    before = conversions("audited"), conversions("rejected")
    handled = await rig.handle(
        [
            b"not json",
            request(ok),
            request(bad_amount, amount="-5"),
            b'{"base_currency": "EUR"}',  # no request_id: nobody could read a rejection for it
            request(no_rate, target="GBP"),
        ]
    )
    assert handled == 3
    published = rig.publisher.published
    assert [(type(e), getattr(e, "request_id", None)) for e in published] == [
        (ConversionAudited, ok),
        (ConversionRejected, bad_amount),
        (ConversionRejected, no_rate),
    ]
    assert [getattr(e, "reason", None) for e in published] == [None, "invalid_amount", "no_rate"]
    assert rig.publisher.calls == 1  # one publish for the batch
    assert rig.journal == [
        "publish ConversionAudited",
        "publish ConversionRejected",
        "publish ConversionRejected",
        "dead-letter invalid_json",
        "dead-letter invalid_request_id",
    ]
    # The poison goes byte for byte, with where it came from.
    assert [(value, headers["ces.dlq.source.offset"]) for _, value, headers in rig.dead.sent] == [
        (b"not json", b"0"),
        (b'{"base_currency": "EUR"}', b"3"),
    ]
    assert set(rig.store.decisions) == {ok, bad_amount, no_rate}
    assert (conversions("audited"), conversions("rejected")) == (before[0] + 1, before[1] + 2)


async def test_duplicates_in_one_batch_get_one_decision_the_first() -> None:
    rig = Rig()
    rid = uuid.uuid4()
    assert await rig.handle([request(rid, "100.00"), request(rid, "200.00"), request(rid, "300.00")]) == 1
    (decision,) = rig.publisher.published
    assert isinstance(decision, ConversionAudited) and decision.input_amount == Decimal("100.00")
    assert rig.store.decisions == {rid: decision}
    assert rig.dead.sent == []


async def test_a_request_decided_before_gets_its_stored_decision_republished_identically() -> None:
    rid = uuid.uuid4()
    earlier = audited(rid, [USD.rate_id], output="1.00")  # deliberately not what the decider computes now
    store = FakeAuditStore()
    store.record([earlier])
    rig = Rig(store)
    fresh = uuid.uuid4()
    assert await rig.handle([request(rid), request(fresh)]) == 2
    new, again = rig.publisher.published  # the new decision first, then the re-published one, marked
    assert again.to_json() == earlier.to_json()  # the first decision, byte for byte: no second conversion
    assert rig.publisher.republished == [again]  # so the gateway can answer "replayed" without a database read
    assert isinstance(new, ConversionAudited) and new.request_id == fresh
    assert store.decisions[rid] is earlier and len(store.decisions) == 2


async def test_a_failing_store_publishes_nothing_and_dead_letters_nothing_so_the_batch_can_be_retried() -> None:
    rig = Rig(FakeAuditStore(down=True))
    batch = [request(uuid.uuid4()), b"not json"]
    with pytest.raises(StoreDown):
        await rig.handle(batch)
    assert rig.store.record_calls == 1  # it did get as far as recording
    assert rig.publisher.published == [] and rig.dead.sent == [] and rig.journal == []

    # The batch consumer retries the same batch once the database is back: everything happens once.
    rig.store.down = False
    assert await rig.handle(batch) == 1
    assert rig.journal == ["publish ConversionAudited", "dead-letter invalid_json"]


async def test_a_failing_publish_dead_letters_nothing_and_the_retry_republishes_the_recorded_decision() -> None:
    rig = Rig()
    rig.publisher.error = TimeoutError("broker down")
    batch = [request(uuid.uuid4()), b"not json"]
    with pytest.raises(TimeoutError):
        await rig.handle(batch)
    assert rig.dead.sent == []
    (recorded,) = rig.store.decisions.values()

    rig.publisher.error = None
    assert await rig.handle(batch) == 1
    (published,) = rig.publisher.published
    assert published.to_json() == recorded.to_json()  # recorded before the failed publish: the same decision
    assert rig.dead.reasons == ["invalid_json"]


async def test_a_batch_of_poison_only_publishes_nothing_and_dead_letters_all() -> None:
    rig = Rig()
    assert await rig.handle([b"[]", b"\xff"]) == 0
    assert rig.publisher.calls == 0 and rig.store.record_calls == 0 and rig.lookup.calls == []
    assert rig.dead.reasons == ["not_an_object", "invalid_json"]


GATEWAY_KEY = b"k" * 48


def claimed(request_id: uuid.UUID, requested_by: uuid.UUID) -> bytes:
    body = json.loads(request(request_id))
    return json.dumps({**body, "schema_version": 2, "requested_by": str(requested_by)}).encode()


def signed(value: bytes, offset: int, key: bytes = GATEWAY_KEY) -> Received:
    header = (SIGNATURE_HEADER, RequestSigner(key).sign(value))
    return Received(TOPIC, 0, offset, None, value, timestamp_ms=1_710_000_000_000 + offset, headers=(header,))


def unauthenticated() -> float:
    return sum(
        REGISTRY.get_sample_value("ces_unauthenticated_requests_total", {"failure": f}) or 0.0
        for f in ("missing", "malformed", "unknown_key", "mismatch")
    )


async def test_only_a_signed_requested_by_is_believed() -> None:
    """The gateway's signed claim is audited with its key id; an outside producer's forged claim (no header, a
    wrong key, a signature of other bytes) is rejected as unauthenticated_requester and recorded with nobody as
    the requester; a request that claims nobody needs no signature."""
    rig = Rig(verifier=RequestVerifier([GATEWAY_KEY]))
    key_id = uuid.uuid4()
    genuine, unsigned, wrong_key, replayed_sig, anonymous = (uuid.uuid4() for _ in range(5))
    before = unauthenticated()
    other_bytes = claimed(uuid.uuid4(), key_id)
    stolen = RequestSigner(GATEWAY_KEY).sign(other_bytes)  # a valid signature, of another request
    batch = [
        signed(claimed(genuine, key_id), 0),
        message(claimed(unsigned, key_id), 1),
        signed(claimed(wrong_key, key_id), 2, key=b"x" * 48),
        Received(TOPIC, 0, 3, None, claimed(replayed_sig, key_id), headers=((SIGNATURE_HEADER, stolen),)),
        message(request(anonymous), 4),
    ]
    assert await rig.handler.handle(batch) == 5
    by_id = {d.request_id: d for d in rig.publisher.published}
    assert isinstance(by_id[genuine], ConversionAudited) and by_id[genuine].requested_by == key_id
    for forged in (unsigned, wrong_key, replayed_sig):
        decision = by_id[forged]
        assert isinstance(decision, ConversionRejected), forged
        assert decision.reason == "unauthenticated_requester" and decision.requested_by is None
        assert str(key_id) in decision.message and "ces-signature" in decision.message
    assert isinstance(by_id[anonymous], ConversionAudited) and by_id[anonymous].requested_by is None
    assert rig.store.decisions[unsigned].requested_by is None  # the audit never names the forged requester
    assert unauthenticated() == before + 3


async def test_a_worker_without_a_signing_key_believes_no_claim() -> None:
    rig = Rig()  # no verifier: a worker started without CES_REQUEST_SIGNING_KEY
    rid = uuid.uuid4()
    assert await rig.handler.handle([signed(claimed(rid, uuid.uuid4()), 0)]) == 1
    (decision,) = rig.publisher.published
    assert isinstance(decision, ConversionRejected) and decision.reason == "unauthenticated_requester"
