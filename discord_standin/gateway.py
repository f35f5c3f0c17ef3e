"""The gateway: plain JSON text frames over ws:// (no compression, whatever
the client asks for in ``compress=``), HELLO / IDENTIFY / READY /
GUILD_CREATE, heartbeats, RESUME with replay, sequence numbers, intents."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from aiohttp import WSMsgType, web

from .state import Intent

if TYPE_CHECKING:
    from .server import DiscordStandin

log = logging.getLogger("discord_standin.gateway")

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE_STATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11

REPLAY_BUFFER = 2000

Payload = Union[dict, Callable[["Session"], Optional[dict]]]


class Connection:
    """One websocket. Frames go out through one queue so sequence numbers stay in order."""

    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self.queue: asyncio.Queue[Optional[str]] = asyncio.Queue()
        self.writer: Optional[asyncio.Task] = None
        self.session: Optional[Session] = None

    def start(self) -> None:
        self.writer = asyncio.create_task(self._write(), name="standin-gateway-writer")

    async def _write(self) -> None:
        while True:
            text = await self.queue.get()
            if text is None:
                return
            if self.ws.closed:
                return
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    def send(self, payload: dict) -> None:
        self.queue.put_nowait(json.dumps(payload))

    async def close(self, code: int, message: str = "") -> None:
        self.queue.put_nowait(None)
        if self.writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.writer), 1.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self.writer.cancel()
        if not self.ws.closed:
            await self.ws.close(code=code, message=message.encode())


class Session:
    def __init__(self, intents: int, shard: Optional[list]):
        self.id = secrets.token_hex(16)
        self.intents = intents
        self.shard = shard
        self.seq = 0
        self.buffer: list[tuple[int, str]] = []
        self.conn: Optional[Connection] = None
        self.ready_sent = False

    def has(self, intent: int) -> bool:
        return bool(self.intents & intent)


class Gateway:
    def __init__(self, standin: "DiscordStandin"):
        self.s = standin
        self.state = standin.state
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self.heartbeat_interval_ms = 41250
        self.identifies = 0
        self.resumes = 0

    # -- public --------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return any(s.conn is not None and not s.conn.ws.closed and s.ready_sent for s in self.sessions.values())

    def dispatch(self, event: str, data: Payload, *, intent: int = 0) -> int:
        """Send a DISPATCH to every live session whose intents include ``intent``.
        ``data`` may be a callable(session) -> dict | None for per-session payloads.
        Sessions that dropped without a clean close keep the event for RESUME.
        Returns how many sessions got it."""
        sent = 0
        for session in list(self.sessions.values()):
            if not session.ready_sent or (intent and not session.has(intent)):
                continue
            d = data(session) if callable(data) else data
            if d is None:
                continue
            self._send_dispatch(session, event, d)
            sent += 1
        return sent

    async def close_all(self, code: int = 1001) -> None:
        for conn in list(self.connections):
            await conn.close(code)
        self.sessions.clear()

    async def drop(self, *, code: int = 4000, resumable: bool = True) -> None:
        """Cut the bot's websocket the way a network blip does. With resumable=False
        the session is also forgotten, so a RESUME gets op 9 and the bot re-identifies."""
        for session in list(self.sessions.values()):
            if not resumable:
                self.sessions.pop(session.id, None)
            if session.conn is not None:
                conn, session.conn = session.conn, None
                await conn.close(code)

    def send_reconnect(self) -> None:
        """op 7: ask the bot to reconnect and resume."""
        for session in self.sessions.values():
            if session.conn is not None:
                session.conn.send({"op": RECONNECT, "d": None})

    # -- internals -------------------------------------------------------------

    def _send_dispatch(self, session: Session, event: str, d: dict) -> None:
        session.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": session.seq, "d": d}
        text = json.dumps(payload)
        session.buffer.append((session.seq, text))
        del session.buffer[:-REPLAY_BUFFER]
        self.state.record("gateway.dispatch", t=event, s=session.seq, d=d, delivered=session.conn is not None)
        if session.conn is not None:
            session.conn.queue.put_nowait(text)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True, timeout=2.0, compress=False)
        await ws.prepare(request)
        conn = Connection(ws)
        self.connections.add(conn)
        conn.start()
        query = request.query
        self.state.record("gateway.connect", query=dict(query))
        try:
            if query.get("encoding", "json") != "json":
                await conn.close(4002, "only encoding=json is supported by the stand-in")
                return ws
            if query.get("v") not in (None, "10"):
                await conn.close(4012, "Invalid API version")
                return ws
            conn.send({"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms, "_trace": ["standin"]}})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        await conn.close(4002, "Error while decoding payload.")
                    break
                try:
                    payload = json.loads(msg.data)
                    op = payload["op"]
                except (ValueError, KeyError, TypeError):
                    await conn.close(4002, "Error while decoding payload.")
                    break
                await self._on_op(conn, op, payload.get("d"))
                if ws.closed:
                    break
        finally:
            session = conn.session
            close_code = ws.close_code
            if session is not None and session.conn is conn:
                session.conn = None
                # a clean close (1000/1001) from the client ends the session
                if close_code in (1000, 1001):
                    self.sessions.pop(session.id, None)
            self.connections.discard(conn)
            conn.queue.put_nowait(None)
            if conn.writer is not None and not conn.writer.done():
                conn.writer.cancel()
                try:
                    await conn.writer
                except (asyncio.CancelledError, Exception):
                    pass
            self.state.record("gateway.disconnect", code=close_code)
        return ws

    async def _on_op(self, conn: Connection, op: int, d: Any) -> None:
        if op != HEARTBEAT:
            self.state.record("gateway.receive", op=op, d=_redact(d))
        if op == HEARTBEAT:
            conn.send({"op": HEARTBEAT_ACK, "d": None})
        elif op == IDENTIFY:
            await self._identify(conn, d or {})
        elif op == RESUME:
            await self._resume(conn, d or {})
        elif conn.session is None:
            await conn.close(4003, "Not authenticated.")
        elif op == PRESENCE:
            self.s.presence = d
        elif op == VOICE_STATE:
            pass
        elif op == REQUEST_MEMBERS:
            self._request_members(conn.session, d or {})
        else:
            await conn.close(4001, "Unknown opcode.")

    def _token_ok(self, token: Any) -> bool:
        token = str(token or "")
        if token.startswith("Bot "):
            token = token[4:]
        return token == self.s.bot_token

    async def _identify(self, conn: Connection, d: dict) -> None:
        if conn.session is not None:
            await conn.close(4005, "Already authenticated.")
            return
        if not self._token_ok(d.get("token")):
            await conn.close(4004, "Authentication failed.")
            return
        if "intents" not in d:
            await conn.close(4013, "Invalid intent(s).")
            return
        intents = int(d["intents"])
        disallowed = intents & Intent.PRIVILEGED & ~self.s.privileged_intents
        if disallowed:
            await conn.close(4014, "Disallowed intent(s).")
            return
        self.identifies += 1
        # one bot, one session: a fresh IDENTIFY retires sessions left without a connection
        for stale in [x for x in self.sessions.values() if x.conn is None]:
            self.sessions.pop(stale.id, None)
        session = Session(intents, d.get("shard"))
        session.conn = conn
        conn.session = session
        self.sessions[session.id] = session
        bot = self.state.bot_user
        guilds = self.state.bot_guilds()
        ready = {
            "v": 10,
            "user": {**bot.payload(), "verified": True, "mfa_enabled": False, "email": None},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.s.gateway_url,
            "application": {"id": str(self.state.application_id), "flags": self.s.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "geo_ordered_rtc_regions": [],
            "guild_join_requests": [],
            "_trace": ["standin"],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        session.ready_sent = True
        self._send_dispatch(session, "READY", ready)
        for guild in guilds:
            self._send_dispatch(session, "GUILD_CREATE", self.s._guild_create_payload(guild, session))
        self.state.record("gateway.ready", session=session.id, intents=intents, guilds=[g.id for g in guilds])

    async def _resume(self, conn: Connection, d: dict) -> None:
        session = self.sessions.get(str(d.get("session_id")))
        if session is None or not self._token_ok(d.get("token")):
            conn.send({"op": INVALID_SESSION, "d": False})
            self.state.record("gateway.invalid_session", reason="unknown session")
            return
        if session.conn is not None and session.conn is not conn:
            old, session.conn = session.conn, None
            await old.close(4000)
        self.resumes += 1
        seq = int(d.get("seq") or 0)
        session.conn = conn
        conn.session = session
        for s, text in session.buffer:
            if s > seq:
                conn.queue.put_nowait(text)
        self._send_dispatch(session, "RESUMED", {"_trace": ["standin"]})

    def _request_members(self, session: Session, d: dict) -> None:
        gids = d.get("guild_id")
        gids = gids if isinstance(gids, list) else [gids]
        query = d.get("query")
        user_ids = d.get("user_ids")
        limit = int(d.get("limit") or 0)
        for gid in gids:
            guild = self.state.guilds.get(int(gid))
            if guild is None:
                continue
            members = list(guild.members.values())
            not_found: list[str] = []
            if user_ids is not None:
                ids = [int(u) for u in (user_ids if isinstance(user_ids, list) else [user_ids])]
                not_found = [str(u) for u in ids if u not in guild.members]
                members = [guild.members[u] for u in ids if u in guild.members]
            elif query:
                members = [m for m in members if m.user.username.lower().startswith(query.lower())]
            elif not session.has(Intent.GUILD_MEMBERS):
                members = []
            if limit:
                members = members[:limit]
            chunk = {
                "guild_id": str(guild.id),
                "members": [m.payload() for m in members],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": not_found,
            }
            if d.get("nonce") is not None:
                chunk["nonce"] = d["nonce"]
            self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)


def _redact(d: Any) -> Any:
    if isinstance(d, dict) and "token" in d:
        return {**d, "token": "<redacted>"}
    return d
