"""/train and /generate: hand the long work to the worker and report into one message."""
from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from cogs.common import check_fetchable, guild_persona, operator_only, persona_autocomplete, services
from bot.jobs import MAX_FOR_VOTES, MAX_TO_FILE
from cogs.jobs import render_job
from core import contract

SOURCES = Literal["x", "bluesky", "mastodon", "csv", "archive", "twint"]
ATTACHMENT_TYPES = {".csv": "csv", ".zip": "archive"}


def check_attachment(attachment: discord.Attachment, cfg) -> str:
    """The source the attachment is for; BadInput when it may not be fetched."""
    check_fetchable(attachment, cfg)
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
        strip_mentions="take @mentions out of the posts before training",
        strip_hashtags="take #hashtags out of the posts before training",
        limit="fetch at most this many posts",
        more_steps="continue the persona's model this many steps more (on its current dataset)",
        start_from="begin from another persona's model instead of the base model",
        early_stop="stop once the validation loss has not improved this many times in a row",
        sample_every="show a sample in the progress message every this many steps",
    )
    @app_commands.autocomplete(start_from=persona_autocomplete)
    @operator_only
    async def train(self, interaction: discord.Interaction, handle: str | None = None, source: SOURCES | None = None,
                    file: discord.Attachment | None = None, steps: app_commands.Range[int, 1, 100_000] | None = None,
                    model: str | None = None, persona: str | None = None, strip_mentions: bool = False,
                    strip_hashtags: bool = False, limit: app_commands.Range[int, 1, 100_000] | None = None,
                    more_steps: app_commands.Range[int, 1, 100_000] | None = None,
                    start_from: str | None = None, early_stop: app_commands.Range[int, 1, 100] | None = None,
                    sample_every: app_commands.Range[int, 1, 100_000] | None = None) -> None:
        cfg = self.bot.cfg
        svc = services(interaction)
        if file is not None:
            detected = check_attachment(file, cfg)  # host, size and type, whatever `source` says
            source = source or detected
        name, source = svc.personas.check_training_request(
            handle=handle, source=source, file_name=file.filename if file else None, persona=persona, model=model,
            more_steps=more_steps)
        if file is not None and file.size == 0:
            raise contract.BadInput(f"{file.filename} is empty: attach a CSV with a header row (tweets) and one post per row")
        existing = await svc.personas.find(interaction.guild_id, name)
        await svc.personas.active_training(existing)
        base = await svc.personas.training_base(interaction.guild_id, existing, more_steps=more_steps,
                                                start_from=start_from)
        upload = None
        if file is not None:
            data = await file.read()
            if len(data) > cfg.discord.max_attachment_mb * 1024 * 1024:
                raise contract.BadInput(f"{file.filename} is larger than {cfg.discord.max_attachment_mb:g} MB")
            upload = (file.filename, data)
        record, made = await svc.personas.for_training(interaction.guild_id, name, source=source, handle=handle,
                                                       model=model, created_by=interaction.user.id,
                                                       channel_id=interaction.channel_id)
        job = await svc.jobs.train(record, source=source, handle=handle, steps=steps or cfg.training.steps,
                                   model=model or record["base_model"], file=upload, limit=limit,
                                   clean=contract.CleanSpec(strip_mentions=strip_mentions, strip_hashtags=strip_hashtags),
                                   more_steps=more_steps, start_from=base, early_stop=early_stop,
                                   sample_every=sample_every,
                                   requested_by=interaction.user.id, channel_id=interaction.channel_id)
        if made:  # it stays only if this first import succeeds
            await svc.personas.on_trial(record, job["id"])
        message = await interaction.edit_original_response(content=render_job(job))
        await svc.jobs.set_message(job["id"], message.id)

    @app_commands.command(name="generate", description="Generate candidate posts for the group to vote on")
    @app_commands.describe(persona="which persona", count="how many candidates to aim for (to a file: up to 1000)",
                           temperature="sampling temperature (default 1.0)", top_p="nucleus sampling (default 0.9)",
                           top_k="keep only the k likeliest tokens at each step (0: off)",
                           length="longest sample in tokens", prompt="every candidate starts with this text",
                           seed="the same seed gives the same candidates",
                           to_file="send them as a text file instead of putting them up for a vote")
    @app_commands.autocomplete(persona=persona_autocomplete)
    @operator_only
    async def generate(self, interaction: discord.Interaction, persona: str,
                       count: app_commands.Range[int, 1, 1000] | None = None,
                       temperature: app_commands.Range[float, 0.1, 3.0] | None = None,
                       top_p: app_commands.Range[float, 0.05, 1.0] | None = None,
                       top_k: app_commands.Range[int, 0, 1000] | None = None,
                       length: app_commands.Range[int, 8, 1023] | None = None,
                       prompt: app_commands.Range[str, 1, 200] | None = None,
                       seed: app_commands.Range[int, 0, 2**53] | None = None,
                       to_file: bool = False) -> None:
        svc = services(interaction)
        record = await guild_persona(interaction, persona)
        await svc.personas.ready_to_generate(record)
        options = svc.personas.generation_options(record, temperature=temperature, top_p=top_p, top_k=top_k,
                                                  length=length, prompt=prompt, seed=seed)
        count = count or self.bot.cfg.generation.count
        if count > MAX_FOR_VOTES and not to_file:
            raise contract.BadInput(f"at most {MAX_FOR_VOTES} candidates go up for a vote at once: ask fewer, "
                                    f"or use `to_file: True` for up to {MAX_TO_FILE} in a text file")
        platforms = svc.personas.platforms(record)
        job = await svc.jobs.generate(record, count=count, platforms=platforms,
                                      blocklist=list(self.bot.cfg.generation.blocklist), to_file=to_file,
                                      requested_by=interaction.user.id, channel_id=interaction.channel_id, **options)
        message = await interaction.edit_original_response(content=render_job(job))
        await svc.jobs.set_message(job["id"], message.id)


async def setup(bot) -> None:
    await bot.add_cog(Training(bot))
