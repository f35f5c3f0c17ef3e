"""The outbox: appends each post as one JSON line to ``<data_dir>/outbox.jsonl``.

The default target and the dry run. Each record::

    {"platform": "outbox", "id": "<uuid4>", "text": "...", "posted_at": "2025-01-01T09:00:00+00:00"}

plus ``"persona"`` when the target names one. Each line is written with one
``write`` on a file opened for appending, then flushed and fsynced before
``publish`` returns.
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import json
import os
import threading
import uuid
from pathlib import Path

from .base import PostResult, PublishError

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    key = os.path.abspath(path)
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


class OutboxPublisher:
    platform = "outbox"

    def __init__(self, data_dir: Path | str, *, filename: str = "outbox.jsonl", persona: str | None = None,
                 guild_id: int | None = None):
        self.path = Path(data_dir) / filename
        self.persona = persona
        self.guild_id = guild_id  # two servers may each have a persona of that name

    def __repr__(self) -> str:
        return f"OutboxPublisher(path={str(self.path)!r})"

    async def publish(self, text: str) -> PostResult:
        post_id = str(uuid.uuid4())
        record: dict[str, str | int] = {
            "platform": "outbox",
            "id": post_id,
            "text": text,
            "posted_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        }
        if self.persona:
            record["persona"] = self.persona
        if self.guild_id:
            record["guild_id"] = self.guild_id
        line = json.dumps(record, ensure_ascii=False) + "\n"
        try:
            await asyncio.to_thread(self._append, line)
        except OSError as exc:
            raise PublishError(f"outbox: cannot write {self.path}: {exc.strerror or exc}", platform="outbox") from None
        return PostResult(platform="outbox", remote_id=post_id, url=f"outbox://{post_id}")

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _lock_for(self.path):
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
