"""The gateway's request signature: what it binds, what it refuses, rotation, and where the key may go."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from ces.adapters.kafka.producer import AckedPublisher
from ces.bootstrap.gateway import MissingSigningKey, request_signer
from ces.events.conversions import ConversionRequested
from ces.events.signing import SIGNATURE_HEADER, RequestSigner, RequestVerifier, key_id, signature_of
from ces.settings import Settings, mask_secrets
from cesdev.stack import secrets

KEY = b"a3f1" * 16
OLD_KEY = b"9c0e" * 16
REQUESTED_BY = uuid.UUID("0b6cc3b1-4a4e-4c57-9c4a-1b1f4e3a9d10")


def request_bytes(**changes: Any) -> bytes:
    body: dict[str, Any] = {
        "event_type": "ConversionRequested",
        "schema_version": 2,
        "event_id": "6f1c2a5e-8d7b-4f4e-9d0c-3f2a1b0c9e8d",
        "request_id": "1d9a2f4e-3b6c-4d8e-9f0a-7c5b3e2d1a0f",
        "base_currency": "EUR",
        "target_currency": "USD",
        "amount": "100.00",
        "requested_by": str(REQUESTED_BY),
    }
    body.update(changes)
    return json.dumps(body).encode()


def test_a_signature_verifies_the_bytes_it_signed() -> None:
    value = request_bytes()
    header = RequestSigner(KEY).sign(value)
    assert RequestVerifier([KEY]).failure(value, header) is None
    assert header.startswith(b"v1:" + key_id(KEY) + b":") and len(header) == 76
    assert KEY not in header


@pytest.mark.parametrize(
    ("field", "other"),
    [
        ("request_id", "2d9a2f4e-3b6c-4d8e-9f0a-7c5b3e2d1a0f"),
        ("requested_by", str(uuid.uuid4())),
        ("requested_by", None),
        ("amount", "1000.00"),
        ("base_currency", "GBP"),
        ("target_currency", "JPY"),
        ("event_id", str(uuid.uuid4())),
        ("schema_version", 1),
    ],
)
def test_changing_any_bound_field_breaks_the_signature(field: str, other: object) -> None:
    header = RequestSigner(KEY).sign(request_bytes())
    assert RequestVerifier([KEY]).failure(request_bytes(**{field: other}), header) == "mismatch"


def test_appended_or_reformatted_bytes_break_it_too() -> None:
    value = request_bytes()
    header = RequestSigner(KEY).sign(value)
    verifier = RequestVerifier([KEY])
    assert verifier.failure(value + b" ", header) == "mismatch"
    assert verifier.failure(json.dumps(json.loads(value), indent=1).encode(), header) == "mismatch"


def test_a_missing_header_a_wrong_key_and_a_forged_key_id_are_refused() -> None:
    value = request_bytes()
    verifier = RequestVerifier([KEY])
    assert verifier.failure(value, None) == "missing"
    assert verifier.failure(value, RequestSigner(OLD_KEY).sign(value)) == "unknown_key"
    # The right key id in front of a MAC made with another key: computed, compared, refused.
    other_mac = RequestSigner(OLD_KEY).sign(value)[12:]
    assert verifier.failure(value, b"v1:" + key_id(KEY) + b":" + other_mac) == "mismatch"
    assert RequestVerifier([]).failure(value, RequestSigner(KEY).sign(value)) == "unknown_key"


@pytest.mark.parametrize(
    "header",
    [b"", b"v1", b"v2:" + b"0" * 73, b"v1:" + b"0" * 73, b"v1:zzzzzzzz:" + b"0" * 64, b"\xff" * 76, b"v1:" * 40],
)
def test_garbage_headers_are_refused_without_raising(header: bytes) -> None:
    assert RequestVerifier([KEY]).failure(request_bytes(), header) in {"malformed", "unknown_key", "mismatch"}


@given(st.binary(max_size=200), st.binary(max_size=400))
def test_no_bytes_verify_by_accident_and_none_raise(header: bytes, value: bytes) -> None:
    assert RequestVerifier([KEY]).failure(value, header) is not None


def test_rotation_accepts_the_previous_key_until_it_is_dropped() -> None:
    value = request_bytes()
    during = RequestVerifier(
        Settings(
            request_signing_key=SecretStr(KEY.decode()), request_signing_keys_previous=SecretStr(OLD_KEY.decode())
        ).signing_keys
    )
    assert during.failure(value, RequestSigner(OLD_KEY).sign(value)) is None
    assert during.failure(value, RequestSigner(KEY).sign(value)) is None
    after = RequestVerifier(Settings(request_signing_key=SecretStr(KEY.decode())).signing_keys)
    assert after.failure(value, RequestSigner(OLD_KEY).sign(value)) == "unknown_key"


def test_two_signature_headers_are_ambiguous_and_refused() -> None:
    value = request_bytes()
    good = RequestSigner(KEY).sign(value)
    assert signature_of([("other", b"x"), (SIGNATURE_HEADER, good)]) == good
    assert signature_of([]) is None
    twice = signature_of([(SIGNATURE_HEADER, good), (SIGNATURE_HEADER, good)])
    assert RequestVerifier([KEY]).failure(value, twice) == "malformed"


def test_keys_never_show_in_a_repr_and_are_masked_in_error_text() -> None:
    settings = Settings(
        request_signing_key=SecretStr(KEY.decode()),
        request_signing_keys_previous=SecretStr(OLD_KEY.decode()),
        provider_access_key=SecretStr("fixer-key-0123456789"),
    )
    for text in (repr(settings), repr(RequestSigner(KEY)), repr(RequestVerifier([KEY, OLD_KEY]))):
        assert KEY.decode() not in text and OLD_KEY.decode() not in text and "fixer-key-0123456789" not in text
    leaked = f"boom {KEY.decode()} {OLD_KEY.decode()} ?access_key=fixer-key-0123456789"
    assert mask_secrets(leaked, settings) == "boom *** *** ?access_key=***"


def test_a_short_signing_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(request_signing_key=SecretStr("short"))
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(request_signing_key=SecretStr(KEY.decode()), request_signing_keys_previous=SecretStr("a,b"))


def test_a_gateway_with_api_keys_and_no_signing_key_refuses_to_start() -> None:
    with pytest.raises(MissingSigningKey, match="CES_REQUEST_SIGNING_KEY"):
        request_signer(Settings(api_keys_required=True))
    assert request_signer(Settings(api_keys_required=False)) is None
    assert request_signer(Settings(request_signing_key=SecretStr(KEY.decode()))) is not None


class RecordingSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, list[tuple[str, bytes]] | None]] = []

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> Any:
        import asyncio

        self.sent.append((topic, value, headers))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_the_gateways_publisher_signs_exactly_the_bytes_it_sends() -> None:
    sender = RecordingSender()
    request = ConversionRequested(
        request_id=uuid.uuid4(),
        base_currency="EUR",
        target_currency="USD",
        amount=Decimal("1.00"),
        requested_by=REQUESTED_BY,
    )
    await AckedPublisher(sender, "p-", signer=RequestSigner(KEY)).publish([request])
    await AckedPublisher(sender, "p-").publish([request])  # no signer: no header
    (topic, value, headers), (_, _, unsigned) = sender.sent
    assert topic == "p-conversion-requests" and unsigned is None
    assert RequestVerifier([KEY]).failure(value, signature_of(headers or [])) is None


def test_the_stack_gives_the_signing_key_to_the_worker_and_gateway_only(tmp_path: Path) -> None:
    stack_dir = tmp_path / ".stack"
    (stack_dir / "secrets").mkdir(parents=True)
    before = {
        "kafka": {u: "k" + u for u in secrets.KAFKA_USERS},
        "postgres": {r: r for r in ("postgres", "ces_owner", "ces_app")},
        "redis": {"ces": "r", "default": "d"},
    }
    (stack_dir / "secrets" / "stack.json").write_text(json.dumps(before))  # a stack from before signing
    stack = secrets.load_or_create(Settings(stack_dir=stack_dir))
    assert len(stack.request_signing_key) == 64 and stack.kafka == before["kafka"]  # the rest is kept
    assert secrets.load_or_create(Settings(stack_dir=stack_dir)).request_signing_key == stack.request_signing_key
    for role in ("worker", "gateway"):
        assert secrets.role_env(stack, role)["CES_REQUEST_SIGNING_KEY"] == stack.request_signing_key
        assert (
            f"CES_REQUEST_SIGNING_KEY={stack.request_signing_key}"
            in (stack_dir / "secrets" / f"{role}.env").read_text()
        )
    for role in ("producer", "admin"):
        assert "CES_REQUEST_SIGNING_KEY" not in secrets.role_env(stack, role)
        assert stack.request_signing_key not in (stack_dir / "secrets" / f"{role}.env").read_text()


def test_cesdev_up_gives_a_stack_from_before_signing_its_key(tmp_path: Path) -> None:
    """`cesdev up` on a running stack whose secrets predate signing: the worker and gateway get one key."""
    stack_dir = tmp_path / ".stack"
    (stack_dir / "secrets").mkdir(parents=True)
    old = {
        "kafka": {u: "k" + u for u in secrets.KAFKA_USERS},
        "postgres": {r: r for r in ("postgres", "ces_owner", "ces_app")},
        "redis": {"ces": "r", "default": "d"},
    }
    (stack_dir / "secrets" / "stack.json").write_text(json.dumps(old))
    settings = Settings(stack_dir=stack_dir)
    worker, gateway = secrets.process_env(settings, "worker"), secrets.process_env(settings, "gateway")
    assert len(worker["CES_REQUEST_SIGNING_KEY"]) == 64
    assert worker["CES_REQUEST_SIGNING_KEY"] == gateway["CES_REQUEST_SIGNING_KEY"]
    assert worker["CES_KAFKA_PASSWORD"] == "kces-worker"  # nothing else changed
