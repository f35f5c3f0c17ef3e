"""The Discord client: discord.py's Bot with our cogs, store and queue."""
from __future__ import annotations

import asyncio
import logging
import time

import discord
import yarl
from discord.ext import commands

from core import contract
from core.config import Config
from bot.jobs import JobService
from bot.posting import PostingService
from bot.scheduler import PostingScheduler
from bot.store import Store

log = logging.getLogger("parodybot")

# discord.py waits this long after the last GUILD_CREATE before on_ready (its
# default, 2 s, was most of our start-up: bench/startup.py). A group of friends'
# bot is in 1-3 guilds, whose GUILD_CREATEs follow READY at once.
GUILD_READY_TIMEOUT = 0.5

COGS = ("cogs.status", "cogs.jobs", "cogs.training", "cogs.curation", "cogs.personas", "cogs.stats", "cogs.posting")


def point_discord_at(cfg: Config) -> None:
    """Send discord.py to another Discord (the local stand-in) when configured."""
    if cfg.discord.api_base:
        discord.http.Route.BASE = cfg.discord.api_base.rstrip("/")
    if cfg.discord.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(cfg.discord.gateway_url)


class ParodyBot(commands.Bot):
    def __init__(self, cfg: Config, **kwargs):
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_reactions = True  # votes come from raw reaction events
        kwargs.setdefault("guild_ready_timeout", GUILD_READY_TIMEOUT)
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None, **kwargs)
        self.cfg = cfg
        self.started_at = time.time()
        self.store: Store | None = None
        self.queue = None
        self.jobs: JobService | None = None
        self.posting: PostingService | None = None
        self.scheduler: PostingScheduler | None = None
        self.ready_event = asyncio.Event()

    async def login(self, token: str) -> None:
        point_discord_at(self.cfg)  # before the first REST call
        await super().login(token)

    async def setup_hook(self) -> None:
        self.store = await Store.open(self.cfg.db_path)
        self.queue = await asyncio.to_thread(contract.open_queue, self.cfg.queue_url)
        self.jobs = JobService(self.store, self.queue)
        self.posting = PostingService(self.store, self.cfg)
        self.scheduler = PostingScheduler(self.store, self.posting, self.cfg.posting)
        for name in COGS:
            await self.load_extension(name)
        await self.sync_commands()
        # One job per active persona; runs missed while stopped coalesce into one now.
        await self.scheduler.start()

    async def sync_commands(self) -> None:
        if self.cfg.discord.guild_ids:
            for gid in self.cfg.discord.guild_ids:
                guild = discord.Object(id=gid)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()

    async def on_ready(self) -> None:
        log.info("connected as %s to %d guild(s)", self.user, len(self.guilds))
        self.ready_event.set()

    async def close(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
            self.scheduler = None
        await super().close()
        if self.store is not None:
            await self.store.close()
            self.store = None
