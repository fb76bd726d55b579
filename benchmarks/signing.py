"""Benchmark: the cost of the request signature on the hot paths (gateway sign, worker verify), per message.

Pure CPU, no stack needed: a realistic ConversionRequested (v2, with requested_by) is signed and verified in a
loop, and the worker's whole per-message check (find the header, verify) is timed with the header among the
record's headers as aiokafka delivers them. Prints microseconds per call (best of 5 runs).
"""

from __future__ import annotations

import timeit
import uuid
from decimal import Decimal

from ces.events.conversions import ConversionRequested
from ces.events.signing import SIGNATURE_HEADER, RequestSigner, RequestVerifier, signature_of

N = 100_000


def best_us(stmt: object, number: int = N) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]


def main() -> None:
    key, previous = b"a3f1" * 16, b"9c0e" * 16
    value = ConversionRequested(
        request_id=uuid.uuid4(),
        base_currency="EUR",
        target_currency="USD",
        amount=Decimal("1234.56"),
        requested_by=uuid.uuid4(),
    ).to_json()
    signer = RequestSigner(key)
    verifier = RequestVerifier([key, previous])  # during a rotation: two accepted keys, still one MAC per message
    header = signer.sign(value)
    headers = (("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), (SIGNATURE_HEADER, header))
    bad = header[:-1] + (b"0" if header[-1:] != b"0" else b"1")
    assert verifier.failure(value, header) is None and verifier.failure(value, bad) == "mismatch"

    print(f"request value: {len(value)} bytes")
    print(f"sign (gateway, per request):                {best_us(lambda: signer.sign(value)):.2f} us")
    print(f"verify, valid:                              {best_us(lambda: verifier.failure(value, header)):.2f} us")
    print(f"verify, forged (same length):               {best_us(lambda: verifier.failure(value, bad)):.2f} us")
    print(f"verify, missing header:                     {best_us(lambda: verifier.failure(value, None)):.2f} us")
    check = best_us(lambda: verifier.failure(value, signature_of(headers)))
    print(f"worker per message (find header + verify):  {check:.2f} us")
    print(f"  = {1e6 / check:,.0f} checks/s on one core")


if __name__ == "__main__":
    main()
