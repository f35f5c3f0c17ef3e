"""Jobs the bot hands to the worker: submit, follow, cancel.

The bot's jobs table is what the bot follows; the queue carries the work,
its progress and its result. Following a job is a poll of the job's progress
record in the queue, so a restarted bot simply polls again.
"""
from __future__ import annotations

import asyncio
import base64
from typing import Any

from core import contract, taskqueue
from core.clock import iso, utcnow
from bot.store import Store

def now_iso() -> str:
    return iso(utcnow())



MAX_FOR_VOTES = 200  # candidates one /generate puts up for a vote
MAX_TO_FILE = 1000  # the seed's "1,000 at a time to a text file"

class JobService:
    def __init__(self, store: Store, queue):
        self.store = store
        self.queue = queue

    async def submit(self, kind: str, persona: dict, params: dict, build, *, requested_by: int | None = None,
                     channel_id: int | None = None) -> dict:
        """Record the job, then queue ``build(job_id)`` (its typed request). What
        the request carries beyond ``params`` (an attachment) is not kept here."""
        job_id = await self.store.create_job(kind, persona["key"], persona["guild_id"], params, requested_by, channel_id)
        request = build(job_id)
        try:
            queue_id = await asyncio.to_thread(taskqueue.enqueue, self.queue, contract.KIND_TASK[kind], request.to_json())
        except Exception as exc:
            await self.store.update_job(job_id, state=contract.FAILED, error=f"could not queue: {exc}",
                                        finished_at=now_iso())
            raise
        await self.store.update_job(job_id, queue_id=queue_id)
        return await self.store.get_job(job_id)

    async def train(self, persona: dict, *, source: str | None, handle: str | None, steps: int, model: str,
                    file: tuple[str, bytes] | None = None, clean: contract.CleanSpec | None = None,
                    limit: int | None = None, more_steps: int | None = None, start_from: dict | None = None,
                    early_stop: int | None = None, sample_every: int | None = None,
                    requested_by: int | None = None, channel_id: int | None = None) -> dict:
        """Import (the posts are added to the persona's dataset) and finetune. The persona's
        ``exclude`` pattern (its settings) leaves matching source posts out. ``more_steps``
        continues its working checkpoint; ``start_from`` (a persona) begins from that one's."""
        clean = clean or contract.CleanSpec()
        exclude = (persona.get("settings") or {}).get("exclude")
        params = {"source": source, "handle": handle, "steps": steps, "model": model, "limit": limit,
                  "strip_mentions": clean.strip_mentions, "strip_hashtags": clean.strip_hashtags,
                  "more_steps": more_steps, "start_from": start_from["name"] if start_from else None,
                  "early_stop": early_stop, "sample_every": sample_every}
        file_name, data = file if file else (None, None)
        return await self.submit("train", persona, params, lambda job_id: contract.TrainRequest(
            job_id=job_id, persona=persona["key"], steps=steps, model=model, source=source, handle=handle,
            file_b64=base64.b64encode(data).decode("ascii") if data is not None else None, file_name=file_name,
            clean=clean, limit=limit, exclude=exclude, more_steps=more_steps, early_stop=early_stop,
            sample_every=sample_every,
            start_from=start_from["key"] if start_from else None,
        ), requested_by=requested_by, channel_id=channel_id)

    async def generate(self, persona: dict, *, count: int, temperature: float, top_p: float, platforms: list[str],
                       blocklist: list[str], top_k: int = 0, length: int | None = None, prompt: str = "",
                       seed: int | None = None, mentions: str = "defuse", to_file: bool = False,
                       requested_by: int | None = None, channel_id: int | None = None) -> dict:
        """``to_file``: the candidates come back as a text file, not for votes (up to
        MAX_TO_FILE; a vote takes at most MAX_FOR_VOTES at once)."""
        limit = MAX_TO_FILE if to_file else MAX_FOR_VOTES
        if not 1 <= count <= limit:
            raise contract.BadInput(f"count must be from 1 to {limit}" + (
                "" if to_file else f": for more at once (up to {MAX_TO_FILE}), use `to_file: True`"))
        params = {"count": count, "temperature": temperature, "top_p": top_p, "top_k": top_k, "length": length,
                  "prompt": prompt, "seed": seed, "platforms": platforms, "to_file": to_file}
        # Posts already up for a vote are filtered out as duplicates; a file of samples need not be.
        earlier = [] if to_file else await self.store.recent_texts(persona["key"])
        return await self.submit("generate", persona, params, lambda job_id: contract.GenerateRequest(
            job_id=job_id, persona=persona["key"], count=count, temperature=temperature, top_p=top_p,
            length=length, platforms=list(platforms), blocklist=list(blocklist), earlier_candidates=earlier,
            prompt=prompt, top_k=top_k, seed=seed, mentions=mentions,
        ), requested_by=requested_by, channel_id=channel_id)

    async def check(self, persona: dict, *, action: str, texts: list[str], platforms: list[str],
                    blocklist: list[str], mentions: str, candidate_id: int | None = None, approve: bool = False,
                    requested_by: int | None = None, channel_id: int | None = None) -> dict:
        """Hand-written texts through the generation filters on the worker (the copy checks
        need the real posts); ``action`` (edit, add, import) is carried out when it is done."""
        params = {"action": action, "texts": texts, "candidate_id": candidate_id, "approve": approve}
        earlier = await self.store.recent_texts(persona["key"])
        return await self.submit("check", persona, params, lambda job_id: contract.CheckRequest(
            job_id=job_id, persona=persona["key"], texts=list(texts), platforms=list(platforms),
            blocklist=list(blocklist), mentions=mentions, earlier_candidates=earlier,
        ), requested_by=requested_by, channel_id=channel_id)

    async def get(self, guild_id: int, job_id: int) -> dict:
        job = await self.store.get_job(job_id, guild_id)
        if job is None:
            raise contract.BadInput(f"there is no job #{job_id} on this server (see /jobs)")
        return job

    async def list(self, guild_id: int, *, active_only: bool = False, limit: int = 15) -> list[dict]:
        return await self.store.list_jobs(guild_id=guild_id, active_only=active_only, limit=limit)

    async def cancel(self, guild_id: int, job_id: int) -> dict:
        job = await self.get(guild_id, job_id)
        if job["state"] in contract.FINAL_STATES:
            raise contract.BadInput(f"job #{job_id} already ended ({job['state']})")
        await asyncio.to_thread(taskqueue.request_cancel, self.queue, job["queue_id"])
        if job["state"] == contract.QUEUED:
            # It never started: revoked in the queue, so it is over now.
            await self.store.update_job(job_id, state=contract.CANCELLED, finished_at=now_iso())
        return await self.store.get_job(job_id)

    async def set_message(self, job_id: int, message_id: int) -> None:
        await self.store.update_job(job_id, message_id=message_id)

    async def mark_delivered(self, job_id: int) -> None:
        await self.store.update_job(job_id, delivered=1)

    async def followed(self) -> list[dict]:
        """Every guild's jobs still waiting or running (the tracker follows them all)."""
        return await self.store.list_jobs(active_only=True, limit=100)

    async def to_deliver(self) -> list[dict]:
        return await self.store.jobs_to_deliver()

    async def refresh_all(self, jobs: list[dict]) -> list[tuple[dict, bool]]:
        """Pull the followed jobs' progress from the queue into the store; [(job, changed)].

        All the records in one trip to a thread: the tracker runs every second,
        and one trip per job would queue behind members' slash commands."""
        followed = [j for j in jobs if j["state"] not in contract.FINAL_STATES and j["queue_id"]]
        records = await asyncio.to_thread(
            lambda: [taskqueue.read_progress(self.queue, j["queue_id"]) for j in followed])
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
