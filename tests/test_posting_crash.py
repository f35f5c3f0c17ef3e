"""Never twice: a posting run killed between the publisher's answer and its
record is found by the next run, not reposted, marked, and told to operators.

The kill is real: `PARODYBOT_FAULT=after_publish` makes `parodybot post-now`
SIGKILL itself right after the publisher returned (the tweet is out, the
database does not know). The fake X server runs in this test's event loop, so
the CLI runs as an asyncio subprocess.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from core.contract import persona_key

from core import contract
from core.config import Config
from bot.posting import PostingService
from bot.store import Store
from conftest import config_for
from fakes.posting_servers import FakeX

REPO = Path(__file__).resolve().parents[1]
X_ENV = {
    "DRIL_X_CONSUMER_KEY": "ck-crash-test-1", "DRIL_X_CONSUMER_SECRET": "cs-crash-test-2",
    "DRIL_X_ACCESS_TOKEN": "at-crash-test-3", "DRIL_X_ACCESS_TOKEN_SECRET": "ats-crash-test-4",
}
TEXT = "wore two hats to the funeral to show i was twice as sad"


@pytest.fixture
async def fake_x():
    async with FakeX(consumer_key=X_ENV["DRIL_X_CONSUMER_KEY"], access_token=X_ENV["DRIL_X_ACCESS_TOKEN"],
                     consumer_secret=X_ENV["DRIL_X_CONSUMER_SECRET"],
                     access_token_secret=X_ENV["DRIL_X_ACCESS_TOKEN_SECRET"]) as server:
        yield server


async def post_now(data_dir: Path, *, fault: str | None = None) -> tuple[int, str, str]:
    env = dict(os.environ, PARODYBOT_DATA_DIR=str(data_dir), **X_ENV)
    env.pop("PARODYBOT_FAULT", None)
    if fault:
        env["PARODYBOT_FAULT"] = fault
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "post-now", "dril", "--json", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def db_state(data_dir: Path, cid: int) -> tuple[str, list[tuple[str, str]], str | None]:
    store = await Store.open(data_dir / "parodybot.sqlite3")
    try:
        cand = await store.get_candidate(cid)
        return cand["state"], [(p["platform"], p["state"]) for p in await store.posts_for(cid)], cand["note"]
    finally:
        await store.close()


async def test_sigkill_after_publish_never_posts_twice_and_operators_are_told(world, data_dir, bot_handle, fake_x,
                                                                              monkeypatch):
    store = await Store.open(data_dir / "parodybot.sqlite3")
    await store.create_persona(world.guild.id, "dril", curation_channel_id=world.curation.id,
                               log_channel_id=world.log.id,
                               targets=[{"platform": "x", "credentials": "DRIL_X", "base_url": fake_x.url,
                                         "timeout": 5}])
    cid = await store.add_candidate(persona_key(world.guild.id, "dril"), None, TEXT, {}, "2099-01-01T00:00:00.000000Z",
                                    created_at="2026-01-01T00:00:00.000000Z")
    await store.update_candidate(cid, state="approved", score=3)
    await store.close()

    # 1. Killed right after X answered: the tweet is out, the record is not.
    rc, out, err = await post_now(data_dir, fault="after_publish")
    assert rc == -signal.SIGKILL, (rc, out, err)
    assert list(fake_x.tweets.values()) == [TEXT]
    assert await db_state(data_dir, cid) == ("posting", [("x", "sending")], None)

    # 2. The next run does not post it again: it marks it and says how to resolve it.
    rc, out, err = await post_now(data_dir)
    report = json.loads(out)
    assert report["recovered"][0]["candidate_id"] == cid
    assert f"/post resolve candidate:{cid} outcome:posted" in report["message"]
    assert report["outcome"] == "empty" and rc == 1  # nothing else to post
    assert len(fake_x.requests_to("/2/tweets")) == 1 and list(fake_x.tweets.values()) == [TEXT]
    state, rows, note = await db_state(data_dir, cid)
    assert (state, rows) == ("failed", [("x", "unknown")]) and "interrupted" in note

    # 3. The bot, started afterwards, tells the operators in the log channel.
    for k, v in X_ENV.items():
        monkeypatch.setenv(k, v)
    bot = await bot_handle.start(config_for(world))
    line = await world.standin.wait_for_message(world.log, lambda m: "interrupted" in (m["content"] or ""), timeout=10)
    assert f"#{cid}" in line["content"] and "outcome:requeue" in line["content"]
    assert "**not** sent again" in line["content"]

    # 4. Requeue (the operator could not tell): X's duplicate check makes it count as posted, still one tweet.
    ix = await world.standin.invoke(world.erin, "post", subcommand="resolve", channel=world.general,
                                    options={"candidate": cid, "outcome": "requeue"})
    await ix.wait_for_response()
    assert ix.ephemeral and "parodybot-operator" in ix.response["content"]
    choices = await world.standin.autocomplete(world.alice, "post", subcommand="resolve", focused="candidate",
                                               channel=world.general, options={"candidate": ""})
    assert [c["value"] for c in choices] == [cid]
    ix = await world.standin.invoke(world.alice, "post", subcommand="resolve", channel=world.general,
                                    options={"candidate": cid, "outcome": "requeue"})
    await ix.wait_for_response()
    assert "back in the queue" in ix.response["content"]
    assert (await bot.services.store.get_candidate(cid))["state"] == "approved"
    ix = await world.standin.invoke(world.alice, "post", subcommand="now", channel=world.general,
                                    options={"persona": "dril"})
    response = await ix.wait_for_response(timeout=10)
    assert "duplicate" in response["content"]
    assert list(fake_x.tweets.values()) == [TEXT] and len(fake_x.requests_to("/2/tweets")) == 2
    assert (await bot.services.store.get_candidate(cid))["state"] == "posted"


async def test_a_crash_found_at_bot_start_and_resolved_as_posted(world, data_dir, bot_handle):
    store = await Store.open(data_dir / "parodybot.sqlite3")
    await store.create_persona(world.guild.id, "dril", log_channel_id=world.log.id,
                               targets=[{"platform": "outbox"}, {"platform": "x", "credentials": "NONE_SET"}])
    cid = await store.add_candidate(persona_key(world.guild.id, "dril"), None, "half done", {}, "2099-01-01T00:00:00.000000Z",
                                    created_at="2026-01-01T00:00:00.000000Z")
    # What a run killed mid-way leaves: claimed, the outbox answer recorded, X's not.
    await store.update_candidate(cid, state="posting")
    await store.execute("INSERT INTO posts(candidate_id, platform, state, remote_id, url, posted_at) "
                        "VALUES (?, 'outbox', 'posted', 'abc', 'outbox://abc', '2026-01-01T00:00:00.000000Z')", (cid,))
    await store.execute("INSERT INTO posts(candidate_id, platform, state) VALUES (?, 'x', 'sending')", (cid,))
    await store.close()

    bot = await bot_handle.start(config_for(world))
    line = await world.standin.wait_for_message(world.log, lambda m: "interrupted" in (m["content"] or ""), timeout=10)
    assert "sending it to x" in line["content"]
    cand = await bot.services.store.get_candidate(cid)
    assert cand["state"] == "failed"
    assert {p["platform"]: p["state"] for p in await bot.services.store.posts_for(cid)} == {"outbox": "posted", "x": "unknown"}

    ix = await world.standin.invoke(world.alice, "post", subcommand="resolve", channel=world.general,
                                    options={"candidate": cid, "outcome": "posted"})
    await ix.wait_for_response()
    assert "marked posted" in ix.response["content"]
    assert (await bot.services.store.get_candidate(cid))["state"] == "posted"
    assert {p["platform"]: p["state"] for p in await bot.services.store.posts_for(cid)} == {"outbox": "posted", "x": "posted"}
    # Resolving again is refused, ephemerally, saying why.
    ix = await world.standin.invoke(world.alice, "post", subcommand="resolve", channel=world.general,
                                    options={"candidate": cid, "outcome": "posted"})
    await ix.wait_for_response()
    assert ix.ephemeral and "only a candidate whose posting was interrupted" in ix.response["content"]


async def test_a_run_in_another_process_is_not_mistaken_for_a_crash(tmp_path):
    """While one run holds the persona's lock, another finds it busy and leaves its candidate alone."""
    store = await Store.open(tmp_path / "data" / "parodybot.sqlite3")
    try:
        await store.create_persona(0, "dril", targets=[{"platform": "outbox"}])
        service = PostingService(store, Config(), data_dir=tmp_path / "data")
        other = PostingService(store, Config(), data_dir=tmp_path / "data")  # another process's service
        async with other.run_lock("dril") as held:
            assert held
            report = await service.run("dril")
            assert report.outcome == "busy"
        with pytest.raises(contract.BadInput):
            await service.resolve(12345, "posted")
    finally:
        await store.close()
