"""/stats: how the group's curation is going."""
from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from cogs.common import persona_autocomplete

STATES = ("voting", "approved", "rejected", "expired", "posting", "posted", "failed")


async def persona_stats(store, persona: str | None) -> dict:
    where, params = ("WHERE persona = ?", (persona,)) if persona else ("", ())
    by_state = {s: 0 for s in STATES}
    for state, n in await store.fetchall(f"SELECT state, COUNT(*) FROM candidates {where} GROUP BY state", params):
        by_state[state] = n
    votes = (await store.fetchone(
        f"SELECT COUNT(*), COUNT(DISTINCT member_id) FROM votes WHERE candidate_id IN (SELECT id FROM candidates {where})",
        params))
    decided = sum(by_state[s] for s in ("approved", "rejected", "expired", "posting", "posted", "failed"))
    liked = sum(by_state[s] for s in ("approved", "posting", "posted", "failed"))
    top = await store.fetchall(f"SELECT id, score, text FROM candidates {where} ORDER BY score DESC, id LIMIT 3", params)
    return {
        "candidates": by_state,
        "votes": votes[0], "voters": votes[1],
        "approval_rate": (liked / decided) if decided else None,
        "top": [{"id": r[0], "score": r[1], "text": r[2]} for r in top],
    }


class Stats(commands.Cog):
    def __init__(self, bot):
        self.bot = bot

    @app_commands.command(name="stats", description="Candidates, votes and approval rate")
    @app_commands.autocomplete(persona=persona_autocomplete)
    async def stats(self, interaction: discord.Interaction, persona: str | None = None) -> None:
        s = await persona_stats(self.bot.store, persona)
        embed = discord.Embed(title=f"Stats: {persona or 'all personas'}", colour=discord.Colour.blurple())
        embed.add_field(name="Candidates", value="\n".join(f"{k}: {v}" for k, v in s["candidates"].items()))
        rate = f"{s['approval_rate'] * 100:.0f}%" if s["approval_rate"] is not None else "nothing decided yet"
        embed.add_field(name="Votes", value=f"{s['votes']} from {s['voters']} member(s)\napproval rate {rate}")
        if s["top"]:
            embed.add_field(name="Best liked", value="\n".join(f"#{t['id']} ({t['score']:+d}): {t['text'][:80]}" for t in s["top"]), inline=False)
        await interaction.response.send_message(embed=embed)


async def setup(bot) -> None:
    await bot.add_cog(Stats(bot))
