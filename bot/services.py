"""What the slash commands and the admin CLI both call: one place for each action."""
from __future__ import annotations

import asyncio
import time

from core import __version__, contract
from bot.store import Store

HEARTBEAT_FRESH_S = 20  # the worker beats every 5 s


_queue_reads: dict[int, asyncio.Future] = {}


async def _queue_state(queue) -> tuple[dict | None, int]:
    """(the worker's last heartbeat, jobs waiting). Callers that ask while a
    read is under way share it: forty members typing /status at once cost one
    trip to a thread, and no answer is older than the question."""
    key = id(queue)
    read = _queue_reads.get(key)
    if read is None:
        read = asyncio.ensure_future(asyncio.to_thread(lambda: (contract.last_heartbeat(queue), len(queue))))
        _queue_reads[key] = read
        read.add_done_callback(lambda _: _queue_reads.pop(key, None))
    return await asyncio.shield(read)


async def status(store: Store, queue, started_at: float) -> dict:
    """Bot version, uptime, database and worker state as far as the bot knows."""
    db_ok, schema = await store.health()
    beat, waiting = await _queue_state(queue)
    if beat is None:
        worker = {"state": "not seen", "detail": "no worker has reported yet (start one with `parodybot worker`)"}
    else:
        age = time.time() - beat["at"]
        state = "online" if age < HEARTBEAT_FRESH_S else "offline"
        worker = {"state": state, "last_seen_s": round(age, 1), "busy": beat.get("busy", [])}
    return {
        "version": __version__,
        "uptime_s": round(time.time() - started_at, 1),
        "database": {"ok": db_ok, "schema_version": schema},
        "worker": worker,
        "queue": {"waiting": waiting},
    }
