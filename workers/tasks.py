"""The worker's task handlers: what runs when the bot queues train / generate / import.

Each handler gets a JSON payload and the queue's task id, reports progress
through the queue (taskqueue.put_progress) and returns a JSON result. While a
job runs, this worker holds its lease (core/fleet.py), and a marker in
<worker_dir>/runs/ lets a worker restarted on this folder queue it again at
once (workers/run_markers.py: only when the process that ran it is gone).
Datasets and checkpoints come from and go to the artifact store
(workers/artifacts.py), so any worker can take any job.
"""
from __future__ import annotations

import base64
import logging
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from core import contract, faults, fleet, taskqueue
from core.config import Config
from core.logs import redact
from workers import run_markers
from workers.artifacts import Publisher, open_artifacts

log = logging.getLogger("parodybot.worker")

PROGRESS_MIN_INTERVAL_S = 0.5


class Progress:
    """The job's progress record, written through the queue at most twice a second."""

    def __init__(self, huey, task_id: str, kind: str, persona: str, worker: str):
        self.huey, self.task_id = huey, task_id
        self.record: dict = {"state": contract.RUNNING, "kind": kind, "persona": persona, "phase": "starting",
                             "worker": worker}
        self.last_put = 0.0

    def update(self, force: bool = False, **fields) -> None:
        self.record.update(fields)
        now = time.monotonic()
        if force or now - self.last_put >= PROGRESS_MIN_INTERVAL_S:
            taskqueue.put_progress(self.huey, self.task_id, self.record)
            self.last_put = now

    def training_event(self, event: dict) -> None:
        if event.get("phase") == "finetuning" and "loss" in event:
            losses = self.record.setdefault("losses", [])
            losses.append([event["step"], event["loss"], event.get("avg_loss", event["loss"])])
        # A new sample goes out at once (one every sample_every steps): at the next
        # write it could already be the end of the run, and never shown.
        new_sample = event.get("sample_step") not in (None, self.record.get("sample_step"))
        self.update(force=new_sample, **{k: v for k, v in event.items() if k != "losses"})
        if new_sample:
            faults.hold("progress-sample")  # tests: the bot shows this while the job waits


class Tasks:
    def __init__(self, cfg: Config, worker_id: str = "worker"):
        self.cfg = cfg
        self.worker_id = worker_id
        self.worker_dir = cfg.worker_dir
        self.artifacts = open_artifacts(cfg)
        self.huey = None  # set once the queue is open
        self._busy: dict[str, tuple[str, str]] = {}
        self._leases: dict[str, fleet.Lease] = {}
        self._lost: set[str] = set()  # jobs whose lease another worker took over: stop them here
        self._lock = threading.Lock()
        self._generation = None

    def handlers(self) -> dict:
        return {
            contract.TRAIN: self._wrap(contract.TRAIN, self.train),
            contract.GENERATE: self._wrap(contract.GENERATE, self.generate),
            contract.IMPORT: self._wrap(contract.IMPORT, self.import_dataset),
            contract.CHECK: self._wrap(contract.CHECK, self.check_texts),
        }

    def running(self) -> list[dict]:
        with self._lock:
            return [{"job": job, "kind": kind, "persona": persona} for job, (kind, persona) in self._busy.items()]

    def renew_leases(self) -> None:
        with self._lock:
            leases = list(self._leases.values())
        for lease in leases:
            if not fleet.renew(self.huey, lease):
                log.warning("job %s was taken over by another worker (this one was too slow to renew its lease); "
                            "stopping it here", lease.job)
                with self._lock:
                    self._lost.add(lease.job)

    def lost(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self._lost

    def _wrap(self, kind: str, fn):
        def run(payload: dict, task_id: str) -> dict:
            try:
                request = contract.REQUESTS[kind].from_json(payload)
                persona = contract.check_persona_key(request.persona)
            except contract.BadInput as exc:  # nothing to run: say so instead of crashing the consumer
                taskqueue.put_progress(self.huey, task_id, {"state": contract.FAILED, "kind": kind, "error": str(exc)})
                return {"state": contract.FAILED, "error": str(exc)}
            before = taskqueue.read_progress(self.huey, task_id) or {}
            if before.get("state") in contract.FINAL_STATES:  # queued twice; it ran to its end already
                log.warning("%s job %s has ended already (%s); not running it again", kind, task_id, before["state"])
                return {"state": before["state"], "skipped": True}
            marker = self.worker_dir / "runs" / f"{task_id}.json"
            try:
                lease = fleet.take(self.huey, task_id, self.worker_id, kind, payload, self.cfg.worker.lease_seconds)
            except fleet.RunningElsewhere as exc:
                log.warning("%s job %s is running on worker %s; not running it twice", kind, task_id, exc)
                return {"state": contract.RUNNING, "skipped": True}
            with self._lock:
                self._leases[task_id] = lease
            try:
                with run_markers.held(marker, {"id": task_id, "task": kind, "payload": payload,
                                               "worker": self.worker_id}):
                    return self._run(kind, fn, request, persona, task_id)
            except run_markers.RunningElsewhere:
                log.warning("%s job %s is running in another live worker; not running it twice", kind, task_id)
                return {"state": contract.RUNNING, "skipped": True}
            finally:
                with self._lock:
                    self._leases.pop(task_id, None)
                    lost = task_id in self._lost
                    self._lost.discard(task_id)
                if not lost:
                    fleet.release(self.huey, lease)

        return run

    def _run(self, kind: str, fn, request, persona: str, task_id: str) -> dict:
        with self._lock:
            self._busy[task_id] = (kind, persona)
        progress = Progress(self.huey, task_id, kind, persona, self.worker_id)
        progress.update(force=True, resumed=request.resumed)
        try:
            result = fn(request, task_id, progress).to_json()
        except (contract.BadInput, contract.WorkFailed) as exc:
            message = redact(str(exc).split("\n--- last lines")[0])  # the log tail stays in the log
            progress.update(force=True, state=contract.FAILED, error=message)
            return {"state": contract.FAILED, "error": message}
        except Exception as exc:  # reported to the bot; the traceback stays in the worker log
            log.exception("%s job %s failed", kind, task_id)
            message = redact(f"{type(exc).__name__}: {exc}")  # never a secret in Discord
            progress.update(force=True, state=contract.FAILED, error=message)
            return {"state": contract.FAILED, "error": message}
        finally:
            with self._lock:
                self._busy.pop(task_id, None)
        if self.lost(task_id):  # its new worker reports from here on
            return {"state": contract.RUNNING, "skipped": True}
        progress.update(force=True, state=result["state"], phase=result["state"], result=result)
        return result

    # --- check (hand-written texts) ----------------------------------------

    def check_texts(self, request: contract.CheckRequest, task_id: str, progress: Progress) -> contract.CheckResult:
        """The generation filters, as they would judge these texts had the model written them."""
        from workers.filters import END, Blocklist, filter_candidates

        progress.update(force=True, phase="checking")
        self.artifacts.fetch("datasets", request.persona)
        data = self.generation()._dataset(request.persona)
        if data is None:
            raise contract.BadInput(f"{contract.persona_label(request.persona)} has no dataset on this worker to "
                                    "check against: /train it first")
        fates, texts = [], []
        seen = list(request.earlier_candidates)
        for text in request.texts:  # one at a time, so each text gets its own fate
            result = filter_candidates([text + END], training_posts=data.posts, earlier_candidates=seen,
                                       platforms=request.platforms, blocklist=Blocklist(list(request.blocklist)),
                                       near_copy_index=data.index, verbatim_keys=data.verbatim,
                                       mentions=request.mentions)
            fates.append(result.fates[0])
            texts.append(result.candidates[0] if result.candidates else text)
            seen.extend(result.candidates)
        return contract.CheckResult(contract.DONE, fates, texts)

    # --- import ------------------------------------------------------------

    def _import(self, request: contract.ImportRequest, progress: Progress) -> contract.DatasetSummary:
        from workers.datasets import import_dataset

        options = request.clean
        file_path = None
        tmp = None
        if request.file_b64:
            # An attachment the bot fetched from Discord: it travels in the payload.
            tmp = tempfile.TemporaryDirectory(dir=self.worker_dir)
            name = Path(request.file_name or "upload").name
            file_path = Path(tmp.name) / name
            file_path.write_bytes(base64.b64decode(request.file_b64))
        try:
            progress.update(force=True, phase="fetching", fetched=0)
            self.artifacts.fetch("datasets", request.persona)  # new posts merge into what any worker imported
            summary = import_dataset(
                self.worker_dir, request.persona, request.source,
                file=file_path, handle=request.handle, base_url=request.base_url,
                options=options, on_progress=lambda n: progress.update(phase="fetching", fetched=n),
                limit=request.limit, exclude=request.exclude,
            )
        finally:
            if tmp:
                tmp.cleanup()
        self.artifacts.publish("datasets", request.persona)
        progress.update(force=True, phase="cleaned", kept=summary["kept"], dropped=summary["dropped"],
                        added=summary["added"], sources=summary["sources"])
        return contract.DatasetSummary.from_json(summary, strict=False)

    def import_dataset(self, request: contract.ImportRequest, task_id: str, progress: Progress) -> contract.ImportResult:
        return contract.ImportResult(contract.DONE, self._import(request, progress))

    # --- train -------------------------------------------------------------

    def train(self, request: contract.TrainRequest, task_id: str, progress: Progress) -> contract.TrainResult:
        from workers.finetune import run_training

        dataset = None
        if request.source and not request.resumed:
            dataset = self._import(request.import_request(), progress)
        else:
            self.artifacts.fetch("datasets", request.persona)
        progress.update(force=True, phase="loading")
        self.artifacts.fetch("checkpoint", request.persona)
        self.artifacts.fetch("runs", request.persona)  # a run another worker saved: resume it
        start_from = None
        if request.start_from:
            self.artifacts.fetch("checkpoint", request.start_from)
            start_from = self.worker_dir / "checkpoint" / contract.check_persona_key(request.start_from)
            if not (start_from / "checkpoint").is_file():
                raise contract.BadInput(f"{contract.persona_label(request.start_from)} has no trained model on this "
                                        "worker to start from")
        # Each save goes to the artifact store, so another worker can resume the run from it.
        publisher = Publisher(self.artifacts, "runs", request.persona, allowed=lambda: not self.lost(task_id))
        saved = [0]

        def on_event(event: dict) -> None:
            if event.get("saved_step", 0) > saved[0]:
                saved[0] = event["saved_step"]
                publisher.request()
            progress.training_event(event)

        result = run_training(
            self.worker_dir, request.persona,
            steps=request.steps or self.cfg.training.steps,
            model=request.model or self.cfg.worker.default_model,
            learning_rate=request.learning_rate or self.cfg.training.learning_rate,
            save_every=request.save_every or self.cfg.training.save_every,
            job_id=task_id,
            on_event=on_event,
            should_cancel=lambda: self.lost(task_id) or taskqueue.cancel_requested(self.huey, task_id),
            more_steps=request.more_steps, start_from=start_from,
            validation_fraction=self.cfg.training.validation_fraction,
            val_every=self.cfg.training.validation_every or request.save_every or self.cfg.training.save_every,
            val_batch_count=self.cfg.training.validation_batches,
            early_stop_patience=self.cfg.training.early_stop if request.early_stop is None else request.early_stop,
            sample_every=self.cfg.training.sample_every if request.sample_every is None else request.sample_every,
        )
        publisher.request()  # the last save (a cancelled run resumes from it anywhere)
        publisher.finish()
        if result["state"] == contract.DONE and not self.lost(task_id):
            self.artifacts.publish("checkpoint", request.persona)
            self.artifacts.remove("runs", request.persona)
        return replace(contract.TrainResult.from_json(dict(result, dataset=None), strict=False), dataset=dataset)

    # --- generate ----------------------------------------------------------

    def generation(self):
        if self._generation is None:
            from workers.generation import GenerationService

            self._generation = GenerationService(self.worker_dir, max_loaded=self.cfg.worker.loaded_models)
        return self._generation

    def generate(self, request: contract.GenerateRequest, task_id: str, progress: Progress) -> contract.GenerateResult:
        progress.update(force=True, phase="generating")
        self.artifacts.fetch("datasets", request.persona)
        self.artifacts.fetch("checkpoint", request.persona)
        gen = self.cfg.generation
        result = self.generation().generate(
            request.persona,
            request.count or gen.count,
            temperature=request.temperature or gen.temperature,
            top_p=request.top_p or gen.top_p,
            length=request.length or gen.length,
            platforms=tuple(request.platforms or ("x",)),
            blocklist=tuple(request.blocklist or gen.blocklist),
            earlier_candidates=tuple(request.earlier_candidates),
            prompt=request.prompt, top_k=request.top_k, seed=request.seed, mentions=request.mentions,
        )
        return contract.GenerateResult.from_json(dict(result, state=contract.DONE), strict=False)
