"""COPY's text format, shared by the bulk writes: the escaping of a text field, and COPY on a SQLAlchemy connection."""

from __future__ import annotations

import io

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

# COPY text format: a backslash, tab, newline or carriage return inside a field would end or corrupt it.
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: str) -> str:
    return value.translate(COPY_ESCAPES)


def copy_from(conn: Connection, statement: str, data: io.StringIO) -> None:
    """`COPY ... FROM STDIN` on the connection's driver cursor; a driver error is raised as SQLAlchemy's
    `DBAPIError`, like every other statement's, so the consumer's failure policy classifies it the same way."""
    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor = dbapi_connection.cursor()
    try:
        cursor.copy_expert(statement, data)
    except conn.dialect.loaded_dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, dbapi_connection, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(statement, None, exc, conn.dialect.loaded_dbapi.Error, lost) from exc
    finally:
        cursor.close()
