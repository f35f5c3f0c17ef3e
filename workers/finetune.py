"""Finetuning: gpt-2-simple's ``finetune`` in a fresh child process per run.

Layout under the worker's data directory::

    datasets/<persona>/dataset.csv    one column, header ``tweets`` (input)
    models/<name>/                    base models (124M, 355M, tiny)
    checkpoint/<persona>/             the WORKING checkpoint (what generation loads)
    checkpoint/<persona>.run/         the run in progress (gpt-2-simple run_name
                                      ``<persona>.run``), with run.json and losses.jsonl
    checkpoint/<persona>.lock         held while a run is in progress
    logs/train-<persona>-<job>.log    the child's prints and TensorFlow's noise

A run trains into ``<persona>.run`` and saves there every ``save_every``
steps; only when it finishes is the working checkpoint replaced (rename the
old one away, rename the run into place, delete the old one; an interrupted
swap is completed or rolled back by ``recover_checkpoints``). A cancelled run
or one whose worker died keeps its run directory, and the next
``run_training`` for the persona (same base model) continues from its last
saved step.

Only the standard library, ``core.contract`` and gpt-2-simple's pure-Python
encoder are imported here; TensorFlow lives in the child.
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from core.contract import BadInput, persona_label, WorkFailed, check_persona_key
from workers.models import DOWNLOAD_URL, resolve_model
from workers.tiny_model import END_TOKEN, START_TOKEN, model_info

MAX_STEPS = 100_000
WINDOW = 1024  # gpt-2-simple samples 1,024-token windows
RUN_SUFFIX = ".run"
OLD_SUFFIX = ".old"
TINY_DEFAULTS = {"learning_rate": 3e-3, "accumulate_gradients": 1}
GPT2_DEFAULTS = {"learning_rate": 1e-4, "accumulate_gradients": 5}  # gpt-2-simple's own
_REPO_ROOT = Path(__file__).resolve().parent.parent


class TrainingFailed(WorkFailed):
    """The training child failed; the message ends with the last lines of its log."""

    def __init__(self, message: str, log_tail: str = "", log_path: str | None = None):
        super().__init__(message + (f"\n--- last lines of {log_path} ---\n{log_tail}" if log_tail else ""))
        self.log_tail = log_tail
        self.log_path = log_path


# --- paths ------------------------------------------------------------------


def checkpoint_root(worker_dir: Path) -> Path:
    return Path(worker_dir) / "checkpoint"


def run_dir_for(worker_dir: Path, persona: str) -> Path:
    return checkpoint_root(worker_dir) / (check_persona_key(persona) + RUN_SUFFIX)


def dataset_path(worker_dir: Path, persona: str) -> Path:
    return Path(worker_dir) / "datasets" / check_persona_key(persona) / "dataset.csv"


def working_checkpoint(worker_dir: Path, persona: str) -> Path | None:
    """The persona's working checkpoint directory (for ``load_gpt2`` with
    ``checkpoint_dir=<worker_dir>/checkpoint, run_name=<persona>``), or None
    before the first finished run."""
    recover_checkpoints(worker_dir, persona)
    path = checkpoint_root(worker_dir) / check_persona_key(persona)
    return path if (path / "checkpoint").is_file() else None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def recover_checkpoints(worker_dir: Path, persona: str) -> None:
    """Finish or roll back a working-checkpoint swap that a crash interrupted."""
    root = checkpoint_root(worker_dir)
    working = root / check_persona_key(persona)
    run = root / (persona + RUN_SUFFIX)
    old = root / (persona + OLD_SUFFIX)
    run_complete = _read_json(run / "run.json").get("complete", False)
    if old.exists():
        if not working.exists():
            os.rename(run if run_complete else old, working)
        shutil.rmtree(old, ignore_errors=True)
    elif run_complete:
        _install_run(run, working, old)


def _install_run(run: Path, working: Path, old: Path) -> None:
    if working.exists():
        os.rename(working, old)
    os.rename(run, working)
    shutil.rmtree(old, ignore_errors=True)


def _relativize_checkpoint_file(ckpt_dir: Path) -> None:
    """gpt-2-simple's Saver writes absolute paths into ``checkpoint``; make them
    relative so the directory can be renamed (or moved to another machine)."""
    path = ckpt_dir / "checkpoint"
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    new = re.sub(r'"([^"]*)"', lambda m: '"' + os.path.basename(m.group(1)) + '"', text)
    if new != text:
        path.write_text(new, encoding="utf-8")


def _saved_step(run: Path) -> int:
    """The step of the last checkpoint saved in a run directory (0: none)."""
    try:
        counter = int((run / "counter").read_text().strip())
    except (OSError, ValueError):
        return 0
    _relativize_checkpoint_file(run)
    if not (run / f"model-{counter}.index").is_file():
        return 0
    return counter


# --- input checks ------------------------------------------------------------


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, bool) or float(value) != int(value):
                raise ValueError
            value = int(value)
        except (TypeError, ValueError):
            raise BadInput(f"{name} must be a whole number from {lo} to {hi}, not {value!r}") from None
    if not lo <= value <= hi:
        raise BadInput(f"{name} must be from {lo} to {hi}, not {value}")
    return value


def check_dataset(csv_path: Path, model_path: Path, *, persona: str = "") -> dict:
    """Count posts and tokens the way gpt-2-simple's CSV loader will see them,
    and refuse a dataset smaller than one 1,024-token window.

    Stops encoding once there is enough; returns {"posts", "tokens",
    "tokens_exact"}.
    """
    from gpt_2_simple.src.encoder import get_encoder

    enc = get_encoder(str(model_path))
    posts = tokens = chars = 0
    with open(csv_path, "r", encoding="utf8", errors="ignore") as fp:
        fp.readline()  # header, as gpt-2-simple's loader does
        for lineno, row in enumerate(csv.reader(fp), start=2):
            if not row:
                raise BadInput(
                    f"{csv_path} has an empty row near line {lineno}; gpt-2-simple cannot read it: "
                    "rebuild the dataset"
                )
            posts += 1
            if tokens <= WINDOW:
                text = START_TOKEN + row[0] + END_TOKEN + "\n"
                chars += len(text)
                tokens += len(enc.encode(text))
    if tokens <= WINDOW:
        who = f"for {persona_label(persona)} " if persona else ""
        per_post = tokens / posts if posts else 0
        more = math.ceil((WINDOW + 1 - tokens) / per_post) if per_post else None
        raise BadInput(
            f"the dataset {who}is too small to train on: {posts} posts encode to {tokens} tokens, and "
            f"gpt-2-simple needs more than {WINDOW} (it trains on {WINDOW}-token windows)"
            + (f": about {more} more posts like these" if more else "")
            + ". Around 1 MB of text (thousands of posts) is recommended for good results."
        )
    return {"posts": posts, "tokens": tokens, "tokens_exact": False}


# --- the run -----------------------------------------------------------------


def _acquire_lock(path: Path, timeout: float) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise BadInput(f"a training run for this persona is already in progress ({path.stem})") from None
            time.sleep(0.1)


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    marker = text.rfind("=== training failed ===")
    if marker >= 0:  # the child's own short report
        return text[marker:].strip()
    keep = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(keep[-lines:])


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(s))[:80] or "job"


def run_training(
    worker_dir: Path,
    persona: str,
    *,
    steps: int,
    model: str = "tiny",
    learning_rate: float | None = None,
    job_id: str,
    on_event: Callable[[dict], None],
    should_cancel: Callable[[], bool],
    batch_size: int = 1,
    accumulate_gradients: int | None = None,
    save_every: int | None = None,
    sample_count: int = 3,
    sample_length: int = 60,
    resume: bool = True,
    print_every: int = 1,
    progress_interval: float = 0.5,
    download_base_url: str = DOWNLOAD_URL,
    cancel_grace: float = 600.0,
    lock_timeout: float = 60.0,
    more_steps: int | None = None,
    start_from: Path | None = None,
    validation_fraction: float = 0.0,
    val_every: int | None = None,
    val_batch_count: int = 10,
    early_stop_patience: int = 0,
    sample_every: int = 0,
) -> dict:
    """Finetune ``model`` on ``<worker_dir>/datasets/<persona>/dataset.csv``
    for ``steps`` steps in a child process and return the result.

    ``more_steps``: continue the persona's working checkpoint for that many
    steps more (its base model, step counter and loss history go on; ``steps``
    and ``model`` are ignored). ``start_from``: begin from that gpt-2-simple
    checkpoint directory (another persona's, or a local one) instead of the
    base model's weights; its hparams must be the base model's. Either way
    the run trains in ``<persona>.run`` like any other, so the working
    checkpoint changes only when it completes.

    ``validation_fraction`` > 0 holds that share of the posts back (chosen by
    their hash, so the same on every run of a dataset; at least one 1,024-token
    window, as gpt-2-simple samples those) and reports their loss every
    ``val_every`` steps (``{"phase": "finetuning", "val_loss", "best_val_loss"}``
    events, ``"val_losses"`` in the result). ``early_stop_patience`` > 0 stops
    the run, as complete, once that many validations in a row did not improve
    on the best (``"early_stopped": True``). ``sample_every`` > 0: a sample
    every that many steps (``{"sample", "sample_step"}`` events).

    Events passed to ``on_event``: ``{"phase": "loading", ...}``,
    ``{"phase": "finetuning", "step", "steps", "loss", "avg_loss", "elapsed",
    "eta", "saved_step", "resumed_from"}`` (at most every
    ``progress_interval`` seconds, and for the last step), ``{"phase":
    "cancelling"}``, ``{"phase": "saving"}``, ``{"phase": "sampling"}``.

    Returns ``{"state": "done" | "cancelled", "steps", "steps_done",
    "final_loss", "final_avg_loss", "losses": [[step, loss, avg], ...],
    "samples": [...], "checkpoint", "resumed_from", "learning_rate",
    "accumulate_gradients", "dataset", "elapsed", "log", ...}``.

    Raises ``BadInput`` for input a person can fix (steps, model name, too
    little data) and ``TrainingFailed`` when the child fails.
    """
    t_start = time.time()
    persona = check_persona_key(persona)
    steps = _check_int("steps", steps, 1, MAX_STEPS)
    batch_size = _check_int("batch_size", batch_size, 1, 64)
    sample_count = _check_int("sample_count", sample_count, 0, 64)
    sample_length = _check_int("sample_length", sample_length, 1, 1000)
    print_every = _check_int("print_every", print_every, 1, MAX_STEPS)
    if accumulate_gradients is not None:
        accumulate_gradients = _check_int("accumulate_gradients", accumulate_gradients, 1, 64)
    if save_every is not None:
        save_every = _check_int("save_every", save_every, 1, MAX_STEPS)
    if learning_rate is not None:
        try:
            learning_rate = float(learning_rate)
        except (TypeError, ValueError):
            raise BadInput(f"learning_rate must be a number, not {learning_rate!r}") from None
        if not (0 < learning_rate < 1):
            raise BadInput(f"learning_rate must be between 0 and 1 (e.g. 0.0001), not {learning_rate}")

    worker_dir = Path(worker_dir).resolve()
    base: Path | None = None  # the checkpoint a run starts from, when not the base model's weights
    if more_steps is not None:
        more_steps = _check_int("more_steps", more_steps, 1, MAX_STEPS)
        base = checkpoint_root(worker_dir) / persona
        if not (base / "checkpoint").is_file():
            raise BadInput(f"{persona_label(persona)} has no trained model to continue yet: train it first")
        steps = _saved_step(base) + more_steps
        model = _read_json(base / "run.json").get("model") or model
    elif start_from is not None:
        base = Path(start_from)
        if not (base / "checkpoint").is_file() or not (base / "hparams.json").is_file():
            raise BadInput(f"{base} is not a gpt-2-simple checkpoint (it needs its checkpoint and hparams.json files)")
    data = dataset_path(worker_dir, persona)
    if not data.is_file():
        raise BadInput(f"there is no dataset for {persona_label(persona)} yet: fetch or import posts first")
    root = checkpoint_root(worker_dir)
    root.mkdir(parents=True, exist_ok=True)
    logs = worker_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    lock_fd = _acquire_lock(root / f"{persona}.lock", lock_timeout)
    try:
        recover_checkpoints(worker_dir, persona)
        on_event({"phase": "loading", "model": model})

        last_dl = [0.0]

        def dl_progress(file_name, done, total):
            now = time.time()
            if now - last_dl[0] >= max(progress_interval, 0.5):
                last_dl[0] = now
                on_event({"phase": "downloading", "file": file_name, "done": done, "total": total})

        models_dir, model_name = resolve_model(worker_dir / "models", model, base_url=download_base_url,
                                               progress=dl_progress)
        model_path = models_dir / model_name
        info = model_info(model_path)
        defaults = TINY_DEFAULTS if info.get("kind") == "tiny" else GPT2_DEFAULTS
        lr = learning_rate if learning_rate is not None else defaults["learning_rate"]
        acc = accumulate_gradients if accumulate_gradients is not None else defaults["accumulate_gradients"]
        every = save_every if save_every is not None else min(100, max(10, steps // 10))

        data_info = check_dataset(data, model_path, persona=persona)
        train_csv, val_csv, validation = data, None, {"state": "off"}
        if validation_fraction:
            train_csv, val_csv, validation = split_for_validation(data, model_path, validation_fraction,
                                                                  data.parent / "split")

        run = root / (persona + RUN_SUFFIX)
        prior = _read_json(run / "run.json")
        saved = _saved_step(run) if run.exists() else 0
        resumed_from = None
        if run.exists():
            # The same base model (by name: a run fetched from another worker has its paths)
            if resume and saved > 0 and Path(prior.get("model_path", "")).name == model_path.name:
                resumed_from = saved
            else:
                shutil.rmtree(run)
        if base is not None and resumed_from is None:
            _start_run_from(base, run, model_path, keep_history=more_steps is not None)
            prior = _read_json(run / "run.json")
            resumed_from = _saved_step(run) or None  # a continuation goes on from its step
        run.mkdir(parents=True, exist_ok=True)
        losses: list[list[float]] = []
        val_losses: list[list[float]] = []
        if resumed_from:
            losses = [e for e in _read_losses(run / "losses.jsonl") if e[0] <= resumed_from]
            val_losses = [e for e in _read_losses(run / "val_losses.jsonl", 2) if e[0] <= resumed_from]
        (run / "losses.jsonl").write_text("".join(json.dumps(e) + "\n" for e in losses), encoding="utf-8")
        (run / "val_losses.jsonl").write_text("".join(json.dumps(e) + "\n" for e in val_losses), encoding="utf-8")
        remaining = max(0, steps - (resumed_from or 0))
        total = max(steps, resumed_from or 0)
        run_info = {
            "persona": persona, "job_id": job_id, "jobs": prior.get("jobs", []) + [job_id] if resumed_from else [job_id],
            "model": model, "model_path": str(model_path), "total_steps": total,
            "learning_rate": lr, "accumulate_gradients": acc, "batch_size": batch_size,
            "save_every": every, "dataset": str(data), "dataset_posts": data_info["posts"],
            "started_at": prior.get("started_at", t_start) if resumed_from else t_start,
            "resumed_from": resumed_from, "complete": False,
        }
        _write_json(run / "run.json", run_info)

        log_path = logs / f"train-{persona}-{_safe(job_id)}.log"
        spec = {
            "dataset": str(train_csv), "steps": remaining,
            "val_dataset": str(val_csv) if val_csv else None, "val_every": (val_every or every) if val_csv else 0,
            "val_batch_count": val_batch_count, "early_stop_patience": early_stop_patience if val_csv else 0,
            "sample_every": sample_every, "model_name": model_name, "model_dir": str(models_dir),
            "batch_size": batch_size, "learning_rate": lr, "accumulate_gradients": acc,
            "restore_from": "latest" if resumed_from or base is not None else "fresh",
            "run_name": persona + RUN_SUFFIX,
            "checkpoint_dir": str(root), "save_every": every, "print_every": print_every,
            "sample_count": sample_count, "sample_length": sample_length, "parent_pid": os.getpid(),
            "start_step": resumed_from or 0,
        }
        extra = {"val_losses": val_losses, "validation": validation, "early_stopped": False}
        if should_cancel():
            return _result("cancelled", persona, job_id, model, total, resumed_from or 0, losses, [], run,
                           resumed_from, lr, acc, data_info, t_start, log_path, extra)

        outcome = _run_child(spec, log_path, lock_fd, run, total, resumed_from or 0, losses, on_event,
                             should_cancel, progress_interval, cancel_grace, t_start, val_losses)
        steps_done = outcome["step"] or (resumed_from or 0)
        extra["early_stopped"] = bool(outcome.get("early_stop"))
        finished = not outcome["interrupted"] or steps_done >= total or extra["early_stopped"]
        if not finished:
            return _result("cancelled", persona, job_id, model, total, steps_done, losses, [], run,
                           resumed_from, lr, acc, data_info, t_start, log_path, extra)

        on_event({"phase": "saving"})
        _relativize_checkpoint_file(run)
        run_info.update(complete=True, steps_done=steps_done, finished_at=time.time(),
                        final_loss=losses[-1][1] if losses else None)
        _write_json(run / "run.json", run_info)
        working = root / persona
        _install_run(run, working, root / (persona + OLD_SUFFIX))
        return _result("done", persona, job_id, model, total, steps_done, losses, outcome["samples"], working,
                       resumed_from, lr, acc, data_info, t_start, log_path, extra)
    finally:
        os.close(lock_fd)


def _start_run_from(base: Path, run: Path, model_path: Path, *, keep_history: bool) -> None:
    """A new run directory holding ``base``'s weights. ``keep_history`` (a continuation):
    its counter, losses and run record too; else the run counts its steps from 1."""
    mine = json.loads((model_path / "hparams.json").read_text(encoding="utf-8"))
    theirs = json.loads((base / "hparams.json").read_text(encoding="utf-8"))
    if mine != theirs:
        raise BadInput(f"the checkpoint in {base.name} has another shape than the base model {model_path.name} "
                       f"({theirs} vs {mine}): start from the base model it was trained from")
    skip = set() if keep_history else {"counter", "losses.jsonl", "val_losses.jsonl", "run.json"}
    shutil.copytree(base, run, ignore=lambda _d, names: [n for n in names if n in skip or n == "samples"])
    _relativize_checkpoint_file(run)
    if keep_history:
        _write_json(run / "run.json", dict(_read_json(run / "run.json"), complete=False))


def split_for_validation(csv_path: Path, model_path: Path, fraction: float, out_dir: Path) -> tuple[Path, Path | None, dict]:
    """(train CSV, validation CSV or None, what was done). The held-out posts are
    chosen by their hash, so a dataset splits the same way on every run (a resumed
    or continued run validates on the same posts)."""
    from gpt_2_simple.src.encoder import get_encoder

    if not 0 < fraction < 0.5:
        raise BadInput(f"the validation share must be above 0 and below 0.5, not {fraction}")
    enc = get_encoder(str(model_path))
    with open(csv_path, encoding="utf-8", newline="") as fh:
        rows = [r[0] for r in list(csv.reader(fh))[1:] if r]
    tokens = [len(enc.encode(START_TOKEN + r + END_TOKEN + "\n")) for r in rows]
    total = sum(tokens)
    want = max(fraction * total, WINDOW + 64)  # gpt-2-simple samples 1,024-token windows from it
    if total - want <= WINDOW + 64:
        return csv_path, None, {"state": "skipped", "why": f"{total:,} tokens are too few to hold some back "
                                                           f"(about {2 * (WINDOW + 64):,} are needed)"}
    chosen, held = set(), 0
    for i in sorted(range(len(rows)), key=lambda i: hashlib.sha256(rows[i].encode("utf-8")).digest()):
        if held >= want:
            break
        chosen.add(i)
        held += tokens[i]
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, keep in (("train.csv", lambda i: i not in chosen), ("val.csv", lambda i: i in chosen)):
        paths[name] = out_dir / name
        with open(paths[name], "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["tweets"])
            writer.writerows([r] for i, r in enumerate(rows) if keep(i))
    return paths["train.csv"], paths["val.csv"], {"state": "on", "val_posts": len(chosen),
                                                  "train_posts": len(rows) - len(chosen), "val_tokens": held}


def _read_losses(path: Path, width: int = 3) -> list[list[float]]:
    out = []
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                e = json.loads(line)
                out.append([int(e[0])] + [float(x) for x in e[1:width]])
            except (ValueError, TypeError, IndexError):
                continue
    except OSError:
        pass
    return out


def _result(state, persona, job_id, model, total, steps_done, losses, samples, checkpoint, resumed_from,
            lr, acc, data_info, t_start, log_path, extra=None) -> dict:
    return {
        **(extra or {}),
        "state": state,
        "persona": persona,
        "job_id": job_id,
        "model": model,
        "steps": total,
        "steps_done": steps_done,
        "final_loss": losses[-1][1] if losses else None,
        "final_avg_loss": losses[-1][2] if losses else None,
        "losses": losses,
        "samples": samples,
        "checkpoint": str(checkpoint) if steps_done > 0 else None,
        "resumed_from": resumed_from,
        "learning_rate": lr,
        "accumulate_gradients": acc,
        "dataset": {"posts": data_info["posts"]},
        "elapsed": round(time.time() - t_start, 3),
        "log": str(log_path),
    }


def _run_child(spec, log_path, lock_fd, run, total, start_step, losses, on_event, should_cancel,
               progress_interval, cancel_grace, t_start, val_losses) -> dict:
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(_REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    log = open(log_path, "ab")
    log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} training {spec['run_name']} "
              f"steps={spec['steps']} restore_from={spec['restore_from']}\n".encode())
    log.flush()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.train_child", json.dumps(spec)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
            cwd=str(run), env=env, pass_fds=(lock_fd,),  # the child keeps the lock while it lives
        )
    finally:
        log.close()

    lines: queue.Queue = queue.Queue()

    def reader():
        for raw in proc.stdout:
            try:
                lines.put(json.loads(raw))
            except ValueError:
                pass
        lines.put(None)

    threading.Thread(target=reader, name=f"train-{spec['run_name']}", daemon=True).start()

    outcome = {"step": None, "interrupted": False, "samples": [], "error": None, "done": False, "early_stop": False}
    latest: dict = {}  # the latest validation loss and sample, carried on every progress event
    if val_losses:
        latest.update(val_loss=val_losses[-1][1], best_val_loss=min(v for _, v in val_losses))
    last_emit = 0.0
    last_cancel_check = 0.0
    cancel_sent_at = None
    pending = None
    clean_exit = False
    try:
        while True:
            try:
                msg = lines.get(timeout=0.2)
            except queue.Empty:
                msg = False
            if msg is None:
                break
            now = time.time()
            if msg:
                ev = msg.get("event")
                if ev == "step":
                    step = int(msg["step"])
                    entry = [step, round(float(msg["loss"]), 5), round(float(msg["avg"]), 5)]
                    losses.append(entry)  # the child appends it to losses.jsonl
                    done_here = step - start_step
                    per_step = float(msg["time"]) / done_here if done_here > 0 else None
                    pending = {
                        "phase": "finetuning", "step": step, "steps": total,
                        "loss": entry[1], "avg_loss": entry[2],
                        "elapsed": round(now - t_start, 2),
                        "eta": round(per_step * max(0, total - step), 1) if per_step is not None else None,
                        "saved_step": int(msg.get("saved_step") or 0),
                        "resumed_from": start_step or None,
                        **latest,
                    }
                    if now - last_emit >= progress_interval or step >= total or step == start_step + 1:
                        on_event(pending)
                        last_emit, pending = now, None
                elif ev == "phase":
                    if pending:
                        on_event(pending)
                        pending = None
                    e = {"phase": msg["phase"]}
                    if msg["phase"] == "finetuning":  # the training loop starts
                        e.update(step=start_step, steps=total, loss=None, avg_loss=None,
                                 elapsed=round(now - t_start, 2), eta=None, saved_step=start_step,
                                 resumed_from=start_step or None)
                    if msg["phase"] == "loading":
                        e.update({k: msg[k] for k in ("pid", "checkpoint") if k in msg})
                        if start_step:
                            e["resumed_from"] = start_step
                    on_event(e)
                elif ev == "validation":
                    val_losses.append([int(msg["step"]), round(float(msg["val_loss"]), 5)])
                    latest.update(val_loss=val_losses[-1][1], best_val_loss=round(float(msg["best"]), 5))
                    on_event(dict(pending or {"phase": "finetuning", "step": msg["step"], "steps": total}, **latest))
                    pending = None
                elif ev == "sample":
                    latest.update(sample=msg["text"], sample_step=int(msg["step"]))
                    on_event(dict(pending or {"phase": "finetuning", "step": msg["step"], "steps": total}, **latest))
                    pending = None
                elif ev == "dataset":
                    on_event({"phase": "loading", "dataset_tokens": msg["tokens"]})
                elif ev == "trained":
                    if pending:
                        on_event(pending)
                        pending = None
                    outcome["step"] = msg["step"]
                    outcome["interrupted"] = bool(msg["interrupted"])
                    outcome["early_stop"] = bool(msg.get("early_stop"))
                elif ev == "done":
                    outcome["samples"] = msg.get("samples", [])
                    outcome["done"] = True
                elif ev == "error":
                    outcome["error"] = msg
            if cancel_sent_at is None and now - last_cancel_check >= 0.25:
                last_cancel_check = now
                if should_cancel():
                    cancel_sent_at = now
                    on_event({"phase": "cancelling"})
                    _signal(proc, signal.SIGINT)
            if cancel_sent_at is not None and now - cancel_sent_at > cancel_grace:
                _signal(proc, signal.SIGKILL)
        rc = proc.wait()
        clean_exit = True
    finally:
        if not clean_exit and proc.poll() is None:
            # on_event / should_cancel raised, or we were interrupted: stop the child, let it save.
            _signal(proc, signal.SIGINT)
            try:
                proc.wait(timeout=cancel_grace)
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
                proc.wait()

    if outcome["done"] and rc == 0:
        return outcome
    tail = _log_tail(log_path)
    if outcome["error"]:
        err = outcome["error"]
        message = f"training failed: {err['type']}: {err['message']}"
        if "Dataset files are too small" in err["message"]:
            raise BadInput("the dataset is too small to train on: gpt-2-simple needs more than 1,024 tokens; "
                           "around 1 MB of text is recommended")
    elif rc < 0:
        sig = -rc
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        message = f"the training process was killed by {name}" + (
            " (out of memory?)" if sig == signal.SIGKILL else "")
    else:
        message = f"the training process exited with status {rc} before it finished"
    message += (f"; the run can be resumed from step {_saved_step(run)}" if _saved_step(run) else "")
    raise TrainingFailed(message, tail, str(log_path))


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
