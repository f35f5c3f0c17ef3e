"""The worker's task handlers: what runs when the bot queues train / generate / import.

Each handler gets a JSON payload and the queue's task id, reports progress
through the queue (contract.put_progress) and returns a JSON result. While a
job runs, a marker in <worker_dir>/runs/ lets a restarted worker queue it again.
"""
from __future__ import annotations

import base64
import json
import logging
import tempfile
import threading
import time
from pathlib import Path

from core import contract
from core.config import Config
from core.logs import redact

log = logging.getLogger("parodybot.worker")

PROGRESS_MIN_INTERVAL_S = 0.5


class Progress:
    """The job's progress record, written through the queue at most twice a second."""

    def __init__(self, huey, task_id: str, kind: str, persona: str):
        self.huey, self.task_id = huey, task_id
        self.record: dict = {"state": contract.RUNNING, "kind": kind, "persona": persona, "phase": "starting"}
        self.last_put = 0.0

    def update(self, force: bool = False, **fields) -> None:
        self.record.update(fields)
        now = time.monotonic()
        if force or now - self.last_put >= PROGRESS_MIN_INTERVAL_S:
            contract.put_progress(self.huey, self.task_id, self.record)
            self.last_put = now

    def training_event(self, event: dict) -> None:
        if event.get("phase") == "finetuning" and "loss" in event:
            losses = self.record.setdefault("losses", [])
            losses.append([event["step"], event["loss"], event.get("avg_loss", event["loss"])])
        self.update(**{k: v for k, v in event.items() if k != "losses"})


class Tasks:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.worker_dir = cfg.worker_dir
        self.huey = None  # set once the queue is open
        self._busy: dict[str, str] = {}
        self._lock = threading.Lock()
        self._generation = None

    def handlers(self) -> dict:
        return {
            contract.TRAIN: self._wrap(contract.TRAIN, self.train),
            contract.GENERATE: self._wrap(contract.GENERATE, self.generate),
            contract.IMPORT: self._wrap(contract.IMPORT, self.import_dataset),
        }

    def busy(self) -> list[str]:
        with self._lock:
            return [f"{kind} {persona}" for kind, persona in self._busy.values()]

    def _wrap(self, kind: str, fn):
        def run(payload: dict, task_id: str) -> dict:
            persona = contract.check_persona_name(payload.get("persona", ""))
            marker = self.worker_dir / "runs" / f"{task_id}.json"
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps({"id": task_id, "task": kind, "payload": payload}), encoding="utf-8")
            with self._lock:
                self._busy[task_id] = (kind, persona)
            progress = Progress(self.huey, task_id, kind, persona)
            progress.update(force=True, resumed=bool(payload.get("resumed")))
            try:
                result = fn(payload, task_id, progress)
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
                marker.unlink(missing_ok=True)
            state = result.get("state", contract.DONE)
            progress.update(force=True, state=state, phase=state, result=result)
            return dict(result, state=state)

        return run

    # --- import ------------------------------------------------------------

    def _import(self, payload: dict, progress: Progress) -> dict:
        from workers.cleaning import CleanOptions
        from workers.datasets import import_dataset

        options = CleanOptions(**payload.get("clean", {}))
        file_path = None
        tmp = None
        if payload.get("file_b64"):
            # An attachment the bot fetched from Discord: it travels in the payload.
            tmp = tempfile.TemporaryDirectory(dir=self.worker_dir)
            name = Path(payload.get("file_name") or "upload").name
            file_path = Path(tmp.name) / name
            file_path.write_bytes(base64.b64decode(payload["file_b64"]))
        try:
            progress.update(force=True, phase="fetching", fetched=0)
            summary = import_dataset(
                self.worker_dir, payload["persona"], payload["source"],
                file=file_path, handle=payload.get("handle"), base_url=payload.get("base_url"),
                options=options, on_progress=lambda n: progress.update(phase="fetching", fetched=n),
            )
        finally:
            if tmp:
                tmp.cleanup()
        progress.update(force=True, phase="cleaned", kept=summary["kept"], dropped=summary["dropped"])
        return summary

    def import_dataset(self, payload: dict, task_id: str, progress: Progress) -> dict:
        return {"dataset": self._import(payload, progress)}

    # --- train -------------------------------------------------------------

    def train(self, payload: dict, task_id: str, progress: Progress) -> dict:
        from workers.finetune import run_training

        dataset = None
        if payload.get("source") and not payload.get("resumed"):
            dataset = self._import(payload, progress)
        progress.update(force=True, phase="loading")
        result = run_training(
            self.worker_dir, payload["persona"],
            steps=int(payload.get("steps") or self.cfg.training.steps),
            model=payload.get("model") or self.cfg.worker.default_model,
            learning_rate=payload.get("learning_rate") or self.cfg.training.learning_rate,
            save_every=int(payload.get("save_every") or self.cfg.training.save_every),
            job_id=task_id,
            on_event=progress.training_event,
            should_cancel=lambda: contract.cancel_requested(self.huey, task_id),
        )
        if dataset:
            result["dataset"] = dataset
        return result

    # --- generate ----------------------------------------------------------

    def generation(self):
        if self._generation is None:
            from workers.generation import GenerationService

            self._generation = GenerationService(self.worker_dir, max_loaded=self.cfg.worker.loaded_models)
        return self._generation

    def generate(self, payload: dict, task_id: str, progress: Progress) -> dict:
        progress.update(force=True, phase="generating")
        gen = self.cfg.generation
        return self.generation().generate(
            payload["persona"],
            int(payload.get("count") or gen.count),
            temperature=float(payload.get("temperature") or gen.temperature),
            top_p=float(payload.get("top_p") or gen.top_p),
            length=int(payload.get("length") or gen.length),
            platforms=tuple(payload.get("platforms") or ("x",)),
            blocklist=tuple(payload.get("blocklist") or gen.blocklist),
            earlier_candidates=tuple(payload.get("earlier_candidates") or ()),
        )
