"""Alembic environment: migrations run as the owner role (`CES_MIGRATION_DATABASE_URL`, or the URL passed in the
config); after them the application role's privileges are made exact (`ces.migrations.grants`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from ces.migrations.grants import grant_application_role
from ces.settings import get_settings

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().migration_database_dsn
schema = config.get_main_option("ces.schema") or None
app_role = config.get_main_option("ces.app_role") or get_settings().database_app_role


def run_migrations_online() -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        if schema:
            connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            connection.exec_driver_sql(f'SET search_path TO "{schema}"')
            connection.commit()
        context.configure(
            connection=connection,
            version_table_schema=schema,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        # Every upgrade (even one with nothing to migrate) re-applies the grants, so a database migrated by
        # `ces db upgrade` always gives the application role exactly its privileges on the tables at head.
        grant_application_role(connection, schema or "public", app_role)
        connection.commit()


run_migrations_online()
