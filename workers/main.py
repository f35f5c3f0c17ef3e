"""`parodybot worker`: a Huey consumer running the worker's tasks.

The worker needs nothing but the queue and the artifact store: it never opens
the bot's database. Any number of workers can serve one queue (core/fleet.py):
each beats into the registry that /status lists and renews the lease of each
job it runs. A job whose worker is gone is queued again under the same id:
by a live worker once the lease lapses, or at once by a worker restarted on
the same folder (the dead run's marker is still in <worker_dir>/runs/ and its
lock is free); training then resumes from its last checkpoint.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from core import fleet, taskqueue
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
    live worker on this folder is running, nor one another worker queued again already)."""
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
        if not fleet.abandon(huey, record["id"], record.get("worker", "")):
            marker.unlink(missing_ok=True)  # another worker has it now, or it ended
            continue
        taskqueue.enqueue(huey, record["task"], dict(record["payload"], resumed=True), task_id=record["id"])
        requeued.append(record["id"])
        log.info("re-queued interrupted %s job %s", record["task"], record["id"])
    return requeued


def requeue_lapsed(huey) -> list[str]:
    """Queue again the jobs whose worker stopped renewing their lease (on any machine)."""
    requeued = []
    for lease in fleet.lapsed(huey):
        taskqueue.enqueue(huey, lease["task"], dict(lease["payload"], resumed=True), task_id=lease["job"])
        progress = taskqueue.read_progress(huey, lease["job"]) or {}
        taskqueue.put_progress(huey, lease["job"], dict(progress, phase="requeued", lost_worker=lease["worker"]))
        requeued.append(lease["job"])
        log.warning("worker %s stopped renewing job %s; queued it again for any worker", lease["worker"], lease["job"])
    return requeued


def detect_device(cfg: Config) -> str:
    """What /status says this worker runs on: the config's word, the GPUs nvidia-smi
    lists, or CPU (asking TensorFlow would load it into this process for nothing)."""
    if cfg.worker.device:
        return cfg.worker.device
    if shutil.which("nvidia-smi") and os.environ.get("CUDA_VISIBLE_DEVICES", "x") not in ("", "-1"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        names = [line.strip() for line in out.splitlines() if line.strip()]
        if names:
            return f"GPU: {', '.join(names)}"
    return "CPU"


def worker_id(cfg: Config) -> str:
    return cfg.worker.id or f"{socket.gethostname()}-{os.getpid()}"


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

    tasks = Tasks(cfg, worker_id(cfg))
    huey = taskqueue.open_queue(cfg.queue_url, tasks.handlers())
    tasks.huey = huey
    slot = fleet.register(huey)
    me = {"id": tasks.worker_id, "host": socket.gethostname(), "pid": os.getpid(), "device": detect_device(cfg),
          "started": time.time()}
    requeue_interrupted(huey, cfg)

    stop = threading.Event()
    every = min(HEARTBEAT_S, cfg.worker.lease_seconds / 3)  # a lease sees at least two renewals before it lapses

    def heartbeat() -> None:
        while not stop.is_set():
            try:
                tasks.renew_leases()
                fleet.beat(huey, slot, dict(me, running=tasks.running()))
                requeue_lapsed(huey)
            except Exception:  # the queue may be briefly unavailable (Redis restart)
                log.exception("heartbeat failed")
            stop.wait(every)

    threading.Thread(target=heartbeat, name="heartbeat", daemon=True).start()
    consumer = huey.create_consumer(workers=cfg.worker.concurrency, worker_type="thread", periodic=False)
    log.info("worker ready: %s on %s, queue %s, data %s, artifacts %s", tasks.worker_id, me["device"],
             _safe_url(cfg.queue_url), cfg.worker_dir, tasks.artifacts.describe())
    try:
        consumer.run()
    finally:
        stop.set()
        try:
            fleet.sign_off(huey, slot, me)
        except Exception:
            log.warning("could not sign off from the registry")


def _safe_url(url: str) -> str:
    # redis://:password@host -> redis://***@host
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
