"""One error path: whatever a command raises, the member gets one private
answer (bot.client.ParodyTree.on_error), also after the public "thinking…"
every public command starts with."""
from __future__ import annotations

import discord
from discord import app_commands

from cogs.common import PRIVATE, answer, operator_only
from core.contract import BadInput


async def add_command(bot, world, command: app_commands.Command) -> None:
    """A command of the test's own, on the real tree, synced to the stand-in."""
    guild = discord.Object(world.guild.id)
    bot.tree.add_command(command, guild=guild)
    await bot.tree.sync(guild=guild)
    await world.standin.wait_for_commands([command.name], guild=world.guild)


async def test_a_refusal_after_a_public_defer_is_private_and_the_thinking_message_goes(world, bot):
    @app_commands.command(name="slowrefusal", description="refuses after its acknowledgement")
    async def slowrefusal(interaction: discord.Interaction) -> None:
        raise BadInput("that file is empty: attach a CSV with one post per row")

    await add_command(bot, world, slowrefusal)
    ix = await world.standin.invoke(world.alice, "slowrefusal", channel=world.general)
    (followup,) = await ix.wait_for_followups(1, timeout=5)
    assert ix.deferred  # acknowledged before the command's own work
    assert followup["content"] == "that file is empty: attach a CSV with one post per row"
    assert followup["flags"] & 64  # ephemeral: only alice sees it
    assert ix.original["deleted"]  # the public "is thinking..." message went
    assert ix.response == followup and ix.ephemeral  # what alice sees in its place
    public = [m for m in world.standin.messages(world.general) if "that file is empty" in (m["content"] or "")]
    assert all(m["flags"] & 64 for m in public)


async def test_the_operator_check_and_unexpected_errors_answer_privately(world, bot):
    @app_commands.command(name="opsonly", description="for operators")
    @operator_only
    async def opsonly(interaction: discord.Interaction) -> None:
        raise RuntimeError("database password hunter2 leaked in an exception")

    await add_command(bot, world, opsonly)
    ix = await world.standin.invoke(world.bob, "opsonly", channel=world.general)
    await ix.wait_for_response(timeout=5)
    assert ix.ephemeral and "You need the **parodybot-operator** role" in ix.response["content"]

    assert not ix.deferred  # refused before any "thinking…" was shown to the channel

    ix = await world.standin.invoke(world.alice, "opsonly", channel=world.general)
    (followup,) = await ix.wait_for_followups(1, timeout=5)
    assert followup["flags"] & 64 and "Something went wrong on our side" in followup["content"]
    assert "hunter2" not in followup["content"]
    assert ix.original["deleted"] and ix.response == followup


async def test_a_private_command_thinks_and_answers_only_to_the_member(world, bot):
    @app_commands.command(name="whisper", description="answers privately", extras=PRIVATE)
    async def whisper(interaction: discord.Interaction) -> None:
        await answer(interaction, "only you see this")

    await add_command(bot, world, whisper)
    held = world.standin.hold("POST", r"/webhooks/.*")
    ix = await world.standin.invoke(world.bob, "whisper", channel=world.general)
    await held.arrived.wait()
    assert ix.deferred and ix.ephemeral and not ix.has_visible_response()  # bob sees "thinking…", alone
    held.release()
    response = await ix.wait_for_response(timeout=5)
    assert response["content"] == "only you see this" and ix.ephemeral and ix.followups == []
