"""Hand curation as curators live it: /queue add, /queue import, /candidate edit
and /candidate export. Every hand-written text goes through the worker's real
generation filters (a "check" job on the real queue) against the persona's
real imported posts before it is taken."""
from __future__ import annotations

import asyncio
import csv
import io

from conftest import CannedWorker, trained
from workers.datasets import import_dataset

REAL_POSTS = ["i am the only person on earth who knows what a spoon is",
              "my cat filed a complaint about me with the landlord",
              "just found out bees are flies that went to college"]


def fields(msg: dict) -> dict:
    return {f["name"]: f["value"] for f in msg["embeds"][0]["fields"]}


async def dril(bot, world, tmp_path) -> dict:
    """dril, trained before, with its real posts imported on the worker."""
    store = bot.services.store
    persona = await trained(store, await store.create_persona(world.guild.id, "dril",
                                                              curation_channel_id=world.curation.id))
    posts = tmp_path / "posts.csv"
    posts.write_text("tweets\n" + "\n".join(REAL_POSTS) + "\n", encoding="utf-8")
    import_dataset(bot.cfg.worker_dir, persona["key"], "csv", file=posts)
    return persona


async def run(world, who, command, subcommand=None, **options):
    ix = await world.standin.invoke(who, command, channel=world.general, subcommand=subcommand, options=options)
    await ix.wait_for_response(timeout=5)
    return ix


async def checked(world, bot, ix) -> str:
    """Let the worker run the check job; the job message's final text."""
    await CannedWorker(bot.cfg, []).run_one()
    return (await world.standin.wait_for(
        lambda: (m := world.standin.message(ix.response["id"])) and m["content"].startswith(("✅", "⚠️")) and m["content"],
        timeout=15, what="the check job's message"))


async def stored(store, predicate, what: str, candidate_id: int = 1) -> dict:
    """The candidate once ``predicate`` holds for its stored row (the bot writes it soon after Discord)."""
    for _ in range(200):
        cand = await store.get_candidate(candidate_id)
        if predicate(cand):
            return cand
        await asyncio.sleep(0.05)
    raise AssertionError(f"never stored: {what} (it is {cand})")


def candidate_messages(world) -> list[dict]:
    return [m for m in world.standin.messages(world.curation) if m.get("embeds")]


async def test_queue_add_puts_a_hand_written_post_up_for_a_vote_and_refuses_a_real_one(world, bot, tmp_path):
    await dril(bot, world, tmp_path)
    ix = await run(world, world.alice, "queue", "add", persona="dril", text="bought a ladder to reach my potential")
    assert "📝 1 added for voting: #1" in await checked(world, bot, ix)
    (msg,) = await world.standin.wait_for(lambda: candidate_messages(world) or None, timeout=10, what="its message")
    assert msg["embeds"][0]["description"] == "bought a ladder to reach my potential"
    assert "voting" in fields(msg)["State"]

    ix = await run(world, world.alice, "queue", "add", persona="dril", text="I am the only person on Earth who knows what a spoon is!")
    content = await checked(world, bot, ix)
    assert "refused 1" in content and "a real post, word for word" in content
    assert len(await bot.services.store.candidates()) == 1

    # Approving at once is for curators; alice (an operator) is not one.
    ix = await run(world, world.alice, "queue", "add", persona="dril", text="another one", approve=True)
    assert ix.ephemeral and "Only curators" in ix.response["content"]
    boss = world.standin.add_member(world.guild, "boss", roles=[world.operator_role, world.curator_role])
    await bot.services.personas.configure(await bot.services.personas.get(world.guild.id, "dril"),
                                          rules={"curator_role_id": world.curator_role.id})
    ix = await run(world, boss, "queue", "add", persona="dril", text="wore a tie to the beach", approve=True)
    assert "added approved at once (in the posting queue)" in await checked(world, bot, ix)
    approved = await world.standin.wait_for(
        lambda: [m for m in candidate_messages(world) if m["embeds"][0]["description"] == "wore a tie to the beach"],
        timeout=10, what="the approved one's message")
    assert "approved" in fields(approved[0])["State"] and "#1 in the posting queue" in fields(approved[0])["State"]


async def test_queue_import_takes_a_curated_list_in_the_seeds_format(world, bot, tmp_path):
    await dril(bot, world, tmp_path)
    delim = "=" * 20 + "\n"
    body = ("the moon is the sun's night shift\n" + delim + "my cat filed a complaint about me with the landlord\n"
            + delim + "wore two hats to the funeral\n" + delim)
    ix = await world.standin.invoke(world.alice, "queue", subcommand="import", channel=world.general,
                                    options={"persona": "dril", "file": ("curated.txt", body.encode(), "text/plain")})
    await ix.wait_for_response(timeout=5)
    content = await checked(world, bot, ix)
    assert "📝 2 added for voting" in content and "refused 1" in content and "word for word" in content
    texts = await world.standin.wait_for(
        lambda: len(candidate_messages(world)) == 2 and [m["embeds"][0]["description"] for m in candidate_messages(world)],
        timeout=15, what="two candidate messages")
    assert texts == ["the moon is the sun's night shift", "wore two hats to the funeral"]

    ix = await world.standin.invoke(world.alice, "queue", subcommand="import", channel=world.general,
                                    options={"persona": "dril", "file": ("curated.txt", b"\n\n", "text/plain")})
    await ix.wait_for_response(timeout=5)
    assert ix.ephemeral and "curated.txt has no posts" in ix.response["content"]


async def test_candidate_edit_resets_the_vote_keeps_the_history_and_export_shows_it(world, bot, tmp_path):
    await dril(bot, world, tmp_path)
    ix = await run(world, world.alice, "queue", "add", persona="dril", text="bought a ladder")
    await checked(world, bot, ix)
    (old,) = await world.standin.wait_for(
        lambda: (ms := candidate_messages(world)) and all(sum(r["me"] for r in m["reactions"]) == 2 for m in ms) and ms,
        timeout=10, what="the candidate, pre-reacted")
    for member in (world.bob, world.carol):
        await world.standin.react(member, world.curation, old["id"], "👍")
    store = bot.services.store
    await stored(store, lambda c: c["score"] == 2, "the two votes")

    ix = await run(world, world.alice, "candidate", "edit", candidate=1, text="bought a ladder to improve my relationship with the ceiling")
    assert "candidate #1 has its new text; its vote starts again in a new message" in await checked(world, bot, ix)
    new = await world.standin.wait_for(
        lambda: (ms := [m for m in candidate_messages(world) if m["id"] != old["id"]]) and ms[0], timeout=10,
        what="the new message")
    assert new["embeds"][0]["description"] == "bought a ladder to improve my relationship with the ceiling"
    assert "voting" in fields(new)["State"]
    assert "edited" in fields(world.standin.message(old["id"]))["State"]
    cand = await stored(store, lambda c: c["message_id"] == int(new["id"]), "the new message's id")
    assert cand["score"] == 0 and cand["state"] == "voting"
    (edit,) = await bot.services.candidates.edits(1)
    assert edit["old_text"] == "bought a ladder" and edit["old_score"] == 2 and edit["edited_by"] == world.alice.user.id

    # A real post is refused as an edit too, and the candidate keeps its text.
    ix = await run(world, world.alice, "candidate", "edit", candidate=1, text=REAL_POSTS[1])
    assert "not changed" in await checked(world, bot, ix)
    assert (await store.get_candidate(1))["text"].endswith("ceiling")

    # Reactions on the old message no longer count: bob's 👎 there comes first, dave's 👍 on the
    # new one after it, and votes are applied in the order Discord sent them.
    await world.standin.react(world.bob, world.curation, old["id"], "👎")
    await world.standin.react(world.dave, world.curation, new["id"], "👍")
    await stored(store, lambda c: c["score"] == 1, "dave's vote alone")
    ix = await run(world, world.alice, "candidate", "export", persona="dril")
    assert ix.ephemeral
    (attachment,) = ix.response["attachments"]
    rows = list(csv.DictReader(io.StringIO(world.standin.attachment_bytes(attachment["url"]).decode("utf-8"))))
    assert [(r["id"], r["state"], r["score"], r["up"], r["down"], r["edits"], r["text"]) for r in rows] == \
        [("1", "voting", "1", "1", "0", "1", "bought a ladder to improve my relationship with the ceiling")]
