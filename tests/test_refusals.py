"""One error path: whatever a command raises, the member gets one private
answer (bot.client.ParodyTree.on_error), also after a public defer."""
from __future__ import annotations

import discord
from discord import app_commands

from cogs.common import defer_public, operator_only
from core.contract import BadInput


async def add_command(bot, world, command: app_commands.Command) -> None:
    """A command of the test's own, on the real tree, synced to the stand-in."""
    guild = discord.Object(world.guild.id)
    bot.tree.add_command(command, guild=guild)
    await bot.tree.sync(guild=guild)
    await world.standin.wait_for_commands([command.name], guild=world.guild)


async def test_a_refusal_after_a_public_defer_is_private_and_the_thinking_message_goes(world, bot):
    @app_commands.command(name="slowrefusal", description="defers, then refuses")
    async def slowrefusal(interaction: discord.Interaction) -> None:
        await defer_public(interaction)
        raise BadInput("that file is empty: attach a CSV with one post per row")

    await add_command(bot, world, slowrefusal)
    ix = await world.standin.invoke(world.alice, "slowrefusal", channel=world.general)
    (followup,) = await ix.wait_for_followups(1, timeout=5)
    assert followup["content"] == "that file is empty: attach a CSV with one post per row"
    assert followup["flags"] & 64  # ephemeral: only alice sees it
    assert not ix.has_visible_response()  # the public "is thinking..." message was deleted
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

    ix = await world.standin.invoke(world.alice, "opsonly", channel=world.general)
    await ix.wait_for_response(timeout=5)
    assert ix.ephemeral and "Something went wrong on our side" in ix.response["content"]
    assert "hunter2" not in ix.response["content"]
