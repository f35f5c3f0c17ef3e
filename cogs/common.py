"""What every cog shares: permission checks, refusals, autocomplete, small renderers."""
from __future__ import annotations

import discord
from discord import app_commands

from core import contract


def is_operator(interaction: discord.Interaction) -> bool:
    """Operators: the configured role, Manage Server, or Administrator."""
    perms = interaction.permissions
    if perms.manage_guild or perms.administrator:
        return True
    role_name = interaction.client.cfg.discord.operator_role
    roles = getattr(interaction.user, "roles", [])
    return any(r.name == role_name for r in roles)


async def refuse(interaction: discord.Interaction, text: str) -> None:
    """An ephemeral message that says what to do, whether or not we already deferred."""
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True)
    else:
        await interaction.response.send_message(text, ephemeral=True)


async def require_operator(interaction: discord.Interaction) -> bool:
    if is_operator(interaction):
        return True
    role = interaction.client.cfg.discord.operator_role
    await refuse(interaction, f"You need the **{role}** role (or Manage Server) to do that. Ask a server admin to give it to you.")
    return False


async def require_persona(interaction: discord.Interaction, name: str) -> dict | None:
    try:
        contract.check_persona_name(name)
    except contract.BadInput as exc:
        await refuse(interaction, str(exc))
        return None
    persona = await interaction.client.store.get_persona(name)
    if persona is None:
        await refuse(interaction, f"There is no persona **{name}**. `/persona list` shows them; `/train` creates one.")
    return persona


async def operator_persona(interaction: discord.Interaction, name: str) -> dict | None:
    """The persona a mutating command acts on, or None after telling the member why not."""
    if not await require_operator(interaction):
        return None
    return await require_persona(interaction, name)


async def persona_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    personas = await interaction.client.store.list_personas(interaction.guild_id)
    current = current.lower()
    return [app_commands.Choice(name=p["name"], value=p["name"]) for p in personas if current in p["name"]][:25]


async def job_autocomplete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[int]]:
    jobs = await interaction.client.store.list_jobs(active_only=True, limit=25)
    out = []
    for job in jobs:
        label = f"#{job['id']} {job['kind']} {job['persona']} ({job['state']})"
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
