"""Every source against local files and local fakes of the real endpoints."""
from __future__ import annotations

import json
import logging
import sys
import types
import os
import zipfile
from pathlib import Path

import pytest

from core.contract import BadInput
try:  # tests/ is on sys.path (no tests/__init__.py); the package path works too
    from fakes.social_sources import (FakeBluesky, FakeMastodon, FakeXApi, block_internet, bsky_post,
                                      bsky_repost_item, masto_account, masto_status, x_tweet)
except ImportError:  # pragma: no cover
    from tests.fakes.social_sources import (FakeBluesky, FakeMastodon, FakeXApi, block_internet, bsky_post,
                                            bsky_repost_item, masto_account, masto_status, x_tweet)
from workers.sources import SOURCE_NAMES, RawPost, Source, SourceUnavailable, get_source
from workers.sources.bluesky import BlueskySource
from workers.sources.mastodon_api import MastodonSource, html_to_text, parse_handle
from workers.sources.x_api import XSource
from workers.sources.x_archive import ArchiveSource


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    block_internet(monkeypatch)


def test_get_source_names_every_source():
    for name in SOURCE_NAMES:
        src = get_source(name)
        assert src.name == name and isinstance(src, Source)
    with pytest.raises(BadInput) as e:
        get_source("myspace")
    for name in SOURCE_NAMES:
        assert name in str(e.value)


def test_internet_is_blocked():
    import requests
    with pytest.raises(Exception, match="internet"):
        requests.get("https://example.com", timeout=2)


# --- csv ----------------------------------------------------------------------


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return p


def test_csv_download_tweets_format_with_multiline_quoted(tmp_path):
    f = write(tmp_path, "dril_tweets.csv",
              'tweets\n"first line\nsecond line"\nplain one\n"with, comma and ""quotes"""\n\n')
    progress = []
    posts = get_source("csv").fetch(file=f, on_progress=progress.append)
    assert [p.text for p in posts] == ["first line\nsecond line", "plain one", 'with, comma and "quotes"']
    assert progress[-1] == 3


def test_csv_other_single_column_and_bom_and_crlf(tmp_path):
    f = write(tmp_path, "x.csv", "\ufeffmy posts\r\nhello\r\n\"a\r\nb\"\r\n")
    assert [p.text for p in get_source("csv").fetch(file=f)] == ["hello", "a\r\nb"]


def test_csv_several_columns_picks_text_column(tmp_path):
    f = write(tmp_path, "x.csv", "id,created_at,full_text,likes\n1,2020-01-01,hi there,3\n2,,second,0\n")
    posts = get_source("csv").fetch(file=f)
    assert [(p.id, p.created_at, p.text) for p in posts] == [("1", "2020-01-01", "hi there"), ("2", None, "second")]


def test_csv_several_columns_without_text_column(tmp_path):
    f = write(tmp_path, "x.csv", "a,b\n1,2\n")
    with pytest.raises(BadInput, match="tweets, text, full_text, content"):
        get_source("csv").fetch(file=f)


def test_csv_limit(tmp_path):
    f = write(tmp_path, "x.csv", "tweets\n" + "".join(f"post {i}\n" for i in range(10)))
    assert len(get_source("csv").fetch(file=f, limit=4)) == 4


@pytest.mark.parametrize("content,match", [("", "empty"), ("   \n", "empty"), ("tweets\n", "no posts"),
                                           ("tweets\n\n\n", "no posts")])
def test_csv_empty_or_header_only(tmp_path, content, match):
    with pytest.raises(BadInput, match=match):
        get_source("csv").fetch(file=write(tmp_path, "x.csv", content))


def test_csv_not_utf8_says_where(tmp_path):
    f = write(tmp_path, "latin1.csv", "tweets\nfine\ncaf\u00e9 au lait\n".encode("latin-1"))
    with pytest.raises(BadInput) as e:
        get_source("csv").fetch(file=f)
    msg = str(e.value)
    assert "UTF-8" in msg and "line 3" in msg and "column 4" in msg and "0xE9" in msg


def test_csv_missing_file_and_no_file(tmp_path):
    with pytest.raises(BadInput, match="not found"):
        get_source("csv").fetch(file=tmp_path / "nope.csv")
    with pytest.raises(BadInput, match="reads a file"):
        get_source("csv").fetch()


def test_csv_given_a_zip(tmp_path):
    p = tmp_path / "a.csv"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x", "y")
    with pytest.raises(BadInput, match="archive"):
        get_source("csv").fetch(file=p)


# --- archive -----------------------------------------------------------------


def tweet_obj(i: int, text: str, **extra) -> dict:
    t = {"retweeted": False, "id_str": str(i), "id": str(i), "full_text": text, "favorite_count": "3",
         "truncated": False, "lang": "en", "created_at": "Wed Oct 10 20:19:24 +0000 2018",
         "entities": {"hashtags": [], "urls": [], "user_mentions": []}}
    t.update(extra)
    return t


def tweets_js(var: str, items: list[dict], wrap: bool = True) -> str:
    body = [{"tweet": t} for t in items] if wrap else items
    return f"window.YTD.{var} = " + json.dumps(body, indent=2)


def make_zip(path: Path, members: dict[str, str | bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_archive_new_format_with_parts_and_flags(tmp_path):
    z = make_zip(tmp_path / "twitter-2024.zip", {
        "Your archive.html": "<html></html>",
        "data/account.js": "window.YTD.account.part0 = []",
        "data/deleted-tweets.js": tweets_js("deleted_tweets.part0", [tweet_obj(9, "deleted")]),
        "data/tweets.js": tweets_js("tweets.part0", [
            tweet_obj(1, "fish &amp; chips &lt;3 &gt;:("),
            tweet_obj(2, "RT @someone: their post"),
            tweet_obj(3, "@friend yes", in_reply_to_status_id_str="77", in_reply_to_user_id_str="5",
                      in_reply_to_status_id="77", in_reply_to_user_id="5"),
        ]),
        "data/tweets-part1.js": tweets_js("tweets.part1", [tweet_obj(4, "part one\nwith a line break")]),
        "data/tweets-part2.js": tweets_js("tweets.part2", [tweet_obj(5, "part two")]),
        "data/tweets_media/1-abc.jpg": b"\xff\xd8",
    })
    progress = []
    posts = get_source("archive").fetch(file=z, on_progress=progress.append)
    assert [p.text for p in posts] == ["fish &amp; chips &lt;3 &gt;:(", "RT @someone: their post", "@friend yes",
                                       "part one\nwith a line break", "part two"]
    assert [(p.is_retweet, p.is_reply) for p in posts] == [(False, False), (True, False), (False, True),
                                                           (False, False), (False, False)]
    assert posts[0].id == "1" and posts[0].created_at == "2018-10-10T20:19:24+00:00"
    assert progress[-1] == 5


def test_archive_old_format_without_wrapper(tmp_path):
    z = make_zip(tmp_path / "old.zip", {
        "data/tweet.js": tweets_js("tweet.part0", [tweet_obj(1, "old one"),
                                                   tweet_obj(2, "old rt", retweeted=True)], wrap=False),
        "data/tweet-part1.js": tweets_js("tweet.part1", [tweet_obj(3, "old part")], wrap=False),
    })
    posts = get_source("archive").fetch(file=z)
    assert [(p.text, p.is_retweet) for p in posts] == [("old one", False), ("old rt", True), ("old part", False)]


def test_archive_rezipped_folder_and_plain_js(tmp_path):
    z = make_zip(tmp_path / "again.zip", {
        "twitter-2023-01-01-abc/data/tweets.js": tweets_js("tweets.part0", [tweet_obj(1, "nested")])})
    assert [p.text for p in get_source("archive").fetch(file=z)] == ["nested"]
    js = write(tmp_path, "tweets.js", tweets_js("tweets.part0", [tweet_obj(1, "loose file")]))
    assert [p.text for p in get_source("archive").fetch(file=js)] == ["loose file"]


@pytest.mark.parametrize("name", ["../evil.js", "/etc/passwd", "data/../../x.js", "C:/win.js", "..\\x.js"])
def test_archive_zip_slip_refused(tmp_path, name):
    z = make_zip(tmp_path / "slip.zip", {"data/tweets.js": tweets_js("tweets.part0", []), name: "x"})
    with pytest.raises(BadInput, match="unsafe path"):
        get_source("archive").fetch(file=z)


def test_archive_total_size_limit(tmp_path):
    z = make_zip(tmp_path / "big.zip", {
        "data/tweets.js": tweets_js("tweets.part0", [tweet_obj(i, f"post number {i} " * 5) for i in range(300)])})
    with pytest.raises(BadInput, match="over the limit"):
        ArchiveSource(max_bytes=10_000).fetch(file=z)
    with pytest.raises(BadInput, match="over the limit"):
        get_source("archive").fetch(file=z, max_bytes=10_000)
    assert len(ArchiveSource(max_bytes=1_000_000).fetch(file=z)) == 300


def test_archive_media_does_not_count_against_the_limit(tmp_path):
    # A full export carries photos and videos we never open; only the tweets files count.
    z = make_zip(tmp_path / "full.zip", {
        "data/tweets.js": tweets_js("tweets.part0", [tweet_obj(1, "hello")]),
        "data/tweets_media/1-video.mp4": os.urandom(2_000_000)}, compression=zipfile.ZIP_STORED)
    assert [p.text for p in ArchiveSource(max_bytes=1_000_000).fetch(file=z)] == ["hello"]


def test_archive_zip_bomb_ratio(tmp_path):
    z = make_zip(tmp_path / "bomb.zip", {"data/tweets.js": tweets_js("tweets.part0", []),
                                         "data/padding.bin": b"\0" * (8 * 1024 * 1024)})
    assert (tmp_path / "bomb.zip").stat().st_size < 100_000
    with pytest.raises(BadInput, match="zip bomb"):
        get_source("archive").fetch(file=z)


def test_archive_lying_size_is_caught_while_reading(tmp_path):
    """A member whose header declares a small size but expands to more: the limit holds while reading."""
    payload = tweets_js("tweets.part0", [tweet_obj(i, "x" * 200) for i in range(200)]).encode()
    path = make_zip(tmp_path / "liar.zip", {"data/tweets.js": payload})
    raw = bytearray(path.read_bytes())
    # patch the declared uncompressed size (local header offset 22, central directory offset 24)
    real = len(payload).to_bytes(4, "little")
    fake = (100).to_bytes(4, "little")
    assert raw.count(real) == 2
    raw = raw.replace(real, fake)
    path.write_bytes(bytes(raw))
    # zipfile stops at the declared size and then fails the CRC check
    with pytest.raises(BadInput, match="could not be read|size limit"):
        ArchiveSource(max_bytes=5_000).fetch(file=path)


def test_archive_read_budget_enforced_while_reading(tmp_path):
    from workers.sources.x_archive import _read_member
    path = make_zip(tmp_path / "a.zip", {"data/tweets.js": b"x" * 3_000_000})
    with zipfile.ZipFile(path) as zf:
        with pytest.raises(BadInput, match="beyond the size limit"):
            _read_member(zf, zf.getinfo("data/tweets.js"), 1_500_000)
        assert len(_read_member(zf, zf.getinfo("data/tweets.js"), 3_000_000)) == 3_000_000


# The export X made until about 2018: data/js/tweets/YYYY_MM.js ("Grailbird")
# beside tweets.csv. Field names as in those files: id_str, text, created_at
# ("2013-05-01 10:00:00 +0000"), in_reply_to_status_id_str, retweeted_status.
OLD_CSV_HEADER = ('"tweet_id","in_reply_to_status_id","in_reply_to_user_id","timestamp","source","text",'
                  '"retweeted_status_id","retweeted_status_user_id","retweeted_status_timestamp","expanded_urls"\n')


def grailbird(i: int, text: str, **extra) -> dict:
    t = {"source": "web", "entities": {"user_mentions": [], "media": [], "hashtags": [], "urls": []},
         "geo": {}, "id_str": str(i), "text": text, "id": i, "created_at": f"2013-05-{i:02d} 10:00:00 +0000",
         "user": {"name": "wint", "screen_name": "dril", "id_str": "16298441"}}
    t.update(extra)
    return t


def older_export(tmp_path: Path, *, with_js: bool = True) -> Path:
    members = {
        "index.html": "<html></html>",
        "tweets.csv": OLD_CSV_HEADER
        + '"2","","","2013-05-02 10:00:00 +0000","web","@wint is the best","","","",""\n'
        + '"3","1","7","2013-05-03 10:00:00 +0000","web","@someone same","","","",""\n',
    }
    if with_js:
        members["data/js/tweets/2013_06.js"] = ("Grailbird.data.tweets_2013_06 = \n"
                                                + json.dumps([grailbird(9, "june post")]))
        members["data/js/tweets/2013_05.js"] = ("Grailbird.data.tweets_2013_05 = \n" + json.dumps([
            grailbird(2, "@wint is the best"),
            grailbird(3, "@someone same", in_reply_to_status_id_str="1", in_reply_to_user_id_str="7"),
            grailbird(4, "RT @x: theirs", retweeted_status=grailbird(1, "theirs")),
        ]))
        members["data/js/tweet_index.js"] = "var tweet_index = []"
    return make_zip(tmp_path / "tweets.zip", members)


def test_archive_older_export_is_read_from_its_monthly_files(tmp_path):
    from workers.cleaning import clean

    src = ArchiveSource()
    posts = src.fetch(file=older_export(tmp_path))
    assert src.read_from == "older X export (data/js/tweets/YYYY_MM.js)"
    assert [p.text for p in posts] == ["@wint is the best", "@someone same", "RT @x: theirs", "june post"]
    assert [(p.is_reply, p.is_retweet) for p in posts] == [(False, False), (True, False), (False, True), (False, False)]
    assert posts[0].created_at == "2013-05-02T10:00:00+00:00"
    assert clean(posts).kept == ["@wint is the best", "june post"]  # a non-reply @-post is kept


def test_archive_older_export_with_only_tweets_csv(tmp_path):
    src = ArchiveSource()
    posts = src.fetch(file=older_export(tmp_path, with_js=False))
    assert src.read_from == "older X export (tweets.csv)"
    assert [(p.text, p.is_reply) for p in posts] == [("@wint is the best", False), ("@someone same", True)]


def test_archive_note_tweets_give_long_posts_their_whole_text_and_community_posts_count(tmp_path):
    whole = "a long post " * 40  # 480 characters
    cut = whole[:274] + "… https://t.co/abcdefghij"
    z = make_zip(tmp_path / "x.zip", {
        "data/tweets.js": tweets_js("tweets.part0", [
            tweet_obj(1, cut, created_at="Mon May 01 12:00:00 +0000 2023"), tweet_obj(2, "short")]),
        "data/community-tweet.js": tweets_js("community_tweet.part0", [tweet_obj(3, "in a community")]),
        # note-tweet.js as X writes it: {"noteTweet": {"noteTweetId", "core": {"text", ...}, "createdAt"}}
        "data/note-tweet.js": "window.YTD.note_tweet.part0 = " + json.dumps([
            {"noteTweet": {"noteTweetId": "99", "updatedAt": "2023-05-01T12:00:00.000Z",
                           "core": {"styletags": [], "urls": [], "text": whole.strip(), "mentions": [],
                                    "cashtags": [], "hashtags": []},
                           "createdAt": "2023-05-01T12:00:00.000Z"}}]),
    })
    src = ArchiveSource()
    posts = src.fetch(file=z)
    assert src.read_from == "current X export (data/tweets.js)"
    assert [p.text for p in posts] == [whole.strip(), "short", "in a community"]


def test_archive_without_tweets_file(tmp_path):
    z = make_zip(tmp_path / "x.zip", {"data/account.js": "window.YTD.account.part0 = []",
                                      "data/like.js": "window.YTD.like.part0 = []"})
    with pytest.raises(BadInput, match=r"data/tweets\.js.*data/js/tweets/YYYY_MM\.js or tweets\.csv"):
        get_source("archive").fetch(file=z)


def test_archive_not_a_zip_and_bad_js(tmp_path):
    with pytest.raises(BadInput, match="not a zip"):
        get_source("archive").fetch(file=write(tmp_path, "a.zip", b"not a zip"))
    z = make_zip(tmp_path / "bad.zip", {"data/tweets.js": "window.YTD.tweets.part0 = [ {oops"})
    with pytest.raises(BadInput, match="not valid JSON"):
        get_source("archive").fetch(file=z)


# --- X API v2 ------------------------------------------------------------------

TOKEN = "AAAAtestBearerSECRETtoken%2Fxyz"


@pytest.fixture
def x_api(monkeypatch):
    monkeypatch.setenv("X_BEARER_TOKEN", TOKEN)
    tweets = [x_tweet(1000 - i, f"tweet {i} &amp; more") for i in range(230)]
    tweets.insert(5, x_tweet(5000, "RT @a: b", retweet_of="1"))
    tweets.insert(7, x_tweet(5001, "@a reply", reply_to="1"))
    fake = FakeXApi(token=TOKEN, users={"dril": {"id": "16298441", "name": "wint", "username": "dril"}},
                    timelines={"16298441": tweets}, rate_limit_first=1, reset_at=1_700_000_042)
    with fake:
        yield fake


def test_x_user_timeline_paginates_and_waits_on_429(x_api, caplog):
    caplog.set_level(logging.DEBUG)
    slept = []
    src = XSource(sleep=slept.append, clock=lambda: 1_700_000_000)
    progress = []
    posts = src.fetch(handle="@dril", base_url=x_api.url, on_progress=progress.append)
    assert len(posts) == 230 and posts[0].text == "tweet 0 &amp; more"
    assert posts[0].id == "1000" and posts[0].created_at.startswith("2020-09-13T12:")
    assert slept == [43]  # until x-rate-limit-reset, plus one second
    assert progress == [100, 200, 230]
    lookups = x_api.hits("/2/users/by/username/")
    assert [r.path for r in lookups] == ["/2/users/by/username/dril"]
    pages = x_api.hits("/2/users/16298441/tweets")
    assert len(pages) == 4  # the 429, then three pages
    for r in pages:
        assert r.param("exclude") == "retweets,replies"
        assert r.param("max_results") == "100"
        assert "created_at" in r.param("tweet.fields")
        assert r.headers["authorization"] == f"Bearer {TOKEN}"
    assert [r.param("pagination_token") for r in pages] == [None, None, "7140dibdnow9c7btw4100",
                                                             "7140dibdnow9c7btw4200"]
    assert TOKEN not in caplog.text


def test_x_long_posts_come_whole_from_note_tweet(monkeypatch):
    """X cuts `text` at 280 characters; the whole post is `note_tweet.text`, sent only
    when tweet.fields names note_tweet (X API v2 docs, "Tweet object": note_tweet)."""
    monkeypatch.setenv("X_BEARER_TOKEN", TOKEN)
    long = "word " * 100  # 500 characters
    fake = FakeXApi(token=TOKEN, users={"dril": {"id": "1", "name": "wint", "username": "dril"}},
                    timelines={"1": [x_tweet(7, long.strip()), x_tweet(6, "short one")]})
    with fake:
        posts = XSource(sleep=lambda s: None).fetch(handle="dril", base_url=fake.url)
        (page,) = fake.hits("/2/users/1/tweets")
    assert "note_tweet" in page.param("tweet.fields").split(",")
    assert [p.text for p in posts] == [long.strip(), "short one"]


def test_x_usage_cap_says_until_when_and_never_waits(monkeypatch):
    """The monthly usage cap (recorded body: title UsageCapExceeded, period Monthly)
    is no 15-minute limit: no waiting, and the message names the first of next month."""
    import datetime as dt

    monkeypatch.setenv("X_BEARER_TOKEN", TOKEN)
    fake = FakeXApi(token=TOKEN, users={"dril": {"id": "1", "name": "wint", "username": "dril"}},
                    timelines={"1": [x_tweet(7, "hello")]}, usage_capped=True)
    slept = []
    now = dt.datetime(2026, 12, 2, 5, 0, tzinfo=dt.timezone.utc).timestamp()
    with fake, pytest.raises(SourceUnavailable) as caught:
        XSource(sleep=slept.append, clock=lambda: now).fetch(handle="dril", base_url=fake.url)
    assert slept == [] and len(fake.hits("/2/users/1/tweets")) == 1
    message = str(caught.value)
    assert "Usage cap exceeded: Monthly product cap" in message and "until 2027-01-01 00:00 UTC" in message
    assert "15 minutes" not in message and "archive" in message


def test_x_limit_caps_pages(x_api):
    posts = XSource(sleep=lambda s: None).fetch(handle="dril", base_url=x_api.url, limit=150)
    assert len(posts) == 150
    assert len(x_api.hits("/2/users/16298441/tweets")) == 3  # 429 + 2 pages


def test_x_unknown_user(x_api):
    with pytest.raises(BadInput, match="not found"):
        XSource(sleep=lambda s: None).fetch(handle="nobody_here", base_url=x_api.url)


def test_x_bad_token_never_shows_token(x_api, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("X_BEARER_TOKEN", "WRONG-secret-value")
    with pytest.raises(BadInput) as e:
        get_source("x").fetch(handle="dril", base_url=x_api.url)
    assert "X_BEARER_TOKEN" in str(e.value)
    assert "WRONG-secret-value" not in str(e.value) and "WRONG-secret-value" not in repr(e.value)
    assert "WRONG-secret-value" not in caplog.text
    assert e.value.__cause__ is None and e.value.__context__ is None


def test_x_missing_token_and_bad_handle(monkeypatch):
    monkeypatch.delenv("X_BEARER_TOKEN", raising=False)
    with pytest.raises(BadInput, match="X_BEARER_TOKEN"):
        get_source("x").fetch(handle="dril")
    with pytest.raises(BadInput, match="not an X username"):
        get_source("x").fetch(handle="no spaces allowed")
    with pytest.raises(BadInput, match="needs an account handle"):
        get_source("x").fetch()


def test_x_unreachable(monkeypatch):
    monkeypatch.setenv("X_BEARER_TOKEN", TOKEN)
    with pytest.raises(SourceUnavailable) as e:
        get_source("x").fetch(handle="dril", base_url="http://127.0.0.1:9")
    assert TOKEN not in str(e.value) and e.value.__context__ is None


def test_x_default_host_is_api_twitter_com(monkeypatch):
    """Without base_url the real host is used (the socket guard stops it)."""
    monkeypatch.setenv("X_BEARER_TOKEN", TOKEN)
    with pytest.raises(SourceUnavailable, match="api.twitter.com"):
        get_source("x").fetch(handle="dril")


# --- Bluesky ----------------------------------------------------------------------

DID = "did:plc:z72i7hdynmk6r22z27h6tvur"
HANDLE = "dril.bsky.social"


@pytest.fixture
def bluesky():
    own = [{"post": bsky_post(DID, HANDLE, i, f"skeet {i}")} for i in range(120)]
    own.insert(3, {"post": bsky_post(DID, HANDLE, 500, "a reply", reply=True)})
    own.insert(4, bsky_repost_item(bsky_post("did:plc:someoneelse", "other.bsky.social", 501, "their post"),
                                   DID, HANDLE))
    with FakeBluesky({HANDLE: own}, rate_limit_first=1, reset_at=1_700_000_010) as fake:
        yield fake


def test_bluesky_author_feed(bluesky):
    slept, progress = [], []
    src = BlueskySource(sleep=slept.append, clock=lambda: 1_700_000_000)
    posts = src.fetch(handle="@dril.bsky.social", base_url=bluesky.xrpc_url, on_progress=progress.append)
    texts = [p.text for p in posts]
    assert texts == [f"skeet {i}" for i in range(120)]  # no repost, no reply
    assert "their post" not in texts
    assert posts[0].id == f"at://{DID}/app.bsky.feed.post/3kq0000000000"
    assert posts[0].created_at.startswith("2024-05-01")
    assert slept == [11]
    assert progress == [99, 120]  # the first page holds the repost too (100 items)
    calls = bluesky.hits("/xrpc/app.bsky.feed.getAuthorFeed")
    assert len(calls) == 3  # 429, then two pages
    for r in calls:
        assert r.param("filter") == "posts_no_replies"
        assert r.param("actor") == HANDLE
        assert r.param("limit") == "100"
        assert "authorization" not in r.headers  # no login
    cursors = [r.param("cursor") for r in calls]
    # The second page came with the server's opaque cursor passed back as it was (the fake
    # decodes it: a changed one would not page on).
    assert cursors[:2] == [None, None] and cursors[2] and not cursors[2].isdigit()


def test_bluesky_a_post_starting_with_a_mention_is_no_reply():
    """"@alice.bsky.social is the best": a mention facet, no `reply` on the record
    (app.bsky.feed.post: reply is set only on replies), a quote embed: kept."""
    from workers.cleaning import clean

    quoted = bsky_post("did:plc:alice", "alice.bsky.social", 9, "a post worth quoting")
    feed = [{"post": bsky_post(DID, HANDLE, 1, "@alice.bsky.social is the best", mention="alice.bsky.social")},
            {"post": bsky_post(DID, HANDLE, 2, "look at this", quote=quoted)},
            {"post": bsky_post(DID, HANDLE, 3, "@bob yes", reply=True), "reply": {"root": {}, "parent": {}}}]
    with FakeBluesky({HANDLE: feed}) as fake:
        posts = BlueskySource(sleep=lambda s: None).fetch(handle=HANDLE, base_url=fake.xrpc_url)
    assert [(p.text, p.is_reply) for p in posts] == [("@alice.bsky.social is the best", False), ("look at this", False)]
    assert clean(posts).kept == ["@alice.bsky.social is the best", "look at this"]


def test_bluesky_base_url_without_xrpc_and_limit(bluesky):
    posts = BlueskySource(sleep=lambda s: None).fetch(handle="dril.bsky.social", base_url=bluesky.url, limit=7)
    assert len(posts) == 7


def test_bluesky_unknown_actor(bluesky):
    with pytest.raises(BadInput, match="Profile not found"):
        BlueskySource(sleep=lambda s: None).fetch(handle="nobody.bsky.social", base_url=bluesky.xrpc_url)


def test_bluesky_bad_handle_and_unreachable():
    with pytest.raises(BadInput, match="not a Bluesky handle"):
        get_source("bluesky").fetch(handle="not a handle!")
    with pytest.raises(SourceUnavailable):
        get_source("bluesky").fetch(handle="dril.bsky.social", base_url="http://127.0.0.1:9/xrpc")


# --- Mastodon ---------------------------------------------------------------------

DOMAIN = "mastodon.example"


@pytest.fixture
def mastodon():
    acct = masto_account("109", "dril", DOMAIN)
    statuses = []
    sid = 2000
    for i in range(90):
        statuses.append(masto_status(sid, acct, f"<p>toot {i} &amp; &lt;3</p>"))
        sid -= 1
    statuses.insert(2, masto_status(5, acct, "<p>@x reply</p>", reply_to="1"))
    statuses.insert(3, masto_status(6, acct, "", reblog=masto_status(7, masto_account("2", "o", DOMAIN), "<p>o</p>")))
    statuses.insert(0, masto_status(2001, acct,
        '<p>first line<br />second line</p><p>new paragraph with <a href="https://example.com/long/path" '
        'rel="nofollow noopener" target="_blank"><span class="invisible">https://</span><span class="ellipsis">'
        'example.com/long/pa</span><span class="invisible">th</span></a> and <span class="h-card"><a '
        'href="https://m.example/@bob" class="u-url mention">@<span>bob</span></a></span> '
        '<a href="https://m.example/tags/caf%C3%A9" class="mention hashtag" rel="tag">#<span>café</span></a></p>'))
    with FakeMastodon(DOMAIN, {"dril": acct, f"dril@{DOMAIN}": acct}, {"109": statuses}) as fake:
        yield fake


def test_mastodon_statuses_paginate(mastodon):
    progress = []
    posts = MastodonSource(sleep=lambda s: None).fetch(handle=f"@dril@{DOMAIN}", base_url=mastodon.url,
                                                       on_progress=progress.append)
    assert len(posts) == 91
    assert posts[0].text == ("first line\nsecond line\n\nnew paragraph with https://example.com/long/path "
                             "and @bob #café")
    assert posts[1].text == "toot 0 & <3"
    assert posts[0].id == "2001" and posts[0].created_at.startswith("2024-04-")
    assert progress == [40, 80, 91]
    lookups = mastodon.hits("/api/v1/accounts/lookup")
    assert [r.param("acct") for r in lookups] == [f"dril@{DOMAIN}"]  # base_url is another host
    pages = mastodon.hits("/api/v1/accounts/109/statuses")
    assert len(pages) == 4  # the last page still links a next one, as Mastodon's do; that one is []
    for r in pages:
        assert r.param("exclude_replies") in ("1", "true") and r.param("exclude_reblogs") in ("1", "true")
    assert pages[0].param("max_id") is None and pages[1].param("max_id") == posts[39].id


def test_mastodon_quote_posts_lose_their_quote_inline_fallback():
    """A quote post (Mastodon 4.4+: `quote.quoted_status`) starts its content with
    <p class="quote-inline">RE: <link></p> for servers that cannot show quotes; that
    paragraph is not the author's words."""
    acct = masto_account("109", "dril", DOMAIN)
    quoted = masto_status(50, masto_account("2", "other", DOMAIN), "<p>the quoted post</p>")
    statuses = [masto_status(60, acct, "<p>this is so true</p>", quote_of=quoted),
                masto_status(59, acct, '<p>RE: a post of mine that starts like a quote</p>')]
    with FakeMastodon(DOMAIN, {f"dril@{DOMAIN}": acct}, {"109": statuses}) as fake:
        posts = MastodonSource(sleep=lambda s: None).fetch(handle=f"dril@{DOMAIN}", base_url=fake.url)
    assert [p.text for p in posts] == ["this is so true", "RE: a post of mine that starts like a quote"]


def test_mastodon_rate_limit_waits(mastodon):
    mastodon.rate_limit_left = 1
    slept = []
    posts = MastodonSource(sleep=slept.append).fetch(handle=f"dril@{DOMAIN}", base_url=mastodon.url, limit=10)
    assert len(posts) == 10 and len(slept) == 1 and 100 < slept[0] <= 125


def test_mastodon_unknown_account(mastodon):
    with pytest.raises(BadInput, match="not found"):
        get_source("mastodon").fetch(handle=f"nobody@{DOMAIN}", base_url=mastodon.url)


def test_mastodon_handles():
    assert parse_handle("@Gargron@mastodon.social") == ("Gargron", "mastodon.social")
    assert parse_handle("user@Example.ORG") == ("user", "example.org")
    assert parse_handle("https://hachyderm.io/@alice") == ("alice", "hachyderm.io")
    assert parse_handle("bob") == ("bob", None)
    with pytest.raises(BadInput, match="user@instance"):
        parse_handle("a@b@c@d")
    with pytest.raises(BadInput, match="which instance"):
        get_source("mastodon").fetch(handle="bob")


def test_mastodon_unreachable():
    with pytest.raises(SourceUnavailable):
        get_source("mastodon").fetch(handle="bob@127.0.0.1:9", base_url="http://127.0.0.1:9")


def test_mastodon_version_check_answers(mastodon):
    """Mastodon.py's own version check (if turned on) is answered by the fake."""
    from mastodon import Mastodon
    api = Mastodon(api_base_url=mastodon.url, version_check_mode="created")
    assert api.retrieve_mastodon_version() == "4.3.2"
    assert api.account_lookup("dril")["id"] == "109"


def test_html_to_text():
    assert html_to_text("<p>a<br>b</p><p>c &amp; d &#39;e&#39;</p>") == "a\nb\n\nc & d 'e'"
    assert html_to_text("") == ""


# --- twint --------------------------------------------------------------------------


def test_twint_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "twint", None)  # import fails
    with pytest.raises(BadInput) as e:
        get_source("twint").fetch(handle="dril")
    for name in ("csv", "archive", "x", "bluesky", "mastodon"):
        assert name in str(e.value)


def test_twint_fails(monkeypatch):
    fake = types.ModuleType("twint")

    class Config:
        pass

    def search(config):
        raise SystemExit("CRITICAL:root:twint.run:Twint:Feed:noDataExpecting value")

    fake.Config = Config
    fake.run = types.SimpleNamespace(Search=search)
    fake.output = types.SimpleNamespace(tweets_list=[])
    monkeypatch.setitem(sys.modules, "twint", fake)
    with pytest.raises(BadInput, match="since 2023.*archive"):
        get_source("twint").fetch(handle="dril")


def test_raw_post_defaults():
    p = RawPost("hi")
    # None: the source cannot say (cleaning then guesses from the text); False: it says "no".
    assert (p.id, p.created_at, p.is_retweet, p.is_reply) == (None, None, None, None)


def test_tweets_csv_of_the_older_export_says_which_posts_are_replies_and_retweets(tmp_path):
    """The older X export's tweets.csv has in_reply_to_status_id and retweeted_status_id
    columns: an empty one means "no", a filled one "yes", whatever the text starts with."""
    from workers.cleaning import clean

    path = tmp_path / "tweets.csv"
    path.write_text(
        '"tweet_id","in_reply_to_status_id","in_reply_to_user_id","timestamp","source","text",'
        '"retweeted_status_id","retweeted_status_user_id","retweeted_status_timestamp","expanded_urls"\n'
        '"3","","","2014-01-02 03:04:05 +0000","web","@dril is the greatest poster","","","",""\n'
        '"2","1","7","2014-01-02 03:04:05 +0000","web","same to you","","","",""\n'
        '"1","","","2014-01-02 03:04:05 +0000","web","a post someone else wrote","9","7","2014-01-01",""\n',
        encoding="utf-8")
    posts = get_source("csv").fetch(file=path)
    assert [(p.is_reply, p.is_retweet) for p in posts] == [(False, False), (True, False), (False, True)]
    result = clean(posts)
    assert result.kept == ["@dril is the greatest poster"]
    assert result.dropped["reply"] == 1 and result.dropped["retweet"] == 1
