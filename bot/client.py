"""The Discord client: discord.py's Bot with our cogs and the bot's services.

The bot logs in and opens the gateway first; its own start-up (the services
of bot/services.py, the cogs, the command sync, the scheduler) runs while
discord.py waits for the guilds, and ``on_ready`` comes only once it is done.
A cog always finds the services. Every command is acknowledged in one
place, before its own work (``acknowledge``, from ``ParodyTree.interaction_check``),
and its refusals go one way: a command raises ``BadInput`` (or fails the
operator check) and ``ParodyTree.on_error`` answers privately.
"""
from __future__ import annotations

import asyncio
import functools
import gc
import importlib
import logging

import discord
import yarl
from discord.ext import commands

from discord import app_commands

from core.config import Config
from core.contract import BadInput

log = logging.getLogger("parodybot")

# discord.py waits this long after the last GUILD_CREATE before on_ready (its
# default, 2 s, was most of our start-up: bench/startup.py). A group of friends'
# bot is in 1-3 guilds, whose GUILD_CREATEs follow READY at once.
GUILD_READY_TIMEOUT = 0.5

COGS = ("cogs.status", "cogs.jobs", "cogs.training", "cogs.curation", "cogs.personas", "cogs.stats", "cogs.posting",
        "cogs.hand_curation")


def point_discord_at(cfg: Config) -> None:
    """Send discord.py to another Discord (the local stand-in) when configured."""
    if cfg.discord.api_base:
        discord.http.Route.BASE = cfg.discord.api_base.rstrip("/")
    if cfg.discord.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(cfg.discord.gateway_url)


class ParodyTree(app_commands.CommandTree):
    """Commands work in servers only; every refusal is one private reply."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # A command sent while the bot is still starting waits for it (well under
        # Discord's 3 s to answer: bench/startup.py).
        await interaction.client.prepared.wait()
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage("parodybot's commands work in a server, not in direct messages.")
        command = interaction.command
        if interaction.type is discord.InteractionType.application_command and command is not None:
            await acknowledge(interaction, command)
        return True

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        if isinstance(cause, (BadInput, app_commands.CheckFailure)):
            text = str(cause)
        else:
            log.error("/%s failed", interaction.command.qualified_name if interaction.command else "?",
                      exc_info=cause)
            text = "Something went wrong on our side; it is in the bot's log. Try again in a minute."
        await refuse(interaction, text)


async def acknowledge(interaction: discord.Interaction, command) -> None:
    """Every command defers ("thinking…") before any work of its own, the way
    its answer will be seen (extras "private": only by the member). Under a
    burst of commands, work before the acknowledgement queued every later one
    behind it (bench/ack.py). The checks (the operator's) run first, so their
    refusal is never shown to the channel; discord.py runs them again, cheaply."""
    for check in command.checks:
        if not await discord.utils.maybe_coroutine(check, interaction):
            raise app_commands.CheckFailure(f"The check functions for command {command.qualified_name!r} failed.")
    private = bool(command.extras.get("private"))
    interaction.extras["public_defer"] = not private
    await interaction.response.defer(ephemeral=private, thinking=True)


async def refuse(interaction: discord.Interaction, text: str) -> None:
    """An ephemeral message that says what to do, whether or not the command
    already answered. After a public defer the "thinking" message goes first,
    so a refusal is never shown to the whole channel."""
    text = text[:1900]
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True)
            return
        if interaction.extras.get("public_defer"):
            await interaction.delete_original_response()
        await interaction.followup.send(text, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not tell the member: %s", text)


def _import_cogs() -> None:
    """The cogs and the services they use: most of the bot's own import time."""
    for name in COGS:
        importlib.import_module(name)


class ParodyBot(commands.Bot):
    def __init__(self, cfg: Config, **kwargs):
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_reactions = True  # votes come from raw reaction events
        kwargs.setdefault("guild_ready_timeout", GUILD_READY_TIMEOUT)
        # Nothing the bot sends pings anyone: candidate texts, echoed input and
        # log lines may hold @everyone or mentions.
        kwargs.setdefault("allowed_mentions", discord.AllowedMentions.none())
        # No message cache: nothing reads one (votes are raw events), and with the
        # candidates cached every reaction also updated the cached message and
        # dispatched a reaction_add nobody listens to.
        kwargs.setdefault("max_messages", None)
        super().__init__(command_prefix=commands.when_mentioned, intents=intents, help_command=None,
                         tree_cls=ParodyTree, **kwargs)
        self.cfg = cfg
        self.services = None  # bot/services.py's Services, once prepared
        self.prepared = asyncio.Event()  # services open, cogs loaded, commands synced
        self.startup_error: BaseException | None = None
        self._preparing: asyncio.Task | None = None
        self._connected = asyncio.Event()
        self.ready_event = asyncio.Event()

        # Reaction events are votes. The curation cog takes them as the gateway sent them,
        # at once and in order: no listener task per event (in a burst of thousands a
        # second those were most of the bot's cost), and no Member and event object
        # built by discord.py's parser first (23 µs of a vote's ~110: bench/votes.py).
        parsers = self._connection.parsers  # the gateway reads this dict (discord.py 2.7)
        for event, added in (("MESSAGE_REACTION_ADD", True), ("MESSAGE_REACTION_REMOVE", False)):
            parsers[event] = functools.partial(self._reaction, parsers[event], added)

    vote_sink = None  # (gateway data, added) -> None, set by cogs/curation.py

    def _reaction(self, discord_parser, added: bool, data: dict) -> None:
        if self.vote_sink is not None:
            self.vote_sink(data, added)
        else:  # no curation cog (yet): discord.py's own raw_reaction_* events
            discord_parser(data)

    def member_from(self, guild_id: int, data: dict) -> discord.Member | None:
        """The Member a reaction event's ``member`` data describes (as discord.py's parser built it)."""
        guild = self.get_guild(guild_id)
        return discord.Member(data=data, guild=guild, state=self._connection) if guild else None

    def dispatch(self, event_name: str, /, *args, **kwargs) -> None:
        if event_name == "socket_event_type":
            # discord.py sends one for every gateway event and nothing of ours listens:
            # looking for listeners cost 10 µs a reaction in a burst (bench/votes.py).
            return
        if event_name == "connect":
            self._connected.set()
        if event_name == "ready" and not self.prepared.is_set():
            # Every cog's on_ready (the votes' reconciliation) needs every cog loaded.
            # (kept referenced: the loop holds tasks only weakly)
            self._ready_later = asyncio.ensure_future(self._dispatch_when_prepared(event_name, *args, **kwargs))
            return
        super().dispatch(event_name, *args, **kwargs)

    async def _dispatch_when_prepared(self, event_name: str, *args, **kwargs) -> None:
        await self.prepared.wait()
        self.dispatch(event_name, *args, **kwargs)

    async def login(self, token: str) -> None:
        point_discord_at(self.cfg)  # before the first REST call
        await super().login(token)

    async def start(self, token: str, *, reconnect: bool = True) -> None:
        await super().start(token, reconnect=reconnect)
        if self.startup_error is not None:
            raise self.startup_error

    async def setup_hook(self) -> None:
        # The gateway connects at once; discord.py's wait for the guilds (idle
        # time) is when our own start-up runs (bench/startup.py).
        self._preparing = asyncio.create_task(self._prepare())

    async def _prepare(self) -> None:
        try:
            # Our imports run in a thread, so the gateway's READY and GUILD_CREATE are
            # read meanwhile; not before the socket is open, as a thread holding the
            # GIL slows every step of the handshake (200 ms, bench/startup.py).
            await self._connected.wait()
            await asyncio.to_thread(_import_cogs)
            from bot.services import Services  # imported by now

            self.services = await Services.open(self.cfg)
            for name in COGS:
                await self.load_extension(name)
            await self.sync_commands()
            # One job per active persona; runs missed while stopped coalesce into one now.
            await self.services.scheduler.start()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # start() raises it, once the bot is closed
            self.startup_error = exc
            await self.close()
            return
        # What start-up made (modules, classes, config) lives as long as the bot: out of
        # the collector's sight, a full collection no longer walks it and pauses every
        # command for 60 ms under a burst (bench/ack.py). Free: no collection runs here.
        gc.freeze()
        self.prepared.set()

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
        if self._preparing is not None and not self._preparing.done() and self._preparing is not asyncio.current_task():
            self._preparing.cancel()
        if self.services is not None:
            await self.services.scheduler.stop()
        await super().close()
        if self.services is not None:
            await self.services.store.close()
