"""The application role's privileges: exactly what the worker and gateway need, re-applied by every upgrade."""

from __future__ import annotations

from sqlalchemy import Connection, text

# Table -> privileges of the application role. The insert-only tables get SELECT and INSERT and nothing else,
# so immutability rests on permissions first and on the ces_refuse_mutation() triggers second. The fetch
# lease is the one row the application updates (`ces.adapters.postgres.fetch_lease`: INSERT ... ON CONFLICT
# DO UPDATE, and UPDATE of its own lease). A table missing here is unreadable by the application: the unit
# test `test_every_table_has_a_grant` keeps this list and the migrations in step.
APP_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "exchange_rate": ("SELECT", "INSERT"),
    "exchange_rate_revocation": ("SELECT", "INSERT"),
    "conversion_request": ("SELECT", "INSERT"),
    "conversion_audit": ("SELECT", "INSERT"),
    "conversion_rejection": ("SELECT", "INSERT"),
    "fetch_lease": ("SELECT", "INSERT", "UPDATE"),
    # The gateway looks keys up; creating and revoking them (`ces keys`) is the owner's.
    "api_key": ("SELECT",),
}


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def grant_application_role(connection: Connection, schema: str, role: str) -> bool:
    """Make `role`'s privileges in `schema` exactly APP_PRIVILEGES; False (nothing done) if the role does not
    exist, e.g. a database whose operator runs everything as one role."""
    if connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).scalar() is None:
        return False
    s, r = quote_ident(schema), quote_ident(role)
    connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA {s} TO {r}")
    connection.exec_driver_sql(f"REVOKE CREATE ON SCHEMA {s} FROM {r}")
    connection.exec_driver_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {r}")
    connection.exec_driver_sql(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM {r}")
    existing = {
        row[0]
        for row in connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = :s"),
            {"s": schema},
        )
    }
    for table, privileges in APP_PRIVILEGES.items():
        if table in existing:
            connection.exec_driver_sql(f"GRANT {', '.join(privileges)} ON {s}.{quote_ident(table)} TO {r}")
    return True
