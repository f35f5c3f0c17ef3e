"""Configuration: ``config.toml`` validated at start, secrets only from the environment.

Every key has a default, so an empty (or missing) file is a working embedded
set-up. Unknown keys and wrong types are errors that name the key.
"""
from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


# pydantic looks for plugins in every installed package's entry points on its
# first model (TensorFlow's venv has ~150): we use none (PYDANTIC_DISABLE_PLUGINS
# is pydantic's own switch; set it otherwise to have yours).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.contract import PERSONA_NAME, BadInput, check_http_url

CUSTOM_EMOJI = re.compile(r"<a?:[A-Za-z0-9_~]{2,32}:[0-9]{17,20}>")
DATA_DIR_ENV = "PARODYBOT_DATA_DIR"
TOKEN_ENV = "DISCORD_TOKEN"


class ConfigError(Exception):
    """A config problem, worded for the person who edits the file."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DiscordConfig(Section):
    # Guild ids to sync slash commands to at start (instant); empty = global.
    guild_ids: list[int] = []
    operator_role: str = "parodybot-operator"
    # Only for a local Discord stand-in (tests, demo); empty = the real Discord.
    api_base: str = ""
    gateway_url: str = ""
    attachment_hosts: list[str] = ["cdn.discordapp.com", "media.discordapp.net"]
    max_attachment_mb: float = Field(default=25, gt=0, le=500)
    # Seconds between edits of a progress message (Discord rate-limits edits).
    progress_edit_interval: float = Field(default=1.0, ge=0.2, le=60)


class QueueConfig(Section):
    # sqlite:///PATH (embedded, default: <data_dir>/queue.sqlite3) or redis://HOST:PORT/DB
    url: str = ""

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if v and not v.startswith(("sqlite:///", "redis://", "rediss://")):
            raise ValueError("must start with sqlite:/// or redis:// (or be empty for the default)")
        return v


class WorkerConfig(Section):
    # `parodybot run` starts a worker process next to the bot.
    embedded: bool = True
    concurrency: int = Field(default=1, ge=1, le=16)
    loaded_models: int = Field(default=2, ge=1, le=16)
    default_model: str = "tiny"
    # How /status names this worker (default: host name and process id).
    id: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9_.:-]*$")
    # A running job whose worker stops renewing its lease this long is queued again for any worker.
    lease_seconds: float = Field(default=60, ge=2, le=3600)
    # What /status says this worker runs on (default: the GPUs nvidia-smi lists, else CPU).
    device: str = Field(default="", max_length=100)


class ArtifactsConfig(Section):
    # Where workers keep datasets and checkpoints for each other: empty = the worker's
    # data directory (one machine); s3://BUCKET/PREFIX for workers on several machines.
    url: str = ""
    endpoint_url: str = ""  # an S3-compatible server (MinIO, R2, ...); empty = AWS
    region: str = ""

    @field_validator("url")
    @classmethod
    def _s3(cls, v: str) -> str:
        if v and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?", v):
            raise ValueError("must be s3://BUCKET or s3://BUCKET/PREFIX (a lower-case bucket name), or empty")
        return v

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if v:
            try:
                check_http_url(v, "endpoint_url")
            except BadInput as exc:
                raise ValueError(str(exc)) from None
        return v


class TrainingConfig(Section):
    steps: int = Field(default=300, ge=1, le=100_000)
    learning_rate: float | None = Field(default=None, gt=0, lt=1)
    save_every: int = Field(default=50, ge=1)
    # A share of the posts held back to measure the loss on posts the model never saw
    # (0: off); every `validation_every` steps (default: save_every), over
    # `validation_batches` 1,024-token windows of them.
    validation_fraction: float = Field(default=0.05, ge=0, lt=0.5)
    validation_every: int | None = Field(default=None, ge=1)
    validation_batches: int = Field(default=10, ge=1, le=200)
    early_stop: int = Field(default=0, ge=0)  # stop after this many validations without a new best (0: off)
    sample_every: int = Field(default=0, ge=0)  # a sample in the progress message every N steps (0: off)
    # Handles that must never be trained on (lower case, without @).
    denylist: list[str] = []


class GenerationConfig(Section):
    temperature: float = Field(default=1.0, gt=0, le=5)
    top_p: float = Field(default=0.9, gt=0, le=1)
    top_k: int = Field(default=0, ge=0, le=1000)  # 0: off (top_p alone), as in gpt-2-simple
    length: int = Field(default=200, ge=8, le=1023)
    count: int = Field(default=20, ge=1, le=200)
    blocklist: list[str] = []
    mentions: Literal["defuse", "drop", "keep"] = "defuse"  # see core/mentions.py


class CurationConfig(Section):
    approve_at: int = Field(default=3, ge=1)
    reject_at: int = Field(default=-2, le=-1)
    window_hours: float = Field(default=24, gt=0, le=24 * 30)
    approve_after_window_at: int = 1
    voter_role: str = ""
    curator_role: str = ""
    approve_emoji: str = "👍"
    reject_emoji: str = "👎"

    @field_validator("approve_emoji", "reject_emoji")
    @classmethod
    def _one_emoji(cls, v: str) -> str:
        # Discord refuses anything else as a reaction (10014 Unknown Emoji).
        import emoji  # its table takes 40 ms to load: only for emojis actually set

        if not (emoji.is_emoji(v.strip()) or CUSTOM_EMOJI.fullmatch(v.strip())):
            raise ValueError(f"{v!r} is not one emoji: use a single emoji such as 👍, or a server emoji as <:name:id>")
        return v.strip()

    @model_validator(mode="after")
    def _distinct(self) -> "CurationConfig":
        if len({self.approve_emoji, self.reject_emoji, "✅", "❌"}) < 4:
            raise ValueError("approve_emoji and reject_emoji must differ from each other and from ✅ / ❌ "
                             "(those are the curators' approve and reject at once)")
        return self


class PostingConfig(Section):
    # Default schedule of new personas: a cron expression in `timezone`.
    cron: str = "0 9,13,19 * * *"
    timezone: str = "UTC"
    jitter_minutes: float = Field(default=20, ge=0, le=24 * 60)
    daily_cap: int = Field(default=10, ge=0)
    monthly_cap: int = Field(default=300, ge=0)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not a time zone: use an IANA name such as Europe/Berlin or UTC") from None
        return v

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(v)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a cron expression ({exc}): five fields, e.g. 0 9,13,19 * * *") from None
        return v


class TargetConfig(Section):
    platform: Literal["x", "bluesky", "mastodon", "outbox"]
    # Prefix of the environment variables holding this target's secrets,
    # e.g. DRIL_X -> DRIL_X_CONSUMER_KEY, DRIL_X_CONSUMER_SECRET, ...
    credentials: str = ""
    base_url: str = ""

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v:
            try:
                check_http_url(v)
            except BadInput as exc:
                raise ValueError(str(exc)) from None
        return v


class PersonaConfig(Section):
    targets: list[TargetConfig] = []


class Config(Section):
    # Where all state lives; PARODYBOT_DATA_DIR overrides it.
    data_dir: str = "data"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    discord: DiscordConfig = DiscordConfig()
    queue: QueueConfig = QueueConfig()
    worker: WorkerConfig = WorkerConfig()
    artifacts: ArtifactsConfig = ArtifactsConfig()
    training: TrainingConfig = TrainingConfig()
    generation: GenerationConfig = GenerationConfig()
    curation: CurationConfig = CurationConfig()
    posting: PostingConfig = PostingConfig()
    personas: dict[str, PersonaConfig] = {}

    @field_validator("personas")
    @classmethod
    def _persona_names(cls, v: dict[str, PersonaConfig]) -> dict[str, PersonaConfig]:
        for ref in v:
            guild, _, name = ref.rpartition("/")
            if not PERSONA_NAME.fullmatch(name) or (guild and not guild.isdigit()):
                raise ValueError(f"persona {ref!r} must be NAME or \"GUILD_ID/NAME\" with NAME matching "
                                 "[a-z0-9_]{1,32}, e.g. [personas.\"123456789012345678/dril\"]")
        return v

    # Where the file was read from (paths in it are relative to it).
    source: Path | None = Field(default=None, exclude=True)

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


def _describe(err: dict[str, Any]) -> str:
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) if loc else "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key (check the spelling against config.example.toml)"
    msg = err["msg"]
    if "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], (dict, list)):
        msg += f" (got {err['input']!r})"
    return f"{key}: {msg}"


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
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        problems = "\n".join(f"  {_describe(e)}" for e in exc.errors())
        raise ConfigError(f"{path}: {exc.error_count()} problem(s):\n{problems}") from None
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
