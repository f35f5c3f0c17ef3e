"""/train and /generate: hand the long work to the worker and report into one message."""
from __future__ import annotations

import base64
import re
from typing import Literal
from urllib.parse import urlparse

import discord
from discord import app_commands
from discord.ext import commands

from core import contract
from cogs.common import operator_persona, persona_autocomplete, refuse, require_operator
from cogs.jobs import render_job

SOURCES = Literal["x", "bluesky", "mastodon", "csv", "archive", "twint"]
ATTACHMENT_TYPES = {".csv": "csv", ".zip": "archive"}


def persona_name_for(handle: str) -> str:
    """dril -> dril; @Some.One@mastodon.social -> some_one; bsky handles keep their first label."""
    name = handle.strip().lstrip("@").split("@")[0].split(".")[0].lower()
    return re.sub(r"[^a-z0-9_]", "_", name)[:32]


def check_attachment(attachment: discord.Attachment, cfg) -> str:
    """The source the attachment is for; BadInput when it may not be fetched."""
    host = urlparse(attachment.url).hostname or ""
    if host not in cfg.discord.attachment_hosts:
        raise contract.BadInput(f"attachments are only fetched from Discord's attachment hosts, not {host!r}")
    limit = cfg.discord.max_attachment_mb * 1024 * 1024
    if attachment.size > limit:
        raise contract.BadInput(
            f"{attachment.filename} is {attachment.size / 1e6:.1f} MB; the limit is {cfg.discord.max_attachment_mb:g} MB"
        )
    suffix = "." + attachment.filename.rsplit(".", 1)[-1].lower() if "." in attachment.filename else ""
    if suffix not in ATTACHMENT_TYPES:
        raise contract.BadInput(
            f"{attachment.filename} is not a .csv (one text column, like download_tweets.py makes) "
            "or a .zip (your X data export)"
        )
    return ATTACHMENT_TYPES[suffix]


class Training(commands.Cog):
    def __init__(self, bot):
        self.bot = bot

    @app_commands.command(name="train", description="Fetch someone's posts and finetune a model on them")
    @app_commands.describe(
        handle="whose posts (e.g. dril, someone.bsky.social, user@mastodon.social)",
        source="where the posts come from (default: x, or the attachment's type)",
        file="a CSV (one text column) or your X archive .zip, instead of fetching",
        steps="finetuning steps (default from the config)",
        model="base model: tiny, 124M, 355M (default from the config)",
        persona="persona name (default: from the handle)",
    )
    async def train(self, interaction: discord.Interaction, handle: str | None = None, source: SOURCES | None = None,
                    file: discord.Attachment | None = None, steps: app_commands.Range[int, 1, 100_000] | None = None,
                    model: str | None = None, persona: str | None = None) -> None:
        cfg = self.bot.cfg
        if not await require_operator(interaction):
            return
        try:
            if file is not None:
                source = source or check_attachment(file, cfg)
                if source not in ("csv", "archive"):
                    raise contract.BadInput("an attachment is a csv or an archive source; leave `source` empty")
            elif not handle:
                raise contract.BadInput("give a `handle` to fetch (e.g. dril), or attach a CSV or X archive")
            source = source or "x"
            if handle and handle.strip().lstrip("@").lower() in {h.lower().lstrip("@") for h in cfg.training.denylist}:
                raise contract.BadInput(f"{handle} is on this server's do-not-train list")
            name = contract.check_persona_name(persona or persona_name_for(handle or file.filename.rsplit(".", 1)[0]))
            if model and model not in ("tiny", "124M", "355M"):
                raise contract.BadInput(f"unknown model {model!r}: use tiny, 124M or 355M")
        except contract.BadInput as exc:
            await refuse(interaction, str(exc))
            return
        await interaction.response.defer(thinking=True)  # downloading an attachment may take a while
        extra = {}
        if file is not None:
            data = await file.read()
            if len(data) > cfg.discord.max_attachment_mb * 1024 * 1024:
                await refuse(interaction, f"{file.filename} is larger than {cfg.discord.max_attachment_mb:g} MB")
                return
            extra = {"file_b64": base64.b64encode(data).decode("ascii"), "file_name": file.filename}
        record = await self.bot.store.get_persona(name)
        if record is None:
            record = await self.bot.store.create_persona(
                name, guild_id=interaction.guild_id, curation_channel_id=interaction.channel_id,
                base_model=model or cfg.worker.default_model, created_by=interaction.user.id,
                sources=[{"platform": source, "handle": handle}] if handle else [],
            )
            if self.bot.scheduler is not None:
                await self.bot.scheduler.sync(name)  # its posting schedule starts now
        params = {"source": source, "handle": handle, "steps": steps or cfg.training.steps,
                  "model": model or record["base_model"]}
        job = await self.bot.jobs.submit("train", name, params, requested_by=interaction.user.id,
                                         channel_id=interaction.channel_id, payload_extra=extra)
        message = await interaction.edit_original_response(content=render_job(job))
        await self.bot.store.update_job(job["id"], message_id=message.id)

    @app_commands.command(name="generate", description="Generate candidate posts for the group to vote on")
    @app_commands.describe(persona="which persona", count="how many candidates to aim for",
                           temperature="sampling temperature (default 1.0)", top_p="nucleus sampling (default 0.9)")
    @app_commands.autocomplete(persona=persona_autocomplete)
    async def generate(self, interaction: discord.Interaction, persona: str,
                       count: app_commands.Range[int, 1, 200] | None = None,
                       temperature: app_commands.Range[float, 0.1, 3.0] | None = None,
                       top_p: app_commands.Range[float, 0.05, 1.0] | None = None) -> None:
        record = await operator_persona(interaction, persona)
        if record is None:
            return
        # Acknowledge first: queueing may wait on a busy queue, the 3-second window does not.
        await interaction.response.defer(thinking=True)
        gen = self.bot.cfg.generation
        platforms = [t["platform"] for t in record["targets"] if t["platform"] != "outbox"] or ["x"]
        earlier = [r[0] for r in await self.bot.store.fetchall(
            "SELECT text FROM candidates WHERE persona = ? ORDER BY id DESC LIMIT 5000", (persona,))]
        params = {"count": count or gen.count, "temperature": temperature or gen.temperature,
                  "top_p": top_p or gen.top_p, "platforms": platforms}
        job = await self.bot.jobs.submit("generate", persona, params, requested_by=interaction.user.id,
                                         channel_id=interaction.channel_id,
                                         payload_extra={"earlier_candidates": earlier, "blocklist": gen.blocklist})
        message = await interaction.edit_original_response(content=render_job(job))
        await self.bot.store.update_job(job["id"], message_id=message.id)


async def setup(bot) -> None:
    await bot.add_cog(Training(bot))
