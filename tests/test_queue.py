"""The task queue: JSON on the wire, and the same API over SQLite and Redis."""
from __future__ import annotations

import asyncio
import json
import pickle
from pathlib import Path

import pytest

from core import contract, fleet, taskqueue
from conftest import WorkerProcess

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "core" / "data" / "demo_corpus.csv"


def test_payloads_travel_as_json(tmp_path):
    huey = taskqueue.open_queue(f"sqlite:///{tmp_path / 'q.sqlite3'}")
    task_id = taskqueue.enqueue(huey, contract.GENERATE, {"persona": "dril", "count": 3})
    raw = huey.storage.dequeue()
    message = json.loads(raw)  # plain JSON text, readable by anyone
    assert message["__message__"][1] == "bot.contract.generate"  # the wire name survives the move to core/
    assert message["__message__"][6] == {"__tuple__": [{"persona": "dril", "count": 3}]}
    assert task_id == message["__message__"][0]


def test_a_pickled_message_is_refused_not_run(tmp_path):
    huey = taskqueue.open_queue(f"sqlite:///{tmp_path / 'q.sqlite3'}")

    class Boom:
        def __reduce__(self):
            return (Path("/tmp/parodybot-pwned").touch, ())

    huey.storage.enqueue(pickle.dumps(Boom()))
    with pytest.raises(Exception):
        huey.dequeue()
    assert not Path("/tmp/parodybot-pwned").exists()


def test_objects_that_are_not_json_cannot_be_queued(tmp_path):
    huey = taskqueue.open_queue(f"sqlite:///{tmp_path / 'q.sqlite3'}")
    with pytest.raises(TypeError, match="payloads are JSON"):
        taskqueue.enqueue(huey, contract.TRAIN, {"persona": "dril", "when": object()})


def test_unknown_queue_url_is_a_clear_error():
    with pytest.raises(contract.BadInput, match="sqlite:///PATH or redis://"):
        taskqueue.open_queue("amqp://localhost")


@pytest.mark.timeout(120)
async def test_a_worker_on_another_machine_takes_jobs_over_redis(tmp_path, redis_url):
    """Bot and worker share nothing but the Redis queue: separate data dirs, separate processes."""
    bot_side = taskqueue.open_queue(redis_url)
    config = tmp_path / "worker.toml"
    config.write_text(f'[queue]\nurl = "{redis_url}"\n')
    worker = WorkerProcess(tmp_path / "gpu-box", config).start()
    try:
        payload = contract.ImportRequest(job_id=1, persona="jokes", source="csv", file_name="jokes.csv",
                                         file_b64=__import__("base64").b64encode(CORPUS.read_bytes()).decode()).to_json()
        task_id = taskqueue.enqueue(bot_side, contract.IMPORT, payload)
        for _ in range(600):
            record = taskqueue.read_progress(bot_side, task_id)
            if record and record.get("state") in contract.FINAL_STATES:
                break
            await asyncio.sleep(0.1)
        assert record["state"] == contract.DONE, (record, worker.output()[-2000:])
        assert record["result"]["dataset"]["kept"] == 283
        (seen,) = fleet.workers(bot_side, fresh_s=30)
        assert seen["online"] and seen["device"] == "CPU" and record["worker"] == seen["id"]
        # The dataset lives on the worker's side only.
        assert (tmp_path / "gpu-box" / "worker" / "datasets" / "jokes" / "dataset.csv").exists()
    finally:
        worker.stop()


def test_a_job_queued_twice_runs_once(tmp_path, monkeypatch):
    """A job queued again after it ended (two workers re-queued it) does not run again."""
    import base64

    from core.config import load_config
    from workers.tasks import Tasks

    monkeypatch.setenv("PARODYBOT_DATA_DIR", str(tmp_path / "data"))
    cfg = load_config(None)
    tasks = Tasks(cfg)
    huey = taskqueue.open_queue(cfg.queue_url, tasks.handlers())
    tasks.huey = huey
    request = contract.ImportRequest(job_id=1, persona="jokes", source="csv", file_name="jokes.csv",
                                     file_b64=base64.b64encode(CORPUS.read_bytes()).decode("ascii"))
    dataset = cfg.worker_dir / "datasets" / "jokes" / "dataset.csv"
    for attempt in range(2):
        taskqueue.enqueue(huey, contract.IMPORT, request.to_json(), task_id="job-1")
        huey.execute(huey.dequeue())
        assert taskqueue.read_progress(huey, "job-1")["state"] == contract.DONE
        if attempt == 0:
            assert dataset.exists()
            dataset.unlink()
    assert not dataset.exists()  # the second copy did not import again
    assert not list((cfg.worker_dir / "runs").glob("*.json"))  # and no marker is left behind
