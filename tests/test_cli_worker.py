"""The worker's admin commands as a person at a terminal uses them, bad input included.

Every bad input: a clear one-line error, a non-zero exit, no traceback, and
nothing written outside the data dir.
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "core" / "data" / "demo_corpus.csv"


@pytest.fixture
def sandbox(tmp_path):
    """A working directory, a data dir, and a folder of input files."""
    (tmp_path / "cwd").mkdir()
    (tmp_path / "inputs").mkdir()
    return tmp_path


def parodybot(sandbox: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PARODYBOT_DATA_DIR=str(sandbox / "data"), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True,
                          env=env, cwd=sandbox / "cwd", timeout=timeout)


def files_outside_data(sandbox: Path) -> list[str]:
    found = []
    for path in sandbox.rglob("*"):
        rel = path.relative_to(sandbox)
        if path.is_file() and rel.parts[0] not in ("data", "inputs"):
            found.append(str(rel))
    return found


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr  # progress lines may come before it
    for word in words:
        assert word in result.stderr, result.stderr


def write(sandbox: Path, name: str, data: bytes) -> Path:
    path = sandbox / "inputs" / name
    path.write_bytes(data)
    return path


def test_import_json_and_export(sandbox):
    result = parodybot(sandbox, "import", "jokes", "--source", "csv", "--file", str(CORPUS), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["kept"] == 283 and isinstance(summary["dropped"], dict)
    exported = parodybot(sandbox, "dataset", "export", "jokes")
    rows = list(csv.reader(io.StringIO(exported.stdout)))
    assert rows[0] == ["tweets"] and len(rows) == 284
    assert files_outside_data(sandbox) == []


@pytest.mark.parametrize("name", ["Dril", "../etc", "a" * 33, "dril!", ""])
def test_persona_names_that_are_not_allowed(sandbox, name):
    result = parodybot(sandbox, "import", name, "--source", "csv", "--file", str(CORPUS))
    assert_refused(result, "a-z, 0-9 and _")
    assert files_outside_data(sandbox) == []
    assert not (sandbox / "data").exists() or not any((sandbox / "data").rglob("*.csv"))


def test_missing_file(sandbox):
    assert_refused(parodybot(sandbox, "import", "dril", "--source", "csv", "--file", str(sandbox / "nope.csv")), "nope.csv")


@pytest.mark.parametrize("content,word", [(b"", "empty"), (b"tweets\n", "no posts"), (b"tweets\n\xff\xfehello\n", "UTF-8")])
def test_bad_csv_files(sandbox, content, word):
    path = write(sandbox, "bad.csv", content)
    result = parodybot(sandbox, "import", "dril", "--source", "csv", "--file", str(path))
    assert_refused(result)
    assert word.lower() in result.stderr.lower(), result.stderr
    assert files_outside_data(sandbox) == []


def test_import_adds_to_the_dataset_and_says_what_each_source_brought(sandbox):
    a = write(sandbox, "a.csv", b"tweets\nfirst post\nsecond post\n")
    b = write(sandbox, "b.csv", b"tweets\nsecond post\nthird post\nGIVEAWAY: a phone\n")
    result = parodybot(sandbox, "import", "dril", "--source", "csv", "--file", str(a))
    assert "dril: 2 new post(s) (0 it had already); the dataset has 2" in result.stdout, result.stderr
    result = parodybot(sandbox, "import", "dril", "--source", "csv", "--file", str(b), "--exclude", "(?i)giveaway")
    assert "dril: 1 new post(s) (1 it had already); the dataset has 3" in result.stdout
    assert "csv:a.csv 2, csv:b.csv 1; dropped excluded 1" in result.stdout
    result = parodybot(sandbox, "import", "dril", "--source", "csv", "--file", str(b), "--replace", "--limit", "1")
    assert "the dataset has 1 " in result.stdout and "csv:b.csv 1" in result.stdout
    assert_refused(parodybot(sandbox, "import", "dril", "--source", "csv", "--file", str(b), "--exclude", "a("),
                   "not a regular expression")


def zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


TWEETS_JS = b'window.YTD.tweets.part0 = [{"tweet": {"id_str": "1", "full_text": "hello &amp; goodbye"}}]'


def test_zip_that_escapes_the_folder(sandbox):
    path = write(sandbox, "evil.zip", zip_bytes({"data/tweets.js": TWEETS_JS, "../../escape.txt": b"x"}))
    assert_refused(parodybot(sandbox, "import", "dril", "--source", "archive", "--file", str(path)))
    assert files_outside_data(sandbox) == []
    assert not (sandbox.parent / "escape.txt").exists()


def test_zip_that_expands_past_the_limit(sandbox):
    bomb = zip_bytes({"data/tweets.js": TWEETS_JS, "data/tweets_media/huge.bin": b"\0" * (300 * 1024 * 1024)})
    path = write(sandbox, "bomb.zip", bomb)
    result = parodybot(sandbox, "import", "dril", "--source", "archive", "--file", str(path))
    assert_refused(result)
    assert files_outside_data(sandbox) == []


def test_archive_without_a_tweets_file(sandbox):
    path = write(sandbox, "other.zip", zip_bytes({"data/account.js": b"window.YTD.account.part0 = []"}))
    assert_refused(parodybot(sandbox, "import", "dril", "--source", "archive", "--file", str(path)), "tweets.js")


@pytest.mark.parametrize("steps", ["0", "-5", "1000000000"])
def test_steps_out_of_range(sandbox, steps):
    parodybot(sandbox, "import", "jokes", "--source", "csv", "--file", str(CORPUS))
    assert_refused(parodybot(sandbox, "train", "jokes", "--steps", steps), "steps")


def test_unknown_model_name(sandbox):
    parodybot(sandbox, "import", "jokes", "--source", "csv", "--file", str(CORPUS))
    assert_refused(parodybot(sandbox, "train", "jokes", "--steps", "5", "--model", "gpt5"), "gpt5", "124M")


def test_train_before_any_data(sandbox):
    assert_refused(parodybot(sandbox, "train", "nobody", "--steps", "5"), "import")


def test_too_little_data_says_how_much_is_needed(sandbox):
    path = write(sandbox, "small.csv", "tweets\nhello there\nsecond post\n".encode())
    parodybot(sandbox, "import", "small", "--source", "csv", "--file", str(path))
    result = parodybot(sandbox, "train", "small", "--steps", "5", "--model", "tiny")
    assert_refused(result, "1024")


def test_build_tiny_model(sandbox):
    result = parodybot(sandbox, "model", "build-tiny", str(sandbox / "data" / "tiny"), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    hparams = json.loads((sandbox / "data" / "tiny" / "hparams.json").read_text())
    assert hparams["n_ctx"] == 1024 and info["model_dir"].endswith("tiny")
    for name in ("encoder.json", "vocab.bpe", "checkpoint"):
        assert (sandbox / "data" / "tiny" / name).exists()


@pytest.mark.timeout(400)
def test_import_train_generate_from_the_command_line(sandbox):
    assert parodybot(sandbox, "import", "jokes", "--source", "csv", "--file", str(CORPUS)).returncode == 0
    trained = parodybot(sandbox, "train", "jokes", "--steps", "40", "--model", "tiny", "--json")
    assert trained.returncode == 0, trained.stderr[-2000:]
    result = json.loads(trained.stdout)
    assert result["state"] == "done" and result["steps_done"] == 40 and len(result["samples"]) == 3
    assert "step 40/40" in trained.stderr  # progress lines for the person watching
    assert "validation loss" in trained.stderr and result["val_losses"]  # 5% of the posts held back
    more = parodybot(sandbox, "train", "jokes", "--more-steps", "5", "--json")
    assert more.returncode == 0, more.stderr[-2000:]
    result = json.loads(more.stdout)
    assert result["state"] == "done" and result["steps_done"] == 45 and result["resumed_from"] == 40
    assert [s for s, _, _ in result["losses"]] == list(range(1, 46))  # the loss history goes on

    generated = parodybot(sandbox, "generate", "jokes", "-n", "5", "--temperature", "0.9", "--top-p", "0.9", "--json")
    assert generated.returncode == 0, generated.stderr[-2000:]
    out = json.loads(generated.stdout)
    assert isinstance(out["dropped"], dict) and "unfinished" in out["dropped"]
    training = {row[0] for row in csv.reader(io.StringIO(CORPUS.read_text()))}
    for cand in out["candidates"]:
        text = cand["text"]
        assert text and "<|" not in text and text not in training

    # To a file, from a prompt, with a seed: the same seed writes the same file.
    files = []
    for name in ("a.txt", "b.txt"):
        path = sandbox / "data" / name
        done = parodybot(sandbox, "generate", "jokes", "-n", "3", "--prompt", "Why did", "--seed", "5", "--out", str(path))
        assert done.returncode == 0 and f"written to {path}" in done.stdout, done.stderr[-2000:]
        files.append(path.read_text(encoding="utf-8"))
    assert files[0] == files[1]
    samples = files[0].split("\n" + "=" * 20 + "\n")[:-1]
    assert samples and all(s.startswith("Why did") for s in samples)
    assert files_outside_data(sandbox) == []


def test_import_of_an_older_x_export_keeps_its_posts_and_says_which_format_it_read(sandbox):
    import json
    import zipfile

    months = {}
    for month in (1, 2):
        months[f"tweets/data/js/tweets/2014_{month:02d}.js"] = f"Grailbird.data.tweets_2014_{month:02d} = " + json.dumps([
            {"id_str": str(month * 100 + i), "text": f"@fan {month} {i} thank you" if i == 0 else f"post {month} {i}",
             "created_at": f"2014-{month:02d}-{i + 1:02d} 10:00:00 +0000", "entities": {}, "source": "web"}
            for i in range(20)])
    path = sandbox / "inputs" / "tweets.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in months.items():
            z.writestr(name, data)
        z.writestr("tweets/tweets.csv", "tweet_id,text\n1,ignored when the js files are there\n")
    result = parodybot(sandbox, "import", "dril", "--source", "archive", "--file", str(path))
    assert result.returncode == 0, result.stderr
    assert "dril: 40 new post(s) from the older X export" in result.stdout and "the dataset has 40" in result.stdout
    assert "from the older X export (data/js/tweets/YYYY_MM.js)" in result.stdout
    result = parodybot(sandbox, "dataset", "export", "dril")
    assert "@fan 1 0 thank you" in result.stdout  # no reply field: not a reply
