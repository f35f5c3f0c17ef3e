"""The Discord stand-in against the real, unmodified discord.py client."""

from __future__ import annotations

import asyncio
import io
from urllib.parse import urlsplit

import aiohttp
import discord
import pytest
from discord import app_commands

from discord_standin import DiscordStandin, InteractionFailed, Perm, StandinError
from discord_standin.rest import _check_command
from discord_standin.state import ApiError
from standin_helpers import RecordingBot, running_bot

CSV = b"tweets\nno\n\"multi\nline\"\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def install_commands(bot: RecordingBot) -> None:
    tree = bot.tree

    @tree.command(description="Answers at once")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong")

    @tree.command(description="Answers after Discord's 3-second window")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(3.5)
        try:
            await interaction.response.send_message("too late")
        except discord.HTTPException as exc:
            bot.command_errors.append(exc)

    @tree.command(description="Acknowledges twice")
    async def twice(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        interaction.response._response_type = None  # get past discord.py's own guard to reach Discord
        try:
            await interaction.response.send_message("second ack")
        except discord.HTTPException as exc:
            bot.command_errors.append(exc)
        await interaction.edit_original_response(content="first ack wins")

    @tree.command(description="Defers, edits the original, sends a followup with an embed and a file")
    async def report(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content="report ready")
        embed = discord.Embed(title="Loss", description="final loss 0.74").set_image(url="attachment://loss.png")
        followup = await interaction.followup.send(embed=embed, file=discord.File(io.BytesIO(PNG), "loss.png"),
                                                   wait=True)
        await followup.edit(content="see the curve")
        original = await interaction.original_response()
        bot.seen_original = original.content  # type: ignore[attr-defined]

    @tree.command(description="Shows what Discord says about the caller")
    async def whoami(interaction: discord.Interaction) -> None:
        p = interaction.permissions
        await interaction.response.send_message(
            f"manage_guild={p.manage_guild} admin={p.administrator} "
            f"bot_send={interaction.app_permissions.send_messages} locale={interaction.locale.value}",
            ephemeral=True,
        )

    @tree.command(description="Operators only")
    @app_commands.default_permissions(manage_guild=True)
    async def cancel(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("cancelled", ephemeral=True)

    persona = app_commands.Group(name="persona", description="Manage personas")

    @persona.command(name="create", description="Create a persona from a CSV")
    async def create(interaction: discord.Interaction, name: str, data: discord.Attachment) -> None:
        host = urlsplit(data.url).hostname
        body = await data.read()
        await interaction.response.send_message(f"{name}: {len(body)} bytes from {host}", ephemeral=True)

    tree.add_command(persona)

    async def persona_names(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=n, value=n) for n in ("dril", "dril_2", "horse") if n.startswith(current)]

    @tree.command(description="Train a persona")
    @app_commands.autocomplete(persona=persona_names)
    async def train(interaction: discord.Interaction, persona: str, steps: int = 300) -> None:
        await interaction.response.send_message(f"queued {persona} for {steps} steps")


@pytest.fixture
async def world():
    standin = DiscordStandin()
    await standin.start()
    guild = standin.add_guild("Friends")
    channel = standin.add_channel(guild, "curation")
    operator = standin.add_role(guild, "operator", permissions=discord.Permissions(manage_guild=True))
    alice = standin.add_member(guild, "alice", roles=[operator])
    bob = standin.add_member(guild, "bob")
    try:
        yield standin, guild, channel, alice, bob
    finally:
        await standin.stop()
    assert standin.internal_errors == []
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert leftover == [], f"tasks left running: {leftover}"


@pytest.fixture
async def bot(world):
    standin = world[0]
    b = RecordingBot()
    install_commands(b)
    async with running_bot(standin, b):
        yield b
    assert not standin.bot_connected
    assert standin.unknown_routes == [] and standin.internal_errors == []


async def test_login_sync_and_ping(world, bot):
    standin, guild, channel, alice, _ = world
    calls = [(e["method"], e["route"]) for e in standin.events if e["kind"] == "rest"]
    assert ("GET", "/users/@me") in calls and ("GET", "/oauth2/applications/@me") in calls
    assert ("PUT", "/applications/{application_id}/commands") in calls
    assert {c["name"] for c in standin.registered_commands()} >= {"ping", "slow", "persona", "train"}
    assert [g.name for g in bot.guilds] == ["Friends"] and standin.bot_connected

    ix = await standin.invoke(alice, "ping", channel=channel)
    response = await ix.wait_for_response(timeout=5)
    assert response["content"] == "pong"
    assert ix.ack_type == 4 and not ix.ephemeral and ix.errors == []
    assert [m["content"] for m in standin.messages(channel)] == ["pong"]
    assert standin.unknown_routes == []


async def test_late_acknowledgement_is_refused_with_10062(world, bot):
    standin, guild, channel, alice, _ = world
    ix = await standin.invoke(alice, "slow", channel=channel)
    with pytest.raises(InteractionFailed):
        await ix.wait_for_response(timeout=5)
    await standin.wait_for(lambda: bot.command_errors, timeout=3)
    assert isinstance(bot.command_errors[0], discord.NotFound) and bot.command_errors[0].code == 10062
    assert ix.error["code"] == 10062 and not ix.acknowledged and ix.response is None
    assert standin.messages(channel) == []


async def test_second_acknowledgement_gets_40060(world, bot):
    standin, guild, channel, alice, _ = world
    ix = await standin.invoke(alice, "twice", channel=channel)
    response = await ix.wait_for_response(timeout=5)
    assert response["content"] == "first ack wins" and ix.ack_type == 5
    assert bot.command_errors[0].code == 40060 and ix.error["code"] == 40060


async def test_deferred_reply_edit_and_followup_with_embed_and_file(world, bot):
    standin, guild, channel, alice, _ = world
    ix = await standin.invoke(alice, "report", channel=channel)
    response = await ix.wait_for_response(timeout=5)
    assert response["content"] == "report ready" and ix.deferred
    [followup] = await ix.wait_for_followups(1, timeout=5)
    await standin.wait_for(lambda: ix.followups[0]["content"] == "see the curve", timeout=5)
    followup = ix.followups[0]
    [attachment] = followup["attachments"]
    assert attachment["filename"] == "loss.png" and attachment["data"] == PNG
    assert followup["embeds"][0]["title"] == "Loss"
    assert followup["embeds"][0]["image"]["url"] == attachment["url"]
    assert followup["edited_timestamp"] is not None
    assert await standin.wait_for(lambda: getattr(bot, "seen_original", None)) == "report ready"
    assert [m["id"] for m in standin.messages(channel)] == [response["id"], followup["id"]]


async def test_permissions_ephemeral_replies_and_hidden_commands(world, bot):
    standin, guild, channel, alice, bob = world
    ix = await standin.invoke(alice, "whoami", channel=channel, locale="de")
    assert (await ix.wait_for_response())["content"] == "manage_guild=True admin=False bot_send=True locale=de"
    assert ix.ephemeral and standin.messages(channel) == []

    ix = await standin.invoke(bob, "whoami", channel=channel)
    assert (await ix.wait_for_response())["content"].startswith("manage_guild=False admin=False")

    with pytest.raises(StandinError, match="hidden from bob"):
        await standin.invoke(bob, "cancel", channel=channel)
    ix = await standin.invoke(alice, "cancel", channel=channel)
    assert (await ix.wait_for_response())["content"] == "cancelled"

    standin.set_owner(guild, bob)
    ix = await standin.invoke(bob, "whoami", channel=channel)
    assert "manage_guild=True admin=True" in (await ix.wait_for_response())["content"]


async def test_bad_invocations_fail_loudly(world, bot):
    standin, guild, channel, alice, _ = world
    with pytest.raises(StandinError, match="not registered"):
        await standin.invoke(alice, "nope", channel=channel)
    with pytest.raises(StandinError, match="requires"):
        await standin.invoke(alice, "train", channel=channel)
    with pytest.raises(StandinError, match="no option"):
        await standin.invoke(alice, "train", channel=channel, options={"persona": "dril", "colour": "red"})
    with pytest.raises(StandinError, match="integer"):
        await standin.invoke(alice, "train", channel=channel, options={"persona": "dril", "steps": "many"})
    with pytest.raises(StandinError, match="subcommand"):
        await standin.invoke(alice, "persona", channel=channel)


async def test_subcommand_attachment_and_autocomplete(world, bot):
    standin, guild, channel, alice, _ = world
    ix = await standin.invoke(alice, "persona", subcommand="create", channel=channel, options={"name": "dril"},
                              attachments=[("tweets.csv", CSV, "text/csv")])
    content = (await ix.wait_for_response())["content"]
    assert content == f"dril: {len(CSV)} bytes from {standin.cdn_host}"

    choices = await standin.autocomplete(alice, "train", focused="persona", options={"persona": "dr"})
    assert [c["value"] for c in choices] == ["dril", "dril_2"]
    ix = await standin.invoke(alice, "train", channel=channel, options={"persona": "dril", "steps": 50})
    assert (await ix.wait_for_response())["content"] == "queued dril for 50 steps"


async def test_reactions_from_uncached_members_arrive_as_raw_events(world, bot):
    standin, guild, channel, alice, bob = world
    carol = standin.add_member(guild, "carol")  # joins after the bot connected; no members intent
    message = await bot.get_channel(channel.id).send("candidate #1")
    await message.add_reaction("👍")
    await message.add_reaction("👎")

    await standin.react(carol, channel, message.id, "👍")
    await standin.react(bob, channel, message.id, "👍")
    await standin.unreact(carol, channel, message.id, "👍")
    await standin.wait_for(lambda: len(bot.raw_reactions) >= 5, timeout=5)

    events = [(kind, p.user_id, str(p.emoji)) for kind, p in bot.raw_reactions]
    assert events == [("add", standin.bot_user.id, "👍"), ("add", standin.bot_user.id, "👎"),
                      ("add", carol.id, "👍"), ("add", bob.id, "👍"), ("remove", carol.id, "👍")]
    add_carol = bot.raw_reactions[2][1]
    assert add_carol.member is not None and add_carol.member.name == "carol"
    assert bot.get_guild(guild.id).get_member(carol.id) is None  # not cached: only the raw event knew

    [view] = standin.messages(channel)
    assert view["reactions"][0] == {"emoji": "👍", "count": 2, "user_ids": [standin.bot_user.id, bob.id], "me": True}
    fetched = await bot.get_channel(channel.id).fetch_message(message.id)
    assert [(str(r.emoji), r.count, r.me) for r in fetched.reactions] == [("👍", 2, True), ("👎", 1, True)]
    users = [u.id async for u in fetched.reactions[0].users()]
    assert sorted(users) == sorted([standin.bot_user.id, bob.id])

    await message.remove_reaction("👎", bot.user)
    history = [m async for m in bot.get_channel(channel.id).history(limit=10)]
    assert [(m.content, [(str(r.emoji), r.count) for r in m.reactions]) for m in history] == [
        ("candidate #1", [("👍", 2)])]


async def test_bot_sends_and_edits_a_message_with_embed_and_file(world, bot):
    standin, guild, channel, alice, _ = world
    target = await bot.fetch_channel(channel.id)
    embed = discord.Embed(title="Candidate", description="posting this", colour=0x5865F2)
    standin.inject_error("POST", r"/channels/\d+/messages", 429, retry_after=0.05)  # discord.py waits and retries
    sent = await target.send("new candidate", embed=embed, file=discord.File(io.BytesIO(CSV), "sample.csv"))
    assert [e["status"] for e in standin.events if e["kind"] == "rest" and e["method"] == "POST"] == [429, 200]
    await sent.edit(content="approved", embed=discord.Embed(title="Candidate", description="approved (#1 in queue)"))
    await sent.edit(attachments=[*sent.attachments, discord.File(io.BytesIO(PNG), "curve.png")])

    [view] = standin.messages(channel)
    assert view["content"] == "approved" and view["edited_timestamp"] is not None
    assert view["embeds"][0]["description"] == "approved (#1 in queue)"
    assert [(a["filename"], a["data"]) for a in view["attachments"]] == [("sample.csv", CSV), ("curve.png", PNG)]
    assert await sent.attachments[0].read() == CSV  # served by the stand-in's CDN

    member = await bot.get_guild(guild.id).fetch_member(alice.id)
    assert [r.name for r in member.roles] == ["@everyone", "operator"]
    roles = {r.name: r for r in await bot.get_guild(guild.id).fetch_roles()}
    assert roles["operator"].permissions.manage_guild and roles["parodybot"].managed
    assert standin.unknown_routes == []


async def test_gateway_drop_resumes_and_replays_missed_events(world, bot):
    standin, guild, channel, alice, bob = world
    message = await bot.get_channel(channel.id).send("candidate")
    await standin.disconnect_bot(resumable=True)
    await standin.react(bob, channel, message.id, "👍")  # happens while the bot is away
    await standin.wait_for(lambda: standin.bot_connected and standin.gateway.resumes == 1, timeout=5)
    await standin.wait_for(lambda: bot.raw_reactions, timeout=5)
    assert [(k, p.user_id) for k, p in bot.raw_reactions] == [("add", bob.id)]
    assert standin.gateway.identifies == 1

    async def no_identify_delay(shard_id, *, initial=False):  # discord.py waits 5 s before a re-IDENTIFY
        pass

    bot.before_identify_hook = no_identify_delay
    await standin.disconnect_bot(resumable=False)  # RESUME gets op 9, the bot identifies again
    await standin.wait_for(lambda: standin.bot_connected and standin.gateway.identifies == 2, timeout=5)
    await standin.wait_for(lambda: bot.ready_count == 2, timeout=5)  # on_ready fires again after a new session
    ix = await standin.invoke(alice, "ping", channel=channel)
    assert (await ix.wait_for_response())["content"] == "pong"


async def test_guild_commands_and_buttons(world):
    standin, guild, channel, alice, bob = world
    bot = RecordingBot(sync_guild=guild.id)
    install_commands(bot)

    class Vote(discord.ui.View):
        @discord.ui.button(label="Approve", custom_id="approve")
        async def approve(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
            await interaction.response.edit_message(content=f"approved by {interaction.user.name}", view=None)

    async with running_bot(standin, bot):
        assert standin.registered_commands() == []
        assert "ping" in {c["name"] for c in standin.registered_commands(guild)}
        ix = await standin.invoke(alice, "ping", channel=channel)
        assert (await ix.wait_for_response())["content"] == "pong"
        assert ix.payload["data"]["guild_id"] == str(guild.id)

        message = await bot.get_channel(channel.id).send("candidate", view=Vote(timeout=None))
        click = await standin.click(bob, message.id, "approve")
        response = await click.wait_for_response()
        assert click.ack_type == 7 and response["id"] == str(message.id)
        assert response["content"] == "approved by bob" and response["components"] == []


async def test_rest_answers_like_discord():
    async with DiscordStandin() as standin:
        guild = standin.add_guild("Friends")
        channel = standin.add_channel(guild, "curation")
        auth = {"Authorization": f"Bot {standin.bot_token}"}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{standin.api_base}/users/@me", headers={"Authorization": "Bot nope"}) as r:
                assert r.status == 401
            async with http.get(f"{standin.api_base}/users/@me", headers=auth) as r:
                assert r.headers["Content-Type"] == "application/json"
                assert (await r.json())["id"] == str(standin.bot_user.id)
            async with http.get(f"{standin.api_base}/channels/{channel.id}/pins/whatever", headers=auth) as r:
                assert r.status == 404
            assert standin.unknown_routes == [f"GET /channels/{channel.id}/pins/whatever"]
            url = f"{standin.api_base}/channels/{channel.id}/messages"
            async with http.post(url, json={"content": "x" * 2001}, headers=auth) as r:
                assert r.status == 400 and (await r.json())["code"] == 50035
            async with http.post(url, json={"content": ""}, headers=auth) as r:
                assert (await r.json())["code"] == 50006
            standin.set_overwrite(channel, standin.bot_role(guild), deny=Perm.SEND_MESSAGES)
            async with http.post(url, json={"content": "hi"}, headers=auth) as r:
                assert r.status == 403 and (await r.json())["code"] == 50013
            async with http.post(f"{standin.api_base}/interactions/1/abc/callback", json={"type": 4}) as r:
                assert r.status == 404 and (await r.json())["code"] == 10062
            async with http.post(f"{standin.api_base}/webhooks/{standin.application_id}/abc", json={}) as r:
                assert (await r.json())["code"] == 10015


# --- what Discord enforces (issue 12) ------------------------------------------------


async def test_reactions_must_be_one_emoji_like_on_discord(world, bot):
    standin, guild, channel, alice, _ = world
    message = await bot.get_channel(channel.id).send("vote")
    await message.add_reaction("👍")
    await message.add_reaction("👍🏽")
    for bad in ("thumbsup", "👍x", "✔️✔️"):
        with pytest.raises(discord.HTTPException) as caught:
            await message.add_reaction(bad)
        assert caught.value.code == 10014 and caught.value.status == 400
    assert [r["emoji"] for r in standin.message(message.id)["reactions"]] == ["👍", "👍🏽"]


async def test_rate_limits_come_with_discords_headers_and_429_body(world, bot):
    standin, guild, channel, alice, _ = world
    limiter = standin.ratelimits
    verdicts = [limiter.check("POST", f"/channels/{channel.id}/messages", "/channels/{channel_id}/messages",
                              {"channel_id": str(channel.id)}) for _ in range(6)]
    assert [v.refused is None for v in verdicts] == [True] * 5 + [False]
    first, refused = verdicts[0].headers, verdicts[5]
    assert first["X-RateLimit-Limit"] == "5" and first["X-RateLimit-Remaining"] == "4"
    assert float(first["X-RateLimit-Reset-After"]) <= 5.0 and first["X-RateLimit-Bucket"]
    assert refused.refused["message"] == "You are being rate limited." and refused.refused["global"] is False
    assert 0 < refused.refused["retry_after"] <= 5.0
    assert refused.headers["Via"] and refused.headers["X-RateLimit-Scope"] == "user"
    # Another channel has a bucket of its own.
    other = limiter.check("POST", "/channels/1/messages", "/channels/{channel_id}/messages", {"channel_id": "1"})
    assert other.refused is None
    # discord.py, told by the headers, waits instead of failing: 7 sends to one channel all arrive.
    sent = [await bot.get_channel(channel.id).send(f"m{i}") for i in range(7)]
    assert [standin.message(m.id)["content"] for m in sent] == [f"m{i}" for i in range(7)]


async def test_guilds_have_an_owner_and_command_names_follow_discords_rule(world, bot):
    standin, guild, channel, alice, _ = world
    assert guild.owner_id is not None and guild.owner_id in guild.members
    me = await bot.fetch_guild(guild.id)
    assert me.owner_id == guild.owner_id
    tree = bot.tree
    for good in ("пост", "post-now", "post_now"):
        tree.add_command(discord.app_commands.Command(name=good, description="ok", callback=_noop))
    await tree.sync()
    assert {"пост", "post-now", "post_now"} <= {c["name"] for c in standin.registered_commands()}
    for bad in ("Post", "post now", "post.now", "x" * 33):  # what every sync is checked against
        with pytest.raises(ApiError) as caught:
            _check_command({"name": bad, "description": "x", "type": 1}, "0.")
        assert caught.value.status == 400


async def _noop(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("ok")
