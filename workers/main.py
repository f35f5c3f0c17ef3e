"""`parodybot worker`: a Huey consumer running the worker's tasks.

The worker needs nothing but the queue: it never opens the bot's database.
A job that was running when the worker died is found at the next start (its
marker is still in <worker_dir>/runs/) and queued again under the same id;
training then resumes from its last checkpoint.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

from core import contract
from core.config import Config
from core.logs import setup_logging
from workers import run_markers

log = logging.getLogger("parodybot.worker")

HEARTBEAT_S = 5


def runs_dir(cfg: Config) -> Path:
    path = cfg.worker_dir / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def requeue_interrupted(huey, cfg: Config) -> list[str]:
    """Queue again the jobs whose run markers survived their worker (never one that a
    live worker on this folder is running)."""
    requeued = []
    for marker in sorted(runs_dir(cfg).glob("*.json")):
        try:
            record = run_markers.abandoned(marker)
        except (OSError, ValueError):
            log.warning("ignoring unreadable run marker %s", marker.name)
            continue
        if record is None:
            log.info("job %s is running in another live worker; leaving it there", marker.stem)
            continue
        contract.enqueue(huey, record["task"], dict(record["payload"], resumed=True), task_id=record["id"])
        requeued.append(record["id"])
        log.info("re-queued interrupted %s job %s", record["task"], record["id"])
    return requeued


def watch_parent() -> None:
    """An embedded worker (``PARODYBOT_PARENT_PID`` set by `parodybot run`) ends
    when its parent is gone, even where the kernel does not signal it."""
    parent = os.environ.get("PARODYBOT_PARENT_PID")
    if not parent or not parent.isdigit():
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(1.0)
        log.warning("the bot that started this worker is gone; stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_worker(cfg: Config) -> None:
    setup_logging(cfg.log_level)
    watch_parent()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from workers.tasks import Tasks

    tasks = Tasks(cfg)
    huey = contract.open_queue(cfg.queue_url, tasks.handlers())
    tasks.huey = huey
    requeue_interrupted(huey, cfg)

    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.is_set():
            try:
                contract.beat(huey, {"pid": os.getpid(), "busy": tasks.busy()})
            except Exception:  # the queue may be briefly unavailable (Redis restart)
                log.exception("heartbeat failed")
            stop.wait(HEARTBEAT_S)

    threading.Thread(target=heartbeat, name="heartbeat", daemon=True).start()
    consumer = huey.create_consumer(workers=cfg.worker.concurrency, worker_type="thread", periodic=False)
    log.info("worker ready: queue %s, data %s", _safe_url(cfg.queue_url), cfg.worker_dir)
    try:
        consumer.run()
    finally:
        stop.set()


def _safe_url(url: str) -> str:
    # redis://:password@host -> redis://***@host
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
