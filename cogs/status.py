"""/status: is everything up?"""
from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from cogs.render import fit_embed



def _duration(seconds: float) -> str:
    seconds = int(seconds)
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    parts = [f"{d}d"] * bool(d) + [f"{h}h"] * bool(h) + [f"{m}m"] * bool(m) + [f"{s}s"]
    return " ".join(parts)


def render_status(report: dict) -> discord.Embed:
    db = report["database"]
    worker = report["worker"]
    embed = discord.Embed(title="parodybot status", colour=discord.Colour.green() if db["ok"] else discord.Colour.red())
    embed.add_field(name="Version", value=report["version"])
    embed.add_field(name="Uptime", value=_duration(report["uptime_s"]))
    embed.add_field(name="Database", value=f"ok (schema v{db['schema_version']})" if db["ok"] else "NOT OK: check the log")
    if worker["state"] == "not seen":
        wtext = "not seen yet: " + worker["detail"]
    else:
        wtext = f"{worker['state']} (last heartbeat {worker['last_seen_s']:.0f} s ago)"
        if worker.get("busy"):
            wtext += f", working on {', '.join(worker['busy'])}"
    embed.add_field(name="Worker", value=wtext, inline=False)
    embed.add_field(name="Jobs waiting", value=str(report["queue"]["waiting"]))
    held = report.get("held") or []
    if held:
        embed.add_field(name="Posting held", inline=False, value="\n".join(
            f"{h['persona']} → {h['target']} until {h['until'][:16].replace('T', ' ')} UTC ({h['why']})" for h in held))
    return fit_embed(embed)


class Status(commands.Cog):
    def __init__(self, bot):
        self.bot = bot

    @app_commands.command(name="status", description="Bot version, uptime, database and worker state")
    async def status(self, interaction: discord.Interaction) -> None:
        report = await self.bot.services.status(interaction.guild_id)
        await interaction.response.send_message(embed=render_status(report))


async def setup(bot) -> None:
    await bot.add_cog(Status(bot))
