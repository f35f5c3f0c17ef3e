"""Jobs the bot hands to the worker: submit, follow, cancel.

The bot's jobs table is what the bot follows; the queue carries the work,
its progress and its result. Following a job is a poll of the job's progress
record in the queue, so a restarted bot simply polls again.
"""
from __future__ import annotations

import asyncio
from typing import Any

from core import contract
from core.clock import iso, utcnow
from bot.store import Store

TASK_FOR_KIND = {"train": contract.TRAIN, "generate": contract.GENERATE, "import": contract.IMPORT}


def now_iso() -> str:
    return iso(utcnow())


class JobService:
    def __init__(self, store: Store, queue):
        self.store = store
        self.queue = queue

    async def submit(self, kind: str, persona: str, params: dict, *, requested_by: int | None = None,
                     channel_id: int | None = None, payload_extra: dict | None = None) -> dict:
        """Record the job, then queue it. `payload_extra` (e.g. an attachment) goes to the
        worker but is not kept in the bot's database."""
        job_id = await self.store.create_job(kind, persona, params, requested_by, channel_id)
        payload = dict(params, persona=persona, job_id=job_id, **(payload_extra or {}))
        try:
            queue_id = await asyncio.to_thread(contract.enqueue, self.queue, TASK_FOR_KIND[kind], payload)
        except Exception as exc:
            await self.store.update_job(job_id, state=contract.FAILED, error=f"could not queue: {exc}",
                                        finished_at=now_iso())
            raise
        await self.store.update_job(job_id, queue_id=queue_id)
        return await self.store.get_job(job_id)

    async def cancel(self, job_id: int) -> dict:
        job = await self.store.get_job(job_id)
        if job is None:
            raise contract.BadInput(f"there is no job #{job_id} (see /jobs)")
        if job["state"] in contract.FINAL_STATES:
            raise contract.BadInput(f"job #{job_id} already ended ({job['state']})")
        await asyncio.to_thread(contract.request_cancel, self.queue, job["queue_id"])
        if job["state"] == contract.QUEUED:
            # It never started: revoked in the queue, so it is over now.
            await self.store.update_job(job_id, state=contract.CANCELLED, finished_at=now_iso())
        return await self.store.get_job(job_id)

    async def refresh_all(self, jobs: list[dict]) -> list[tuple[dict, bool]]:
        """Pull the followed jobs' progress from the queue into the store; [(job, changed)].

        All the records in one trip to a thread: the tracker runs every second,
        and one trip per job would queue behind members' slash commands."""
        followed = [j for j in jobs if j["state"] not in contract.FINAL_STATES and j["queue_id"]]
        records = await asyncio.to_thread(
            lambda: [contract.read_progress(self.queue, j["queue_id"]) for j in followed])
        out = []
        for job, record in zip(followed, records):
            out.append(await self._apply(job, record))
        return out

    async def _apply(self, job: dict, record: Any) -> tuple[dict, bool]:
        if not record or record == job["progress"]:
            return job, False
        fields: dict = {"progress": record}
        state = record.get("state", contract.RUNNING)
        if state != job["state"]:
            fields["state"] = state
            if state == contract.RUNNING and not job["started_at"]:
                fields["started_at"] = now_iso()
            if state in contract.FINAL_STATES:
                fields["finished_at"] = now_iso()
                fields["result"] = record.get("result")
                fields["error"] = record.get("error")
        await self.store.update_job(job["id"], **fields)
        return await self.store.get_job(job["id"]), True
