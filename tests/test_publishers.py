"""Publishers against local fakes of the real endpoints (no internet, no real waiting)."""
import asyncio
import datetime as dt
import json
import logging
import subprocess
import sys
import traceback
import uuid
from pathlib import Path

import pytest
import tempfile

from bot.publishers import (
    AuthError, CredentialsMissing, OutboxPublisher, PostResult, PublishConfigError, PublishError, Publisher,
    RateLimited, TransientError, make_publisher, publish_with_retry, required_env,
)
from bot.publishers.x import rate_limit_reset
try:  # tests/ is on sys.path under pytest's default (rootdir-less) import mode
    from fakes.posting_servers import FakeBluesky, FakeMastodon, FakeX
except ImportError:  # pragma: no cover - if tests/ becomes a package
    from tests.fakes.posting_servers import FakeBluesky, FakeMastodon, FakeX

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 0.2  # client timeout; the fakes stall for 2 s in "timeout" mode

X_SECRETS = {
    "DRIL_X_CONSUMER_KEY": "ck-Qw3rTy7uIoP1",
    "DRIL_X_CONSUMER_SECRET": "cs-ZxCvBnM9aSdF2gHjKl",
    "DRIL_X_ACCESS_TOKEN": "1234567-AtTokenVal0e9",
    "DRIL_X_ACCESS_TOKEN_SECRET": "ats-PoIuYtReWq8LkJh",
}
BSKY_HANDLE = "dril-gpt.example.com"
BSKY_PASSWORD = "abcd-efgh-ijkl-mnop"
MASTO_TOKEN = "masto-TokEn-5f4e3d2c1b0a"
ENV = {**X_SECRETS, "DRIL_BSKY_HANDLE": BSKY_HANDLE, "DRIL_BSKY_APP_PASSWORD": BSKY_PASSWORD,
       "DRIL_MASTO_ACCESS_TOKEN": MASTO_TOKEN}
SECRET_VALUES = [*X_SECRETS.values(), BSKY_PASSWORD, MASTO_TOKEN]


class FakeTime:
    """Injected sleep + clock: records waits, advances the clock, never blocks."""

    def __init__(self, now=1_800_000_000.0):
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
async def fake_x():
    async with FakeX(consumer_key=X_SECRETS["DRIL_X_CONSUMER_KEY"], access_token=X_SECRETS["DRIL_X_ACCESS_TOKEN"],
                     consumer_secret=X_SECRETS["DRIL_X_CONSUMER_SECRET"],
                     access_token_secret=X_SECRETS["DRIL_X_ACCESS_TOKEN_SECRET"]) as server:
        yield server


@pytest.fixture
async def fake_bsky():
    async with FakeBluesky(handle=BSKY_HANDLE, password=BSKY_PASSWORD) as server:
        yield server


@pytest.fixture
async def fake_masto():
    async with FakeMastodon(token=MASTO_TOKEN) as server:
        yield server


def x_pub(server, **extra):
    return make_publisher({"platform": "x", "credentials": "DRIL_X", "base_url": server.url, "timeout": TIMEOUT,
                           **extra}, ENV, Path("/nonexistent"))


def bsky_pub(server, data_dir: Path | None = None):
    """A publisher as a posting run makes one; ``data_dir`` holds the kept session
    (a fresh folder, so a fresh login, unless a test shares one)."""
    return make_publisher({"platform": "bluesky", "credentials": "DRIL_BSKY", "base_url": server.url,
                           "timeout": TIMEOUT}, ENV, data_dir or Path(tempfile.mkdtemp()))


def masto_pub(server):
    return make_publisher({"platform": "mastodon", "credentials": "DRIL_MASTO", "base_url": server.url,
                           "timeout": TIMEOUT}, ENV, Path("/nonexistent"))


PUBS = {"x": x_pub, "bluesky": bsky_pub, "mastodon": masto_pub}


@pytest.fixture
def servers(fake_x, fake_bsky, fake_masto):
    return {"x": fake_x, "bluesky": fake_bsky, "mastodon": fake_masto}


POST_PATH = {"x": "/2/tweets", "bluesky": "/xrpc/com.atproto.repo.createRecord", "mastodon": "/api/v1/statuses"}

# ================================================================== happy paths


async def test_x_posts_a_signed_tweet(fake_x):
    pub = x_pub(fake_x)
    assert isinstance(pub, Publisher) and pub.platform == "x"
    result = await pub.publish("i am the man who sold the world 🌍")
    tweet_id = next(iter(fake_x.tweets))
    assert result == PostResult("x", tweet_id, f"https://x.com/i/web/status/{tweet_id}")
    (req,) = fake_x.requests_to("/2/tweets")
    assert req.method == "POST" and req.json == {"text": "i am the man who sold the world 🌍"}
    auth = req.headers["Authorization"]
    assert auth.startswith("OAuth ")
    assert f'oauth_consumer_key="{X_SECRETS["DRIL_X_CONSUMER_KEY"]}"' in auth
    assert f'oauth_token="{X_SECRETS["DRIL_X_ACCESS_TOKEN"]}"' in auth
    assert 'oauth_signature_method="HMAC-SHA1"' in auth  # and the fake verified the signature


async def test_x_url_uses_username_when_known(fake_x):
    result = await x_pub(fake_x, username="@dril_gpt").publish("hi")
    assert result.url == f"https://x.com/dril_gpt/status/{result.remote_id}"


async def test_x_duplicate_content_counts_as_posted(fake_x):
    pub = x_pub(fake_x)
    first = await pub.publish("same words")
    again = await pub.publish("same words")
    assert not first.duplicate
    assert again == PostResult("x", "", None, duplicate=True)
    fake_x.fail_next("duplicate")
    assert (await publish_with_retry(pub, "other words", sleep=FakeTime().sleep)).duplicate
    assert len(fake_x.tweets) == 1


async def test_bluesky_creates_a_post_record(fake_bsky):
    pub = bsky_pub(fake_bsky)
    result = await pub.publish("bluesky is just x with extra steps")
    (rkey, record), = fake_bsky.records.items()
    assert result == PostResult("bluesky", f"at://{fake_bsky.did}/app.bsky.feed.post/{rkey}",
                                f"https://bsky.app/profile/{BSKY_HANDLE}/post/{rkey}")
    (login,) = fake_bsky.requests_to("/xrpc/com.atproto.server.createSession")
    assert login.json["identifier"] == BSKY_HANDLE and login.json["password"] == BSKY_PASSWORD
    (create,) = fake_bsky.requests_to("/xrpc/com.atproto.repo.createRecord")
    assert create.json["repo"] == fake_bsky.did and create.json["collection"] == "app.bsky.feed.post"
    assert create.headers["Authorization"].startswith("Bearer ")
    assert record["$type"] == "app.bsky.feed.post" and record["text"] == "bluesky is just x with extra steps"
    created = dt.datetime.fromisoformat(record["createdAt"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 30
    assert len(rkey) == 13  # a TID


def facet_spans(record):
    """What a Bluesky reader sees as rich text: (kind, the text bytes the facet covers, its value), in order.

    Facet indices are UTF-8 byte offsets, so the text is sliced as bytes, as the app does."""
    data = record["text"].encode("utf-8")
    spans = []
    for facet in record.get("facets", []):
        assert facet["$type"] == "app.bsky.richtext.facet"
        (feature,) = facet["features"]
        kind = feature["$type"].removeprefix("app.bsky.richtext.facet#")
        value = feature[{"link": "uri", "tag": "tag", "mention": "did"}[kind]]
        spans.append((kind, data[facet["index"]["byteStart"]:facet["index"]["byteEnd"]].decode("utf-8"), value))
    return spans


async def test_bluesky_links_and_tags_are_facets_at_utf8_byte_offsets(fake_bsky):
    long_tag = "#" + "a" * 65  # over Bluesky's 64-grapheme limit: plain text
    text = (f"café 🌍 naïve ☕ read https://example.com/a?b=1&c=ü, or example.org/path. (see https://x.test/q) "
            f"#parody #123 #日本語 {long_tag} #ok!")
    await bsky_pub(fake_bsky).publish(text)
    ((_, record),) = fake_bsky.records.items()
    assert record["text"] == text
    assert facet_spans(record) == [
        ("link", "https://example.com/a?b=1&c=ü", "https://example.com/a?b=1&c=ü"),
        ("link", "example.org/path", "https://example.org/path"),  # bare domain, trailing "." left out
        ("link", "https://x.test/q", "https://x.test/q"),  # unbalanced ")" left out
        ("tag", "#parody", "parody"),
        ("tag", "#日本語", "日本語"),
        ("tag", "#ok", "ok"),
    ]
    # not vacuous: character offsets would point elsewhere
    first = record["facets"][0]["index"]
    assert first["byteStart"] != text.index("https://") and text.encode()[first["byteStart"]:].startswith(b"https://")


async def test_bluesky_post_without_links_tags_or_handles_has_no_facets(fake_bsky):
    await bsky_pub(fake_bsky).publish("no links here 🌍, just vibes... #1 and an email me@example.com and @dril")
    ((_, record),) = fake_bsky.records.items()
    assert "facets" not in record
    assert fake_bsky.requests_to("/xrpc/com.atproto.identity.resolveHandle") == []  # "@dril" is no handle


async def test_bluesky_mentions_resolve_to_dids_and_unknown_handles_stay_text(fake_bsky):
    fake_bsky.handles["alice.bsky.social"] = "did:plc:alice00000000000000000"
    text = "🦋 ping @Alice.bsky.social and @ghost.bsky.social, then @alice.bsky.social again"
    result = await bsky_pub(fake_bsky).publish(text)
    ((rkey, record),) = fake_bsky.records.items()
    assert result.remote_id.endswith("/" + rkey) and record["text"] == text
    assert facet_spans(record) == [
        ("mention", "@Alice.bsky.social", "did:plc:alice00000000000000000"),
        ("mention", "@alice.bsky.social", "did:plc:alice00000000000000000"),
    ]
    lookups = [r.query["handle"] for r in fake_bsky.requests_to("/xrpc/com.atproto.identity.resolveHandle")]
    assert lookups == ["alice.bsky.social", "ghost.bsky.social"]  # once per distinct handle


@pytest.mark.parametrize("mode", ["unavailable", "timeout", "rate_limit"])
async def test_bluesky_failed_mention_lookup_still_posts_with_other_facets(fake_bsky, mode):
    fake_bsky.handles["alice.bsky.social"] = "did:plc:alice00000000000000000"
    fake_bsky.fail_resolve_next(mode)
    text = "ünï @ghost.bsky.social @alice.bsky.social https://example.com #tag"
    result = await publish_with_retry(bsky_pub(fake_bsky), text, attempts=1, sleep=FakeTime().sleep)
    ((rkey, record),) = fake_bsky.records.items()
    assert result.remote_id.endswith("/" + rkey) and not result.duplicate
    assert facet_spans(record) == [("link", "https://example.com", "https://example.com"), ("tag", "#tag", "tag")]
    # after a lookup error no further handles are asked for (a slow or limited server is not hammered)
    assert len(fake_bsky.requests_to("/xrpc/com.atproto.identity.resolveHandle")) == 1


async def test_mastodon_posts_a_status(fake_masto):
    pub = masto_pub(fake_masto)
    result = await pub.publish("toot toot")
    (sid,) = fake_masto.statuses
    assert result == PostResult("mastodon", sid, f"{fake_masto.url}/@parody/{sid}")
    (req,) = fake_masto.requests_to("/api/v1/statuses")
    assert req.form["status"] == "toot toot"
    assert req.headers["Authorization"] == f"Bearer {MASTO_TOKEN}"
    assert req.headers["Idempotency-Key"].startswith("parodybot-")
    assert [r.path for r in fake_masto.requests] == ["/api/v1/statuses"]  # no version-check round trip


async def test_outbox_appends_fsynced_json_lines(tmp_path):
    pub = make_publisher({"platform": "outbox"}, {}, tmp_path / "data")
    r1 = await pub.publish("first\nwith a line break")
    r2 = await publish_with_retry(pub, "second ü")
    lines = (tmp_path / "data" / "outbox.jsonl").read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["text"] for r in records] == ["first\nwith a line break", "second ü"]
    assert all(r["platform"] == "outbox" for r in records)
    assert [r["id"] for r in records] == [r1.remote_id, r2.remote_id]
    uuid.UUID(r1.remote_id)
    assert r1.url == f"outbox://{r1.remote_id}" and r1.platform == "outbox"
    dt.datetime.fromisoformat(records[0]["posted_at"])


async def test_outbox_concurrent_posts_stay_whole_lines(tmp_path):
    pub = OutboxPublisher(tmp_path, persona="dril")
    await asyncio.gather(*(pub.publish(f"post {i} " + "x" * 5000) for i in range(20)))
    records = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text("utf-8").splitlines()]
    assert sorted(int(r["text"].split()[1]) for r in records) == list(range(20))
    assert {r["persona"] for r in records} == {"dril"}


def test_default_target_is_the_outbox(tmp_path):
    assert isinstance(make_publisher({}, {}, tmp_path), OutboxPublisher)
    assert isinstance(make_publisher({"platform": "dry-run"}, {}, tmp_path), OutboxPublisher)

# ================================================================== failure modes + retry


@pytest.mark.parametrize("platform", ["x", "bluesky", "mastodon"])
async def test_rate_limit_waits_until_reset(servers, platform):
    server = servers[platform]
    ft = FakeTime(now=dt.datetime.now().timestamp())
    reset = int(ft.now) + 120
    server.fail_next("rate_limit", reset_at=reset)
    pub = PUBS[platform](server)
    with pytest.raises(RateLimited) as info:
        await pub.publish("limited")
    assert abs(info.value.reset_at - reset) <= 2  # Mastodon.py adjusts by the server's Date header
    server.fail_next("rate_limit", reset_at=reset)
    result = await publish_with_retry(pub, "limited", sleep=ft.sleep, clock=ft.clock)
    assert result.remote_id and not result.duplicate
    assert len(ft.sleeps) == 1 and 120 - 3 <= ft.sleeps[0] <= 121 + 2
    assert len(server.requests_to(POST_PATH[platform])) == 3


async def test_rate_limit_longer_than_max_wait_is_raised(fake_x):
    ft = FakeTime()
    fake_x.fail_next("rate_limit", reset_at=ft.now + 20 * 3600)
    with pytest.raises(RateLimited):
        await publish_with_retry(x_pub(fake_x), "later", sleep=ft.sleep, clock=ft.clock, max_wait=3600)
    assert ft.sleeps == []


def test_x_reset_prefers_an_exhausted_24h_window():
    assert rate_limit_reset({"x-rate-limit-reset": "1000"}) == 1000
    h = {"x-rate-limit-reset": "1000", "x-rate-limit-remaining": "5",
         "x-user-limit-24hour-reset": "50000", "x-user-limit-24hour-remaining": "0"}
    assert rate_limit_reset(h) == 50000
    h["x-user-limit-24hour-remaining"] = "3"
    assert rate_limit_reset(h) == 1000
    assert rate_limit_reset({}, now=10) == 70


@pytest.mark.parametrize("platform", ["x", "bluesky", "mastodon"])
@pytest.mark.parametrize("mode", ["unavailable", "bad_gateway_html", "timeout"])
async def test_transient_errors_retry_with_backoff(servers, platform, mode):
    server = servers[platform]
    server.fail_next(mode, mode)
    ft = FakeTime()
    result = await publish_with_retry(PUBS[platform](server), f"after {mode}", sleep=ft.sleep, clock=ft.clock,
                                      backoff=1.5)
    assert result.remote_id and not result.duplicate
    assert ft.sleeps == [1.5, 3.0]
    assert len(server.requests_to(POST_PATH[platform])) == 3


@pytest.mark.parametrize("platform", ["x", "bluesky", "mastodon"])
async def test_attempts_run_out_and_the_last_error_is_raised(servers, platform):
    server = servers[platform]
    server.fail_next("unavailable", "unavailable", "unavailable")
    ft = FakeTime()
    with pytest.raises(TransientError) as info:
        await publish_with_retry(PUBS[platform](server), "never", attempts=3, sleep=ft.sleep, clock=ft.clock)
    assert info.value.status == 503 and info.value.platform == platform
    assert ft.sleeps == [1.0, 2.0]


@pytest.mark.parametrize("platform", ["x", "bluesky", "mastodon"])
async def test_auth_errors_raise_at_once(servers, platform):
    server = servers[platform]
    if platform == "bluesky":
        server.fail_login_next("unauthorized")
    else:
        server.fail_next("unauthorized")
    ft = FakeTime()
    with pytest.raises(AuthError):
        await publish_with_retry(PUBS[platform](server), "nope", sleep=ft.sleep, clock=ft.clock)
    assert ft.sleeps == []


async def test_x_forbidden_is_an_auth_error(fake_x):
    fake_x.fail_next("forbidden")
    with pytest.raises(AuthError, match="not permitted"):
        await publish_with_retry(x_pub(fake_x), "nope", sleep=FakeTime().sleep)


async def test_wrong_credentials_are_auth_errors(fake_x, fake_bsky, fake_masto):
    env = {**ENV, "DRIL_X_ACCESS_TOKEN_SECRET": "wrong-secret", "DRIL_BSKY_APP_PASSWORD": "wrong-password",
           "DRIL_MASTO_ACCESS_TOKEN": "wrong-token"}
    for server, platform, prefix in ((fake_x, "x", "DRIL_X"), (fake_bsky, "bluesky", "DRIL_BSKY"),
                                     (fake_masto, "mastodon", "DRIL_MASTO")):
        pub = make_publisher({"platform": platform, "credentials": prefix, "base_url": server.url}, env, Path("."))
        with pytest.raises(AuthError) as info:
            await pub.publish("hello")
        assert "wrong-" not in str(info.value)


async def test_bluesky_login_rate_limit(fake_bsky):
    fake_bsky.fail_login_next("rate_limit", reset_at=1_900_000_000)
    with pytest.raises(RateLimited, match="createSession") as info:
        await bsky_pub(fake_bsky).publish("hi")
    assert info.value.reset_at == 1_900_000_000


@pytest.mark.parametrize("platform", ["x", "bluesky", "mastodon"])
async def test_lost_answer_then_retry_posts_exactly_once(servers, platform):
    """The post went out but the answer timed out: the retry must not post it again."""
    server = servers[platform]
    server.fail_next("timeout_after_commit")
    pub = PUBS[platform](server)
    result = await publish_with_retry(pub, "exactly once", sleep=FakeTime().sleep)
    stored = {"x": lambda s: s.tweets, "bluesky": lambda s: s.records, "mastodon": lambda s: s.statuses}[platform]
    assert len(stored(server)) == 1
    if platform == "x":
        assert result.duplicate  # X's own duplicate check
    elif platform == "bluesky":
        (rkey,) = server.records
        assert result.duplicate and result.remote_id.endswith("/" + rkey)  # found by getRecord
        assert len(server.requests_to("/xrpc/com.atproto.repo.createRecord")) == 1
    else:
        (sid,) = server.statuses
        assert result.remote_id == sid  # same Idempotency-Key, same status

# ================================================================== configuration


def test_missing_credentials_name_the_variables_not_values(tmp_path):
    env = {"DRIL_X_CONSUMER_KEY": X_SECRETS["DRIL_X_CONSUMER_KEY"],
           "DRIL_X_ACCESS_TOKEN": X_SECRETS["DRIL_X_ACCESS_TOKEN"], "DRIL_X_CONSUMER_SECRET": "  "}
    with pytest.raises(CredentialsMissing) as info:
        make_publisher({"platform": "x", "credentials": "DRIL_X"}, env, tmp_path)
    msg = str(info.value)
    assert "DRIL_X_CONSUMER_SECRET" in msg and "DRIL_X_ACCESS_TOKEN_SECRET" in msg
    assert "DRIL_X_CONSUMER_KEY" not in msg
    assert X_SECRETS["DRIL_X_CONSUMER_KEY"] not in msg and X_SECRETS["DRIL_X_ACCESS_TOKEN"] not in msg
    assert isinstance(info.value, AuthError) and isinstance(info.value, PublishConfigError)
    with pytest.raises(CredentialsMissing, match="DRIL_BSKY_APP_PASSWORD"):
        make_publisher({"platform": "bluesky", "credentials": "DRIL_BSKY"}, {"DRIL_BSKY_HANDLE": "a.b"}, tmp_path)
    with pytest.raises(CredentialsMissing, match="M_ACCESS_TOKEN"):
        make_publisher({"platform": "mastodon", "credentials": "M", "base_url": "https://m.example"}, {}, tmp_path)


@pytest.mark.parametrize("target, match", [
    ({"platform": "myspace"}, "unknown publish platform"),
    ({"platform": "mastodon", "credentials": "DRIL_MASTO"}, "base_url"),
    ({"platform": "x"}, "credentials"),
    ({"platform": "x", "credentials": "DRIL X"}, "credentials"),
    ({"platform": "x", "credentials": "DRIL_X", "base_url": "ftp://x"}, "base_url"),
    ({"platform": "x", "credentials": "DRIL_X", "timeout": 0}, "timeout"),
    ({"platform": "mastodon", "credentials": "DRIL_MASTO", "base_url": "https://m.example", "visibility": "loud"},
     "visibility"),
])
def test_bad_targets_are_refused(tmp_path, target, match):
    with pytest.raises(PublishConfigError, match=match):
        make_publisher(target, ENV, tmp_path)


def test_required_env():
    assert required_env({"platform": "x", "credentials": "P"}) == [
        "P_CONSUMER_KEY", "P_CONSUMER_SECRET", "P_ACCESS_TOKEN", "P_ACCESS_TOKEN_SECRET"]
    assert required_env({"platform": "bsky", "credentials": "B"}) == ["B_HANDLE", "B_APP_PASSWORD"]
    assert required_env({"platform": "outbox"}) == []


def test_importing_publishers_loads_no_network_library():
    code = ("import sys, bot.publishers; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'tweepy','atproto_client','mastodon','aiohttp','httpx','discord','tensorflow'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr

# ================================================================== secrets never leak


FAILURES = [
    ("x", "rate_limit"), ("x", "unavailable"), ("x", "bad_gateway_html"), ("x", "timeout"), ("x", "unauthorized"),
    ("x", "forbidden"), ("bluesky", "rate_limit"), ("bluesky", "unavailable"), ("bluesky", "bad_gateway_html"),
    ("bluesky", "timeout"), ("bluesky", "login_unauthorized"), ("mastodon", "rate_limit"),
    ("mastodon", "unavailable"), ("mastodon", "bad_gateway_html"), ("mastodon", "timeout"),
    ("mastodon", "unauthorized"),
]


@pytest.mark.parametrize("platform, mode", FAILURES)
async def test_no_secret_in_errors_reprs_or_logs(servers, caplog, platform, mode):
    caplog.set_level(logging.DEBUG)
    server = servers[platform]
    if mode == "login_unauthorized":
        server.fail_login_next("unauthorized")
    else:
        server.fail_next(mode)
    pub = PUBS[platform](server)
    with pytest.raises(PublishError) as info:
        await publish_with_retry(pub, "leak check", attempts=1, sleep=FakeTime().sleep)
    exc = info.value
    shown = [str(exc), repr(exc), "".join(traceback.format_exception(exc)), repr(pub), str(vars(pub)),
             caplog.text, *(r.getMessage() for r in caplog.records)]
    for secret in SECRET_VALUES:
        for text in shown:
            assert secret not in text, f"{secret!r} leaked"
    assert exc.platform == platform
    # the logs did see the requests (the check above is not vacuous)
    assert caplog.records


async def test_no_secret_in_logs_of_successful_posts(servers, caplog):
    caplog.set_level(logging.DEBUG)
    for platform, server in servers.items():
        await publish_with_retry(PUBS[platform](server), f"fine on {platform}")
    assert any("api.twitter.com" in r.getMessage() for r in caplog.records)  # tweepy logged its request
    for secret in SECRET_VALUES:
        assert secret not in caplog.text



async def test_bluesky_keeps_its_session_and_logs_in_again_only_when_refused(tmp_path):
    """createSession has a small daily limit: every post is its own publisher (as
    each posting run makes one), and still only the first logs in. Through the
    entryway, as bsky.social is: its DID document names the account's own PDS,
    and the posts go there."""
    async with FakeBluesky(handle=BSKY_HANDLE, password=BSKY_PASSWORD) as pds, \
            FakeBluesky(handle=BSKY_HANDLE, password=BSKY_PASSWORD, pds=pds) as entryway:
        for i in range(3):
            await bsky_pub(entryway, tmp_path).publish(f"post {i}")
        assert len(entryway.requests_to("/xrpc/com.atproto.server.createSession")) == 1
        assert [r["text"] for r in pds.records.values()] == ["post 0", "post 1", "post 2"]
        assert entryway.records == {}  # nothing went to the entryway
        (session_file,) = (tmp_path / "sessions").iterdir()
        assert session_file.stat().st_mode & 0o777 == 0o600 and BSKY_PASSWORD not in session_file.read_text()

        pds.expire_access_tokens()  # the PDS refuses the access token: refresh there, no new login
        await bsky_pub(entryway, tmp_path).publish("post 3")
        assert len(pds.requests_to("/xrpc/com.atproto.server.refreshSession")) == 1
        assert len(entryway.requests_to("/xrpc/com.atproto.server.createSession")) == 1

        pds.revoke_sessions()  # the refresh token is refused too: a new login, once
        await bsky_pub(entryway, tmp_path).publish("post 4")
        await bsky_pub(entryway, tmp_path).publish("post 5")
        assert len(entryway.requests_to("/xrpc/com.atproto.server.createSession")) == 2
        assert [r["text"] for r in pds.records.values()][-3:] == ["post 3", "post 4", "post 5"]
