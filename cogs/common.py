"""What every cog shares: the operator check, the guild's persona, autocomplete,
small renderers. Refusals are raised (BadInput, a failed check) and answered
privately in one place: bot.client.ParodyTree.on_error."""
from __future__ import annotations

import discord
from discord import app_commands

from core import contract


class NotOperator(app_commands.CheckFailure):
    """The member may not change things; the message says who can."""


def is_operator(interaction: discord.Interaction) -> bool:
    """Operators: the configured role, Manage Server, or Administrator."""
    perms = interaction.permissions
    if perms.manage_guild or perms.administrator:
        return True
    role_name = interaction.client.cfg.discord.operator_role
    roles = getattr(interaction.user, "roles", [])
    return any(r.name == role_name for r in roles)


def _operator_check(interaction: discord.Interaction) -> bool:
    if is_operator(interaction):
        return True
    role = interaction.client.cfg.discord.operator_role
    raise NotOperator(f"You need the **{role}** role (or Manage Server) to do that. Ask a server admin to give it to you.")


#: Decorator for every command that changes something.
operator_only = app_commands.check(_operator_check)


def services(interaction: discord.Interaction):
    return interaction.client.services


async def guild_persona(interaction: discord.Interaction, name: str) -> dict:
    """The invoking guild's persona ``name``; another guild's is "not found"."""
    return await services(interaction).personas.get(interaction.guild_id, name)


#: ``extras`` of a command whose answer only the member sees; the rest answer the channel.
PRIVATE = {"private": True}


async def answer(interaction: discord.Interaction, content: str = discord.utils.MISSING, **kwargs) -> None:
    """The command's answer. It replaces the "thinking…" message every command
    starts with (bot.client.acknowledge), so it is as private as that was."""
    await interaction.followup.send(content, **kwargs)


def check_fetchable(attachment: discord.Attachment, cfg) -> None:
    """BadInput unless the attachment is on Discord's attachment hosts and within the size limit."""
    from urllib.parse import urlparse

    host = urlparse(attachment.url).hostname or ""
    if host not in cfg.discord.attachment_hosts:
        raise contract.BadInput(f"attachments are only fetched from Discord's attachment hosts, not {host!r}")
    limit = cfg.discord.max_attachment_mb * 1024 * 1024
    if attachment.size > limit:
        raise contract.BadInput(
            f"{attachment.filename} is {attachment.size / 1e6:.1f} MB; the limit is {cfg.discord.max_attachment_mb:g} MB"
        )


def role_ids(guild: discord.Guild | None) -> dict[str, int]:
    return {r.name: r.id for r in guild.roles} if guild else {}


async def persona_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    if interaction.guild_id is None:
        return []
    personas = await services(interaction).personas.list(interaction.guild_id)
    current = current.lower()
    return [app_commands.Choice(name=p["name"], value=p["name"]) for p in personas if current in p["name"]][:25]


async def job_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[int]]:
    if interaction.guild_id is None:
        return []
    jobs = await services(interaction).jobs.list(interaction.guild_id, active_only=True, limit=25)
    out = []
    for job in jobs:
        label = f"#{job['id']} {job['kind']} {contract.persona_label(job['persona'])} ({job['state']})"
        if current in label:
            out.append(app_commands.Choice(name=label, value=job["id"]))
    return out


def progress_bar(fraction: float, width: int = 20) -> str:
    fraction = max(0.0, min(1.0, fraction))
    filled = round(fraction * width)
    return "█" * filled + "░" * (width - filled) + f" {fraction * 100:.0f}%"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def counts_text(counts: dict) -> str:
    shown = [f"{name.replace('_', ' ')} {n}" for name, n in counts.items() if n]
    return ", ".join(shown) if shown else "none"
