"""/stats: how the group's curation is going (the counting is bot/services.stats)."""
from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from cogs.common import answer, persona_autocomplete, services
from cogs.render import fit_embed, plain


class Stats(commands.Cog):
    def __init__(self, bot):
        self.bot = bot

    @app_commands.command(name="stats", description="Candidates, votes and approval rate")
    @app_commands.autocomplete(persona=persona_autocomplete)
    async def stats(self, interaction: discord.Interaction, persona: str | None = None) -> None:
        s = await services(interaction).stats(interaction.guild_id, persona)
        embed = discord.Embed(title=f"Stats: {persona or 'all personas'}", colour=discord.Colour.blurple())
        embed.add_field(name="Candidates", value="\n".join(f"{k}: {v}" for k, v in s["candidates"].items()))
        rate = f"{s['approval_rate'] * 100:.0f}%" if s["approval_rate"] is not None else "nothing decided yet"
        embed.add_field(name="Votes", value=f"{s['votes']} from {s['voters']} member(s)\napproval rate {rate}")
        if s["top"]:
            embed.add_field(name="Best liked", value="\n".join(
                f"#{t['id']}{'' if persona else ' ' + t['persona']} ({t['score']:+d}): {plain(t['text'][:80])}"
                for t in s["top"]), inline=False)
        await answer(interaction, embed=fit_embed(embed))


async def setup(bot) -> None:
    await bot.add_cog(Stats(bot))
