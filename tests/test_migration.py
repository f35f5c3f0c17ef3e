"""Upgrading a database and worker folder of schema 4 (personas keyed by name
alone) to guild-owned personas: every persona, candidate, vote and checkpoint
is kept and found again."""
from __future__ import annotations

import sqlite3

import pytest

from bot.store import Store, migrations
from core.contract import persona_key
from workers.datasets import load_texts
from workers.finetune import working_checkpoint

GUILD = 555000111


def schema_4(path):
    """A database as version 0.1 left it: migrations 0001-0004, with data."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
               " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))")
    for number, name, sql in migrations():
        if number > 4:
            break
        db.executescript(f"BEGIN;\n{sql}\nINSERT INTO schema_migrations(version, name) VALUES ({number}, '{name}');\nCOMMIT;")
    db.executescript(f"""
        PRAGMA foreign_keys=ON;
        INSERT INTO personas(name, guild_id, curation_channel_id, rules, schedule, targets, state, last_run_at)
            VALUES ('dril', {GUILD}, 42, '{{"approve_at": 2}}', '{{"cron": "0 9 * * *", "timezone": "UTC"}}',
                    '[{{"platform": "outbox"}}]', 'active', '2026-11-01T09:00:00.000000Z');
        INSERT INTO personas(name, guild_id) VALUES ('orphan', NULL);
        INSERT INTO datasets(persona, source, fetched_at, kept) VALUES ('dril', 'csv', '2026-11-01', 283);
        INSERT INTO jobs(kind, persona, queue_id, state, params) VALUES ('train', 'dril', 'q1', 'done', '{{"steps": 5}}');
        INSERT INTO candidates(id, persona, job_id, text, state, score, message_id)
            VALUES (1, 'dril', 1, 'approved one', 'approved', 3, 9001),
                   (2, 'dril', 1, 'still voting', 'voting', 1, 9002),
                   (3, 'dril', 1, 'went out', 'posted', 4, 9003);
        INSERT INTO reactions VALUES (1, 7, '👍'), (1, 8, '👍'), (1, 9, '👍'), (2, 7, '👍');
        INSERT INTO votes(candidate_id, member_id, value) VALUES (1, 7, 1), (1, 8, 1), (1, 9, 1), (2, 7, 1);
        INSERT INTO posts(candidate_id, platform, state, remote_id) VALUES (3, 'outbox', 'posted', 'abc');
        INSERT INTO posting_events(persona, kind, text) VALUES ('dril', 'posted', 'posted #3');
    """)
    db.close()


def counts(path) -> dict:
    db = sqlite3.connect(path)
    try:
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("personas", "datasets", "jobs", "candidates", "reactions", "votes", "posts", "posting_events")}
    finally:
        db.close()


@pytest.fixture
def worker_folder(tmp_path):
    """The worker's folder of schema 4: dril's dataset and working checkpoint, by name."""
    worker = tmp_path / "data" / "worker"
    (worker / "datasets" / "dril").mkdir(parents=True)
    (worker / "datasets" / "dril" / "dataset.csv").write_text("tweets\nthe first post\nthe second post\n")
    ckpt = worker / "checkpoint" / "dril"
    ckpt.mkdir(parents=True)
    for name in ("checkpoint", "model-5.index", "model-5.meta", "hparams.json", "encoder.json", "vocab.bpe"):
        (ckpt / name).write_text(name)
    return worker


async def test_schema_4_upgrades_with_everything_kept(tmp_path, worker_folder):
    db_path = tmp_path / "data" / "parodybot.sqlite3"
    schema_4(db_path)
    before = counts(db_path)

    store = await Store.open(db_path)
    try:
        assert await store.schema_version() == max(n for n, _, _ in migrations())
        assert counts(db_path) == before  # not a row lost

        dril = await store.find_persona(GUILD, "dril")
        assert dril["key"] == "dril"  # its rows and the worker's folders keep their name
        assert dril["rules"] == {"approve_at": 2} and dril["schedule"]["cron"] == "0 9 * * *"
        assert dril["last_run_at"] == "2026-11-01T09:00:00.000000Z"
        assert await store.find_persona(GUILD + 1, "dril") is None  # another guild does not see it
        orphan = await store.find_persona(0, "orphan")  # made in a DM before guilds owned personas
        assert orphan is not None and orphan["key"] == "orphan"

        assert [c["text"] for c in await store.approved_queue(dril["key"])] == ["approved one"]
        assert (await store.candidate_by_message(9002))["state"] == "voting"
        assert await store.member_reactions(1) == {7: {"👍"}, 8: {"👍"}, 9: {"👍"}}
        assert [p["remote_id"] for p in await store.posts_for(3)] == ["abc"]
        assert (await store.get_candidate(1, guild_id=GUILD))["score"] == 3
        stats = await store.candidate_stats([dril["key"]])  # the counters start from the rows there were
        votes = await store.fetchone("SELECT COUNT(*), COUNT(DISTINCT member_id) FROM votes WHERE candidate_id IN "
                                     "(SELECT id FROM candidates WHERE persona = ?)", (dril["key"],))
        assert (stats["votes"], stats["voters"]) == tuple(votes) and stats["votes"] > 0
        assert sum(stats["candidates"].values()) == (await store.fetchone(
            "SELECT COUNT(*) FROM candidates WHERE persona = ?", (dril["key"],)))[0]
        assert await store.get_candidate(1, guild_id=GUILD + 1) is None
        job = await store.get_job(1, guild_id=GUILD)
        assert job["state"] == "done" and job["params"] == {"steps": 5}  # the job now knows its guild
        assert await store.fetchall("PRAGMA foreign_key_check") == []

        # The worker finds the checkpoint and the dataset under the persona's key.
        assert working_checkpoint(worker_folder, dril["key"]) == worker_folder / "checkpoint" / "dril"
        assert load_texts(worker_folder, dril["key"]) == ["the first post", "the second post"]

        # A new persona of the same name in another guild gets its own key, and
        # deleting it takes none of the old one's rows.
        rival = await store.create_persona(GUILD + 1, "dril")
        assert rival["key"] == persona_key(GUILD + 1, "dril") != dril["key"]
        await store.delete_persona(rival["key"])
        assert counts(db_path) == before
    finally:
        await store.close()

    # Opening again applies nothing twice.
    store = await Store.open(db_path)
    try:
        assert await store.migrate() == []
    finally:
        await store.close()
