"""/persona create|list|show|configure|delete (the rules are in bot/personas.py)."""
from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from cogs.common import PRIVATE, answer, guild_persona, operator_only, persona_autocomplete, role_ids
from cogs.render import fit_embed, fit_lines, plain
from core.contract import BadInput


def describe(persona: dict, rules, mentions_default: str = "defuse") -> discord.Embed:
    embed = discord.Embed(title=f"Persona {persona['name']}", colour=discord.Colour.blurple())
    embed.add_field(name="State", value=persona["state"] + (f" ({persona['paused_reason']})" if persona.get("paused_reason") else ""))
    embed.add_field(name="Model", value=persona["base_model"])
    ch = persona.get("curation_channel_id")
    embed.add_field(name="Curation channel", value=f"<#{ch}>" if ch else "not set")
    lg = persona.get("log_channel_id")
    embed.add_field(name="Log channel", value=f"<#{lg}>" if lg else "not set")
    sources = ", ".join(f"{s['platform']}:{plain(s.get('handle') or '?')}" for s in persona["sources"]) or "none"
    embed.add_field(name="Sources", value=sources, inline=False)
    targets = ", ".join(t["platform"] + (f" ({t['credentials']})" if t.get("credentials") else "") for t in persona["targets"])
    embed.add_field(name="Targets", value=targets or "none", inline=False)
    embed.add_field(
        name="Vote rules",
        value=(f"approve at net ≥ {rules.approve_at}, reject at ≤ {rules.reject_at}, window {rules.window_hours:g} h "
               f"(then approve at ≥ {rules.approve_after_window_at})"
               + (f", voters: <@&{rules.voter_role_id}>" if rules.voter_role_id else "")
               + (f", curators: <@&{rules.curator_role_id}>" if rules.curator_role_id else "")),
        inline=False,
    )
    own = persona.get("settings") or {}
    embed.add_field(name="Defaults", inline=False, value=" · ".join(
        f"{k} {plain(str(v))}" for k, v in own.items()) or "the config's")
    embed.add_field(name="Mentions", inline=False, value={
        "defuse": "defused: posted so that no one is tagged", "drop": "candidates with @mentions are dropped",
        "keep": "kept: real accounts are tagged"}[own.get("mentions", mentions_default)])
    return fit_embed(embed)


class Personas(commands.GroupCog, group_name="persona", group_description="Manage parody personas"):
    def __init__(self, bot):
        self.bot = bot
        self.personas = bot.services.personas

    def rules(self, interaction: discord.Interaction, persona: dict):
        return self.personas.rules(persona, role_ids(interaction.guild))

    @app_commands.command(name="create", description="Create a persona (no training yet)")
    @app_commands.describe(name="persona name: a-z, 0-9, _", handle="whose posts", source="where they come from",
                           curation_channel="where candidates are voted on (default: here)")
    @operator_only
    async def create(self, interaction: discord.Interaction, name: str, handle: str | None = None,
                     source: Literal["x", "bluesky", "mastodon", "csv", "archive"] = "x",
                     curation_channel: discord.TextChannel | None = None) -> None:
        persona = await self.personas.create(
            interaction.guild_id, name, created_by=interaction.user.id,
            curation_channel_id=(curation_channel.id if curation_channel else interaction.channel_id),
            sources=[{"platform": source, "handle": handle}] if handle else [])
        await answer(interaction, f"Created **{name}**. Next: `/train`.",
                     embed=describe(persona, self.rules(interaction, persona), self.bot.cfg.generation.mentions))

    @app_commands.command(name="list", description="All personas on this server", extras=PRIVATE)
    async def list_(self, interaction: discord.Interaction) -> None:
        personas = await self.personas.list(interaction.guild_id)
        if not personas:
            await answer(interaction, "No personas yet: `/train handle:...` creates one.")
            return
        lines = [f"**{p['name']}** · {p['state']} · {p['base_model']}" for p in personas]
        await answer(interaction, fit_lines(lines))

    @app_commands.command(name="show", description="A persona's settings", extras=PRIVATE)
    @app_commands.autocomplete(name=persona_autocomplete)
    async def show(self, interaction: discord.Interaction, name: str) -> None:
        persona = await guild_persona(interaction, name)
        await answer(interaction, embed=describe(persona, self.rules(interaction, persona), self.bot.cfg.generation.mentions))

    @app_commands.command(name="configure", description="Change a persona's channels, vote rules or targets")
    @app_commands.autocomplete(name=persona_autocomplete)
    @app_commands.describe(
        targets="comma-separated: outbox, x:ENV_PREFIX, bluesky:ENV_PREFIX, mastodon:ENV_PREFIX@https://instance",
        sources="comma-separated platform:handle, e.g. x:dril, bluesky:dril.bsky.social",
    )
    @operator_only
    async def configure(self, interaction: discord.Interaction, name: str,
                        curation_channel: discord.TextChannel | None = None,
                        log_channel: discord.TextChannel | None = None,
                        approve_at: app_commands.Range[int, 1, 100] | None = None,
                        reject_at: app_commands.Range[int, -100, -1] | None = None,
                        window_hours: app_commands.Range[float, 0.01, 720.0] | None = None,
                        voter_role: discord.Role | None = None, curator_role: discord.Role | None = None,
                        targets: str | None = None, sources: str | None = None) -> None:
        persona = await guild_persona(interaction, name)
        rules = {"approve_at": approve_at, "reject_at": reject_at, "window_hours": window_hours,
                 "voter_role_id": voter_role.id if voter_role else None,
                 "curator_role_id": curator_role.id if curator_role else None}
        persona = await self.personas.configure(
            persona, role_ids=role_ids(interaction.guild), rules=rules, targets=targets, sources=sources,
            curation_channel_id=curation_channel.id if curation_channel else None,
            log_channel_id=log_channel.id if log_channel else None)
        await answer(interaction, f"Updated **{name}**.", embed=describe(persona, self.rules(interaction, persona), self.bot.cfg.generation.mentions))

    @app_commands.command(name="defaults", description="A persona's own generation and import defaults")
    @app_commands.autocomplete(name=persona_autocomplete)
    @app_commands.describe(
        mentions="what happens to generated @mentions: defuse (default: posted so that no one is tagged), drop, keep",
        prompt="text every candidate starts with", top_k="0 (off) to 1000", seed="the same seed, the same candidates",
        length="longest sample in tokens", temperature="sampling temperature", top_p="nucleus sampling",
        exclude="a regular expression: source posts that match are left out of the dataset",
        reset="clear every default first (back to the config's)")
    @operator_only
    async def defaults(self, interaction: discord.Interaction, name: str,
                       mentions: Literal["defuse", "drop", "keep"] | None = None,
                       prompt: app_commands.Range[str, 1, 200] | None = None,
                       top_k: app_commands.Range[int, 0, 1000] | None = None,
                       seed: app_commands.Range[int, 0, 2**53] | None = None,
                       length: app_commands.Range[int, 8, 1023] | None = None,
                       temperature: app_commands.Range[float, 0.1, 3.0] | None = None,
                       top_p: app_commands.Range[float, 0.05, 1.0] | None = None,
                       exclude: app_commands.Range[str, 1, 200] | None = None,
                       reset: bool = False) -> None:
        persona = await guild_persona(interaction, name)
        persona = await self.personas.set_defaults(persona, {
            "mentions": mentions, "prompt": prompt, "top_k": top_k, "seed": seed, "length": length,
            "temperature": temperature, "top_p": top_p, "exclude": exclude}, reset=reset)
        await answer(interaction, f"Updated **{name}**'s defaults.",
                     embed=describe(persona, self.rules(interaction, persona), self.bot.cfg.generation.mentions))

    @app_commands.command(name="delete", description="Delete a persona from the bot (the worker keeps its data)")
    @app_commands.autocomplete(name=persona_autocomplete)
    @operator_only
    async def delete(self, interaction: discord.Interaction, name: str, confirm: bool = False) -> None:
        persona = await guild_persona(interaction, name)
        if not confirm:
            raise BadInput(f"This deletes **{name}** and its candidates and votes. Run it again with `confirm: True`.")
        messages = await self.personas.delete(persona)
        await answer(interaction, f"Deleted **{name}**.")
        self.bot.dispatch("persona_deleted", name, messages)  # its messages say so (cogs/curation.py)


async def setup(bot) -> None:
    await bot.add_cog(Personas(bot))
