"""The bot's services in one place: what the slash commands and the admin CLI
call. ``Services.open(cfg)`` builds them all, so none is ever missing; no
Discord type enters any of them (a second chat frontend can use the same).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bot.candidates import CandidateService
from bot.jobs import JobService
from bot.personas import PersonaService
from bot.posting import PostingService
from bot.scheduler import PostingScheduler
from bot.store import Store
from core import __version__, contract, fleet, taskqueue
from core.clock import iso, utcnow
from core.config import Config

HEARTBEAT_FRESH_S = 20  # workers beat every 5 s


_queue_reads: dict[int, asyncio.Future] = {}


async def _queue_state(queue) -> tuple[list[dict], int]:
    """(the registry's workers, jobs waiting). Callers that ask while a read is
    under way share it: forty members typing /status at once cost one trip to a
    thread, and no answer is older than the question."""
    key = id(queue)
    read = _queue_reads.get(key)
    if read is None:
        read = asyncio.ensure_future(asyncio.to_thread(lambda: (fleet.workers(queue, HEARTBEAT_FRESH_S), len(queue))))
        _queue_reads[key] = read
        read.add_done_callback(lambda _: _queue_reads.pop(key, None))
    return await asyncio.shield(read)


def _running_shown(running: list[dict], guild_id: int | None) -> list[str]:
    """A worker's jobs as one guild may see them: its own by name, the rest only counted."""
    own = f"g{guild_id}-" if guild_id is not None else None
    shown, others = [], 0
    for job in running:
        if own and job.get("persona", "").startswith(own):
            shown.append(f"{job.get('kind', 'job')} {contract.persona_label(job['persona'])}")
        else:
            others += 1
    if others:
        shown.append(f"{others} job(s) of another server" if own else f"{others} job(s)")
    return shown


async def status(store: Store, queue, started_at: float, guild_id: int | None = None) -> dict:
    """Bot version, uptime, database, and every worker the queue has heard from."""
    db_ok, schema = await store.health()
    registry, waiting = await _queue_state(queue)
    workers = [{"id": w.get("id", "?"), "device": w.get("device", "?"), "online": w["online"],
                "stopped": bool(w.get("stopped")), "last_seen_s": w["age_s"],
                "running": _running_shown(w.get("running") or [], guild_id)} for w in registry]
    return {
        "version": __version__,
        "uptime_s": round(time.time() - started_at, 1),
        "database": {"ok": db_ok, "schema_version": schema},
        "workers": workers,
        "queue": {"waiting": waiting},
    }


async def stats(store: Store, personas: list[dict]) -> dict:
    """/stats over the given personas (one guild's, or one of them): candidates
    by state, votes, voters, approval rate of what was decided, the best liked."""
    s = await store.candidate_stats([p["key"] for p in personas])
    by_state = s["candidates"]
    decided = sum(by_state[k] for k in ("approved", "rejected", "expired", "posting", "posted", "failed"))
    liked = sum(by_state[k] for k in ("approved", "posting", "posted", "failed"))
    names = {p["key"]: p["name"] for p in personas}
    return {
        "candidates": by_state,
        "votes": s["votes"], "voters": s["voters"],
        "approval_rate": (liked / decided) if decided else None,
        "top": [{"id": t["id"], "persona": names.get(t["persona"], t["persona"]), "score": t["score"],
                 "text": t["text"]} for t in s["top"]],
    }


@dataclass
class Services:
    cfg: Config
    store: Store
    queue: object            # the Huey queue (core.taskqueue.open_queue)
    personas: PersonaService
    jobs: JobService
    candidates: CandidateService
    posting: PostingService
    scheduler: PostingScheduler
    started_at: float = field(default_factory=time.time)

    @classmethod
    async def open(cls, cfg: Config) -> "Services":
        store = await Store.open(cfg.db_path)
        try:
            queue = await asyncio.to_thread(taskqueue.open_queue, cfg.queue_url)
        except BaseException:
            await store.close()
            raise
        posting = PostingService(store, cfg)
        scheduler = PostingScheduler(store, posting, cfg.posting)
        return cls(cfg, store, queue, PersonaService(store, cfg, scheduler), JobService(store, queue),
                   CandidateService(store), posting, scheduler)

    async def close(self) -> None:
        await self.scheduler.stop()
        await self.store.close()

    async def status(self, guild_id: int | None = None) -> dict:
        """The bot's state, and (for a guild) its personas' publish targets that are held back."""
        report = await status(self.store, self.queue, self.started_at, guild_id)
        if guild_id is not None:
            now = iso(utcnow())
            report["held"] = [{"persona": p["name"], "target": target, "until": h["until"], "why": h["why"]}
                              for p in await self.personas.list(guild_id)
                              for target, h in (p.get("target_holds") or {}).items() if h.get("until", "") > now]
        return report

    async def stats(self, guild_id: int, persona: str | None = None) -> dict:
        chosen = [await self.personas.get(guild_id, persona)] if persona else await self.personas.list(guild_id)
        return await stats(self.store, chosen)
