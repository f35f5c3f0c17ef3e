"""Personas: what the persona commands do, for any frontend (no Discord in here).

Every persona belongs to the guild it was created in. Each method takes the
guild a request comes from, and another guild's persona is "not found",
never shown or changed. A frontend passes plain ids and values.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Mapping

from bot import voting
from bot.candidates import rules_for
from bot.scheduler import BadSchedule, PostingScheduler, Schedule, make_schedule
from bot.store import Store
from core.clock import iso, utcnow
from core import mentions
from core.config import Config
from core.contract import BadInput, check_http_url, check_persona_name, shown

PLATFORMS = ("x", "bluesky", "mastodon", "outbox")
SOURCES = ("x", "bluesky", "mastodon", "csv", "archive", "twint")
MODELS = ("tiny", "124M", "355M")


# A persona's own defaults (personas.settings, migration 0009) and what each may be.
SETTINGS = {
    "mentions": "defuse (default), drop or keep",
    "prompt": "text every candidate starts with (at most 200 characters)",
    "top_k": "0 (off) to 1000",
    "seed": "a whole number from 0: the same seed, the same candidates",
    "length": "8 to 1023 tokens",
    "temperature": "above 0, at most 5",
    "top_p": "above 0, at most 1",
    "exclude": "a regular expression: source posts that match are left out of the dataset",
}


def check_settings(settings: Mapping[str, object]) -> None:
    """BadInput naming the first value that cannot work, and what it may be."""
    import regex

    for key, value in settings.items():
        if key not in SETTINGS:
            raise BadInput(f"unknown setting {shown(key)}: the settings are {', '.join(SETTINGS)}")
        ok = True
        if key == "mentions":
            ok = value in mentions.MODES
        elif key == "prompt":
            ok = isinstance(value, str) and len(value) <= 200 and "<|" not in value
        elif key in ("top_k", "seed", "length"):
            lo, hi = {"top_k": (0, 1000), "seed": (0, 2**62), "length": (8, 1023)}[key]
            ok = (key == "seed" and value is None) or (  # no seed: one is drawn per request
                isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi)
        elif key in ("temperature", "top_p"):
            ok = isinstance(value, (int, float)) and 0 < value <= (5 if key == "temperature" else 1)
        elif key == "exclude":
            try:
                ok = isinstance(value, str) and 0 < len(value) <= 200 and bool(regex.compile(value)) is not None
            except regex.error as exc:
                raise BadInput(f"exclude {shown(value)} is not a regular expression ({exc}): "
                               "e.g. `giveaway|#ad\\b`") from None
        if not ok:
            raise BadInput(f"{key} {shown(str(value))} cannot be used: {key} is {SETTINGS[key]}")


class NotFound(BadInput):
    """The guild has no such persona (or the thing asked for is another guild's)."""


def persona_name_for(handle: str) -> str:
    """dril -> dril; @Some.One@mastodon.social -> some_one; bsky handles keep their first label.
    BadInput when nothing usable is left (🦀🦀 would make "__")."""
    name = handle_user(handle)
    name = re.sub(r"[^a-z0-9_]", "_", name)[:32]
    if not re.search(r"[a-z0-9]", name):
        raise BadInput(f"{shown(handle)} makes no persona name: give one with `persona:` (a-z, 0-9 and _)")
    return name


def handle_user(handle: str) -> str:
    """The account part of any form of a handle: @Dril, dril@mastodon.social,
    https://mastodon.social/@dril, dril.bsky.social -> dril."""
    handle = handle.strip()
    m = re.match(r"^https?://[^/]+/@([^/?#@]+)", handle)
    if m:
        handle = m.group(1)
    return handle.lstrip("@＠").split("@")[0].split(".")[0].lower()


def parse_targets(text: str) -> list[dict]:
    """'x:DRIL_X, bluesky:DRIL_BSKY, mastodon:DRIL_MASTO@https://mastodon.social, outbox'."""
    targets = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        platform, _, rest = part.partition(":")
        platform = platform.strip().lower()
        if platform not in PLATFORMS:
            raise BadInput(f"unknown platform {shown(platform)} in targets: use {', '.join(PLATFORMS)}")
        credentials, _, base_url = rest.partition("@")
        credentials = credentials.strip()
        if platform != "outbox" and not credentials:
            raise BadInput(
                f"{platform} needs the prefix of its environment variables, e.g. {platform}:DRIL_{platform.upper()[:4]}"
            )
        if credentials and not credentials.replace("_", "").isalnum():
            raise BadInput(f"{shown(credentials)} is not an environment variable prefix (letters, digits, _)")
        target = {"platform": platform}
        if credentials:
            target["credentials"] = credentials.upper()
        if base_url.strip():
            target["base_url"] = check_http_url(base_url, f"{platform}'s address")
        targets.append(target)
    if not targets:
        raise BadInput("give at least one target, e.g. `outbox` or `x:DRIL_X`")
    return targets


def parse_sources(text: str) -> list[dict]:
    """'x:dril, bluesky:dril.bsky.social'."""
    sources = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        platform, sep, handle = part.partition(":")
        platform = platform.strip().lower()
        if not sep or platform not in SOURCES or not handle.strip():
            raise BadInput(f"{shown(part)} is not a source: write platform:handle with a platform from "
                           f"{', '.join(SOURCES)}, e.g. x:dril")
        sources.append({"platform": platform, "handle": handle.strip()})
    return sources


def not_found(name: str) -> NotFound:
    return NotFound(f"There is no persona **{name}** on this server. `/persona list` shows them; `/train` creates one.")


class PersonaService:
    def __init__(self, store: Store, cfg: Config, scheduler: PostingScheduler):
        self.store = store
        self.cfg = cfg
        self.scheduler = scheduler

    # --- finding -------------------------------------------------------------

    async def get(self, guild_id: int, name: str) -> dict:
        """The guild's persona ``name``; NotFound (with what to do) otherwise."""
        check_persona_name(name)
        persona = await self.store.find_persona(guild_id, name)
        if persona is None:
            raise not_found(name)
        return persona

    async def find(self, guild_id: int, name: str) -> dict | None:
        """The guild's persona ``name``, or None (for what may create it)."""
        return await self.store.find_persona(guild_id, name)

    async def list(self, guild_id: int) -> list[dict]:
        return await self.store.list_personas(guild_id)

    async def by_key(self, key: str) -> dict | None:
        """A persona by its key (for what already names one: a candidate, a job)."""
        return await self.store.get_persona(key)

    async def every_guild(self) -> list[dict]:
        """All personas of all guilds (start-up work, voting windows)."""
        return await self.store.list_personas()

    def rules(self, persona: dict, role_ids: Mapping[str, int] | None = None) -> voting.VoteRules:
        """The persona's vote rules (config names roles; ``role_ids`` resolves them)."""
        return rules_for(persona, self.cfg.curation, role_ids=role_ids)

    # --- creating --------------------------------------------------------------

    async def create(self, guild_id: int, name: str, *, created_by: int | None, curation_channel_id: int | None,
                     sources: list[dict] | None = None, base_model: str | None = None) -> dict:
        check_persona_name(name)
        if await self.store.find_persona(guild_id, name):
            raise BadInput(f"**{name}** exists already: `/persona show {name}`.")
        persona = await self.store.create_persona(
            guild_id, name, created_by=created_by, curation_channel_id=curation_channel_id,
            base_model=base_model or self.cfg.worker.default_model, sources=sources or [])
        await self.scheduler.sync(persona["key"])  # its posting schedule starts now
        return persona

    def check_training_request(self, *, handle: str | None, source: str | None, file_name: str | None,
                               persona: str | None, model: str | None,
                               more_steps: int | None = None) -> tuple[str, str | None]:
        """What /train may do before anything is fetched: (persona name, source; None:
        train on the dataset it has, which only a continuation may)."""
        if more_steps is not None and not handle and file_name is None:
            if not persona:
                raise BadInput("name the persona to continue: `/train persona:NAME more_steps:N`")
            return check_persona_name(persona), None
        if file_name is not None:
            if source and source not in ("csv", "archive"):
                raise BadInput("an attachment is a csv or an archive source; leave `source` empty")
        elif not handle:
            raise BadInput("give a `handle` to fetch (e.g. dril), or attach a CSV or X archive")
        if handle and self.denied(handle):
            raise BadInput(f"{shown(handle)} is on this server's do-not-train list")
        name = check_persona_name(persona or persona_name_for(handle or file_name.rsplit(".", 1)[0]))
        if model and model not in MODELS:
            raise BadInput(f"unknown model {shown(model)}: use {', '.join(MODELS)}")
        return name, source or "x"

    def denied(self, handle: str) -> bool:
        """On the denylist in any of its forms (realdril@mastodon.social when realdril is)."""
        listed = {h.strip().lstrip("@").lower() for h in self.cfg.training.denylist}
        return bool(listed & {handle.strip().lstrip("@").lower(), handle_user(handle)}) or \
            handle_user(handle) in {handle_user(h) for h in self.cfg.training.denylist}

    async def active_training(self, persona: dict | None) -> None:
        """One training per persona at a time: BadInput naming the one that runs."""
        job = await self.store.active_job(persona["key"], "train") if persona else None
        if job is not None:
            raise BadInput(f"**{persona['name']}** is already training (job #{job['id']}, {job['state']}): "
                           f"wait for it, or `/cancel job:{job['id']}` first")

    async def training_base(self, guild_id: int, persona: dict | None, *, more_steps: int | None,
                            start_from: str | None) -> dict | None:
        """Check a continuation (``more_steps``) or a start from another persona's model;
        returns that other persona. BadInput when there is no model to go on from."""
        if more_steps is not None and start_from:
            raise BadInput("either continue the persona's own model (`more_steps`) or start from another's "
                           "(`start_from`), not both")
        if more_steps is not None and (persona is None or not await self.store.has_trained(persona["key"])):
            name = persona["name"] if persona else "it"
            raise BadInput(f"**{name}** has no trained model to continue yet: `/train` it first (without `more_steps`)")
        if not start_from:
            return None
        other = await self.get(guild_id, start_from)
        if not await self.store.has_trained(other["key"]):
            raise BadInput(f"**{other['name']}** has no trained model to start from yet")
        return other

    async def ready_to_generate(self, persona: dict) -> None:
        """BadInput unless a training of the persona has finished (generation needs its model)."""
        if await self.store.has_trained(persona["key"]):
            return
        job = await self.store.active_job(persona["key"], "train")
        if job is not None:
            raise BadInput(f"**{persona['name']}** is still training (job #{job['id']}, {job['state']}): "
                           "`/generate` once it is done (`/jobs` shows where it is)")
        raise BadInput(f"**{persona['name']}** has no trained model yet: run `/train persona:{persona['name']}` "
                       "first (with a handle or an attachment of posts)")

    async def for_training(self, guild_id: int, name: str, *, source: str, handle: str | None, model: str | None,
                           created_by: int | None, channel_id: int | None) -> tuple[dict, bool]:
        """The guild's persona to train, created (here, as its curation channel) when new;
        (persona, made now). One made now stays only if its first import succeeds
        (``on_trial`` then ``settle_trial``)."""
        persona = await self.store.find_persona(guild_id, name)
        if persona is not None:
            added = {"platform": source, "handle": handle}
            if handle and added not in persona["sources"]:  # its posts are merged into the dataset: list it
                persona = await self.store.update_persona(persona["key"], sources=persona["sources"] + [added])
            return persona, False
        persona = await self.create(guild_id, name, created_by=created_by, curation_channel_id=channel_id,
                                    sources=[{"platform": source, "handle": handle}] if handle else [],
                                    base_model=model)
        return persona, True

    async def on_trial(self, persona: dict, job_id: int) -> None:
        await self.store.update_persona(persona["key"], first_import_job=job_id)

    async def settle_trial(self, job: dict) -> str | None:
        """A job ended: if it was the first import of a persona it made and the posts
        were never fetched and cleaned, the persona goes. Returns its name then."""
        persona = await self.store.get_persona(job["persona"])
        if persona is None or persona.get("first_import_job") != job["id"]:
            return None
        imported = "kept" in (job.get("progress") or {})
        if job["state"] == "done" or imported:
            await self.store.update_persona(persona["key"], first_import_job=None)
            return None
        await self.store.delete_persona(persona["key"])
        await self.scheduler.sync(persona["key"])
        return persona["name"]

    # --- changing ------------------------------------------------------------

    async def configure(self, persona: dict, *, role_ids: Mapping[str, int] | None = None,
                        curation_channel_id: int | None = None, log_channel_id: int | None = None,
                        rules: Mapping[str, object] | None = None, targets: str | None = None,
                        sources: str | None = None) -> dict:
        """Change channels, vote rules (overrides), targets or sources; BadInput when they cannot work."""
        fields: dict = {}
        merged = dict(persona["rules"], **{k: v for k, v in (rules or {}).items() if v is not None})
        try:
            self.rules(dict(persona, rules=merged), role_ids)  # validates the combination
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        fields["rules"] = merged
        if targets is not None:
            fields["targets"] = parse_targets(targets)
        if sources is not None:
            fields["sources"] = parse_sources(sources)
        if curation_channel_id is not None:
            fields["curation_channel_id"] = curation_channel_id
        if log_channel_id is not None:
            fields["log_channel_id"] = log_channel_id
        updated = await self.store.update_persona(persona["key"], **fields)
        await self.scheduler.sync(persona["key"])
        return updated

    # --- generation and import defaults ------------------------------------------

    async def set_defaults(self, persona: dict, values: Mapping[str, object], *, reset: bool = False) -> dict:
        """Change the persona's own defaults (``SETTINGS``); None leaves one as it is,
        ``reset`` clears them all first (back to the config's)."""
        settings = {} if reset else dict(persona.get("settings") or {})
        settings.update({k: v for k, v in values.items() if v is not None})
        check_settings(settings)
        return await self.store.update_persona(persona["key"], settings=settings)

    @staticmethod
    def platforms(persona: dict) -> list[str]:
        """Whose length limits its posts must fit: its targets' (the outbox alone means X's)."""
        return [t["platform"] for t in persona["targets"] if t["platform"] != "outbox"] or ["x"]

    def generation_options(self, persona: dict, **asked) -> dict:
        """What a /generate samples with: what was asked, else the persona's defaults, else the config's."""
        gen, own = self.cfg.generation, persona.get("settings") or {}
        defaults = {"temperature": gen.temperature, "top_p": gen.top_p, "top_k": gen.top_k, "length": gen.length,
                    "prompt": "", "seed": None}
        options = {k: asked[k] if asked.get(k) is not None else own.get(k, default) for k, default in defaults.items()}
        check_settings(options)
        options["mentions"] = own.get("mentions", gen.mentions)
        return options

    async def delete(self, persona: dict) -> list[tuple[int, int]]:
        """The persona and its unposted candidates (the worker keeps its data);
        returns the (channel, message) of each candidate message to retire."""
        messages = [(c["channel_id"], c["message_id"])
                    for c in await self.store.candidates(persona=persona["key"], states=["voting", "approved", "failed"])
                    if c["message_id"] and c["channel_id"]]
        await self.store.delete_persona(persona["key"])
        await self.scheduler.sync(persona["key"])
        return messages

    # --- schedule -----------------------------------------------------------

    def schedule_of(self, persona: dict) -> Schedule:
        """The stored schedule; BadInput that says how to set one when it does not work."""
        try:
            return self.scheduler.schedule_of(persona)
        except BadSchedule as exc:
            raise BadInput(f"The stored schedule does not work ({exc}); set one with `/schedule set`.") from None

    async def set_schedule(self, persona: dict, *, cron: str | None, timezone: str | None,
                           interval_minutes: float | None, jitter_minutes: float | None) -> Schedule:
        name = persona["name"]
        example = (f"Example: `/schedule set persona:{name} cron:0 9,13,19 * * * timezone:Europe/Berlin "
                   "jitter_minutes:20`.")
        if not cron and interval_minutes is None:
            raise BadInput("Give `cron` (and `timezone`), e.g. cron:`0 9,13,19 * * *` timezone:`Europe/Berlin`, "
                           "or `interval_minutes`, e.g. 240.")
        posting = self.cfg.posting
        try:
            schedule = make_schedule(cron=cron, timezone=timezone or posting.timezone, interval_minutes=interval_minutes,
                                     jitter_minutes=posting.jitter_minutes if jitter_minutes is None else jitter_minutes,
                                     anchor=dt.datetime.now(dt.timezone.utc))
        except BadSchedule as exc:
            raise BadInput(f"{exc}. {example}") from None
        await self.store.update_persona(persona["key"], schedule=schedule.to_json())
        await self.scheduler.sync(persona["key"])
        return schedule

    async def pause(self, persona: dict, by: str) -> None:
        await self.store.update_persona(persona["key"], state="paused", paused_reason=f"paused by {by}")
        await self.scheduler.sync(persona["key"])

    async def resume(self, persona: dict) -> Schedule:
        """Active again; runs skipped while paused are not made up for."""
        schedule = self.schedule_of(persona)
        await self.store.update_persona(persona["key"], state="active", paused_reason=None,
                                        last_run_at=iso(utcnow()), posting_notice=None)
        await self.scheduler.sync(persona["key"])
        return schedule
