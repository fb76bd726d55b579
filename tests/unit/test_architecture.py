"""The dependency rule, read from the imports: no import runs back up a floor, no circle, no big runtime file.

Floors, from the bottom: the pure domain; the event contract; use cases (services, projections) with the ports
they own; adapters; entry points (agents, http, cli); bootstrap, the one place that wires them. `settings`,
`metrics` and `heap` are leaves anyone may import. `cesdev` (local stack, provider simulator) may import
`ces`, never the other way round.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ces"
MAX_LINES = 400

FLOORS: dict[str, int] = {
    "ces.__init__": 0,  # the empty package marker
    "ces.settings": 0,
    "ces.metrics": 0,
    "ces.heap": 0,
    "ces.domain": 1,
    "ces.events": 2,
    "ces.services": 3,
    "ces.projections": 3,
    "ces.adapters": 4,
    "ces.migrations": 4,
    "ces.agents": 5,
    "ces.http": 5,
    "ces.cli": 7,
    "ces.bootstrap": 6,
    "ces.__main__": 8,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 2:
        parts.pop()
    return ".".join(parts)


def floor_of(module: str) -> tuple[str, int]:
    if module == "ces":
        return "ces.__init__", 0
    for prefix, floor in sorted(FLOORS.items(), key=lambda item: -len(item[0])):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, floor
    raise AssertionError(f"{module} belongs to no floor: add its folder to FLOORS")


def imports_of(path: Path) -> set[str]:
    """Every `ces`/`cesdev` module a file imports, at the top or inside a function (lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in ("ces", "cesdev")}


def runtime_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "versions" not in p.parts)


def known(module: str) -> bool:
    relative = Path(*module.split("."))
    return (ROOT / relative.with_suffix(".py")).exists() or (ROOT / relative / "__init__.py").exists()


def test_no_import_runs_back_up_a_floor() -> None:
    upward = []
    for path in runtime_files():
        here = module_name(path)
        home, floor = floor_of(here)
        for target in imports_of(path):
            if target.startswith("cesdev"):
                upward.append(f"{here} imports development tooling {target}")
                continue
            if not known(target):
                continue  # `from ces.x import Name`: the module itself is checked
            there, target_floor = floor_of(target)
            if target_floor > floor or (target_floor == floor and there != home and floor != 3):
                upward.append(f"{here} (floor {floor}) imports {target} (floor {target_floor})")
    assert upward == []


def test_use_cases_do_not_import_frameworks_or_drivers() -> None:
    drivers = ("aiokafka", "faust", "sqlalchemy", "psycopg2", "redis", "aiohttp", "rich")
    offenders = []
    for path in runtime_files():
        if floor_of(module_name(path))[1] > 3:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{module_name(path)} imports {n}" for n in names if n.split(".")[0] in drivers]
    assert offenders == []


def test_no_circle_between_folders() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for path in runtime_files():
        here = floor_of(module_name(path))[0]
        for target in imports_of(path):
            if known(target) and target.startswith("ces."):
                there = floor_of(target)[0]
                if there != here:
                    edges[here].add(there)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges[start])

    assert sorted(f for f in list(edges) if reaches(f, f, set())) == []


@pytest.mark.parametrize("path", runtime_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_runtime_files_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{lines} lines: split it by what its parts own"
