"""The one failure policy of every batch consumer: which errors are retried, which dead-letter a message.

A failure while handling a batch is one of three kinds (`classify`):

- **transient**: a backend is unreachable or not in a state to take writes (Kafka, PostgreSQL or Redis
  down or timing out, a read-only transaction, permission denied, a missing table, a deadlock). Nothing
  about the messages is wrong: the batch is retried with backoff, without end, and no offset is
  committed past it. Operators see it in `ces_batch_failures{kind="transient"}` and the log.
- **message**: the database refused the message's data (SQLSTATE class 22 "data exception" or 23
  "integrity constraint violation", or the driver refusing a value such as a NUL character). Retrying
  cannot help: the message is dead-lettered with reason `refused_by_database`.
- **unexpected**: anything else (a bug, an input no one thought of). The message is retried up to
  `max_attempts` times, then dead-lettered with reason `handler_error` and the error text, logged at
  ERROR and counted.

A batch that fails for a reason other than a transient one is split in halves, recursively, until the
message that fails is alone: the other messages of the batch are still decided, and one bad message
costs about 2*log2(batch) extra handler calls, not one transaction per message.
"""

from __future__ import annotations

from enum import StrEnum

import psycopg2
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ces.services.ports import CacheUnavailable


class Failure(StrEnum):
    TRANSIENT = "transient"
    MESSAGE = "message"
    UNEXPECTED = "unexpected"


# SQLSTATE classes (first two characters) that say the database refused the data itself.
_DATA_CLASSES = frozenset({"22", "23"})
# SQLSTATE classes that say the database cannot take the write now, whatever the data: connection (08),
# invalid transaction state such as read-only (25), rollback/deadlock (40), access rule and missing
# objects (42: a grant or a migration is missing, an operator's fix), resources (53), object state and
# locks (55), operator intervention such as shutdown (57), system errors (58), internal errors (XX).
_UNAVAILABLE_CLASSES = frozenset({"08", "25", "40", "42", "53", "55", "57", "58", "XX"})

# A backend that did not answer (or answered "not now"), whatever the message.
_UNREACHABLE = (DisconnectionError, PoolTimeout, KafkaError, RedisError, CacheUnavailable, TimeoutError, OSError)


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return Failure.TRANSIENT
        return _database(exc.orig, lost=isinstance(exc, OperationalError | InterfaceError))
    if isinstance(exc, psycopg2.Error):  # the worker's record path drives psycopg2 itself (async_record.py)
        return _database(exc, lost=isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError))
    if isinstance(exc, _UNREACHABLE):
        return Failure.TRANSIENT
    # psycopg2 refuses some values before they reach the server (a NUL in a string, a lone surrogate
    # that cannot be encoded to UTF-8): the data is at fault.
    if isinstance(exc, UnicodeEncodeError) or (isinstance(exc, ValueError) and "NUL (0x00)" in str(exc)):
        return Failure.MESSAGE
    return Failure.UNEXPECTED


def _database(orig: BaseException | None, *, lost: bool) -> Failure:
    code = getattr(orig, "pgcode", None)
    if isinstance(code, str) and len(code) == 5:
        if code[:2] in _DATA_CLASSES:
            return Failure.MESSAGE
        if code[:2] in _UNAVAILABLE_CLASSES:
            return Failure.TRANSIENT
    return Failure.TRANSIENT if lost else Failure.UNEXPECTED
