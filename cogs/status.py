"""/status: is everything up?"""
from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from cogs.common import answer
from cogs.render import EMBED_LIMITS, fit_embed, fit_lines, plain



def _duration(seconds: float) -> str:
    seconds = int(seconds)
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    parts = [f"{d}d"] * bool(d) + [f"{h}h"] * bool(h) + [f"{m}m"] * bool(m) + [f"{s}s"]
    return " ".join(parts)


def _worker_line(w: dict) -> str:
    if w["online"]:
        state = "online"
    else:
        state = "stopped" if w["stopped"] else "offline"
    line = f"`{w['id']}` · {plain(w['device'])} · {state} (last heartbeat {_duration(w['last_seen_s'])} ago)"
    if w["running"]:
        line += f" · running {', '.join(w['running'])}"
    elif w["online"]:
        line += " · idle"
    return line


def render_status(report: dict) -> discord.Embed:
    db = report["database"]
    embed = discord.Embed(title="parodybot status", colour=discord.Colour.green() if db["ok"] else discord.Colour.red())
    embed.add_field(name="Version", value=report["version"])
    embed.add_field(name="Uptime", value=_duration(report["uptime_s"]))
    embed.add_field(name="Database", value=f"ok (schema v{db['schema_version']})" if db["ok"] else "NOT OK: check the log")
    workers = report["workers"]
    online = sum(w["online"] for w in workers)
    if not workers:
        wtext = "not seen yet: no worker has reported (start one with `parodybot worker`)"
    else:
        wtext = fit_lines([_worker_line(w) for w in workers], EMBED_LIMITS["field_value"], more="… and {n} more workers")
    embed.add_field(name=f"Workers ({online} online)" if workers else "Workers", value=wtext, inline=False)
    embed.add_field(name="Jobs waiting", value=str(report["queue"]["waiting"]))
    held = report.get("held") or []
    if held:
        embed.add_field(name="Posting held", inline=False, value="\n".join(
            f"{h['persona']} → {h['target']} until {h['until'][:16].replace('T', ' ')} UTC ({h['why']})" for h in held))
    return fit_embed(embed)


class Status(commands.Cog):
    def __init__(self, bot):
        self.bot = bot

    @app_commands.command(name="status", description="Bot version, uptime, database and the workers")
    async def status(self, interaction: discord.Interaction) -> None:
        report = await self.bot.services.status(interaction.guild_id)
        await answer(interaction, embed=render_status(report))


async def setup(bot) -> None:
    await bot.add_cog(Status(bot))
