"""Curation as members live it: candidates in the channel, votes by reaction, restarts.

The GPU is swapped for canned texts (CannedWorker: the worker's real task
plumbing and the real queue, with generation returning fixed candidates), so
these tests are about Discord and the vote rules, not about TensorFlow.
"""
from __future__ import annotations

import asyncio
import random
import sqlite3
import threading

from core import taskqueue
import conftest
from conftest import config_for
from discord_standin import Perm
from workers.tasks import Tasks

TEXTS = [
    "i am the only person on earth who knows what a spoon is",
    "my cat filed a complaint about me with the landlord",
    "just found out bees are flies that went to college",
    "wore two hats to the funeral to show i was twice as sad",
]


class CannedWorker(conftest.CannedWorker):
    def __init__(self, cfg, texts=TEXTS):
        super().__init__(cfg, texts, dropped={"unfinished": 2, "too_long": 1})


def fields(msg: dict) -> dict:
    return {f["name"]: f["value"] for f in msg["embeds"][0]["fields"]}


async def make_persona(bot, world, **rules):
    store = bot.services.store
    await conftest.trained(store, await store.create_persona(world.guild.id, "dril", curation_channel_id=world.curation.id,
                                                            rules=rules))


async def generate(world, bot, count=4):
    worker = CannedWorker(bot.cfg)
    ix = await world.standin.invoke(world.alice, "generate", channel=world.general, options={"persona": "dril", "count": count})
    await ix.wait_for_response(timeout=5)
    await worker.run_one()
    return await world.standin.wait_for(lambda: candidate_messages(world, count), timeout=30, what="candidate messages")


def candidate_messages(world, count):
    """The candidates once all `count` are posted and pre-reacted."""
    msgs = [m for m in world.standin.messages(world.curation) if m.get("embeds")]
    if len(msgs) == count and all(sum(r["me"] for r in m["reactions"]) == 2 for m in msgs):
        return msgs
    return None


async def wait_score(bot, message_id, score, timeout=5):
    for _ in range(int(timeout / 0.05)):
        row = await bot.services.store.fetchone("SELECT score FROM candidates WHERE message_id = ?", (int(message_id),))
        if row and row[0] == score:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"score never reached {score} (it is {row and row[0]})")


async def wait_state(world, msg_id, word, timeout=5):
    return await world.standin.wait_for(
        lambda: word in fields(world.standin.message(msg_id))["State"], timeout=timeout, what=f"state {word}")


async def test_generate_posts_candidates_and_votes_decide(world, bot):
    await make_persona(bot, world)
    msgs = await generate(world, bot)
    assert [m["embeds"][0]["description"] for m in msgs] == TEXTS
    for m in msgs:
        reactions = {r["emoji"]: r for r in m["reactions"] if r["me"]}
        assert set(reactions) == {"👍", "👎"}  # pre-reacted by the bot
        assert "voting" in fields(m)["State"]
    # The generate job's message says what happened.
    job_msg = await world.standin.wait_for(
        lambda: "done" in world.standin.messages(world.general)[-1]["content"] and world.standin.messages(world.general)[-1],
        timeout=5, what="the job's final message")
    assert "4 candidate(s)" in job_msg["content"] and "unfinished 2" in job_msg["content"]

    first, second = int(msgs[0]["id"]), int(msgs[1]["id"])
    for member in (world.bob, world.carol):
        await world.standin.react(member, world.curation, first, "👍")
    await asyncio.sleep(0.3)
    assert "voting" in fields(world.standin.message(first))["State"]  # net 2 < 3
    await world.standin.react(world.dave, world.curation, first, "👍")
    await wait_state(world, first, "approved")
    assert "#1 in the posting queue" in fields(world.standin.message(first))["State"]

    await world.standin.react(world.bob, world.curation, second, "👎")
    await world.standin.react(world.carol, world.curation, second, "👎")
    await wait_state(world, second, "rejected")
    states = {r[0]: r[1] for r in await bot.services.store.fetchall("SELECT message_id, state FROM candidates")}
    assert states[first] == "approved" and states[second] == "rejected"


async def test_one_net_vote_per_member_and_bots_never_count(world, bot):
    await make_persona(bot, world)
    msgs = await generate(world, bot, count=1)
    mid = msgs[0]["id"]
    # bob reacts both ways: his net vote is 0; the other bot's thumbs up never counts.
    await world.standin.react(world.bob, world.curation, mid, "👍")
    await world.standin.react(world.bob, world.curation, mid, "👎")
    await world.standin.react(world.helper_bot, world.curation, mid, "👍")
    await world.standin.react(world.carol, world.curation, mid, "👍")
    await wait_score(bot, mid, 1)
    await world.standin.unreact(world.bob, world.curation, mid, "👎")
    await wait_score(bot, mid, 2)
    votes = {r[0]: r[1] for r in await bot.services.store.fetchall("SELECT member_id, value FROM votes")}
    assert votes == {world.bob.user.id: 1, world.carol.user.id: 1}


async def test_voter_role_and_curator_approval(world, bot):
    await make_persona(bot, world, voter_role_id=world.voter_role.id)
    moderator_role = world.standin.add_role(world.guild, "mods", permissions=Perm.MANAGE_MESSAGES)
    mod = world.standin.add_member(world.guild, "mod", roles=[moderator_role])
    msgs = await generate(world, bot, count=2)
    a, b = msgs[0]["id"], msgs[1]["id"]
    # erin has no voter role: her votes do not count; the voters' do.
    await world.standin.react(world.erin, world.curation, a, "👍")
    for member in (world.bob, world.carol):
        await world.standin.react(member, world.curation, a, "👍")
    await asyncio.sleep(0.5)
    assert "voting" in fields(world.standin.message(a))["State"]
    await world.standin.react(world.dave, world.curation, a, "👍")
    await wait_state(world, a, "approved")
    # ✅ from someone without Manage Messages does nothing; from a moderator it approves at once.
    await world.standin.react(world.erin, world.curation, b, "✅")
    await asyncio.sleep(0.5)
    assert "voting" in fields(world.standin.message(b))["State"]
    await world.standin.react(mod, world.curation, b, "✅")
    await wait_state(world, b, "approved")


async def test_votes_while_the_bot_is_down_count_after_restart(world, bot_handle):
    bot = await bot_handle.start()
    await make_persona(bot, world)
    msgs = await generate(world, bot, count=3)
    a, b, c = (int(m["id"]) for m in msgs)
    await world.standin.react(world.bob, world.curation, a, "👍")
    await wait_score(bot, a, 1)
    await bot_handle.stop()
    assert not world.standin.bot_connected

    # While the bot is down: a reaches 3, b gets two thumbs down, c gets one vote added then removed.
    for member in (world.carol, world.dave):
        await world.standin.react(member, world.curation, a, "👍")
    for member in (world.bob, world.carol):
        await world.standin.react(member, world.curation, b, "👎")
    await world.standin.react(world.dave, world.curation, c, "👍")
    await world.standin.unreact(world.dave, world.curation, c, "👍")

    bot = await bot_handle.start()
    await wait_state(world, a, "approved")
    await wait_state(world, b, "rejected")
    rows = {r[0]: (r[1], r[2]) for r in await bot.services.store.fetchall("SELECT message_id, state, score FROM candidates")}
    assert rows == {a: ("approved", 3), b: ("rejected", -2), c: ("voting", 0)}


async def test_queue_places_follow_a_decision_made_while_they_are_being_redrawn(world, bot):
    """Redrawing the queue's places waits on Discord (5 edits per 5 s per channel). A
    candidate approved meanwhile moves the others down; they must show that too."""
    await make_persona(bot, world)
    frank = world.standin.add_member(world.guild, "frank", roles=[world.voter_role])
    older, first, second = (int(m["id"]) for m in (await generate(world, bot, count=3)))
    for mid in (first, second):
        for member in (world.bob, world.carol, world.dave):
            await world.standin.react(member, world.curation, mid, "👍")
    await world.standin.wait_for(lambda: "#2 in the posting queue" in fields(world.standin.message(second))["State"],
                                 timeout=30, what="the second approved candidate at #2")

    # A fourth vote for the first moves its net: the pass that redraws it is held at Discord...
    held = world.standin.hold("PATCH", rf"/channels/{world.curation.id}/messages/{first}")
    await world.standin.react(frank, world.curation, first, "👍")
    await asyncio.wait_for(held.arrived.wait(), 30)
    # ... while the oldest candidate is approved at 3: ahead of the second (same net, older).
    for member in (world.bob, world.carol, world.dave):
        await world.standin.react(member, world.curation, older, "👍")
    await wait_state(world, older, "#2 in the posting queue", timeout=30)
    # Release only once the bot is past redrawing the oldest (its lock is free again, and
    # it has said the queue moved): this orders the race, it times nothing.
    curation = bot.get_cog("Curation")
    (older_id,) = await bot.services.store.fetchone("SELECT id FROM candidates WHERE message_id = ?", (older,))
    await world.standin.wait_for(lambda: older_id in curation._shown and not curation._edit_locks[older_id].locked(),
                                 timeout=30, what="the bot to finish redrawing the oldest candidate")
    held.release()

    await world.standin.wait_for(lambda: "#3 in the posting queue" in fields(world.standin.message(second))["State"],
                                 timeout=30, what="the second approved candidate moved to #3")
    assert "(net +4): #1 in the posting queue" in fields(world.standin.message(first))["State"]


async def test_burst_of_reactions_ends_with_exact_tallies(world, bot):
    # High thresholds keep every candidate voting, so only the tallies are under test.
    await make_persona(bot, world, approve_at=1000, reject_at=-1000)
    members = [world.standin.add_member(world.guild, f"member{i}") for i in range(20)]
    texts = [f"candidate number {i}" for i in range(50)]
    worker = CannedWorker(bot.cfg, texts)
    ix = await world.standin.invoke(world.alice, "generate", channel=world.general, options={"persona": "dril", "count": 50})
    await ix.wait_for_response(timeout=5)
    await worker.run_one()
    msgs = await world.standin.wait_for(lambda: candidate_messages(world, 50), timeout=60, what="50 candidates")
    rng = random.Random(7)
    held: dict[tuple[int, int], set] = {}
    for _ in range(1000):
        msg = int(rng.choice(msgs)["id"])
        member = rng.choice(members)
        emoji = rng.choice(["👍", "👎"])
        key = (msg, member.user.id)
        if emoji in held.get(key, set()) and rng.random() < 0.6:
            await world.standin.unreact(member, world.curation, msg, emoji)
            held[key].discard(emoji)
        else:
            await world.standin.react(member, world.curation, msg, emoji)
            held.setdefault(key, set()).add(emoji)
    expected = {int(m["id"]): 0 for m in msgs}
    for (msg, _), emojis in held.items():
        expected[msg] += ("👍" in emojis) - ("👎" in emojis)

    async def scores():
        return {r[0]: r[1] for r in await bot.services.store.fetchall("SELECT message_id, score FROM candidates")}

    for _ in range(100):
        if await scores() == expected:
            break
        await asyncio.sleep(0.1)
    assert await scores() == expected


async def test_unauthorised_member_is_refused_and_nothing_is_queued(world, bot):
    ix = await world.standin.invoke(world.erin, "train", channel=world.general, options={"handle": "dril"})
    await ix.wait_for_response(timeout=5)
    assert ix.ephemeral
    assert "parodybot-operator" in ix.response["content"]
    assert await bot.services.store.list_jobs() == []
    assert await asyncio.to_thread(len, bot.services.queue) == 0


async def test_bad_input_gets_an_ephemeral_message_that_says_what_to_do(world, bot):
    ix = await world.standin.invoke(world.alice, "generate", channel=world.general, options={"persona": "nobody"})
    await ix.wait_for_response(timeout=5)
    assert ix.ephemeral and "/persona list" in ix.response["content"]
    ix = await world.standin.invoke(world.alice, "train", channel=world.general,
                                    options={"handle": "dril", "persona": "Bad Name!"})
    await ix.wait_for_response(timeout=5)
    assert ix.ephemeral and "a-z, 0-9 and _" in ix.response["content"]
    ix = await world.standin.invoke(world.alice, "train", channel=world.general,
                                    options={"file": ("notes.txt", b"hello", "text/plain")})
    await ix.wait_for_response(timeout=5)
    assert ix.ephemeral and ".csv" in ix.response["content"]


async def test_persona_autocomplete(world, bot):
    await bot.services.store.create_persona(world.guild.id, "dril")
    await bot.services.store.create_persona(world.guild.id, "drilbert")
    await bot.services.store.create_persona(world.guild.id, "weirdal")
    choices = await world.standin.autocomplete(world.alice, "generate", channel=world.general, focused="persona",
                                               options={"persona": "dri"})
    assert [c["value"] for c in choices] == ["dril", "drilbert"]


async def test_a_busy_queue_never_makes_a_command_miss_its_acknowledgement(world, bot):
    """A worker holding the queue's database (a slow or busy worker) must not delay the ack."""
    await make_persona(bot, world)
    path = bot.cfg.queue_url[len("sqlite:///"):]
    locked, release = threading.Event(), threading.Event()

    def hold_lock():
        conn = sqlite3.connect(path)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(3.5)
        conn.rollback()
        conn.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    locked.wait(5)
    ix = await world.standin.invoke(world.alice, "generate", channel=world.general, options={"persona": "dril"})
    await ix.wait_for_response(timeout=8)
    holder.join()
    assert ix.acknowledged and ix.error is None
    job = await world.standin.wait_for(lambda: "queued" in (world.standin.message(ix.response["id"])["content"] or ""),
                                       timeout=10, what="queued message")
    assert job
    assert [j["kind"] for j in await bot.services.store.list_jobs()] == ["generate", "train"]  # queued once


async def test_attachments_only_from_discord_hosts_and_within_the_size_limit(world, bot_handle):
    bot = await bot_handle.start(config_for(world, discord={"max_attachment_mb": 0.01}))
    csv_bytes = b"tweets\n" + b"a post that is long enough\n" * 10
    elsewhere = {"filename": "posts.csv", "data": csv_bytes, "url": "http://198.51.100.7/posts.csv"}
    ix = await world.standin.invoke(world.alice, "train", channel=world.general, options={"file": elsewhere})
    await ix.wait_for_response(timeout=5)
    assert ix.ephemeral and "only fetched from Discord's attachment hosts" in ix.response["content"]

    big = ("posts.csv", b"tweets\n" + b"x" * 20_000, "text/csv")
    ix = await world.standin.invoke(world.alice, "train", channel=world.general, options={"file": big})
    await ix.wait_for_response(timeout=5)
    assert ix.ephemeral and "the limit is 0.01 MB" in ix.response["content"]
    assert await bot.services.store.list_jobs() == []


async def test_denylisted_handles_are_never_trained_on(world, bot_handle):
    bot = await bot_handle.start(config_for(world, training={"denylist": ["someone_private"]}))
    ix = await world.standin.invoke(world.alice, "train", channel=world.general, options={"handle": "@Someone_Private"})
    await ix.wait_for_response(timeout=5)
    assert ix.ephemeral and "do-not-train list" in ix.response["content"]
    assert await bot.services.store.list_jobs() == []


async def test_a_failed_job_never_shows_a_secret(world, bot, monkeypatch):
    monkeypatch.setenv("DRIL_X_ACCESS_TOKEN", "sekrit-token-value-123")
    await make_persona(bot, world)
    tasks = Tasks(bot.cfg)

    def broken(payload, task_id, progress):
        raise RuntimeError("upstream said: bad token sekrit-token-value-123")

    tasks.generate = broken
    huey = taskqueue.open_queue(bot.cfg.queue_url, tasks.handlers())
    tasks.huey = huey
    ix = await world.standin.invoke(world.alice, "generate", channel=world.general, options={"persona": "dril"})
    await ix.wait_for_response(timeout=5)
    task = await asyncio.to_thread(huey.dequeue)
    await asyncio.to_thread(huey.execute, task)
    final = await world.standin.wait_for(
        lambda: (m := world.standin.message(ix.response["id"])) and "failed:" in m["content"] and m, timeout=10)
    assert "[redacted]" in final["content"] and "sekrit" not in final["content"]


async def test_stopping_the_bot_while_a_decision_edit_waits_on_discord_logs_no_error(world, bot_handle, caplog):
    """A candidate is approved and its message edit is still in flight when the bot
    stops: the edit is dropped quietly (the next start redraws it), not left to fail
    on discord.py's closed session as an error in the operator's log."""
    import gc
    import logging

    bot = await bot_handle.start()
    await make_persona(bot, world)
    (first, *_) = (int(m["id"]) for m in await generate(world, bot, count=2))
    held = world.standin.hold("PATCH", rf"/channels/{world.curation.id}/messages/{first}")
    for member in (world.bob, world.carol, world.dave):
        await world.standin.react(member, world.curation, first, "👍")
    await asyncio.wait_for(held.arrived.wait(), 30)  # the decision's edit is at Discord

    with caplog.at_level(logging.WARNING):
        await bot_handle.stop()
        held.release()
        await asyncio.sleep(0)  # let the released request finish
        gc.collect()  # a failed task nobody awaited is reported when it is collected
    # (aiohttp.server is the stand-in, Discord's side, seeing the client go)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name != "aiohttp.server"]
    assert errors == []
    row = sqlite3.connect(bot_handle.cfg.db_path).execute(
        "SELECT state FROM candidates WHERE message_id = ?", (first,)).fetchone()
    assert row == ("approved",)  # the vote itself was kept
