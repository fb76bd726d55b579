"""Schema migrations (Alembic), run by `ces db upgrade` and by the test fixtures."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config


def alembic_config(database_url: str, schema: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("ces") / "migrations"))
    # ConfigParser treats % as interpolation; URLs may contain %-escapes.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if schema:
        config.set_main_option("ces.schema", schema)
    return config


def upgrade(database_url: str, schema: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url, schema), revision)


def current_heads() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    return set(script.get_heads())
