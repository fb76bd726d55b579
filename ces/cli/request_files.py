"""`ces convert`'s input files: CSV (with a header) or NDJSON, one conversion request per line -> requests or refusals.

Rules (docs/conversions.md, "Converting a file"):
- a line is a physical line (`\\n`, an optional `\\r` before it); blank lines are no requests and get no result;
  a line that is not UTF-8, longer than `MAX_LINE_BYTES`, not a JSON object (NDJSON), not a complete CSV row
  (a quoted cell left open, as one holding a newline is) or with the wrong number of cells (CSV) is refused;
  reading never raises on any content.
- each request is read exactly as the body of `POST /v1/conversions` (`read_request`: same fields, same
  rules, codes upper-cased): a CSV header names the fields (`request_id,base_currency,target_currency,amount`
  and any other field the body accepts); an empty cell is an absent field.
- a line without a `request_id` gets `default_request_id(file name, line number, line bytes)`: the same file
  converted again asks for the same ids, so a rerun is idempotent (the worker answers with its stored
  decisions) and an edited line is a new request.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, Literal
from uuid import UUID, uuid5

from ces.events.conversions import ConversionRequested
from ces.events.registry import UndecodableEvent, parse_json_object
from ces.http.conversion_input import Refusal, read_request

Format = Literal["csv", "ndjson"]
MAX_LINE_BYTES = 16 * 1024  # the single endpoint's body limit
SKIP_PIECE = 1024 * 1024  # the rest of a line too long to read is skipped this much at a time
BOM = b"\xef\xbb\xbf"
FILE_NAMESPACE = UUID("5d0f3c4e-9a51-4b8e-8f7a-1c2d3e4f5a6b")
REQUIRED_COLUMNS = ("base_currency", "target_currency", "amount")


class UnreadableFile(ValueError):
    """The file as a whole cannot be read (no header, an unknown format): no line is produced."""


@dataclass(frozen=True)
class Line:
    number: int  # 1-based, as an editor shows it
    request: ConversionRequested | Refusal


def format_of(path: Path, given: str | None = None) -> Format:
    name = (given or path.suffix.lstrip(".")).lower()
    if name == "csv":
        return "csv"
    if name in ("ndjson", "jsonl", "json"):
        return "ndjson"
    raise UnreadableFile(f"cannot tell the format of {path.name}: name it .csv or .ndjson, or pass --format")


def default_request_id(file_name: str, number: int, raw: bytes) -> UUID:
    return uuid5(FILE_NAMESPACE, f"{file_name}|{number}|{raw.hex()}")


def physical_lines(data: bytes | BinaryIO) -> list[tuple[int, bytes]]:
    """(number, bytes) of every non-blank line; a UTF-8 byte order mark at the start is dropped.

    Read a bounded piece at a time: a line longer than `MAX_LINE_BYTES` (refused anyway) is kept only as its
    first `MAX_LINE_BYTES + 1` bytes and the rest skipped, so a 1 GB line costs no 1 GB of memory."""
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    lines = []
    number = 0
    while raw := stream.readline(MAX_LINE_BYTES + 3):  # the line, "\r\n", and one byte to see it is too long
        number += 1
        if number == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        blank = not raw.strip()
        if not raw.endswith(b"\n") and len(raw) > MAX_LINE_BYTES:
            raw = raw[: MAX_LINE_BYTES + 1]
            while rest := stream.readline(SKIP_PIECE):
                blank = blank and not rest.strip()
                if rest.endswith(b"\n"):
                    break
        raw = raw.removesuffix(b"\n").removesuffix(b"\r")
        if not blank:
            lines.append((number, raw))
    return lines


def read_lines(
    data: bytes | BinaryIO,
    fmt: Format,
    file_name: str,
    *,
    max_amount: Decimal,
    max_clock_skew: timedelta = timedelta(0),
) -> list[Line]:
    """Every non-blank line of the file (a CSV header excepted) as a request or a refusal, in file order."""
    lines = physical_lines(data)
    header: list[str] | None = None
    if fmt == "csv":
        if not lines:
            return []
        header = _csv_header(lines[0][1])
        lines = lines[1:]
    read: list[Line] = []
    for number, raw in lines:
        fields = _fields(raw, header)
        if isinstance(fields, Refusal):
            read.append(Line(number, fields))
            continue
        if fields.get("request_id") is None:
            fields["request_id"] = str(default_request_id(file_name, number, raw))
        request = read_request(
            fields, idempotency_key=None, max_amount=max_amount, max_clock_skew=max_clock_skew, requested_by=None
        )
        read.append(Line(number, request))
    return read


def _csv_header(raw: bytes) -> list[str]:
    try:
        header = [cell.strip() for cell in next(csv.reader([raw.decode("utf-8")], strict=True))]
    except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
        raise UnreadableFile(f"the CSV header cannot be read ({type(exc).__name__})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing or len(set(header)) != len(header):
        raise UnreadableFile(
            f"the CSV header must name {', '.join(REQUIRED_COLUMNS)} (and may name request_id), each once; "
            f"it is {','.join(header)[:200]!r}"
        )
    return header


def _fields(raw: bytes, header: list[str] | None) -> dict[str, Any] | Refusal:
    if len(raw) > MAX_LINE_BYTES:
        return Refusal("payload_too_large", f"the line has more than {MAX_LINE_BYTES} bytes")
    if header is None:
        try:
            return parse_json_object(raw)
        except UndecodableEvent as exc:
            return Refusal("malformed_json", f"the line must be a JSON object ({exc.detail})")
    try:
        # strict: a quote left open (a cell that goes on past the physical line) is an error, not a cell
        # silently cut at the newline ("10\n0" read as 10).
        cells = next(csv.reader([raw.decode("utf-8")], strict=True))
    except UnicodeDecodeError:
        return Refusal("malformed_json", "the line is not UTF-8")
    except (csv.Error, StopIteration) as exc:
        return Refusal("invalid_request", f"the line is not a CSV row ({exc})"[:200])
    if len(cells) != len(header):
        return Refusal("invalid_request", f"expected {len(header)} cells ({','.join(header)}), got {len(cells)}")
    return {name: cell.strip() for name, cell in zip(header, cells, strict=True) if cell.strip()}


def result_line(number: int, result: dict[str, Any]) -> str:
    return json.dumps({"line": number, **result})
