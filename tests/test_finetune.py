"""Finetuning with the tiny model on CPU: progress, cancel, crash + resume,
input checks, and the model downloader against local HTTP servers."""
from __future__ import annotations

import csv
import fcntl
import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.contract import BadInput
from workers.finetune import TrainingFailed, recover_checkpoints, run_training, working_checkpoint
from workers.models import MODEL_FILES, ModelUnavailable, download_model, resolve_model
from workers.tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parent.parent
WORDS = ("the a dog cat posting online tonight my brain is full of bees why does nobody "
         "respect the candle industry im not owned im simply walking towards the car").split()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("base") / "tiny")


def write_dataset(worker_dir: Path, persona: str, n_posts: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path = worker_dir / "datasets" / persona / "dataset.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["tweets"])
        for i in range(n_posts):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
            if i % 7 == 0:
                text += "\nsecond line ✨"
            w.writerow([text])
    return path


@pytest.fixture
def worker_dir(tmp_path: Path, tiny_model: Path) -> Path:
    shutil.copytree(tiny_model, tmp_path / "models" / "tiny")
    write_dataset(tmp_path, "dril", 300)
    return tmp_path


class Recorder:
    def __init__(self, cancel_at_step: int | None = None):
        self.events: list[dict] = []
        self.cancel_at_step = cancel_at_step

    def __call__(self, event: dict) -> None:
        self.events.append(event)

    def steps(self) -> list[dict]:
        return [e for e in self.events if e["phase"] == "finetuning" and e.get("loss") is not None]

    def should_cancel(self) -> bool:
        s = self.steps()
        return self.cancel_at_step is not None and bool(s) and s[-1]["step"] >= self.cancel_at_step


def train(worker_dir: Path, rec: Recorder, **kw) -> dict:
    kw.setdefault("steps", 30)
    kw.setdefault("save_every", 10)
    return run_training(worker_dir, "dril", job_id=kw.pop("job_id", "job1"), on_event=rec,
                        should_cancel=rec.should_cancel, progress_interval=0, **kw)


def test_training_run_reports_progress_and_installs_checkpoint(worker_dir: Path):
    rec = Recorder()
    result = train(worker_dir, rec, steps=30, sample_count=3)

    assert rec.events[0]["phase"] == "loading"
    steps = rec.steps()
    assert [e["step"] for e in steps] == list(range(1, 31))
    for e in steps:
        assert e["steps"] == 30 and e["elapsed"] >= 0 and e["avg_loss"] > 0
        assert e["eta"] is not None and e["eta"] >= 0
    first = sum(e["loss"] for e in steps[:3]) / 3
    last = sum(e["loss"] for e in steps[-3:]) / 3
    assert last < first - 1.0, (first, last)  # random init at 3e-3 learns fast
    assert any(e["saved_step"] == 20 for e in steps)
    assert {"sampling", "saving"} <= {e["phase"] for e in rec.events}

    assert result["state"] == "done"
    assert result["steps_done"] == 30 and result["steps"] == 30
    assert result["final_loss"] == steps[-1]["loss"]
    assert [s for s, _, _ in result["losses"]] == list(range(1, 31))
    assert len(result["samples"]) == 3
    for s in result["samples"]:
        assert isinstance(s, str) and "<|startoftext|>" not in s and "<|endoftext|>" not in s
    assert result["learning_rate"] == 3e-3 and result["accumulate_gradients"] == 1

    working = worker_dir / "checkpoint" / "dril"
    assert result["checkpoint"] == str(working)
    assert working_checkpoint(worker_dir, "dril") == working
    assert (working / "model-30.index").is_file()
    assert (working / "counter").read_text().strip() == "30"
    assert (working / "checkpoint").read_text().startswith('model_checkpoint_path: "model-30"')
    for name in ("hparams.json", "encoder.json", "vocab.bpe"):
        assert (working / name).is_file()
    assert not (worker_dir / "checkpoint" / "dril.run").exists()
    run = json.loads((working / "run.json").read_text())
    assert run["complete"] and run["job_id"] == "job1" and run["total_steps"] == 30
    assert Path(result["log"]).is_file() and Path(result["log"]).parent == worker_dir / "logs"


def test_cancel_saves_in_run_dir_and_keeps_working_checkpoint(worker_dir: Path):
    working = worker_dir / "checkpoint" / "dril"
    working.mkdir(parents=True)
    (working / "marker").write_text("previous model")
    rec = Recorder(cancel_at_step=8)

    result = train(worker_dir, rec, steps=2000, save_every=1000)

    assert result["state"] == "cancelled"
    n = result["steps_done"]
    # The cancel is sent once step 8 was reported. gpt-2-simple saves `counter - 1`,
    # and a SIGINT that lands between its step print and `counter += 1` saves the
    # step before: 7 is the least, whatever the timing (7 < 8 failed here once).
    assert 7 <= n < 2000
    assert "cancelling" in [e["phase"] for e in rec.events]
    run = worker_dir / "checkpoint" / "dril.run"
    assert result["checkpoint"] == str(run)
    assert (run / f"model-{n}.index").is_file()
    assert (run / "counter").read_text().strip() == str(n)
    assert sorted(p.name for p in working.iterdir()) == ["marker"]
    assert working_checkpoint(worker_dir, "dril") is None  # the fake one has no checkpoint file
    assert result["samples"] == []


def test_cancel_works_when_sigint_was_ignored_by_whoever_started_the_worker(worker_dir: Path):
    """A non-interactive shell starts background jobs with SIGINT ignored, and
    children inherit that: cancel (a SIGINT to the training child) must still stop it."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        rec = Recorder(cancel_at_step=3)
        result = train(worker_dir, rec, steps=2000, save_every=1000)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result["state"] == "cancelled" and 2 <= result["steps_done"] < 2000


def _wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(f"/proc/{pid}/status") as f:
                if "State:\tZ" in f.read():
                    return
        except FileNotFoundError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still alive")


WORKER_SCRIPT = """
import json, sys
from pathlib import Path
from workers.finetune import run_training
out = open(sys.argv[2], "a")
def on_event(e):
    out.write(json.dumps(e) + "\\n"); out.flush()
run_training(Path(sys.argv[1]), "dril", steps=2000, save_every=10, job_id="first", on_event=on_event,
             should_cancel=lambda: False, progress_interval=0)
"""


def test_killed_worker_resumes_from_last_saved_step(worker_dir: Path, tmp_path: Path):
    events_file = tmp_path / "events.jsonl"
    events_file.touch()
    worker = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, str(worker_dir), str(events_file)],
                              cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child_pid = None
    saved = last_step = 0
    deadline = time.time() + 60
    try:
        while saved < 10:
            assert time.time() < deadline, "no saved checkpoint within 60 s"
            assert worker.poll() is None, "worker died on its own"
            for line in events_file.read_text().splitlines():
                e = json.loads(line)
                child_pid = e.get("pid", child_pid)
                saved = max(saved, e.get("saved_step") or 0)
                last_step = max(last_step, e.get("step") or 0)
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert child_pid
    _wait_gone(child_pid)  # the training child stops with its worker...
    run = worker_dir / "checkpoint" / "dril.run"
    saved_on_disk = int((run / "counter").read_text())
    # ...saving where it was, as a cancel does (at worst the last periodic save is kept)
    assert saved_on_disk >= last_step >= 10
    assert (run / f"model-{saved_on_disk}.index").is_file()

    rec = Recorder()
    result = train(worker_dir, rec, steps=saved_on_disk + 15, job_id="second", sample_count=1)

    steps = rec.steps()
    assert steps[0]["step"] == saved_on_disk + 1  # the counter continues
    assert steps[-1]["step"] == saved_on_disk + 15
    assert result["state"] == "done" and result["resumed_from"] == saved_on_disk
    assert result["steps_done"] == saved_on_disk + 15
    # the loss history covers the whole run, the first worker's part included
    assert [s for s, _, _ in result["losses"]] == list(range(1, saved_on_disk + 16))
    working = worker_dir / "checkpoint" / "dril"
    assert (working / f"model-{saved_on_disk + 15}.index").is_file()
    info = json.loads((working / "run.json").read_text())
    assert info["jobs"] == ["first", "second"]


def test_killed_child_is_a_clean_error_with_log_tail(worker_dir: Path):
    class Killer(Recorder):
        def __call__(self, event):
            super().__call__(event)
            if event.get("pid"):
                self.pid = event["pid"]
            if (event.get("saved_step") or 0) >= 10 and not getattr(self, "killed", False):
                self.killed = True
                os.kill(self.pid, signal.SIGKILL)

    rec = Killer()
    with pytest.raises(TrainingFailed) as err:
        train(worker_dir, rec, steps=2000, save_every=10)
    msg = str(err.value)
    assert "killed by SIGKILL" in msg and "resumed from step" in msg
    assert "Training..." in err.value.log_tail  # gpt-2-simple's own output, from the log
    assert (worker_dir / "checkpoint" / "dril.run" / "counter").is_file()
    assert not (worker_dir / "checkpoint" / "dril").exists()


def test_child_failure_surfaces_as_exception(worker_dir: Path):
    hp = worker_dir / "models" / "tiny" / "hparams.json"
    hparams = json.loads(hp.read_text())
    hparams["n_embd"] = 32  # the checkpoint no longer fits the graph
    broken = worker_dir / "broken"
    shutil.copytree(worker_dir / "models" / "tiny", broken)
    (broken / "hparams.json").write_text(json.dumps(hparams))
    with pytest.raises(TrainingFailed) as err:
        train(worker_dir, Recorder(), model=str(broken), steps=5)
    msg = str(err.value)
    assert msg.startswith("training failed: InvalidArgumentError")
    assert "Matrix size-incompatible" in msg.splitlines()[0] + msg
    assert "Original stack trace" not in msg.split("--- last lines")[0]
    assert "Traceback" in err.value.log_tail and "Matrix size-incompatible" in err.value.log_tail


def test_too_little_data_says_how_much(worker_dir: Path):
    write_dataset(worker_dir, "smol", 5)
    with pytest.raises(BadInput) as err:
        run_training(worker_dir, "smol", steps=10, job_id="j", on_event=lambda e: None,
                     should_cancel=lambda: False)
    msg = str(err.value)
    assert "5 posts" in msg and "1024" in msg and "1 MB" in msg
    assert "tokens" in msg
    assert not (worker_dir / "checkpoint" / "smol.run").exists()


def test_missing_dataset(worker_dir: Path):
    with pytest.raises(BadInput, match="no dataset"):
        run_training(worker_dir, "nobody", steps=10, job_id="j", on_event=lambda e: None,
                     should_cancel=lambda: False)


@pytest.mark.parametrize("steps", [0, -5, 100_001, "many", 2.5, None, True])
def test_bad_steps(worker_dir: Path, steps):
    with pytest.raises(BadInput, match="steps"):
        run_training(worker_dir, "dril", steps=steps, job_id="j", on_event=lambda e: None,
                     should_cancel=lambda: False)


def test_bad_persona_name(worker_dir: Path):
    with pytest.raises(BadInput):
        run_training(worker_dir, "../etc", steps=10, job_id="j", on_event=lambda e: None,
                     should_cancel=lambda: False)


def test_unknown_model_lists_valid_ones(worker_dir: Path):
    with pytest.raises(BadInput) as err:
        run_training(worker_dir, "dril", steps=10, model="gpt5", job_id="j", on_event=lambda e: None,
                     should_cancel=lambda: False)
    assert "124M" in str(err.value) and "355M" in str(err.value) and "tiny" in str(err.value)


def test_second_run_for_same_persona_is_refused_while_one_runs(worker_dir: Path):
    (worker_dir / "checkpoint").mkdir()
    fd = os.open(worker_dir / "checkpoint" / "dril.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(BadInput, match="already in progress"):
            run_training(worker_dir, "dril", steps=10, job_id="j", on_event=lambda e: None,
                         should_cancel=lambda: False, lock_timeout=0.2)
    finally:
        os.close(fd)


def test_resolve_model(tmp_path: Path, tiny_model: Path):
    assert resolve_model(tmp_path, str(tiny_model)) == (tiny_model.parent, tiny_model.name)
    with pytest.raises(BadInput, match="does not exist"):
        resolve_model(tmp_path, str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="missing"):
        resolve_model(tmp_path, str(tmp_path / "empty"))
    with pytest.raises(ModelUnavailable, match="model download 124M"):
        resolve_model(tmp_path / "models", "124M", download=False)
    # "tiny" is built on first use
    models_dir, name = resolve_model(tmp_path / "models", "tiny")
    assert name == "tiny" and (models_dir / "tiny" / "model.ckpt.index").is_file()


def test_interrupted_checkpoint_swap_is_recovered(tmp_path: Path):
    root = tmp_path / "checkpoint"
    # crashed after moving the working checkpoint away, before installing the run
    (root / "dril.old").mkdir(parents=True)
    (root / "dril.run").mkdir()
    (root / "dril.run" / "run.json").write_text(json.dumps({"complete": True}))
    recover_checkpoints(tmp_path, "dril")
    assert sorted(p.name for p in root.iterdir()) == ["dril"]
    assert (root / "dril" / "run.json").is_file()
    # crashed after moving it away, run not finished: roll back
    shutil.rmtree(root / "dril")
    (root / "dril.old").mkdir()
    (root / "dril.old" / "x").write_text("old")
    (root / "dril.run").mkdir()
    recover_checkpoints(tmp_path, "dril")
    assert (root / "dril" / "x").read_text() == "old" and (root / "dril.run").is_dir()


# --- downloads against local servers ------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    ok_files: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802
        name = self.path.rsplit("/", 1)[-1]
        body = self.ok_files.get(name)
        if body is None or not self.path.startswith("/gpt-2/models/124M/"):
            self.send_response(404)
            page = b"<html>Not Found</html>"
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    servers = []

    def start(files: dict[str, bytes]):
        handler = type("H", (_Handler,), {"ok_files": files})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/gpt-2"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_download_404_is_a_clear_error_and_leaves_nothing(tmp_path: Path, http_server):
    # the first files exist, a later one is missing: nothing may be left behind
    base = http_server({"checkpoint": b"x", "encoder.json": b"{}"})
    with pytest.raises(ModelUnavailable) as err:
        download_model(tmp_path / "models", "124M", base_url=base)
    assert "HTTP 404" in str(err.value) and "hparams.json" in str(err.value)
    assert list((tmp_path / "models").iterdir()) == []


def test_download_unreachable_is_a_clear_error(tmp_path: Path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(ModelUnavailable) as err:
        download_model(tmp_path / "models", "124M", base_url=f"http://127.0.0.1:{port}/gpt-2", timeout=5)
    msg = str(err.value)
    assert "could not reach" in msg and "local model directory" in msg
    assert list((tmp_path / "models").iterdir()) == []


def test_download_succeeds_and_unknown_name_refused(tmp_path: Path, http_server):
    files = {name: f"content of {name}".encode() for name in MODEL_FILES}
    base = http_server(files)
    target = download_model(tmp_path / "models", "124M", base_url=base)
    assert target == tmp_path / "models" / "124M"
    for name in MODEL_FILES:
        assert (target / name).read_bytes() == files[name]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["124M"]
    with pytest.raises(BadInput, match="124M"):
        download_model(tmp_path / "models", "gpt-9", base_url=base)


CONTINUE_SCRIPT = WORKER_SCRIPT.replace("steps=2000", "steps=1, more_steps=2000").replace('"first"', '"more1"')


def test_continue_training_goes_on_from_the_working_checkpoint(worker_dir: Path, tmp_path: Path):
    first = train(worker_dir, Recorder(), steps=10, save_every=5)
    assert first["state"] == "done"
    working = worker_dir / "checkpoint" / "dril"

    # A worker SIGKILLed during a continuation leaves the previous working checkpoint in use.
    events_file = tmp_path / "events.jsonl"
    events_file.touch()
    proc = subprocess.Popen([sys.executable, "-c", CONTINUE_SCRIPT, str(worker_dir), str(events_file)],
                            cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, saved, steps = time.time() + 90, 0, []
        while saved < 20:
            assert time.time() < deadline and proc.poll() is None, "no checkpoint at step 20 within 90 s"
            events = [json.loads(line) for line in events_file.read_text().splitlines()]
            saved = max([e.get("saved_step") or 0 for e in events] + [0])
            steps = [e["step"] for e in events if e.get("loss") is not None]
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert steps[0] == 11  # the step counter went on from the working checkpoint's
    assert (working / "counter").read_text().strip() == "10" and working_checkpoint(worker_dir, "dril") == working
    assert 'model_checkpoint_path: "model-10"' in (working / "checkpoint").read_text()

    # The next continuation resumes that run; the step counter and the loss history go on.
    rec = Recorder()
    done = train(worker_dir, rec, more_steps=30, save_every=5, job_id="more2", steps=999, model="124M")
    assert done["state"] == "done" and done["steps"] == 40 and done["steps_done"] == 40
    assert done["resumed_from"] >= 20 and rec.steps()[0]["step"] == done["resumed_from"] + 1
    assert [s for s, _, _ in done["losses"]] == list(range(1, 41))
    assert (working / "counter").read_text().strip() == "40" and (working / "model-40.index").is_file()
    assert json.loads((working / "run.json").read_text())["jobs"] == ["job1", "more1", "more2"]


def test_a_run_can_start_from_another_personas_checkpoint(worker_dir: Path):
    train(worker_dir, Recorder(), steps=10, save_every=5)
    write_dataset(worker_dir, "drilbert", 300, seed=1)
    rec = Recorder()
    result = run_training(worker_dir, "drilbert", steps=5, save_every=5, job_id="j", on_event=rec,
                          should_cancel=rec.should_cancel, progress_interval=0,
                          start_from=worker_dir / "checkpoint" / "dril")
    assert result["state"] == "done" and [e["step"] for e in rec.steps()] == [1, 2, 3, 4, 5]
    # It began from dril's weights, not the base model's: its first loss is dril's last, not a fresh model's.
    assert rec.steps()[0]["loss"] < first_loss_of_a_fresh_run(worker_dir) - 0.5
    assert (worker_dir / "checkpoint" / "drilbert" / "model-5.index").is_file()
    with pytest.raises(BadInput, match="not a gpt-2-simple checkpoint"):
        run_training(worker_dir, "drilbert", steps=5, job_id="k", on_event=rec, should_cancel=rec.should_cancel,
                     start_from=worker_dir / "nowhere")


def first_loss_of_a_fresh_run(worker_dir: Path) -> float:
    write_dataset(worker_dir, "fresh", 300, seed=1)
    rec = Recorder()
    run_training(worker_dir, "fresh", steps=1, job_id="f", on_event=rec, should_cancel=rec.should_cancel,
                 progress_interval=0, sample_count=0)
    return rec.steps()[0]["loss"]


def test_validation_loss_is_reported_and_an_early_stop_completes_the_run(worker_dir: Path):
    rec = Recorder()
    result = train(worker_dir, rec, steps=400, save_every=5, validation_fraction=0.1, val_every=5,
                   val_batch_count=2, early_stop_patience=2, sample_every=5, sample_count=1)
    validation = result["validation"]
    assert validation["state"] == "on" and validation["val_posts"] > 0
    split = worker_dir / "datasets" / "dril" / "split"
    def rows(name):
        with open(split / name, encoding="utf-8", newline="") as fh:
            return [r[0] for r in list(csv.reader(fh))[1:]]

    held, kept = rows("val.csv"), rows("train.csv")
    assert held and not set(held) & set(kept) and len(held) + len(kept) == 300
    # The loss on the held-out posts, in the progress events and the result...
    vals = result["val_losses"]
    assert vals and vals[0][0] == 1 and all(isinstance(v, float) for _, v in vals)
    assert [e["val_loss"] for e in rec.events if "val_loss" in e][-1] == vals[-1][1]
    # ...a sample every 5 steps in the progress...
    samples = [e for e in rec.events if e.get("sample") is not None]
    assert samples and samples[0]["sample_step"] >= 5
    # ...and the run stopped once two validations in a row did not beat the best: complete,
    # with its working checkpoint (a random tiny model overfits 300 posts well before 400 steps).
    assert result["state"] == "done" and result["early_stopped"], vals
    assert result["steps_done"] < 400
    best = min(v for _, v in vals)
    assert [v for _, v in vals][-2:] and all(v >= best for _, v in vals[-2:])
    assert (worker_dir / "checkpoint" / "dril" / f"model-{result['steps_done']}.index").is_file()
    assert len(result["samples"]) == 1


def test_a_dataset_too_small_to_spare_posts_trains_without_validation(worker_dir: Path):
    write_dataset(worker_dir, "dril", 60)  # a little over one 1,024-token window
    result = train(worker_dir, Recorder(), steps=3, validation_fraction=0.05)
    assert result["state"] == "done" and result["validation"]["state"] == "skipped"
    assert "too few to hold some back" in result["validation"]["why"] and result["val_losses"] == []
