"""Schema migrations (Alembic), run by `ces db upgrade` and by the test fixtures."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config


def alembic_config(database_url: str, schema: str | None = None, app_role: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("ces") / "migrations"))
    # ConfigParser treats % as interpolation; URLs may contain %-escapes.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if schema:
        config.set_main_option("ces.schema", schema)
    if app_role:
        config.set_main_option("ces.app_role", app_role)
    return config


def upgrade(database_url: str, schema: str | None = None, revision: str = "head", app_role: str | None = None) -> None:
    """Migrate as the owner role at `database_url`; then grant the application role (`app_role`, default
    `CES_DATABASE_APP_ROLE`) exactly its privileges (`ces.migrations.grants`)."""
    command.upgrade(alembic_config(database_url, schema, app_role), revision)


def current_heads() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    return set(script.get_heads())
