"""The worker's record path on the event loop: the audit store's record statement over async psycopg2.

`AuditStore.record` runs in a thread through SQLAlchemy: at light load every conversion is its own batch,
and the thread hop, the pool and SQLAlchemy's execution layer were a third of the worker's CPU per batch
(docs/http.md). Here the same statement, prepared once per connection, runs on psycopg2 connections in
async mode, polled from the event loop (`add_reader`/`add_writer` on the socket): no thread, no pool.

Durability is unchanged: an async connection is in autocommit, so the one record statement is its own
transaction, committed (`synchronous_commit` as the server has it, on) before `record` returns, and so
before any event of the batch is published. A connection that fails, times out or is cancelled is closed
and the error goes up (a transient failure for the batch consumer, which retries the batch): the next
call connects afresh, which is how a PostgreSQL restart is survived. Decisions made earlier (a repeated
request id, rare) are read back through `AuditStore` in a thread.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg2
import psycopg2.extensions
from sqlalchemy import Engine

from ces.adapters.postgres.audit_store import (
    RECORD_SQL,
    AuditStore,
    first_per_request,
    in_input_order,
    split_claimed,
)
from ces.events.conversions import ConversionAudited, Decision

# `CAST(:name AS type)` in the record statement: its parameters, in order, with their SQL types.
_PARAM = re.compile(r"CAST\(:(\w+) AS ([\w\[\]]+)\)")
_NAMES_AND_TYPES = _PARAM.findall(RECORD_SQL)
_NUMBERS = {name: n for n, (name, _) in enumerate(_NAMES_AND_TYPES, 1)}
PREPARE = "PREPARE ces_record ({}) AS {}".format(
    ", ".join(kind for _, kind in _NAMES_AND_TYPES),
    _PARAM.sub(lambda m: f"${_NUMBERS[m.group(1)]}", RECORD_SQL),
)
# Each parameter travels as one array literal in text (`{a,b,NULL}`), cast to its type by the server:
# psycopg2 then quotes 23 strings per batch instead of adapting every element of every array, which cost
# ~23 us per decision (more than building the decisions' parameters).
EXECUTE = "EXECUTE ces_record ({})".format(", ".join(f"CAST(%s AS {t})" for _, t in _NAMES_AND_TYPES))
# A data error leaves the connection usable; anything else (connection lost, timeout) closes it.
_KEEPS_CONNECTION = (psycopg2.DataError, psycopg2.IntegrityError, ValueError, UnicodeEncodeError)


class AsyncRecorder:
    """`record` as `AuditStore.record` (same statement, same result), awaited on the loop.

    `connections`: at most this many statements at once (batches in flight overlap their records).
    `timeout`: seconds a record may take, connecting included; also the server's `statement_timeout`.
    Connections go where `engine`'s URL says (its query's `options` too); `connect_args` as create_engine's.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        connections: int = 4,
        timeout: float = 30.0,
        connect_args: dict[str, Any] | None = None,
    ) -> None:
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        kwargs.update(connect_args or {})
        options = f"{kwargs.get('options', '')} -c statement_timeout={int(timeout * 1000)}".strip()
        self._connect_args = (args, {**kwargs, "options": options, "async_": 1})
        self.timeout = timeout
        self._store = AuditStore(engine)
        self._idle: list[Any] = []
        self._slots = asyncio.Semaphore(connections)

    async def record(self, decisions: Sequence[Decision]) -> list[Decision]:
        unique = first_per_request(decisions)
        if not unique:
            return []
        params = array_literals(unique.values())
        async with self._slots:
            rows = await self._execute(params)
        standing, earlier = split_claimed(unique, {UUID(row[0]) for row in rows})
        if earlier:
            standing.update(await asyncio.to_thread(self._store.get, earlier))
        return in_input_order(decisions, standing)

    async def _execute(self, params: list[str]) -> list[tuple[Any, ...]]:
        conn = self._idle.pop() if self._idle else None
        try:
            async with asyncio.timeout(self.timeout):
                if conn is None:
                    conn = await self._connect()
                cursor = conn.cursor()
                cursor.execute(EXECUTE, params)
                await _ready(conn)
                rows: list[tuple[Any, ...]] = cursor.fetchall()
        except BaseException as exc:
            if conn is not None and (conn.closed or not isinstance(exc, _KEEPS_CONNECTION)):
                conn.close()
                conn = None
            raise
        finally:
            if conn is not None:
                self._idle.append(conn)
        return rows

    async def _connect(self) -> Any:
        args, kwargs = self._connect_args
        conn = psycopg2.connect(*args, **await resolved(kwargs))
        try:
            await _ready(conn)
            cursor = conn.cursor()  # held: psycopg2 drops an async query whose cursor was collected
            cursor.execute(PREPARE)
            await _ready(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


def array_literals(decisions: Iterable[Decision]) -> list[str]:
    """The record statement's parameters (as `record_params` has them) as array literals, in order.

    Ids go as 32 hex digits (PostgreSQL reads a uuid without its hyphens; `str` costs three times more),
    and each distinct time is formatted once: a batch's decisions share their decision time."""
    columns: dict[str, list[str]] = {name: [] for name, _ in _NAMES_AND_TYPES}
    times: dict[datetime | None, str] = {None: "NULL"}

    def time(value: datetime | None) -> str:
        text = times.get(value)
        if text is None:
            text = times[value] = value.isoformat()  # type: ignore[union-attr]  # None is always in `times`
        return text

    for d in decisions:
        request_id = d.request_id.hex
        columns["request_ids"].append(request_id)
        columns["decided_at"].append(time(d.occurred_at))
        requested_by = "NULL" if d.requested_by is None else d.requested_by.hex
        if isinstance(d, ConversionAudited):
            columns["outcomes"].append("audited")
            rate_ids = d.rate_ids
            for name, value in (
                ("a_id", d.audit_id.hex),
                ("a_request_id", request_id),
                ("a_rate_used_id", rate_ids[0].hex),
                ("a_second_rate_id", rate_ids[1].hex if len(rate_ids) > 1 else "NULL"),
                ("a_rate_kind", _quoted(d.rate_kind)),
                ("a_base", _quoted(d.base_currency)),
                ("a_target", _quoted(d.target_currency)),
                ("a_input", str(d.input_amount)),
                ("a_rate", str(d.rate_value)),
                ("a_margin", str(d.margin)),
                ("a_output", str(d.output_amount)),
                ("a_converted_at", time(d.converted_at)),
                ("a_requested_by", requested_by),
                ("a_as_of", time(d.as_of)),
            ):
                columns[name].append(value)
        else:
            columns["outcomes"].append("rejected")
            columns["r_request_id"].append(request_id)
            columns["r_reason"].append(_quoted(d.reason))
            columns["r_message"].append(_quoted(d.message))
            columns["r_rejected_at"].append(time(d.rejected_at))
            columns["r_requested_by"].append(requested_by)
            columns["r_as_of"].append(time(d.as_of))
    return ["{" + ",".join(values) + "}" for values in columns.values()]


def _quoted(text: str) -> str:
    """An array element that is always text: quoted, so commas, braces, blanks and the word NULL stay data."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def resolved(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` with the host name resolved on the loop, as `hostaddr`: libpq would resolve it with a blocking
    call inside `connect`, which stalls every task of the loop (the consumers' heartbeats included) for as
    long as a DNS server takes to answer, on every reconnect after a PostgreSQL outage.

    Every address is kept, in the resolver's order (libpq tries them in turn, as it would have); `host`
    stays for TLS verification and the server's view (an IP literal resolves to itself, without a lookup).
    Unix sockets, lists of hosts and an explicit `hostaddr` pass through as given."""
    host = kwargs.get("host")
    if not host or "hostaddr" in kwargs or host.startswith("/") or "," in host:
        return kwargs
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return {**kwargs, "host": ",".join([host] * len(addresses)), "hostaddr": ",".join(addresses)}


async def _ready(conn: Any) -> None:
    """Drive `conn`'s pending operation (connect or query) to completion; its error is raised here."""
    loop = asyncio.get_running_loop()
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        fd = conn.fileno()  # may change while connecting
        if state == psycopg2.extensions.POLL_READ:
            add, remove = loop.add_reader, loop.remove_reader
        elif state == psycopg2.extensions.POLL_WRITE:
            add, remove = loop.add_writer, loop.remove_writer
        else:
            raise psycopg2.OperationalError(f"unexpected poll state {state}")
        waiter = loop.create_future()
        add(fd, _wake, waiter)
        try:
            await waiter
        finally:
            remove(fd)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # the socket can be ready again before the waiting task ran
        waiter.set_result(None)
