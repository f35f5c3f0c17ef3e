"""REST API v10: the routes discord.py 2.7 calls for a bot like parodybot.

Every answer is JSON with ``Content-Type: application/json`` exactly (what
discord.py checks), errors in Discord's shape ({"message", "code", "errors"}).
Unknown routes answer 404 and are logged in ``standin.unknown_routes``.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, NamedTuple, Optional

import regex
from aiohttp import web

from . import interactions as ixm
from .state import (
    FILE_SIZE_LIMIT,
    MESSAGE_FLAG_EPHEMERAL,
    MESSAGE_FLAG_LOADING,
    ApiError,
    Channel,
    ChannelType,
    Intent,
    OptionType,
    Perm,
    form_error,
)

if TYPE_CHECKING:
    from .server import DiscordStandin

log = logging.getLogger("discord_standin.rest")

JSON_HEADERS = {"Content-Type": "application/json"}


def json_response(status: int, obj: Any, headers: Optional[dict] = None) -> web.Response:
    if status == 204:
        return web.Response(status=204, headers=headers)
    return web.Response(status=status, body=json.dumps(obj).encode(), headers={**JSON_HEADERS, **(headers or {})})


class Upload(NamedTuple):
    index: int
    filename: str
    content_type: str
    data: bytes


class Req(NamedTuple):
    method: str
    path: str
    params: dict
    query: Any
    body: Optional[Any]
    uploads: list
    raw: web.Request


Handler = Callable[[Req], Awaitable[Any]]


class Rest:
    def __init__(self, standin: "DiscordStandin"):
        self.s = standin
        self.state = standin.state
        self.routes: list[tuple[str, re.Pattern, Handler, bool, str]] = []
        r = self._route
        r("GET", "/gateway", self.get_gateway, auth=False)
        r("GET", "/gateway/bot", self.get_gateway_bot)
        r("GET", "/users/@me", self.get_me)
        r("PATCH", "/users/@me", self.get_me)
        r("GET", "/users/@me/guilds", self.get_my_guilds)
        r("POST", "/users/@me/channels", self.create_dm)
        r("GET", "/users/{user_id}", self.get_user)
        r("GET", "/oauth2/applications/@me", self.get_application)
        r("GET", "/applications/@me", self.get_application)
        for scope in ("", "/guilds/{guild_id}"):
            base = "/applications/{application_id}" + scope + "/commands"
            r("GET", base, self.list_commands)
            r("PUT", base, self.put_commands)
            r("POST", base, self.post_command)
            r("GET", base + "/permissions", self.command_permissions)
            r("GET", base + "/{command_id}", self.get_command)
            r("PATCH", base + "/{command_id}", self.patch_command)
            r("DELETE", base + "/{command_id}", self.delete_command)
        r("GET", "/guilds/{guild_id}", self.get_guild)
        r("GET", "/guilds/{guild_id}/channels", self.get_guild_channels)
        r("GET", "/guilds/{guild_id}/roles", self.get_roles)
        r("GET", "/guilds/{guild_id}/roles/{role_id}", self.get_role)
        r("GET", "/guilds/{guild_id}/members", self.list_members)
        r("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member)
        r("GET", "/channels/{channel_id}", self.get_channel)
        r("POST", "/channels/{channel_id}/typing", self.typing)
        r("GET", "/channels/{channel_id}/messages", self.list_messages)
        r("POST", "/channels/{channel_id}/messages", self.create_message)
        r("POST", "/channels/{channel_id}/messages/bulk-delete", self.bulk_delete)
        r("GET", "/channels/{channel_id}/messages/pins", self.list_pins)
        r("PUT", "/channels/{channel_id}/messages/pins/{message_id}", self.pin)
        r("DELETE", "/channels/{channel_id}/messages/pins/{message_id}", self.unpin)
        r("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message)
        r("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_message)
        r("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message)
        rx = "/channels/{channel_id}/messages/{message_id}/reactions"
        r("DELETE", rx, self.clear_reactions)
        r("GET", rx + "/{emoji}", self.reaction_users)
        r("DELETE", rx + "/{emoji}", self.clear_emoji)
        r("PUT", rx + "/{emoji}/@me", self.add_own_reaction)
        r("DELETE", rx + "/{emoji}/@me", self.remove_own_reaction)
        r("DELETE", rx + "/{emoji}/{user_id}", self.remove_user_reaction)
        r("POST", "/interactions/{interaction_id}/{token}/callback", self.interaction_callback, auth=False)
        wh = "/webhooks/{webhook_id}/{token}"
        r("POST", wh, self.webhook_execute, auth=False)
        r("GET", wh + "/messages/{message_id}", self.webhook_get, auth=False)
        r("PATCH", wh + "/messages/{message_id}", self.webhook_edit, auth=False)
        r("DELETE", wh + "/messages/{message_id}", self.webhook_delete, auth=False)

    def _route(self, method: str, template: str, handler: Handler, *, auth: bool = True) -> None:
        pattern = re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        self.routes.append((method, re.compile(pattern), handler, auth, template))

    # -- dispatch ------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        method = request.method
        found = None
        path_known = False
        for m, route_pattern, handler, auth, template in self.routes:
            match = route_pattern.fullmatch(path)
            if match:
                path_known = True
                if m == method:
                    found = (handler, auth, template, match.groupdict())
                    break
        if found is None:
            status = 405 if path_known else 404
            self.s.unknown_routes.append(f"{method} {path}")
            self.state.record("rest.unknown", method=method, path=path, status=status)
            log.warning("discord stand-in: no route for %s %s", method, path)
            return json_response(status, {"message": f"{status}: {'Method Not Allowed' if status == 405 else 'Not Found'}",
                                          "code": 0, "standin": f"no route for {method} {path}"})
        handler, auth, template, params = found
        injected = self.s._take_injected(method, path)
        if injected is not None:
            self.state.record("rest", method=method, path=path, status=injected[0], injected=True)
            return injected[1]
        if auth and request.headers.get("Authorization") != f"Bot {self.s.bot_token}":
            self.state.record("rest", method=method, path=path, status=401)
            return json_response(401, {"message": "401: Unauthorized", "code": 0})
        verdict = self.s.ratelimits.check(method, path, template, params)
        if verdict.refused is not None:
            self.state.record("rest", method=method, path=path, route=template, status=429,
                              retry_after=verdict.refused["retry_after"])
            return json_response(429, verdict.refused, verdict.headers)
        held = self.s._hold_for(method, path)
        if held is not None:
            await held.wait()
        try:
            body, uploads = await self._read_body(request)
        except ApiError as exc:
            return json_response(exc.status, exc.body(), verdict.headers)
        req = Req(method, path, params, request.query, body, uploads, request)
        try:
            for key, value in params.items():
                if key.endswith("_id") and not value.isdigit() and value not in ("@me", "@original"):
                    raise form_error(key, "NUMBER_TYPE_COERCE", f"Value \"{value}\" is not snowflake.")
            result = await handler(req)
        except ApiError as exc:
            entry = self.state.record("rest", method=method, path=path, route=template, status=exc.status,
                                      code=exc.code, error=exc.message, body=_short(body))
            self.s._on_rest_error(req, exc, entry)
            return json_response(exc.status, exc.body(), verdict.headers)
        except Exception as exc:  # a bug in the stand-in: say so loudly, and not as a 5xx discord.py would retry
            log.exception("discord stand-in crashed on %s %s", method, path)
            self.s.internal_errors.append(f"{method} {path}: {exc!r}")
            self.state.record("rest.crash", method=method, path=path, error=repr(exc))
            return json_response(400, {"message": f"discord stand-in crashed: {exc!r}", "code": 0})
        status, out = (200, result) if not isinstance(result, tuple) else result
        if out is None and status == 200:
            status = 204
        self.state.record("rest", method=method, path=path, route=template, status=status, body=_short(body))
        return json_response(status, out, verdict.headers)

    async def _read_body(self, request: web.Request) -> tuple[Optional[Any], list]:
        if not request.can_read_body:
            return None, []
        if request.content_type == "multipart/form-data":
            body: Any = {}
            uploads: list[Upload] = []
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                name = part.name or ""
                if name == "payload_json":
                    body = json.loads(await part.text())
                elif name.startswith("files[") or name == "file":
                    idx = int(name[6:-1]) if name.startswith("files[") else 0
                    data = bytes(await part.read(decode=False))
                    filename = part.filename or f"file{idx}"
                    ctype = part.headers.get("Content-Type") or "application/octet-stream"
                    if ctype == "application/octet-stream":
                        ctype = mimetypes.guess_type(filename)[0] or ctype
                    uploads.append(Upload(idx, filename, ctype, data))
                else:
                    body[name] = await part.text()
            return body, uploads
        text = await request.text()
        if not text:
            return None, []
        try:
            return json.loads(text), []
        except ValueError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None

    # -- helpers -------------------------------------------------------------

    @property
    def bot(self):
        return self.state.bot_user

    def _channel_for_bot(self, req: Req) -> Channel:
        channel = self.state.channel(req.params["channel_id"])
        # DM channels in the stand-in are always between the bot and one user
        if channel.type != ChannelType.DM and not self.state.permissions_for(channel, self.bot) & Perm.VIEW_CHANNEL:
            raise ApiError(403, 50001, "Missing Access")
        return channel

    def compose(self, channel: Channel, body: dict, uploads: list, *, existing: Optional[dict] = None,
                creating: bool, ephemeral: bool = False, check_perms: bool = False) -> dict:
        """Validate a message create/edit body like Discord does and return the changes."""
        if not isinstance(body, dict):
            raise ApiError(400, 50109, "The request body contains invalid JSON.")
        changes: dict[str, Any] = {}
        if "content" in body:
            content = body["content"] or ""
            if not isinstance(content, str):
                content = str(content)
            if len(content) > 2000:
                raise form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
            changes["content"] = content
        if "embeds" in body or "embed" in body:
            embeds = body.get("embeds")
            if embeds is None and body.get("embed") is not None:
                embeds = [body["embed"]]
            changes["embeds"] = _check_embeds(embeds or [])
        if "components" in body:
            changes["components"] = body["components"] or []
        if "flags" in body:
            changes["flags"] = body["flags"]
        for key in ("message_reference", "nonce", "tts", "sticker_ids", "poll"):
            if body.get(key) is not None:
                changes[key] = body[key]
        for up in uploads:
            if len(up.data) > FILE_SIZE_LIMIT:
                raise ApiError(413, 40005, "Request entity too large")
        if check_perms and channel.type != ChannelType.DM:
            perms = self.state.permissions_for(channel, self.bot)
            if uploads and not perms & Perm.ATTACH_FILES:
                raise ApiError(403, 50013, "Missing Permissions")
            if changes.get("embeds") and not perms & Perm.EMBED_LINKS:
                # what Discord does: an embed-only message is refused; otherwise the embeds are dropped
                if creating and not (changes.get("content") or uploads or changes.get("components")):
                    raise ApiError(403, 50013, "Missing Permissions")
                changes["embeds"] = []
                self.state.record("note", text="embeds dropped: the bot lacks EMBED_LINKS", channel=channel.id)
        current = {a["id"]: a for a in (existing or {}).get("attachments", [])}
        pending = {u.index: u for u in uploads}
        if body.get("attachments") is not None:
            new_atts = []
            for i, item in enumerate(body["attachments"]):
                aid = str(item.get("id"))
                if aid in current:
                    new_atts.append(current[aid])
                elif aid.isdigit() and int(aid) in pending:
                    up = pending.pop(int(aid))
                    new_atts.append(self._store(channel, up, item.get("description"), ephemeral))
                else:
                    raise form_error(f"attachments.{i}.id", "ATTACHMENT_NOT_FOUND", "Unknown attachment")
            new_atts += [self._store(channel, u, None, ephemeral) for u in pending.values()]
            changes["attachments"] = new_atts
        elif uploads:
            changes["attachments"] = list(current.values()) + [self._store(channel, u, None, ephemeral)
                                                                for u in uploads]
        if len(changes.get("attachments", [])) > 10:
            raise form_error("attachments", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        merged = {**(existing or {}), **changes}
        if creating or existing is not None:
            if not (merged.get("content") or merged.get("embeds") or merged.get("attachments")
                    or merged.get("components") or merged.get("sticker_ids") or merged.get("poll")):
                if creating or not (existing or {}).get("flags", 0) & MESSAGE_FLAG_LOADING:
                    raise ApiError(400, 50006, "Cannot send an empty message")
        if "embeds" in changes or "attachments" in changes:
            atts = merged.get("attachments") or []
            changes["embeds"] = _link_attachments(merged.get("embeds") or [], atts)
        if creating or (existing or {}).get("flags", 0) & MESSAGE_FLAG_LOADING:
            # Who is notified is decided when the message is sent (a deferred reply: its first
            # content); edits notify nobody. Mentions inside embeds never notify.
            changes["_pings"] = pings_for(merged.get("content") or "", body.get("allowed_mentions"))
        return changes

    def _store(self, channel: Channel, up: Upload, description: Optional[str], ephemeral: bool) -> dict:
        return self.state.store_attachment(channel.id, up.filename, up.data, up.content_type, self.s.cdn_base,
                                           description=description, ephemeral=ephemeral)

    def _render(self, msg: dict) -> dict:
        return self.state.render_message(msg, redact=self.s._redact_for_rest(msg))

    # -- meta ------------------------------------------------------------------

    async def get_gateway(self, req: Req) -> Any:
        return {"url": self.s.gateway_url.rstrip("/")}

    async def get_gateway_bot(self, req: Req) -> Any:
        return {
            "url": self.s.gateway_url.rstrip("/"),
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 1000 - self.s.gateway.identifies,
                                    "reset_after": 86_400_000, "max_concurrency": 1},
        }

    async def get_me(self, req: Req) -> Any:
        return {**self.bot.payload(), "verified": True, "mfa_enabled": False, "email": None, "locale": "en-US"}

    async def get_application(self, req: Req) -> Any:
        return {
            "id": str(self.state.application_id),
            "name": self.bot.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "rpc_origins": [],
            "bot_public": False,
            "bot_require_code_grant": False,
            "bot": self.bot.payload(),
            "owner": self.state.owner_user.payload(),
            "team": None,
            "verify_key": "0" * 64,
            "flags": self.s.application_flags,
            "hook": True,
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": len(self.state.bot_guilds()),
            "integration_types_config": {"0": {}},
        }

    async def get_my_guilds(self, req: Req) -> Any:
        out = []
        for g in self.state.bot_guilds():
            member = self.state.bot_member(g)
            out.append({"id": str(g.id), "name": g.name, "icon": None, "banner": None,
                        "owner": g.owner_id == self.bot.id, "features": [],
                        "permissions": str(self.state.base_permissions(g, member))})
        return out

    async def get_user(self, req: Req) -> Any:
        return self.state.user(req.params["user_id"]).payload()

    async def create_dm(self, req: Req) -> Any:
        user = self.state.user((req.body or {}).get("recipient_id"))
        return self.s._dm_channel(user).payload()

    # -- application commands -----------------------------------------------------

    def _command_scope(self, req: Req) -> Optional[int]:
        if int(req.params["application_id"]) != self.state.application_id:
            raise ApiError(403, 50001, "Missing Access")
        gid = req.params.get("guild_id")
        if gid is None:
            return None
        guild = self.state.guild(gid)
        if self.bot.id not in guild.members:
            raise ApiError(403, 50001, "Missing Access")
        return guild.id

    async def list_commands(self, req: Req) -> Any:
        scope = self._command_scope(req)
        return list(self.state.commands.get(scope, {}).values())

    async def put_commands(self, req: Req) -> Any:
        scope = self._command_scope(req)
        body = req.body or []
        if not isinstance(body, list):
            raise ApiError(400, 50035, "Invalid Form Body")
        seen = set()
        for i, cmd in enumerate(body):
            _check_command(cmd, f"{i}.")
            key = (cmd["name"], cmd.get("type", 1))
            if key in seen:
                raise form_error(f"{i}.name", "APPLICATION_COMMANDS_DUPLICATE_NAME",
                                 f"Application command names must be unique: {cmd['name']}")
            seen.add(key)
        old = {(c["name"], c.get("type", 1)): c for c in self.state.commands.get(scope, {}).values()}
        new: dict[int, dict] = {}
        for cmd in body:
            prev = old.get((cmd["name"], cmd.get("type", 1)))
            stored = self._stored_command(cmd, scope, prev)
            new[int(stored["id"])] = stored
        self.state.commands[scope] = new
        self.state.record("commands.sync", guild_id=scope, names=[c["name"] for c in new.values()])
        return list(new.values())

    async def post_command(self, req: Req) -> Any:
        scope = self._command_scope(req)
        cmd = req.body or {}
        _check_command(cmd, "")
        existing = self.state.commands.setdefault(scope, {})
        prev = next((c for c in existing.values() if c["name"] == cmd["name"]
                     and c.get("type", 1) == cmd.get("type", 1)), None)
        stored = self._stored_command(cmd, scope, prev)
        existing[int(stored["id"])] = stored
        return (200 if prev else 201), stored

    def _find_command(self, req: Req) -> tuple[Optional[int], dict]:
        scope = self._command_scope(req)
        cid = req.params["command_id"]
        cmd = self.state.commands.get(scope, {}).get(int(cid)) if cid.isdigit() else None
        if cmd is None:
            raise ApiError(404, 10063, "Unknown application command")
        return scope, cmd

    async def command_permissions(self, req: Req) -> Any:
        self._command_scope(req)
        return []

    async def get_command(self, req: Req) -> Any:
        return self._find_command(req)[1]

    async def patch_command(self, req: Req) -> Any:
        scope, cmd = self._find_command(req)
        merged = {**cmd, **(req.body or {})}
        _check_command(merged, "")
        stored = self._stored_command(merged, scope, cmd)
        self.state.commands[scope][int(stored["id"])] = stored
        return stored

    async def delete_command(self, req: Req) -> Any:
        scope, cmd = self._find_command(req)
        del self.state.commands[scope][int(cmd["id"])]
        return None

    def _stored_command(self, cmd: dict, scope: Optional[int], prev: Optional[dict]) -> dict:
        stored = {
            "id": prev["id"] if prev else str(self.state.snowflake()),
            "application_id": str(self.state.application_id),
            "version": str(self.state.snowflake()),
            "type": cmd.get("type", 1),
            "name": cmd["name"],
            "name_localizations": cmd.get("name_localizations"),
            "description": cmd.get("description", ""),
            "description_localizations": cmd.get("description_localizations"),
            "default_member_permissions": (None if cmd.get("default_member_permissions") is None
                                           else str(cmd["default_member_permissions"])),
            "dm_permission": cmd.get("dm_permission", True),
            "contexts": cmd.get("contexts"),
            "integration_types": cmd.get("integration_types") or [0],
            "nsfw": cmd.get("nsfw", False),
        }
        if cmd.get("options"):
            stored["options"] = cmd["options"]
        if scope is not None:
            stored["guild_id"] = str(scope)
        return stored

    # -- guilds ------------------------------------------------------------

    def _guild_for_bot(self, req: Req):
        guild = self.state.guild(req.params["guild_id"])
        if self.bot.id not in guild.members:
            raise ApiError(403, 50001, "Missing Access")
        return guild

    async def get_guild(self, req: Req) -> Any:
        guild = self._guild_for_bot(req)
        out = self.state.guild_payload(guild)
        if req.query.get("with_counts") in ("true", "1"):
            out.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
        return out

    async def get_guild_channels(self, req: Req) -> Any:
        guild = self._guild_for_bot(req)
        return [c.payload() for c in guild.channels.values()]

    async def get_roles(self, req: Req) -> Any:
        return [r.payload() for r in self._guild_for_bot(req).roles.values()]

    async def get_role(self, req: Req) -> Any:
        guild = self._guild_for_bot(req)
        role = guild.roles.get(int(req.params["role_id"]))
        if role is None:
            raise ApiError(404, 10011, "Unknown Role")
        return role.payload()

    async def get_member(self, req: Req) -> Any:
        guild = self._guild_for_bot(req)
        return self.state.member(guild, req.params["user_id"]).payload()

    async def list_members(self, req: Req) -> Any:
        guild = self._guild_for_bot(req)
        if not self.s.privileged_intents & Intent.GUILD_MEMBERS:
            raise ApiError(403, 50001, "Missing Access")
        limit = max(1, min(1000, int(req.query.get("limit", 1))))
        after = int(req.query.get("after", 0))
        members = sorted((m for m in guild.members.values() if m.id > after), key=lambda m: m.id)
        return [m.payload() for m in members[:limit]]

    # -- channels and messages -------------------------------------------------------

    async def get_channel(self, req: Req) -> Any:
        return self._channel_for_bot(req).payload()

    async def typing(self, req: Req) -> Any:
        channel = self._channel_for_bot(req)
        if channel.type != ChannelType.DM:
            self.state.require(channel, self.bot, Perm.SEND_MESSAGES)
        return None

    async def list_messages(self, req: Req) -> Any:
        channel = self._channel_for_bot(req)
        if channel.type != ChannelType.DM:
            self.state.require(channel, self.bot, Perm.READ_MESSAGE_HISTORY)
        limit = max(1, min(100, int(req.query.get("limit", 50))))
        ids = sorted(channel.message_ids)
        if "before" in req.query:
            before = int(req.query["before"])
            picked = [i for i in ids if i < before][-limit:]
        elif "after" in req.query:
            after = int(req.query["after"])
            picked = [i for i in ids if i > after][:limit]
        elif "around" in req.query:
            around = int(req.query["around"])
            older = [i for i in ids if i < around][-(limit // 2):] if limit > 1 else []
            newer = [i for i in ids if i >= around][: limit - len(older)]
            picked = older + newer
        else:
            picked = ids[-limit:]
        return [self._render(self.state.messages[i]) for i in reversed(picked)]

    async def get_message(self, req: Req) -> Any:
        channel = self._channel_for_bot(req)
        if channel.type != ChannelType.DM:
            self.state.require(channel, self.bot, Perm.READ_MESSAGE_HISTORY)
        return self._render(self.state.message(channel, req.params["message_id"]))

    async def create_message(self, req: Req) -> Any:
        channel = self._channel_for_bot(req)
        if channel.type != ChannelType.DM:
            self.state.require(channel, self.bot, Perm.SEND_MESSAGES)
        changes = self.compose(channel, req.body or {}, req.uploads, creating=True, check_perms=True)
        ref = changes.pop("message_reference", None)
        extra: dict[str, Any] = {}
        mtype = 0
        if ref:
            self.state.message(self.state.channel(ref.get("channel_id", channel.id)), ref["message_id"])
            extra["message_reference"] = {"message_id": str(ref["message_id"]), "channel_id": str(channel.id),
                                          **({"guild_id": str(channel.guild_id)} if channel.guild_id else {})}
            mtype = 19
        for key in ("nonce", "tts", "poll"):
            if key in changes:
                extra[key] = changes.pop(key)
        changes.pop("sticker_ids", None)
        msg = self.state.new_message(channel, self.bot, content=changes.get("content", ""),
                                     embeds=changes.get("embeds"), attachments=changes.get("attachments"),
                                     flags=int(changes.get("flags") or 0) & 4, type=mtype,
                                     extra=dict(extra, _pings=changes.get("_pings")))
        msg["components"] = changes.get("components", [])
        self.s._dispatch_message("MESSAGE_CREATE", msg)
        return self._render(msg)

    async def edit_message(self, req: Req) -> Any:
        channel = self._channel_for_bot(req)
        msg = self.state.message(channel, req.params["message_id"])
        body = req.body or {}
        if int(msg["author"]["id"]) != self.bot.id:
            if set(body) - {"flags"} or req.uploads:
                raise ApiError(403, 50005, "Cannot edit a message authored by another user")
            self.state.require(channel, self.bot, Perm.MANAGE_MESSAGES)
        changes = self.compose(channel, body, req.uploads, existing=msg, creating=False, check_perms=True)
        self.state.edit_message(msg, changes)
        self.s._dispatch_message("MESSAGE_UPDATE", msg)
        return self._render(msg)

    async def delete_message(self, req: Req) -> Any:
        channel = self._channel_for_bot(req)
        msg = self.state.message(channel, req.params["message_id"])
        if int(msg["author"]["id"]) != self.bot.id:
            if channel.type == ChannelType.DM:
                raise ApiError(403, 50003, "Cannot execute action on a DM channel")
            self.state.require(channel, self.bot, Perm.MANAGE_MESSAGES)
        self.s._delete_message(msg)
        return None

    async def bulk_delete(self, req: Req) -> Any:
        channel = self._channel_for_bot(req)
        self.state.require(channel, self.bot, Perm.MANAGE_MESSAGES)
        ids = (req.body or {}).get("messages") or []
        if not 2 <= len(ids) <= 100:
            raise form_error("messages", "BASE_TYPE_BAD_LENGTH", "Must be between 2 and 100 in length.")
        for mid in ids:
            msg = self.state.messages.get(int(mid))
            if msg is not None and not msg.get("_deleted") and int(msg["channel_id"]) == channel.id:
                self.s._delete_message(msg)
        return None

    async def list_pins(self, req: Req) -> Any:
        channel = self._channel_for_bot(req)
        if channel.type != ChannelType.DM:
            self.state.require(channel, self.bot, Perm.READ_MESSAGE_HISTORY)
        pinned = [self.state.messages[i] for i in channel.message_ids if self.state.messages[i].get("_pinned_at")]
        pinned.sort(key=lambda m: m["_pinned_at"], reverse=True)
        before = req.query.get("before")
        if before:
            pinned = [m for m in pinned if m["_pinned_at"] < before]
        limit = max(1, min(50, int(req.query.get("limit", 50))))
        return {"items": [{"pinned_at": m["_pinned_at"], "message": self._render(m)} for m in pinned[:limit]],
                "has_more": len(pinned) > limit}

    async def pin(self, req: Req) -> Any:
        return self._set_pinned(req, True)

    async def unpin(self, req: Req) -> Any:
        return self._set_pinned(req, False)

    def _set_pinned(self, req: Req, pinned: bool) -> None:
        channel = self._channel_for_bot(req)
        if channel.type != ChannelType.DM:
            self.state.require(channel, self.bot, Perm.MANAGE_MESSAGES)
        msg = self.state.message(channel, req.params["message_id"])
        msg["pinned"] = pinned
        msg["_pinned_at"] = self.state.now_iso() if pinned else None
        self.s._dispatch_message("MESSAGE_UPDATE", msg)
        return None

    # -- reactions ---------------------------------------------------------

    def _reaction_target(self, req: Req) -> tuple[Channel, dict]:
        channel = self._channel_for_bot(req)
        if channel.type != ChannelType.DM:
            self.state.require(channel, self.bot, Perm.READ_MESSAGE_HISTORY)
        return channel, self.state.message(channel, req.params["message_id"])

    async def add_own_reaction(self, req: Req) -> Any:
        channel, msg = self._reaction_target(req)
        key, emoji = self.state.parse_emoji(channel, req.params["emoji"])
        if not self.state.has_reaction(msg, key):
            if channel.type != ChannelType.DM:
                self.state.require(channel, self.bot, Perm.ADD_REACTIONS)
            if len([r for r in msg["_reactions"] if r["users"]]) >= 20:
                raise ApiError(400, 30010, "Maximum number of reactions reached (20)")
        self.s._add_reaction(channel, msg, key, emoji, self.bot)
        return None

    async def remove_own_reaction(self, req: Req) -> Any:
        channel, msg = self._reaction_target(req)
        key, _ = self.state.parse_emoji(channel, req.params["emoji"])
        self.s._remove_reaction(channel, msg, key, self.bot)
        return None

    async def remove_user_reaction(self, req: Req) -> Any:
        channel, msg = self._reaction_target(req)
        key, _ = self.state.parse_emoji(channel, req.params["emoji"])
        user = self.state.user(req.params["user_id"])
        if user.id != self.bot.id:
            if channel.type == ChannelType.DM:
                raise ApiError(403, 50003, "Cannot execute action on a DM channel")
            self.state.require(channel, self.bot, Perm.MANAGE_MESSAGES)
        self.s._remove_reaction(channel, msg, key, user)
        return None

    async def reaction_users(self, req: Req) -> Any:
        channel, msg = self._reaction_target(req)
        key, _ = self.state.parse_emoji(channel, req.params["emoji"])
        limit = max(1, min(100, int(req.query.get("limit", 25))))
        after = int(req.query.get("after", 0))
        if int(req.query.get("type", 0)) == 1:
            return []
        users = next((r["users"] for r in msg["_reactions"] if r["key"] == key), [])
        ids = sorted(u for u in users if u > after)[:limit]
        return [self.state.users[u].payload() for u in ids]

    async def clear_emoji(self, req: Req) -> Any:
        channel, msg = self._reaction_target(req)
        self.state.require(channel, self.bot, Perm.MANAGE_MESSAGES)
        key, emoji = self.state.parse_emoji(channel, req.params["emoji"])
        msg["_reactions"] = [r for r in msg["_reactions"] if r["key"] != key]
        self.s._dispatch_reaction_clear("MESSAGE_REACTION_REMOVE_EMOJI", channel, msg, emoji)
        return None

    async def clear_reactions(self, req: Req) -> Any:
        channel, msg = self._reaction_target(req)
        self.state.require(channel, self.bot, Perm.MANAGE_MESSAGES)
        msg["_reactions"] = []
        self.s._dispatch_reaction_clear("MESSAGE_REACTION_REMOVE_ALL", channel, msg, None)
        return None

    # -- interactions -------------------------------------------------------------

    def _interaction(self, interaction_id: str, token: str) -> ixm.StandinInteraction:
        ix = self.s.interactions.get(int(interaction_id)) if interaction_id.isdigit() else None
        if ix is None or ix.token != token:
            raise ApiError(404, 10062, "Unknown interaction")
        return ix

    async def interaction_callback(self, req: Req) -> Any:
        ix = self._interaction(req.params["interaction_id"], req.params["token"])
        loop_time = time.monotonic()
        if ix.acknowledged:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        if ix.deadline is None or loop_time > ix.deadline:
            raise ApiError(404, 10062, "Unknown interaction")
        body = req.body if isinstance(req.body, dict) else {}
        rtype = body.get("type")
        data = body.get("data") or {}
        if rtype not in ixm.ALLOWED_CALLBACKS.get(ix.type, set()):
            raise form_error("type", "INTERACTION_RESPONSE_TYPE_INVALID",
                             f"Interaction response type {rtype} is not valid for interaction type {ix.type}")
        resource: dict[str, Any] = {"type": rtype}
        if rtype == ixm.CHANNEL_MESSAGE:
            ephemeral = bool(int(data.get("flags") or 0) & MESSAGE_FLAG_EPHEMERAL)
            changes = self.compose(ix.channel, data, req.uploads, creating=True, ephemeral=ephemeral)
            msg = self.s._interaction_message(ix, changes, ephemeral=ephemeral, loading=False, original=True)
            resource["message"] = msg
        elif rtype == ixm.DEFERRED_CHANNEL_MESSAGE:
            ephemeral = bool(int(data.get("flags") or 0) & MESSAGE_FLAG_EPHEMERAL)
            msg = self.s._interaction_message(ix, {}, ephemeral=ephemeral, loading=True, original=True)
            resource["message"] = msg
        elif rtype == ixm.UPDATE_MESSAGE:
            target = self.state.messages[ix.message_id]  # type: ignore[index]
            changes = self.compose(ix.channel, data, req.uploads, existing=target, creating=False)
            self.state.edit_message(target, changes)
            self.s._dispatch_message("MESSAGE_UPDATE", target)
            ix.response_id = int(target["id"])
            resource["message"] = target
        elif rtype == ixm.DEFERRED_UPDATE_MESSAGE:
            ix.response_id = ix.message_id
        elif rtype == ixm.AUTOCOMPLETE_RESULT:
            choices = data.get("choices") or []
            if len(choices) > 25:
                raise form_error("data.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            for i, c in enumerate(choices):
                if not 1 <= len(str(c.get("name", ""))) <= 100:
                    raise form_error(f"data.choices.{i}.name", "BASE_TYPE_BAD_LENGTH",
                                     "Must be between 1 and 100 in length.")
            ix.choices = choices
        elif rtype == ixm.MODAL:
            ix.modal = data
        ix.acknowledged = True
        ix.ack_type = rtype
        ix.ack_delay = loop_time - (ix.dispatched_at or loop_time)
        msg = self.state.messages.get(ix.response_id) if ix.response_id else None
        self.state.record("interaction.ack", id=ix.id, name=ix.name, type=rtype,
                          ephemeral=bool(msg and msg.get("_ephemeral")),
                          after=round(ix.ack_delay, 3))
        if req.query.get("with_response") not in ("1", "true", "True"):
            return 204, None
        if "message" in resource:  # rendered only when asked for: most callbacks want none
            resource["message"] = self._render(resource["message"])
        interaction = {"id": str(ix.id), "type": ix.type}
        if msg is not None:
            interaction.update(response_message_id=str(msg["id"]),
                               response_message_loading=bool(msg["flags"] & MESSAGE_FLAG_LOADING),
                               response_message_ephemeral=bool(msg.get("_ephemeral")))
        return {"interaction": interaction, "resource": resource}

    def _webhook_interaction(self, req: Req) -> ixm.StandinInteraction:
        if int(req.params["webhook_id"]) != self.state.application_id:
            raise ApiError(404, 10015, "Unknown Webhook")
        ix = self.s.interactions_by_token.get(req.params["token"])
        if ix is None:
            raise ApiError(404, 10015, "Unknown Webhook")
        loop_time = time.monotonic()
        if ix.dispatched_at is not None and loop_time - ix.dispatched_at > self.s.interaction_token_ttl:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        if not ix.acknowledged:
            # Discord only creates the interaction's webhook once it has been acknowledged
            raise ApiError(404, 10015, "Unknown Webhook")
        return ix

    def _webhook_message(self, ix: ixm.StandinInteraction, message_id: str) -> dict:
        if message_id == "@original":
            mid = ix.response_id
        else:
            mid = int(message_id) if message_id.isdigit() else None
            if mid != ix.response_id and mid not in ix.followup_ids:
                mid = None
        msg = self.state.messages.get(mid) if mid is not None else None
        if msg is None or msg.get("_deleted"):
            raise ApiError(404, 10008, "Unknown Message")
        return msg

    async def webhook_execute(self, req: Req) -> Any:
        ix = self._webhook_interaction(req)
        body = req.body if isinstance(req.body, dict) else {}
        original = self.state.messages.get(ix.response_id) if ix.response_id else None
        if original is not None and original["flags"] & MESSAGE_FLAG_LOADING and not original.get("_deleted"):
            # the first followup after a "thinking..." defer replaces the loading message
            changes = self.compose(ix.channel, body, req.uploads, existing=original, creating=False,
                                   ephemeral=bool(original.get("_ephemeral")))
            self.state.edit_message(original, changes)
            self.s._dispatch_message("MESSAGE_UPDATE", original)
            msg = original
        else:
            ephemeral = bool(int(body.get("flags") or 0) & MESSAGE_FLAG_EPHEMERAL)
            changes = self.compose(ix.channel, body, req.uploads, creating=True, ephemeral=ephemeral)
            msg = self.s._interaction_message(ix, changes, ephemeral=ephemeral, loading=False, original=False)
        if req.query.get("wait") in ("1", "true", "True"):
            return self._render(msg)
        return 204, None

    async def webhook_get(self, req: Req) -> Any:
        ix = self._webhook_interaction(req)
        return self._render(self._webhook_message(ix, req.params["message_id"]))

    async def webhook_edit(self, req: Req) -> Any:
        ix = self._webhook_interaction(req)
        msg = self._webhook_message(ix, req.params["message_id"])
        changes = self.compose(ix.channel, req.body if isinstance(req.body, dict) else {}, req.uploads,
                               existing=msg, creating=False, ephemeral=bool(msg.get("_ephemeral")))
        self.state.edit_message(msg, changes)
        self.s._dispatch_message("MESSAGE_UPDATE", msg)
        return self._render(msg)

    async def webhook_delete(self, req: Req) -> Any:
        ix = self._webhook_interaction(req)
        msg = self._webhook_message(ix, req.params["message_id"])
        self.s._delete_message(msg)
        return None


# ---------------------------------------------------------------------------
# validation helpers


def pings_for(content: str, allowed: Any) -> dict:
    """Whom a message notifies (Discord's allowed_mentions rules): with no
    ``allowed_mentions``, every mention in the content; with one, only the
    kinds in ``parse`` and the ids listed in ``users`` / ``roles``."""
    users = list(dict.fromkeys(re.findall(r"<@!?(\d+)>", content)))
    roles = list(dict.fromkeys(re.findall(r"<@&(\d+)>", content)))
    everyone = "@everyone" in content or "@here" in content
    if isinstance(allowed, dict):
        parse = allowed.get("parse") or []
        if ("users" in parse and allowed.get("users")) or ("roles" in parse and allowed.get("roles")):
            raise form_error("allowed_mentions", "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                             "parse and users/roles cannot both name the same kind")
        listed_users = {str(u) for u in allowed.get("users") or []}
        listed_roles = {str(r) for r in allowed.get("roles") or []}
        users = [u for u in users if "users" in parse or u in listed_users]
        roles = [r for r in roles if "roles" in parse or r in listed_roles]
        everyone = everyone and "everyone" in parse
    return {"users": users, "roles": roles, "everyone": everyone}


def _check_embeds(embeds: list) -> list:
    if len(embeds) > 10:
        raise form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    out = []
    for i, e in enumerate(embeds):
        e = dict(e)
        e.setdefault("type", "rich")
        limits = [("title", 256), ("description", 4096)]
        for key, limit in limits:
            if e.get(key) is not None and len(str(e[key])) > limit:
                raise form_error(f"embeds.{i}.{key}", "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
            total += len(str(e.get(key) or ""))
        fields = e.get("fields") or []
        if len(fields) > 25:
            raise form_error(f"embeds.{i}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        for j, f in enumerate(fields):
            for key, limit in (("name", 256), ("value", 1024)):
                val = str(f.get(key) or "")
                if not val:
                    raise form_error(f"embeds.{i}.fields.{j}.{key}", "BASE_TYPE_REQUIRED", "This field is required")
                if len(val) > limit:
                    raise form_error(f"embeds.{i}.fields.{j}.{key}", "BASE_TYPE_MAX_LENGTH",
                                     f"Must be {limit} or fewer in length.")
                total += len(val)
        for sub, key, limit in (("footer", "text", 2048), ("author", "name", 256)):
            val = str((e.get(sub) or {}).get(key) or "")
            if len(val) > limit:
                raise form_error(f"embeds.{i}.{sub}.{key}", "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
            total += len(val)
        out.append(e)
    if total > 6000:
        raise form_error("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    return out


def _link_attachments(embeds: list, attachments: list) -> list:
    """``attachment://name`` in embed images becomes the attachment's CDN url."""
    by_name = {a["filename"]: a for a in attachments}
    out = []
    for e in embeds:
        e = dict(e)
        for key in ("image", "thumbnail"):
            sub = e.get(key)
            if isinstance(sub, dict) and str(sub.get("url", "")).startswith("attachment://"):
                att = by_name.get(sub["url"][len("attachment://"):])
                if att is not None:
                    e[key] = {**sub, "url": att["url"], "proxy_url": att["proxy_url"]}
        out.append(e)
    return out


# Discord's rule for command and option names (application-commands docs), lowercase where a
# lowercase form exists.
_NAME_OK = regex.compile(r"^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$")


def _check_command(cmd: Any, prefix: str) -> None:
    if not isinstance(cmd, dict) or not isinstance(cmd.get("name"), str):
        raise form_error(f"{prefix}name".rstrip("."), "BASE_TYPE_REQUIRED", "This field is required")
    ctype = cmd.get("type", 1)
    name = cmd["name"]
    if ctype == 1:
        if not _NAME_OK.match(name) or name != name.lower():
            raise form_error(f"{prefix}name", "APPLICATION_COMMAND_INVALID_NAME", f"Command name is invalid: {name!r}")
        desc = cmd.get("description") or ""
        if not 1 <= len(desc) <= 100:
            raise form_error(f"{prefix}description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
    elif not 1 <= len(name) <= 32:
        raise form_error(f"{prefix}name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
    _check_options(cmd.get("options") or [], f"{prefix}options.", depth=0)


def _check_options(options: list, prefix: str, depth: int) -> None:
    if len(options) > 25:
        raise form_error(prefix.rstrip("."), "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    seen_optional = False
    names = set()
    for i, opt in enumerate(options):
        p = f"{prefix}{i}."
        name = opt.get("name", "")
        if not _NAME_OK.match(name) or name != name.lower():
            raise form_error(f"{p}name", "APPLICATION_COMMAND_INVALID_NAME", f"Option name is invalid: {name!r}")
        if name in names:
            raise form_error(f"{p}name", "APPLICATION_COMMAND_OPTION_NAME_ALREADY_EXISTS", "Option names must be unique")
        names.add(name)
        if not 1 <= len(opt.get("description") or "") <= 100:
            raise form_error(f"{p}description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        t = opt.get("type")
        if t in (OptionType.SUB_COMMAND, OptionType.SUB_COMMAND_GROUP):
            if depth >= 2 or (t == OptionType.SUB_COMMAND_GROUP and depth >= 1):
                raise form_error(f"{p}type", "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Nesting too deep")
            _check_options(opt.get("options") or [], f"{p}options.", depth + 1)
            continue
        if opt.get("required"):
            if seen_optional:
                raise form_error(f"{p}required", "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                                 "Required options must be placed before non-required options")
        else:
            seen_optional = True
        choices = opt.get("choices") or []
        if len(choices) > 25:
            raise form_error(f"{p}choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        if choices and opt.get("autocomplete"):
            raise form_error(f"{p}autocomplete", "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID",
                             "Autocomplete cannot be set with choices")


def _short(body: Any) -> Any:
    text = json.dumps(body, default=str) if body is not None else None
    if text is not None and len(text) > 2000:
        return text[:2000] + "..."
    return body
