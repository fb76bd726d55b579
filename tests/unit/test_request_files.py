"""`ces convert`'s file readers: one request or refusal per non-blank line, deterministic ids, never a crash."""

from __future__ import annotations

import io
import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ces.cli.request_files import (
    MAX_LINE_BYTES,
    UnreadableFile,
    default_request_id,
    format_of,
    physical_lines,
    read_lines,
)
from ces.events.conversions import ConversionRequested
from ces.http.conversion_input import Refusal

MAX = Decimal("1000000000000")
HEADER = b"request_id,base_currency,target_currency,amount\n"


def codes(data: bytes, fmt: str = "csv") -> list[str]:
    return [
        "ok" if isinstance(line.request, ConversionRequested) else line.request.code
        for line in read_lines(data, fmt, "f.csv", max_amount=MAX)  # type: ignore[arg-type]
    ]


def test_csv_lines_are_read_as_the_single_endpoint_reads_a_body() -> None:
    rid = str(uuid.uuid4())
    data = HEADER + f"{rid},eur,usd,1.50\r\n".encode() + b",EUR,USD,1.001\n,EUR,EUR,1\n,EUR,USD\n\n  \n,EUR,USD,2\n"
    lines = read_lines(data, "csv", "f.csv", max_amount=MAX)
    assert [line.number for line in lines] == [2, 3, 4, 5, 8]
    first = lines[0].request
    assert isinstance(first, ConversionRequested)
    assert (str(first.request_id), first.base_currency, first.target_currency, first.amount) == (
        rid,
        "EUR",
        "USD",
        Decimal("1.50"),
    )
    assert first.requested_by is None  # produced straight to Kafka: no API key
    assert codes(data) == ["ok", "invalid_amount", "unsupported_pair", "invalid_request", "ok"]


def test_a_missing_request_id_is_derived_from_file_name_line_number_and_content() -> None:
    data = HEADER + b",EUR,USD,1.00\n,EUR,USD,1.00\n"
    first = [line.request for line in read_lines(data, "csv", "a.csv", max_amount=MAX)]
    again = [line.request for line in read_lines(data, "csv", "a.csv", max_amount=MAX)]
    other = [line.request for line in read_lines(data, "csv", "b.csv", max_amount=MAX)]
    ids = [r.request_id for r in first if isinstance(r, ConversionRequested)]
    assert ids == [r.request_id for r in again if isinstance(r, ConversionRequested)]  # a rerun: the same ids
    assert len(set(ids)) == 2  # the same content on two lines: two requests
    assert set(ids).isdisjoint(r.request_id for r in other if isinstance(r, ConversionRequested))
    assert default_request_id("a.csv", 2, b",EUR,USD,1.00") == ids[0]
    assert default_request_id("a.csv", 2, b",EUR,USD,2.00") != ids[0]  # an edited line is a new request


def test_ndjson_lines_are_objects_with_the_body_fields() -> None:
    data = b"\n".join(
        [
            json.dumps({"base_currency": "EUR", "target_currency": "USD", "amount": "3"}).encode(),
            b'{"base_currency": "EUR", "target_currency": "USD", "amount": 3}',
            b'{"base_currency": "EUR", "target_currency": "USD", "amount": "3", "surprise": 1}',
            b"[1, 2]",
            b"{",
            b'{"a": 1, "a": 2}',
            b"x" * (MAX_LINE_BYTES + 1),
        ]
    )
    assert codes(data, "ndjson") == [
        "ok",
        "invalid_amount",
        "invalid_request",
        "malformed_json",
        "malformed_json",
        "malformed_json",
        "payload_too_large",
    ]


def test_a_file_without_a_usable_header_or_format_is_unreadable() -> None:
    with pytest.raises(UnreadableFile):
        read_lines(b"base_currency,amount\n,EUR,1\n", "csv", "f.csv", max_amount=MAX)
    with pytest.raises(UnreadableFile):
        read_lines(b"base_currency,base_currency,target_currency,amount\n", "csv", "f.csv", max_amount=MAX)
    with pytest.raises(UnreadableFile):
        format_of(Path("requests.txt"))
    assert format_of(Path("r.txt"), "ndjson") == "ndjson" and format_of(Path("R.CSV")) == "csv"
    assert read_lines(b"", "csv", "f.csv", max_amount=MAX) == []


def test_a_byte_order_mark_and_crlf_are_not_part_of_the_content() -> None:
    assert physical_lines(b"\xef\xbb\xbfa\r\nb\r\n") == [(1, b"a"), (2, b"b")]


@given(st.lists(st.binary(max_size=80), max_size=20))
def test_any_ndjson_bytes_give_one_result_per_non_blank_line_and_never_raise(lines: list[bytes]) -> None:
    data = b"\n".join(lines)
    read = read_lines(data, "ndjson", "f.ndjson", max_amount=MAX)
    assert [line.number for line in read] == [n for n, _ in physical_lines(data)]
    assert all(isinstance(line.request, ConversionRequested | Refusal) for line in read)


@given(
    st.lists(
        st.one_of(
            st.binary(max_size=60),
            st.lists(st.text(max_size=12), min_size=0, max_size=6).map(
                lambda c: ",".join(c).encode("utf-8", "surrogatepass")
            ),
        ),
        max_size=20,
    )
)
def test_any_csv_rows_after_a_header_give_one_result_each_and_never_raise(rows: list[bytes]) -> None:
    data = HEADER + b"\n".join(rows)
    read = read_lines(data, "csv", "f.csv", max_amount=MAX)
    assert [line.number for line in read] == [n for n, _ in physical_lines(data)][1:]
    for line in read:
        if isinstance(line.request, ConversionRequested):
            assert line.request.amount > 0 and line.request.base_currency != line.request.target_currency


def test_an_as_of_column_is_a_field_of_the_request() -> None:
    data = (
        b"base_currency,target_currency,amount,as_of\nEUR,USD,1.00,2010-05-07\nEUR,USD,1.00,\nEUR,USD,1.00,2999-01-01\n"
    )
    read = [line.request for line in read_lines(data, "csv", "f.csv", max_amount=MAX)]
    assert isinstance(read[0], ConversionRequested) and read[0].as_of == "2010-05-07"
    assert isinstance(read[1], ConversionRequested) and read[1].as_of is None  # an empty cell: priced now
    assert isinstance(read[2], Refusal) and read[2].code == "as_of_in_future"


def test_a_quoted_cell_cut_by_a_newline_is_refused_never_read_as_its_first_half() -> None:
    # `"10\n0"` is one RFC 4180 cell spanning two physical lines; lines are physical, so both halves must be
    # refused. Read leniently, the first half was the request "convert 10" the file never asked for.
    data = HEADER + b',USD,EUR,"10\n0"\n,USD,EUR,"1"x\n,USD,EUR,"2"\n'
    assert codes(data) == ["invalid_request", "invalid_request", "invalid_request", "ok"]


class Chunked(io.BytesIO):
    """A file that records the largest piece any single read took out of it."""

    largest = 0

    def readline(self, size: int | None = -1) -> bytes:
        got = super().readline(size)
        self.largest = max(self.largest, len(got))
        return got

    def read(self, size: int | None = -1) -> bytes:
        got = super().read(size)
        self.largest = max(self.largest, len(got))
        return got


def test_a_file_is_read_a_bounded_line_at_a_time_and_a_huge_line_is_refused_without_being_held() -> None:
    # A 1 GB line must cost neither 1 GB of memory nor the lines after it; 8 MiB stands in for it here.
    huge = b'{"amount": "' + b"9" * (8 * 1024 * 1024) + b'"}'
    data = Chunked(
        b'{"base_currency": "EUR", "target_currency": "USD", "amount": "1"}\n'
        + huge
        + b"\n  \n"
        + b" " * (2 * MAX_LINE_BYTES)
        + b'\n{"base_currency": "EUR", "target_currency": "USD", "amount": "2"}'
    )
    lines = read_lines(data, "ndjson", "f.ndjson", max_amount=MAX)
    assert [line.number for line in lines] == [1, 2, 5]
    assert isinstance(lines[1].request, Refusal) and lines[1].request.code == "payload_too_large"
    assert all(isinstance(lines[i].request, ConversionRequested) for i in (0, 2))
    assert data.largest <= 1024 * 1024
