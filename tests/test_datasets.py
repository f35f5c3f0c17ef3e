"""Datasets on the worker: import, load, export, info."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os

import pytest

from core.contract import BadInput
from workers.cleaning import CleanOptions
from workers.datasets import dataset_info, export_csv, import_dataset, load_texts
from workers.sources import get_source

try:
    from fakes.social_sources import FakeBluesky, block_internet, bsky_post
except ImportError:  # pragma: no cover
    from tests.fakes.social_sources import FakeBluesky, block_internet, bsky_post


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    block_internet(monkeypatch)


def seed_csv(tmp_path, rows):
    path = tmp_path / "in.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["tweets"])
        for r in rows:
            w.writerow([r])
    return path


ROWS = ["first post", "two\nlines, with \"quotes\"", "RT @x: retweeted", "@bob a reply", "https://t.co/abc",
        "first post", "fish &amp; chips https://t.co/q", "日本語のポスト #café"]


def test_import_from_csv_writes_dataset_and_meta(tmp_path):
    worker = tmp_path / "worker"
    progress = []
    summary = import_dataset(worker, "dril", "csv", file=seed_csv(tmp_path, ROWS), on_progress=progress.append)
    assert summary["persona"] == "dril" and summary["source"] == "csv"
    assert summary["kept"] == 4 and summary["fetched"] == len(ROWS)
    assert summary["dropped"] == {"retweet": 1, "reply": 1, "empty": 1, "duplicate": 1, "excluded": 0}
    assert summary["added"] == 4 and summary["sources"] == {"csv:in.csv": 4}
    kept = ["first post", "two\nlines, with \"quotes\"", "fish & chips", "日本語のポスト #café"]
    assert summary["chars"] == sum(len(t) for t in kept)
    json.dumps(summary)  # JSON-able
    assert progress and progress[-1] == len(ROWS)

    folder = worker / "datasets" / "dril"
    data = (folder / "dataset.csv").read_bytes()
    assert summary["sha256"] == hashlib.sha256(data).hexdigest()
    assert data.decode("utf-8").startswith("tweets\n")
    with (folder / "dataset.csv").open(encoding="utf-8", newline="") as fh:
        assert list(csv.reader(fh)) == [["tweets"]] + [[t] for t in kept]
    assert json.loads((folder / "meta.json").read_text("utf-8")) == summary
    assert sorted(os.listdir(folder)) == ["dataset.csv", "meta.json", "posts.jsonl"]  # no temp files left

    assert load_texts(worker, "dril") == kept
    assert dataset_info(worker, "dril") == summary
    # the stored file is itself a valid csv source (download_tweets.py format)
    assert [p.text for p in get_source("csv").fetch(file=folder / "dataset.csv")] == kept


def test_export_csv(tmp_path):
    worker = tmp_path / "w"
    import_dataset(worker, "dril", "csv", file=seed_csv(tmp_path, ["a", "b\nc"]))
    out = io.StringIO()
    assert export_csv(worker, "dril", out) == 2
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [["tweets"], ["a"], ["b\nc"]]


def test_options_are_applied_and_saved(tmp_path):
    worker = tmp_path / "w"
    opts = CleanOptions(drop_replies=False, strip_hashtags=True)
    s = import_dataset(worker, "p1", "csv", file=seed_csv(tmp_path, ["@bob hi #tag", "x"]), options=opts)
    assert load_texts(worker, "p1") == ["@bob hi", "x"]
    assert s["options"]["strip_hashtags"] is True and s["options"]["drop_replies"] is False


def test_min_chars_refuses_and_keeps_previous(tmp_path):
    worker = tmp_path / "w"
    first = import_dataset(worker, "dril", "csv", file=seed_csv(tmp_path, ["one long enough post " * 10]))
    with pytest.raises(BadInput) as e:
        import_dataset(worker, "dril", "csv", file=seed_csv(tmp_path, ["tiny", "RT @a: b"]), min_chars=1000)
    msg = str(e.value)  # what the dataset would hold: the earlier post and the new one
    assert "2 posts, 213 characters" in msg and "1,000" in msg and "1 retweet" in msg
    assert dataset_info(worker, "dril") == first


def test_nothing_left_after_cleaning(tmp_path):
    with pytest.raises(BadInput, match="no posts left"):
        import_dataset(tmp_path / "w", "dril", "csv", file=seed_csv(tmp_path, ["RT @a: b", "https://t.co/x"]))
    assert not (tmp_path / "w" / "datasets" / "dril" / "dataset.csv").exists()


@pytest.mark.parametrize("persona", ["../evil", "Dril", "a/b", "", "x" * 33, "..", "dril\n"])
def test_persona_names_checked(tmp_path, persona):
    with pytest.raises(BadInput, match="persona name"):
        import_dataset(tmp_path / "w", persona, "csv", file=seed_csv(tmp_path, ["a"]))
    with pytest.raises(BadInput, match="persona name"):
        load_texts(tmp_path / "w", persona)
    with pytest.raises(BadInput, match="persona name"):
        dataset_info(tmp_path / "w", persona)
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").rglob("*.csv"))
    assert not (tmp_path / "evil").exists()


def test_missing_dataset(tmp_path):
    with pytest.raises(BadInput, match="run `parodybot import` or /train dril first"):
        load_texts(tmp_path, "dril")
    with pytest.raises(BadInput, match="/train"):
        export_csv(tmp_path, "dril", io.StringIO())
    assert dataset_info(tmp_path, "dril") is None


def test_unknown_source(tmp_path):
    with pytest.raises(BadInput, match="unknown source"):
        import_dataset(tmp_path, "dril", "myspace")


def test_import_from_network_source(tmp_path):
    did, handle = "did:plc:abc", "poster.bsky.social"
    feed = [{"post": bsky_post(did, handle, i, f"post {i} https://t.co/x")} for i in range(5)]
    with FakeBluesky({handle: feed}) as fake:
        s = import_dataset(tmp_path, "poster", "bluesky", handle=handle, base_url=fake.xrpc_url)
    assert s["kept"] == 5 and s["handle"] == handle and s["source"] == "bluesky"
    assert load_texts(tmp_path, "poster")[0] == "post 0"


def test_three_sources_merge_and_a_refresh_adds_only_new_posts(tmp_path, monkeypatch):
    """X (its API, through the fake), Bluesky (the fake AppView) and a CSV in one dataset;
    fetching X again keeps every earlier post and adds only the new ones."""
    from fakes.social_sources import FakeXApi, x_tweet

    monkeypatch.setenv("X_BEARER_TOKEN", "T")
    worker = tmp_path / "w"
    user = {"id": "1", "name": "wint", "username": "dril"}
    timeline = [x_tweet(100 + i, f"x post number {i}") for i in range(5)]
    did, handle = "did:plc:abc", "dril.bsky.social"
    feed = [{"post": bsky_post(did, handle, i, f"bluesky post number {i}")} for i in range(3)]
    with FakeXApi(token="T", users={"dril": user}, timelines={"1": timeline}) as x, FakeBluesky({handle: feed}) as bsky:
        first = import_dataset(worker, "dril", "x", handle="dril", base_url=x.url)
        assert first["added"] == 5 and first["sources"] == {"x:dril": 5}
        s = import_dataset(worker, "dril", "bluesky", handle=handle, base_url=bsky.xrpc_url)
        assert s["added"] == 3 and s["kept"] == 8
        # The CSV brings one post the dataset has from X already (a copy), and two new ones.
        s = import_dataset(worker, "dril", "csv", file=seed_csv(tmp_path, ["x post number 2", "csv one", "csv two"]))
        assert s["added"] == 2 and s["sources"] == {"x:dril": 5, "bluesky:dril.bsky.social": 3, "csv:in.csv": 2}

        timeline[:0] = [x_tweet(106, "x post number 6"), x_tweet(105, "x post number 5")]  # newest first
        s = import_dataset(worker, "dril", "x", handle="dril", base_url=x.url)
    assert s["fetched"] == 7 and s["added"] == 2 and s["kept"] == 12
    assert s["sources"] == {"x:dril": 7, "bluesky:dril.bsky.social": 3, "csv:in.csv": 2}
    texts = load_texts(worker, "dril")
    assert texts[:5] == [f"x post number {i}" for i in range(5)]  # the earliest import's posts stay first
    assert sorted(texts) == sorted([f"x post number {i}" for i in range(7)] + [f"bluesky post number {i}" for i in range(3)]
                                   + ["csv one", "csv two"])
    # replace=True starts afresh.
    s = import_dataset(worker, "dril", "csv", file=seed_csv(tmp_path, ["only me"]), replace=True)
    assert s["kept"] == 1 and load_texts(worker, "dril") == ["only me"]


def test_an_exclude_pattern_leaves_matching_posts_out_and_counts_them(tmp_path):
    worker = tmp_path / "w"
    rows = ["a real post", "GIVEAWAY: win a phone", "another #ad here", "a fine one"]
    s = import_dataset(worker, "dril", "csv", file=seed_csv(tmp_path, rows), exclude=r"(?i)giveaway|#ad\b")
    assert load_texts(worker, "dril") == ["a real post", "a fine one"] and s["dropped"]["excluded"] == 2
    with pytest.raises(BadInput, match="is not a regular expression"):
        import_dataset(worker, "dril", "csv", file=seed_csv(tmp_path, rows), exclude="giveaway(")
    assert load_texts(worker, "dril") == ["a real post", "a fine one"]


def test_a_dataset_from_before_merging_keeps_its_posts(tmp_path):
    worker = tmp_path / "w"
    import_dataset(worker, "dril", "csv", file=seed_csv(tmp_path, ["old one", "old two"]))
    (worker / "datasets" / "dril" / "posts.jsonl").unlink()  # as an older version left it
    s = import_dataset(worker, "dril", "csv", file=seed_csv(tmp_path, ["old two", "new one"]))
    assert s["added"] == 1 and load_texts(worker, "dril") == ["old one", "old two", "new one"]
