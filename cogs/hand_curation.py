"""/candidate edit|export, and the one path every hand-written text takes
(/candidate edit, /queue add, /queue import): a "check" job runs the generation
filters on the worker, and the job's message says what came of it
(cogs/jobs.py carries it out: bot.candidates.CandidateService.apply_check)."""
from __future__ import annotations

import io

import discord
from discord import app_commands
from discord.ext import commands

from bot import voting
from cogs.common import PRIVATE, answer, guild_persona, operator_only, persona_autocomplete, role_ids, services
from cogs.jobs import render_job
from core import contract


def may_approve_at_once(interaction: discord.Interaction, rules: voting.VoteRules) -> bool:
    member = interaction.user
    return voting.may_force(member.bot, [r.id for r in getattr(member, "roles", [])], rules,
                            manage_messages=interaction.permissions.manage_messages)


async def check_then(interaction: discord.Interaction, persona: dict, action: str, texts: list[str], *,
                     candidate_id: int | None = None, approve: bool = False) -> None:
    """Queue the check job for ``texts`` and answer with its progress message."""
    svc = services(interaction)
    rules = svc.personas.rules(persona, role_ids(interaction.guild))
    if approve and not may_approve_at_once(interaction, rules):
        raise contract.BadInput("Only curators (the curator role or Manage Messages) approve at once: leave out "
                                "`approve` to put it up for a vote")
    await svc.personas.ready_to_generate(persona)  # the copy checks need the dataset a training made
    cfg = interaction.client.cfg.generation
    platforms = svc.personas.platforms(persona)
    mentions = (persona.get("settings") or {}).get("mentions", cfg.mentions)
    job = await svc.jobs.check(persona, action=action, texts=texts, platforms=platforms, blocklist=list(cfg.blocklist),
                               mentions=mentions, candidate_id=candidate_id, approve=approve,
                               requested_by=interaction.user.id, channel_id=interaction.channel_id)
    message = await interaction.edit_original_response(content=render_job(job))
    await svc.jobs.set_message(job["id"], message.id)


class HandCuration(commands.Cog):
    candidate_group = app_commands.Group(name="candidate", description="Change or export candidates by hand")

    def __init__(self, bot):
        self.bot = bot

    @candidate_group.command(name="edit", description="Change a candidate's text (its vote starts again)")
    @app_commands.describe(candidate="the candidate's number (#12)", text="the new text")
    @operator_only
    async def edit(self, interaction: discord.Interaction, candidate: int,
                   text: app_commands.Range[str, 1, 1000]) -> None:
        svc = services(interaction)
        cand = await svc.candidates.get(candidate, interaction.guild_id)
        if cand is None:
            raise contract.BadInput(f"there is no candidate #{candidate} on this server")
        if cand["state"] in ("posting", "posted"):
            raise contract.BadInput(f"candidate #{candidate} is {cand['state']}: what went out cannot be changed")
        persona = await svc.personas.by_key(cand["persona"])
        await check_then(interaction, persona, "edit", [text], candidate_id=candidate)

    @candidate_group.command(name="export", description="A persona's candidates and their votes as a CSV file", extras=PRIVATE)
    @app_commands.autocomplete(persona=persona_autocomplete)
    async def export(self, interaction: discord.Interaction, persona: str) -> None:
        record = await guild_persona(interaction, persona)
        data = await services(interaction).candidates.export_csv(record["key"])
        await answer(interaction,
            f"Candidates of **{record['name']}** with their votes (up, down, net score) and states.",
            file=discord.File(io.BytesIO(data), filename=f"{record['name']}-candidates.csv"))


async def setup(bot) -> None:
    await bot.add_cog(HandCuration(bot))
