"""The SQLite store: WAL, numbered migrations applied once, state survives reopening."""
from bot.store import Store, migrations


async def test_migrations_apply_once_and_state_survives(tmp_path):
    path = tmp_path / "db.sqlite3"
    store = await Store.open(path)
    assert await store.schema_version() == max(n for n, _, _ in migrations())
    row = await store.fetchone("PRAGMA journal_mode")
    assert row[0] == "wal"
    await store.execute("INSERT INTO personas(name) VALUES ('dril')")
    await store.set_setting("greeting", {"hello": 1})
    await store.close()

    store = await Store.open(path)
    assert await store.migrate() == []  # nothing applied twice
    assert (await store.fetchone("SELECT name, state FROM personas"))[:] == ("dril", "active")
    assert await store.get_setting("greeting") == {"hello": 1}
    assert await store.health() == (True, max(n for n, _, _ in migrations()))
    await store.close()


def test_migrations_are_numbered_without_gaps():
    numbers = [n for n, _, _ in migrations()]
    assert numbers == list(range(1, len(numbers) + 1))


async def _stats_by_counting(store: Store, personas: list[str]) -> dict:
    """/stats as it was computed before the counters: from every row."""
    marks = ", ".join("?" * len(personas))
    states = dict(await store.fetchall(f"SELECT state, COUNT(*) FROM candidates WHERE persona IN ({marks})"
                                       " GROUP BY state", personas))
    votes = await store.fetchone("SELECT COUNT(*), COUNT(DISTINCT member_id) FROM votes WHERE candidate_id IN "
                                 f"(SELECT id FROM candidates WHERE persona IN ({marks}))", personas)
    return {"states": {k: v for k, v in states.items() if v}, "votes": votes[0], "voters": votes[1]}


async def _stats_shown(store: Store, personas: list[str]) -> dict:
    s = await store.candidate_stats(personas)
    return {"states": {k: v for k, v in s["candidates"].items() if v}, "votes": s["votes"], "voters": s["voters"]}


async def test_stats_counters_match_counting_every_row_through_votes_edits_and_deletes(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    dril = await store.create_persona(1, "dril", curation_channel_id=5)
    wint = await store.create_persona(1, "wint", curation_channel_id=5)
    keys = [dril["key"], wint["key"]]
    when = "2026-12-02T10:00:00.000Z"
    a = await store.add_candidates(dril["key"], None, [(f"dril {i}", {}) for i in range(4)], when, when)
    b = await store.add_candidates(wint["key"], None, [(f"wint {i}", {}) for i in range(3)], when, when)
    await store.set_votes(a[0], {10: 1, 11: 1, 12: -1}, 1)
    await store.set_votes(a[1], {10: 1, 13: 0}, 1)  # a 0 is no vote
    await store.set_votes(b[0], {10: -1, 14: 1}, 0)
    await store.record_votes([(a[0], {(11, "👍"): False, (12, "👎"): False, (12, "👍"): True},  # 11 took theirs back
                               {10: 1, 12: 1}, 2, "voting", "approved", when)])
    assert dict(await store.fetchall("SELECT member_id, value FROM votes WHERE candidate_id = ?", (a[0],))) == {
        10: 1, 12: 1}
    await store.update_candidate(a[2], state="rejected")
    await store.edit_candidate(a[0], "dril, edited", job_id=99, edited_by=10, voting_ends_at=when, created_at=when)
    for scope in (keys, keys[:1], keys[1:]):
        assert await _stats_shown(store, scope) == await _stats_by_counting(store, scope)
    assert await _stats_shown(store, keys) == {"states": {"voting": 6, "rejected": 1}, "votes": 3, "voters": 2}

    await store.update_candidate(b[1], state="posted")
    await store.set_votes(b[1], {15: 1}, 1)
    await store.delete_persona(wint["key"])  # the posted one stays, with its vote
    again = await store.create_persona(1, "wint", curation_channel_id=5)  # the same key again
    assert again["key"] == wint["key"]
    assert await _stats_shown(store, [wint["key"]]) == await _stats_by_counting(store, [wint["key"]]) == {
        "states": {"posted": 1}, "votes": 1, "voters": 1}
    await store.close()
