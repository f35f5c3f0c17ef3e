"""Interactions as a member makes them: option checking against the registered
command, the INTERACTION_CREATE payload, and the record a test inspects."""

from __future__ import annotations

import mimetypes
import time
from typing import TYPE_CHECKING, Any, Optional, Sequence

from .state import (
    MESSAGE_FLAG_LOADING,
    Channel,
    Guild,
    Member,
    OptionType,
    Role,
    StandinError,
    User,
    as_id,
)

if TYPE_CHECKING:
    from .server import DiscordStandin

COMMAND = 2
COMPONENT = 3
AUTOCOMPLETE = 4

# callback types
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
AUTOCOMPLETE_RESULT = 8
MODAL = 9

ALLOWED_CALLBACKS = {
    COMMAND: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL},
    COMPONENT: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE, MODAL},
    AUTOCOMPLETE: {AUTOCOMPLETE_RESULT},
}


class InteractionFailed(Exception):
    """What the member sees as "The application did not respond": no
    acknowledgement reached the stand-in within the 3-second window."""


class StandinInteraction:
    """One interaction a member started. Read its fields after the bot acted:

    acknowledged, ack_type (4 message, 5 deferred, 6/7 component, 8 autocomplete, 9 modal),
    response (the answer the member sees, as a test view, or None: the original
    response message, or where the bot deleted that, the followup it sent after),
    ephemeral (whether only the member sees that answer), original (the original
    response message, also once deleted), followups (list of messages), errors (every REST error the stand-in answered
    for this interaction, e.g. {"status": 404, "code": 10062, ...}), error (the
    last one), choices (autocomplete), modal (the modal payload), failed.
    """

    def __init__(self, standin: "DiscordStandin", *, id: int, token: str, type: int, user: User,
                 member: Optional[Member], guild: Optional[Guild], channel: Channel, payload: dict,
                 command: Optional[dict], name: str, message_id: Optional[int] = None):
        self._standin = standin
        self.id = id
        self.token = token
        self.type = type
        self.user = user
        self.member = member
        self.guild = guild
        self.channel = channel
        self.payload = payload
        self.command = command
        self.name = name
        self.message_id = message_id  # component interactions: the message the button is on
        self.created_at = standin.state.clock()
        self.dispatched_at: Optional[float] = None  # time.monotonic()
        self.deadline: Optional[float] = None  # time.monotonic()
        self.acknowledged = False
        self.ack_type: Optional[int] = None
        self.ack_delay: Optional[float] = None  # seconds between dispatch and ack
        self.response_id: Optional[int] = None
        self.followup_ids: list[int] = []
        self.errors: list[dict] = []
        self.choices: Optional[list] = None
        self.modal: Optional[dict] = None

    def __repr__(self) -> str:
        return (f"<StandinInteraction /{self.name} by {self.user.username} ack={self.ack_type} "
                f"ephemeral={self.ephemeral} errors={[e['code'] for e in self.errors]}>")

    # -- views -------------------------------------------------------------

    @property
    def error(self) -> Optional[dict]:
        return self.errors[-1] if self.errors else None

    @property
    def deferred(self) -> bool:
        return self.ack_type in (DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE)

    @property
    def expired(self) -> bool:
        """The 3-second window is over (whether or not it was acknowledged)."""
        return self.deadline is not None and time.monotonic() > self.deadline

    @property
    def failed(self) -> bool:
        """The member sees "The application did not respond"."""
        return not self.acknowledged and self.expired

    def _message(self, mid: Optional[int]) -> Optional[dict]:
        if mid is None:
            return None
        msg = self._standin.state.messages.get(mid)
        return None if msg is None else self._standin.state.view_message(msg)

    @property
    def original(self) -> Optional[dict]:
        return self._message(self.response_id)

    def _answer_id(self) -> Optional[int]:
        """The message the member sees as the answer. A bot that deleted its public
        "thinking…" message to refuse privately shows its followup in that place."""
        msg = self._standin.state.messages.get(self.response_id) if self.response_id else None
        if msg is not None and msg.get("_deleted"):
            later = [i for i in self.followup_ids if not self._standin.state.messages[i].get("_deleted")]
            return later[-1] if later else None
        return self.response_id

    @property
    def response(self) -> Optional[dict]:
        return self._message(self._answer_id())

    @property
    def ephemeral(self) -> bool:
        mid = self._answer_id()
        msg = self._standin.state.messages.get(mid) if mid else None
        return bool(msg and msg.get("_ephemeral"))

    @property
    def followups(self) -> list[dict]:
        return [m for m in (self._message(i) for i in self.followup_ids) if m is not None]

    def has_visible_response(self) -> bool:
        if self.ack_type == DEFERRED_UPDATE_MESSAGE:
            return True
        if self.ack_type == MODAL:
            return True
        mid = self._answer_id()
        msg = self._standin.state.messages.get(mid) if mid else None
        return bool(msg) and not msg.get("_deleted") and not msg["flags"] & MESSAGE_FLAG_LOADING

    # -- waiting -----------------------------------------------------------

    async def wait_for_ack(self, timeout: float = 5.0) -> int:
        """Wait for the acknowledgement; raises InteractionFailed when the window closes without one."""
        await self._standin.wait_for(lambda: self.acknowledged or self.failed, timeout,
                                     what=f"an acknowledgement of /{self.name}")
        if not self.acknowledged:
            raise InteractionFailed(self._failure_text())
        return self.ack_type  # type: ignore[return-value]

    async def wait_for_response(self, timeout: float = 5.0) -> Optional[dict]:
        """Wait until the member sees an answer: a message (not the "thinking..." state),
        a deferred-then-edited reply, the first followup after a defer, a followup in
        place of a deleted "thinking..." message, or a modal.
        Returns the response message (None for a modal or deferred component update).
        Raises InteractionFailed as soon as the 3-second window passes without an ack."""
        await self._standin.wait_for(lambda: self.has_visible_response() or self.failed, timeout,
                                     what=f"a visible response to /{self.name}")
        if not self.acknowledged:
            raise InteractionFailed(self._failure_text())
        return self.response

    async def wait_for_followups(self, count: int = 1, timeout: float = 5.0) -> list[dict]:
        await self._standin.wait_for(lambda: len(self.followup_ids) >= count, timeout,
                                     what=f"{count} followup(s) to /{self.name}")
        return self.followups

    def _failure_text(self) -> str:
        extra = f"; the bot's late attempts got {[e['code'] for e in self.errors]}" if self.errors else ""
        return (f"/{self.name} by {self.user.username}: the application did not respond within "
                f"{self._standin.ack_timeout:g} s (no acknowledgement){extra}")


# ---------------------------------------------------------------------------
# building the interaction data from a test's call


def _find_schema(cmd: dict, subcommand: Any) -> tuple[list, list]:
    options = cmd.get("options") or []
    has_subs = any(o["type"] in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP) for o in options)
    if subcommand is None:
        if has_subs:
            names = [o["name"] for o in options]
            raise StandinError(f"/{cmd['name']} needs a subcommand; registered: {names}")
        return options, []
    parts = subcommand.split() if isinstance(subcommand, str) else list(subcommand)
    chain: list = []
    current = options
    for part in parts:
        match = next((o for o in current if o["name"] == part
                      and o["type"] in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP)), None)
        if match is None:
            names = [o["name"] for o in current if o["type"] in (1, 2)]
            raise StandinError(f"/{cmd['name']} has no subcommand {part!r} here; registered: {names}")
        chain.append(match)
        current = match.get("options") or []
    if chain[-1]["type"] != OptionType.SUB_COMMAND:
        names = [o["name"] for o in current]
        raise StandinError(f"/{cmd['name']} {' '.join(parts)} is a group; pick one of {names}")
    return current, chain


class OptionBuilder:
    """Turns a test's ``options={...}`` into the option list and ``resolved`` data
    Discord would send, checking them against the registered command like the
    Discord client does (unknown names, required, types, choices, bounds)."""

    def __init__(self, standin: "DiscordStandin", guild: Optional[Guild], channel: Channel, invoker: User):
        self.s = standin
        self.state = standin.state
        self.guild = guild
        self.channel = channel
        self.invoker = invoker
        self.resolved: dict[str, dict] = {}

    def _add_resolved(self, kind: str, key: int, value: dict) -> None:
        self.resolved.setdefault(kind, {})[str(key)] = value

    def _resolve_user(self, value: Any) -> int:
        user = self.state.user(value)
        self._add_resolved("users", user.id, user.payload())
        if self.guild is not None and user.id in self.guild.members:
            member = self.guild.members[user.id]
            mp = member.payload(with_user=False)
            mp["permissions"] = str(self.state.channel_permissions(self.channel, member))
            self._add_resolved("members", user.id, mp)
        return user.id

    def _resolve_role(self, value: Any) -> int:
        rid = as_id(value)
        if self.guild is None or rid not in self.guild.roles:
            raise StandinError(f"role {value!r} is not in this guild")
        self._add_resolved("roles", rid, self.guild.roles[rid].payload())
        return rid

    def _resolve_channel(self, value: Any, schema: dict) -> int:
        ch = self.state.channel(value)
        types = schema.get("channel_types")
        if types and ch.type not in types:
            raise StandinError(f"option {schema['name']!r} accepts channel types {types}, got {ch.type}")
        member = self.guild.members.get(self.invoker.id) if self.guild else None
        perms = self.state.channel_permissions(ch, member) if member else 0
        self._add_resolved("channels", ch.id, {
            "id": str(ch.id), "name": ch.name, "type": ch.type, "permissions": str(perms),
            "parent_id": str(ch.parent_id) if ch.parent_id else None, "nsfw": ch.nsfw, "flags": 0,
            "guild_id": str(ch.guild_id) if ch.guild_id else None,
        })
        return ch.id

    def _resolve_attachment(self, value: Any, name: str) -> int:
        url = None
        if isinstance(value, dict):
            filename, data = value["filename"], value["data"]
            ctype, url = value.get("content_type"), value.get("url")
        elif isinstance(value, (tuple, list)) and len(value) in (2, 3):
            filename, data = value[0], value[1]
            ctype = value[2] if len(value) == 3 else None
        else:
            raise StandinError(f"attachment option {name!r}: pass (filename, bytes[, content_type]) or a dict")
        if isinstance(data, str):
            data = data.encode()
        ctype = ctype or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        meta = self.state.store_attachment(self.channel.id, filename, data, ctype, self.s.cdn_base, ephemeral=True)
        if url:
            meta["url"] = meta["proxy_url"] = url
        self._add_resolved("attachments", int(meta["id"]), dict(meta))
        return int(meta["id"])

    def convert(self, schema: dict, value: Any, *, autocomplete: bool = False) -> dict:
        name, t = schema["name"], schema["type"]
        opt = {"name": name, "type": t}
        if autocomplete and t in (OptionType.STRING, OptionType.INTEGER, OptionType.NUMBER):
            opt["value"] = value if isinstance(value, (str, int, float)) else str(value)
            return opt
        if t == OptionType.STRING:
            if not isinstance(value, str):
                raise StandinError(f"option {name!r} is a string, got {value!r}")
            if "min_length" in schema and len(value) < schema["min_length"]:
                raise StandinError(f"option {name!r} must be at least {schema['min_length']} characters")
            if "max_length" in schema and len(value) > schema["max_length"]:
                raise StandinError(f"option {name!r} must be at most {schema['max_length']} characters")
        elif t == OptionType.INTEGER:
            if isinstance(value, bool) or not isinstance(value, int):
                raise StandinError(f"option {name!r} is an integer, got {value!r}")
        elif t == OptionType.NUMBER:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise StandinError(f"option {name!r} is a number, got {value!r}")
        elif t == OptionType.BOOLEAN:
            if not isinstance(value, bool):
                raise StandinError(f"option {name!r} is a boolean, got {value!r}")
        elif t == OptionType.USER:
            value = str(self._resolve_user(value))
        elif t == OptionType.ROLE:
            value = str(self._resolve_role(value))
        elif t == OptionType.MENTIONABLE:
            value = str(self._resolve_role(value) if isinstance(value, Role) else self._resolve_user(value))
        elif t == OptionType.CHANNEL:
            value = str(self._resolve_channel(value, schema))
        elif t == OptionType.ATTACHMENT:
            value = str(self._resolve_attachment(value, name))
        if t in (OptionType.INTEGER, OptionType.NUMBER):
            if "min_value" in schema and value < schema["min_value"]:
                raise StandinError(f"option {name!r} must be >= {schema['min_value']}")
            if "max_value" in schema and value > schema["max_value"]:
                raise StandinError(f"option {name!r} must be <= {schema['max_value']}")
        choices = schema.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise StandinError(f"option {name!r} only offers {[c['value'] for c in choices]}, got {value!r}")
        opt["value"] = value
        return opt

    def build(self, cmd: dict, options: Optional[dict], subcommand: Any,
              attachments: Optional[Sequence[Any]], focused: Optional[str]) -> tuple[list, dict]:
        options = dict(options or {})
        leaf_schema, chain = _find_schema(cmd, subcommand)
        by_name = {o["name"]: o for o in leaf_schema}
        label = " ".join([cmd["name"], *[c["name"] for c in chain]])
        if attachments:
            slots = [o["name"] for o in leaf_schema if o["type"] == OptionType.ATTACHMENT and o["name"] not in options]
            if len(attachments) > len(slots):
                raise StandinError(f"/{label} has attachment options {slots}, got {len(attachments)} attachments")
            options.update(zip(slots, attachments))
        unknown = [k for k in options if k not in by_name]
        if unknown:
            raise StandinError(f"/{label} has no option(s) {unknown}; registered: {list(by_name)}")
        if focused is not None:
            if focused not in by_name:
                raise StandinError(f"/{label} has no option {focused!r}")
            if not by_name[focused].get("autocomplete"):
                raise StandinError(f"/{label} option {focused!r} has no autocomplete registered")
            options.setdefault(focused, "")
        else:
            missing = [o["name"] for o in leaf_schema if o.get("required") and o["name"] not in options]
            if missing:
                raise StandinError(f"/{label} requires {missing}")
        converted = []
        for schema in leaf_schema:  # Discord sends them in the order the user filled them; schema order is fine
            if schema["name"] not in options:
                continue
            opt = self.convert(schema, options[schema["name"]], autocomplete=focused is not None)
            if schema["name"] == focused:
                opt["focused"] = True
            converted.append(opt)
        for sub in reversed(chain):
            converted = [{"name": sub["name"], "type": sub["type"], "options": converted}]
        return converted, self.resolved
