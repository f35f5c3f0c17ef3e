"""The bot's state: one SQLite file through aiosqlite, WAL, numbered migrations.

All of the bot's SQL lives in this module: the services and the cogs call
its named methods. A persona is addressed by its ``key`` (see
core.contract.persona_key); a guild's persona by ``(guild_id, name)``.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import aiosqlite

from core.contract import persona_key

#: The one definition of the posting order: "move to top" first, then the
#: highest net score, then the oldest.
# Kept in step with the index candidates_posting_order (migration 0011).
POSTING_ORDER = "queue_rank IS NULL, queue_rank, score DESC, id"

CANDIDATE_STATES = ("voting", "approved", "rejected", "expired", "posting", "posted", "failed")

_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


def migrations() -> list[tuple[int, str, str]]:
    """(number, file name, SQL) of every migration shipped in bot/migrations, in order."""
    found = []
    for entry in resources.files("bot.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


# record_votes' one statement: a batch of votes as five JSON arrays of rows.
# Temporary (this connection's): the SQL lives here, next to its one caller.
_ROWS = "SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each"
_VOTE_BATCHES = f"""
CREATE TEMP VIEW vote_batches(adds, removes, upserts, clears, candidates) AS SELECT NULL, NULL, NULL, NULL, NULL;
CREATE TEMP TRIGGER vote_batches_write INSTEAD OF INSERT ON vote_batches BEGIN
    INSERT OR IGNORE INTO reactions {_ROWS}(NEW.adds);
    DELETE FROM reactions WHERE (candidate_id, member_id, emoji) IN ({_ROWS}(NEW.removes));
    INSERT INTO votes(candidate_id, member_id, value) {_ROWS}(NEW.upserts) WHERE true
        ON CONFLICT(candidate_id, member_id) DO UPDATE SET value = excluded.value, at = excluded.at
        WHERE value != excluded.value;
    DELETE FROM votes WHERE (candidate_id, member_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(NEW.clears));
    -- The state moves only from the one the votes were counted on: a change made
    -- meanwhile (a post claimed, `parodybot post-now` in another process) stands.
    UPDATE candidates SET score = j.value ->> 0,
        state = CASE WHEN state = j.value ->> 4 THEN j.value ->> 1 ELSE state END,
        decided_at = CASE WHEN state = j.value ->> 4 THEN j.value ->> 2 ELSE decided_at END
        FROM json_each(NEW.candidates) AS j WHERE candidates.id = j.value ->> 3;
END;
"""


class Store:
    def __init__(self, db: aiosqlite.Connection, path: Path):
        self.db = db
        self.path = path
        # One connection: transactions from concurrent tasks must not interleave.
        self._tx_lock = asyncio.Lock()
        self._writes = 0  # writes committed so far (a shared read never spans one)
        self._reads: dict[tuple, tuple[int, asyncio.Future]] = {}

    @property
    def writes(self) -> int:
        """Writes this store has committed so far: what was read is still current
        while it is unchanged (for this process's own writes)."""
        return self._writes

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
            self._writes += 1

    @staticmethod
    def check_readable(path: Path) -> None:
        """Raise sqlite3.DatabaseError at once if the file is there but no database:
        the bot says so before it goes online (and opens the store later)."""
        if path.is_file():
            with contextlib.closing(sqlite3.connect(path)) as db:
                db.execute("PRAGMA schema_version")

    @classmethod
    async def open(cls, path: Path) -> "Store":
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)  # we issue BEGIN ourselves
        try:
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL keeps every commit through a process crash (only a
            # power cut can lose the last ones) and saves an fsync per commit.
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA busy_timeout=5000")
            store = cls(db, path)
            await store.migrate()
            await db.execute("PRAGMA foreign_keys=ON")
            await db.executescript(_VOTE_BATCHES)
        except BaseException:
            await db.close()  # an open connection's thread would keep the process alive
            raise
        return store

    async def close(self) -> None:
        await self.db.close()

    async def migrate(self) -> list[str]:
        """Apply the migrations not yet applied, each in its own transaction.

        Foreign keys are off meanwhile (SQLite's procedure for rebuilding a
        table: with them on, dropping a parent table deletes its children)
        and checked once all are applied."""
        await self.db.execute("PRAGMA foreign_keys=OFF")
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            f" applied_at TEXT NOT NULL DEFAULT ({_NOW}))"
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
                if self.db.in_transaction:
                    await self.db.execute("ROLLBACK")
                raise
            applied.append(name)
        broken = await self.fetchall("PRAGMA foreign_key_check")
        if broken:
            raise sqlite3.IntegrityError(f"foreign keys broken after migrating: {[tuple(r) for r in broken][:5]}")
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

    # --- raw helpers: for the methods below, tests and one-off tools; the bot
    # and the worker call the named methods (tests/test_layout.py checks) --

    # One trip to aiosqlite's thread per query (a cursor's execute, fetch and
    # close are three): under 100 concurrent commands that is most of the wait.
    # And a query that is already under way, with no write committed since it
    # began, is shared: forty members typing /status at once cost one trip, and
    # no answer misses a write made before its question (rows are read-only;
    # each caller builds its own dicts from them).
    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        rows = await self._read(sql, tuple(params))
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        return list(await self._read(sql, tuple(params)))

    async def _read(self, sql: str, params: tuple) -> list:
        if self._tx_lock.locked():  # a transaction is open on our one connection: read on its own
            return await self.db.execute_fetchall(sql, params)
        try:
            key = (sql, params)
            entry = self._reads.get(key)
        except TypeError:  # a parameter that cannot be a key: nothing to share
            return await self.db.execute_fetchall(sql, params)
        if entry is None or entry[0] != self._writes:
            entry = (self._writes, asyncio.ensure_future(self.db.execute_fetchall(sql, params)))
            self._reads[key] = entry
            entry[1].add_done_callback(lambda f, e=entry: self._read_done(key, e, f))
        return await asyncio.shield(entry[1])

    def _read_done(self, key: tuple, entry: tuple, future: asyncio.Future) -> None:
        if self._reads.get(key) is entry:
            self._reads.pop(key)
        if not future.cancelled():
            future.exception()  # every caller may have gone (the bot closing): not an unretrieved error

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement in autocommit; returns lastrowid."""
        try:
            async with self.db.execute(sql, tuple(params)) as cur:
                return cur.lastrowid
        finally:
            self._writes += 1

    async def get_setting(self, key: str, default: Any = None) -> Any:
        row = await self.fetchone("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(row[0]) if row else default

    async def set_setting(self, key: str, value: Any) -> None:
        await self.execute(
            "INSERT INTO settings(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    # --- personas ----------------------------------------------------------

    async def get_persona(self, key: str) -> dict | None:
        row = await self.fetchone("SELECT * FROM personas WHERE key = ?", (key,))
        return _persona(row) if row else None

    async def find_persona(self, guild_id: int, name: str) -> dict | None:
        """The guild's persona called ``name``; another guild's is never found."""
        row = await self.fetchone("SELECT * FROM personas WHERE guild_id = ? AND name = ?", (guild_id, name))
        return _persona(row) if row else None

    async def personas_named(self, name: str) -> list[dict]:
        """Every guild's persona called ``name`` (the CLI resolves NAME with it)."""
        return [_persona(r) for r in await self.fetchall("SELECT * FROM personas WHERE name = ? ORDER BY guild_id", (name,))]

    async def list_personas(self, guild_id: int | None = None) -> list[dict]:
        """The guild's personas, or (guild_id None: the scheduler, start-up) every guild's."""
        if guild_id is None:
            rows = await self.fetchall("SELECT * FROM personas ORDER BY guild_id, name")
        else:
            rows = await self.fetchall("SELECT * FROM personas WHERE guild_id = ? ORDER BY name", (guild_id,))
        return [_persona(r) for r in rows]

    async def create_persona(self, guild_id: int, name: str, **fields: Any) -> dict:
        key = persona_key(guild_id, name)
        fields = _json_fields(fields)
        cols = ["key", "name", "guild_id", *fields]
        await self.execute(
            f"INSERT INTO personas({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            (key, name, guild_id, *fields.values()),
        )
        return await self.get_persona(key)

    async def update_persona(self, key: str, **fields: Any) -> dict | None:
        fields = _json_fields(fields)
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            await self.execute(f"UPDATE personas SET {sets} WHERE key = ?", (*fields.values(), key))
        return await self.get_persona(key)

    async def delete_persona(self, key: str) -> None:
        """The persona and its candidates, except those posted or being posted
        (the record of what went out stays)."""
        async with self.transaction() as db:
            await db.execute("DELETE FROM candidates WHERE persona = ? AND state NOT IN ('posting', 'posted')", (key,))
            await db.execute("DELETE FROM personas WHERE key = ?", (key,))
            # A cascade deletes votes after their candidate, where the count trigger no longer
            # finds the persona: count what is left afresh (a new persona may get this key).
            await db.execute("DELETE FROM persona_voters WHERE persona = ?", (key,))
            await db.execute(
                "INSERT INTO persona_voters(persona, member_id, votes) SELECT c.persona, v.member_id, COUNT(*)"
                " FROM votes v JOIN candidates c ON c.id = v.candidate_id WHERE c.persona = ? AND v.value != 0"
                " GROUP BY c.persona, v.member_id", (key,))

    async def hold_target(self, key: str, target: str, until: str, why: str) -> None:
        """No run posts to ``target`` before ``until`` (UTC ISO)."""
        async with self.transaction() as db:
            async with db.execute("SELECT target_holds FROM personas WHERE key = ?", (key,)) as cur:
                row = await cur.fetchone()
            if row is None:
                return
            holds = json.loads(row[0] or "{}")
            holds[target] = {"until": until, "why": why[:300]}
            await db.execute("UPDATE personas SET target_holds = ? WHERE key = ?", (json.dumps(holds), key))

    async def set_retry_at(self, key: str, when: str | None) -> None:
        """The persona's pending posting retry (UTC ISO), or none; writes only on a change."""
        await self.execute("UPDATE personas SET retry_at = ? WHERE key = ? AND retry_at IS NOT ?", (when, key, when))

    # --- jobs --------------------------------------------------------------

    async def create_job(self, kind: str, persona: str, guild_id: int, params: dict, requested_by: int | None,
                         channel_id: int | None = None) -> int:
        return await self.execute(
            "INSERT INTO jobs(kind, persona, guild_id, params, requested_by, channel_id) VALUES (?, ?, ?, ?, ?, ?)",
            (kind, persona, guild_id, json.dumps(params), requested_by, channel_id),
        )

    async def get_job(self, job_id: int, guild_id: int | None = None) -> dict | None:
        """The job; with ``guild_id``, only when it was asked in that guild."""
        if guild_id is None:
            row = await self.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        else:
            row = await self.fetchone("SELECT * FROM jobs WHERE id = ? AND guild_id = ?", (job_id, guild_id))
        return _job(row) if row else None

    async def list_jobs(self, *, guild_id: int | None = None, active_only: bool = False, limit: int = 20,
                        persona: str | None = None) -> list[dict]:
        where, params = [], []
        if guild_id is not None:
            where.append("guild_id = ?")
            params.append(guild_id)
        if active_only:
            where.append("state IN ('queued', 'running')")
        if persona:
            where.append("persona = ?")
            params.append(persona)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = await self.fetchall(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [_job(r) for r in rows]

    async def active_job(self, persona: str, kind: str) -> dict | None:
        row = await self.fetchone("SELECT * FROM jobs WHERE persona = ? AND kind = ? AND state IN ('queued', 'running') "
                              "ORDER BY id LIMIT 1", (persona, kind))
        return _job(row) if row else None

    async def has_trained(self, persona: str) -> bool:
        """A training of the persona finished: the worker has its working checkpoint."""
        row = await self.fetchone("SELECT 1 FROM jobs WHERE persona = ? AND kind = 'train' AND state = 'done' LIMIT 1",
                                  (persona,))
        return row is not None

    async def update_job(self, job_id: int, **fields: Any) -> None:
        fields = _json_fields(fields, ("params", "progress", "result"))
        sets = ", ".join(f"{k} = ?" for k in fields)
        await self.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*fields.values(), job_id))

    async def jobs_to_deliver(self, grace_s: int = 30) -> list[dict]:
        """Ended jobs whose outcome is not delivered yet. One that ended before its
        command stored the message id waits ``grace_s`` for it."""
        rows = await self.fetchall(
            "SELECT * FROM jobs WHERE state IN ('done', 'failed', 'cancelled') AND delivered = 0"
            " AND (message_id IS NOT NULL OR channel_id IS NULL OR finished_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?))"
            " ORDER BY id", (f"-{int(grace_s)} seconds",))
        return [_job(r) for r in rows]

    # --- candidates and votes ---------------------------------------------

    async def add_candidates(self, persona: str, job_id: int | None, items: Iterable[tuple[str, dict]],
                             voting_ends_at: str, created_at: str) -> list[int]:
        """Store candidates for voting in one transaction. A job's candidates are
        stored once: a second call for the same job adds nothing."""
        ids = []
        async with self.transaction() as db:
            if job_id is not None:
                async with db.execute("SELECT 1 FROM candidates WHERE job_id = ? LIMIT 1", (job_id,)) as cur:
                    if await cur.fetchone():
                        return []
            for text, settings in items:
                async with db.execute(
                    "INSERT INTO candidates(persona, job_id, text, settings, voting_ends_at, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (persona, job_id, text, json.dumps(settings), voting_ends_at, created_at)) as cur:
                    ids.append(cur.lastrowid)
        return ids

    async def add_candidate(self, persona: str, job_id: int | None, text: str, settings: dict,
                            voting_ends_at: str, created_at: str) -> int:
        return await self.execute(
            "INSERT INTO candidates(persona, job_id, text, settings, voting_ends_at, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (persona, job_id, text, json.dumps(settings), voting_ends_at, created_at),
        )

    async def get_candidate(self, candidate_id: int, guild_id: int | None = None) -> dict | None:
        """The candidate; with ``guild_id``, only when its persona is that guild's."""
        if guild_id is None:
            row = await self.fetchone("SELECT * FROM candidates WHERE id = ?", (candidate_id,))
        else:
            row = await self.fetchone(
                "SELECT c.* FROM candidates c JOIN personas p ON p.key = c.persona WHERE c.id = ? AND p.guild_id = ?",
                (candidate_id, guild_id))
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

    async def vote_targets(self, ids: Iterable[int]) -> dict[int, dict]:
        """id -> what a vote needs of the candidate (its plain columns: no JSON to parse
        for a burst's every batch)."""
        ids = list(ids)
        rows = await self.fetchall(
            "SELECT id, persona, state, score, created_at, decided_at, message_id, channel_id FROM candidates"
            f" WHERE id IN ({', '.join('?' * len(ids))})", ids)
        return {r[0]: dict(r) for r in rows}

    async def undelivered(self, persona: str) -> list[dict]:
        """The persona's candidates still voting (or approved at once by hand) that have no
        message yet, oldest first."""
        rows = await self.fetchall("SELECT * FROM candidates WHERE persona = ? AND state IN ('voting', 'approved') "
                                   "AND message_id IS NULL ORDER BY id", (persona,))
        return [_candidate(r) for r in rows]

    async def claim_delivery(self, candidate_id: int, channel_id: int, at: str) -> str | None:
        """Claim the candidate's delivery to ``channel_id`` before its message is sent;
        returns the earlier claim's time when there was one (a message may exist)."""
        async with self.transaction() as db:
            async with db.execute("SELECT delivery_claimed_at, channel_id FROM candidates WHERE id = ?",
                                  (candidate_id,)) as cur:
                row = await cur.fetchone()
            earlier = row[0] if row and row[1] == channel_id else None
            await db.execute("UPDATE candidates SET delivery_claimed_at = COALESCE(?, ?), channel_id = ? WHERE id = ?",
                             (earlier, at, channel_id, candidate_id))
        return earlier

    async def record_delivery(self, candidate_id: int, message_id: int) -> None:
        await self.execute("UPDATE candidates SET message_id = ? WHERE id = ?", (message_id, candidate_id))

    async def recent_texts(self, persona: str, limit: int = 5000) -> list[str]:
        """The persona's latest candidate texts (generation drops repeats of them)."""
        rows = await self.fetchall("SELECT text FROM candidates WHERE persona = ? ORDER BY id DESC LIMIT ?", (persona, limit))
        return [r[0] for r in rows]

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
        candidates, in one statement: (candidate id, {(member, emoji): present},
        {member: vote} of those members, score, state counted on, new state,
        decided_at). Only the members whose reactions changed get their vote
        written; the state changes only if it is still the one counted on.

        Under a burst of reactions the batches are small and many, and each trip
        to aiosqlite's thread costs the event loop more than the SQL: so a batch is
        one insert into the view ``vote_batches``, whose trigger (``_VOTE_BATCHES``)
        writes it all, atomically as any one statement is (bench/votes.py)."""
        add, remove, upsert, clear, candidates = [], [], [], [], []
        for candidate_id, reactions, votes, score, was, state, decided_at in writes:
            for (member, emoji), present in reactions.items():
                (add if present else remove).append((candidate_id, member, emoji))
            for member in {m for m, _ in reactions}:
                vote = votes.get(member, 0)
                if vote:
                    upsert.append((candidate_id, member, vote))
                else:
                    clear.append((candidate_id, member))
            candidates.append((score, state, decided_at, candidate_id, was))
        batch = [json.dumps(rows, ensure_ascii=False) for rows in (add, remove, upsert, clear, candidates)]
        async with self._tx_lock:  # not inside another task's open transaction
            await self.db.execute("INSERT INTO vote_batches VALUES (?, ?, ?, ?, ?)", batch)
            self._writes += 1

    async def edit_candidate(self, candidate_id: int, text: str, *, job_id: int, edited_by: int | None,
                             voting_ends_at: str, created_at: str) -> dict | None:
        """Give the candidate a new text and start its vote again (no votes, no message:
        a new one is sent); the old text, state and score go into candidate_edits.
        Returns the row as it was; None when this job's edit was made already."""
        async with self.transaction() as db:
            async with db.execute("SELECT 1 FROM candidate_edits WHERE job_id = ?", (job_id,)) as cur:
                if await cur.fetchone():
                    return None
            async with db.execute("SELECT * FROM candidates WHERE id = ?", (candidate_id,)) as cur:
                before = dict(await cur.fetchone())
            await db.execute(
                "INSERT INTO candidate_edits(candidate_id, old_text, new_text, old_state, old_score, edited_by, job_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (candidate_id, before["text"], text, before["state"], before["score"], edited_by, job_id))
            await db.execute("DELETE FROM votes WHERE candidate_id = ?", (candidate_id,))
            await db.execute("DELETE FROM reactions WHERE candidate_id = ?", (candidate_id,))
            await db.execute(
                "UPDATE candidates SET text = ?, state = 'voting', score = 0, message_id = NULL,"
                " delivery_claimed_at = NULL, voting_ends_at = ?, created_at = ?, decided_at = NULL,"
                " queue_rank = NULL WHERE id = ?", (text, voting_ends_at, created_at, candidate_id))
        return before

    async def candidate_edits(self, candidate_id: int) -> list[dict]:
        rows = await self.fetchall("SELECT * FROM candidate_edits WHERE candidate_id = ? ORDER BY id", (candidate_id,))
        return [dict(r) for r in rows]

    async def export_rows(self, persona: str) -> list[dict]:
        """Every candidate of the persona with its votes for and against, oldest first."""
        rows = await self.fetchall(
            "SELECT c.id, c.state, c.score, c.text, c.created_at, c.decided_at, c.job_id,"
            " COALESCE(SUM(v.value > 0), 0) AS up, COALESCE(SUM(v.value < 0), 0) AS down,"
            " (SELECT COUNT(*) FROM candidate_edits e WHERE e.candidate_id = c.id) AS edits"
            " FROM candidates c LEFT JOIN votes v ON v.candidate_id = c.id"
            " WHERE c.persona = ? GROUP BY c.id ORDER BY c.id", (persona,))
        return [dict(r) for r in rows]

    async def set_votes(self, candidate_id: int, votes: dict[int, int], score: int) -> None:
        """Record each member's net vote and the candidate's score in one transaction."""
        async with self.transaction() as db:
            await db.execute("DELETE FROM votes WHERE candidate_id = ?", (candidate_id,))
            await db.executemany(
                "INSERT INTO votes(candidate_id, member_id, value) VALUES (?, ?, ?)",
                [(candidate_id, m, v) for m, v in votes.items() if v],
            )
            await db.execute("UPDATE candidates SET score = ? WHERE id = ?", (score, candidate_id))

    async def candidate_stats(self, personas: list[str]) -> dict:
        """Counts for /stats over the given personas: candidates by state, votes,
        voters, and the three best liked."""
        marks = ", ".join("?" * len(personas)) or "NULL"
        by_state = {s: 0 for s in CANDIDATE_STATES}
        for state, n in await self.fetchall(
                f"SELECT state, SUM(n) FROM candidate_counts WHERE persona IN ({marks}) GROUP BY state", personas):
            by_state[state] = n
        votes = await self.fetchone(  # kept by triggers (migration 0011): no read of every vote
            "SELECT COALESCE(SUM(votes), 0), COUNT(DISTINCT member_id) FROM persona_voters"
            f" WHERE persona IN ({marks}) AND votes > 0", personas)
        top = []
        for persona in personas:  # each persona's best three from its index, then the best three of those
            top += await self.fetchall("SELECT id, persona, score, text FROM candidates WHERE persona = ?"
                                       " ORDER BY score DESC, id LIMIT 3", (persona,))
        top = sorted((dict(r) for r in top), key=lambda r: (-r["score"], r["id"]))[:3]
        return {"candidates": by_state, "votes": votes[0], "voters": votes[1], "top": top}

    # --- the posting queue ---------------------------------------------------

    async def approved_queue(self, persona: str, limit: int | None = None) -> list[dict]:
        """The persona's approved candidates in posting order (the first ``limit``)."""
        rows = await self.fetchall(
            f"SELECT * FROM candidates WHERE persona = ? AND state = 'approved' ORDER BY {POSTING_ORDER}"
            " LIMIT ?", (persona, -1 if limit is None else limit))
        return [_candidate(r) for r in rows]

    async def approved_count(self, persona: str) -> int:
        row = await self.fetchone("SELECT COUNT(*) FROM candidates WHERE persona = ? AND state = 'approved'", (persona,))
        return int(row[0])

    async def queue_position(self, candidate_id: int, persona: str) -> int | None:
        """1-based place of an approved candidate in its persona's posting order."""
        row = await self.fetchone(
            f"SELECT pos FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY {POSTING_ORDER}) AS pos FROM candidates"
            " WHERE persona = ? AND state = 'approved') WHERE id = ?", (persona, candidate_id))
        return int(row[0]) if row else None

    async def move_to_top(self, candidate_id: int, persona: str) -> None:
        """Ahead of every other approved candidate of the persona."""
        await self.execute(
            "UPDATE candidates SET queue_rank = COALESCE((SELECT MIN(queue_rank) FROM candidates"
            " WHERE persona = ? AND state = 'approved'), 0.0) - 1.0 WHERE id = ?", (persona, candidate_id))

    # --- posting ---------------------------------------------------------------

    async def posts_for(self, candidate_id: int) -> list[dict]:
        return [dict(r) for r in await self.fetchall("SELECT * FROM posts WHERE candidate_id = ? ORDER BY id", (candidate_id,))]

    async def posted_count(self, persona: str, since: str) -> int:
        """Candidates of the persona posted (anywhere) at or after ``since`` (UTC ISO)."""
        row = await self.fetchone(
            "SELECT COUNT(DISTINCT p.candidate_id) FROM posts p JOIN candidates c ON c.id = p.candidate_id "
            "WHERE c.persona = ? AND p.state = 'posted' AND p.posted_at >= ?", (persona, since))
        return int(row[0] or 0)

    async def claim_next(self, persona: str, target_keys: list[str], now: str):
        """In one transaction: the first approved candidate -> ``posting``, a
        ``sending`` row for each target it is not yet posted to. Committed before
        any publisher is called. (candidate, keys to post to, posts already
        made), or None when the queue is empty."""
        async with self.transaction() as db:
            async with db.execute(f"SELECT id FROM candidates WHERE persona = ? AND state = 'approved' "
                                  f"ORDER BY {POSTING_ORDER} LIMIT 1", (persona,)) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            cid = row[0]
            async with db.execute("SELECT * FROM posts WHERE candidate_id = ?", (cid,)) as cur:
                existing = {r["platform"]: dict(r) for r in await cur.fetchall()}
            already = [existing[k] for k in target_keys if existing.get(k, {}).get("state") == "posted"]
            todo = [k for k in target_keys if existing.get(k, {}).get("state") != "posted"]
            await db.execute("UPDATE candidates SET state = 'posting', note = NULL WHERE id = ?", (cid,))
            for key in todo:
                await db.execute(
                    "INSERT INTO posts(candidate_id, platform, state, claimed_at) VALUES (?, ?, 'sending', ?) "
                    "ON CONFLICT(candidate_id, platform) DO UPDATE SET state = 'sending', error = NULL, "
                    "claimed_at = excluded.claimed_at", (cid, key, now))
        return await self.get_candidate(cid), todo, already

    async def record_posted(self, candidate_id: int, target: str, remote_id: str | None, url: str | None,
                            note: str | None, at: str) -> None:
        await self.execute("UPDATE posts SET state = 'posted', remote_id = ?, url = ?, error = ?, posted_at = ? "
                        "WHERE candidate_id = ? AND platform = ?", (remote_id, url, note, at, candidate_id, target))

    async def record_post_failure(self, candidate_id: int, target: str, error: str) -> None:
        await self.execute("UPDATE posts SET state = 'failed', error = ? WHERE candidate_id = ? AND platform = ?",
                        (error[:500], candidate_id, target))

    async def mark_outcome_unknown(self, candidate_id: int, note: str, error: str) -> None:
        """Targets still ``sending`` may or may not have it: ``unknown``, and the
        candidate ``failed`` with ``note`` until an operator resolves it."""
        async with self.transaction() as db:
            await db.execute("UPDATE posts SET state = 'unknown', error = ? WHERE candidate_id = ? AND state = 'sending'",
                             (error, candidate_id))
            await db.execute("UPDATE candidates SET state = 'failed', note = ? WHERE id = ?", (note, candidate_id))

    async def settle_recorded(self, candidate_id: int, state: str) -> None:
        """A run died after recording every answer: ``posting`` -> ``state``."""
        await self.execute("UPDATE candidates SET state = ? WHERE id = ? AND state = 'posting'", (state, candidate_id))

    async def finish_posted(self, candidate_id: int, persona: str, at: str) -> None:
        async with self.transaction() as db:
            await db.execute("UPDATE candidates SET state = 'posted', note = NULL, decided_at = ? WHERE id = ?",
                             (at, candidate_id))
            await db.execute("UPDATE personas SET posting_notice = NULL WHERE key = ?", (persona,))

    async def requeue_unposted(self, candidate_id: int, persona: str, note: str, *, some_posted: bool) -> None:
        """Back to ``approved`` (first in the queue) after targets failed."""
        async with self.transaction() as db:
            await db.execute("UPDATE candidates SET state = 'approved', note = ? WHERE id = ?", (note, candidate_id))
            if some_posted:
                await db.execute("UPDATE personas SET posting_notice = NULL WHERE key = ?", (persona,))

    async def resolve_interrupted(self, candidate_id: int, outcome: str, by: str, at: str) -> None:
        """``posted``: the unknown targets have it; ``requeue``: post to them again."""
        async with self.transaction() as db:
            if outcome == "posted":
                await db.execute("UPDATE posts SET state = 'posted', error = ?, posted_at = ? "
                                 "WHERE candidate_id = ? AND state IN ('unknown', 'sending')",
                                 (f"marked posted by {by}", at, candidate_id))
                await db.execute("UPDATE candidates SET state = 'posted', note = ? WHERE id = ?",
                                 (f"marked posted by {by}", candidate_id))
            else:
                await db.execute("UPDATE posts SET state = 'failed', error = ? "
                                 "WHERE candidate_id = ? AND state IN ('unknown', 'sending')",
                                 (f"requeued by {by} (outcome was unknown)", candidate_id))
                await db.execute("UPDATE candidates SET state = 'approved', note = ? WHERE id = ?",
                                 (f"requeued by {by}", candidate_id))

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
        await self.execute(f"UPDATE posting_events SET delivered_at = {_NOW} WHERE id = ?", (event_id,))


PERSONA_JSON = ("sources", "rules", "schedule", "targets", "target_holds", "settings")


def _json_fields(fields: dict, names: Iterable[str] = PERSONA_JSON) -> dict:
    return {k: (json.dumps(v) if k in names and not isinstance(v, str) else v) for k, v in fields.items()}


def _loads(row, names: Iterable[str]) -> dict:
    data = dict(row)
    for name in names:
        if data.get(name) is not None:
            data[name] = json.loads(data[name])
    return data


def _persona(row) -> dict:
    return _loads(row, PERSONA_JSON)


def _job(row) -> dict:
    return _loads(row, ("params", "progress", "result"))


def _candidate(row) -> dict:
    return _loads(row, ("settings", "flags"))
