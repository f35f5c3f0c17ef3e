"""/jobs, /cancel, and the tracker that keeps each job's progress message up to date.

The tracker polls the jobs the bot follows (from the database, so a restarted
bot picks them up again) and edits each job's message when its progress
changed, at most once per `discord.progress_edit_interval`.
"""
from __future__ import annotations

import asyncio
import io
import logging

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot.charts import loss_curve_png
from cogs.common import PRIVATE, answer, counts_text, duration, job_autocomplete, operator_only, progress_bar, role_ids, services
from cogs.render import fit, fit_embed, fit_lines, plain
from core import contract

log = logging.getLogger("parodybot.jobs")

STATE_ICON = {"queued": "⏳", "running": "⚙️", "done": "✅", "failed": "⚠️", "cancelled": "🛑"}


def render_job(job: dict) -> str:
    """The progress message of a job, as members see it."""
    p = job.get("progress") or {}
    head = f"{STATE_ICON.get(job['state'], '')} Job #{job['id']} · {job['kind']} **{contract.persona_label(job['persona'])}**"
    lines = [head]
    state = job["state"]
    if state == "queued":
        lines.append("queued: waiting for the worker")
    phase = p.get("phase")
    if "fetched" in p:
        lines.append(f"📥 fetched {p['fetched']:,} posts")
    if "kept" in p:
        lines.append(f"🧹 cleaned: kept {p['kept']:,}; dropped {counts_text(p.get('dropped') or {})}")
    if p.get("sources"):
        per_source = " · ".join(f"{plain(k)} {v:,}" for k, v in p["sources"].items())
        lines.append(f"📚 dataset: {p['kept']:,} posts, {p.get('added', 0):,} new · {per_source}")
    params = job.get("params") or {}
    if params.get("more_steps"):
        lines.append(f"➕ continues its model {params['more_steps']:,} steps more"
                     + (f", from step {p['resumed_from']:,}" if p.get("resumed_from") else ""))
    elif p.get("resumed_from") and state == "running":
        lines.append(f"↩️ resumed from its checkpoint at step {p['resumed_from']:,} (its worker had stopped)")
    if phase == "requeued" and state == "running":
        lines.append(f"↩️ worker `{p.get('lost_worker', '?')}` stopped answering: queued again for the next free worker")
    elif p.get("worker") and state == "running":
        lines.append(f"🖥️ on worker `{p['worker']}`")
    if params.get("start_from"):
        lines.append(f"🌱 starts from the model of **{plain(params['start_from'])}**")
    if phase == "loading" and state == "running":
        lines.append("🧠 loading the model…")
    if "step" in p and p.get("steps"):
        frac = p["step"] / p["steps"]
        eta = f" · ETA {duration(p.get('eta'))}" if state == "running" else ""
        lines.append(
            f"🧠 `{progress_bar(frac)}` step {p['step']}/{p['steps']} · loss {p.get('loss', 0):.2f}"
            f" (avg {p.get('avg_loss', p.get('loss', 0)):.2f}){eta}"
        )
    if p.get("val_loss") is not None and state == "running":
        lines.append(f"📉 validation loss {p['val_loss']:.2f} (best {p.get('best_val_loss', p['val_loss']):.2f}), "
                     "on posts it does not train on")
    if p.get("sample") and state == "running":
        lines.append(f"🎲 sample at step {p.get('sample_step')}: {plain(p['sample'][:200])}")
    if phase == "generating" and state == "running":
        lines.append("🎲 generating…")
    result = contract.result_of(job["kind"], job.get("result") or p.get("result"))
    if state == "done" and isinstance(result, contract.TrainResult):
        loss = result.final_loss
        lines.append(f"done: {result.steps_done} steps, final loss {loss:.2f}" if loss is not None else "done")
        if result.val_losses:
            best = min(result.val_losses, key=lambda r: r[1])
            lines.append(f"📉 validation loss {result.val_losses[-1][1]:.2f} (best {best[1]:.2f} at step {best[0]})")
        if result.early_stopped:
            lines.append(f"⏹️ stopped early at step {result.steps_done}: the validation loss stopped improving")
    if state == "done" and isinstance(result, contract.GenerateResult):
        where = "in the attached file (not put up for a vote)" if (job.get("params") or {}).get("to_file") else "for voting"
        lines.append(f"done: {len(result.candidates)} candidate(s) {where}; filtered out {counts_text(result.dropped)}")
    if state == "cancelled":
        step = (result.steps_done if isinstance(result, contract.TrainResult) else None) or p.get("step")
        lines.append(f"cancelled{f' at step {step} (checkpoint saved)' if step else ''}")
    if state == "failed":
        lines.append(f"failed: {job.get('error') or p.get('error') or 'unknown error (see the worker log)'}")
    return fit("\n".join(lines))


# gpt-2-simple's generate_to_file(): the samples one after another, each followed by this line.
SAMPLE_DELIMITER = "=" * 20 + "\n"


def samples_file(result: contract.GenerateResult) -> bytes:
    return "".join(c.text + "\n" + SAMPLE_DELIMITER for c in result.candidates).encode("utf-8")


# Why a hand-written text was not taken, by the filter that refused it (workers/filters.py).
REFUSED_BECAUSE = {
    "verbatim": "a real post, word for word", "near_copy": "too close to a real post",
    "too_long": "too long for the persona's platforms", "blocked": "it has a blocklisted word",
    "mention": "it has an @mention and this persona drops those", "repetition": "it repeats itself",
    "empty": "nothing visible is left", "duplicate": "it is already a candidate",
    "unfinished": "it has <| |> markers", "garbled": "it has <| |> markers",
}


def check_summary(job: dict, outcome: dict) -> str:
    params = job.get("params") or {}
    refused = outcome["refused"]
    why = "; ".join(f"{plain(text[:60])!r}: {REFUSED_BECAUSE.get(fate, fate)}" for text, fate in refused[:5])
    if params.get("action") == "edit":
        cand = outcome["edited"]
        if cand is None:
            return f"not changed: {why}" if refused else "not changed"
        return f"✏️ candidate #{cand['id']} has its new text; its vote starts again in a new message"
    added = outcome["added"]
    lines = []
    if added:
        state = "approved at once (in the posting queue)" if params.get("approve") else "for voting"
        lines.append(f"📝 {len(added)} added {state}: " + ", ".join(f"#{c['id']}" for c in added[:20])
                     + (" …" if len(added) > 20 else ""))
    if refused:
        lines.append(f"refused {len(refused)}: {why}" + (" …" if len(refused) > 5 else ""))
    return "\n".join(lines) or "nothing to add"


def samples_embed(result: contract.TrainResult) -> discord.Embed | None:
    samples = [s for s in result.samples if s.strip()][:3]
    if not samples:
        return None
    embed = discord.Embed(title="Sample outputs", colour=discord.Colour.blurple())
    for i, text in enumerate(samples, 1):
        embed.add_field(name=f"Sample {i}", value=plain(text), inline=False)
    return fit_embed(embed)


class Jobs(commands.Cog):
    def __init__(self, bot):
        self.bot = bot
        self.jobs = bot.services.jobs
        self.tracker.change_interval(seconds=bot.cfg.discord.progress_edit_interval)
        self.tracker.start()

    async def cog_unload(self) -> None:
        self.tracker.cancel()

    @tasks.loop(seconds=1.0)
    async def tracker(self) -> None:
        try:
            followed = await self.jobs.refresh_all(await self.jobs.followed())
        except Exception:  # the queue or the database is away for a moment: try again next tick
            log.exception("reading the jobs' progress failed")
            followed = []
        for job, changed in followed:
            try:
                if changed and job["state"] not in contract.FINAL_STATES:
                    await self.edit_message(job, content=render_job(job))
            except Exception:
                log.exception("following job #%s failed", job["id"])
        for job in await self.jobs.to_deliver():
            try:
                await self.deliver(job)
            except Exception:
                log.exception("delivering job #%s failed", job["id"])

    @tracker.before_loop
    async def _wait_ready(self) -> None:
        await self.bot.wait_until_ready()

    async def edit_message(self, job: dict, **kwargs) -> None:
        if not job["channel_id"] or not job["message_id"]:
            return
        message = self.bot.get_partial_messageable(job["channel_id"]).get_partial_message(job["message_id"])
        try:
            await message.edit(**kwargs)
        except discord.NotFound:
            log.warning("job #%s: its progress message is gone", job["id"])

    async def deliver(self, job: dict) -> None:
        """A job ended: its final message (chart, samples), and candidates to vote on."""
        result = contract.result_of(job["kind"], job.get("result"))
        kwargs: dict = {"content": render_job(job)}
        if isinstance(result, contract.TrainResult) and job["state"] == contract.DONE:
            label = contract.persona_label(job["persona"])
            losses = result.losses or (job["progress"] or {}).get("losses") or []
            png = await asyncio.to_thread(loss_curve_png, losses, f"{label}: finetuning loss", result.val_losses)
            kwargs["attachments"] = [discord.File(io.BytesIO(png), filename=f"loss-{label}-job{job['id']}.png")]
            embed = samples_embed(result)
            if embed:
                kwargs["embed"] = embed
        to_file = bool((job.get("params") or {}).get("to_file"))
        if isinstance(result, contract.GenerateResult) and job["state"] == contract.DONE and to_file:
            label = contract.persona_label(job["persona"])
            kwargs["attachments"] = [discord.File(io.BytesIO(samples_file(result)), filename=f"{label}-job{job['id']}.txt")]
        elif isinstance(result, contract.GenerateResult) and job["state"] == contract.DONE:
            # Stored before the job counts as delivered, so a crash loses none; the
            # curation cog sends them (cogs/curation.py), beside this tracker.
            persona = await self.bot.services.personas.by_key(job["persona"])
            if persona is None:
                log.warning("job #%s: its persona is gone; its candidates are not kept", job["id"])
            elif result.candidates:
                rules = self.bot.services.personas.rules(persona, role_ids(self.bot.get_guild(persona["guild_id"])))
                await self.bot.services.candidates.add_from_job(job, result, rules)
            self.bot.dispatch("candidates_waiting", job["persona"], job["channel_id"])
        if isinstance(result, contract.CheckResult) and job["state"] == contract.DONE:
            kwargs["content"] = fit(kwargs["content"] + "\n" + await self._apply_check(job, result))
        removed = await self.bot.services.personas.settle_trial(job)
        if removed:
            kwargs["content"] = fit(kwargs["content"] + f"\nThe persona **{removed}** was not kept: its first "
                                    "import failed. Fix what the line above says and `/train` again.")
        await self.edit_message(job, **kwargs)
        await self.jobs.mark_delivered(job["id"])

    async def _apply_check(self, job: dict, result: contract.CheckResult) -> str:
        """Hand curation whose texts passed the filters: carry it out, and say what happened."""
        personas = self.bot.services.personas
        persona = await personas.by_key(job["persona"])
        if persona is None:
            return "nothing changed: the persona was deleted"
        rules = personas.rules(persona, role_ids(self.bot.get_guild(persona["guild_id"])))
        outcome = await self.bot.services.candidates.apply_check(job, result, rules)
        if outcome["retire"]:
            self.bot.dispatch("candidate_edited", outcome["edited"], *outcome["retire"])
        if outcome["added"] or outcome["edited"]:
            self.bot.dispatch("candidates_waiting", job["persona"], job["channel_id"])
        return check_summary(job, outcome)

    # --- commands ----------------------------------------------------------

    @app_commands.command(name="jobs", description="Jobs waiting, running and recently finished", extras=PRIVATE)
    async def jobs_command(self, interaction: discord.Interaction) -> None:
        jobs = await self.jobs.list(interaction.guild_id, limit=15)
        if not jobs:
            await answer(interaction, "No jobs yet. `/train` starts one.")
            return
        lines = []
        for job in jobs:
            p = job.get("progress") or {}
            extra = f" · step {p['step']}/{p['steps']}" if job["state"] == "running" and p.get("steps") else ""
            lines.append(f"{STATE_ICON.get(job['state'], '')} **#{job['id']}** {job['kind']} "
                         f"{contract.persona_label(job['persona'])} · {job['state']}{extra}")
        await answer(interaction, fit_lines(lines))

    @app_commands.command(name="cancel", description="Cancel a queued or running job (training saves a checkpoint)")
    @app_commands.describe(job="the job to cancel")
    @app_commands.autocomplete(job=job_autocomplete)
    @operator_only
    async def cancel(self, interaction: discord.Interaction, job: int) -> None:
        record = await services(interaction).jobs.cancel(interaction.guild_id, job)
        word = "cancelled" if record["state"] == "cancelled" else "cancelling (the worker saves a checkpoint first)"
        await answer(interaction, f"Job #{job}: {word}.")


async def setup(bot) -> None:
    await bot.add_cog(Jobs(bot))
