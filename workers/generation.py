"""Generation service: loaded models, sampling, filtering.

``GenerationService(worker_dir)`` keeps up to ``max_loaded`` personas'
samplers loaded (least recently used goes first), reloads one when its
working checkpoint on disk changed (a training run finished), and turns
``generate(persona, n)`` into batches of samples until ``n`` candidates have
survived the filters or an attempt cap is reached.

Training posts for the copy filters come from
``<worker_dir>/datasets/<persona>/dataset.csv``. Without that file a
candidate could be a real post word for word and nothing would notice, so
``generate`` refuses (``BadInput``) unless ``allow_missing_dataset=True``,
in which case the verbatim and near-copy filters are skipped and the result
says so (``"copy_check": "skipped"``).
"""
from __future__ import annotations

import math
import os
import random
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

from core.contract import BadInput, persona_label, check_persona_key
from core.mentions import check_mode
from workers.filters import END, FILTERS, Blocklist, NearCopyIndex, filter_candidates, normalize

DEFAULT_BATCH = 20  # the seed notebook's batch_size
# Posts harvested per sample (see workers.sampler): the stream goes on after
# a post ends, as in the training data, until `length` tokens.
DEFAULT_POSTS_PER_SAMPLE = 8
ATTEMPTS_PER_CANDIDATE = 10  # give up after sampling 10 x n streams (at least one batch)
MAX_N = 1000
MAX_PROMPT_CHARS = 200


def _checkpoint_dir(worker_dir: Path, persona: str) -> Path:
    return Path(worker_dir) / "checkpoint" / persona


def _checkpoint_signature(path: Path) -> tuple | None:
    """Changes whenever a training run installs a new working checkpoint."""
    try:
        st = path.stat()
        index = (path / "checkpoint").read_text(encoding="utf-8")
        ck = (path / "checkpoint").stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, ck.st_mtime_ns, index)


class _Dataset:
    def __init__(self, posts: list[str]):
        self.posts = posts
        self.verbatim = {normalize(p) for p in posts}
        self.index = NearCopyIndex(posts)


class GenerationService:
    def __init__(self, worker_dir: Path, max_loaded: int = 2, *, threads: int | None = None,
                 seed: int | None = None, batch_size: int = DEFAULT_BATCH,
                 posts_per_sample: int = DEFAULT_POSTS_PER_SAMPLE):
        self.worker_dir = Path(worker_dir)
        self.max_loaded = max(1, int(max_loaded))
        self.threads = threads
        self.seed = seed
        self.batch_size = batch_size
        self.posts_per_sample = posts_per_sample
        self._samplers: OrderedDict[str, tuple[tuple, object]] = OrderedDict()
        self._datasets: dict[str, tuple[tuple, _Dataset]] = {}
        self._lock = threading.RLock()
        self.loads = 0  # models loaded so far (tests and /status)

    # -- models -------------------------------------------------------------

    def sampler(self, persona: str):
        """The persona's loaded sampler (loading or reloading it if needed);
        its fixed-size loop is built for the service's ``batch_size``."""
        from workers.sampler import Sampler

        persona = check_persona_key(persona)
        path = _checkpoint_dir(self.worker_dir, persona)
        sig = _checkpoint_signature(path)
        for _ in range(20):  # a training run may be swapping the directory right now
            if sig is not None or not (path.parent / f"{persona}.old").exists():
                break
            time.sleep(0.05)
            sig = _checkpoint_signature(path)
        with self._lock:
            cached = self._samplers.get(persona)
            if cached is not None and cached[0] == sig and sig is not None:
                self._samplers.move_to_end(persona)
                return cached[1]
            if cached is not None:
                self._samplers.pop(persona)[1].close()
            if sig is None:
                raise BadInput(f"{persona_label(persona)} has no trained model yet: train it first (/train {persona_label(persona)})")
            try:
                sampler = Sampler(path, threads=self.threads, seed=self.seed, batch_size=self.batch_size)
            except FileNotFoundError:
                raise BadInput(f"{persona_label(persona)} has no usable checkpoint: train it first (/train {persona_label(persona)})") from None
            self.loads += 1
            self._samplers[persona] = (sig, sampler)
            while len(self._samplers) > self.max_loaded:
                _, (_, old) = self._samplers.popitem(last=False)
                old.close()
            return sampler

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._samplers)

    def unload(self, persona: str | None = None) -> None:
        with self._lock:
            names = [persona] if persona else list(self._samplers)
            for name in names:
                item = self._samplers.pop(name, None)
                if item is not None:
                    item[1].close()

    close = unload

    # -- datasets -----------------------------------------------------------

    def _dataset(self, persona: str) -> _Dataset | None:
        from workers.datasets import dataset_dir, load_texts

        csv_path = dataset_dir(self.worker_dir, persona) / "dataset.csv"
        try:
            st = csv_path.stat()
        except OSError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._datasets.get(persona)
            if cached is not None and cached[0] == key:
                return cached[1]
        data = _Dataset(load_texts(self.worker_dir, persona))
        with self._lock:
            self._datasets[persona] = (key, data)
        return data

    # -- generate -------------------------------------------------------------

    def generate(
        self,
        persona: str,
        n: int,
        *,
        temperature: float = 1.0,
        top_p: float = 0.9,
        length: int = 200,
        platforms: Sequence[str] = ("x",),
        blocklist: Sequence[str] = (),
        earlier_candidates: Sequence[str] = (),
        batch_size: int | None = None,
        posts_per_sample: int | None = None,
        max_samples: int | None = None,
        allow_missing_dataset: bool = False,
        prompt: str = "",
        top_k: int = 0,
        seed: int | None = None,
        mentions: str = "defuse",
    ) -> dict:
        """Sample until ``n`` candidates survive the filters.

        Returns ``{"candidates": [{"text", "settings"}], "dropped": {filter:
        count}, "generated": post attempts sampled (= kept + dropped +
        surplus), "samples": streams sampled, "finished": attempts that
        ended, "tokens": tokens kept, "token_slots": batch rows x loop
        steps (what was computed), "steps": [loop steps per batch],
        "batches", "seconds", "sample_seconds" (inside TensorFlow),
        "load_seconds", "stopped": "enough" | "attempt_cap",
        "surplus": survivors beyond n (not returned), "copy_check":
        "dataset" | "skipped", "checkpoint"}``.

        The attempt cap: at most ``max_samples`` sampled streams (default
        ``10 * n``, at least one batch); a model that rarely produces a
        usable post stops there with fewer than ``n`` candidates.

        ``prompt``: every candidate starts with it (one post per stream).
        ``seed``: the same seed and arguments give the same candidates (each
        batch seeded from it); without one, a random seed, in ``settings``.
        ``mentions``: ``drop`` filters out candidates with an @mention.
        """
        with self._lock:  # one request at a time: TensorFlow already uses every core
            return self._generate(persona, n, temperature=temperature, top_p=top_p, length=length,
                                  platforms=platforms, blocklist=blocklist,
                                  earlier_candidates=earlier_candidates, batch_size=batch_size,
                                  posts_per_sample=posts_per_sample, max_samples=max_samples,
                                  allow_missing_dataset=allow_missing_dataset, prompt=prompt, top_k=top_k,
                                  seed=seed, mentions=mentions)

    def _generate(self, persona, n, *, temperature, top_p, length, platforms, blocklist,
                  earlier_candidates, batch_size, posts_per_sample, max_samples,
                  allow_missing_dataset, prompt, top_k, seed, mentions) -> dict:
        from core.textlimits import limit_for

        t0 = time.perf_counter()
        persona = check_persona_key(persona)
        n = _int("n", n, 1, MAX_N)
        length = _int("length", length, 1, 1023)
        batch_size = _int("batch_size", batch_size if batch_size is not None else self.batch_size, 1, 512)
        posts = _int("posts_per_sample", posts_per_sample if posts_per_sample is not None
                     else self.posts_per_sample, 1, 1000)
        try:
            temperature = float(temperature)
            top_p = float(top_p)
        except (TypeError, ValueError):
            raise BadInput("temperature and top_p must be numbers") from None
        if not (0 < temperature <= 10) or math.isnan(temperature):
            raise BadInput(f"temperature must be above 0 and at most 10, not {temperature}")
        if not (0 <= top_p <= 1):
            raise BadInput(f"top_p must be from 0 to 1, not {top_p}")
        top_k = _int("top_k", top_k, 0, 1000)
        prompt = str(prompt or "")
        if len(prompt) > MAX_PROMPT_CHARS or "<|" in prompt:
            raise BadInput(f"the prompt must be at most {MAX_PROMPT_CHARS} characters, without <| |> markers")
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        seed = _int("seed", seed, 0, 2**62)
        mentions_mode = check_mode(mentions)
        try:
            checker = limit_for(platforms)
        except ValueError as e:
            raise BadInput(str(e)) from None
        cap = max(batch_size, ATTEMPTS_PER_CANDIDATE * n) if max_samples is None else _int(
            "max_samples", max_samples, 1, 1_000_000)

        data = self._dataset(persona)
        if data is None and not allow_missing_dataset:
            raise BadInput(
                f"{persona_label(persona)} has no dataset on this worker, so candidates cannot be checked against the "
                f"real posts (verbatim and near copies): import the posts again (/train {persona_label(persona)})"
            )
        t_load = time.perf_counter()
        sampler = self.sampler(persona)
        load_seconds = time.perf_counter() - t_load

        give_up_weighted = 280 if "x" in checker.platforms else None
        give_up_graphemes = 300 if "bluesky" in checker.platforms else None
        settings = {
            "temperature": temperature, "top_p": top_p, "top_k": top_k, "length": length, "seed": seed,
            "prefix": sampler.prefix, "posts_per_sample": 1 if prompt else posts,
            "checkpoint": os.path.basename(sampler.checkpoint),
        }
        if prompt:
            settings["prompt"] = prompt
        block = Blocklist(list(blocklist))
        dropped = {name: 0 for name in FILTERS}
        kept: list[str] = []
        seen = list(earlier_candidates)
        generated = finished = samples = tokens = slots = 0
        run_seconds = 0.0
        steps: list[int] = []
        while len(kept) < n and samples < cap:
            need = n - len(kept)
            # Streams for this batch: from the survivors per stream so far (a
            # stream gives about one post per `length / post length` tokens when
            # harvesting), with a margin; a nearly full batch is made full, as
            # the sampler's fixed-size loop is faster per token.
            per_stream = len(kept) / samples if samples and kept else 1.0
            bs = math.ceil(need / per_stream * 1.25)
            if bs >= 0.75 * batch_size:
                bs = batch_size
            bs = max(1, min(batch_size, cap - samples, bs))
            batch = sampler.sample(bs, length=length, temperature=temperature, top_p=top_p, top_k=top_k,
                                   posts=posts, prompt=prompt, seed=seed + len(steps),  # one seed per batch
                                   give_up_weighted=give_up_weighted, give_up_graphemes=give_up_graphemes)
            samples += bs
            steps.append(batch.steps)
            tokens += batch.tokens
            slots += bs * batch.steps
            run_seconds += batch.run_seconds
            finished += batch.finished
            generated += len(batch.texts)
            texts = batch.texts
            if prompt:  # the sampler continued the prompt: a continuation that is only an end is no post
                texts = [prompt + t if t.replace(END, "").strip() else t for t in texts]
            result = filter_candidates(
                texts,
                training_posts=data.posts if data else (),
                earlier_candidates=seen,
                platforms=checker.platforms,
                blocklist=block,
                near_copy_index=data.index if data else _EMPTY_INDEX,
                verbatim_keys=data.verbatim if data else set(),
                mentions=mentions_mode,
            )
            for k, v in result.dropped.items():
                dropped[k] += v
            kept.extend(result.candidates)
            seen.extend(result.candidates)
        surplus = max(0, len(kept) - n)
        return {
            "persona": persona,
            "candidates": [{"text": t, "settings": dict(settings)} for t in kept[:n]],
            "dropped": dropped,
            "generated": generated,
            "finished": finished,
            "samples": samples,
            "tokens": tokens,
            "token_slots": slots,
            "sample_seconds": run_seconds,
            "steps": steps,
            "batches": len(steps),
            "requested": n,
            "surplus": surplus,
            "stopped": "enough" if len(kept) >= n else "attempt_cap",
            "copy_check": "dataset" if data else "skipped",
            "checkpoint": settings["checkpoint"],
            "load_seconds": load_seconds,
            "seconds": time.perf_counter() - t0,
        }


_EMPTY_INDEX = NearCopyIndex(())


def _int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise BadInput(f"{name} must be a whole number from {lo} to {hi}")
    try:
        iv = int(value)
        if iv != value:
            raise ValueError
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a whole number from {lo} to {hi}, not {value!r}") from None
    if not lo <= iv <= hi:
        raise BadInput(f"{name} must be from {lo} to {hi}, not {iv}")
    return iv
