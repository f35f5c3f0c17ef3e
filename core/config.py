"""Configuration: ``config.toml`` validated at start, secrets only from the environment.

Every key has a default, so an empty (or missing) file is a working embedded
set-up. Unknown keys and wrong types are errors that name the key.
"""
from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import Meta, field

from core.contract import PERSONA_NAME, BadInput, check_http_url

CUSTOM_EMOJI = re.compile(r"<a?:[A-Za-z0-9_~]{2,32}:[0-9]{17,20}>")
DATA_DIR_ENV = "PARODYBOT_DATA_DIR"
TOKEN_ENV = "DISCORD_TOKEN"


class ConfigError(Exception):
    """A config problem, worded for the person who edits the file."""


# msgspec checks the types, the bounds and the keys as it reads the file: a few
# ms to import and define, where pydantic's models were 120 ms of every start
# (bench/startup.py). Our own checks (__post_init__) raise ValueError("KEY: what to
# do"); msgspec reports them at their section. They skip the defaults, known good,
# so an unset emoji or cron costs no import.
def _problem(key: str, text: str) -> ValueError:
    return ValueError(f"{key}: {text}")


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class DiscordConfig(Section):
    # Guild ids to sync slash commands to at start (instant); empty = global.
    guild_ids: list[int] = []
    operator_role: str = "parodybot-operator"
    # Only for a local Discord stand-in (tests, demo); empty = the real Discord.
    api_base: str = ""
    gateway_url: str = ""
    attachment_hosts: list[str] = field(default_factory=lambda: ["cdn.discordapp.com", "media.discordapp.net"])
    max_attachment_mb: Annotated[float, Meta(gt=0, le=500)] = 25.0
    # Seconds between edits of a progress message (Discord rate-limits edits).
    progress_edit_interval: Annotated[float, Meta(ge=0.2, le=60)] = 1.0


class QueueConfig(Section):
    # sqlite:///PATH (embedded, default: <data_dir>/queue.sqlite3) or redis://HOST:PORT/DB
    url: str = ""

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("sqlite:///", "redis://", "rediss://")):
            raise _problem("url", "must start with sqlite:/// or redis:// (or be empty for the default)")


class WorkerConfig(Section):
    # `parodybot run` starts a worker process next to the bot.
    embedded: bool = True
    concurrency: Annotated[int, Meta(ge=1, le=16)] = 1
    loaded_models: Annotated[int, Meta(ge=1, le=16)] = 2
    default_model: str = "tiny"
    # How /status names this worker (default: host name and process id).
    id: Annotated[str, Meta(max_length=64, pattern=r"^[A-Za-z0-9_.:-]*$")] = ""
    # A running job whose worker stops renewing its lease this long is queued again for any worker.
    lease_seconds: Annotated[float, Meta(ge=2, le=3600)] = 60.0
    # What /status says this worker runs on (default: the GPUs nvidia-smi lists, else CPU).
    device: Annotated[str, Meta(max_length=100)] = ""


class ArtifactsConfig(Section):
    # Where workers keep datasets and checkpoints for each other: empty = the worker's
    # data directory (one machine); s3://BUCKET/PREFIX for workers on several machines.
    url: str = ""
    endpoint_url: str = ""  # an S3-compatible server (MinIO, R2, ...); empty = AWS
    region: str = ""

    def __post_init__(self) -> None:
        if self.url and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?", self.url):
            raise _problem("url", "must be s3://BUCKET or s3://BUCKET/PREFIX (a lower-case bucket name), or empty")
        if self.endpoint_url:
            try:
                check_http_url(self.endpoint_url, "endpoint_url")
            except BadInput as exc:
                raise _problem("endpoint_url", str(exc)) from None


class TrainingConfig(Section):
    steps: Annotated[int, Meta(ge=1, le=100_000)] = 300
    learning_rate: Annotated[float, Meta(gt=0, lt=1)] | None = None
    save_every: Annotated[int, Meta(ge=1)] = 50
    # A share of the posts held back to measure the loss on posts the model never saw
    # (0: off); every `validation_every` steps (default: save_every), over
    # `validation_batches` 1,024-token windows of them.
    validation_fraction: Annotated[float, Meta(ge=0, lt=0.5)] = 0.05
    validation_every: Annotated[int, Meta(ge=1)] | None = None
    validation_batches: Annotated[int, Meta(ge=1, le=200)] = 10
    early_stop: Annotated[int, Meta(ge=0)] = 0  # stop after this many validations without a new best (0: off)
    sample_every: Annotated[int, Meta(ge=0)] = 0  # a sample in the progress message every N steps (0: off)
    # Handles that must never be trained on (lower case, without @).
    denylist: list[str] = []


class GenerationConfig(Section):
    temperature: Annotated[float, Meta(gt=0, le=5)] = 1.0
    top_p: Annotated[float, Meta(gt=0, le=1)] = 0.9
    top_k: Annotated[int, Meta(ge=0, le=1000)] = 0  # 0: off (top_p alone), as in gpt-2-simple
    length: Annotated[int, Meta(ge=8, le=1023)] = 200
    count: Annotated[int, Meta(ge=1, le=200)] = 20
    blocklist: list[str] = []
    mentions: Literal["defuse", "drop", "keep"] = "defuse"  # see core/mentions.py


def _one_emoji(key: str, value: str) -> str:
    # Discord refuses anything else as a reaction (10014 Unknown Emoji).
    import emoji  # its table takes 40 ms to load: only for emojis actually set

    if not (emoji.is_emoji(value.strip()) or CUSTOM_EMOJI.fullmatch(value.strip())):
        raise _problem(key, f"{value!r} is not one emoji: use a single emoji such as 👍, or a server emoji as "
                            "<:name:id>")
    return value.strip()


class CurationConfig(Section):
    approve_at: Annotated[int, Meta(ge=1)] = 3
    reject_at: Annotated[int, Meta(le=-1)] = -2
    window_hours: Annotated[float, Meta(gt=0, le=24 * 30)] = 24.0
    approve_after_window_at: int = 1
    voter_role: str = ""
    curator_role: str = ""
    approve_emoji: str = "👍"
    reject_emoji: str = "👎"

    def __post_init__(self) -> None:
        if self.approve_emoji != "👍":
            self.approve_emoji = _one_emoji("approve_emoji", self.approve_emoji)
        if self.reject_emoji != "👎":
            self.reject_emoji = _one_emoji("reject_emoji", self.reject_emoji)
        if len({self.approve_emoji, self.reject_emoji, "✅", "❌"}) < 4:
            raise ValueError("approve_emoji and reject_emoji must differ from each other and from ✅ / ❌ "
                             "(those are the curators' approve and reject at once)")


DEFAULT_CRON = "0 9,13,19 * * *"


class PostingConfig(Section):
    # Default schedule of new personas: a cron expression in `timezone`.
    cron: str = DEFAULT_CRON
    timezone: str = "UTC"
    jitter_minutes: Annotated[float, Meta(ge=0, le=24 * 60)] = 20.0
    daily_cap: Annotated[int, Meta(ge=0)] = 10
    monthly_cap: Annotated[int, Meta(ge=0)] = 300

    def __post_init__(self) -> None:
        if self.timezone != "UTC":
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise _problem("timezone", f"{self.timezone!r} is not a time zone: use an IANA name such as "
                                           "Europe/Berlin or UTC") from None
        if self.cron != DEFAULT_CRON:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.cron)
            except ValueError as exc:
                raise _problem("cron", f"{self.cron!r} is not a cron expression ({exc}): five fields, "
                                       "e.g. 0 9,13,19 * * *") from None


class TargetConfig(Section):
    platform: Literal["x", "bluesky", "mastodon", "outbox"]
    # Prefix of the environment variables holding this target's secrets,
    # e.g. DRIL_X -> DRIL_X_CONSUMER_KEY, DRIL_X_CONSUMER_SECRET, ...
    credentials: str = ""
    base_url: str = ""

    def __post_init__(self) -> None:
        if self.base_url:
            try:
                check_http_url(self.base_url)
            except BadInput as exc:
                raise _problem("base_url", str(exc)) from None


class PersonaConfig(Section):
    targets: list[TargetConfig] = []


class Config(Section):
    # Where all state lives; PARODYBOT_DATA_DIR overrides it.
    data_dir: str = "data"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    artifacts: ArtifactsConfig = field(default_factory=ArtifactsConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    curation: CurationConfig = field(default_factory=CurationConfig)
    posting: PostingConfig = field(default_factory=PostingConfig)
    personas: dict[str, PersonaConfig] = {}
    # Where the file was read from (paths in it are relative to it); set by load_config.
    source: Path | None = None

    def __post_init__(self) -> None:
        for ref in self.personas:
            guild, _, name = ref.rpartition("/")
            if not PERSONA_NAME.fullmatch(name) or (guild and not guild.isdigit()):
                raise _problem("personas", f"persona {ref!r} must be NAME or \"GUILD_ID/NAME\" with NAME matching "
                                 "[a-z0-9_]{1,32}, e.g. [personas.\"123456789012345678/dril\"]")

    @property
    def data_path(self) -> Path:
        env = os.environ.get(DATA_DIR_ENV)
        if env:
            return Path(env).expanduser().resolve()
        base = self.source.parent if self.source else Path.cwd()
        return (base / self.data_dir).expanduser().resolve()

    @property
    def db_path(self) -> Path:
        return self.data_path / "parodybot.sqlite3"

    @property
    def queue_url(self) -> str:
        return self.queue.url or f"sqlite:///{self.data_path / 'queue.sqlite3'}"

    @property
    def worker_dir(self) -> Path:
        return self.data_path / "worker"

    @property
    def outbox_path(self) -> Path:
        return self.data_path / "outbox.jsonl"


def config_from(raw: dict[str, Any], where: str = "config") -> Config:
    """The config from a parsed TOML table, or ConfigError naming every wrong key.
    msgspec stops at a table's first problem, so on one each top-level key (each
    persona) is checked on its own: one line per wrong section."""
    try:
        return msgspec.convert(raw, Config)
    except msgspec.ValidationError:
        pass
    problems = []
    for key, value in raw.items():
        parts = [{key: {name: v}} for name, v in value.items()] if key == "personas" and isinstance(value, dict) \
            else [{key: value}]
        for part in parts:
            try:
                msgspec.convert(part, Config)
            except msgspec.ValidationError as exc:
                problems.append(_describe(str(exc), part))
    raise ConfigError(f"{where}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems))


# msgspec's words for TOML's kinds of value.
_KINDS = {"int": "a whole number", "float": "a number", "str": "text in quotes", "bool": "true or false",
          "array": "a list [...]", "object": "a table"}


def _describe(error: str, part: dict[str, Any]) -> str:
    """msgspec's "TEXT - at `$.worker.concurrency`" as "worker.concurrency: what to do (got 'two')"."""
    text, _, at = error.partition(" - at `")
    if "[...]" in at:  # a persona: `part` holds just the one
        at = at.replace("[...]", "." + next(iter(part["personas"])), 1)
    steps = [int(s[1:-1]) if s.startswith("[") else s.lstrip(".") for s in re.findall(r"\[\d+\]|\.[^.\[`]+", at)]
    if unknown := re.fullmatch(r"Object contains unknown field `(.+)`", text):
        steps.append(unknown[1])
        text = "unknown key (check the spelling against config.example.toml)"
    elif ours := re.fullmatch(r"([a-z_]+): (.*)", text, re.S):  # __post_init__'s "KEY: what to do"
        steps.append(ours[1])
        text = ours[2]
    elif missing := re.fullmatch(r"Object missing required field `(.+)`", text):
        steps.append(missing[1])
        text = "missing: this key is required"
    else:
        if wrong := re.fullmatch(r"Expected `([^`]+)`(?:, got `[^`]+`)?(.*)", text):
            kinds = [_KINDS.get(k, k) for k in wrong[1].split(" | ") if k != "null"]  # TOML has no null
            text = f"must be {' or '.join(kinds)}{wrong[2]}"
        elif text.startswith("Invalid enum value"):
            text = "must be one of " + ", ".join(repr(v) for v in _choices(steps))
        value = part
        for step in steps:
            try:
                value = value[step]
            except (KeyError, IndexError, TypeError):
                value = None
        if value is not None and not isinstance(value, (dict, list)):
            text += f" (got {value!r})"
    key = ".".join(str(s) if isinstance(s, str) else f"[{s}]" for s in steps).replace(".[", "[")
    return f"{key or '(top level)'}: {text}"


def _choices(steps: list[str | int]) -> tuple:
    """The values a Literal key allows, found by following ``steps`` through the config's types."""
    from msgspec import inspect

    kind = inspect.type_info(Config)
    for step in steps:
        if isinstance(kind, inspect.StructType):
            kind = next(f.type for f in kind.fields if f.name == step)
        elif isinstance(kind, (inspect.ListType, inspect.DictType)):
            kind = kind.item_type if isinstance(kind, inspect.ListType) else kind.value_type
    return kind.values if isinstance(kind, inspect.LiteralType) else ()


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate the config. With no path, use ./config.toml if it exists."""
    cfg = _read_config(path)
    if cfg.data_path.exists() and not cfg.data_path.is_dir():
        where = f"{DATA_DIR_ENV}" if os.environ.get(DATA_DIR_ENV) else "data_dir"
        raise ConfigError(f"{where}: {cfg.data_path} is a file, not a folder: point it at a folder "
                          "(it is made when missing)")
    return cfg


def _read_config(path: str | Path | None) -> Config:
    if path is None:
        path = Path("config.toml")
        if not path.exists():
            _load_env(Path.cwd())
            return Config()
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file (copy config.example.toml to config.toml to start)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    cfg = config_from(raw, str(path))
    cfg.source = path.resolve()
    _load_env(path.resolve().parent)
    return cfg


def _load_env(folder: Path) -> None:
    # Secrets may sit in a .env file beside the config; the real environment wins.
    env_file = folder / ".env"
    if env_file.exists():
        from dotenv import load_dotenv  # only then: it is start-up time (bench/startup.py)

        load_dotenv(env_file, override=False)


def discord_token() -> str:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(
            f"{TOKEN_ENV} is not set: put the bot token in the environment or in a .env file "
            "(README: 'Create the Discord application')"
        )
    return token
