"""The bot's state: one SQLite file through aiosqlite, WAL, numbered migrations."""
from __future__ import annotations

import json
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import aiosqlite


def migrations() -> list[tuple[int, str, str]]:
    """(number, file name, SQL) of every migration shipped in bot/migrations, in order."""
    found = []
    for entry in resources.files("bot.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class Store:
    def __init__(self, db: aiosqlite.Connection, path: Path):
        self.db = db
        self.path = path

    @classmethod
    async def open(cls, path: Path) -> "Store":
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)  # we issue BEGIN ourselves
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("PRAGMA busy_timeout=5000")
        store = cls(db, path)
        await store.migrate()
        return store

    async def close(self) -> None:
        await self.db.close()

    async def migrate(self) -> list[str]:
        """Apply the migrations not yet applied, each in its own transaction."""
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
        )
        done = {r[0] for r in await self.fetchall("SELECT version FROM schema_migrations")}
        applied = []
        for number, name, sql in migrations():
            if number in done:
                continue
            # executescript commits first, so wrap the script in its own BEGIN/COMMIT.
            try:
                await self.db.executescript(
                    f"BEGIN;\n{sql}\nINSERT INTO schema_migrations(version, name) VALUES ({number}, '{name}');\nCOMMIT;"
                )
            except sqlite3.Error:
                await self.db.execute("ROLLBACK") if self.db.in_transaction else None
                raise
            applied.append(name)
        return applied

    async def schema_version(self) -> int:
        row = await self.fetchone("SELECT MAX(version) FROM schema_migrations")
        return int(row[0] or 0)

    async def healthy(self) -> bool:
        try:
            row = await self.fetchone("PRAGMA quick_check")
            return row is not None and row[0] == "ok"
        except sqlite3.Error:
            return False

    # --- small helpers -----------------------------------------------------

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        async with self.db.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        async with self.db.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement in autocommit; returns lastrowid."""
        async with self.db.execute(sql, tuple(params)) as cur:
            return cur.lastrowid

    async def get_setting(self, key: str, default: Any = None) -> Any:
        row = await self.fetchone("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(row[0]) if row else default

    async def set_setting(self, key: str, value: Any) -> None:
        await self.execute(
            "INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )
