"""In-memory state of the Discord stand-in: users, guilds, roles, channels,
members, messages, application commands, and Discord's permission maths.

Everything is plain Python objects and dicts; ids are snowflakes made from
the clock and a counter, so ``created_at`` on the discord.py side is real.
"""

from __future__ import annotations

import datetime as _dt
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import emoji as emoji_lib

DISCORD_EPOCH_MS = 1420070400000



def _copy_json(value: Any) -> Any:
    """A copy of JSON-shaped data (dicts, lists, scalars): copy.deepcopy's
    memo and dispatch made it most of the stand-in's cost per response."""
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value

class Perm:
    """Permission bits (https://discord.com/developers/docs/topics/permissions)."""

    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_AUDIT_LOG = 1 << 7
    PRIORITY_SPEAKER = 1 << 8
    STREAM = 1 << 9
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    SEND_TTS_MESSAGES = 1 << 12
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CONNECT = 1 << 20
    SPEAK = 1 << 21
    USE_VAD = 1 << 25
    CHANGE_NICKNAME = 1 << 26
    MANAGE_NICKNAMES = 1 << 27
    MANAGE_ROLES = 1 << 28
    MANAGE_WEBHOOKS = 1 << 29
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    USE_EXTERNAL_STICKERS = 1 << 37
    SEND_MESSAGES_IN_THREADS = 1 << 38
    MODERATE_MEMBERS = 1 << 40

    # what discord.Permissions.all() is in discord.py 2.7
    ALL = 8866461766385663

    DEFAULT_EVERYONE = (
        CREATE_INSTANT_INVITE | ADD_REACTIONS | STREAM | VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS
        | ATTACH_FILES | READ_MESSAGE_HISTORY | MENTION_EVERYONE | USE_EXTERNAL_EMOJIS | CONNECT | SPEAK
        | USE_VAD | CHANGE_NICKNAME | USE_APPLICATION_COMMANDS | CREATE_PUBLIC_THREADS
        | CREATE_PRIVATE_THREADS | USE_EXTERNAL_STICKERS | SEND_MESSAGES_IN_THREADS
    )
    # what a typical invite link for a curation bot grants its managed role
    DEFAULT_BOT = (
        VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY | ADD_REACTIONS
        | USE_EXTERNAL_EMOJIS | MANAGE_MESSAGES | USE_APPLICATION_COMMANDS | SEND_MESSAGES_IN_THREADS
    )


class Intent:
    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


class ChannelType:
    GUILD_TEXT = 0
    DM = 1
    GUILD_VOICE = 2
    GUILD_CATEGORY = 4
    GUILD_ANNOUNCEMENT = 5


class OptionType:
    SUB_COMMAND = 1
    SUB_COMMAND_GROUP = 2
    STRING = 3
    INTEGER = 4
    BOOLEAN = 5
    USER = 6
    CHANNEL = 7
    ROLE = 8
    MENTIONABLE = 9
    NUMBER = 10
    ATTACHMENT = 11


MESSAGE_FLAG_SUPPRESS_EMBEDS = 1 << 2
MESSAGE_FLAG_EPHEMERAL = 1 << 6
MESSAGE_FLAG_LOADING = 1 << 7

FILE_SIZE_LIMIT = 10 * 1024 * 1024  # bots without a boosted guild, 2024+


class StandinError(Exception):
    """A test asked the stand-in for something a real Discord user could not do
    (unknown command, missing permission, bad option...)."""


class ApiError(Exception):
    """A REST error answered the way Discord answers it."""

    def __init__(self, status: int, code: int, message: str, errors: Optional[dict] = None):
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> dict:
        out: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            out["errors"] = self.errors
        return out


def form_error(path: str, code: str, message: str) -> ApiError:
    """A 400 Invalid Form Body with Discord's nested error shape."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(path.split(".")):
        errors = {part: errors}
    return ApiError(400, 50035, "Invalid Form Body", errors)


def iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat()


def as_id(obj: Any) -> int:
    """Accept a model object, a payload dict or an int/str id."""
    if obj is None:
        raise StandinError("expected an object or id, got None")
    if isinstance(obj, dict):
        return int(obj["id"])
    if hasattr(obj, "id"):
        return int(obj.id)
    return int(obj)


def perm_value(p: Any) -> int:
    if p is None:
        return 0
    if hasattr(p, "value"):  # discord.Permissions
        return int(p.value)
    return int(p)


# ---------------------------------------------------------------------------
# Models


@dataclass(eq=False)
class User:
    id: int
    username: str
    bot: bool = False
    global_name: Optional[str] = None

    @property
    def name(self) -> str:
        return self.username

    def payload(self) -> dict:
        out = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "avatar_decoration_data": None,
            "public_flags": 0,
            "flags": 0,
        }
        if self.bot:
            out["bot"] = True
        return out


@dataclass(eq=False)
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int
    color: int = 0
    hoist: bool = False
    mentionable: bool = False
    managed: bool = False
    bot_id: Optional[int] = None

    def payload(self) -> dict:
        out = {
            "id": str(self.id),
            "name": self.name,
            "color": self.color,
            "colors": {"primary_color": self.color, "secondary_color": None, "tertiary_color": None},
            "hoist": self.hoist,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": self.mentionable,
            "flags": 0,
        }
        if self.bot_id is not None:
            out["tags"] = {"bot_id": str(self.bot_id)}
        return out


@dataclass(eq=False)
class Channel:
    id: int
    type: int
    name: Optional[str]
    guild_id: Optional[int] = None
    position: int = 0
    topic: Optional[str] = None
    nsfw: bool = False
    parent_id: Optional[int] = None
    # [{"id": role_or_user_id, "type": 0 (role) | 1 (member), "allow": int, "deny": int}]
    overwrites: list = field(default_factory=list)
    recipients: list = field(default_factory=list)  # DM: [User]
    message_ids: list = field(default_factory=list)
    last_message_id: Optional[int] = None

    def payload(self) -> dict:
        if self.type == ChannelType.DM:
            return {
                "id": str(self.id),
                "type": self.type,
                "last_message_id": str(self.last_message_id) if self.last_message_id else None,
                "recipients": [u.payload() for u in self.recipients],
                "flags": 0,
            }
        out = {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [
                {"id": str(o["id"]), "type": o["type"], "allow": str(o["allow"]), "deny": str(o["deny"])}
                for o in self.overwrites
            ],
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "flags": 0,
        }
        if self.type in (ChannelType.GUILD_TEXT, ChannelType.GUILD_ANNOUNCEMENT):
            out.update(
                topic=self.topic,
                nsfw=self.nsfw,
                rate_limit_per_user=0,
                last_message_id=str(self.last_message_id) if self.last_message_id else None,
            )
        elif self.type == ChannelType.GUILD_VOICE:
            out.update(bitrate=64000, user_limit=0, rtc_region=None, nsfw=False, rate_limit_per_user=0)
        return out


@dataclass(eq=False)
class Member:
    user: User
    guild_id: int
    roles: list  # role ids, @everyone not included
    joined_at: str
    nick: Optional[str] = None

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def name(self) -> str:
        return self.user.username

    def payload(self, *, with_user: bool = True) -> dict:
        out = {
            "roles": [str(r) for r in self.roles],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            out["user"] = self.user.payload()
        return out


@dataclass(eq=False)
class Guild:
    id: int
    name: str
    joined_at: str
    owner_id: Optional[int] = None
    preferred_locale: str = "en-US"
    roles: dict = field(default_factory=dict)  # id -> Role (insertion ordered)
    channels: dict = field(default_factory=dict)  # id -> Channel
    members: dict = field(default_factory=dict)  # user id -> Member
    emojis: dict = field(default_factory=dict)  # id -> emoji dict

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]


# ---------------------------------------------------------------------------
# The state


class State:
    def __init__(self, clock: Callable[[], float] = time.time, bot_name: str = "parodybot"):
        self.clock = clock
        self._last_snowflake = 0
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, dict] = {}
        self.blobs: dict[int, bytes] = {}  # attachment id -> bytes
        self.attachment_meta: dict[int, dict] = {}  # attachment id -> payload
        # application commands: guild id (None = global) -> {command id: payload}
        self.commands: dict[Optional[int], dict[int, dict]] = {None: {}}
        self.events: list[dict] = []
        self._listeners: list[Callable[[], None]] = []

        self.bot_user = self.add_user(bot_name, bot=True)
        self.owner_user = self.add_user("app-owner")
        self.application_id = self.bot_user.id  # as for every bot created since 2020

    # -- ids, log, change notification -----------------------------------

    def snowflake(self) -> int:
        ms = int(self.clock() * 1000) - DISCORD_EPOCH_MS
        value = max(ms, 0) << 22
        if value <= self._last_snowflake:
            value = self._last_snowflake + 1
        self._last_snowflake = value
        return value

    def now_iso(self) -> str:
        return iso(self.clock())

    def record(self, kind: str, **info: Any) -> dict:
        entry = {"n": len(self.events), "at": self.clock(), "kind": kind, **info}
        self.events.append(entry)
        self.changed()
        return entry

    def changed(self) -> None:
        for cb in list(self._listeners):
            cb()

    # -- lookups ------------------------------------------------------------

    def add_user(self, username: str, *, bot: bool = False, global_name: Optional[str] = None) -> User:
        user = User(self.snowflake(), username, bot=bot, global_name=global_name)
        self.users[user.id] = user
        return user

    def guild(self, obj: Any) -> Guild:
        gid = obj.guild_id if isinstance(obj, (Channel, Member, Role)) else as_id(obj)
        try:
            return self.guilds[int(gid)]
        except (KeyError, TypeError):
            raise ApiError(404, 10004, "Unknown Guild") from None

    def channel(self, obj: Any) -> Channel:
        try:
            return self.channels[as_id(obj)]
        except KeyError:
            raise ApiError(404, 10003, "Unknown Channel") from None

    def user(self, obj: Any) -> User:
        if isinstance(obj, Member):
            return obj.user
        try:
            return self.users[as_id(obj)]
        except KeyError:
            raise ApiError(404, 10013, "Unknown User") from None

    def member(self, guild: Guild, user_id: Any) -> Member:
        try:
            return guild.members[as_id(user_id)]
        except KeyError:
            raise ApiError(404, 10007, "Unknown Member") from None

    def message(self, channel: Channel, message_id: Any) -> dict:
        msg = self.messages.get(as_id(message_id))
        if msg is None or int(msg["channel_id"]) != channel.id or msg.get("_deleted"):
            raise ApiError(404, 10008, "Unknown Message")
        return msg

    def bot_member(self, guild: Guild) -> Member:
        return guild.members[self.bot_user.id]

    def bot_guilds(self) -> list[Guild]:
        return [g for g in self.guilds.values() if self.bot_user.id in g.members]

    # -- permissions --------------------------------------------------------

    def base_permissions(self, guild: Guild, member: Member) -> int:
        if guild.owner_id == member.id:
            return Perm.ALL
        perms = guild.everyone.permissions
        for rid in member.roles:
            role = guild.roles.get(int(rid))
            if role is not None:
                perms |= role.permissions
        if perms & Perm.ADMINISTRATOR:
            return Perm.ALL
        return perms

    def channel_permissions(self, channel: Channel, member: Member) -> int:
        """Discord's algorithm: base, then @everyone, role and member overwrites."""
        if channel.type == ChannelType.DM:
            return (
                Perm.VIEW_CHANNEL | Perm.SEND_MESSAGES | Perm.EMBED_LINKS | Perm.ATTACH_FILES
                | Perm.READ_MESSAGE_HISTORY | Perm.ADD_REACTIONS | Perm.USE_EXTERNAL_EMOJIS
            )
        guild = self.guilds[channel.guild_id]
        perms = self.base_permissions(guild, member)
        if perms == Perm.ALL:
            return Perm.ALL
        overwrites = {int(o["id"]): o for o in channel.overwrites}
        ev = overwrites.get(guild.id)
        if ev:
            perms = (perms & ~ev["deny"]) | ev["allow"]
        allow = deny = 0
        for rid in member.roles:
            ow = overwrites.get(int(rid))
            if ow and ow["type"] == 0:
                allow |= ow["allow"]
                deny |= ow["deny"]
        perms = (perms & ~deny) | allow
        mo = overwrites.get(member.id)
        if mo and mo["type"] == 1:
            perms = (perms & ~mo["deny"]) | mo["allow"]
        if not perms & Perm.VIEW_CHANNEL:
            return 0
        if not perms & Perm.SEND_MESSAGES:
            perms &= ~(Perm.SEND_TTS_MESSAGES | Perm.MENTION_EVERYONE | Perm.EMBED_LINKS | Perm.ATTACH_FILES)
        return perms

    def permissions_for(self, channel: Channel, user: User) -> int:
        if channel.type == ChannelType.DM:
            return self.channel_permissions(channel, None)  # type: ignore[arg-type]
        guild = self.guilds[channel.guild_id]
        member = guild.members.get(user.id)
        if member is None:
            return 0
        return self.channel_permissions(channel, member)

    def require(self, channel: Channel, user: User, perms: int) -> None:
        have = self.permissions_for(channel, user)
        if not have & Perm.VIEW_CHANNEL:
            raise ApiError(403, 50001, "Missing Access")
        if have & perms != perms:
            raise ApiError(403, 50013, "Missing Permissions")

    # -- messages -----------------------------------------------------------

    def store_attachment(self, channel_id: int, filename: str, data: bytes, content_type: Optional[str],
                         cdn_base: str, *, description: Optional[str] = None, ephemeral: bool = False) -> dict:
        att_id = self.snowflake()
        url = f"{cdn_base}/{channel_id}/{att_id}/{filename}"
        meta = {
            "id": str(att_id),
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type or "application/octet-stream",
        }
        if description:
            meta["description"] = description
        if ephemeral:
            meta["ephemeral"] = True
        self.blobs[att_id] = bytes(data)
        self.attachment_meta[att_id] = meta
        return meta

    def new_message(self, channel: Channel, author: User, *, content: str = "", embeds: Optional[list] = None,
                    attachments: Optional[list] = None, flags: int = 0, type: int = 0, extra: Optional[dict] = None,
                    ephemeral: bool = False) -> dict:
        mid = self.snowflake()
        msg: dict[str, Any] = {
            "id": str(mid),
            "channel_id": str(channel.id),
            "author": author.payload(),
            "content": content,
            "timestamp": self.now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": embeds or [],
            "pinned": False,
            "type": type,
            "flags": flags,
            "components": [],
            "_reactions": [],
            "_ephemeral": ephemeral,
        }
        if channel.guild_id is not None:
            msg["guild_id"] = str(channel.guild_id)
        if extra:
            msg.update(extra)
        self._update_mentions(msg, channel)
        self.messages[mid] = msg
        if not ephemeral:
            channel.message_ids.append(mid)
            channel.last_message_id = mid
        return msg

    def _update_mentions(self, msg: dict, channel: Channel) -> None:
        content = msg.get("content") or ""
        users = []
        for uid in re.findall(r"<@!?(\d+)>", content):
            u = self.users.get(int(uid))
            if u is not None and all(x["id"] != str(u.id) for x in users):
                users.append(u.payload())
        msg["mentions"] = users
        msg["mention_roles"] = re.findall(r"<@&(\d+)>", content)
        msg["mention_everyone"] = "@everyone" in content or "@here" in content

    def edit_message(self, msg: dict, changes: dict) -> dict:
        if changes.get("_pings") is not None:  # a deferred reply's first content
            msg["_pings"] = changes["_pings"]
        for key in ("content", "embeds", "components", "attachments"):
            if key in changes:
                value = changes[key]
                msg[key] = (value or "") if key == "content" else (value or [])
        if changes.get("flags") is not None:
            keep = msg["flags"] & ~MESSAGE_FLAG_SUPPRESS_EMBEDS
            msg["flags"] = keep | (int(changes["flags"]) & MESSAGE_FLAG_SUPPRESS_EMBEDS)
        if msg["flags"] & MESSAGE_FLAG_LOADING:
            msg["flags"] &= ~MESSAGE_FLAG_LOADING  # a deferred reply getting its content: not shown as edited
        else:
            msg["edited_timestamp"] = self.now_iso()
        self._update_mentions(msg, self.channels[int(msg["channel_id"])])
        return msg

    def delete_message(self, msg: dict) -> None:
        msg["_deleted"] = True
        channel = self.channels[int(msg["channel_id"])]
        mid = int(msg["id"])
        if mid in channel.message_ids:
            channel.message_ids.remove(mid)

    def render_message(self, msg: dict, *, redact: bool = False) -> dict:
        """The message as the API shows it to the bot."""
        out = {k: _copy_json(v) for k, v in msg.items() if not k.startswith("_")}
        reactions = []
        for r in msg["_reactions"]:
            if not r["users"]:
                continue
            reactions.append(
                {
                    "emoji": dict(r["emoji"]),
                    "count": len(r["users"]),
                    "count_details": {"burst": 0, "normal": len(r["users"])},
                    "burst_colors": [],
                    "me": self.bot_user.id in r["users"],
                    "me_burst": False,
                    "burst_me": False,
                    "burst_count": 0,
                }
            )
        if reactions:
            out["reactions"] = reactions
        if redact:
            out.update(content="", embeds=[], attachments=[], components=[])
            out.pop("poll", None)
        return out

    def view_message(self, msg: dict) -> dict:
        """The message as a test reads it: reactions with user ids, attachment bytes."""
        out = self.render_message(msg)
        out["reactions"] = [
            {
                "emoji": r["emoji"]["name"] if r["emoji"].get("id") is None else r["key"],
                "count": len(r["users"]),
                "user_ids": list(r["users"]),
                "me": self.bot_user.id in r["users"],
            }
            for r in msg["_reactions"]
            if r["users"]
        ]
        for att in out["attachments"]:
            att["data"] = self.blobs.get(int(att["id"]))
        out["ephemeral"] = bool(msg.get("_ephemeral"))
        out["deleted"] = bool(msg.get("_deleted"))
        out["loading"] = bool(msg["flags"] & MESSAGE_FLAG_LOADING)
        return out

    # -- emoji and reactions -----------------------------------------------

    def parse_emoji(self, channel: Channel, raw: str) -> tuple[str, dict]:
        """'👍' or 'name:id' (REST path form) or '<:name:id>' -> (key, emoji payload)."""
        raw = raw.strip()
        if raw.startswith("<") and raw.endswith(">"):
            raw = raw[1:-1]
        if raw.startswith("a:"):
            raw = raw[2:]
        if raw.startswith(":"):
            raw = raw[1:]
        m = re.fullmatch(r"([\w~-]+):(\d+)", raw)
        if m:
            name, eid = m.group(1), int(m.group(2))
            emoji = None
            for g in self.guilds.values():
                if eid in g.emojis:
                    emoji = g.emojis[eid]
            if emoji is None:
                raise ApiError(400, 10014, "Unknown Emoji")
            payload = {"id": str(eid), "name": emoji["name"]}
            if emoji.get("animated"):
                payload["animated"] = True
            return f"{emoji['name']}:{eid}", payload
        if not emoji_lib.is_emoji(raw):  # one emoji of Unicode's list, as Discord checks; anything else is 10014
            raise ApiError(400, 10014, "Unknown Emoji")
        return raw, {"id": None, "name": raw}

    def add_reaction(self, msg: dict, key: str, emoji: dict, user_id: int) -> bool:
        for r in msg["_reactions"]:
            if r["key"] == key:
                if user_id in r["users"]:
                    return False
                r["users"].append(user_id)
                return True
        msg["_reactions"].append({"key": key, "emoji": emoji, "users": [user_id]})
        return True

    def remove_reaction(self, msg: dict, key: str, user_id: int) -> Optional[dict]:
        for r in msg["_reactions"]:
            if r["key"] == key and user_id in r["users"]:
                r["users"].remove(user_id)
                if not r["users"]:
                    msg["_reactions"].remove(r)
                return r["emoji"]
        return None

    def has_reaction(self, msg: dict, key: str) -> bool:
        return any(r["key"] == key and r["users"] for r in msg["_reactions"])

    # -- guild payloads -----------------------------------------------------

    def guild_payload(self, guild: Guild, *, members: Optional[Iterable[Member]] = None, full: bool = False) -> dict:
        out = {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id) if guild.owner_id else None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [r.payload() for r in guild.roles.values()],
            "emojis": list(guild.emojis.values()),
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": guild.preferred_locale,
            "public_updates_channel_id": None,
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "max_members": 500000,
        }
        if full:  # GUILD_CREATE
            member_list = list(guild.members.values()) if members is None else list(members)
            out.update(
                joined_at=guild.joined_at,
                large=len(guild.members) > 250,
                unavailable=False,
                member_count=len(guild.members),
                voice_states=[],
                members=[m.payload() for m in member_list],
                channels=[c.payload() for c in guild.channels.values()],
                threads=[],
                presences=[],
                stage_instances=[],
                guild_scheduled_events=[],
                soundboard_sounds=[],
            )
        return out

    # -- application commands ----------------------------------------------

    def find_command(self, guild_id: Optional[int], name: str, type: int = 1) -> Optional[dict]:
        if guild_id is not None:
            for cmd in self.commands.get(guild_id, {}).values():
                if cmd["name"] == name and cmd.get("type", 1) == type:
                    return cmd
        for cmd in self.commands[None].values():
            if cmd["name"] == name and cmd.get("type", 1) == type:
                return cmd
        return None
