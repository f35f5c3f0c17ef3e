"""/persona, /jobs and /stats as members use them."""
from __future__ import annotations

from core import contract


def embed_fields(response: dict) -> dict:
    return {f["name"]: f["value"] for f in response["embeds"][0]["fields"]}


async def run(world, who, command, subcommand=None, **options):
    ix = await world.standin.invoke(who, command, channel=world.general, subcommand=subcommand, options=options)
    await ix.wait_for_response(timeout=5)
    return ix


async def test_persona_lifecycle(world, bot):
    ix = await run(world, world.alice, "persona", "create", name="dril", handle="dril", curation_channel=world.curation)
    assert "Created **dril**" in ix.response["content"]
    assert embed_fields(ix.response)["Curation channel"] == f"<#{world.curation.id}>"

    ix = await run(world, world.alice, "persona", "configure", name="dril", approve_at=2, window_hours=6.0,
                   voter_role=world.voter_role, log_channel=world.log,
                   targets="x:DRIL_X, mastodon:DRIL_MASTO@https://mastodon.example, outbox")
    shown = embed_fields(ix.response)
    assert "approve at net ≥ 2" in shown["Vote rules"] and "window 6 h" in shown["Vote rules"]
    assert f"<@&{world.voter_role.id}>" in shown["Vote rules"]
    assert shown["Targets"] == "x (DRIL_X), mastodon (DRIL_MASTO), outbox"
    persona = await bot.services.store.get_persona(contract.persona_key(world.guild.id, "dril"))
    assert persona["targets"][1] == {"platform": "mastodon", "credentials": "DRIL_MASTO", "base_url": "https://mastodon.example"}

    ix = await run(world, world.bob, "persona", "list")
    assert ix.ephemeral and "**dril** · active" in ix.response["content"]

    # Deleting needs a confirmation, then it is gone.
    ix = await run(world, world.alice, "persona", "delete", name="dril")
    assert ix.ephemeral and "confirm" in ix.response["content"]
    ix = await run(world, world.alice, "persona", "delete", name="dril", confirm=True)
    assert await bot.services.store.get_persona(contract.persona_key(world.guild.id, "dril")) is None


async def test_persona_bad_input_is_ephemeral_and_says_what_to_do(world, bot):
    ix = await run(world, world.alice, "persona", "create", name="Not Valid")
    assert ix.ephemeral and "a-z, 0-9 and _" in ix.response["content"]
    await run(world, world.alice, "persona", "create", name="dril")
    ix = await run(world, world.alice, "persona", "configure", name="dril", targets="myspace:TOM")
    assert ix.ephemeral and "unknown platform `myspace`" in ix.response["content"]
    ix = await run(world, world.alice, "persona", "configure", name="dril", targets="x")
    assert ix.ephemeral and "x:DRIL_X" in ix.response["content"]
    ix = await run(world, world.bob, "persona", "configure", name="dril", approve_at=1)
    assert ix.ephemeral and "parodybot-operator" in ix.response["content"]
    assert (await bot.services.store.get_persona(contract.persona_key(world.guild.id, "dril")))["rules"] == {}


async def test_jobs_and_cancel_of_a_queued_job(world, bot):
    ix = await run(world, world.alice, "jobs")
    assert "No jobs yet" in ix.response["content"]
    await bot.services.store.create_persona(world.guild.id, "dril")
    await run(world, world.alice, "generate", persona="dril", count=3)
    ix = await run(world, world.alice, "jobs")
    assert "**#1** generate dril · queued" in ix.response["content"]
    ix = await run(world, world.alice, "cancel", job=1)
    assert "Job #1: cancelled" in ix.response["content"]
    assert (await bot.services.store.get_job(1))["state"] == contract.CANCELLED
    ix = await run(world, world.alice, "cancel", job=1)
    assert ix.ephemeral and "already ended" in ix.response["content"]


async def test_stats(world, bot):
    await bot.services.store.create_persona(world.guild.id, "dril")
    for text, state, score in (("a", "approved", 3), ("b", "rejected", -2), ("c", "voting", 1)):
        cid = await bot.services.store.add_candidate(contract.persona_key(world.guild.id, "dril"), None, text, {}, "2099-01-01T00:00:00Z", created_at="2026-01-01T00:00:00Z")
        await bot.services.store.update_candidate(cid, state=state, score=score)
    ix = await run(world, world.erin, "stats", persona="dril")
    shown = embed_fields(ix.response)
    assert "approved: 1" in shown["Candidates"] and "rejected: 1" in shown["Candidates"]
    assert "approval rate 50%" in shown["Votes"]
    assert shown["Best liked"].startswith("#1 (+3): a")
