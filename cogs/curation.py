"""Curation: each candidate is a message; members vote with reactions.

Votes come from raw reaction events, so messages need not be cached. At
start-up every candidate still voting is reconciled from its message's
reactions, so what members did while the bot was down counts.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

import discord
from discord.ext import commands, tasks

from bot import voting
from bot.candidates import ReactionEvent
from cogs.common import role_ids
from cogs.render import fit_embed, plain
from core import contract
from core.clock import parse_iso
from core.faults import fault

log = logging.getLogger("parodybot.curation")

STATE_LINE = {
    "voting": "🗳️ voting",
    "approved": "✅ approved",
    "rejected": "❌ rejected",
    "expired": "⌛ expired (the voting window ended without approval)",
    "posting": "📤 posting…",
    "posted": "📤 posted",
    "failed": "⚠️ posting failed",
}
STATE_COLOUR = {"voting": 0x5865F2, "approved": 0x57F287, "rejected": 0xED4245, "expired": 0x99AAB5,
                "posting": 0xFEE75C, "posted": 0x57F287, "failed": 0xED4245}


def render_candidate(cand: dict, rules: voting.VoteRules, position: int | None = None,
                     links: list[str] | None = None) -> discord.Embed:
    # What voters see is what would be posted: the text as plain text.
    embed = discord.Embed(description=plain(cand["text"]), colour=STATE_COLOUR.get(cand["state"], 0))
    embed.set_author(name=f"{contract.persona_label(cand['persona'])} · candidate #{cand['id']}")
    state = STATE_LINE.get(cand["state"], cand["state"])
    if cand["state"] == "voting":
        ends = int(parse_iso(cand["created_at"]).timestamp() + rules.window_seconds)
        state += (f": {rules.approve_emoji} to approve ({rules.approve_at} net needed), "
                  f"{rules.reject_emoji} to reject; window closes <t:{ends}:R>")
    else:
        state += f" (net {cand['score']:+d})"
    if cand["state"] == "approved" and position:
        state += f": #{position} in the posting queue"
    if links:
        state += "\n" + "\n".join(links)
    embed.add_field(name="State", value=state, inline=False)
    settings = cand.get("settings") or {}
    shown = " · ".join(f"{k} {v}" for k, v in settings.items()
                       if k in ("temperature", "top_p", "top_k", "seed", "model", "job") and v not in (None, 0))
    if shown:
        embed.set_footer(text=shown)
    return fit_embed(embed)


class Curation(commands.Cog):
    """The Discord side of curation: candidate messages and reaction votes.
    The counting and deciding is bot.candidates.CandidateService."""

    def __init__(self, bot):
        self.bot = bot
        self.service = bot.services.candidates
        self.personas = bot.services.personas
        self.reconciled = False
        self._rules_cache: dict[str, tuple[float, voting.VoteRules]] = {}
        self._edit_locks: dict[int, asyncio.Lock] = {}
        self._shown: dict[int, tuple] = {}  # candidate id -> (place, net) its message shows
        self._queue_refresh: dict[str, asyncio.Task] = {}
        self._queue_moved: set[str] = set()  # personas whose queue moved since their last pass began
        self._reconcile_task: asyncio.Task | None = None
        self.windows.start()
        self._edits: set[asyncio.Task] = set()
        self._deliveries: asyncio.Queue[str] = asyncio.Queue()
        self._delivery_wanted: dict[str, int | None] = {}
        self._delivery_locks: dict[str, asyncio.Lock] = {}
        self._deliverer = asyncio.create_task(self._deliver_loop())
        self._votes = asyncio.create_task(self.service.consume(self.cached_rules, self._after_votes))
        bot.vote_sink = self._on_reaction  # raw reaction events come straight here (bot/client.py)

    async def cog_unload(self) -> None:
        self.bot.vote_sink = None
        self.windows.cancel()
        self._votes.cancel()
        self._deliverer.cancel()
        # Pending message edits would fail once discord.py's HTTP session closes.
        for task in (*self._queue_refresh.values(), *self._edits):
            task.cancel()
        if self._reconcile_task is not None:
            self._reconcile_task.cancel()

    # --- rules -------------------------------------------------------------

    async def rules_of_persona(self, key: str) -> voting.VoteRules:
        persona = await self.personas.by_key(key)
        guild = self.bot.get_guild(persona["guild_id"]) if persona else None
        return self.personas.rules(persona, role_ids(guild))

    # --- candidates --------------------------------------------------------

    @commands.Cog.listener()
    async def on_candidates_waiting(self, key: str, fallback_channel: int | None = None) -> None:
        """A persona has candidates without a message (a job finished): deliver them."""
        self.request_delivery(key, fallback_channel)

    def request_delivery(self, key: str, fallback_channel: int | None = None) -> None:
        if key not in self._delivery_wanted:
            self._delivery_wanted[key] = fallback_channel
            self._deliveries.put_nowait(key)

    async def _deliver_loop(self) -> None:
        """The one delivery path: personas one at a time, in the order asked, so two
        start-up paths (reconciliation, the job tracker) can never send a candidate twice."""
        await self.bot.wait_until_ready()
        while True:
            key = await self._deliveries.get()
            fallback = self._delivery_wanted.pop(key, None)
            try:
                await self.post_unsent(key, fallback_channel=fallback)
            except Exception:
                log.exception("delivering %s's candidates failed; retrying at the next start or job", key)

    @commands.Cog.listener()
    async def on_persona_deleted(self, name: str, messages: list[tuple[int, int]]) -> None:
        """Its candidates' messages say so instead of "approved, #1 in the queue" or "👍 to approve"."""
        for channel_id, message_id in messages:
            message = self.bot.get_partial_messageable(channel_id).get_partial_message(message_id)
            embed = discord.Embed(description="(retired)", colour=STATE_COLOUR["expired"])
            embed.set_author(name=f"{name} · retired")
            embed.add_field(name="State", value=f"🗑️ retired: the persona **{name}** was deleted; nothing here "
                                                "will be posted", inline=False)
            try:
                await message.edit(embed=embed)
            except discord.HTTPException as exc:  # the message is gone
                log.info("retiring message %s: %s", message_id, exc)

    @commands.Cog.listener()
    async def on_candidate_edited(self, cand: dict, channel_id: int, message_id: int) -> None:
        """Its old message says where the vote went: the new text is voted on in a new message."""
        message = self.bot.get_partial_messageable(channel_id).get_partial_message(message_id)
        embed = discord.Embed(description="(edited)", colour=STATE_COLOUR["expired"])
        embed.set_author(name=f"{contract.persona_label(cand['persona'])} · candidate #{cand['id']} · edited")
        embed.add_field(name="State", value="✏️ edited: its vote starts again in a new message; reactions here "
                                            "no longer count", inline=False)
        try:
            await message.edit(embed=embed)
        except discord.HTTPException as exc:  # the message is gone
            log.info("retiring edited message %s: %s", message_id, exc)

    @commands.Cog.listener()
    async def on_candidate_changed(self, cand: dict, links: list[str] | None = None) -> None:
        """Another part of the bot changed a candidate (posting, the queue): redraw it."""
        await self.refresh_message(cand, links)

    async def post_unsent(self, key: str, fallback_channel: int | None = None) -> None:
        persona = await self.personas.by_key(key)
        if persona is None:  # deleted meanwhile: its candidates went with it
            return
        channel_id = persona.get("curation_channel_id") or fallback_channel
        if not channel_id:
            log.warning("persona %s has no curation channel; candidates wait", key)
            return
        rules = await self.rules_of_persona(key)
        channel = self.bot.get_partial_messageable(channel_id)
        async with self._delivery_locks.setdefault(key, asyncio.Lock()):
            await self._send_unsent(key, channel, channel_id, rules)

    async def _send_unsent(self, key: str, channel, channel_id: int, rules: voting.VoteRules) -> None:
        for cand in await self.service.unsent(key):
            earlier = await self.service.claim_delivery(cand["id"], channel_id)
            message = await self._sent_before(channel, cand["id"], earlier) if earlier else None
            if message is None:
                position = await self.service.queue_position(cand)  # approved at once by hand: its place
                message = await channel.send(embed=render_candidate(cand, rules, position))
                fault("after_candidate_message")
            await self.service.set_message(cand["id"], message.id, rules)
            for emoji in rules.vote_emojis:  # adding one that is there already changes nothing
                await message.add_reaction(emoji)

    async def _sent_before(self, channel, candidate_id: int, claimed_at: str):
        """The message an earlier delivery sent for this candidate, if it got that far
        (the process may have died between sending it and recording its id)."""
        tag = f"candidate #{candidate_id}"
        after = parse_iso(claimed_at) - dt.timedelta(minutes=1)
        async for message in channel.history(limit=200, after=after, oldest_first=True):
            if message.author.id == self.bot.user.id and message.embeds and \
                    (message.embeds[0].author.name or "").endswith(tag):
                log.info("%s: adopting the message sent before a restart", tag)
                return message
        return None

    async def refresh_message(self, cand: dict, links: list[str] | None = None) -> None:
        if not cand or not cand.get("message_id"):
            return
        # One edit at a time per candidate, each rendering what is stored now, so
        # the last edit to land always shows the latest state.
        async with self._edit_locks.setdefault(cand["id"], asyncio.Lock()):
            cand = await self.service.get(cand["id"]) or cand
            await self._render_into_message(cand, links)
        if cand["state"] != "voting":
            self.queue_changed(cand["persona"])

    def queue_changed(self, persona: str) -> None:
        """The approved queue may have moved: redraw places and nets, at most once a second."""
        self._queue_moved.add(persona)
        task = self._queue_refresh.get(persona)
        if task is None or task.done():
            self._queue_refresh[persona] = asyncio.create_task(self._refresh_places(persona))

    async def _refresh_places(self, persona: str) -> None:
        # A move during a pass (its edits wait on Discord's rate limits) gets another
        # pass: the queue this one read may already be out of date.
        while persona in self._queue_moved:
            await asyncio.sleep(1.0)  # a burst of decisions costs one pass, and few edits
            self._queue_moved.discard(persona)
            for place, cand in enumerate(await self.service.approved_queue(persona), 1):
                if cand["message_id"] and self._shown.get(cand["id"]) != (place, cand["score"]):
                    async with self._edit_locks.setdefault(cand["id"], asyncio.Lock()):
                        fresh = await self.service.get(cand["id"])
                        if fresh and fresh["state"] == "approved":
                            await self._render_into_message(fresh, None)

    async def _render_into_message(self, cand: dict, links: list[str] | None) -> None:
        rules = await self.rules_of_persona(cand["persona"])
        position = await self.service.queue_position(cand)
        message = self.bot.get_partial_messageable(cand["channel_id"]).get_partial_message(cand["message_id"])
        self._shown[cand["id"]] = (position, cand["score"])
        try:
            await message.edit(embed=render_candidate(cand, rules, position, links))
        except discord.NotFound:
            log.warning("candidate #%s: its message is gone", cand["id"])

    # --- votes -------------------------------------------------------------

    def _on_reaction(self, data: dict, added: bool) -> None:
        """A MESSAGE_REACTION_ADD or _REMOVE as the gateway sent it (bot/client.py).
        No await before submit: events are applied in the order Discord sent them."""
        user_id = int(data["user_id"])
        if data.get("guild_id") is None or user_id == self.bot.user.id:
            return
        guild_id = int(data["guild_id"])
        raw_emoji = data["emoji"]
        emoji = raw_emoji["name"] if raw_emoji.get("id") is None else str(discord.PartialEmoji.from_dict(raw_emoji))
        member = data.get("member") if added else None  # a removal carries none
        # Only an approve or reject at once needs the Member (working out permissions costs, per vote)
        forcer = member and emoji in voting.FORCE_EMOJIS and self.bot.member_from(guild_id, member)
        self.service.submit(ReactionEvent(
            int(data["message_id"]), guild_id, user_id, emoji, added,
            member_is_bot=bool(member and member["user"].get("bot")),
            # discord.py's Member.roles: the member's roles and @everyone (the guild's id)
            member_roles=(*map(int, member["roles"]), guild_id) if member else None,
            manage_messages=bool(forcer and forcer.guild_permissions.manage_messages),
        ))

    def _after_votes(self, cand: dict, changed: bool) -> None:
        if changed:
            task = asyncio.create_task(self.refresh_message(cand))
            self._edits.add(task)  # keep a reference until it is done
            task.add_done_callback(self._edits.discard)
        elif cand["state"] == "approved":
            self.queue_changed(cand["persona"])  # its net (and maybe its place) moved

    async def cached_rules(self, persona: str) -> voting.VoteRules:
        """A persona's rules, read at most once a second (a burst of votes reads them once)."""
        now = time.monotonic()
        hit = self._rules_cache.get(persona)
        if hit is None or now - hit[0] > 1.0:
            hit = self._rules_cache[persona] = (now, await self.rules_of_persona(persona))
        return hit[1]


    # --- start-up reconciliation and the voting window ----------------------

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        if self.reconciled:
            return
        self.reconciled = True
        self._reconcile_task = asyncio.current_task()  # cancelled if the bot stops meanwhile
        try:
            await self.reconcile_all()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconciling votes at start-up failed")

    async def reconcile_all(self) -> None:
        # Approved ones too: their score (the posting order) may have moved while we were down.
        for cand in await self.service.to_reconcile():
            await self.reconcile(cand)
        for persona in await self.personas.every_guild():
            self.request_delivery(persona["key"])

    async def reconcile(self, cand: dict) -> None:
        persona = await self.personas.by_key(cand["persona"])
        guild = self.bot.get_guild((persona or {}).get("guild_id") or 0)
        rules = self.personas.rules(persona, role_ids(guild))
        channel = self.bot.get_partial_messageable(cand["channel_id"])

        async def read_reactions():
            message = await channel.fetch_message(cand["message_id"])
            users_by_emoji: dict[str, list[int]] = {}
            is_bot: dict[int, bool] = {}
            for reaction in message.reactions:
                emoji = str(reaction.emoji)
                if emoji not in (*rules.vote_emojis, rules.force_approve_emoji, rules.force_reject_emoji):
                    continue
                async for user in reaction.users():
                    users_by_emoji.setdefault(emoji, []).append(user.id)
                    is_bot[user.id] = user.bot or user.id == self.bot.user.id
            members: dict[int, discord.Member | None] = {}

            async def member(uid: int) -> discord.Member | None:
                if uid not in members and guild is not None:
                    try:
                        members[uid] = guild.get_member(uid) or await guild.fetch_member(uid)
                    except discord.NotFound:
                        members[uid] = None
                return members.get(uid)

            eligible: dict[int, bool] = {}
            for uid in {u for users in users_by_emoji.values() for u in users}:
                roles = []
                if rules.voter_role_id is not None or rules.curator_role_id is not None:
                    m = await member(uid)
                    roles = [r.id for r in m.roles] if m else []
                eligible[uid] = voting.counts(is_bot[uid], roles, rules)
            forced = None
            for emoji in (rules.force_approve_emoji, rules.force_reject_emoji):
                for uid in users_by_emoji.get(emoji, []):
                    m = await member(uid)
                    if m and voting.may_force(is_bot[uid], [r.id for r in m.roles], rules,
                                                manage_messages=m.guild_permissions.manage_messages):
                        forced = voting.forced_decision(emoji, may_force=True, rules=rules)
            return users_by_emoji, (lambda uid: eligible.get(uid, False)), forced

        score_before = cand["score"]
        try:
            cand, changed = await self.service.reconcile(cand, read_reactions, rules)
        except discord.NotFound:
            log.warning("candidate #%s: its message is gone; leaving it as it is", cand["id"])
            return
        if changed or cand["score"] != score_before:
            await self.refresh_message(cand)

    @tasks.loop(seconds=30)
    async def windows(self) -> None:
        personas = {p["key"]: p for p in await self.personas.every_guild()}
        rules = {key: self.personas.rules(p, role_ids(self.bot.get_guild(p["guild_id"]))) for key, p in personas.items()}
        default = self.personas.rules(None)
        for cand in await self.service.close_windows(lambda c: rules.get(c["persona"], default)):
            await self.refresh_message(cand)

    @windows.before_loop
    async def _wait_ready(self) -> None:
        await self.bot.wait_until_ready()


async def setup(bot) -> None:
    await bot.add_cog(Curation(bot))
