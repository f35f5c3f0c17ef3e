"""Many workers on one queue: leases, the shared artifact store, and a worker that dies.

Real parts only: Huey's own storage for leases (SQLite here, Redis in the
two-worker test), a real S3-compatible server on loopback for the artifact
store, and real `parodybot worker` processes training the tiny model.
"""
from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from core import contract, fleet, taskqueue
from core.config import config_from
from conftest import REPO, WorkerProcess
from workers.artifacts import STAMP, S3Artifacts

CORPUS = REPO / "core" / "data" / "demo_corpus.csv"


# --- leases ------------------------------------------------------------------


@pytest.fixture
def queue(tmp_path):
    return taskqueue.open_queue(f"sqlite:///{tmp_path / 'queue.sqlite3'}")


def test_a_live_lease_keeps_a_job_on_its_worker(queue):
    lease = fleet.take(queue, "job-1", "gpu-a", contract.TRAIN, {"persona": "dril"}, 60)
    with pytest.raises(fleet.RunningElsewhere, match="gpu-a"):
        fleet.take(queue, "job-1", "gpu-b", contract.TRAIN, {"persona": "dril"}, 60)
    assert fleet.renew(queue, lease)
    assert fleet.lapsed(queue) == []


def test_a_lapsed_lease_is_queued_again_once_and_its_old_worker_learns_it_lost_the_job(queue):
    old = fleet.take(queue, "job-1", "gpu-a", contract.TRAIN, {"persona": "dril"}, seconds=-1)  # gone at once
    (lapsed,) = fleet.lapsed(queue)
    assert (lapsed["job"], lapsed["worker"], lapsed["task"], lapsed["payload"]) == ("job-1", "gpu-a", "train",
                                                                                  {"persona": "dril"})
    assert fleet.lapsed(queue) == []  # a second worker looking at the same moment does not queue it twice
    new = fleet.take(queue, "job-1", "gpu-b", contract.TRAIN, {"persona": "dril"}, 60)
    assert new.epoch == old.epoch + 1
    assert not fleet.renew(queue, old)  # gpu-a was only slow: it must stop its copy
    assert fleet.renew(queue, new)
    fleet.release(queue, new)
    assert fleet.lapsed(queue) == []


def test_a_job_whose_process_died_on_this_folder_is_queued_again_at_once(queue):
    fleet.take(queue, "job-1", "gpu-a", contract.TRAIN, {}, 60)
    assert fleet.abandon(queue, "job-1", "gpu-a")  # its run marker's lock is free: gpu-a is dead
    assert not fleet.abandon(queue, "job-1", "gpu-a")  # ...and queued once
    assert fleet.lapsed(queue) == []
    fleet.take(queue, "job-2", "gpu-b", contract.TRAIN, {}, 60)
    assert not fleet.abandon(queue, "job-2", "gpu-a")  # another live worker holds that one


# --- the artifact store --------------------------------------------------------


def _store(root: Path, s3) -> S3Artifacts:
    return S3Artifacts(root, f"s3://{s3.bucket}/team", endpoint_url=s3.endpoint_url)


def test_workers_share_datasets_and_checkpoints_through_s3(tmp_path, s3_server):
    a, b = _store(tmp_path / "a", s3_server), _store(tmp_path / "b", s3_server)
    data = tmp_path / "a" / "datasets" / "g1-dril"
    (data / "split").mkdir(parents=True)
    (data / "dataset.csv").write_text("tweets\nhello\n")
    (data / "split" / "val.csv").write_text("tweets\nval\n")
    a.publish("datasets", "g1-dril")
    assert s3_server.keys() == ["team/datasets/g1-dril.tar"]

    assert b.fetch("datasets", "g1-dril")
    fetched = tmp_path / "b" / "datasets" / "g1-dril"
    assert (fetched / "dataset.csv").read_text() == "tweets\nhello\n"
    assert (fetched / "split" / "val.csv").read_text() == "tweets\nval\n"
    inode = fetched.stat().st_ino
    assert b.fetch("datasets", "g1-dril") and fetched.stat().st_ino == inode  # unchanged: not fetched again

    (data / "dataset.csv").write_text("tweets\nhello\nmore\n")
    a.publish("datasets", "g1-dril")
    assert b.fetch("datasets", "g1-dril")
    assert (fetched / "dataset.csv").read_text() == "tweets\nhello\nmore\n"
    assert not b.fetch("checkpoint", "g1-nobody")  # nothing there: said so, nothing made up


def test_a_run_travels_as_its_last_complete_save_with_paths_for_the_machine_that_fetches_it(tmp_path, s3_server):
    a, b = _store(tmp_path / "a", s3_server), _store(tmp_path / "b", s3_server)
    run = tmp_path / "a" / "checkpoint" / "g1-dril.run"
    run.mkdir(parents=True)
    for name in ("model-5.index", "model-5.data-00000-of-00001", "model-10.index", "model-10.data-00000-of-00001",
                 "hparams.json", "counter", "run.json"):
        (run / name).write_text(name)
    (run / "checkpoint").write_text(f'model_checkpoint_path: "{run}/model-10"\n'
                                    f'all_model_checkpoint_paths: "{run}/model-10"\n')
    a.publish("runs", "g1-dril")
    assert b.fetch("runs", "g1-dril")
    got = tmp_path / "b" / "checkpoint" / "g1-dril.run"
    assert sorted(p.name for p in got.iterdir()) == sorted(
        ["checkpoint", "counter", "hparams.json", "model-10.data-00000-of-00001", "model-10.index", "run.json", STAMP])
    assert (got / "checkpoint").read_text() == ('model_checkpoint_path: "model-10"\n'
                                                'all_model_checkpoint_paths: "model-10"\n')


def test_an_artifact_store_that_refuses_says_what_to_check(tmp_path, s3_server, monkeypatch):
    store = S3Artifacts(tmp_path, "s3://no-such-bucket/team", endpoint_url=s3_server.endpoint_url)
    (tmp_path / "datasets" / "g1-dril").mkdir(parents=True)
    (tmp_path / "datasets" / "g1-dril" / "dataset.csv").write_text("tweets\nx\n")
    with pytest.raises(Exception, match=r"artifact store refused to upload .*NoSuchBucket.*\[artifacts\]"):
        store.publish("datasets", "g1-dril")


def test_the_config_refuses_an_artifact_url_that_is_not_s3():
    with pytest.raises(Exception, match="s3://BUCKET"):
        config_from({"artifacts": {"url": "https://example.com/bucket"}})


# --- two workers, one dies mid-training -------------------------------------------


def _worker_config(path: Path, redis_url: str, s3, worker_id: str) -> Path:
    path.write_text(f"""
[queue]
url = "{redis_url}"
[artifacts]
url = "s3://{s3.bucket}/team"
endpoint_url = "{s3.endpoint_url}"
[worker]
id = "{worker_id}"
lease_seconds = 3
[training]
validation_fraction = 0
""")
    return path


async def _until_final(queue, task_id: str, workers: list[WorkerProcess], timeout: float = 240) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        record = taskqueue.read_progress(queue, task_id)
        if record and record.get("state") in contract.FINAL_STATES:
            return record
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {task_id} did not end: {record}\n" + "\n".join(w.output()[-3000:] for w in workers))


async def _until(predicate, what: str, workers: list[WorkerProcess], timeout: float = 120):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} did not happen\n" + "\n".join(w.output()[-3000:] for w in workers))


def _import(queue, persona: str) -> str:
    payload = contract.ImportRequest(job_id=1, persona=persona, source="csv", file_name="jokes.csv",
                                     file_b64=base64.b64encode(CORPUS.read_bytes()).decode()).to_json()
    return taskqueue.enqueue(queue, contract.IMPORT, payload)


@pytest.mark.timeout(480)
async def test_a_job_whose_worker_dies_mid_training_is_finished_by_another_from_its_checkpoint(
        tmp_path, redis_url, s3_server):
    queue = taskqueue.open_queue(redis_url)
    persona = contract.persona_key(1, "jokes")
    # gpu-a dies right after its first save reached the store (fault injection: no timer).
    gpu_a = WorkerProcess(tmp_path / "a", _worker_config(tmp_path / "a.toml", redis_url, s3_server, "gpu-a"),
                          name="gpu-a", env={"PARODYBOT_FAULT": "run-published"}).start()
    gpu_b = WorkerProcess(tmp_path / "b", _worker_config(tmp_path / "b.toml", redis_url, s3_server, "gpu-b"),
                          name="gpu-b")
    workers = [gpu_a, gpu_b]
    try:
        record = await _until_final(queue, _import(queue, persona), workers)
        assert record["worker"] == "gpu-a" and record["state"] == contract.DONE
        train = taskqueue.enqueue(queue, contract.TRAIN, contract.TrainRequest(
            job_id=2, persona=persona, steps=30, model="tiny", save_every=5).to_json())
        await _until(lambda: (taskqueue.read_progress(queue, train) or {}).get("worker") == "gpu-a",
                     "gpu-a taking the training", workers)

        gpu_b.start()  # gpu-a is busy: the next job goes to gpu-b
        other = taskqueue.enqueue(queue, contract.IMPORT, contract.ImportRequest(
            job_id=3, persona=contract.persona_key(1, "other"), source="csv", file_name="jokes.csv",
            file_b64=base64.b64encode(CORPUS.read_bytes()).decode()).to_json())
        record = await _until_final(queue, other, workers)
        assert record["worker"] == "gpu-b" and record["state"] == contract.DONE

        assert gpu_a.proc.wait(120) == -9  # gone, mid-training, with its training child
        record = await _until_final(queue, train, workers)
        assert record["state"] == contract.DONE, record
        assert record["worker"] == "gpu-b"
        result = record["result"]
        assert result["steps_done"] == 30
        assert result["resumed_from"] and result["resumed_from"] % 5 == 0  # gpu-a's save, fetched from the store
        assert [step for step, *_ in result["losses"]][:3] == [1, 2, 3]  # the history made on gpu-a goes on
        assert "team/checkpoint/g1-jokes.tar" in s3_server.keys()
        assert "team/runs/g1-jokes.tar" not in s3_server.keys()  # the finished run left no half-way copy

        gpu_b.stop()
        # A worker that never saw this persona generates from the store's checkpoint.
        gpu_c = WorkerProcess(tmp_path / "c", _worker_config(tmp_path / "c.toml", redis_url, s3_server, "gpu-c"),
                              name="gpu-c").start()
        workers.append(gpu_c)
        generate = taskqueue.enqueue(queue, contract.GENERATE, contract.GenerateRequest(
            job_id=4, persona=persona, count=2, temperature=1.0, top_p=0.9, length=20).to_json())
        record = await _until_final(queue, generate, workers)
        assert record["state"] == contract.DONE and record["worker"] == "gpu-c", record
        registry = {w["id"]: w for w in fleet.workers(queue, fresh_s=30)}
        assert registry["gpu-c"]["online"] and registry["gpu-b"]["stopped"] and set(registry) == {"gpu-a", "gpu-b", "gpu-c"}
    finally:
        for w in workers:
            w.stop()


def test_the_job_message_says_which_worker_runs_it_and_when_it_was_queued_again():
    from cogs.jobs import render_job

    job = {"id": 7, "kind": "train", "persona": contract.persona_key(1, "dril"), "state": "running"}
    running = render_job(dict(job, progress={"state": "running", "phase": "finetuning", "worker": "gpu-a",
                                             "step": 10, "steps": 100, "loss": 3.0}))
    assert "🖥️ on worker `gpu-a`" in running
    requeued = render_job(dict(job, progress={"state": "running", "phase": "requeued", "worker": "gpu-a",
                                              "lost_worker": "gpu-a", "step": 10, "steps": 100, "loss": 3.0}))
    assert "worker `gpu-a` stopped answering: queued again for the next free worker" in requeued
    assert "on worker" not in requeued
    resumed = render_job(dict(job, progress={"state": "running", "phase": "finetuning", "worker": "gpu-b",
                                             "resumed_from": 10, "step": 12, "steps": 100, "loss": 3.0}))
    assert "resumed from its checkpoint at step 10" in resumed and "on worker `gpu-b`" in resumed
