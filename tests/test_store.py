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
