"""/queue show|remove|top, /schedule set|pause|resume|show, /post now|resolve,
and the delivery of what posting runs have to say (log channel lines, candidate
message edits) from ``posting_events``."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands, tasks

from core import contract
from bot.posting import post_links
from bot.scheduler import BadSchedule, make_schedule, next_runs
from cogs.common import operator_persona, persona_autocomplete, refuse, require_operator, require_persona

log = logging.getLogger("parodybot.posting")

DELIVER_SECONDS = 5.0


def _short(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _ts(t: dt.datetime, style: str = "f") -> str:
    return f"<t:{int(t.timestamp())}:{style}>"


async def _candidates_choices(interaction: discord.Interaction, current: str, states: tuple[str, ...]):
    persona = getattr(interaction.namespace, "persona", None)
    guild_personas = {p["name"] for p in await interaction.client.store.list_personas(interaction.guild_id)}
    if persona:
        guild_personas &= {persona}
    rows = []
    for name in sorted(guild_personas):
        if "approved" in states:
            rows += await interaction.client.store.approved_queue(name)
        others = [s for s in states if s != "approved"]
        if others:
            rows += await interaction.client.store.candidates(persona=name, states=others)
    out = []
    for cand in rows:
        label = f"#{cand['id']} {cand['persona']} ({cand['score']:+d}) {_short(cand['text'], 60)}"
        if current.strip().lstrip("#") in label:
            out.append(app_commands.Choice(name=label[:100], value=cand["id"]))
    return out[:25]


async def queued_autocomplete(interaction: discord.Interaction, current: str):
    return await _candidates_choices(interaction, current, ("approved",))


async def failed_autocomplete(interaction: discord.Interaction, current: str):
    return await _candidates_choices(interaction, current, ("failed", "posting"))


class Posting(commands.Cog):
    queue_group = app_commands.Group(name="queue", description="The approved candidates waiting to be posted")
    schedule_group = app_commands.Group(name="schedule", description="When a persona posts")
    post_group = app_commands.Group(name="post", description="Post now, or resolve an interrupted post")

    def __init__(self, bot):
        self.bot = bot
        self._deliver_lock = asyncio.Lock()
        bot.scheduler.on_report = self.after_run
        self.deliverer.change_interval(seconds=DELIVER_SECONDS)
        self.deliverer.start()

    async def cog_unload(self) -> None:
        self.deliverer.cancel()

    # --- delivering what runs said ---------------------------------------------

    async def after_run(self, report) -> None:
        await self.deliver()

    @tasks.loop(seconds=DELIVER_SECONDS)
    async def deliverer(self) -> None:
        await self.deliver()

    @deliverer.before_loop
    async def _wait_ready(self) -> None:
        await self.bot.wait_until_ready()

    async def deliver(self) -> None:
        """Send the pending log lines and edit the candidate messages (events from the
        bot's own runs, and from `parodybot post-now` runs made while it was away)."""
        if self.bot.store is None:
            return
        async with self._deliver_lock:
            for event in await self.bot.store.pending_posting_events():
                try:
                    await self._deliver_one(event)
                except discord.HTTPException as exc:  # permanent (gone, forbidden, bad request): do not loop on it
                    log.warning("posting event %s could not be delivered: %s", event["id"], exc)
                except Exception:
                    log.exception("delivering posting event %s failed; will retry", event["id"])
                    continue
                await self.bot.store.mark_posting_event_delivered(event["id"])

    async def _deliver_one(self, event: dict) -> None:
        persona = await self.bot.store.get_persona(event["persona"]) or {}
        if event["refresh"] and event["candidate_id"]:
            cand = await self.bot.store.get_candidate(event["candidate_id"])
            if cand is not None:
                await self.refresh(cand)
        if event["text"]:
            channel_id = persona.get("log_channel_id") or persona.get("curation_channel_id")
            if channel_id:
                await self.bot.get_partial_messageable(channel_id).send(
                    event["text"], allowed_mentions=discord.AllowedMentions.none())
            else:
                log.info("%s (persona has no log channel)", event["text"])

    async def refresh(self, cand: dict) -> None:
        curation = self.bot.get_cog("Curation")
        if curation is None or not cand.get("message_id"):
            return
        links = post_links(await self.bot.store.posts_for(cand["id"]))
        if cand.get("note") and cand["state"] in ("failed", "approved", "rejected"):
            links.append(f"note: {cand['note']}")
        await curation.refresh_message(cand, links or None)

    # --- /queue ----------------------------------------------------------------

    @queue_group.command(name="show", description="The approved queue in posting order")
    @app_commands.autocomplete(persona=persona_autocomplete)
    async def queue_show(self, interaction: discord.Interaction, persona: str) -> None:
        if await require_persona(interaction, persona) is None:
            return
        queue = await self.bot.posting.queue(persona)
        if not queue:
            await interaction.response.send_message(
                f"The queue of **{persona}** is empty: approve candidates by voting (or `/generate` more).", ephemeral=True)
            return
        lines = [f"**{persona}**: {len(queue)} approved, next first"]
        for i, cand in enumerate(queue[:20], 1):
            top = " ⬆️" if cand["queue_rank"] is not None else ""
            lines.append(f"{i}. #{cand['id']} ({cand['score']:+d}){top} {_short(cand['text'])}")
        if len(queue) > 20:
            lines.append(f"… and {len(queue) - 20} more")
        await interaction.response.send_message("\n".join(lines), ephemeral=True)

    @queue_group.command(name="remove", description="Take a candidate out of the queue (it will not be posted)")
    @app_commands.autocomplete(persona=persona_autocomplete, candidate=queued_autocomplete)
    async def queue_remove(self, interaction: discord.Interaction, persona: str, candidate: int) -> None:
        await self._queue_edit(interaction, persona, candidate, "remove")

    @queue_group.command(name="top", description="Move a candidate to the top of the queue (posted next)")
    @app_commands.autocomplete(persona=persona_autocomplete, candidate=queued_autocomplete)
    async def queue_top(self, interaction: discord.Interaction, persona: str, candidate: int) -> None:
        await self._queue_edit(interaction, persona, candidate, "top")

    async def _queue_edit(self, interaction: discord.Interaction, persona: str, candidate: int, action: str) -> None:
        if await operator_persona(interaction, persona) is None:
            return
        cand = await self.bot.store.get_candidate(candidate)
        if cand is None or cand["persona"] != persona:
            await refuse(interaction, f"**{persona}** has no candidate #{candidate}: `/queue show persona:{persona}` lists them.")
            return
        try:
            if action == "remove":
                cand = await self.bot.posting.remove(candidate, by=str(interaction.user))
                text = f"Removed #{candidate} from the queue of **{persona}**."
            else:
                cand = await self.bot.posting.top(candidate)
                text = f"#{candidate} is now first in the queue of **{persona}**."
        except contract.BadInput as exc:
            await refuse(interaction, f"{exc}. `/queue show persona:{persona}` lists the queue.")
            return
        await interaction.response.send_message(text)
        await self.refresh(cand)
        if action == "remove":  # the others moved up
            for other in await self.bot.store.approved_queue(persona):
                await self.refresh(other)

    # --- /schedule -------------------------------------------------------------

    @schedule_group.command(name="set", description="Post on a cron schedule in a time zone, or every N minutes")
    @app_commands.autocomplete(persona=persona_autocomplete)
    @app_commands.describe(cron="five cron fields, e.g. 0 9,13,19 * * *", timezone="IANA time zone, e.g. Europe/Berlin",
                           interval_minutes="instead of cron: every N minutes", jitter_minutes="random delay 0..N minutes")
    async def schedule_set(self, interaction: discord.Interaction, persona: str, cron: str | None = None,
                           timezone: str | None = None, interval_minutes: float | None = None,
                           jitter_minutes: float | None = None) -> None:
        if await operator_persona(interaction, persona) is None:
            return
        if not cron and interval_minutes is None:
            await refuse(interaction, "Give `cron` (and `timezone`), e.g. cron:`0 9,13,19 * * *` timezone:`Europe/Berlin`, "
                                      "or `interval_minutes`, e.g. 240.")
            return
        try:
            schedule = make_schedule(cron=cron, timezone=timezone or self.bot.cfg.posting.timezone,
                                     interval_minutes=interval_minutes,
                                     jitter_minutes=self.bot.cfg.posting.jitter_minutes if jitter_minutes is None else jitter_minutes,
                                     anchor=dt.datetime.now(dt.timezone.utc))
        except BadSchedule as exc:
            await refuse(interaction, f"{exc}. Example: `/schedule set persona:{persona} cron:0 9,13,19 * * * "
                                      "timezone:Europe/Berlin jitter_minutes:20`.")
            return
        await self.bot.store.update_persona(persona, schedule=schedule.to_json())
        await self.bot.scheduler.sync(persona)
        await interaction.response.send_message(f"**{persona}** now posts {schedule.describe()}.\n"
                                                + self._next_text(persona, schedule))

    @schedule_group.command(name="pause", description="Stop a persona's scheduled posts")
    @app_commands.autocomplete(persona=persona_autocomplete)
    async def schedule_pause(self, interaction: discord.Interaction, persona: str) -> None:
        if await operator_persona(interaction, persona) is None:
            return
        await self.bot.store.update_persona(persona, state="paused", paused_reason=f"paused by {interaction.user}")
        await self.bot.scheduler.sync(persona)
        await interaction.response.send_message(f"⏸️ **{persona}** is paused: `/schedule resume persona:{persona}` starts it again.")

    @schedule_group.command(name="resume", description="Start a paused persona's scheduled posts again")
    @app_commands.autocomplete(persona=persona_autocomplete)
    async def schedule_resume(self, interaction: discord.Interaction, persona: str) -> None:
        record = await operator_persona(interaction, persona)
        if record is None:
            return
        schedule = await self._stored_schedule(interaction, record)
        if schedule is None:
            return
        # Runs skipped while paused are not made up for.
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        await self.bot.store.update_persona(persona, state="active", paused_reason=None, last_run_at=now, posting_notice=None)
        await self.bot.scheduler.sync(persona)
        await interaction.response.send_message(f"▶️ **{persona}** posts again, {schedule.describe()}.\n"
                                                + self._next_text(persona, schedule))

    async def _stored_schedule(self, interaction: discord.Interaction, record: dict):
        """The persona's stored schedule, or None after telling the member that it does not work."""
        try:
            return self.bot.scheduler.schedule_of(record)
        except BadSchedule as exc:
            await refuse(interaction, f"The stored schedule does not work ({exc}); set one with `/schedule set`.")
            return None

    @schedule_group.command(name="show", description="A persona's schedule and its next run times")
    @app_commands.autocomplete(persona=persona_autocomplete)
    async def schedule_show(self, interaction: discord.Interaction, persona: str) -> None:
        record = await require_persona(interaction, persona)
        if record is None:
            return
        schedule = await self._stored_schedule(interaction, record)
        if schedule is None:
            return
        state = "active" if record["state"] == "active" else f"paused ({record.get('paused_reason') or 'paused'})"
        await interaction.response.send_message(
            f"**{persona}** ({state}) posts {schedule.describe()}.\n" + self._next_text(persona, schedule), ephemeral=True)

    def _next_text(self, persona: str, schedule) -> str:
        now = dt.datetime.now(dt.timezone.utc)
        times = next_runs(schedule, now, 5)
        lines = []
        job_next = self.bot.scheduler.next_run_time(persona)
        if job_next is not None:
            lines.append(f"Next run: {_ts(job_next)} ({_ts(job_next, 'R')}, jitter included)")
        elif self.bot.scheduler.engine is not None:
            lines.append("No run is scheduled (the persona is paused).")
        lines.append("Scheduled times: " + ", ".join(
            f"{t.astimezone(schedule.tz):%a %d %b %H:%M} ({_ts(t, 'R')})" for t in times))
        return "\n".join(lines)

    # --- /post -----------------------------------------------------------------

    @post_group.command(name="now", description="Post the best approved candidate now (to every target)")
    @app_commands.autocomplete(persona=persona_autocomplete)
    async def post_now(self, interaction: discord.Interaction, persona: str) -> None:
        record = await operator_persona(interaction, persona)
        if record is None:
            return
        if record["state"] != "active":
            await refuse(interaction, f"**{persona}** is paused ({record.get('paused_reason') or 'paused'}): "
                                      f"`/schedule resume persona:{persona}` first.")
            return
        await interaction.response.defer(thinking=True)
        report = await self.bot.scheduler.run(persona, "manual")
        text = report.message
        if report.outcome in ("empty", "cap", "busy", "paused"):
            text = "Nothing posted: " + text
        await interaction.edit_original_response(content=text[:1900], allowed_mentions=discord.AllowedMentions.none())

    @post_group.command(name="resolve", description="After an interrupted post: it is there (posted), or queue it again")
    @app_commands.autocomplete(candidate=failed_autocomplete)
    @app_commands.describe(outcome="posted: it went out; requeue: post it again to the targets not known posted")
    async def post_resolve(self, interaction: discord.Interaction, candidate: int,
                           outcome: Literal["posted", "requeue"]) -> None:
        if not await require_operator(interaction):
            return
        try:
            cand = await self.bot.posting.resolve(candidate, outcome, by=str(interaction.user))
        except contract.BadInput as exc:
            await refuse(interaction, f"{exc}.")
            return
        word = "marked posted" if outcome == "posted" else "back in the queue"
        await interaction.response.send_message(f"Candidate #{cand['id']} of **{cand['persona']}** is {word}.")
        await self.deliver()


async def setup(bot) -> None:
    await bot.add_cog(Posting(bot))
