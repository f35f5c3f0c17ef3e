"""Build small random GPT-2 models in gpt-2-simple's on-disk format.

A model directory holds what ``gpt_2_simple.download_gpt2`` would have put
there: ``encoder.json`` and ``vocab.bpe`` (GPT-2's byte-level BPE format),
``hparams.json`` and a TensorFlow checkpoint (``checkpoint``,
``model.ckpt.index``, ``model.ckpt.data-00000-of-00001``, ``model.ckpt.meta``),
so ``load_gpt2(model_dir=..., model_name=...)`` and ``finetune`` accept it.

* ``build_tiny_model``: a few layers, a small BPE vocabulary trained with
  ``tokenizers`` on a corpus (or a built-in one), random weights. For tests
  and the offline demo; builds in seconds on a CPU.
* ``build_random_gpt2``: any shape (124M by default) with a given real
  vocabulary (``encoder.json`` / ``vocab.bpe`` from elsewhere), random
  weights. For benchmarks that need the real model's cost without its
  weights.

The checkpoint is created with gpt-2-simple's own model code
(``gpt_2_simple.src.model``), so variable names and shapes are exactly the
ones ``finetune`` and ``load_gpt2`` restore. ``n_ctx`` stays 1024:
gpt-2-simple trains on 1,024-token windows whatever the model says.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Iterable

END_TOKEN = "<|endoftext|>"
START_TOKEN = "<|startoftext|>"
N_CTX = 1024
MODEL_FILES = (
    "checkpoint",
    "encoder.json",
    "hparams.json",
    "model.ckpt.data-00000-of-00001",
    "model.ckpt.index",
    "model.ckpt.meta",
    "vocab.bpe",
)
# Written next to the model files; says how the model was made (finetune
# picks its defaults from it: a random tiny model needs a far higher
# learning rate than a pretrained GPT-2).
MARKER = "parodybot_model.json"

_DEFAULT_POSTS = [
    "I am once again asking you to stop microwaving fish in the office kitchen",
    "just saw a dog wearing little boots. the day is saved. everything is fine now",
    "my therapist says I need to stop tweeting at 3am. it is 3:14am and I agree with her",
    "new phone who dis",
    "if you ever feel useless remember someone invented the screen door on a submarine",
    "The council has voted 7 to 2 to rename the duck pond. The ducks were not consulted.",
    "me: I will go to bed early tonight\nalso me at 2am: reading about medieval plumbing",
    "Breaking: local man discovers he has been pronouncing 'quinoa' wrong for 11 years",
    "do NOT @ me about the pizza opinion. I stand by it. pineapple is a fruit of the people",
    "whoever said money can't buy happiness has never bought a bag of warm croissants",
    "Thread: ranking every bridge I have personally crossed (1/47)",
    "the wifi password at my aunt's house is 'password'. she is the most secure person I know",
    "Café owner says the naïve coöperation of crème brûlée fans is \"très bien\" — 10/10",
    "Ich bin ein Pfannkuchen. Über alles! ¿Qué pasa? Ça va très bien, merci 🙂",
    "日本語のツイートもあります。猫がかわいい 🐱 and emoji too 🎉🔥💀",
    "Привет мир! Это тест. Ελληνικά γράμματα: αβγ. עברית. العربية. हिन्दी।",
    "numbers are cool: 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14159 2024-05-17 #1 @handle",
    "punctuation!!! ??? ... --- *** ((())) [[[ ]]] {{{ }}} <<< >>> ~~~ ^^^ %%% $$$ &&& ||| ///",
    "good morning to everyone except the guy who invented mondays",
    "they should make a movie about a guy who makes movies about guys",
    "I've got 99 problems and I'd rather not list them. You're welcome. We'll see. He'd know.",
    "sometimes I look at the moon and think: that's the same moon as yesterday. wild",
    "Update: the ducks have filed an appeal",
    "hot take: stairs are just a slow elevator you have to do yourself",
    "RT if you have ever been personally victimized by a self checkout machine",
    "Just found out penguins propose with pebbles. Going to the beach, wish me luck",
    "weather forecast: 100% chance of me complaining about the weather",
    "You ever just stare at a wall for 40 minutes and call it a productive afternoon",
    "tabs\tand\ttabs and  double  spaces and trailing spaces   ",
    "ALL CAPS IS HOW I SHOW MY LOVE. LOVE YOU ALL. GOOD NIGHT.",
]


def default_corpus() -> list[str]:
    """The built-in corpus: short posts with English, punctuation, digits,
    non-ASCII text and emoji, and the demo's jokes (``core/data``, pyjokes',
    BSD-3), each wrapped the way gpt-2-simple wraps CSV rows, so the special
    markers become cheap tokens. The jokes give the vocabulary whole English
    words: on the few posts alone it stayed close to single bytes, and the
    demo's samples were misspelt fragments of words."""
    jokes = resources.files("core.data").joinpath("demo_corpus.csv").read_text(encoding="utf-8")
    posts = _DEFAULT_POSTS * 3 + [row[0] for row in list(csv.reader(io.StringIO(jokes)))[1:] if row]
    return [f"{START_TOKEN}{p}{END_TOKEN}\n" for p in posts]


def _train_bpe(corpus: Iterable[str], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a byte-level BPE and return (encoder, merges) in GPT-2's layout:
    the 256 byte symbols first (in ``bytes_to_unicode`` order), then one
    entry per merge in rank order, then ``<|endoftext|>`` last."""
    from gpt_2_simple.src.encoder import bytes_to_unicode
    from tokenizers import ByteLevelBPETokenizer

    if vocab_size < 257:
        raise ValueError("vocab_size must be at least 257 (256 byte symbols and <|endoftext|>)")
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(
        list(corpus),
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[END_TOKEN],
        show_progress=False,
    )
    raw = json.loads(tok.to_str())["model"]["merges"]
    merges: list[tuple[str, str]] = []
    for m in raw:
        a, b = (m.split(" ") if isinstance(m, str) else m)
        merges.append((a, b))
    byte_symbols = list(bytes_to_unicode().values())
    encoder: dict[str, int] = {s: i for i, s in enumerate(byte_symbols)}
    kept: list[tuple[str, str]] = []
    for a, b in merges:
        if len(encoder) >= vocab_size - 1:
            break
        if a not in encoder or b not in encoder or (a + b) in encoder:
            continue  # never happens with a byte-level trainer; be safe anyway
        encoder[a + b] = len(encoder)
        kept.append((a, b))
    encoder[END_TOKEN] = len(encoder)
    return encoder, kept


def _write_vocab(model_dir: Path, encoder: dict[str, int], merges: list[tuple[str, str]]) -> None:
    # ensure_ascii: gpt-2-simple opens encoder.json with the locale's encoding.
    (model_dir / "encoder.json").write_text(json.dumps(encoder, ensure_ascii=True), encoding="ascii")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    # get_encoder() drops the first and the last line: end with a newline.
    (model_dir / "vocab.bpe").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_checkpoint(model_dir: Path, hparams: dict, seed: int) -> None:
    """Random weights made by gpt-2-simple's own model code, saved the way
    OpenAI's release is (``model.ckpt`` plus a ``checkpoint`` index file
    with a relative path)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from gpt_2_simple.src import model as gmodel

    hp = gmodel.default_hparams()
    hp.override_from_dict(hparams)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(seed)
        context = tf.compat.v1.placeholder(tf.int32, [1, None])
        gmodel.model(hparams=hp, X=context)
        var_list = [v for v in tf.compat.v1.global_variables() if "model" in v.name]
        saver = tf.compat.v1.train.Saver(var_list=var_list, save_relative_paths=True)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.variables_initializer(var_list))
            saver.save(sess, str(model_dir / "model.ckpt"))


def _install(tmp: Path, model_dir: Path) -> None:
    """Move a finished build into place (a reader never sees half a model)."""
    trash = None
    if model_dir.exists():
        trash = model_dir.with_name(f".{model_dir.name}.old-{os.getpid()}")
        os.rename(model_dir, trash)
    os.rename(tmp, model_dir)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def build_tiny_model(
    model_dir: Path,
    *,
    corpus: Iterable[str] | None = None,
    vocab_size: int = 2000,
    n_layer: int = 2,
    n_head: int = 2,
    n_embd: int = 64,
    seed: int = 0,
    encoder_json: Path | None = None,
    vocab_bpe: Path | None = None,
) -> Path:
    """Write a random GPT-2 in gpt-2-simple's format into ``model_dir`` and
    return ``model_dir``.

    By default: a byte-level BPE of at most ``vocab_size`` entries trained on
    ``corpus`` (or a built-in corpus), ``<|endoftext|>`` last, and a
    ``n_layer`` x ``n_embd`` transformer with ``n_ctx = 1024``. Give
    ``encoder_json`` and ``vocab_bpe`` (e.g. GPT-2's real files) to use that
    vocabulary instead; ``n_vocab`` then comes from it. An existing
    ``model_dir`` is replaced.
    """
    model_dir = Path(model_dir)
    if (encoder_json is None) != (vocab_bpe is None):
        raise ValueError("give both encoder_json and vocab_bpe, or neither")
    if n_embd % n_head:
        raise ValueError("n_embd must be a multiple of n_head")
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.build-", dir=model_dir.parent))
    try:
        if encoder_json is not None:
            shutil.copyfile(encoder_json, tmp / "encoder.json")
            shutil.copyfile(vocab_bpe, tmp / "vocab.bpe")
            with open(tmp / "encoder.json", encoding="utf-8") as f:
                encoder = json.load(f)
            if END_TOKEN not in encoder:
                raise ValueError(f"{encoder_json} has no {END_TOKEN} entry")
            kind = "random"
        else:
            encoder, merges = _train_bpe(corpus if corpus is not None else default_corpus(), vocab_size)
            _write_vocab(tmp, encoder, merges)
            kind = "tiny"
        n_vocab = max(encoder.values()) + 1
        hparams = {"n_vocab": n_vocab, "n_ctx": N_CTX, "n_embd": n_embd, "n_head": n_head, "n_layer": n_layer}
        (tmp / "hparams.json").write_text(json.dumps(hparams, indent=2) + "\n", encoding="utf-8")
        _write_checkpoint(tmp, hparams, seed)
        (tmp / MARKER).write_text(
            json.dumps({"kind": kind, "random_init": True, "seed": seed, **hparams}, indent=2) + "\n",
            encoding="utf-8",
        )
        _install(tmp, model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return model_dir


def build_random_gpt2(
    model_dir: Path,
    encoder_json: Path,
    vocab_bpe: Path,
    hparams: dict | None = None,
    *,
    seed: int = 0,
) -> Path:
    """A random model of any shape (124M's by default: 12 layers, 12 heads,
    768 wide) with a given vocabulary, for benchmarks."""
    hp = {"n_layer": 12, "n_head": 12, "n_embd": 768}
    hp.update({k: v for k, v in (hparams or {}).items() if k in ("n_layer", "n_head", "n_embd")})
    return build_tiny_model(
        model_dir, encoder_json=encoder_json, vocab_bpe=vocab_bpe, seed=seed,
        n_layer=hp["n_layer"], n_head=hp["n_head"], n_embd=hp["n_embd"],
    )


def model_info(model_dir: Path) -> dict:
    """The marker ``build_tiny_model`` writes ({} for other models)."""
    try:
        return json.loads((Path(model_dir) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def is_complete(model_dir: Path) -> bool:
    return all((Path(model_dir) / f).is_file() for f in MODEL_FILES)
