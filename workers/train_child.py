"""The training child process: ``python -m workers.train_child SPEC_JSON``.

Started by ``workers.finetune.run_training``, one per run, so that all of
TensorFlow's memory goes back to the system when the run ends. It runs
gpt-2-simple's ``finetune`` and then a few samples, and talks to its parent
only through JSON lines on its original stdout; everything else (gpt-2-simple's
prints, TensorFlow's noise, tracebacks) goes to stderr, which the parent
points at a log file.

SIGINT stops training: gpt-2-simple catches the KeyboardInterrupt, saves a
checkpoint and returns. The child dies with its parent (PR_SET_PDEATHSIG on
Linux), so a killed worker leaves no orphan training behind.
"""
from __future__ import annotations

import builtins
import json
import os
import random
import re
import signal
import sys
import threading
import time
import traceback

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
_STEP_LINE = re.compile(r"^\[(\d+) \| ([\d.]+)\] loss=([-\d.naif]+) avg=([-\d.naif]+)")
_SAMPLE_HEADER = re.compile(r"^======== SAMPLE \d+ ========\n")
_SAVE_LINE = re.compile(r"model-(\d+)$")

_events = None
_in_training_loop = False
_stop_requested = False


def _on_sigint(signum, frame) -> None:
    """A cancel. In gpt-2-simple's training loop it is only noted, and raised as
    KeyboardInterrupt at the next step line (``hook``): raised at any moment it can
    land inside TensorFlow's Python layer with a lock held, and the save that
    follows then hangs for ever (seen: a cancelled run stuck at "Saving").
    Anywhere else it stops at once."""
    global _stop_requested
    if _in_training_loop:
        _stop_requested = True
        return
    raise KeyboardInterrupt


def emit(obj: dict) -> None:
    try:
        _events.write(json.dumps(obj) + "\n")
        _events.flush()
    except (BrokenPipeError, ValueError, OSError):
        # The parent is gone. In gpt-2-simple's training loop, stop the way a
        # cancel does (it saves a checkpoint to resume from); anywhere else
        # nobody will use what we make: stop now.
        if _in_training_loop:
            raise KeyboardInterrupt from None
        os._exit(3)


def _stop_with_parent(parent_pid: int) -> None:
    """When the parent dies, SIGINT ourselves: in the training loop that saves
    a checkpoint and stops, elsewhere it ends the process."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
        except Exception:  # noqa: BLE001 - best effort; the watchdog below covers the rest
            pass
    if parent_pid and os.getppid() != parent_pid:
        os._exit(3)

    def watchdog():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGINT)
                return

    if parent_pid:
        threading.Thread(target=watchdog, name="parent-watchdog", daemon=True).start()


def clean_sample(text: str) -> str:
    """gpt-2-simple returns the text still starting with <|startoftext|> when
    no end token came: strip the markers, cut at the first end token."""
    text = text.split(END_TOKEN, 1)[0]
    return text.replace(START_TOKEN, "").strip()


def short_error(e: BaseException) -> str:
    """The message of an exception without TensorFlow's embedded node stacks."""
    msg = getattr(e, "message", None) or str(e)
    if not isinstance(msg, str):
        msg = str(msg)
    msg = msg.split("\n\nOriginal stack trace", 1)[0]
    lines = [ln for ln in msg.splitlines()
             if ln.strip() and not ln[:1].isspace() and not ln.startswith("Detected at node")]
    return "\n".join(lines)[:1500] or type(e).__name__


class Validation:
    """The loss on the held-out posts (``spec["val_dataset"]``), every ``val_every``
    steps and after the first. gpt-2-simple 0.8.1's finetune has no validation of
    its own: between two steps this runs the training graph's own loss tensor
    (no new op, no training) over fixed 1,024-token windows of the held-out posts,
    sampled once with gpt-2-simple's Sampler, as nshepperd's train.py does."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.every = int(spec.get("val_every") or 0) if spec.get("val_dataset") else 0
        self.first = int(spec.get("start_step", 0)) + 1
        self.batches = self.tensor = None

    def wanted(self, step: int) -> bool:
        return bool(self.every) and (step % self.every == 0 or step == self.first)

    def loss(self, sess) -> float:
        import numpy as np

        if self.tensor is None:
            # gpt-2-simple's loss: reduce_mean(sparse_softmax_cross_entropy_with_logits(...)), a reshape between.
            frontier = [next(op for op in sess.graph.get_operations() if op.type == "SparseSoftmaxCrossEntropyWithLogits")]
            while self.tensor is None and frontier:
                frontier = [c for op in frontier for c in op.outputs[0].consumers()]
                self.tensor = next((c.outputs[0] for c in frontier if c.type == "Mean"), None)
            from gpt_2_simple.src import encoder as genc
            from gpt_2_simple.src.load_dataset import Sampler, load_dataset

            enc = genc.get_encoder(os.path.join(self.spec["checkpoint_dir"], self.spec["run_name"]))
            sampler = Sampler(load_dataset(enc, self.spec["val_dataset"], 50000))
            rows = int(self.spec.get("batch_size", 1))
            kept = random.getstate()  # the same windows on every run; training's own draws untouched
            random.seed(1)
            self.batches = [[sampler.sample(1024) for _ in range(rows)]
                            for _ in range(int(self.spec.get("val_batch_count") or 10))]
            random.setstate(kept)
        return float(np.mean([sess.run(self.tensor, feed_dict={sess.context: b}) for b in self.batches]))


def main(argv: list[str] | None = None) -> int:
    global _events, _in_training_loop
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    # Our stdout is the event channel; everything printed goes to stderr (the log).
    _events = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout.reconfigure(line_buffering=True)
    # Cancel is a SIGINT. A process started in the background by a non-interactive
    # shell (a CI job, `parodybot worker &` in a script) inherits SIGINT *ignored*,
    # so the handler is set here whatever came with the process.
    signal.signal(signal.SIGINT, _on_sigint)
    _stop_with_parent(spec.get("parent_pid", 0))

    state = {"interrupted": False, "pending_save": None, "saved": spec.get("start_step", 0),
             "avg": (0.0, 0.0), "training": False, "step": spec.get("start_step", 0),
             "best_val": None, "worse": 0, "early_stop": False}
    patience = int(spec.get("early_stop_patience") or 0)
    try:
        emit({"event": "phase", "phase": "loading", "pid": os.getpid()})
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        from gpt_2_simple import gpt_2
        from tensorflow.core.protobuf import rewriter_config_pb2

        class TrackingSession(tf.compat.v1.Session):
            """A Session that remembers the loss of the last training step
            (gpt-2-simple prints it rounded to two decimals)."""

            last_loss = None
            context = None  # the training graph's input placeholder, seen in the first feed

            def run(self, fetches, *args, **kwargs):
                feed = kwargs.get("feed_dict") or (args[0] if args else None)
                if feed and self.context is None:  # [batch, tokens] of int32: the model's input
                    self.context = next((k for k in feed if getattr(k, "dtype", None) == tf.int32
                                         and getattr(k, "shape", None) is not None and k.shape.rank == 2), None)
                out = super().run(fetches, *args, **kwargs)
                if (isinstance(fetches, tuple) and isinstance(out, tuple) and len(out) in (2, 3)
                        and isinstance(out[-1], bytes)):  # (.., loss, summary)
                    try:
                        self.last_loss = float(out[-2])
                    except (TypeError, ValueError):
                        pass
                return out

        def hook(*args, **kwargs):
            global _stop_requested
            builtins.print(*args, **kwargs)
            if not args:
                return
            first = args[0]
            if first == "Loading checkpoint" and len(args) > 1 and not state["training"]:
                emit({"event": "phase", "phase": "loading", "checkpoint": os.path.basename(str(args[1]))})
            elif first == "dataset has" and len(args) > 1:
                emit({"event": "dataset", "tokens": int(args[1])})
            elif first == "Training...":
                state["training"] = True
                emit({"event": "phase", "phase": "finetuning"})
            elif first == "Saving" and len(args) > 1:
                m = _SAVE_LINE.search(str(args[1]))
                if m:
                    state["pending_save"] = int(m.group(1))
            elif isinstance(first, str) and _SAMPLE_HEADER.match(first):
                # gpt-2-simple's sample_every: the text after its header, up to the first end.
                emit({"event": "sample", "step": state["step"], "text": clean_sample(_SAMPLE_HEADER.sub("", first))})
            elif first == "interrupted":
                # gpt-2-simple is about to save: a second SIGINT must not break that
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                state["interrupted"] = True
            elif isinstance(first, str):
                m = _STEP_LINE.match(first)
                if m:
                    state["step"] = int(m.group(1))
                    if state["pending_save"] is not None:  # the save before this step completed
                        state["saved"] = state["pending_save"]
                        state["pending_save"] = None
                    loss = sess.last_loss if sess.last_loss is not None else float(m.group(3))
                    a0, a1 = state["avg"]
                    state["avg"] = (a0 * 0.99 + loss, a1 * 0.99 + 1.0)
                    avg = state["avg"][0] / state["avg"][1]
                    # The child keeps the loss history itself: a parent killed mid-run
                    # would miss the steps between its death and this child's last save.
                    with open(os.path.join(spec["checkpoint_dir"], spec["run_name"], "losses.jsonl"), "a",
                              encoding="utf-8") as f:
                        f.write(json.dumps([int(m.group(1)), round(float(loss), 5), round(float(avg), 5)]) + "\n")
                    emit({"event": "step", "step": int(m.group(1)), "time": float(m.group(2)),
                          "loss": loss, "avg": avg, "saved_step": state["saved"]})
                    step = int(m.group(1))
                    if validation.wanted(step):
                        val = validation.loss(sess)
                        builtins.print(f"[{step}] validation loss={val:.4f}", file=sys.stderr)
                        with open(os.path.join(spec["checkpoint_dir"], spec["run_name"], "val_losses.jsonl"), "a",
                                  encoding="utf-8") as f:
                            f.write(json.dumps([step, round(val, 5)]) + "\n")
                        if state["best_val"] is None or val < state["best_val"]:
                            state["best_val"], state["worse"] = val, 0
                        else:
                            state["worse"] += 1
                        emit({"event": "validation", "step": step, "val_loss": val, "best": state["best_val"]})
                        if patience and state["worse"] >= patience:  # it stopped improving: stop as a cancel does
                            state["early_stop"] = True
                            _stop_requested = True
                    if _stop_requested:  # between two steps, outside TensorFlow: gpt-2-simple saves and stops
                        raise KeyboardInterrupt

        validation = Validation(spec)
        gpt_2.print = hook  # the module's prints resolve here before builtins

        config = tf.compat.v1.ConfigProto()
        config.gpu_options.allow_growth = True
        config.graph_options.rewrite_options.layout_optimizer = rewriter_config_pb2.RewriterConfig.OFF
        sess = TrackingSession(config=config)

        if spec["steps"] > 0:
            _in_training_loop = True
            gpt_2.finetune(
                sess,
                dataset=spec["dataset"],
                steps=spec["steps"],
                model_name=spec["model_name"],
                model_dir=spec["model_dir"],
                batch_size=spec["batch_size"],
                learning_rate=spec["learning_rate"],
                accumulate_gradients=spec["accumulate_gradients"],
                restore_from=spec["restore_from"],
                run_name=spec["run_name"],
                checkpoint_dir=spec["checkpoint_dir"],
                # Its samples also go to ./samples (the run folder, our cwd).
                sample_every=spec.get("sample_every") or 10**9,
                sample_length=int(spec.get("sample_length", 60)),
                save_every=spec["save_every"],
                print_every=spec.get("print_every", 1),
                max_checkpoints=1,
                use_memory_saving_gradients=False,  # calls exit() under TF 2
                only_train_transformer_layers=False,
                overwrite=False,
            )
            _in_training_loop = False
            if state["pending_save"] is not None:
                state["saved"] = state["pending_save"]
                state["pending_save"] = None
        # From here on a cancel changes nothing: the checkpoint is saved.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        state["training"] = True
        emit({"event": "trained", "step": state["saved"], "interrupted": state["interrupted"],
              "early_stop": state["early_stop"]})

        samples: list[str] = []
        n = int(spec.get("sample_count", 0))
        if n > 0 and (not state["interrupted"] or state["early_stop"]):
            emit({"event": "phase", "phase": "sampling"})
            t0 = time.time()
            sess = gpt_2.reset_session(sess)  # load_gpt2 into the finetune graph fails
            gpt_2.load_gpt2(sess, run_name=spec["run_name"], checkpoint_dir=spec["checkpoint_dir"])
            texts = gpt_2.generate(
                sess,
                run_name=spec["run_name"],
                checkpoint_dir=spec["checkpoint_dir"],
                nsamples=n,
                batch_size=n,
                length=int(spec.get("sample_length", 60)),
                temperature=1.0,
                top_p=0.9,
                prefix=START_TOKEN,
                truncate=END_TOKEN,
                include_prefix=False,
                return_as_list=True,
            )
            samples = [clean_sample(t) for t in texts]
            builtins.print(f"sampled {n} in {time.time() - t0:.2f}s", file=sys.stderr)
        sess.close()
        emit({"event": "done", "samples": samples, "step": state["saved"],
              "interrupted": state["interrupted"]})
        return 0
    except KeyboardInterrupt:
        # SIGINT before gpt-2-simple's training loop (loading, building the graph).
        emit({"event": "trained", "step": state["saved"], "interrupted": True, "early": True})
        emit({"event": "done", "samples": [], "step": state["saved"], "interrupted": True})
        return 0
    except BaseException as e:  # noqa: BLE001 - report everything, including SystemExit
        traceback.print_exc()  # the whole story, TensorFlow's node stacks included
        short = short_error(e)
        # ...and a short one last, which is what the parent shows from the log's tail
        print("\n=== training failed ===\nTraceback (most recent call last):\n"
              + "".join(traceback.format_tb(e.__traceback__, limit=-6))
              + f"{type(e).__name__}: {short}", file=sys.stderr, flush=True)
        emit({"event": "error", "type": type(e).__name__, "message": short})
        return 1


if __name__ == "__main__":
    sys.exit(main())
