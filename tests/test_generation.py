"""Generation with the tiny model on CPU: sampler, early stopping, service.

One tiny model is trained for a few dozen steps (gibberish, but it writes
the markers); two more are crafted so that their behaviour is certain: one
always writes gpt-2-simple's end token, one never does.
"""
import json
import os
import random
import shutil
from pathlib import Path

import pytest

from core.contract import BadInput
from core.textlimits import fits
from workers.datasets import texts_to_csv
from workers.filters import END, FILTERS, START
from workers.sampler import _final_state, _marker_tables, split_posts

pytestmark = pytest.mark.timeout(300)


# --- pure Python: the marker automaton and the post splitter ----------------


def test_marker_tables_match_a_plain_search():
    toks = [b"<|", b"end", b"of", b"text", b"|>", b".<|", b"endoftext", b"|>\n", b"<|endoftext|>",
            b"x<", b"<", b"|", b"e", b"ndoftext|", b">", b"a", b" b", b"<|end", b"oftext|><|", b"\n"]
    pat = END.encode()
    trans, hit = _marker_tables(toks, pat)
    rng = random.Random(3)
    for _ in range(3000):
        seq = [rng.randrange(len(toks)) for _ in range(rng.randint(1, 12))]
        state, first = 0, None
        for i, t in enumerate(seq):
            if hit[t, state] and first is None:
                first = i
            state = trans[t, state]
        data = b""
        expect = None
        for i, t in enumerate(seq):
            data += toks[t]
            if expect is None and pat in data:
                expect = i
        assert first == expect, [toks[t] for t in seq]
        assert state == _final_state(pat, data.rsplit(pat, 1)[-1]) or pat in data[-len(pat):]


def test_split_posts():
    text = "first" + END + "\n" + START + "second" + END + "\n" + START + "third, cut"
    assert split_posts(text) == ["first" + END, "second" + END, "third, cut"]
    assert split_posts("abandoned " + START + "kept" + END + "\n" + START) == ["abandoned ", "kept" + END]
    assert split_posts("x" + END + "\n<|star") == ["x" + END]


# --- models ------------------------------------------------------------------


def _craft(model_dir: Path, out_dir: Path, token_id: int) -> Path:
    """A checkpoint (gpt-2-simple's format) whose model writes ``token_id``
    at every step, whatever came before."""
    import numpy as np
    import tensorflow as tf
    from gpt_2_simple.src import model as gmodel

    hp = gmodel.default_hparams()
    hp.override_from_dict(json.loads((model_dir / "hparams.json").read_text()))
    graph = tf.Graph()
    with graph.as_default():
        gmodel.model(hparams=hp, X=tf.compat.v1.placeholder(tf.int32, [1, None]))
        var = {v.op.name: v for v in tf.compat.v1.global_variables()}
        saver = tf.compat.v1.train.Saver(var_list=list(var.values()))
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, tf.train.latest_checkpoint(str(model_dir)))
            wte = sess.run(var["model/wte"])
            u = np.random.default_rng(0).normal(size=hp.n_embd).astype(np.float32)
            u /= np.linalg.norm(u)
            wte[token_id] = 10 * u
            var["model/wte"].load(wte, sess)
            var["model/ln_f/g"].load(np.zeros(hp.n_embd, np.float32), sess)
            var["model/ln_f/b"].load(10 * u, sess)
            out_dir.mkdir(parents=True)
            saver.save(sess, str(out_dir / "model"), global_step=1)
    for f in ("hparams.json", "encoder.json", "vocab.bpe"):
        shutil.copyfile(model_dir / f, out_dir / f)
    return out_dir


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """A worker directory with a persona ``jokes`` trained 40 steps on the
    pyjokes jokes, and crafted personas ``ender`` and ``rambler``."""
    import pyjokes

    from workers.finetune import run_training

    wd = tmp_path_factory.mktemp("worker")
    posts = list(pyjokes.get_jokes("en", "all"))
    for persona in ("jokes", "ender", "rambler"):
        d = wd / "datasets" / persona
        d.mkdir(parents=True)
        (d / "dataset.csv").write_bytes(texts_to_csv(posts))
    run_training(wd, "jokes", steps=40, model="tiny", job_id="t", on_event=lambda e: None,
                 should_cancel=lambda: False, sample_count=0)
    tiny = wd / "models" / "tiny"
    enc = json.loads((tiny / "encoder.json").read_text())
    _craft(tiny, wd / "checkpoint" / "ender", enc[END])
    _craft(tiny, wd / "checkpoint" / "rambler", enc["a"])
    return wd


@pytest.fixture(scope="module")
def service(worker):
    from workers.generation import GenerationService

    svc = GenerationService(worker, max_loaded=2, seed=0)
    yield svc
    svc.close()


def test_candidates_are_clean_finished_and_fit(service):
    res = service.generate("jokes", 8, platforms=("x", "bluesky"))
    assert set(res["dropped"]) == set(FILTERS)
    assert res["generated"] == sum(res["dropped"].values()) + len(res["candidates"]) + res["surplus"]
    assert res["stopped"] in ("enough", "attempt_cap")
    assert res["copy_check"] == "dataset"
    assert len(res["candidates"]) <= 8
    for c in res["candidates"]:
        text = c["text"]
        assert START not in text and END not in text
        assert text == text.strip() and text
        assert fits(text, "x") and fits(text, "bluesky")
        assert c["settings"]["temperature"] == 1.0 and c["settings"]["top_p"] == 0.9
    assert all(s <= 200 for s in res["steps"])


def test_each_sample_stops_at_its_own_end(service):
    sampler = service.sampler("jokes")
    for posts in (1, 2):
        batch = sampler.sample(8, length=120, posts=posts)
        for pieces in batch.per_sample:
            ended = [p for p in pieces if p.endswith(END)]
            assert len(ended) <= posts
            if len(ended) == posts:  # done: nothing sampled after its last end marker is kept
                assert pieces[-1].endswith(END)


def test_graph_is_built_once(service):
    service.generate("jokes", 2, length=40)
    sampler = service.sampler("jokes")
    ops = sampler.op_count
    loads = service.loads
    for _ in range(3):
        service.generate("jokes", 3, length=40, temperature=0.8, top_p=0.95, batch_size=3)
        service.generate("jokes", 2, length=30, top_p=0.0, batch_size=4, posts_per_sample=1)
        sampler.sample(sampler.batch_size, length=20)  # the fixed-size loop
        sampler.sample(5, length=20, posts=3)  # the any-size loop
    assert service.sampler("jokes") is sampler
    assert sampler.op_count == ops
    assert sampler.graph.finalized
    assert service.loads == loads


def test_early_stop_when_every_sample_has_ended(service):
    sampler = service.sampler("ender")
    batch = sampler.sample(4, length=200)
    assert batch.steps == 1 and batch.finished == 4
    assert batch.texts == [END] * 4
    batch = sampler.sample(4, length=200, posts=3)  # harvesting: three posts each, then stop
    assert batch.steps == 3 and batch.finished == 12
    res = service.generate("ender", 2, length=200, posts_per_sample=1, max_samples=6)
    assert res["steps"] and max(res["steps"]) == 1  # not 200
    assert res["dropped"]["empty"] == res["generated"] == 6
    assert res["candidates"] == [] and res["stopped"] == "attempt_cap"


def test_unfinished_samples_run_to_length_or_give_up(service):
    sampler = service.sampler("rambler")
    batch = sampler.sample(3, length=30)
    assert batch.steps == 30 and batch.finished == 0
    assert all(not t.endswith(END) for t in batch.texts)
    batch = sampler.sample(3, length=200, give_up_graphemes=20)  # 'a' per token: hopeless at 21
    assert batch.steps == 21 and batch.gave_up == 3
    res = service.generate("rambler", 1, length=50, max_samples=3)
    assert res["candidates"] == [] and res["dropped"]["unfinished"] == res["generated"] == 3


def test_lru_and_reload_after_training(worker, service):
    from workers.generation import GenerationService

    svc = GenerationService(worker, max_loaded=1, seed=1)
    try:
        svc.sampler("ender")
        svc.sampler("rambler")
        assert svc.loaded() == ["rambler"]
        first = svc.sampler("rambler")
        assert svc.sampler("rambler") is first and svc.loads == 2
        # A finished training run swaps the working checkpoint directory.
        path = worker / "checkpoint" / "rambler"
        fresh = worker / "checkpoint" / "rambler.new"
        shutil.copytree(path, fresh)
        os.rename(path, worker / "checkpoint" / "rambler.old")
        os.rename(fresh, path)
        shutil.rmtree(worker / "checkpoint" / "rambler.old")
        assert svc.sampler("rambler") is not first and svc.loads == 3
    finally:
        svc.close()


def test_bad_inputs(worker, service):
    with pytest.raises(BadInput, match="train"):
        service.generate("nobody", 1)
    with pytest.raises(BadInput):
        service.generate("../etc", 1)
    with pytest.raises(BadInput):
        service.generate("jokes", 0)
    with pytest.raises(BadInput):
        service.generate("jokes", 1, temperature=0)
    with pytest.raises(BadInput, match="platform"):
        service.generate("jokes", 1, platforms=("myspace",))


def test_missing_dataset_refuses_unless_allowed(worker, service):
    csv_path = worker / "datasets" / "ender" / "dataset.csv"
    saved = csv_path.read_bytes()
    csv_path.unlink()
    try:
        with pytest.raises(BadInput, match="dataset"):
            service.generate("ender", 1, max_samples=2)
        res = service.generate("ender", 1, max_samples=2, allow_missing_dataset=True)
        assert res["copy_check"] == "skipped"
    finally:
        csv_path.write_bytes(saved)


def test_the_same_seed_gives_the_same_candidates(service):
    sampler = service.sampler("jokes")
    first = sampler.sample(6, length=40, seed=5, top_k=40)
    assert sampler.sample(6, length=40, seed=5, top_k=40).texts == first.texts
    assert sampler.sample(6, length=40, seed=6, top_k=40).texts != first.texts
    a = service.generate("jokes", 4, seed=1234, length=60, max_samples=80)
    b = service.generate("jokes", 4, seed=1234, length=60, max_samples=80)
    assert a["candidates"], "the tiny model wrote no usable post in 80 samples"
    assert a["candidates"] == b["candidates"] and a["dropped"] == b["dropped"]
    assert a["candidates"][0]["settings"]["seed"] == 1234
    # Without a seed, one is drawn and recorded, so any candidate can be made again.
    c = service.generate("jokes", 2, length=60, max_samples=40)
    seeds = {x["settings"]["seed"] for x in c["candidates"]}
    assert len(seeds) <= 1 and all(isinstance(s, int) for s in seeds)


def test_a_prompt_starts_every_candidate(service):
    res = service.generate("jokes", 4, prompt="Why did the", length=60, max_samples=80, seed=3)
    assert res["candidates"], "the tiny model wrote no usable post in 80 samples"
    for c in res["candidates"]:
        assert c["text"].startswith("Why did the")
        assert c["settings"]["prompt"] == "Why did the"
    with pytest.raises(BadInput, match="prompt"):
        service.generate("jokes", 1, prompt="x" * 201)


# --- fidelity to gpt-2-simple: the same model, the same nucleus ---------------


def _gpt_2_simple_greedy(checkpoint_dir: Path, context: list[int], rows: int, length: int):
    """gpt-2-simple's own ``sample_sequence`` with ``top_k=1`` (its argmax)."""
    import numpy as np
    import tensorflow as tf
    from gpt_2_simple.src import model as gmodel
    from gpt_2_simple.src import sample as gsample

    hp = gmodel.default_hparams()
    hp.override_from_dict(json.loads((checkpoint_dir / "hparams.json").read_text()))
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
        ctx = tf.compat.v1.placeholder(tf.int32, [rows, None])
        out = gsample.sample_sequence(hparams=hp, length=length, context=ctx, batch_size=rows, top_k=1)
        saver = tf.compat.v1.train.Saver(var_list=tf.compat.v1.global_variables("model"))
        saver.restore(sess, tf.train.latest_checkpoint(str(checkpoint_dir)) or str(checkpoint_dir / "model.ckpt"))
        tokens = sess.run(out, {ctx: np.tile(np.asarray(context, np.int32), (rows, 1))})
    return tokens[:, len(context):]  # sample_sequence returns the context too


def test_the_sampler_writes_what_gpt_2_simple_s_model_writes(worker):
    """Greedy continuations (top_k=1) are a function of the logits alone, so
    any error in our per-token transformer or its cache shows as a different
    text. Both loops (the fixed-size one and the any-size one) are checked,
    on the trained model and on the untrained one (random weights: nearly
    even logits, so the smallest error changes its argmax)."""
    from workers.sampler import Sampler

    prompt = "Why did the"
    for checkpoint_dir in (worker / "checkpoint" / "jokes", worker / "models" / "tiny"):
        sampler = Sampler(checkpoint_dir, batch_size=4)
        context = sampler.prefix_tokens + sampler.enc.encode(prompt)
        for rows in (sampler.batch_size, 3):
            reference = _gpt_2_simple_greedy(checkpoint_dir, context, rows, 40)
            text = sampler.enc.decode(reference[0].tolist())
            if END in text:  # ours stops each sample at its end marker
                text = text[: text.index(END) + len(END)]
            batch = sampler.sample(rows, length=40, prompt=prompt, top_k=1, seed=9)
            assert batch.per_sample == [split_posts(text)] * rows
        sampler.close()


def _nucleus_draws(logits_row, top_p: float, draws: int):
    """``draws`` tokens from ``_nucleus_sample`` (one row each) and
    gpt-2-simple's nucleus of the same logits (``top_p_logits``)."""
    import numpy as np
    import tensorflow as tf
    from gpt_2_simple.src import sample as gsample

    from workers.sampler import _nucleus_sample

    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
        logits = tf.constant(np.tile(np.asarray(logits_row, np.float32), (draws, 1)))
        tokens = _nucleus_sample(tf, gsample, logits, top_p, tf.constant([7, 0], tf.int64))
        kept = gsample.top_p_logits(logits[:1], p=top_p)[0] > -1e9
        tokens, kept = sess.run([tokens, kept])
    return tokens, set(np.flatnonzero(kept).tolist())


def test_nucleus_sampling_draws_from_gpt_2_simple_s_nucleus_in_proportion():
    import numpy as np

    probs = np.array([0.5, 0.3, 0.15, 0.05])  # at 0.9 the nucleus is the first three
    tokens, nucleus = _nucleus_draws(np.log(probs), 0.9, 6000)
    assert nucleus == {0, 1, 2}
    assert set(tokens.tolist()) == nucleus
    share = np.bincount(tokens, minlength=4)[:3] / len(tokens)
    assert np.abs(share - probs[:3] / probs[:3].sum()).max() < 0.02
    # Ties at the edge: gpt-2-simple keeps every token with the edge's logit.
    tokens, nucleus = _nucleus_draws([2.0, 2.0, 2.0, 0.0, 0.0], 0.5, 3000)
    assert nucleus == {0, 1, 2} and set(tokens.tolist()) == nucleus


def test_nucleus_sampling_falls_back_to_the_sort_when_no_draw_is_in_it():
    """A nucleus of one token holding 5% of the mass: most rows' four draws
    all miss it, and the sort decides those rows."""
    import numpy as np

    logits = np.zeros(50)
    logits[17] = np.log(0.05 * 49 / 0.95)  # token 17: 5%, the other 49 share 95%
    tokens, nucleus = _nucleus_draws(logits, 0.01, 400)
    assert nucleus == {17}
    assert set(tokens.tolist()) == {17}
