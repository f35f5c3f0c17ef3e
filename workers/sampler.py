"""A GPT-2 sampler that loads a checkpoint once and builds its graph once.

gpt-2-simple's ``generate()`` builds a new sampling graph on every call (the
graph grows and every call gets slower), bakes temperature, top_p, batch
size and length into it, and always runs ``length`` steps. Here:

* one ``tf.Graph`` and ``tf.compat.v1.Session`` per loaded model (several
  can coexist), the graph built at load and then finalized, so no call can
  add an op;
* the transformer is gpt-2-simple's: its ``model.model`` over the context,
  and for each new token its own ``norm``, ``conv1d`` and ``mlp`` on the
  same variables, with the key/value cache in one tensor that grows once a
  step (its ``model(past=...)`` copies the whole cache about four times a
  token); the weights are restored with ``tf.compat.v1.train.Saver`` from
  the same checkpoints and read once per call, not once per token;
* the nucleus is gpt-2-simple's (``sample.top_p_logits``), sampled without
  sorting the vocabulary at every step (``_nucleus_sample``);
* temperature, top_p (0 = off, as in gpt-2-simple), top_k (0 = off), the
  batch size (rows of the fed context), the length, the posts per sample,
  a prompt (the context after the start marker) and the random seed are fed
  at run time; sampling is stateless (``stateless_categorical`` seeded by
  the call's seed and the step), so the same seed gives the same samples;
* the ``tf.while_loop`` stops as soon as every sample in the batch is done:
  it has produced its ``<|endoftext|>``, or (``give_up_*``, one post per
  sample) its current post is already certain to be over a platform's limit,
  so finishing it would be wasted work. "Certain" uses lower bounds that hold
  for any text: the post's ASCII non-space characters (graphemes, Bluesky)
  and the same with every word capped at 23 (X's weighted length, where a
  URL of any length counts 23); other characters count 0.

GPT-2's byte-level BPE has no single token for gpt-2-simple's
``<|startoftext|>`` / ``<|endoftext|>`` markers: finetuning encodes them as
text, so the model writes them as several tokens that depend on the
neighbouring characters (``.<|``, ``endoftext``, ``|>``). The loop therefore
tracks each sample with a small automaton over the bytes every token decodes
to (a KMP matcher for each marker, precomputed as ``[vocab, state]``
tables), which is exact whatever the tokenization.

Posts per sample (``posts``): with 1 (the seed's behaviour) a sample is done
after its first post. With more, a sample goes on past its end marker the
way the training data goes on (``\\n<|startoftext|>`` and the next post), and
every finished post is harvested, until ``posts`` posts or ``length``
tokens. Finetuning trains on exactly such streams of posts (1,024-token
windows of ``<|startoftext|>post<|endoftext|>`` rows), so the later posts
are samples of the same model, conditioned on the earlier ones.
"""
from __future__ import annotations

import bisect
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

START = "<|startoftext|>"
END = "<|endoftext|>"
BIG = 1 << 30
_WS = frozenset(b" \t\n\r\x0b\x0c")
WORD_CAP = 23  # X and Mastodon count any URL as 23 characters


@dataclass
class SampleBatch:
    """What one :meth:`Sampler.sample` call produced.

    ``texts``: the raw post attempts (see ``workers.filters``): each ends
    with ``<|endoftext|>`` when the model finished it. ``steps``: loop
    iterations run (at most ``length``); ``tokens``: tokens sampled that
    were kept (each sample up to the step it was done).
    """

    texts: list[str]
    samples: int
    steps: int
    tokens: int
    finished: int
    gave_up: int
    seconds: float
    run_seconds: float = 0.0  # inside the TensorFlow session only
    per_sample: list[list[str]] = field(default_factory=list)


# --- per-token tables ------------------------------------------------------


def _token_bytes(enc) -> list[bytes]:
    out = []
    for i in range(max(enc.decoder) + 1):
        s = enc.decoder.get(i, "")
        out.append(bytes(enc.byte_decoder.get(c, 0) for c in s))
    return out


def _marker_tables(toks: list[bytes], pattern: bytes) -> tuple[np.ndarray, np.ndarray]:
    """KMP over token bytes: ``trans[t, s]`` is the matcher's state (bytes of
    ``pattern`` matched as a suffix) after token ``t`` from state ``s``;
    ``hit[t, s]`` whether the pattern completed inside the token.

    Relies on ``pattern`` having its first byte nowhere else (true of both
    markers, whose only ``<`` is the first), so a partial match can only
    start at the last ``<`` and a state either continues or restarts.
    """
    L = len(pattern)
    first = pattern[:1]
    assert pattern.count(first) == 1

    def from_zero(tb: bytes) -> tuple[int, bool]:
        hit = pattern in tb
        k = tb.rfind(first)
        if k >= 0 and pattern.startswith(tb[k:]) and len(tb) - k < L:
            return len(tb) - k, hit
        return 0, hit

    V = len(toks)
    trans = np.zeros((V, L), dtype=np.int32)
    hit = np.zeros((V, L), dtype=bool)
    for t, tb in enumerate(toks):
        if first in tb:
            st, h = from_zero(tb)
            trans[t, :] = st
            hit[t, :] = h
    # States s > 0: only tokens that continue the partial match differ.
    by_bytes: dict[bytes, list[int]] = {}
    for t, tb in enumerate(toks):
        by_bytes.setdefault(tb, []).append(t)
    ordered = sorted((tb, t) for t, tb in enumerate(toks) if tb)
    keys = [tb for tb, _ in ordered]
    for s in range(1, L):
        rest = pattern[s:]
        for j in range(1, len(rest)):  # token is a strict continuation
            for t in by_bytes.get(rest[:j], ()):
                trans[t, s] = s + j
                hit[t, s] = False
        lo = bisect.bisect_left(keys, rest)  # token completes the pattern
        while lo < len(keys) and keys[lo].startswith(rest):
            t = ordered[lo][1]
            st, _ = from_zero(keys[lo][len(rest):])
            trans[t, s] = st
            hit[t, s] = True
            lo += 1
    return trans, hit


def _count_tables(toks: list[bytes]) -> np.ndarray:
    """Per token: [ascii non-space bytes, has whitespace, before the first
    whitespace, after the last, sum over inner words of min(len, 23)]."""
    out = np.zeros((len(toks), 5), dtype=np.int32)
    for t, tb in enumerate(toks):
        runs, cur, has_ws = [], 0, False
        for b in tb:
            if b in _WS:
                runs.append(cur)
                cur, has_ws = 0, True
            elif b < 128:
                cur += 1
        runs.append(cur)
        a = sum(runs)
        if has_ws:
            out[t] = (a, 1, runs[0], runs[-1], sum(min(r, WORD_CAP) for r in runs[1:-1]))
        else:
            out[t] = (a, 0, a, a, 0)
    return out


_TABLE_CACHE: dict[tuple, dict] = {}
_TABLE_LOCK = threading.Lock()


def token_tables(model_dir: Path, enc) -> dict:
    """The per-token tables of a vocabulary, cached per encoder file."""
    st = (Path(model_dir) / "encoder.json").stat()
    key = (str((Path(model_dir) / "encoder.json").resolve()), st.st_mtime_ns, st.st_size)
    with _TABLE_LOCK:
        if key not in _TABLE_CACHE:
            toks = _token_bytes(enc)
            te, he = _marker_tables(toks, END.encode())
            ts, hs = _marker_tables(toks, START.encode())
            _TABLE_CACHE[key] = {
                "end": (te + he.astype(np.int32) * 64).astype(np.int32),
                "start": (ts + hs.astype(np.int32) * 64).astype(np.int32),
                "counts": _count_tables(toks),
            }
        return _TABLE_CACHE[key]


def _final_state(pattern: bytes, data: bytes) -> int:
    k = data.rfind(pattern[:1])
    if k >= 0 and pattern.startswith(data[k:]) and len(data) - k < len(pattern):
        return len(data) - k
    return 0


# --- the sampler -------------------------------------------------------------


def latest_checkpoint(checkpoint_dir: Path) -> str | None:
    import tensorflow as tf

    return tf.train.latest_checkpoint(str(checkpoint_dir))


class Sampler:
    """A model loaded into its own graph and session, sampled many times.

    ``checkpoint_dir`` is a gpt-2-simple checkpoint directory (``checkpoint``
    index, ``model-N.*``, ``hparams.json``, ``encoder.json``, ``vocab.bpe``)
    or a base model directory (``model.ckpt``).
    """

    def __init__(self, checkpoint_dir: Path, *, prefix: str = START, threads: int | None = None,
                 seed: int | None = None, checkpoint: str | None = None, batch_size: int | None = 20):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        from gpt_2_simple.src import encoder as genc
        from gpt_2_simple.src import model as gmodel
        from gpt_2_simple.src import sample as gsample

        self.checkpoint_dir = Path(checkpoint_dir)
        self.prefix = prefix
        self.enc = genc.get_encoder(str(self.checkpoint_dir))
        self.hparams = gmodel.default_hparams()
        with open(self.checkpoint_dir / "hparams.json", encoding="utf-8") as f:
            self.hparams.override_from_dict(json.load(f))
        hp = self.hparams
        self.checkpoint = checkpoint or latest_checkpoint(self.checkpoint_dir)
        if not self.checkpoint:
            raise FileNotFoundError(f"no checkpoint in {self.checkpoint_dir}")
        self.prefix_tokens = self.enc.encode(prefix)
        if not self.prefix_tokens:
            raise ValueError("the prefix must encode to at least one token")
        prefix_bytes = prefix.encode("utf-8")
        self._end0 = _final_state(END.encode(), prefix_bytes)
        self._start0 = _final_state(START.encode(), prefix_bytes)
        tables = token_tables(self.checkpoint_dir, self.enc)
        n_vocab = hp.n_vocab
        end_t, start_t, counts = (tables["end"][:n_vocab], tables["start"][:n_vocab], tables["counts"][:n_vocab])
        if len(end_t) < n_vocab:  # vocabulary smaller than the embedding: pad
            pad = n_vocab - len(end_t)
            end_t = np.concatenate([end_t, np.zeros((pad, end_t.shape[1]), np.int32)])
            start_t = np.concatenate([start_t, np.zeros((pad, start_t.shape[1]), np.int32)])
            counts = np.concatenate([counts, np.zeros((pad, 5), np.int32)])

        self._rng = np.random.default_rng(seed)  # seeds for calls that bring none
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.length = tf.compat.v1.placeholder(tf.int32, [], name="length")
            self.temperature = tf.compat.v1.placeholder_with_default(1.0, [], name="temperature")
            self.top_p = tf.compat.v1.placeholder_with_default(0.9, [], name="top_p")
            self.top_k = tf.compat.v1.placeholder_with_default(0, [], name="top_k")
            self.seed = tf.compat.v1.placeholder(tf.int64, [2], name="seed")
            self.posts = tf.compat.v1.placeholder_with_default(1, [], name="posts")
            self.give_up_graphemes = tf.compat.v1.placeholder_with_default(BIG, [], name="give_up_graphemes")
            self.give_up_weighted = tf.compat.v1.placeholder_with_default(BIG, [], name="give_up_weighted")
            self.end_state0 = tf.compat.v1.placeholder_with_default(self._end0, [], name="end_state0")
            self.start_state0 = tf.compat.v1.placeholder_with_default(self._start0, [], name="start_state0")
            # Two loops over the same weights, both built now: one with the
            # batch size fixed (static shapes let Grappler fold the shape
            # arithmetic of every reshape: ~15% less work per token on a small
            # model), one for any batch size.
            self.batch_size = batch_size
            # One table per token: [end matcher by state | start matcher by state | counts].
            table = tf.constant(np.concatenate([end_t, start_t, counts], axis=1), name="token_table")
            # Few loop inputs: each one costs bookkeeping nodes at every step.
            fparams = tf.stack([tf.cast(self.temperature, tf.float32),
                                tf.where(self.top_p > 0.0, self.top_p, 2.0)])  # top_p 0 = off, as in gpt-2-simple
            iparams = tf.stack([self.posts, self.give_up_graphemes, self.give_up_weighted, self.length, self.top_k])
            self._paths = {}
            self._reads = {}
            for rows in ([batch_size] if batch_size else []) + [None]:
                with tf.compat.v1.name_scope(f"rows_{rows or 'any'}"):
                    self._paths[rows] = self._build(tf, gmodel, gsample, table, end_t.shape[1],
                                                    start_t.shape[1], fparams, iparams, rows)
            var_list = [v for v in tf.compat.v1.global_variables() if v.name.startswith("model/")]
            saver = tf.compat.v1.train.Saver(var_list=var_list)
        cores = os.cpu_count() or 1
        intra = threads or cores
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=intra,
                                          inter_op_parallelism_threads=max(1, min(2, intra)))
        config.gpu_options.allow_growth = True
        self.sess = tf.compat.v1.Session(graph=self.graph, config=config)
        saver.restore(self.sess, self.checkpoint)
        self.graph.finalize()  # from here on nothing may add an op
        self._lock = threading.Lock()
        self.calls = 0
        # The first run of a graph optimizes it (Grappler) and allocates: pay
        # that at load time, not in the first request.
        for rows in self._paths:
            self.sample(rows or 1, length=2)
        self.calls = 0

    def _read_once(self, getter, name, *args, **kwargs):
        """A variable's value, read once per call outside the sampling loop.

        Read inside the loop, every step re-reads all ~150 weights, and
        ``tf.gather`` on the embedding variable (``ResourceGather``) puts
        that variable in copy-on-read mode, so each step also copied the
        whole embedding (154 MB on the 124M model). The first use of each
        variable is the context pass, outside the loop; the loop body gets
        that same tensor.
        """
        var = getter(name, *args, **kwargs)
        if name not in self._reads:
            self._reads[name] = var.read_value() if hasattr(var, "read_value") else var
        return self._reads[name]

    def _build(self, tf, gmodel, gsample, table, n_end: int, n_start: int, fparams, iparams,
               rows: int | None) -> dict:
        """One sampling loop; ``rows`` fixes the batch size (None: any)."""
        hp = self.hparams
        context = tf.compat.v1.placeholder(tf.int32, [rows, None], name="context")
        batch = rows if rows else tf.shape(context)[0]
        heads, width = hp.n_head, hp.n_embd // hp.n_head
        own_weights = lambda: tf.compat.v1.variable_scope(  # noqa: E731
            tf.compat.v1.get_variable_scope(), custom_getter=self._read_once)

        def context_pass(tokens):
            """gpt-2-simple's model over the context; its keys and values as
            the cache: [layer, key/value, rows, heads, tokens, width]."""
            with own_weights():
                present = gmodel.model(hparams=hp, X=tokens, reuse=tf.compat.v1.AUTO_REUSE)["present"]
            return tf.transpose(present, [1, 2, 0, 3, 4, 5])

        def decode(tok, position, cache):
            """One token per row through the transformer: gpt-2-simple's
            model (same variables, norm, conv1d, mlp) with the cache in the
            layout above, where a layer's keys or values are a slice of the
            first two axes (no copy). Its ``model(past=...)`` unstacks,
            concatenates and restacks the whole cache in every layer; here
            each layer attends to the cache and to its new token apart, and
            the step grows the cache once. One query token needs no mask."""
            new_kv = []
            with own_weights(), tf.compat.v1.variable_scope("model", reuse=True):
                wte = tf.compat.v1.get_variable("wte", [hp.n_vocab, hp.n_embd])
                wpe = tf.compat.v1.get_variable("wpe", [hp.n_ctx, hp.n_embd])
                h = (tf.gather(wte, tok) + tf.gather(wpe, position))[:, tf.newaxis, :]  # [rows, 1, embd]
                for layer, (old_k, old_v) in enumerate(tf.unstack(layer_kv, axis=0)
                                                       for layer_kv in tf.unstack(cache, axis=0)):
                    with tf.compat.v1.variable_scope(f"h{layer}"):
                        x = gmodel.norm(h, "ln_1")
                        with tf.compat.v1.variable_scope("attn"):
                            qkv = gmodel.conv1d(x, "c_attn", hp.n_embd * 3)
                            q, k, v = tf.unstack(tf.reshape(qkv, [batch, 3, heads, 1, width]), axis=1)
                            q = q * (width ** -0.5)
                            w = tf.nn.softmax(tf.concat([tf.matmul(q, old_k, transpose_b=True),
                                                         tf.reduce_sum(q * k, axis=-1, keepdims=True)], axis=-1))
                            a = tf.matmul(w[..., :-1], old_v) + w[..., -1:] * v
                            a = tf.reshape(a, [batch, 1, hp.n_embd])  # merge heads (1 token)
                            h = h + gmodel.conv1d(a, "c_proj", hp.n_embd)
                        h = h + gmodel.mlp(gmodel.norm(h, "ln_2"), "mlp", hp.n_embd * 4, hparams=hp)
                        new_kv.append(tf.stack([k, v]))
                h = gmodel.norm(h, "ln_f")
                logits = tf.matmul(h[:, 0, :], wte, transpose_b=True)[:, :hp.n_vocab]
            return logits, tf.concat([cache, tf.stack(new_kv)], axis=4)

        with tf.compat.v1.name_scope("sample_sequence"):
            cache0 = context_pass(context[:, :-1])
            first_position = tf.shape(context)[1] - 1  # of the context's last token, the first fed to decode

            def body(i, cache, prev, out_ta, state):
                temperature, top_p = tf.unstack(fparams)
                posts, max_graphemes, max_weighted, _, top_k = tf.unstack(iparams)
                logits, cache = decode(prev, first_position + i, cache)
                logits = logits / temperature
                logits = tf.cond(top_k > 0, lambda: _top_k_logits(tf, logits, top_k), lambda: logits)
                seed = self.seed + tf.stack([tf.constant(0, tf.int64), tf.cast(i, tf.int64)])
                tok = _nucleus_sample(tf, gsample, logits, top_p, seed)
                # Per sample: marker matchers, ends so far, lower bounds of the
                # current post's graphemes (g) and X weight (xt: finished words,
                # xw: the word in progress), done flag, step it was done at.
                es, ss, ends, g, xt, xw, done, stop = tf.unstack(state, num=8, axis=1)
                row = tf.gather(table, tok)
                e = tf.gather(row, es, batch_dims=1)
                s = tf.gather(row, n_end + ss, batch_dims=1)
                a, ws, lead, trail, inner = tf.unstack(row[:, n_end + n_start:], num=5, axis=1)
                end_hit, es = e >= 64, e % 64
                start_hit, ss = s >= 64, s % 64
                ws = ws > 0
                keep = tf.cast(~(end_hit | start_hit), tf.int32)  # a marker starts a new post
                g = (g + a) * keep
                xt = tf.where(ws, xt + tf.minimum(xw + lead, WORD_CAP) + inner, xt) * keep
                xw = tf.where(ws, trail, xw + a) * keep
                ends = ends + tf.cast(end_hit, tf.int32)
                partial = tf.maximum(es, ss)  # marker bytes so far are not the post's
                gave_up = ((g - partial > max_graphemes)
                           | (xt + tf.minimum(tf.maximum(xw - partial, 0), WORD_CAP) > max_weighted))
                # With one post per sample a hopeless post ends the sample; when
                # harvesting, the sample goes on to its next post instead.
                now = (ends >= posts) | (gave_up & tf.equal(posts, 1))
                stop = tf.where(tf.equal(done, 0) & now, i + 1, stop)
                done = tf.maximum(done, tf.cast(now, tf.int32))
                state = tf.stack([es, ss, ends, g, xt, xw, done, stop], axis=1)
                return i + 1, cache, tok, out_ta.write(i, tok), state

            def cond(i, cache, prev, out_ta, state):
                return (i < iparams[3]) & tf.logical_not(tf.reduce_all(state[:, 6] > 0))

            zeros = tf.zeros([batch], tf.int32)
            state0 = tf.stack([tf.fill([batch], self.end_state0), tf.fill([batch], self.start_state0),
                               zeros, zeros, zeros, zeros, zeros, tf.fill([batch], self.length)], axis=1)
            loop_vars = (
                tf.constant(0), cache0, context[:, -1],
                tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=tf.TensorShape([None])),
                state0,
            )
            shapes = (
                tf.TensorShape([]), tf.TensorShape([hp.n_layer, 2, rows, heads, None, width]),
                tf.TensorShape([rows]), tf.TensorShape(None), tf.TensorShape([rows, 8]),
            )
            steps, _, _, out_ta, state = tf.while_loop(cond=cond, body=body, loop_vars=loop_vars,
                                                       shape_invariants=shapes)
            return {
                "context": context,
                "fetch": [tf.transpose(out_ta.stack(), [1, 0]),  # tokens [batch, steps]
                          steps, tf.minimum(state[:, 7], steps), state[:, 2], state[:, 6] > 0],
            }

    # -- public ------------------------------------------------------------

    @property
    def op_count(self) -> int:
        return len(self.graph.get_operations())

    def sample(self, batch_size: int = 20, *, length: int = 200, temperature: float = 1.0,
               top_p: float = 0.9, top_k: int = 0, posts: int = 1, prompt: str = "", seed: int | None = None,
               give_up_graphemes: int | None = None, give_up_weighted: int | None = None) -> SampleBatch:
        """Sample ``batch_size`` streams of at most ``length`` tokens.

        ``prompt``: every sample continues this text (one post per sample,
        the prompt not repeated in ``texts``: the caller puts it in front).
        ``seed``: the same seed and arguments give the same samples.
        ``give_up_graphemes`` / ``give_up_weighted``: stop a sample once its
        current post is certain to exceed that many graphemes (Bluesky) or
        X-weighted characters (lower bounds from the ASCII bytes, URLs
        counted as 23), e.g. 300 and 280.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if temperature <= 0:
            raise ValueError("temperature must be above 0")
        context = self.prefix_tokens + (self.enc.encode(prompt) if prompt else [])
        length = int(min(length, self.hparams.n_ctx - len(context)))
        if length < 1:
            raise ValueError("length must be at least 1")
        if seed is None:
            seed = int(self._rng.integers(0, 2**62))
        # The prompt's ASCII non-space characters are part of every post: the give-up
        # limits (lower bounds) start that much closer.
        prompt_floor = sum(1 for ch in prompt if ch.isascii() and not ch.isspace())
        path = self._paths.get(batch_size) or self._paths[None]
        feed = {
            path["context"]: np.tile(np.asarray(context, np.int32), (batch_size, 1)),
            self.length: length,
            self.temperature: float(temperature),
            self.top_p: float(top_p),
            self.top_k: max(0, int(top_k)),
            self.seed: np.asarray([int(seed), 0], np.int64),
            self.posts: 1 if prompt else max(1, int(posts)),
            self.give_up_graphemes: BIG if give_up_graphemes is None else int(give_up_graphemes) - prompt_floor,
            self.give_up_weighted: BIG if give_up_weighted is None else int(give_up_weighted) - prompt_floor,
        }
        if prompt:
            context_bytes = (self.prefix + prompt).encode("utf-8")
            feed[self.end_state0] = _final_state(END.encode(), context_bytes)
            feed[self.start_state0] = _final_state(START.encode(), context_bytes)
        t0 = time.perf_counter()
        with self._lock:
            t_run = time.perf_counter()
            tokens, steps, stop, ends, done = self.sess.run(path["fetch"], feed)
            run_seconds = time.perf_counter() - t_run
            self.calls += 1
        texts, per_sample = [], []
        finished = gave_up = kept = 0
        for b in range(batch_size):
            n = int(stop[b])
            kept += n
            pieces = split_posts(self.enc.decode(tokens[b, :n].tolist()))
            finished += sum(p.endswith(END) for p in pieces)
            if done[b] and ends[b] < 1:
                gave_up += 1
            per_sample.append(pieces)
            texts.extend(pieces)
        return SampleBatch(texts=texts, samples=batch_size, steps=int(steps), tokens=kept,
                           finished=finished, gave_up=gave_up, seconds=time.perf_counter() - t0,
                           run_seconds=run_seconds, per_sample=per_sample)

    def close(self) -> None:
        self.sess.close()


NUCLEUS_DRAWS = 4


def _nucleus_sample(tf, gsample, logits, top_p, seed):
    """One token per row from gpt-2-simple's nucleus (``top_p_logits``)
    without sorting the vocabulary.

    gpt-2-simple keeps token ``t`` iff the probability of the tokens with a
    strictly higher logit is below ``top_p`` (its exclusive cumsum over the
    sorted logits, ties included). Sampling from the full distribution and
    taking the first draw that passes that test is sampling from the
    nucleus exactly; the nucleus holds at least ``top_p`` of the mass, so
    with 4 draws a row has no passing draw at most ``(1 - top_p)^4`` of the
    time (1e-4 at 0.9), and then gpt-2-simple's own sort decides that row.
    The test is one pass over the vocabulary per draw, where the sort was
    the costliest op of a step (9 ms of 73 on the 124M model at batch 4).
    """
    probs = tf.nn.softmax(logits)
    draws = tf.random.stateless_categorical(logits, NUCLEUS_DRAWS, seed=seed, dtype=tf.int32)  # [rows, draws]
    drawn = tf.gather(logits, draws, batch_dims=1)
    higher = tf.reduce_sum(tf.where(logits[:, tf.newaxis, :] > drawn[:, :, tf.newaxis],
                                    probs[:, tf.newaxis, :], 0.0), axis=-1)
    ok = higher < top_p
    found = tf.reduce_any(ok, axis=1)
    tok = tf.gather(draws, tf.argmax(tf.cast(ok, tf.int32), axis=1, output_type=tf.int32), batch_dims=1)

    def sorted_nucleus():
        nucleus = gsample.top_p_logits(logits, p=top_p)
        # A seed no step of any call uses (steps are (seed, step) with step < n_ctx).
        again = tf.random.stateless_categorical(nucleus, 1, seed=seed + [0, 1 << 40], dtype=tf.int32)[:, 0]
        return tf.where(found, tok, again)

    return tf.cond(tf.reduce_all(found), lambda: tok, sorted_nucleus)


def _top_k_logits(tf, logits, k):
    """gpt-2-simple's top-k truncation (``sample.top_k_logits``) for a fed ``k``."""
    values, _ = tf.nn.top_k(logits, k=k)
    return tf.where(logits < values[:, -1, tf.newaxis], tf.ones_like(logits) * -1e10, logits)


_MARKERS = None


def split_posts(text: str) -> list[str]:
    """Cut one sample's text into raw post attempts.

    A post ends at ``<|endoftext|>`` (kept, so the filters know it ended);
    a ``<|startoftext|>`` begins a new post, so whatever came before it
    since the last end is an abandoned, unfinished attempt. Attempts with
    nothing but whitespace (or a cut-off marker) are not posts at all.
    """
    global _MARKERS
    if _MARKERS is None:
        import re

        _MARKERS = re.compile(f"({re.escape(END)}|{re.escape(START)})")
    pieces, cur = [], ""
    for part in _MARKERS.split(text):
        if part == END:
            pieces.append(cur + END)
            cur = ""
        elif part == START:
            if _substantial(cur):
                pieces.append(cur)
            cur = ""
        else:
            cur += part
    if _substantial(cur):
        pieces.append(cur)
    return pieces


def _substantial(text: str) -> bool:
    rest = text.strip()
    return bool(rest) and not START.startswith(rest) and not END.startswith(rest)
