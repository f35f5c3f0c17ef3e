"""The tiny random GPT-2: gpt-2-simple's own encoder and loader accept it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from workers.tiny_model import MODEL_FILES, build_random_gpt2, build_tiny_model, model_info

TEXTS = [
    "<|startoftext|>just saw a dog wearing little boots<|endoftext|>\n",
    "Héllo wörld — naïve café, crème brûlée! ¿Qué? Ça va.",
    "日本語のテキスト 🐱🎉 and emoji, Привет мир, עברית",
    "line one\nline two\n\n\ttabbed   spaced   \r\nend",
    "zqxjk vwpf 0x7f ~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./",
    "",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def test_files_and_hparams(tiny: Path):
    for name in MODEL_FILES:
        assert (tiny / name).is_file(), name
    hparams = json.loads((tiny / "hparams.json").read_text())
    encoder = json.loads((tiny / "encoder.json").read_text())
    assert hparams["n_ctx"] == 1024  # gpt-2-simple trains on 1,024-token windows
    assert hparams["n_vocab"] == len(encoder) <= 2000
    assert sorted(encoder.values()) == list(range(len(encoder)))
    assert encoder["<|endoftext|>"] == len(encoder) - 1
    assert (tiny / "checkpoint").read_text().startswith('model_checkpoint_path: "model.ckpt"')
    assert model_info(tiny)["kind"] == "tiny"


def test_gpt2_simple_encoder_round_trips(tiny: Path):
    from gpt_2_simple.src.encoder import get_encoder

    enc = get_encoder(str(tiny))
    for text in TEXTS:
        ids = enc.encode(text)
        assert all(0 <= i < len(enc.encoder) for i in ids)
        assert enc.decode(ids) == text
    # the BPE actually merges: a common word is fewer tokens than its bytes
    assert len(enc.encode(" the dog")) < len(" the dog")


def test_custom_corpus_and_vocab_size(tmp_path: Path):
    from gpt_2_simple.src.encoder import get_encoder

    corpus = ["<|startoftext|>posting through it<|endoftext|>\n"] * 20 + ["the candle industry"] * 5
    d = build_tiny_model(tmp_path / "small", corpus=corpus, vocab_size=300, n_layer=1, n_embd=32)
    enc = get_encoder(str(d))
    assert len(enc.encoder) <= 300
    assert "<|endoftext|>" in enc.encoder
    for text in TEXTS:  # text the BPE never saw still round-trips (byte level)
        assert enc.decode(enc.encode(text)) == text
    assert json.loads((d / "hparams.json").read_text())["n_layer"] == 1


def test_load_gpt2_and_generate(tiny: Path):
    import tensorflow as tf
    from gpt_2_simple import gpt_2

    with tf.Graph().as_default():
        sess = gpt_2.start_tf_sess()
        gpt_2.load_gpt2(sess, model_dir=str(tiny.parent), model_name=tiny.name)
        names = {v.name for v in tf.compat.v1.global_variables()}
        assert "model/wte:0" in names and "model/h1/attn/c_attn/w:0" in names
        out = gpt_2.generate(sess, model_dir=str(tiny.parent), model_name=tiny.name, length=8,
                             prefix="<|startoftext|>", return_as_list=True)
        assert len(out) == 1 and out[0].startswith("<|startoftext|>")
        sess.close()


def test_random_gpt2_with_given_vocab(tiny: Path, tmp_path: Path):
    d = build_random_gpt2(tmp_path / "shaped", tiny / "encoder.json", tiny / "vocab.bpe",
                          {"n_layer": 1, "n_head": 4, "n_embd": 32})
    hparams = json.loads((d / "hparams.json").read_text())
    assert hparams == {"n_vocab": len(json.loads((tiny / "encoder.json").read_text())),
                       "n_ctx": 1024, "n_embd": 32, "n_head": 4, "n_layer": 1}
    assert (d / "vocab.bpe").read_bytes() == (tiny / "vocab.bpe").read_bytes()
    assert model_info(d)["kind"] == "random"
    for name in MODEL_FILES:
        assert (d / name).is_file()


def test_rebuild_replaces_and_leaves_no_temp(tmp_path: Path):
    d = build_tiny_model(tmp_path / "tiny", n_layer=1, n_embd=32)
    build_tiny_model(d, n_layer=1, n_embd=32, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
