"""/persona create|list|show|configure|delete."""
from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from core import contract
from bot.candidates import rules_for
from cogs.common import operator_persona, persona_autocomplete, refuse, require_operator, require_persona

PLATFORMS = ("x", "bluesky", "mastodon", "outbox")


def parse_targets(text: str) -> list[dict]:
    """'x:DRIL_X, bluesky:DRIL_BSKY, mastodon:DRIL_MASTO@https://mastodon.social, outbox'."""
    targets = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        platform, _, rest = part.partition(":")
        platform = platform.strip().lower()
        if platform not in PLATFORMS:
            raise contract.BadInput(f"unknown platform {platform!r} in targets: use {', '.join(PLATFORMS)}")
        credentials, _, base_url = rest.partition("@")
        credentials = credentials.strip()
        if platform != "outbox" and not credentials:
            raise contract.BadInput(
                f"{platform} needs the prefix of its environment variables, e.g. {platform}:DRIL_{platform.upper()[:4]}"
            )
        if credentials and not credentials.replace("_", "").isalnum():
            raise contract.BadInput(f"{credentials!r} is not an environment variable prefix (letters, digits, _)")
        target = {"platform": platform}
        if credentials:
            target["credentials"] = credentials.upper()
        if base_url.strip():
            target["base_url"] = base_url.strip()
        targets.append(target)
    if not targets:
        raise contract.BadInput("give at least one target, e.g. `outbox` or `x:DRIL_X`")
    return targets


def describe(persona: dict, rules) -> discord.Embed:
    embed = discord.Embed(title=f"Persona {persona['name']}", colour=discord.Colour.blurple())
    embed.add_field(name="State", value=persona["state"] + (f" ({persona['paused_reason']})" if persona.get("paused_reason") else ""))
    embed.add_field(name="Model", value=persona["base_model"])
    ch = persona.get("curation_channel_id")
    embed.add_field(name="Curation channel", value=f"<#{ch}>" if ch else "not set")
    lg = persona.get("log_channel_id")
    embed.add_field(name="Log channel", value=f"<#{lg}>" if lg else "not set")
    sources = ", ".join(f"{s['platform']}:{s.get('handle') or '?'}" for s in persona["sources"]) or "none"
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
    return embed


class Personas(commands.GroupCog, group_name="persona", group_description="Manage parody personas"):
    def __init__(self, bot):
        self.bot = bot

    async def reschedule(self, name: str) -> None:
        """Posting jobs follow persona changes at once (not at the next periodic sync)."""
        if getattr(self.bot, "scheduler", None) is not None:
            await self.bot.scheduler.sync(name)

    def rules(self, persona: dict):
        guild = self.bot.get_guild(persona.get("guild_id") or 0)
        return rules_for(persona, self.bot.cfg.curation, role_ids={r.name: r.id for r in guild.roles} if guild else {})

    @app_commands.command(name="create", description="Create a persona (no training yet)")
    @app_commands.describe(name="persona name: a-z, 0-9, _", handle="whose posts", source="where they come from",
                           curation_channel="where candidates are voted on (default: here)")
    async def create(self, interaction: discord.Interaction, name: str, handle: str | None = None,
                     source: Literal["x", "bluesky", "mastodon", "csv", "archive"] = "x",
                     curation_channel: discord.TextChannel | None = None) -> None:
        if not await require_operator(interaction):
            return
        try:
            contract.check_persona_name(name)
        except contract.BadInput as exc:
            await refuse(interaction, str(exc))
            return
        if await self.bot.store.get_persona(name):
            await refuse(interaction, f"**{name}** exists already: `/persona show {name}`.")
            return
        persona = await self.bot.store.create_persona(
            name, guild_id=interaction.guild_id, created_by=interaction.user.id,
            curation_channel_id=(curation_channel.id if curation_channel else interaction.channel_id),
            base_model=self.bot.cfg.worker.default_model,
            sources=[{"platform": source, "handle": handle}] if handle else [],
        )
        await self.reschedule(name)
        await interaction.response.send_message(f"Created **{name}**. Next: `/train`.", embed=describe(persona, self.rules(persona)))

    @app_commands.command(name="list", description="All personas on this server")
    async def list_(self, interaction: discord.Interaction) -> None:
        personas = await self.bot.store.list_personas(interaction.guild_id)
        if not personas:
            await interaction.response.send_message("No personas yet: `/train handle:...` creates one.", ephemeral=True)
            return
        lines = [f"**{p['name']}** · {p['state']} · {p['base_model']}" for p in personas]
        await interaction.response.send_message("\n".join(lines), ephemeral=True)

    @app_commands.command(name="show", description="A persona's settings")
    @app_commands.autocomplete(name=persona_autocomplete)
    async def show(self, interaction: discord.Interaction, name: str) -> None:
        persona = await require_persona(interaction, name)
        if persona:
            await interaction.response.send_message(embed=describe(persona, self.rules(persona)), ephemeral=True)

    @app_commands.command(name="configure", description="Change a persona's channels, vote rules or targets")
    @app_commands.autocomplete(name=persona_autocomplete)
    @app_commands.describe(
        targets="comma-separated: outbox, x:ENV_PREFIX, bluesky:ENV_PREFIX, mastodon:ENV_PREFIX@https://instance",
        sources="comma-separated platform:handle, e.g. x:dril, bluesky:dril.bsky.social",
    )
    async def configure(self, interaction: discord.Interaction, name: str,
                        curation_channel: discord.TextChannel | None = None,
                        log_channel: discord.TextChannel | None = None,
                        approve_at: app_commands.Range[int, 1, 100] | None = None,
                        reject_at: app_commands.Range[int, -100, -1] | None = None,
                        window_hours: app_commands.Range[float, 0.01, 720.0] | None = None,
                        voter_role: discord.Role | None = None, curator_role: discord.Role | None = None,
                        targets: str | None = None, sources: str | None = None) -> None:
        persona = await operator_persona(interaction, name)
        if persona is None:
            return
        fields: dict = {}
        rules = dict(persona["rules"])
        for key, value in (("approve_at", approve_at), ("reject_at", reject_at), ("window_hours", window_hours)):
            if value is not None:
                rules[key] = value
        if voter_role is not None:
            rules["voter_role_id"] = voter_role.id
        if curator_role is not None:
            rules["curator_role_id"] = curator_role.id
        try:
            self.rules(dict(persona, rules=rules))  # validates the combination
            if targets is not None:
                fields["targets"] = parse_targets(targets)
            if sources is not None:
                fields["sources"] = [
                    {"platform": p.split(":", 1)[0].strip(), "handle": p.split(":", 1)[1].strip()}
                    for p in sources.split(",") if ":" in p
                ]
        except (ValueError, contract.BadInput) as exc:
            await refuse(interaction, str(exc))
            return
        fields["rules"] = rules
        if curation_channel is not None:
            fields["curation_channel_id"] = curation_channel.id
        if log_channel is not None:
            fields["log_channel_id"] = log_channel.id
        persona = await self.bot.store.update_persona(name, **fields)
        await self.reschedule(name)
        await interaction.response.send_message(f"Updated **{name}**.", embed=describe(persona, self.rules(persona)))

    @app_commands.command(name="delete", description="Delete a persona from the bot (the worker keeps its data)")
    @app_commands.autocomplete(name=persona_autocomplete)
    async def delete(self, interaction: discord.Interaction, name: str, confirm: bool = False) -> None:
        persona = await operator_persona(interaction, name)
        if persona is None:
            return
        if not confirm:
            await refuse(interaction, f"This deletes **{name}** and its candidates and votes. Run it again with `confirm: True`.")
            return
        await self.bot.store.execute("DELETE FROM candidates WHERE persona = ? AND state NOT IN ('posting', 'posted')", (name,))
        await self.bot.store.delete_persona(name)
        await self.reschedule(name)
        await interaction.response.send_message(f"Deleted **{name}**.")


async def setup(bot) -> None:
    await bot.add_cog(Personas(bot))
