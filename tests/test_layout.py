"""The house rules of the layout (README "Layout"), checked on the source:
all SQL is in the store, and no package imports one above it."""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "bot", "cogs", "workers", "app")

SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX)"
                 r"|ALTER\s+TABLE|DROP\s+TABLE|PRAGMA\s)", re.IGNORECASE | re.DOTALL)
DB_CALLS = {"execute", "executemany", "executescript", "execute_fetchall", "fetchone", "fetchall", "transaction"}

# What each package may import of ours: core is the bottom, app the top.
MAY_IMPORT = {
    "core": set(),
    "workers": {"core"},
    "bot": {"core"},
    "cogs": {"core", "bot"},
    "app": {"core", "bot", "workers", "cogs"},
}


def parsed(root: Path, packages):
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            yield pkg, path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def sql_findings(root: Path, packages, store: Path | None) -> list[str]:
    found = []
    for _, path, tree in parsed(root, packages):
        if path == store:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
                found.append(f"{path.relative_to(root)}:{node.lineno}: SQL text {node.value[:50]!r}")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in DB_CALLS:
                if isinstance(node.func.value, ast.Name) and node.func.value.id == "huey":
                    continue  # huey.execute(task) runs a queued task; it is not SQL
                found.append(f"{path.relative_to(root)}:{node.lineno}: .{node.func.attr}(...)")
    return found


def upward_imports(root: Path) -> list[str]:
    found = []
    for pkg, path, tree in parsed(root, PACKAGES):
        if path == root / "bot" / "__main__.py":
            continue  # `python -m bot`: an entry point into app/, imported by nothing
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and top != pkg and top not in MAY_IMPORT[pkg]:
                    found.append(f"{path.relative_to(root)}:{node.lineno}: {pkg} imports {name}")
    return found


def test_no_module_outside_the_store_runs_sql():
    assert sql_findings(REPO, PACKAGES, REPO / "bot" / "store.py") == []


def test_nothing_imports_upward():
    assert upward_imports(REPO) == []


def test_the_checks_catch_what_they_look_for(tmp_path):
    """Both checks can fail: a cog with a query, and core importing the bot, are caught."""
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
    (tmp_path / "cogs" / "bad.py").write_text(
        'async def f(store):\n    return await store.fetchall("SELECT name FROM personas WHERE guild_id = ?")\n')
    (tmp_path / "core" / "bad.py").write_text("from bot.store import Store\nimport workers.tasks\n")
    sql = sql_findings(tmp_path, PACKAGES, None)
    assert any("SQL text" in f for f in sql) and any(".fetchall(" in f for f in sql)
    assert upward_imports(tmp_path) == ["core/bad.py:1: core imports bot.store", "core/bad.py:2: core imports workers.tasks"]
