"""The contract between the bot and the worker.

Both sides import this module and nothing heavier: task names, the typed
payloads and results (``TrainRequest`` ... ``GenerateResult``), persona names
and keys, and progress states. The queue that carries them is
core/taskqueue.py (Huey, which the bot loads only once it is connected).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from urllib.parse import urlsplit


# Task names, registered on both sides as ``bot.contract.<name>``: the name they
# had on the wire before this module moved to core/, so that jobs queued by an
# older version still run after an upgrade.
WIRE_MODULE = "bot.contract"
TRAIN = "train"
GENERATE = "generate"
IMPORT = "import_dataset"
CHECK = "check_texts"
TASK_NAMES = (TRAIN, GENERATE, IMPORT, CHECK)

# Job states, shared by the bot's jobs table and the worker's events.
QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINAL_STATES = (DONE, FAILED, CANCELLED)

PERSONA_NAME = re.compile(r"[a-z0-9_]{1,32}")


class BadInput(ValueError):
    """Input a person gave that we refuse; the message says what to do."""


def shown(value: object) -> str:
    """Something a person typed, echoed back as inline code: in a chat that
    renders Markdown nothing inside it renders, and it cannot close the quote."""
    return "`" + str(value).replace("`", "ˋ").replace("\n", " ")[:200] + "`"


def check_http_url(url: str, what: str = "base_url") -> str:
    """An http(s) URL with a host, or BadInput (``javascript:``, ``file:``, a bare word...)."""
    parts = urlsplit(str(url).strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"{what} {shown(url)} is not a web address: give one like https://mastodon.social")
    return str(url).strip()


class WorkFailed(RuntimeError):
    """Work on the worker failed for a reason worth showing as it is (no traceback)."""


def check_persona_name(name: str) -> str:
    """Persona names end up in paths, so nothing but [a-z0-9_]{1,32} passes."""
    if not isinstance(name, str) or not PERSONA_NAME.fullmatch(name):
        raise BadInput(
            f"persona name {name!r} is not allowed: use 1 to 32 characters from "
            "a-z, 0-9 and _ (for example: dril)"
        )
    return name


# --- persona keys ------------------------------------------------------------

# A persona's key names it everywhere but in front of people: the bot's rows
# and the worker's folders. New personas: g<guild id>-<name>; personas made
# before guilds owned them keep their name (migration 0005). Names cannot hold
# '-', so the two forms never meet, and no key can leave a folder.
PERSONA_KEY = re.compile(r"(?:g[0-9]{1,20}-)?[a-z0-9_]{1,32}")


def persona_key(guild_id: int, name: str) -> str:
    """The key of the guild's persona ``name``."""
    check_persona_name(name)
    if not isinstance(guild_id, int) or isinstance(guild_id, bool) or guild_id < 0:
        raise BadInput(f"guild id {guild_id!r} is not a Discord server id")
    return f"g{guild_id}-{name}" if guild_id else name


def check_persona_key(key: str) -> str:
    """Keys end up in the worker's paths: nothing but the two forms above passes."""
    if not isinstance(key, str) or not PERSONA_KEY.fullmatch(key):
        raise BadInput(f"persona name {key!r} is not allowed: use 1 to 32 characters from a-z, 0-9 and _ "
                       "(for example: dril)")
    return key


def persona_label(key: str) -> str:
    """The name people know a persona by, from its key (for messages)."""
    return key.split("-", 1)[1] if "-" in key else key


# --- typed payloads and results ------------------------------------------------
#
# What the bot puts on the queue and what the worker answers. Both sides build
# and read these classes; on the wire they are plain JSON objects. A payload
# with a field this version does not know is refused (the queue may be
# reachable over a network); a result may carry more than the bot reads.


class _Wire:
    _nested: dict = {}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict, *, strict: bool = True):
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise BadInput(f"{cls.__name__} must be a JSON object, not {type(data).__name__}")
        names = {f.name for f in dataclass_fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown and strict:
            raise BadInput(f"{cls.__name__} has unknown field(s) {', '.join(unknown)}: the bot and the worker "
                           "run different versions; update both")
        values = {k: v for k, v in data.items() if k in names}
        for name, kind in cls._nested.items():
            if isinstance(values.get(name), dict):
                values[name] = kind.from_json(values[name], strict=strict)
            elif isinstance(values.get(name), list):
                values[name] = [kind.from_json(v, strict=strict) for v in values[name]]
        try:
            return cls(**values)
        except TypeError as exc:
            raise BadInput(f"{cls.__name__}: {exc}") from None


@dataclass(frozen=True)
class CleanSpec(_Wire):
    """How source posts are cleaned (workers.cleaning.CleanOptions takes these)."""

    drop_retweets: bool = True
    drop_replies: bool = True
    strip_urls: bool = True
    strip_mentions: bool = False
    strip_hashtags: bool = False
    leading_mention_is_reply: bool = True


@dataclass(frozen=True)
class ImportRequest(_Wire):
    """Fetch and clean posts into the persona's dataset."""

    job_id: int
    persona: str                    # the persona's key
    source: str
    handle: str | None = None
    base_url: str | None = None
    file_b64: str | None = None     # an attachment the bot fetched, base64
    file_name: str | None = None
    clean: CleanSpec = field(default_factory=CleanSpec)
    resumed: bool = False           # a restarted worker queued it again
    limit: int | None = None        # at most this many posts fetched
    exclude: str | None = None      # a regular expression: source posts it finds are left out
    _nested = {"clean": CleanSpec}


@dataclass(frozen=True)
class TrainRequest(_Wire):
    """Import (when ``source`` is set), then finetune the persona's model."""

    job_id: int
    persona: str
    steps: int
    model: str
    source: str | None = None
    handle: str | None = None
    base_url: str | None = None
    file_b64: str | None = None
    file_name: str | None = None
    clean: CleanSpec = field(default_factory=CleanSpec)
    learning_rate: float | None = None
    save_every: int | None = None
    resumed: bool = False
    limit: int | None = None
    exclude: str | None = None
    more_steps: int | None = None   # continue the working checkpoint this many steps (steps, model ignored)
    early_stop: int | None = None   # stop once this many validations in a row did not improve
    sample_every: int | None = None  # a sample in the progress every this many steps
    start_from: str | None = None   # begin from another persona's working checkpoint (its key)
    _nested = {"clean": CleanSpec}

    def import_request(self) -> ImportRequest:
        return ImportRequest(self.job_id, self.persona, self.source or "", self.handle, self.base_url,
                             self.file_b64, self.file_name, self.clean, self.resumed, self.limit, self.exclude)


@dataclass(frozen=True)
class GenerateRequest(_Wire):
    """Generate and filter candidates with the persona's working checkpoint."""

    job_id: int
    persona: str
    count: int
    temperature: float
    top_p: float
    length: int | None = None
    platforms: list[str] = field(default_factory=lambda: ["x"])
    blocklist: list[str] = field(default_factory=list)
    earlier_candidates: list[str] = field(default_factory=list)
    resumed: bool = False
    prompt: str = ""                # every candidate starts with it
    top_k: int = 0                  # 0: off
    seed: int | None = None         # the same seed, the same candidates
    mentions: str = "defuse"        # core.mentions.MODES: "drop" filters them out here


@dataclass(frozen=True)
class DatasetSummary(_Wire):
    source: str
    kept: int                       # posts in the dataset now (all sources)
    dropped: dict[str, int] = field(default_factory=dict)
    fetched: int = 0
    chars: int = 0
    added: int = 0                  # posts this import brought
    sources: dict[str, int] = field(default_factory=dict)  # posts per source, e.g. {"x:dril": 120}


@dataclass(frozen=True)
class ImportResult(_Wire):
    state: str
    dataset: DatasetSummary | None = None
    _nested = {"dataset": DatasetSummary}


@dataclass(frozen=True)
class TrainResult(_Wire):
    state: str
    steps: int = 0
    steps_done: int = 0
    final_loss: float | None = None
    losses: list[list[float]] = field(default_factory=list)   # [step, loss, average loss]
    samples: list[str] = field(default_factory=list)
    resumed_from: int = 0
    dataset: DatasetSummary | None = None
    val_losses: list[list[float]] = field(default_factory=list)  # [step, loss on the held-out posts]
    validation: dict = field(default_factory=dict)                # {"state": "on" | "skipped" | "off", ...}
    early_stopped: bool = False
    _nested = {"dataset": DatasetSummary}


@dataclass(frozen=True)
class GeneratedCandidate(_Wire):
    text: str
    settings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GenerateResult(_Wire):
    state: str
    candidates: list[GeneratedCandidate] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    _nested = {"candidates": GeneratedCandidate}


@dataclass(frozen=True)
class CheckRequest(_Wire):
    """Run the generation filters over hand-written texts (an edit, /queue add or
    import): the copy checks need the persona's real posts, which the worker has."""

    job_id: int
    persona: str
    texts: list[str]
    platforms: list[str] = field(default_factory=lambda: ["x"])
    blocklist: list[str] = field(default_factory=list)
    mentions: str = "defuse"
    earlier_candidates: list[str] = field(default_factory=list)
    resumed: bool = False


@dataclass(frozen=True)
class CheckResult(_Wire):
    state: str
    fates: list[str | None] = field(default_factory=list)  # per text: None passes, else the filter's name
    texts: list[str] = field(default_factory=list)         # the texts as the filters cleaned them


REQUESTS = {TRAIN: TrainRequest, GENERATE: GenerateRequest, IMPORT: ImportRequest, CHECK: CheckRequest}
RESULTS = {TRAIN: TrainResult, GENERATE: GenerateResult, IMPORT: ImportResult, CHECK: CheckResult}
KIND_TASK = {"train": TRAIN, "generate": GENERATE, "import": IMPORT, "check": CHECK}


def result_of(kind: str, data: dict | None):
    """A job's stored result as its typed class (None before it has one)."""
    if not data:
        return None
    return RESULTS[KIND_TASK[kind]].from_json(data, strict=False)
