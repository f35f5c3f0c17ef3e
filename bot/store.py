"""The bot's state: one SQLite file through aiosqlite, WAL, numbered migrations."""
from __future__ import annotations

import asyncio
import contextlib
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
        # One connection: transactions from concurrent tasks must not interleave.
        self._tx_lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def transaction(self):
        async with self._tx_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")

    @classmethod
    async def open(cls, path: Path) -> "Store":
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)  # we issue BEGIN ourselves
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL keeps every commit through a process crash (only a
        # power cut can lose the last ones) and saves an fsync per commit.
        await db.execute("PRAGMA synchronous=NORMAL")
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

    async def health(self) -> tuple[bool, int]:
        """(database answers, schema version) in one cheap read. Not PRAGMA
        quick_check: that scans the whole file, and /status must answer within
        Discord's 3 seconds however big the file grows."""
        try:
            version = await self.schema_version()
        except sqlite3.Error:
            return False, 0
        return version > 0, version

    # --- small helpers -----------------------------------------------------

    # One trip to aiosqlite's thread per query (a cursor's execute, fetch and
    # close are three): under 100 concurrent commands that is most of the wait.
    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        rows = await self.db.execute_fetchall(sql, tuple(params))
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        return list(await self.db.execute_fetchall(sql, tuple(params)))

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

    # --- personas ----------------------------------------------------------

    async def get_persona(self, name: str) -> dict | None:
        row = await self.fetchone("SELECT * FROM personas WHERE name = ?", (name,))
        return _persona(row) if row else None

    async def list_personas(self, guild_id: int | None = None) -> list[dict]:
        if guild_id is None:
            rows = await self.fetchall("SELECT * FROM personas ORDER BY name")
        else:
            rows = await self.fetchall("SELECT * FROM personas WHERE guild_id = ? ORDER BY name", (guild_id,))
        return [_persona(r) for r in rows]

    async def create_persona(self, name: str, **fields: Any) -> dict:
        fields = _json_fields(fields)
        cols = ["name", *fields]
        await self.execute(
            f"INSERT INTO personas({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            (name, *fields.values()),
        )
        return await self.get_persona(name)

    async def update_persona(self, name: str, **fields: Any) -> dict:
        fields = _json_fields(fields)
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            await self.execute(f"UPDATE personas SET {sets} WHERE name = ?", (*fields.values(), name))
        return await self.get_persona(name)

    async def delete_persona(self, name: str) -> None:
        await self.execute("DELETE FROM personas WHERE name = ?", (name,))

    # --- jobs --------------------------------------------------------------

    async def create_job(self, kind: str, persona: str, params: dict, requested_by: int | None,
                         channel_id: int | None = None) -> int:
        return await self.execute(
            "INSERT INTO jobs(kind, persona, params, requested_by, channel_id) VALUES (?, ?, ?, ?, ?)",
            (kind, persona, json.dumps(params), requested_by, channel_id),
        )

    async def get_job(self, job_id: int) -> dict | None:
        row = await self.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(row) if row else None

    async def list_jobs(self, *, active_only: bool = False, limit: int = 20, persona: str | None = None) -> list[dict]:
        where, params = [], []
        if active_only:
            where.append("state IN ('queued', 'running')")
        if persona:
            where.append("persona = ?")
            params.append(persona)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = await self.fetchall(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [_job(r) for r in rows]

    async def update_job(self, job_id: int, **fields: Any) -> None:
        fields = _json_fields(fields, ("params", "progress", "result"))
        sets = ", ".join(f"{k} = ?" for k in fields)
        await self.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*fields.values(), job_id))

    # --- candidates and votes ---------------------------------------------

    async def add_candidate(self, persona: str, job_id: int | None, text: str, settings: dict,
                            voting_ends_at: str, created_at: str) -> int:
        return await self.execute(
            "INSERT INTO candidates(persona, job_id, text, settings, voting_ends_at, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (persona, job_id, text, json.dumps(settings), voting_ends_at, created_at),
        )

    async def get_candidate(self, candidate_id: int) -> dict | None:
        row = await self.fetchone("SELECT * FROM candidates WHERE id = ?", (candidate_id,))
        return _candidate(row) if row else None

    async def candidate_by_message(self, message_id: int) -> dict | None:
        row = await self.fetchone("SELECT * FROM candidates WHERE message_id = ?", (message_id,))
        return _candidate(row) if row else None

    async def candidates(self, *, persona: str | None = None, states: Iterable[str] = (),
                         limit: int = 1000) -> list[dict]:
        where, params = [], []
        if persona:
            where.append("persona = ?")
            params.append(persona)
        states = list(states)
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            params += states
        sql = "SELECT * FROM candidates" + (" WHERE " + " AND ".join(where) if where else "")
        return [_candidate(r) for r in await self.fetchall(sql + " ORDER BY id LIMIT ?", (*params, limit))]

    async def update_candidate(self, candidate_id: int, **fields: Any) -> None:
        fields = _json_fields(fields, ("settings", "flags"))
        sets = ", ".join(f"{k} = ?" for k in fields)
        await self.execute(f"UPDATE candidates SET {sets} WHERE id = ?", (*fields.values(), candidate_id))

    async def member_reactions(self, candidate_id: int) -> dict[int, set[str]]:
        rows = await self.fetchall("SELECT member_id, emoji FROM reactions WHERE candidate_id = ?", (candidate_id,))
        found: dict[int, set[str]] = {}
        for member_id, emoji in rows:
            found.setdefault(member_id, set()).add(emoji)
        return found

    async def replace_reactions(self, candidate_id: int, reactions: dict[int, set[str]]) -> None:
        """Start-up reconciliation: the message's reactions are the truth."""
        async with self.transaction() as db:
            await db.execute("DELETE FROM reactions WHERE candidate_id = ?", (candidate_id,))
            await db.executemany(
                "INSERT INTO reactions VALUES (?, ?, ?)",
                [(candidate_id, m, e) for m, emojis in reactions.items() for e in emojis],
            )

    async def record_votes(self, writes: list[tuple]) -> None:
        """Batches of reaction changes and what follows from them, for several
        candidates, in one transaction: (candidate id, {(member, emoji): present},
        {member: vote}, score, state, decided_at)."""
        async with self.transaction() as db:
            for candidate_id, reactions, votes, score, state, decided_at in writes:
                await db.executemany("INSERT OR IGNORE INTO reactions VALUES (?, ?, ?)",
                                     [(candidate_id, m, e) for (m, e), present in reactions.items() if present])
                await db.executemany("DELETE FROM reactions WHERE candidate_id = ? AND member_id = ? AND emoji = ?",
                                     [(candidate_id, m, e) for (m, e), present in reactions.items() if not present])
                await db.execute("DELETE FROM votes WHERE candidate_id = ?", (candidate_id,))
                await db.executemany("INSERT INTO votes(candidate_id, member_id, value) VALUES (?, ?, ?)",
                                     [(candidate_id, m, v) for m, v in votes.items() if v])
                await db.execute("UPDATE candidates SET score = ?, state = ?, decided_at = ? WHERE id = ?",
                                 (score, state, decided_at, candidate_id))

    async def set_votes(self, candidate_id: int, votes: dict[int, int], score: int) -> None:
        """Record each member's net vote and the candidate's score in one transaction."""
        async with self.transaction() as db:
            await db.execute("DELETE FROM votes WHERE candidate_id = ?", (candidate_id,))
            await db.executemany(
                "INSERT INTO votes(candidate_id, member_id, value) VALUES (?, ?, ?)",
                [(candidate_id, m, v) for m, v in votes.items() if v],
            )
            await db.execute("UPDATE candidates SET score = ? WHERE id = ?", (score, candidate_id))


    # --- posting ---------------------------------------------------------

    async def approved_queue(self, persona: str) -> list[dict]:
        """The persona's approved candidates in posting order: queue_rank first
        ("move to top"), then highest net score, then oldest."""
        rows = await self.fetchall(
            "SELECT * FROM candidates WHERE persona = ? AND state = 'approved' "
            "ORDER BY queue_rank IS NULL, queue_rank, score DESC, id",
            (persona,),
        )
        return [_candidate(r) for r in rows]

    async def set_retry_at(self, persona: str, when: str | None) -> None:
        """The persona's pending posting retry (UTC ISO), or none; writes only on a change."""
        await self.execute("UPDATE personas SET retry_at = ? WHERE name = ? AND retry_at IS NOT ?",
                           (when, persona, when))

    async def posts_for(self, candidate_id: int) -> list[dict]:
        return [dict(r) for r in await self.fetchall("SELECT * FROM posts WHERE candidate_id = ? ORDER BY id", (candidate_id,))]


    async def add_posting_event(self, persona: str, kind: str, text: str | None = None, *,
                                 candidate_id: int | None = None, refresh: bool = False) -> int:
        return await self.execute(
            "INSERT INTO posting_events(persona, candidate_id, kind, text, refresh) VALUES (?, ?, ?, ?, ?)",
            (persona, candidate_id, kind, text, int(refresh)),
        )


    async def pending_posting_events(self, limit: int = 100) -> list[dict]:
        rows = await self.fetchall("SELECT * FROM posting_events WHERE delivered_at IS NULL ORDER BY id LIMIT ?", (limit,))
        return [dict(r) for r in rows]


    async def mark_posting_event_delivered(self, event_id: int) -> None:
        await self.execute("UPDATE posting_events SET delivered_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
                           (event_id,))


def _json_fields(fields: dict, names: Iterable[str] = ("sources", "rules", "schedule", "targets")) -> dict:
    return {k: (json.dumps(v) if k in names and not isinstance(v, str) else v) for k, v in fields.items()}


def _loads(row, names: Iterable[str]) -> dict:
    data = dict(row)
    for name in names:
        if data.get(name) is not None:
            data[name] = json.loads(data[name])
    return data


def _persona(row) -> dict:
    return _loads(row, ("sources", "rules", "schedule", "targets"))


def _job(row) -> dict:
    return _loads(row, ("params", "progress", "result"))


def _candidate(row) -> dict:
    return _loads(row, ("settings", "flags"))
