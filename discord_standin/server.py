"""DiscordStandin: the object a test holds. It runs the aiohttp server (REST
under /api/v10, the gateway at /, attachments under /attachments), builds the
world (guilds, channels, roles, members), and plays the members' side
(slash commands, autocomplete, buttons, reactions, messages)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import secrets
import time
from typing import Any, Callable, Iterator, Optional, Sequence, Union

from aiohttp import web

from . import interactions as ixm
from .gateway import Gateway, Session
from .interactions import InteractionFailed, OptionBuilder, StandinInteraction
from .rest import Rest, json_response
from .ratelimit import RateLimiter
from .state import (
    FILE_SIZE_LIMIT,
    MESSAGE_FLAG_EPHEMERAL,
    MESSAGE_FLAG_LOADING,
    ApiError,
    Channel,
    ChannelType,
    Guild,
    Intent,
    Member,
    Perm,
    Role,
    StandinError,
    State,
    User,
    as_id,
    perm_value,
)

log = logging.getLogger("discord_standin")

Who = Union[Member, User, int]

# application flags for an unverified app with the privileged intents switched on
_FLAG_PRESENCE_LIMITED = 1 << 13
_FLAG_GUILD_MEMBERS_LIMITED = 1 << 15
_FLAG_MESSAGE_CONTENT_LIMITED = 1 << 19
_FLAG_COMMAND_BADGE = 1 << 23


class DiscordStandin:
    """A local Discord for the real discord.py client.

    ``privileged_intents``: which privileged intents the application has switched
    on in the (imaginary) developer portal; asking for others at IDENTIFY closes
    the gateway with 4014, as Discord does. ``ack_timeout``: the interaction
    acknowledgement window (3 s on Discord)."""

    def __init__(self, *, bot_name: str = "parodybot", bot_token: Optional[str] = None, host: str = "127.0.0.1",
                 port: int = 0, cdn_host: Optional[str] = None, ack_timeout: float = 3.0,
                 privileged_intents: int = Intent.PRIVILEGED, clock: Callable[[], float] = time.time,
                 rate_limits: bool = True):
        self.state = State(clock, bot_name=bot_name)
        # Discord's REST rate limits, on unless a test turns them off (discord_standin/ratelimit.py).
        self.ratelimits = RateLimiter(enabled=rate_limits)
        bot_id = self.state.bot_user.id
        self.bot_token = bot_token or (
            base64.b64encode(str(bot_id).encode()).decode().rstrip("=") + ".Standin." + secrets.token_urlsafe(27)
        )
        self.host = host
        self._port = port
        self._cdn_host = cdn_host or host
        self.ack_timeout = ack_timeout
        self.interaction_token_ttl = 15 * 60.0
        self.privileged_intents = privileged_intents
        self.presence: Any = None
        self.gateway = Gateway(self)
        self.rest = Rest(self)
        self.interactions: dict[int, StandinInteraction] = {}
        self.interactions_by_token: dict[str, StandinInteraction] = {}
        self.unknown_routes: list[str] = []
        self.internal_errors: list[str] = []  # stand-in bugs hit during the test (should stay empty)
        self._injected: list[dict] = []
        self._holds: list[Hold] = []
        self._timers: list[asyncio.TimerHandle] = []
        self._runner: Optional[web.AppRunner] = None
        self._change = asyncio.Event()
        self.poll_interval = 0.02
        self.state._listeners.append(self._notify)

    # ------------------------------------------------------------------
    # lifecycle and addresses

    async def start(self) -> "DiscordStandin":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/api/v10/{tail:.*}", self.rest.handle)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._serve_attachment)
        app.router.add_get("/", self.gateway.handle)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        app.on_shutdown.append(self._on_shutdown)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]
        self.state.record("standin.start", api_base=self.api_base, gateway_url=self.gateway_url)
        return self

    async def stop(self) -> None:
        """Stop the server. Close the bot first: a bot still connected would see
        its gateway close with 1001 and try to reconnect."""
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for held in list(self._holds):
            held.release()
        if self._runner is not None:
            await self.gateway.close_all(1001)
            await self._runner.cleanup()
            self._runner = None
        self.state.record("standin.stop")

    async def __aenter__(self) -> "DiscordStandin":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.gateway.close_all(1001)

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be (no trailing slash)."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` must be (as a yarl.URL)."""
        return f"ws://{self.host}:{self._port}/"

    @property
    def cdn_host(self) -> str:
        """The host attachment URLs use: the one the bot must accept as Discord's CDN."""
        return self._cdn_host

    @property
    def cdn_base(self) -> str:
        return f"http://{self._cdn_host}:{self._port}/attachments"

    @property
    def bot_user(self) -> User:
        return self.state.bot_user

    @property
    def application_id(self) -> int:
        return self.state.application_id

    @property
    def application_flags(self) -> int:
        flags = _FLAG_COMMAND_BADGE
        if self.privileged_intents & Intent.GUILD_PRESENCES:
            flags |= _FLAG_PRESENCE_LIMITED
        if self.privileged_intents & Intent.GUILD_MEMBERS:
            flags |= _FLAG_GUILD_MEMBERS_LIMITED
        if self.privileged_intents & Intent.MESSAGE_CONTENT:
            flags |= _FLAG_MESSAGE_CONTENT_LIMITED
        return flags

    @property
    def events(self) -> list[dict]:
        """Everything that happened, in order: REST calls (``kind == "rest"``), gateway
        dispatches (``"gateway.dispatch"``, with ``t`` and ``d``), interactions, notes."""
        return self.state.events

    @property
    def bot_connected(self) -> bool:
        return self.gateway.connected

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py at the stand-in for the duration of the block (restores after)."""
        import discord.gateway
        import discord.http
        import yarl

        old_base = discord.http.Route.BASE
        old_gw = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE = old_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gw

    # ------------------------------------------------------------------
    # waiting

    def _notify(self) -> None:
        self._change.set()
        self._change = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, *, what: Optional[str] = None) -> Any:
        """Wait until ``predicate()`` (no arguments) returns something truthy and return it.
        It is re-checked after every REST call, gateway event and interaction deadline, and
        every ``poll_interval`` seconds for predicates over other state (the bot's)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            change = self._change
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = "\n  ".join(_describe(e) for e in self.state.events[-8:])
                raise asyncio.TimeoutError(f"timed out after {timeout:g} s waiting for {what or 'the condition'}; "
                                           f"last events:\n  {recent}")
            try:
                async with asyncio.timeout(min(remaining, self.poll_interval)):
                    await change.wait()
            except TimeoutError:
                pass

    async def wait_until_bot_ready(self, timeout: float = 10.0) -> None:
        """The bot identified and was sent READY and a GUILD_CREATE for each of its guilds."""
        await self.wait_for(lambda: self.bot_connected, timeout, what="the bot to identify on the gateway")

    async def wait_for_message(self, channel: Any, predicate: Optional[Callable[[dict], Any]] = None, *,
                               timeout: float = 5.0) -> dict:
        """The first message (oldest first, existing ones included) in ``channel`` that matches."""
        pred = predicate or (lambda m: True)

        def find() -> Optional[dict]:
            return next((m for m in self.messages(channel) if pred(m)), None)

        return await self.wait_for(find, timeout, what=f"a matching message in channel {as_id(channel)}")

    async def wait_for_commands(self, names: Sequence[str], *, guild: Any = None, timeout: float = 5.0) -> list[dict]:
        """Wait until the bot has registered (synced) the named commands."""
        def ready() -> Optional[list]:
            have = {c["name"] for c in self.registered_commands(guild)}
            return self.registered_commands(guild) if set(names) <= have else None

        return await self.wait_for(ready, timeout, what=f"commands {list(names)} to be synced")

    # ------------------------------------------------------------------
    # building the world

    def add_user(self, name: str, *, bot: bool = False, global_name: Optional[str] = None) -> User:
        return self.state.add_user(name, bot=bot, global_name=global_name)

    def add_guild(self, name: str, *, owner: Optional[Who] = None, bot_joined: bool = True,
                  bot_permissions: Any = Perm.DEFAULT_BOT, everyone_permissions: Any = Perm.DEFAULT_EVERYONE,
                  locale: str = "en-US") -> Guild:
        """A guild with its @everyone role (id == guild id) and, unless bot_joined=False,
        the bot as a member holding a managed role with ``bot_permissions``. Every
        Discord guild has an owner (``owner_id``): the one given here, or a member
        "<name> owner" made for it (add_member(..., owner=True) hands it on)."""
        st = self.state
        gid = st.snowflake()
        guild = Guild(gid, name, joined_at=st.now_iso(), preferred_locale=locale)
        guild.roles[gid] = Role(gid, gid, "@everyone", perm_value(everyone_permissions), 0)
        st.guilds[gid] = guild
        if owner is not None:
            if isinstance(owner, str):
                self.add_member(guild, owner, owner=True)
            else:
                user = st.user(owner)
                if user.id not in guild.members:
                    self.add_member(guild, user, owner=True)
                guild.owner_id = user.id
        if guild.owner_id is None:
            self.add_member(guild, f"{name} owner", owner=True)
        if bot_joined:
            self._join_bot(guild, bot_permissions)
        st.record("world.guild", id=gid, name=name)
        return guild

    def _join_bot(self, guild: Guild, bot_permissions: Any = Perm.DEFAULT_BOT) -> None:
        st = self.state
        rid = st.snowflake()
        guild.roles[rid] = Role(rid, guild.id, st.bot_user.username, perm_value(bot_permissions),
                                position=len(guild.roles), managed=True, bot_id=st.bot_user.id)
        guild.members[st.bot_user.id] = Member(st.bot_user, guild.id, [rid], joined_at=st.now_iso())
        for session in self.gateway.sessions.values():
            if session.ready_sent:
                self.gateway._send_dispatch(session, "GUILD_CREATE", self._guild_create_payload(guild, session))

    def add_bot_to_guild(self, guild: Guild, *, bot_permissions: Any = Perm.DEFAULT_BOT) -> None:
        """The bot is invited later (dispatches GUILD_CREATE if it is connected)."""
        if self.state.bot_user.id not in guild.members:
            self._join_bot(guild, bot_permissions)

    def bot_member(self, guild: Guild) -> Member:
        return self.state.bot_member(guild)

    def bot_role(self, guild: Guild) -> Role:
        return next(r for r in guild.roles.values() if r.bot_id == self.state.bot_user.id)

    def add_channel(self, guild: Guild, name: str, *, type: int = ChannelType.GUILD_TEXT, topic: Optional[str] = None,
                    overwrites: Optional[dict] = None, nsfw: bool = False, parent: Any = None) -> Channel:
        """``overwrites``: {role_or_member: {"allow": perms, "deny": perms}} (perms int or discord.Permissions)."""
        st = self.state
        ch = Channel(st.snowflake(), type, name, guild_id=guild.id, position=len(guild.channels), topic=topic,
                     nsfw=nsfw, parent_id=as_id(parent) if parent is not None else None)
        for target, ow in (overwrites or {}).items():
            ch.overwrites.append(self._overwrite(guild, target, ow.get("allow"), ow.get("deny")))
        guild.channels[ch.id] = ch
        st.channels[ch.id] = ch
        self.gateway.dispatch("CHANNEL_CREATE", lambda s: ch.payload(), intent=Intent.GUILDS)
        st.record("world.channel", id=ch.id, name=name, guild_id=guild.id)
        return ch

    def _overwrite(self, guild: Guild, target: Any, allow: Any, deny: Any) -> dict:
        if isinstance(target, Role):
            kind = 0
        elif isinstance(target, (Member, User)):
            kind = 1
        elif isinstance(target, Guild):  # @everyone
            target, kind = guild.everyone, 0
        else:
            kind = 0 if as_id(target) in guild.roles else 1
        return {"id": as_id(target), "type": kind, "allow": perm_value(allow), "deny": perm_value(deny)}

    def set_overwrite(self, channel: Channel, target: Any, *, allow: Any = 0, deny: Any = 0) -> None:
        guild = self.state.guild(channel)
        ow = self._overwrite(guild, target, allow, deny)
        channel.overwrites = [o for o in channel.overwrites if o["id"] != ow["id"]] + [ow]
        self.gateway.dispatch("CHANNEL_UPDATE", lambda s: channel.payload(), intent=Intent.GUILDS)
        self.state.changed()

    def add_role(self, guild: Guild, name: str, *, permissions: Any = 0, color: int = 0, hoist: bool = False,
                 mentionable: bool = False) -> Role:
        st = self.state
        role = Role(st.snowflake(), guild.id, name, perm_value(permissions), position=len(guild.roles), color=color,
                    hoist=hoist, mentionable=mentionable)
        guild.roles[role.id] = role
        self.gateway.dispatch("GUILD_ROLE_CREATE", lambda s: {"guild_id": str(guild.id), "role": role.payload()},
                              intent=Intent.GUILDS)
        st.record("world.role", id=role.id, name=name, permissions=role.permissions)
        return role

    def set_role_permissions(self, role: Role, permissions: Any) -> None:
        role.permissions = perm_value(permissions)
        self.gateway.dispatch("GUILD_ROLE_UPDATE", lambda s: {"guild_id": str(role.guild_id), "role": role.payload()},
                              intent=Intent.GUILDS)
        self.state.changed()

    def add_member(self, guild: Guild, user: Union[str, User, Member], *, roles: Sequence[Any] = (), bot: bool = False,
                   owner: bool = False, nick: Optional[str] = None) -> Member:
        """A member (a new user when ``user`` is a name). Dispatches GUILD_MEMBER_ADD to a
        connected bot that asked for the GUILD_MEMBERS intent."""
        st = self.state
        if isinstance(user, str):
            u = st.add_user(user, bot=bot)
        else:
            u = st.user(user)
        if u.id in guild.members:
            raise StandinError(f"{u.username} is already a member of {guild.name}")
        role_ids = [as_id(r) for r in roles]
        for rid in role_ids:
            if rid not in guild.roles or rid == guild.id:
                raise StandinError(f"role {rid} is not a role of {guild.name}")
        member = Member(u, guild.id, role_ids, joined_at=st.now_iso(), nick=nick)
        guild.members[u.id] = member
        if owner:
            guild.owner_id = u.id
        self.gateway.dispatch("GUILD_MEMBER_ADD", lambda s: {**member.payload(), "guild_id": str(guild.id)},
                              intent=Intent.GUILD_MEMBERS)
        st.record("world.member", id=u.id, name=u.username, guild_id=guild.id, roles=role_ids)
        return member

    def set_member_roles(self, member: Member, roles: Sequence[Any]) -> None:
        guild = self.state.guild(member)
        member.roles = [as_id(r) for r in roles]
        self.gateway.dispatch("GUILD_MEMBER_UPDATE", lambda s: {**member.payload(), "guild_id": str(guild.id)},
                              intent=Intent.GUILD_MEMBERS)
        self.state.changed()

    def remove_member(self, member: Member) -> None:
        guild = self.state.guild(member)
        guild.members.pop(member.id, None)
        self.gateway.dispatch("GUILD_MEMBER_REMOVE",
                              lambda s: {"guild_id": str(guild.id), "user": member.user.payload()},
                              intent=Intent.GUILD_MEMBERS)
        self.state.changed()

    def set_owner(self, guild: Guild, member: Member) -> None:
        guild.owner_id = member.id
        self.gateway.dispatch("GUILD_UPDATE", lambda s: self.state.guild_payload(guild), intent=Intent.GUILDS)
        self.state.changed()

    def add_emoji(self, guild: Guild, name: str, *, animated: bool = False) -> dict:
        eid = self.state.snowflake()
        emoji = {"id": str(eid), "name": name, "roles": [], "require_colons": True, "managed": False,
                 "animated": animated, "available": True}
        guild.emojis[eid] = emoji
        self.gateway.dispatch("GUILD_EMOJIS_UPDATE",
                              lambda s: {"guild_id": str(guild.id), "emojis": list(guild.emojis.values())},
                              intent=1 << 3)
        return emoji

    def permissions(self, who: Who, channel: Optional[Channel] = None, *, guild: Optional[Guild] = None) -> int:
        """What Discord computes: guild-level (with ``guild``) or in ``channel``."""
        user = self.state.user(who)
        if channel is not None:
            return self.state.permissions_for(channel, user)
        if guild is None:
            raise StandinError("give a channel or a guild")
        return self.state.base_permissions(guild, self.state.member(guild, user.id))

    # ------------------------------------------------------------------
    # reading state

    def registered_commands(self, guild: Any = None) -> list[dict]:
        """Commands the bot registered: global ones (guild=None) or one guild's."""
        key = None if guild is None else as_id(guild)
        return list(self.state.commands.get(key, {}).values())

    def messages(self, channel: Any, *, include_deleted: bool = False) -> list[dict]:
        """Messages in a channel, oldest first, as test views: id, content, embeds,
        attachments (each with ``data`` bytes), reactions ([{emoji, count, user_ids, me}]),
        edited_timestamp, author, flags, ephemeral, deleted, loading."""
        ch = self.state.channel(channel)
        if include_deleted:
            ids = sorted(int(m["id"]) for m in self.state.messages.values()
                         if int(m["channel_id"]) == ch.id and not m.get("_ephemeral"))
        else:
            ids = list(ch.message_ids)
        return [self.state.view_message(self.state.messages[i]) for i in ids]

    def pings(self, message_id: Any) -> dict:
        """Whom the message notified: {"users": [...], "roles": [...], "everyone": bool}."""
        return self.state.messages[as_id(message_id)].get("_pings") or {"users": [], "roles": [], "everyone": False}

    def message(self, message_id: Any) -> dict:
        msg = self.state.messages.get(as_id(message_id))
        if msg is None:
            raise StandinError(f"no message {message_id}")
        return self.state.view_message(msg)

    def attachment_bytes(self, url_or_id: Any) -> bytes:
        if isinstance(url_or_id, str) and "/" in url_or_id:
            url_or_id = url_or_id.rstrip("/").split("/")[-2]
        return self.state.blobs[as_id(url_or_id)]

    def dm_channel(self, user: Who) -> Channel:
        return self._dm_channel(self.state.user(user))

    # ------------------------------------------------------------------
    # members acting

    def _default_channel(self, who: Who, channel: Any) -> Channel:
        if channel is not None:
            return self.state.channel(channel)
        if not isinstance(who, Member):
            raise StandinError("pass channel=... (or a Member, to use their guild's first visible text channel)")
        guild = self.state.guild(who)
        for ch in guild.channels.values():
            if ch.type == ChannelType.GUILD_TEXT and self.state.channel_permissions(ch, who) & Perm.VIEW_CHANNEL:
                return ch
        raise StandinError(f"{who.name} can see no text channel in {guild.name}")

    def _invoker(self, who: Who, channel: Channel) -> tuple[User, Optional[Member], Optional[Guild]]:
        user = self.state.user(who)
        if channel.type == ChannelType.DM:
            return user, None, None
        guild = self.state.guilds[channel.guild_id]  # type: ignore[index]
        member = guild.members.get(user.id)
        if member is None:
            raise StandinError(f"{user.username} is not a member of {guild.name}")
        perms = self.state.channel_permissions(channel, member)
        if not perms & Perm.VIEW_CHANNEL:
            raise StandinError(f"{user.username} cannot see #{channel.name}")
        return user, member, guild

    def _command_for(self, name: str, guild: Optional[Guild], member: Optional[Member], channel: Channel) -> dict:
        cmd = self.state.find_command(guild.id if guild else None, name)
        if cmd is None:
            global_names = [c["name"] for c in self.registered_commands()]
            guild_names = [c["name"] for c in self.registered_commands(guild)] if guild else []
            raise StandinError(f"/{name} is not registered with Discord (global: {global_names}, "
                               f"this guild: {guild_names}); did the bot sync its command tree?")
        if guild is not None and member is not None:
            perms = self.state.channel_permissions(channel, member)
            if not perms & Perm.USE_APPLICATION_COMMANDS:
                raise StandinError(f"{member.name} may not use application commands in #{channel.name}")
            dmp = cmd.get("default_member_permissions")
            if dmp is not None:
                need = int(dmp)
                have = self.state.base_permissions(guild, member)
                if have != Perm.ALL and (need == 0 or have & need != need):
                    raise StandinError(f"/{name} is hidden from {member.name}: it needs permissions {need} "
                                       f"(default_member_permissions), the member has {have}")
            contexts = cmd.get("contexts")
            if contexts is not None and 0 not in contexts:
                raise StandinError(f"/{name} is not available in guilds (contexts={contexts})")
        elif guild is None:
            contexts = cmd.get("contexts")
            if cmd.get("dm_permission") is False or (contexts is not None and 1 not in contexts):
                raise StandinError(f"/{name} is not available in DMs")
        return cmd

    async def invoke(self, who: Who, name: str, *, channel: Any = None, options: Optional[dict] = None,
                     subcommand: Union[str, Sequence[str], None] = None, attachments: Optional[Sequence[Any]] = None,
                     locale: str = "en-US") -> StandinInteraction:
        """A member runs /name in ``channel``. Options are checked against the registered
        command (unknown, required, type, choices, bounds) and StandinError is raised where
        the Discord client would not let the member send it. ``subcommand``: "create" or
        "group sub". Attachments: (filename, bytes[, content_type]) in ``options`` or in
        ``attachments`` (filling the ATTACHMENT options in order). Without ``channel``: the
        first text channel of the member's guild that they can see."""
        ch = self._default_channel(who, channel)
        user, member, guild = self._invoker(who, ch)
        cmd = self._command_for(name, guild, member, ch)
        opts, resolved = OptionBuilder(self, guild, ch, user).build(cmd, options, subcommand, attachments, None)
        data: dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": cmd.get("type", 1)}
        if opts:
            data["options"] = opts
        if resolved:
            data["resolved"] = resolved
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        ix = self._create_interaction(ixm.COMMAND, user, member, guild, ch, data, cmd, name, locale=locale)
        await asyncio.sleep(0)
        return ix

    async def autocomplete(self, who: Who, name: str, *, focused: str, channel: Any = None,
                           options: Optional[dict] = None, subcommand: Union[str, Sequence[str], None] = None,
                           locale: str = "en-US") -> list[dict]:
        """A member types into option ``focused`` (its current text in ``options``, default "").
        Returns the choices the bot answered; InteractionFailed if it did not within 3 s."""
        ch = self._default_channel(who, channel)
        user, member, guild = self._invoker(who, ch)
        cmd = self._command_for(name, guild, member, ch)
        opts, resolved = OptionBuilder(self, guild, ch, user).build(cmd, options, subcommand, None, focused)
        data: dict[str, Any] = {"id": cmd["id"], "name": cmd["name"], "type": 1, "options": opts}
        if resolved:
            data["resolved"] = resolved
        if cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        ix = self._create_interaction(ixm.AUTOCOMPLETE, user, member, guild, ch, data, cmd, name, locale=locale)
        await ix.wait_for_ack(self.ack_timeout + 1.0)
        return list(ix.choices or [])

    async def click(self, who: Who, message: Any, custom_id: str, *, component_type: int = 2,
                    values: Optional[list] = None, locale: str = "en-US") -> StandinInteraction:
        """A member presses a button (or picks from a select menu) on a message."""
        msg = self.state.messages.get(as_id(message))
        if msg is None or msg.get("_deleted"):
            raise StandinError(f"no message {message}")
        ch = self.state.channels[int(msg["channel_id"])]
        user, member, guild = self._invoker(who, ch)
        ids = _custom_ids(msg.get("components") or [])
        if custom_id not in ids:
            raise StandinError(f"message {msg['id']} has no component {custom_id!r} (has {ids})")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        ix = self._create_interaction(ixm.COMPONENT, user, member, guild, ch, data, None, custom_id,
                                      locale=locale, message=msg)
        await asyncio.sleep(0)
        return ix

    def _create_interaction(self, itype: int, user: User, member: Optional[Member], guild: Optional[Guild],
                            channel: Channel, data: dict, cmd: Optional[dict], name: str, *, locale: str,
                            message: Optional[dict] = None) -> StandinInteraction:
        if not self.bot_connected:
            raise StandinError("the bot is not connected to the gateway: the member would see "
                               "'The application did not respond'")
        st = self.state
        iid = st.snowflake()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(60)
        bot_perms = st.permissions_for(channel, st.bot_user)
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(st.application_id),
            "type": itype,
            "data": data,
            "token": token,
            "version": 1,
            "locale": locale,
            "channel_id": str(channel.id),
            "app_permissions": str(bot_perms),
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": FILE_SIZE_LIMIT,
        }
        if guild is not None and member is not None:
            perms = st.channel_permissions(channel, member)
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": guild.preferred_locale, "features": []},
                guild_locale=guild.preferred_locale,
                member={**member.payload(), "permissions": str(perms)},
                channel={**channel.payload(), "permissions": str(perms)},
                authorizing_integration_owners={"0": str(guild.id)},
                context=0,
            )
        else:
            payload.update(user=user.payload(), channel=channel.payload(),
                           authorizing_integration_owners={"0": "0"}, context=1)
        if message is not None:
            payload["message"] = st.render_message(message)
        ix = StandinInteraction(self, id=iid, token=token, type=itype, user=user, member=member, guild=guild,
                                channel=channel, payload=payload, command=cmd, name=name,
                                message_id=int(message["id"]) if message else None)
        self.interactions[iid] = ix
        self.interactions_by_token[token] = ix
        loop = asyncio.get_running_loop()
        ix.dispatched_at = time.monotonic()
        ix.deadline = ix.dispatched_at + self.ack_timeout
        self._timers.append(loop.call_later(self.ack_timeout + 0.01, self.state.changed))
        self.gateway.dispatch("INTERACTION_CREATE", payload)
        st.record("interaction.create", id=iid, type=itype, name=name, user=user.username,
                  options=data.get("options"))
        return ix

    async def react(self, who: Who, channel: Any, message: Any, emoji: str) -> None:
        """A member adds a reaction (MESSAGE_REACTION_ADD goes to a connected bot)."""
        ch = self.state.channel(channel)
        user, member, guild = self._invoker(who, ch)
        msg = self._member_message(ch, message)
        key, em = self._emoji(ch, emoji)
        if guild is not None:
            perms = self.state.channel_permissions(ch, member)  # type: ignore[arg-type]
            if not perms & Perm.READ_MESSAGE_HISTORY:
                raise StandinError(f"{user.username} cannot read the history of #{ch.name}")
            if not self.state.has_reaction(msg, key) and not perms & Perm.ADD_REACTIONS:
                raise StandinError(f"{user.username} cannot add new reactions in #{ch.name}")
        self._add_reaction(ch, msg, key, em, user)
        await asyncio.sleep(0)

    async def unreact(self, who: Who, channel: Any, message: Any, emoji: str) -> None:
        """A member removes their reaction (MESSAGE_REACTION_REMOVE goes to a connected bot)."""
        ch = self.state.channel(channel)
        user, _, _ = self._invoker(who, ch)
        msg = self._member_message(ch, message)
        key, _ = self._emoji(ch, emoji)
        self._remove_reaction(ch, msg, key, user)
        await asyncio.sleep(0)

    async def post_message(self, who: Who, channel: Any, content: str = "", *,
                           attachments: Optional[Sequence[tuple]] = None, reply_to: Any = None) -> dict:
        """A member writes in a channel (MESSAGE_CREATE, content hidden from a bot
        without the message content intent unless it mentions the bot)."""
        ch = self.state.channel(channel)
        user, member, guild = self._invoker(who, ch)
        if guild is not None and not self.state.channel_permissions(ch, member) & Perm.SEND_MESSAGES:  # type: ignore
            raise StandinError(f"{user.username} cannot send messages in #{ch.name}")
        atts = []
        for a in attachments or []:
            filename, data = a[0], a[1]
            ctype = a[2] if len(a) > 2 else None
            atts.append(self.state.store_attachment(ch.id, filename, data if isinstance(data, bytes) else data.encode(),
                                                    ctype, self.cdn_base))
        extra = {}
        if reply_to is not None:
            extra["message_reference"] = {"message_id": str(as_id(reply_to)), "channel_id": str(ch.id)}
        msg = self.state.new_message(ch, user, content=content, attachments=atts, type=19 if reply_to else 0,
                                     extra=extra)
        self._dispatch_message("MESSAGE_CREATE", msg)
        await asyncio.sleep(0)
        return self.state.view_message(msg)

    async def delete_message(self, channel: Any, message: Any, *, by: Optional[Who] = None) -> None:
        """A member (the author, or one with Manage Messages) deletes a message."""
        ch = self.state.channel(channel)
        msg = self._member_message(ch, message)
        if by is not None:
            user, member, guild = self._invoker(by, ch)
            if int(msg["author"]["id"]) != user.id and guild is not None:
                if not self.state.channel_permissions(ch, member) & Perm.MANAGE_MESSAGES:  # type: ignore[arg-type]
                    raise StandinError(f"{user.username} cannot delete others' messages in #{ch.name}")
        self._delete_message(msg)
        await asyncio.sleep(0)

    def _member_message(self, ch: Channel, message: Any) -> dict:
        try:
            return self.state.message(ch, message)
        except ApiError:
            raise StandinError(f"no message {message!r} in #{ch.name}") from None

    def _emoji(self, ch: Channel, emoji: Any) -> tuple[str, dict]:
        if isinstance(emoji, dict):
            emoji = emoji["name"] if emoji.get("id") is None else f"{emoji['name']}:{emoji['id']}"
        try:
            return self.state.parse_emoji(ch, str(emoji))
        except ApiError:
            raise StandinError(f"unknown emoji {emoji!r}") from None

    # ------------------------------------------------------------------
    # gateway simulation hooks

    async def disconnect_bot(self, *, code: int = 4000, resumable: bool = True) -> None:
        """Cut the bot's gateway connection (it reconnects and RESUMEs, or re-IDENTIFYs
        when resumable=False). Events that happen meanwhile are replayed on RESUME."""
        await self.gateway.drop(code=code, resumable=resumable)

    def send_reconnect(self) -> None:
        self.gateway.send_reconnect()

    def inject_error(self, method: str, path: str, status: int, *, code: int = 0, message: Optional[str] = None,
                     retry_after: float = 0.5, is_global: bool = False, times: int = 1) -> None:
        """The next ``times`` REST calls matching ``method`` and the regex ``path`` (after
        /api/v10, e.g. r"/channels/\\d+/messages") get this error. 429s come with the
        ``Via`` header and ``retry_after`` body that discord.py needs to wait and retry."""
        self._injected.append({"method": method.upper(), "path": re.compile(path), "status": status, "code": code,
                               "message": message, "retry_after": retry_after, "global": is_global, "times": times})

    def hold(self, method: str, path: str) -> "Hold":
        """The next REST call matching ``method`` and the regex ``path`` waits (as on a slow
        Discord) until ``release()``: a test can order what happens meanwhile without sleeping."""
        held = Hold(self, method, path)
        self._holds.append(held)
        return held

    def _hold_for(self, method: str, path: str) -> Optional["Hold"]:
        return next((h for h in self._holds if h.method == method and h.path.fullmatch(path)), None)

    def _take_injected(self, method: str, path: str) -> Optional[tuple[int, web.Response]]:
        for inj in self._injected:
            if inj["times"] > 0 and inj["method"] == method and inj["path"].fullmatch(path):
                inj["times"] -= 1
                status = inj["status"]
                if status == 429:
                    body = {"message": inj["message"] or "You are being rate limited.",
                            "retry_after": inj["retry_after"], "global": inj["global"], "code": inj["code"]}
                    headers = {"Via": "1.1 google", "Retry-After": str(max(1, int(inj["retry_after"] + 0.999))),
                               "X-RateLimit-Scope": "global" if inj["global"] else "user"}
                    if inj["global"]:
                        headers["X-RateLimit-Global"] = "true"
                    return status, json_response(status, body, headers)
                body = {"message": inj["message"] or f"{status}: injected", "code": inj["code"]}
                return status, json_response(status, body)
        return None

    # ------------------------------------------------------------------
    # internals used by rest / gateway

    def _guild_create_payload(self, guild: Guild, session: Session) -> dict:
        if session.has(Intent.GUILD_MEMBERS):
            members = list(guild.members.values())
        else:
            members = [guild.members[self.state.bot_user.id]]
        return self.state.guild_payload(guild, members=members, full=True)

    def _on_rest_error(self, req: Any, exc: ApiError, entry: dict) -> None:
        token = req.params.get("token")
        ix = self.interactions_by_token.get(token) if token else None
        if ix is None and "interaction_id" in req.params and str(req.params["interaction_id"]).isdigit():
            ix = self.interactions.get(int(req.params["interaction_id"]))
        if ix is not None:
            ix.errors.append({"status": exc.status, "code": exc.code, "message": exc.message,
                              "route": f"{req.method} {req.path}"})
            self.state.changed()

    def _content_restricted(self, msg: dict) -> bool:
        channel = self.state.channels[int(msg["channel_id"])]
        bot_id = str(self.state.bot_user.id)
        if channel.type == ChannelType.DM or msg["author"]["id"] == bot_id:
            return False
        return not any(m["id"] == bot_id for m in msg.get("mentions", []))

    def _redact_for_rest(self, msg: dict) -> bool:
        return not self.privileged_intents & Intent.MESSAGE_CONTENT and self._content_restricted(msg)

    def _dispatch_message(self, event: str, msg: dict) -> None:
        if msg.get("_ephemeral") or msg.get("_deleted"):
            return
        channel = self.state.channels[int(msg["channel_id"])]
        intent = Intent.GUILD_MESSAGES if channel.guild_id else Intent.DIRECT_MESSAGES
        restricted = self._content_restricted(msg)

        def build(session: Session) -> dict:
            d = self.state.render_message(msg, redact=restricted and not session.has(Intent.MESSAGE_CONTENT))
            if channel.guild_id is not None:
                d["guild_id"] = str(channel.guild_id)
                member = self.state.guilds[channel.guild_id].members.get(int(msg["author"]["id"]))
                if member is not None and "webhook_id" not in msg:
                    d["member"] = member.payload(with_user=False)
            return d

        self.gateway.dispatch(event, build, intent=intent)

    def _delete_message(self, msg: dict) -> None:
        self.state.delete_message(msg)
        if not msg.get("_ephemeral"):
            channel = self.state.channels[int(msg["channel_id"])]
            d = {"id": msg["id"], "channel_id": msg["channel_id"]}
            if channel.guild_id is not None:
                d["guild_id"] = str(channel.guild_id)
            self.gateway.dispatch("MESSAGE_DELETE", d,
                                  intent=Intent.GUILD_MESSAGES if channel.guild_id else Intent.DIRECT_MESSAGES)
        self.state.changed()

    def _reaction_event(self, channel: Channel, msg: dict, user: User, emoji: dict) -> dict:
        d: dict[str, Any] = {
            "user_id": str(user.id),
            "channel_id": str(channel.id),
            "message_id": msg["id"],
            "emoji": dict(emoji),
            "burst": False,
            "type": 0,
        }
        if channel.guild_id is not None:
            d["guild_id"] = str(channel.guild_id)
        return d

    def _add_reaction(self, channel: Channel, msg: dict, key: str, emoji: dict, user: User) -> None:
        if not self.state.add_reaction(msg, key, emoji, user.id):
            return
        self.state.record("reaction.add", message_id=msg["id"], emoji=key, user=user.username)
        if msg.get("_ephemeral"):
            return
        d = self._reaction_event(channel, msg, user, emoji)
        d.update(message_author_id=msg["author"]["id"], burst_colors=[])
        if channel.guild_id is not None:
            member = self.state.guilds[channel.guild_id].members.get(user.id)
            if member is not None:
                d["member"] = member.payload()
        intent = Intent.GUILD_MESSAGE_REACTIONS if channel.guild_id else Intent.DIRECT_MESSAGE_REACTIONS
        self.gateway.dispatch("MESSAGE_REACTION_ADD", d, intent=intent)

    def _remove_reaction(self, channel: Channel, msg: dict, key: str, user: User) -> None:
        emoji = self.state.remove_reaction(msg, key, user.id)
        if emoji is None:
            return
        self.state.record("reaction.remove", message_id=msg["id"], emoji=key, user=user.username)
        if msg.get("_ephemeral"):
            return
        intent = Intent.GUILD_MESSAGE_REACTIONS if channel.guild_id else Intent.DIRECT_MESSAGE_REACTIONS
        self.gateway.dispatch("MESSAGE_REACTION_REMOVE", self._reaction_event(channel, msg, user, emoji), intent=intent)

    def _dispatch_reaction_clear(self, event: str, channel: Channel, msg: dict, emoji: Optional[dict]) -> None:
        d: dict[str, Any] = {"channel_id": str(channel.id), "message_id": msg["id"]}
        if channel.guild_id is not None:
            d["guild_id"] = str(channel.guild_id)
        if emoji is not None:
            d["emoji"] = emoji
        intent = Intent.GUILD_MESSAGE_REACTIONS if channel.guild_id else Intent.DIRECT_MESSAGE_REACTIONS
        self.gateway.dispatch(event, d, intent=intent)
        self.state.changed()

    def _dm_channel(self, user: User) -> Channel:
        for ch in self.state.channels.values():
            if ch.type == ChannelType.DM and ch.recipients and ch.recipients[0].id == user.id:
                return ch
        ch = Channel(self.state.snowflake(), ChannelType.DM, None, recipients=[user])
        self.state.channels[ch.id] = ch
        return ch

    def _interaction_message(self, ix: StandinInteraction, changes: dict, *, ephemeral: bool, loading: bool,
                             original: bool) -> dict:
        st = self.state
        app = str(st.application_id)
        meta: dict[str, Any] = {
            "id": str(ix.id),
            "type": ix.type,
            "user": ix.user.payload(),
            "authorizing_integration_owners": ix.payload["authorizing_integration_owners"],
        }
        if ix.type == ixm.COMMAND:
            meta.update(name=ix.name, command_type=1)
        if ix.message_id is not None:
            meta["interacted_message_id"] = str(ix.message_id)
        if not original and ix.response_id is not None:
            meta["original_response_message_id"] = str(ix.response_id)
        legacy: dict[str, Any] = {"id": str(ix.id), "type": ix.type, "name": ix.name, "user": ix.user.payload()}
        if ix.member is not None:
            legacy["member"] = ix.member.payload(with_user=False)
        flags = (MESSAGE_FLAG_EPHEMERAL if ephemeral else 0) | (MESSAGE_FLAG_LOADING if loading else 0)
        flags |= int(changes.get("flags") or 0) & 4
        msg = st.new_message(
            ix.channel, st.bot_user,
            content=changes.get("content", ""),
            embeds=changes.get("embeds"),
            attachments=changes.get("attachments"),
            flags=flags,
            type=20 if (original and ix.type == ixm.COMMAND) else 0,
            extra={"webhook_id": app, "application_id": app, "interaction_metadata": meta, "interaction": legacy,
                   "_pings": changes.get("_pings")},
            ephemeral=ephemeral,
        )
        msg["components"] = changes.get("components", [])
        if original:
            ix.response_id = int(msg["id"])
        else:
            ix.followup_ids.append(int(msg["id"]))
        self._dispatch_message("MESSAGE_CREATE", msg)
        st.record("interaction.message", id=ix.id, message_id=msg["id"], original=original, ephemeral=ephemeral,
                  loading=loading, content=msg["content"])
        return msg

    async def _serve_attachment(self, request: web.Request) -> web.StreamResponse:
        try:
            aid = int(request.match_info["attachment_id"])
        except ValueError:
            aid = -1
        meta = self.state.attachment_meta.get(aid)
        if meta is None or meta["filename"] != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        self.state.record("cdn", attachment_id=aid, filename=meta["filename"])
        return web.Response(body=self.state.blobs[aid], headers={"Content-Type": meta["content_type"]})

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        self.unknown_routes.append(f"{request.method} {request.path}")
        self.state.record("rest.unknown", method=request.method, path=request.path, status=404)
        log.warning("discord stand-in: no route for %s %s", request.method, request.path)
        return json_response(404, {"message": "404: Not Found", "code": 0})


class Hold:
    """One held REST call: ``await arrived.wait()``, then ``release()``."""

    def __init__(self, standin: DiscordStandin, method: str, path: str):
        self.standin, self.method, self.path = standin, method.upper(), re.compile(path)
        self.arrived = asyncio.Event()
        self._released = asyncio.Event()

    async def wait(self) -> None:
        self.standin._holds.remove(self)  # only the first matching call waits
        self.arrived.set()
        await self._released.wait()

    def release(self) -> None:
        if self in self.standin._holds:
            self.standin._holds.remove(self)
        self._released.set()


def _custom_ids(components: list) -> list[str]:
    out = []
    for c in components:
        if c.get("custom_id"):
            out.append(c["custom_id"])
        out += _custom_ids(c.get("components") or [])
    return out


def _describe(e: dict) -> str:
    kind = e.get("kind")
    if kind == "rest":
        extra = f" code={e['code']} {e.get('error')}" if e.get("code") else ""
        return f"REST {e['method']} {e['path']} -> {e['status']}{extra}"
    if kind == "gateway.dispatch":
        return f"GATEWAY {e['t']} s={e['s']}"
    rest = {k: v for k, v in e.items() if k not in ("n", "at", "kind", "d")}
    return f"{kind} {rest}"


def format_events(events: Sequence[dict]) -> str:
    """One line per event, for transcripts and failure messages."""
    return "\n".join(_describe(e) for e in events)


__all__ = ["DiscordStandin", "InteractionFailed", "StandinError", "StandinInteraction", "format_events"]
