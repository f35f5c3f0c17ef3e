"""The task queue between the bot and the workers: Huey, with a JSON serializer
so that a queue reachable over a network can never run code.

Progress travels through the queue's key/value storage: the worker writes
``progress:<task id>`` (the latest state plus the loss history) and reads
``cancel:<task id>``; core/fleet.py keeps the workers' registry and leases
there too. Huey loads redis-py, so the bot imports this module only after it
is connected (bot/client.py).
"""
from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path
from typing import Any, Callable

from huey import RedisHuey, SqliteHuey
from huey.api import Huey
from huey.registry import Message
from huey.serializer import Serializer
from huey.utils import Error

from core.contract import TASK_NAMES, WIRE_MODULE, BadInput


# --- JSON serializer -------------------------------------------------------


class JSONSerializer(Serializer):
    """Huey serializer that writes JSON, never pickle.

    Only Huey's own message tuple, datetimes and error records are tagged and
    rebuilt; anything else must already be plain JSON.
    """

    def _serialize(self, data: Any) -> bytes:
        return json.dumps(_encode(data), separators=(",", ":")).encode("utf-8")

    def _deserialize(self, data: bytes) -> Any:
        return _decode(json.loads(data.decode("utf-8")))


def _encode(value: Any) -> Any:
    if isinstance(value, Message):
        return {"__message__": [_encode(v) for v in value]}
    if isinstance(value, _dt.datetime):
        return {"__datetime__": value.isoformat()}
    if isinstance(value, Error):
        return {"__error__": _encode(value.metadata)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot put {type(value).__name__} on the queue: payloads are JSON")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (tag, inner), = value.items()
            if tag == "__message__":
                return Message(*[_decode(v) for v in inner])
            if tag == "__datetime__":
                return _dt.datetime.fromisoformat(inner)
            if tag == "__error__":
                return Error(_decode(inner))
            if tag == "__tuple__":
                return tuple(_decode(v) for v in inner)
        return {k: _decode(v) for k, v in value.items()}
    return value


# --- the queue -------------------------------------------------------------


def open_queue(url: str, handlers: dict[str, Callable[..., Any]] | None = None) -> Huey:
    """Open the task queue.

    ``url`` is ``sqlite:///path/to/queue.sqlite3`` (the embedded default) or
    ``redis://host:port/db`` (workers on other machines). The bot passes no
    handlers and only enqueues; the worker passes the functions that do the
    work, registered under the same names.
    """
    if url.startswith("redis://") or url.startswith("rediss://"):
        huey: Huey = RedisHuey("parodybot", url=url, serializer=JSONSerializer())
    elif url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        huey = SqliteHuey("parodybot", filename=str(path), serializer=JSONSerializer())
    else:
        raise BadInput(f"queue.url {url!r} is not supported: use sqlite:///PATH or redis://HOST:PORT/DB")
    for name in TASK_NAMES:
        _register(huey, name, (handlers or {}).get(name))
    return huey


def _register(huey: Huey, name: str, impl: Callable[..., Any] | None) -> None:
    def task(payload: dict, task=None):  # noqa: ANN001 - Huey injects `task`
        if impl is None:
            raise RuntimeError(f"task {name!r} runs in the worker, not here")
        return impl(payload, task.id)

    task.__name__ = name
    task.__module__ = WIRE_MODULE
    huey.task(name=name, context=True)(task)


def enqueue(huey: Huey, name: str, payload: dict, task_id: str | None = None) -> str:
    """Put a task on the queue and return its id (our job's queue id).

    A worker re-enqueues an interrupted job under its old id so the bot keeps
    following the same job.
    """
    task_class = huey._registry.string_to_task(f"{WIRE_MODULE}.{name}")
    task = task_class(args=(payload,), id=task_id)
    huey.enqueue(task)
    return task.id


# --- progress and cancel (through the queue's storage) -------------


def progress_key(task_id: str) -> str:
    return f"progress:{task_id}"


def cancel_key(task_id: str) -> str:
    return f"cancel:{task_id}"


def put_progress(huey: Huey, task_id: str, event: dict) -> None:
    """Worker side: replace the job's progress record (latest state wins)."""
    huey.put(progress_key(task_id), dict(event, updated=time.time()))


def read_progress(huey: Huey, task_id: str) -> dict | None:
    """Bot side: the job's latest progress record, or None before the first."""
    return huey.get(progress_key(task_id), peek=True)


def request_cancel(huey: Huey, task_id: str) -> None:
    huey.put(cancel_key(task_id), True)
    huey.revoke_by_id(task_id)  # a job still waiting in the queue never starts


def cancel_requested(huey: Huey, task_id: str) -> bool:
    return bool(huey.get(cancel_key(task_id), peek=True))
