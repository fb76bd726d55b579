"""The application role's privileges cover every table the migrations create, and no more than it needs."""

from __future__ import annotations

import re
from pathlib import Path

from ces.migrations.grants import APP_PRIVILEGES

VERSIONS = Path(__file__).resolve().parents[2] / "ces" / "migrations" / "versions"


def tables_at_head() -> set[str]:
    created: set[str] = set()
    for path in sorted(VERSIONS.glob("0*.py")):
        upgrade = path.read_text().split("def downgrade", 1)[0]
        created |= set(re.findall(r"CREATE TABLE (\w+)", upgrade))
        created |= set(re.findall(r'op\.create_table\(\s*"(\w+)"', upgrade))
        created -= set(re.findall(r'op\.drop_table\("(\w+)"\)', upgrade))
    return created


def test_every_table_has_a_grant() -> None:
    assert tables_at_head() == set(APP_PRIVILEGES)


def test_only_the_fetch_lease_may_be_updated_and_nothing_deleted() -> None:
    for table, privileges in APP_PRIVILEGES.items():
        assert "DELETE" not in privileges and "TRUNCATE" not in privileges
        assert ("UPDATE" in privileges) == (table == "fetch_lease"), table
