"""What the real Discord enforces and renders: message and embed limits,
Markdown and mentions (issue 12)."""
from __future__ import annotations

import re

from cogs.render import fit_embed, fit_lines
from conftest import CannedWorker, trained
from core.contract import persona_key

import discord


def candidate_messages(world):
    return [m for m in world.standin.messages(world.curation)
            if m.get("embeds") and "candidate #" in ((m["embeds"][0].get("author") or {}).get("name") or "")]


def unrendered(text: str) -> str:
    """What Discord shows for escaped text: a backslash before punctuation is dropped,
    the zero-width space is invisible."""
    return re.sub(r"\\([^0-9A-Za-z\s])", r"\1", text).replace("\u200b", "")


async def test_a_hostile_candidate_shows_as_plain_text_and_pings_nobody(world, bot):
    hostile = (f"@everyone look <@&{world.voter_role.id}> <@{world.bob.id}> "
               "[free money](https://evil.example) ||spoiler|| **bold** # not a header")
    store = bot.services.store
    await trained(store, await store.create_persona(world.guild.id, "dril", curation_channel_id=world.curation.id,
                                                    log_channel_id=world.log.id))
    worker = CannedWorker(bot.cfg, [hostile])
    ix = await world.standin.invoke(world.alice, "generate", channel=world.general, options={"persona": "dril", "count": 1})
    await ix.wait_for_response(timeout=5)
    await worker.run_one()
    (msg,) = await world.standin.wait_for(lambda: candidate_messages(world), timeout=30, what="the candidate")
    description = msg["embeds"][0]["description"]
    # Every piece of Markdown or mention syntax is escaped ...
    for raw in ("@everyone", f"<@&{world.voter_role.id}>", f"<@{world.bob.id}>", "[free money](", "||", "**"):
        assert raw not in description, raw
    # ... so what a voter reads is, character for character, what would be posted.
    assert unrendered(description) == hostile
    assert world.standin.pings(msg["id"]) == {"users": [], "roles": [], "everyone": False}

    # Posted to the log channel and the outbox as it is; the log line pings nobody either.
    cand = (await bot.services.store.approved_queue(persona_key(world.guild.id, "dril"))) or \
        (await bot.services.store.candidates(persona=persona_key(world.guild.id, "dril")))
    await bot.services.store.update_candidate(cand[0]["id"], state="approved", score=3)
    ix = await world.standin.invoke(world.alice, "post", subcommand="now", channel=world.general,
                                    options={"persona": "dril"})
    await ix.wait_for_response(timeout=10)
    line = await world.standin.wait_for_message(world.log, lambda m: "posted #" in (m["content"] or ""), timeout=5)
    assert world.standin.pings(line["id"]) == {"users": [], "roles": [], "everyone": False}
    assert world.standin.pings(ix.response["id"]) == {"users": [], "roles": [], "everyone": False}


async def test_echoed_input_is_quoted_and_pings_nobody(world, bot):
    ix = await world.standin.invoke(world.alice, "persona", subcommand="configure", channel=world.general,
                                    options={"name": "nobody"})
    await ix.wait_for_response(timeout=5)
    await bot.services.store.create_persona(world.guild.id, "dril")
    ix = await world.standin.invoke(world.alice, "persona", subcommand="configure", channel=world.general,
                                    options={"name": "dril", "targets": "@everyone:[x](https://evil.example)"})
    await ix.wait_for_response(timeout=5)
    text = ix.response["content"]
    assert ix.ephemeral and "unknown platform `@everyone` in targets" in text
    assert world.standin.pings(ix.response["id"])["everyone"] is False


async def test_queue_show_with_250_long_entries_stays_within_discords_limit(world, bot):
    # More than /queue show reads (200): the rest are counted all the same.
    name = "a_persona_with_a_name_of_32_char"
    assert len(name) == 32
    dril = await bot.services.store.create_persona(world.guild.id, name)
    for i in range(250):
        cid = await bot.services.store.add_candidate(dril["key"], None, f"entry {i} " + "very long words " * 30, {},
                                                    "2099-01-01T00:00:00.000000Z",
                                                    created_at="2026-01-01T00:00:00.000000Z")
        await bot.services.store.update_candidate(cid, state="approved", score=250 - i)
    ix = await world.standin.invoke(world.alice, "queue", subcommand="show", channel=world.general,
                                    options={"persona": name})
    response = await ix.wait_for_response(timeout=5)  # not "the application did not respond"
    text = response["content"]
    assert len(text) <= 2000 and ix.errors == []
    assert text.startswith(f"**{name}**: 250 approved, next first")
    assert "1. #1 (+250)" in text
    shown = len(re.findall(r"^\d+\. #", text, re.M))
    assert text.splitlines()[-1] == f"… and {250 - shown} more: `/queue remove` or posting makes room"


def test_fit_helpers_keep_every_limit():
    lines = [f"line {i} " + "x" * 300 for i in range(100)]
    out = fit_lines(lines)
    assert len(out) <= 2000 and out.endswith("more")
    assert fit_lines(["a", "b"]) == "a\nb"  # nothing cut: nothing said
    embed = discord.Embed(title="t" * 300, description="d" * 5000)
    embed.set_author(name="a" * 300)
    embed.set_footer(text="f" * 3000)
    for i in range(30):
        embed.add_field(name="n" * 300, value="v" * 2000)
    fit_embed(embed)
    assert len(embed.title) <= 256 and len(embed.description) <= 4096 and len(embed.author.name) <= 256
    assert len(embed.fields) <= 25 and all(len(f.name) <= 256 and len(f.value) <= 1024 for f in embed.fields)
    assert len(embed) <= 6000 and embed.title.endswith("…")


async def test_50_candidates_under_discords_rate_limits_while_another_jobs_progress_updates(world, bot):
    """Posting 50 pre-reacted candidates takes Discord about a minute (5 messages per
    5 s, a reaction per 0.25 s, per channel). Meanwhile another job's progress
    message, in another channel, keeps moving: delivery runs beside the tracker."""
    from core import taskqueue

    store = bot.services.store
    await trained(store, await store.create_persona(world.guild.id, "dril", curation_channel_id=world.curation.id))
    worker = CannedWorker(bot.cfg, [f"candidate number {i}" for i in range(50)])
    ix = await world.standin.invoke(world.alice, "generate", channel=world.general, options={"persona": "dril", "count": 50})
    await ix.wait_for_response(timeout=5)
    await worker.run_one()
    await world.standin.wait_for(lambda: candidate_messages(world), timeout=30, what="the first candidate")

    # Another job: queued, its progress written as a worker writes it.
    train = await world.standin.invoke(world.alice, "train", channel=world.log, options={"handle": "weirdal"})
    await train.wait_for_response(timeout=5)
    job = next(j for j in await bot.services.store.list_jobs() if j["kind"] == "train")
    seen_while_delivering = []
    for step in (10, 20, 30):
        taskqueue.put_progress(bot.services.queue, job["queue_id"],
                              {"state": "running", "kind": "train", "phase": "finetuning", "step": step, "steps": 100,
                               "loss": 2.0, "avg_loss": 2.0, "eta": 60})
        await world.standin.wait_for(lambda: f"step {step}/100" in world.standin.message(train.response["id"])["content"],
                                     timeout=10, what=f"the progress message to show step {step}")
        seen_while_delivering.append(len(candidate_messages(world)))
    # Sending 50 takes at least 45 s under the limit; each progress edit above came while it went on.
    assert all(n < 50 for n in seen_while_delivering), seen_while_delivering

    msgs = await world.standin.wait_for(
        lambda: (m := candidate_messages(world)) and len(m) == 50
        and all(sum(r["me"] for r in x["reactions"]) == 2 for x in m) and m,
        timeout=120, what="50 candidates, pre-reacted")
    assert len({x["embeds"][0]["description"] for x in msgs}) == 50
    # discord.py paced itself by the headers: whatever 429s it met, it waited and nothing was lost.
    assert world.standin.internal_errors == []
