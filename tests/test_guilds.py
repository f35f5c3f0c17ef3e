"""Every persona belongs to one guild: nothing of one server is visible to, or
changeable from, another (issue 11). The bot is in two servers here, "Friends"
(world) and "Rivals"; each has an operator, and alice is in both."""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from importlib import resources

import pytest

from conftest import CannedWorker, WorkerProcess, config_for
from core import contract
from core.contract import persona_key

CORPUS = resources.files("core.data").joinpath("demo_corpus.csv").read_bytes()


@dataclass
class Rivals:
    guild: object
    general: object
    curation: object
    mallory: object  # Rivals' operator
    zed: object
    yan: object
    xia: object


def add_rivals(world) -> Rivals:
    s = world.standin
    guild = s.add_guild("Rivals")
    operator = s.add_role(guild, "parodybot-operator")
    rivals = Rivals(guild, s.add_channel(guild, "general"), s.add_channel(guild, "curation"),
                    s.add_member(guild, "mallory", roles=[operator]),
                    s.add_member(guild, "zed"), s.add_member(guild, "yan"), s.add_member(guild, "xia"))
    s.add_member(guild, world.alice)  # alice is in both servers, with no role in this one
    return rivals


def two_guild_config(world, rivals, **sections):
    return config_for(world, discord={"guild_ids": [world.guild.id, rivals.guild.id]}, **sections)


async def start(world, bot_handle, rivals, **sections):
    bot = await bot_handle.start(two_guild_config(world, rivals, **sections))
    await world.standin.wait_for_commands(["status"], guild=rivals.guild)
    return bot


async def answer(ix, timeout: float = 10.0) -> tuple[str, bool]:
    """What the member sees last, and whether only they see it: the response, or
    the followup after a deferred one. A public "thinking" message left behind
    fails the test."""
    msg = await ix.wait_for_response(timeout)
    if ix.followups:
        assert ix.original["deleted"], "a refusal after a public defer left a public message"
    ephemeral = ix.ephemeral
    text = msg["content"] or ""
    for embed in msg.get("embeds") or []:
        text += "\n" + (embed.get("title") or "") + "\n" + (embed.get("description") or "")
        text += "\n" + "\n".join(f"{f['name']}: {f['value']}" for f in embed.get("fields") or [])
    return text, ephemeral


async def run(world, who, channel, command, subcommand=None, **options):
    ix = await world.standin.invoke(who, command, channel=channel, subcommand=subcommand, options=options)
    return await answer(ix)


def not_found(text: str, ephemeral: bool) -> bool:
    return ephemeral and "There is no persona **dril** on this server" in text


async def friends_with_dril(bot, world):
    """Friends' persona dril with a candidate in each state that commands act on, and a queued job."""
    store = bot.services.store
    dril = await store.create_persona(world.guild.id, "dril", curation_channel_id=world.curation.id,
                                      log_channel_id=world.log.id)
    ids = {}
    for state in ("approved", "failed"):
        cid = await store.add_candidate(dril["key"], None, f"friends' {state} post", {}, "2099-01-01T00:00:00.000000Z",
                                        created_at="2026-01-01T00:00:00.000000Z")
        await store.update_candidate(cid, state=state, score=3)
        ids[state] = cid
    job = await bot.services.jobs.generate(dril, count=3, temperature=1.0, top_p=0.9, platforms=["x"], blocklist=[])
    return dril, ids, job


async def test_another_servers_operator_can_neither_see_nor_change_a_persona(world, bot_handle):
    rivals = add_rivals(world)
    bot = await start(world, bot_handle, rivals)
    dril, ids, job = await friends_with_dril(bot, world)
    before = await bot.services.store.get_persona(dril["key"])
    m, ch = rivals.mallory, rivals.general

    # Reading commands show nothing of Friends.
    for command, sub, opts in [("persona", "show", {"name": "dril"}), ("queue", "show", {"persona": "dril"}),
                               ("schedule", "show", {"persona": "dril"}), ("stats", None, {"persona": "dril"})]:
        text, eph = await run(world, m, ch, command, sub, **opts)
        assert not_found(text, eph), (command, sub, text)
    text, _ = await run(world, m, ch, "persona", "list")
    assert "dril" not in text and "No personas yet" in text
    text, _ = await run(world, m, ch, "jobs")
    assert f"#{job['id']}" not in text and "No jobs yet" in text
    text, _ = await run(world, m, ch, "stats")
    assert "voting: 0" in text and "approved: 0" in text and "failed: 0" in text and "friends'" not in text
    assert await world.standin.autocomplete(m, "persona", subcommand="show", focused="name", channel=ch,
                                            options={"name": "dr"}) == []
    assert await world.standin.autocomplete(m, "cancel", focused="job", channel=ch, options={"job": ""}) == []
    assert await world.standin.autocomplete(m, "post", subcommand="resolve", focused="candidate", channel=ch,
                                            options={"candidate": ""}) == []

    # Mutating commands are refused, privately, and change nothing.
    for command, sub, opts in [
        ("persona", "configure", {"name": "dril", "approve_at": 1}),
        ("persona", "delete", {"name": "dril", "confirm": True}),
        ("generate", None, {"persona": "dril", "count": 2}),
        ("post", "now", {"persona": "dril"}),
        ("queue", "remove", {"persona": "dril", "candidate": ids["approved"]}),
        ("queue", "top", {"persona": "dril", "candidate": ids["approved"]}),
        ("schedule", "set", {"persona": "dril", "interval_minutes": 5.0}),
        ("schedule", "pause", {"persona": "dril"}),
        ("schedule", "resume", {"persona": "dril"}),
    ]:
        text, eph = await run(world, m, ch, command, sub, **opts)
        assert not_found(text, eph), (command, sub, text)
    text, eph = await run(world, m, ch, "post", "resolve", candidate=ids["failed"], outcome="posted")
    assert eph and f"there is no candidate #{ids['failed']}" in text
    text, eph = await run(world, m, ch, "cancel", job=job["id"])
    assert eph and f"there is no job #{job['id']} on this server" in text

    assert await bot.services.store.get_persona(dril["key"]) == before
    assert (await bot.services.store.get_candidate(ids["approved"]))["state"] == "approved"
    assert (await bot.services.store.get_candidate(ids["failed"]))["state"] == "failed"
    assert (await bot.services.store.get_job(job["id"]))["state"] == "queued"
    assert len(await bot.services.store.list_jobs()) == 1  # /generate in Rivals queued nothing

    # Rivals' own persona named dril cannot reach Friends' candidates either.
    text, _ = await run(world, m, ch, "persona", "create", name="dril")
    assert "Created **dril**" in text
    text, eph = await run(world, m, ch, "queue", "remove", persona="dril", candidate=ids["approved"])
    assert eph and f"**dril** has no candidate #{ids['approved']}" in text
    assert (await bot.services.store.get_candidate(ids["approved"]))["state"] == "approved"
    assert await bot.services.store.get_persona(dril["key"]) == before

    # A member of both servers sees each server's own: alice, operator in Friends only.
    text, eph = await run(world, world.alice, rivals.general, "persona", "delete", name="dril", confirm=True)
    assert eph and "You need the **parodybot-operator** role" in text
    text, _ = await run(world, world.alice, world.general, "persona", "show", name="dril")
    assert f"<#{world.curation.id}>" in text  # Friends' dril, with Friends' curation channel


async def test_a_reaction_counts_only_in_the_candidates_own_server(world, bot_handle, data_dir):
    """The vote service ignores a reaction event that names another guild than the candidate's."""
    from bot.candidates import CandidateService, ReactionEvent
    from bot.voting import VoteRules

    rivals = add_rivals(world)
    bot = await start(world, bot_handle, rivals)
    store = bot.services.store
    dril = await store.create_persona(world.guild.id, "dril")
    cid = await store.add_candidate(dril["key"], None, "post", {}, "2099-01-01T00:00:00.000000Z",
                                    created_at="2026-01-01T00:00:00.000000Z")
    await store.update_candidate(cid, message_id=4242, channel_id=world.curation.id)
    service = CandidateService(store)
    rules = VoteRules(approve_at=1)

    async def rules_of(_key):
        return rules

    other = [ReactionEvent(4242, rivals.guild.id, rivals.zed.id, "👍", True)]
    assert await service.apply(other, rules_of) == []
    own = [ReactionEvent(4242, world.guild.id, world.bob.id, "👍", True)]
    ((cand, changed),) = await service.apply(own, rules_of)
    assert cand["state"] == "approved" and changed


def outbox(data_dir):
    path = data_dir / "outbox.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def job_text(world, message_id):
    return world.standin.message(message_id)["content"]


@pytest.mark.timeout(400)
async def test_two_servers_each_train_vote_and_post_their_own_dril(world, bot_handle, data_dir):
    rivals = add_rivals(world)
    bot = await start(world, bot_handle, rivals)
    servers = [(world.guild, world.alice, world.general, world.curation, [world.bob, world.carol, world.dave]),
               (rivals.guild, rivals.mallory, rivals.general, rivals.curation, [rivals.zed, rivals.yan, rivals.xia])]

    # Train: one real worker process, the tiny model, each server's own corpus.
    worker = WorkerProcess(data_dir).start()
    try:
        progress = []
        for guild, op, general, _, _ in servers:
            corpus = CORPUS if guild is world.guild else CORPUS.replace(b"Chuck Norris", b"Mallory")
            ix = await world.standin.invoke(op, "train", channel=general, options={
                "persona": "dril", "steps": 4, "model": "tiny", "file": ("dril.csv", corpus, "text/csv")})
            await ix.wait_for_response(timeout=5)
            progress.append(ix.response["id"])
        def ended(mid):
            text = job_text(world, mid)
            return text if "done:" in text or "failed:" in text else None

        for mid in progress:
            final = await world.standin.wait_for(lambda: ended(mid), timeout=300, what="both trainings to finish")
            assert "done: 4 steps" in final, final + worker.output()[-3000:]
    finally:
        worker.stop()
    keys = [persona_key(g.id, "dril") for g, *_ in servers]
    assert keys[0] != keys[1]
    for key in keys:
        assert (data_dir / "worker" / "checkpoint" / key).is_dir()
        assert (data_dir / "worker" / "datasets" / key / "dataset.csv").exists()
    datasets = [(data_dir / "worker" / "datasets" / k / "dataset.csv").read_text() for k in keys]
    assert "Chuck Norris" in datasets[0] and "Chuck Norris" not in datasets[1] and "Mallory" in datasets[1]

    # Generate (canned texts that name their server) and vote: each server's members on their own.
    # /train made the persona with the channel it ran in as its curation channel.
    for (guild, op, general, _, voters), key in zip(servers, keys):
        curation = general
        texts = [f"{guild.name} post {i}" for i in range(2)]
        worker = CannedWorker(bot.cfg, texts)
        ix = await world.standin.invoke(op, "generate", channel=general, options={"persona": "dril", "count": 2})
        await ix.wait_for_response(timeout=5)
        await worker.run_one()
        def candidates():
            found = [x for x in world.standin.messages(curation)
                     if x.get("embeds") and "candidate #" in ((x["embeds"][0].get("author") or {}).get("name") or "")]
            ready = len(found) == 2 and all(sum(r["me"] for r in x["reactions"]) == 2 for x in found)
            return found if ready else None

        msgs = await world.standin.wait_for(candidates, timeout=30, what=f"{guild.name}'s candidates")
        assert [x["embeds"][0]["description"] for x in msgs] == texts
        first = next(x for x in msgs if x["embeds"][0]["description"] == texts[0])
        for voter in voters:
            await world.standin.react(voter, curation, first["id"], "👍")

    async def approved(key):
        return [c["text"] for c in await bot.services.store.approved_queue(key)]

    for key, (guild, *_rest) in zip(keys, servers):
        for _ in range(200):
            if await approved(key) == [f"{guild.name} post 0"]:
                break
            await asyncio.sleep(0.05)
        assert await approved(key) == [f"{guild.name} post 0"]

    # Post: each server's /post now sends its own winner, and only that.
    for guild, op, general, _, _ in servers:
        text, eph = await run(world, op, general, "post", "now", persona="dril")
        assert not eph and "posted #" in text, text
    lines = outbox(data_dir)
    assert [(line["guild_id"], line["persona"], line["text"]) for line in lines] == [
        (world.guild.id, "dril", "Friends post 0"), (rivals.guild.id, "dril", "Rivals post 0")]


async def test_cli_names_a_persona_by_name_or_by_server_when_two_share_it(tmp_path):
    import subprocess
    import sys

    from bot.store import Store
    from conftest import REPO

    data = tmp_path / "data"
    store = await Store.open(data / "parodybot.sqlite3")
    for guild in (111, 222):
        p = await store.create_persona(guild, "dril")
        cid = await store.add_candidate(p["key"], None, f"post of {guild}", {}, "2099-01-01T00:00:00.000000Z",
                                        created_at="2026-01-01T00:00:00.000000Z")
        await store.update_candidate(cid, state="approved")
    await store.create_persona(111, "solo")
    await store.close()

    def cli(*args):
        env = dict(__import__("os").environ, PARODYBOT_DATA_DIR=str(data))
        return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=env, cwd=REPO)

    ambiguous = cli("queue", "dril")
    assert ambiguous.returncode == 2
    assert "more than one server has a persona 'dril': name one of 111/dril, 222/dril" in ambiguous.stderr
    assert "post of 222" in cli("queue", "222/dril").stdout
    assert "post of 111" not in cli("queue", "222/dril").stdout
    assert "queue is empty" in cli("queue", "solo").stdout  # one server has it: its name is enough
    missing = cli("queue", "333/dril")
    assert missing.returncode == 2 and "there is no persona '333/dril'" in missing.stderr


async def test_a_bare_config_name_that_two_servers_share_pauses_instead_of_crossing_accounts(tmp_path):
    from bot.posting import PostingService
    from bot.store import Store
    from core.config import config_from

    store = await Store.open(tmp_path / "data" / "parodybot.sqlite3")
    try:
        cfg = config_from({"personas": {
            "dril": {"targets": [{"platform": "outbox"}]},
            "222/weirdal": {"targets": [{"platform": "outbox"}]}}})
        service = PostingService(store, cfg, data_dir=tmp_path / "data")
        one = await store.create_persona(111, "dril")
        assert [t["platform"] for t in await service.targets(one)] == ["outbox"]  # only one dril: it applies
        two = await store.create_persona(222, "dril")
        for p in (one, two):
            cid = await store.add_candidate(p["key"], None, "hello", {}, "2099-01-01T00:00:00.000000Z",
                                            created_at="2026-01-01T00:00:00.000000Z")
            await store.update_candidate(cid, state="approved")
        report = await service.run(two["key"])
        assert report.outcome == "paused"
        assert '[personas."222/dril"]' in report.message
        assert (await store.get_persona(two["key"]))["state"] == "paused"
        # A GUILD_ID/NAME section is that server's persona's alone.
        weird = await store.create_persona(222, "weirdal", targets=[{"platform": "x", "credentials": "W"}])
        other = await store.create_persona(111, "weirdal", targets=[{"platform": "x", "credentials": "W"}])
        assert [t["platform"] for t in await service.targets(weird)] == ["outbox"]
        assert [t["platform"] for t in await service.targets(other)] == ["x"]
    finally:
        await store.close()


def test_persona_keys_never_collide_and_never_leave_a_folder():
    assert persona_key(111, "dril") != persona_key(222, "dril")
    assert persona_key(0, "dril") == "dril"  # personas from before guilds owned them
    for key in (persona_key(111, "dril"), "dril", persona_key(2**63, "a" * 32)):
        assert contract.check_persona_key(key) == key
    for bad in ("g1-../x", "../dril", "g-dril", "g1-", "dril-g1", "G1-dril", "g1/dril"):
        with pytest.raises(contract.BadInput):
            contract.check_persona_key(bad)
    # A name cannot hold '-', so no old name equals a new key.
    with pytest.raises(contract.BadInput):
        contract.check_persona_name("g1-dril")
