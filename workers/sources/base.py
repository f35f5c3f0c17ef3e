"""What every source shares: the post record, the interface, small helpers."""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

from core.contract import BadInput

#: The sources that work today (twint is kept only for completeness).
WORKING_SOURCES = ("csv", "archive", "x", "bluesky", "mastodon")

#: Network timeout for one HTTP request, in seconds.
HTTP_TIMEOUT = 30.0

#: How many posts a network source fetches when no limit is given
#: (X's API never serves more than 3,200 of a user's latest posts).
DEFAULT_NETWORK_LIMIT = 10_000

ProgressFn = Callable[[int], None]
SleepFn = Callable[[float], None]
ClockFn = Callable[[], float]


@dataclass
class RawPost:
    """One post as a source delivered it, before cleaning."""

    text: str
    id: str | None = None
    created_at: str | None = None  # ISO 8601 where the source says when
    # What the source knows: True or False when it says (API fields, archive
    # fields, CSV columns), None when it cannot (a one-column CSV).
    is_retweet: bool | None = None
    is_reply: bool | None = None


@runtime_checkable
class Source(Protocol):
    name: str

    def fetch(
        self,
        *,
        handle: str | None = None,
        file: Path | None = None,
        base_url: str | None = None,
        limit: int | None = None,
        on_progress: ProgressFn | None = None,
    ) -> list[RawPost]: ...


class SourceUnavailable(BadInput):
    """The service could not be reached or failed; trying again later may work."""


def check_limit(limit: int | None, default: int | None, maximum: int | None = None) -> int | None:
    if limit is None:
        limit = default
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise BadInput(f"limit must be a whole number of posts, 1 or more (got {limit!r})")
        if maximum is not None:
            limit = min(limit, maximum)
    return limit


def need_file(file: Path | str | None, source: str) -> Path:
    if file is None:
        raise BadInput(f"the {source} source reads a file: give one (an uploaded attachment or --file PATH)")
    path = Path(file)
    if not path.exists():
        raise BadInput(f"file not found: {path}")
    if not path.is_file():
        raise BadInput(f"{path} is not a file")
    return path


def need_handle(handle: str | None, source: str, example: str) -> str:
    if handle is None or not str(handle).strip():
        raise BadInput(f"the {source} source needs an account handle (for example: {example})")
    return str(handle).strip()


def report(on_progress: ProgressFn | None, count: int) -> None:
    if on_progress is not None:
        on_progress(count)


def sleep_until(reset_epoch: float | None, *, sleep: SleepFn, clock: ClockFn,
                fallback: float, max_wait: float) -> float:
    """Sleep until ``reset_epoch`` (+1 s), or ``fallback`` seconds when unknown."""
    if reset_epoch is None:
        wait = fallback
    else:
        wait = reset_epoch - clock() + 1
    wait = max(0.0, min(float(wait), max_wait))
    if wait > 0:
        sleep(wait)
    return wait


def iso(value: object) -> str | None:
    """A datetime (or an ISO string) as ISO 8601, None stays None."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.isoformat()
    return str(value)

