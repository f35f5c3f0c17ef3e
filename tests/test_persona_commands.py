"""/persona, /jobs and /stats as members use them."""
from __future__ import annotations

from core import contract
from conftest import trained


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
    await trained(bot.services.store, await bot.services.store.create_persona(world.guild.id, "dril"))
    await run(world, world.alice, "generate", persona="dril", count=3)
    ix = await run(world, world.alice, "jobs")
    # The generate job, and the training that came before it.
    assert "**#2** generate dril · queued" in ix.response["content"]
    assert "**#1** train dril · done" in ix.response["content"]
    ix = await run(world, world.alice, "cancel", job=2)
    assert "Job #2: cancelled" in ix.response["content"]
    assert (await bot.services.store.get_job(2))["state"] == contract.CANCELLED
    ix = await run(world, world.alice, "cancel", job=2)
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


# --- failure paths (issue 16) -----------------------------------------------------------


async def test_deleting_a_persona_retires_its_candidate_messages(world, bot):
    from conftest import CannedWorker

    await trained(bot.services.store, await bot.services.store.create_persona(world.guild.id, "dril", curation_channel_id=world.curation.id))
    worker = CannedWorker(bot.cfg, ["first", "second"])
    await run(world, world.alice, "generate", persona="dril", count=2)
    await worker.run_one()
    key = contract.persona_key(world.guild.id, "dril")

    def delivered():
        cands = [m for m in world.standin.messages(world.curation) if m.get("embeds")]
        return cands if len(cands) == 2 and all(sum(r["me"] for r in m["reactions"]) == 2 for m in cands) else None

    msgs = await world.standin.wait_for(delivered, timeout=30, what="two candidates")
    first = (await bot.services.store.candidate_by_message(int(msgs[0]["id"])))["id"]
    await bot.services.store.update_candidate(first, state="approved", score=3)
    ix = await run(world, world.alice, "persona", "delete", name="dril", confirm=True)
    assert "Deleted **dril**" in ix.response["content"]

    def retired():
        states = [embed_fields(world.standin.message(m["id"]))["State"] for m in msgs]
        return states if all("retired: the persona **dril** was deleted" in s for s in states) else None

    states = await world.standin.wait_for(retired, timeout=15, what="both messages retired")
    assert not any("approve" in s or "queue" in s for s in states)
    assert await bot.services.store.candidates(persona=key) == []


async def test_a_finished_generate_job_of_a_deleted_persona_posts_nothing(world, bot):
    from conftest import CannedWorker

    await trained(bot.services.store, await bot.services.store.create_persona(world.guild.id, "dril", curation_channel_id=world.curation.id))
    worker = CannedWorker(bot.cfg, ["orphan"])
    ix = await run(world, world.alice, "generate", persona="dril", count=1)
    await run(world, world.alice, "persona", "delete", name="dril", confirm=True)
    await worker.run_one()
    job = await world.standin.wait_for(
        lambda: (m := world.standin.message(ix.response["id"])) and "done:" in m["content"] and m,
        timeout=15, what="the job's final message")
    assert "done:" in job["content"]
    await bot.services.scheduler.idle()
    channels = (world.general, world.curation, world.log)
    assert not [m for c in channels for m in world.standin.messages(c) if "orphan" in str(m.get("embeds"))]


async def test_a_second_training_of_a_persona_is_refused_with_the_running_job(world, bot):
    ix = await run(world, world.alice, "train", handle="dril", steps=5, model="tiny")
    assert "Job #1" in ix.response["content"]
    ix = await run(world, world.alice, "train", handle="dril", steps=5, model="tiny")
    assert ix.ephemeral and "**dril** is already training (job #1, queued)" in ix.response["content"]
    assert len(await bot.services.store.list_jobs()) == 1


async def test_generate_before_any_training_is_refused_privately_and_queues_nothing(world, bot):
    await bot.services.store.create_persona(world.guild.id, "dril", curation_channel_id=world.curation.id)
    ix = await run(world, world.alice, "generate", persona="dril", count=2)
    assert ix.ephemeral and "**dril** has no trained model yet: run `/train persona:dril`" in ix.response["content"]
    assert not [m for m in world.standin.messages(world.general) if not m["flags"] & 64]  # nothing public
    assert await bot.services.store.list_jobs() == []

    # While its first training waits or runs, it says so, and which job that is.
    await run(world, world.alice, "train", handle="dril", steps=5, model="tiny")
    ix = await run(world, world.alice, "generate", persona="dril", count=2)
    assert ix.ephemeral and "**dril** is still training (job #1, queued)" in ix.response["content"]
    assert [j["kind"] for j in await bot.services.store.list_jobs()] == ["train"]


async def test_inputs_that_could_only_go_wrong_are_refused_before_anything_is_made(world, bot):
    bot.cfg.training.denylist = ["realdril"]
    for options, words in [
        ({"handle": "🦀🦀"}, "makes no persona name"),
        ({"handle": "realdril@mastodon.social", "source": "mastodon"}, "do-not-train list"),
        ({"handle": "https://mastodon.social/@RealDril", "source": "mastodon"}, "do-not-train list"),
        ({"handle": "@realdril"}, "do-not-train list"),
    ]:
        ix = await run(world, world.alice, "train", **options)
        assert ix.ephemeral and words in ix.response["content"], (options, ix.response["content"])
    ix = await run(world, world.alice, "train", file=("empty.csv", b"", "text/csv"))
    assert ix.ephemeral and "empty.csv is empty" in ix.response["content"]
    await bot.services.store.create_persona(world.guild.id, "dril")
    ix = await run(world, world.alice, "persona", "configure", name="dril",
                   targets="mastodon:M@javascript:alert(1)")
    assert ix.ephemeral and "is not a web address" in ix.response["content"]
    assert [p["name"] for p in await bot.services.store.list_personas()] == ["dril"]
    assert await bot.services.store.list_jobs() == []


async def test_a_failed_first_import_leaves_no_persona_behind(world, bot):
    import io
    import zipfile

    from conftest import CannedWorker

    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("data/tweets.js", b"0" * (30 * 1024 * 1024))  # expands ~1000 times
    uploads = [
        ("picture.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "must be UTF-8"),
        ("latin1.csv", "tweets\ncaf\xe9 au lait\n".encode("latin-1"), "must be UTF-8"),
        ("header.csv", b"tweets\n", "no posts under it"),
        ("bomb.zip", bomb.getvalue(), "zip bomb"),
    ]
    worker = CannedWorker(bot.cfg, [])
    for i, (name, data, words) in enumerate(uploads):
        persona = f"upload{i}"
        ix = await run(world, world.alice, "train", persona=persona, file=(name, data, "application/octet-stream"))
        assert "queued" in ix.response["content"], ix.response["content"]
        await worker.run_one()
        final = await world.standin.wait_for(
            lambda: (m := world.standin.message(ix.response["id"])) and "not kept" in m["content"] and m,
            timeout=15, what=f"the failed import of {name}")
        assert words in final["content"] and f"The persona **{persona}** was not kept" in final["content"]
    assert await bot.services.store.list_personas() == []
    ix = await run(world, world.alice, "persona", "list")
    assert "No personas yet" in ix.response["content"]


async def test_a_failed_import_of_a_persona_that_exists_keeps_it(world, bot):
    from conftest import CannedWorker

    await bot.services.store.create_persona(world.guild.id, "keeper")
    worker = CannedWorker(bot.cfg, [])
    ix = await run(world, world.alice, "train", persona="keeper", file=("header.csv", b"tweets\n", "text/csv"))
    await worker.run_one()
    final = await world.standin.wait_for(
        lambda: (m := world.standin.message(ix.response["id"])) and "failed:" in m["content"] and m,
        timeout=15, what="the failed import")
    assert "not kept" not in final["content"]
    assert [p["name"] for p in await bot.services.store.list_personas()] == ["keeper"]


async def test_persona_defaults_are_shown_validated_and_reset(world, bot):
    await bot.services.store.create_persona(world.guild.id, "dril")
    ix = await run(world, world.alice, "persona", "defaults", name="dril", mentions="drop", prompt="my cat",
                   top_k=40, seed=7)
    fields = embed_fields(ix.response)
    assert "Updated **dril**'s defaults" in ix.response["content"]
    assert "prompt my cat" in fields["Defaults"] and "top_k 40" in fields["Defaults"] and "seed 7" in fields["Defaults"]
    assert fields["Mentions"] == "candidates with @mentions are dropped"
    # What a /generate then samples with: what it asks, else these defaults, else the config's.
    dril = await bot.services.personas.get(world.guild.id, "dril")
    options = bot.services.personas.generation_options(dril, top_k=5)
    assert options == {"prompt": "my cat", "top_k": 5, "seed": 7, "mentions": "drop",
                       "temperature": bot.cfg.generation.temperature, "top_p": bot.cfg.generation.top_p,
                       "length": bot.cfg.generation.length}
    ix = await run(world, world.alice, "persona", "defaults", name="dril", exclude="giveaway(")
    assert ix.ephemeral and "exclude `giveaway(` is not a regular expression" in ix.response["content"]
    ix = await run(world, world.alice, "persona", "defaults", name="dril", prompt="<|endoftext|>")
    assert ix.ephemeral and "prompt" in ix.response["content"] and "cannot be used" in ix.response["content"]
    ix = await run(world, world.alice, "persona", "show", name="dril")
    assert "prompt my cat" in embed_fields(ix.response)["Defaults"]  # the refused changes changed nothing
    ix = await run(world, world.alice, "persona", "defaults", name="dril", reset=True)
    fields = embed_fields(ix.response)
    assert fields["Defaults"] == "the config's" and fields["Mentions"] == "defused: posted so that no one is tagged"


async def test_generate_to_a_file_sends_the_samples_and_puts_nothing_up_for_a_vote(world, bot):
    from conftest import CannedWorker

    store = bot.services.store
    await trained(store, await store.create_persona(world.guild.id, "dril", curation_channel_id=world.curation.id))
    ix = await run(world, world.alice, "generate", persona="dril", count=300)
    assert ix.ephemeral and "at most 200 candidates go up for a vote at once" in ix.response["content"]
    assert "to_file: True" in ix.response["content"]

    texts = [f"sample number {i}" for i in range(300)]
    worker = CannedWorker(bot.cfg, texts)
    ix = await run(world, world.alice, "generate", persona="dril", count=300, to_file=True)
    await worker.run_one()
    final = await world.standin.wait_for(
        lambda: (m := world.standin.message(ix.response["id"])) and m["attachments"] and m, timeout=15,
        what="the job's message with the file")
    assert "done: 300 candidate(s) in the attached file (not put up for a vote)" in final["content"]
    (attachment,) = final["attachments"]
    body = world.standin.attachment_bytes(attachment["url"]).decode("utf-8")
    assert body.split("\n" + "=" * 20 + "\n")[:-1] == texts  # gpt-2-simple's generate_to_file format
    assert not [m for m in world.standin.messages(world.curation) if m.get("embeds")]
    assert await store.candidates(persona=(await store.find_persona(world.guild.id, "dril"))["key"]) == []


async def test_continuing_needs_a_trained_model_and_one_base_only(world, bot):
    await bot.services.store.create_persona(world.guild.id, "dril")
    ix = await run(world, world.alice, "train", persona="dril", more_steps=100)
    assert ix.ephemeral and "**dril** has no trained model to continue yet" in ix.response["content"]
    ix = await run(world, world.alice, "train", more_steps=100)
    assert ix.ephemeral and "name the persona to continue" in ix.response["content"]
    await trained(bot.services.store, await bot.services.store.create_persona(world.guild.id, "weirdal"))
    ix = await run(world, world.alice, "train", persona="dril", more_steps=100, start_from="weirdal")
    assert ix.ephemeral and "not both" in ix.response["content"]
    ix = await run(world, world.alice, "train", handle="drilbert", start_from="nobody")
    assert ix.ephemeral and "There is no persona **nobody** on this server" in ix.response["content"]
    # Nothing was queued: the one job is the finished training weirdal had before.
    assert [(j["kind"], j["state"]) for j in await bot.services.store.list_jobs()] == [("train", "done")]
