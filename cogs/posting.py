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

from bot.scheduler import next_runs
from cogs.common import PRIVATE, answer, check_fetchable, guild_persona, operator_only, persona_autocomplete, services
from cogs.hand_curation import check_then
from cogs.render import fit, fit_lines, plain
from core import contract

log = logging.getLogger("parodybot.posting")

DELIVER_SECONDS = 5.0


def _short(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _ts(t: dt.datetime, style: str = "f") -> str:
    return f"<t:{int(t.timestamp())}:{style}>"


async def _candidates_choices(interaction: discord.Interaction, current: str, states: tuple[str, ...]):
    if interaction.guild_id is None:
        return []
    persona = getattr(interaction.namespace, "persona", None)
    svc = services(interaction)
    personas = [p for p in await svc.personas.list(interaction.guild_id) if not persona or p["name"] == persona]
    rows = []
    for p in personas:
        if "approved" in states:
            rows += await svc.candidates.approved_queue(p["key"])
        others = [s for s in states if s != "approved"]
        if others:
            rows += [c for c in await svc.candidates.to_resolve(p["key"]) if c["state"] in others]
    out = []
    for cand in rows:
        label = f"#{cand['id']} {contract.persona_label(cand['persona'])} ({cand['score']:+d}) {_short(cand['text'], 60)}"
        if current.strip().lstrip("#") in label:
            out.append(app_commands.Choice(name=label[:100], value=cand["id"]))
    return out[:25]


async def queued_autocomplete(interaction: discord.Interaction, current: str):
    return await _candidates_choices(interaction, current, ("approved",))


async def failed_autocomplete(interaction: discord.Interaction, current: str):
    return await _candidates_choices(interaction, current, ("failed", "posting"))


# More lines than fit in one reply (each is at least a dozen characters): the rest are counted, not read.
QUEUE_SHOWN = 200


def render_queue(persona: str, queue: list[dict], total: int) -> str:
    """/queue show's reply: the first of the ``total`` approved candidates in posting order, as many as fit."""
    lines = [f"**{persona}**: {total} approved, next first"]
    for i, cand in enumerate(queue, 1):
        top = " ⬆️" if cand["queue_rank"] is not None else ""
        lines.append(f"{i}. #{cand['id']} ({cand['score']:+d}){top} {plain(_short(cand['text']))}")
    return fit_lines(lines, more="… and {n} more: `/queue remove` or posting makes room", unread=total - len(queue))


class Posting(commands.Cog):
    queue_group = app_commands.Group(name="queue", description="The approved candidates waiting to be posted")
    schedule_group = app_commands.Group(name="schedule", description="When a persona posts")
    post_group = app_commands.Group(name="post", description="Post now, or resolve an interrupted post")

    def __init__(self, bot):
        self.bot = bot
        self.posting = bot.services.posting
        self.personas = bot.services.personas
        self.scheduler = bot.services.scheduler
        self._deliver_lock = asyncio.Lock()
        self.scheduler.on_report = self.after_run
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
        async with self._deliver_lock:
            for event in await self.posting.pending_events():
                try:
                    await self._deliver_one(event)
                except discord.HTTPException as exc:  # permanent (gone, forbidden, bad request): do not loop on it
                    log.warning("posting event %s could not be delivered: %s", event["id"], exc)
                except Exception:
                    log.exception("delivering posting event %s failed; will retry", event["id"])
                    continue
                await self.posting.event_delivered(event["id"])

    async def _deliver_one(self, event: dict) -> None:
        persona = await self.personas.by_key(event["persona"]) or {}
        if event["refresh"] and event["candidate_id"]:
            cand = await self.bot.services.candidates.get(event["candidate_id"])
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
        """Redraw the candidate's message with its links (cogs/curation.py draws it)."""
        if cand.get("message_id"):
            self.bot.dispatch("candidate_changed", cand, (await self.posting.links(cand)) or None)

    # --- /queue ----------------------------------------------------------------

    @queue_group.command(name="show", description="The approved queue in posting order", extras=PRIVATE)
    @app_commands.autocomplete(persona=persona_autocomplete)
    async def queue_show(self, interaction: discord.Interaction, persona: str) -> None:
        record = await guild_persona(interaction, persona)
        queue, total = await self.posting.queue_page(record["key"], QUEUE_SHOWN)
        if not queue:
            await answer(interaction,
                f"The queue of **{persona}** is empty: approve candidates by voting (or `/generate` more).")
            return
        await answer(interaction, render_queue(persona, queue, total))

    @queue_group.command(name="remove", description="Take a candidate out of the queue (it will not be posted)")
    @app_commands.autocomplete(persona=persona_autocomplete, candidate=queued_autocomplete)
    @operator_only
    async def queue_remove(self, interaction: discord.Interaction, persona: str, candidate: int) -> None:
        await self._queue_edit(interaction, persona, candidate, "remove")

    @queue_group.command(name="add", description="Put a hand-written post up for a vote (or, as a curator, approve it)")
    @app_commands.autocomplete(persona=persona_autocomplete)
    @app_commands.describe(text="the post", approve="curators: straight into the posting queue")
    @operator_only
    async def queue_add(self, interaction: discord.Interaction, persona: str,
                        text: app_commands.Range[str, 1, 1000], approve: bool = False) -> None:
        await check_then(interaction, await guild_persona(interaction, persona), "add", [text], approve=approve)

    @queue_group.command(name="import", description="Put a curated list up for a vote (or, as a curator, approve it)")
    @app_commands.autocomplete(persona=persona_autocomplete)
    @app_commands.describe(file="a CSV (a text column) or a text file: one post per line, or each followed by "
                                "a line of 20 '='", approve="curators: straight into the posting queue")
    @operator_only
    async def queue_import(self, interaction: discord.Interaction, persona: str, file: discord.Attachment,
                           approve: bool = False) -> None:
        record = await guild_persona(interaction, persona)
        check_fetchable(file, self.bot.cfg)
        if not file.filename.lower().endswith((".csv", ".txt")):
            raise contract.BadInput(f"{file.filename} is not a .csv (a text column) or a .txt (one post per line, "
                                    "or each followed by a line of 20 '=')")
        texts = self.bot.services.candidates.parse_curated(file.filename, await file.read())
        await check_then(interaction, record, "import", texts, approve=approve)

    @queue_group.command(name="top", description="Move a candidate to the top of the queue (posted next)")
    @app_commands.autocomplete(persona=persona_autocomplete, candidate=queued_autocomplete)
    @operator_only
    async def queue_top(self, interaction: discord.Interaction, persona: str, candidate: int) -> None:
        await self._queue_edit(interaction, persona, candidate, "top")

    async def _queue_edit(self, interaction: discord.Interaction, persona: str, candidate: int, action: str) -> None:
        record = await guild_persona(interaction, persona)
        cand = await self.posting.edit_queue(record, candidate, action, by=str(interaction.user))
        text = (f"Removed #{candidate} from the queue of **{persona}**." if action == "remove"
                else f"#{candidate} is now first in the queue of **{persona}**.")
        await answer(interaction, text)
        await self.refresh(cand)
        if action == "remove":  # the others moved up
            for other in await self.posting.queue(record["key"]):
                await self.refresh(other)

    # --- /schedule -------------------------------------------------------------

    @schedule_group.command(name="set", description="Post on a cron schedule in a time zone, or every N minutes")
    @app_commands.autocomplete(persona=persona_autocomplete)
    @app_commands.describe(cron="five cron fields, e.g. 0 9,13,19 * * *", timezone="IANA time zone, e.g. Europe/Berlin",
                           interval_minutes="instead of cron: every N minutes", jitter_minutes="random delay 0..N minutes")
    @operator_only
    async def schedule_set(self, interaction: discord.Interaction, persona: str, cron: str | None = None,
                           timezone: str | None = None, interval_minutes: float | None = None,
                           jitter_minutes: float | None = None) -> None:
        record = await guild_persona(interaction, persona)
        schedule = await self.personas.set_schedule(record, cron=cron, timezone=timezone,
                                                    interval_minutes=interval_minutes, jitter_minutes=jitter_minutes)
        await answer(interaction, f"**{persona}** now posts {schedule.describe()}.\n"
                     + self._next_text(record["key"], schedule))

    @schedule_group.command(name="pause", description="Stop a persona's scheduled posts")
    @app_commands.autocomplete(persona=persona_autocomplete)
    @operator_only
    async def schedule_pause(self, interaction: discord.Interaction, persona: str) -> None:
        await self.personas.pause(await guild_persona(interaction, persona), by=str(interaction.user))
        await answer(interaction, f"⏸️ **{persona}** is paused: `/schedule resume persona:{persona}` starts it again.")

    @schedule_group.command(name="resume", description="Start a paused persona's scheduled posts again")
    @app_commands.autocomplete(persona=persona_autocomplete)
    @operator_only
    async def schedule_resume(self, interaction: discord.Interaction, persona: str) -> None:
        record = await guild_persona(interaction, persona)
        schedule = await self.personas.resume(record)
        await answer(interaction, f"▶️ **{persona}** posts again, {schedule.describe()}.\n"
                     + self._next_text(record["key"], schedule))

    @schedule_group.command(name="show", description="A persona's schedule and its next run times", extras=PRIVATE)
    @app_commands.autocomplete(persona=persona_autocomplete)
    async def schedule_show(self, interaction: discord.Interaction, persona: str) -> None:
        record = await guild_persona(interaction, persona)
        schedule = self.personas.schedule_of(record)
        state = "active" if record["state"] == "active" else f"paused ({record.get('paused_reason') or 'paused'})"
        await answer(interaction,
            f"**{persona}** ({state}) posts {schedule.describe()}.\n" + self._next_text(record["key"], schedule))

    def _next_text(self, key: str, schedule) -> str:
        now = dt.datetime.now(dt.timezone.utc)
        times = next_runs(schedule, now, 5)
        lines = []
        job_next = self.scheduler.next_run_time(key)
        if job_next is not None:
            lines.append(f"Next run: {_ts(job_next)} ({_ts(job_next, 'R')}, jitter included)")
        elif self.scheduler.engine is not None:
            lines.append("No run is scheduled (the persona is paused).")
        lines.append("Scheduled times: " + ", ".join(
            f"{t.astimezone(schedule.tz):%a %d %b %H:%M} ({_ts(t, 'R')})" for t in times))
        return "\n".join(lines)

    # --- /post -----------------------------------------------------------------

    @post_group.command(name="now", description="Post the best approved candidate now (to every target)")
    @app_commands.autocomplete(persona=persona_autocomplete)
    @operator_only
    async def post_now(self, interaction: discord.Interaction, persona: str) -> None:
        record = await guild_persona(interaction, persona)
        if record["state"] != "active":
            raise contract.BadInput(f"**{persona}** is paused ({record.get('paused_reason') or 'paused'}): "
                                    f"`/schedule resume persona:{persona}` first.")
        report = await self.scheduler.run(record["key"], "manual")
        text = report.message
        if report.outcome in ("empty", "cap", "busy", "paused"):
            text = "Nothing posted: " + text
        await interaction.edit_original_response(content=fit(text))

    @post_group.command(name="resolve", description="After an interrupted post: it is there (posted), or queue it again")
    @app_commands.autocomplete(candidate=failed_autocomplete)
    @app_commands.describe(outcome="posted: it went out; requeue: post it again to the targets not known posted")
    @operator_only
    async def post_resolve(self, interaction: discord.Interaction, candidate: int,
                           outcome: Literal["posted", "requeue"]) -> None:
        cand = await self.posting.resolve(candidate, outcome, by=str(interaction.user), guild_id=interaction.guild_id)
        word = "marked posted" if outcome == "posted" else "back in the queue"
        await answer(interaction,
            f"Candidate #{cand['id']} of **{contract.persona_label(cand['persona'])}** is {word}.")
        await self.deliver()


async def setup(bot) -> None:
    await bot.add_cog(Posting(bot))
