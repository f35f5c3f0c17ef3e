"""Running a real discord.py client against the Discord stand-in in tests."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import discord
from discord.ext import commands

from discord_standin import DiscordStandin


def default_intents() -> discord.Intents:
    """What parodybot asks for: guilds and reactions, no privileged intents."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_reactions = True
    return intents


class RecordingBot(commands.Bot):
    """A commands.Bot that keeps what it saw so tests can assert on it."""

    def __init__(self, *, intents: discord.Intents | None = None, sync_guild: int | None = None):
        super().__init__(command_prefix=commands.when_mentioned, intents=intents or default_intents(),
                         help_command=None, guild_ready_timeout=0.05)
        self.sync_guild = sync_guild
        self.raw_reactions: list[tuple[str, discord.RawReactionActionEvent]] = []
        self.command_errors: list[BaseException] = []
        self.synced: list[discord.app_commands.AppCommand] = []
        self.ready_count = 0

    async def setup_hook(self) -> None:
        guild = discord.Object(self.sync_guild) if self.sync_guild else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        self.synced = await self.tree.sync(guild=guild)

    async def on_ready(self) -> None:
        self.ready_count += 1

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        self.raw_reactions.append(("add", payload))

    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        self.raw_reactions.append(("remove", payload))


@contextlib.asynccontextmanager
async def running_bot(standin: DiscordStandin, bot: commands.Bot, *, timeout: float = 10.0) -> AsyncIterator[commands.Bot]:
    """Log ``bot`` in against ``standin``, wait for on_ready, and close it cleanly after."""
    with standin.patch_discord():
        await bot.login(standin.bot_token)
        task = asyncio.create_task(bot.connect(reconnect=True), name="bot-connect")
        ready = asyncio.create_task(bot.wait_until_ready(), name="bot-ready")
        try:
            done, _ = await asyncio.wait({task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if ready not in done:
                if task in done:
                    task.result()  # raise what stopped the client
                raise TimeoutError("the bot did not become ready")
            yield bot
        finally:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            await bot.close()
            try:
                await asyncio.wait_for(task, 5)
            except (asyncio.CancelledError, discord.ConnectionClosed):
                pass
