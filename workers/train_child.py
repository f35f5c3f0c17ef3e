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
import re
import signal
import sys
import threading
import time
import traceback

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
_STEP_LINE = re.compile(r"^\[(\d+) \| ([\d.]+)\] loss=([-\d.naif]+) avg=([-\d.naif]+)")
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
             "avg": (0.0, 0.0), "training": False}
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

            def run(self, fetches, *args, **kwargs):
                out = super().run(fetches, *args, **kwargs)
                if (isinstance(fetches, tuple) and isinstance(out, tuple) and len(out) in (2, 3)
                        and isinstance(out[-1], bytes)):  # (.., loss, summary)
                    try:
                        self.last_loss = float(out[-2])
                    except (TypeError, ValueError):
                        pass
                return out

        def hook(*args, **kwargs):
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
            elif first == "interrupted":
                # gpt-2-simple is about to save: a second SIGINT must not break that
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                state["interrupted"] = True
            elif isinstance(first, str):
                m = _STEP_LINE.match(first)
                if m:
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
                    if _stop_requested:  # between two steps, outside TensorFlow: gpt-2-simple saves and stops
                        raise KeyboardInterrupt

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
                sample_every=10**9,  # its samples go to ./samples; we sample at the end
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
        emit({"event": "trained", "step": state["saved"], "interrupted": state["interrupted"]})

        samples: list[str] = []
        n = int(spec.get("sample_count", 0))
        if n > 0 and not state["interrupted"]:
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
