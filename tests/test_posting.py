"""Posting: the service against local fakes of X, Bluesky and Mastodon, and the
slash commands (/post now, /queue, /schedule) through the Discord stand-in.

No real waiting: the service gets a fake sleep and epoch clock, so rate-limit
waits and backoff are recorded instead of slept. Client timeouts are 0.2 s.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.contract import persona_key

from core.config import Config, config_from
from bot.posting import PostingService, target_list
from bot.scheduler import PostingScheduler
from bot.store import Store
from conftest import config_for
from fakes.posting_servers import FakeBluesky, FakeMastodon, FakeX

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 0.2
X_ENV = {
    "DRIL_X_CONSUMER_KEY": "ck-posting-test-1", "DRIL_X_CONSUMER_SECRET": "cs-posting-test-2",
    "DRIL_X_ACCESS_TOKEN": "at-posting-test-3", "DRIL_X_ACCESS_TOKEN_SECRET": "ats-posting-test-4",
}
BSKY_HANDLE, BSKY_PASSWORD = "dril-gpt.example.com", "abcd-efgh-ijkl-mnop"
MASTO_TOKEN = "masto-posting-token-5"
ENV = {**X_ENV, "DRIL_BSKY_HANDLE": BSKY_HANDLE, "DRIL_BSKY_APP_PASSWORD": BSKY_PASSWORD,
       "DRIL_MASTO_ACCESS_TOKEN": MASTO_TOKEN}


class FakeTime:
    """Epoch clock + sleep for publish_with_retry: records waits, never blocks."""

    def __init__(self):
        self.now = time.time()
        self.sleeps: list[float] = []

    def epoch(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
async def fx():
    async with FakeX(consumer_key=X_ENV["DRIL_X_CONSUMER_KEY"], access_token=X_ENV["DRIL_X_ACCESS_TOKEN"],
                     consumer_secret=X_ENV["DRIL_X_CONSUMER_SECRET"],
                     access_token_secret=X_ENV["DRIL_X_ACCESS_TOKEN_SECRET"], delay=0.6) as server:
        yield server


@pytest.fixture
async def fb():
    async with FakeBluesky(handle=BSKY_HANDLE, password=BSKY_PASSWORD, delay=0.6) as server:
        yield server


@pytest.fixture
async def fm():
    async with FakeMastodon(token=MASTO_TOKEN, delay=0.6) as server:
        yield server


def x_target(server):
    return {"platform": "x", "credentials": "DRIL_X", "base_url": server.url, "timeout": TIMEOUT, "username": "dril_gpt"}


def bsky_target(server):
    return {"platform": "bluesky", "credentials": "DRIL_BSKY", "base_url": server.url, "timeout": TIMEOUT}


def masto_target(server):
    return {"platform": "mastodon", "credentials": "DRIL_MASTO", "base_url": server.url, "timeout": TIMEOUT}


@pytest.fixture
async def store(tmp_path):
    s = await Store.open(tmp_path / "data" / "parodybot.sqlite3")
    yield s
    await s.close()


def make_service(store, tmp_path, ft=None, **posting):
    cfg = config_from({"posting": posting}) if posting else Config()
    ft = ft or FakeTime()
    return PostingService(store, cfg, env=ENV, data_dir=tmp_path / "data", sleep=ft.sleep, epoch=ft.epoch,
                          backoff=1.0)


async def persona(store, targets, name="dril", **fields):
    return await store.create_persona(fields.pop("guild_id", 0), name, targets=targets, **fields)


async def approved(store, text, *, score=3, persona="dril", rank=None) -> int:
    cid = await store.add_candidate(persona, None, text, {}, "2026-01-02T00:00:00.000000Z",
                                    created_at="2026-01-01T00:00:00.000000Z")
    await store.update_candidate(cid, state="approved", score=score, queue_rank=rank)
    return cid


async def events(store, kind=None):
    rows = [dict(r) for r in await store.fetchall("SELECT * FROM posting_events ORDER BY id")]
    return [r for r in rows if kind is None or r["kind"] == kind]


async def posts(store, cid):
    return {p["platform"]: p for p in await store.posts_for(cid)}


# ======================================================================= happy path


async def test_posts_to_x_bluesky_and_mastodon_and_records_each(store, tmp_path, fx, fb, fm):
    await persona(store, [x_target(fx), bsky_target(fb), masto_target(fm)])
    cid = await approved(store, "i am the only person on earth who knows what a spoon is")
    report = await make_service(store, tmp_path).run("dril")

    assert report.outcome == "posted" and report.candidate_id == cid
    text = "i am the only person on earth who knows what a spoon is"
    # X: POST /2/tweets, OAuth 1.0a signed (the fake verifies the signature)
    (tweet,) = fx.requests_to("/2/tweets")
    assert tweet.method == "POST" and tweet.json == {"text": text}
    assert tweet.headers["Authorization"].startswith("OAuth ")
    # Bluesky: createSession with the app password, then createRecord of an app.bsky.feed.post
    (login,) = fb.requests_to("/xrpc/com.atproto.server.createSession")
    assert login.json == {"identifier": BSKY_HANDLE, "password": BSKY_PASSWORD}
    (create,) = fb.requests_to("/xrpc/com.atproto.repo.createRecord")
    assert create.json["collection"] == "app.bsky.feed.post" and create.json["record"]["text"] == text
    # Mastodon: POST /api/v1/statuses with the bearer token and an idempotency key
    (status,) = fm.requests_to("/api/v1/statuses")
    assert status.form["status"] == text and status.headers["Authorization"] == f"Bearer {MASTO_TOKEN}"
    assert status.headers["Idempotency-Key"]

    rows = await posts(store, cid)
    tweet_id = next(iter(fx.tweets))
    (rkey,) = fb.records
    (sid,) = fm.statuses
    assert rows["x"]["state"] == "posted" and rows["x"]["remote_id"] == tweet_id
    assert rows["x"]["url"] == f"https://x.com/dril_gpt/status/{tweet_id}"
    assert rows["bluesky"]["remote_id"].endswith(rkey) and rows["bluesky"]["url"].endswith(f"/post/{rkey}")
    assert rows["mastodon"]["remote_id"] == sid and rows["mastodon"]["url"] == f"{fm.url}/@parody/{sid}"
    assert all(r["posted_at"] for r in rows.values())
    assert (await store.get_candidate(cid))["state"] == "posted"
    (ev,) = await events(store, "posted")
    assert ev["refresh"] and ev["candidate_id"] == cid
    assert f"https://x.com/dril_gpt/status/{tweet_id}" in ev["text"] and fm.url in ev["text"]


async def test_claims_the_best_candidate_rank_first_then_score_then_oldest(store, tmp_path):
    await persona(store, [{"platform": "outbox"}])
    old_low = await approved(store, "old, low score", score=3)
    best_a = await approved(store, "best score, older", score=7)
    best_b = await approved(store, "best score, newer", score=7)
    moved = await approved(store, "moved to top", score=3, rank=-1.0)
    service = make_service(store, tmp_path)
    order = [(await service.run("dril")).candidate_id for _ in range(4)]
    assert order == [moved, best_a, best_b, old_low]
    outbox = [json.loads(line) for line in (tmp_path / "data" / "outbox.jsonl").read_text().splitlines()]
    assert [r["text"] for r in outbox] == ["moved to top", "best score, older", "best score, newer", "old, low score"]
    assert {r["persona"] for r in outbox} == {"dril"}


async def test_config_targets_override_the_database(store, tmp_path, fx):
    await persona(store, [x_target(fx)])
    cid = await approved(store, "to the outbox instead")
    cfg = config_from({"personas": {"dril": {"targets": [{"platform": "outbox"}]}}})
    assert [t["platform"] for t in target_list(await store.get_persona("dril"), cfg)] == ["outbox"]
    report = await PostingService(store, cfg, env=ENV, data_dir=tmp_path / "data").run("dril")
    assert report.posted and list((await posts(store, cid))) == ["outbox"]
    assert fx.requests == []


# ======================================================================= errors


async def test_429_waits_for_the_reset_then_posts(store, tmp_path, fx):
    await persona(store, [x_target(fx)])
    cid = await approved(store, "patience")
    ft = FakeTime()
    fx.fail_next("rate_limit", reset_at=int(ft.now) + 120)
    report = await make_service(store, tmp_path, ft).run("dril")
    assert report.posted
    assert len(ft.sleeps) == 1 and 118 <= ft.sleeps[0] <= 122  # waited for x-rate-limit-reset (+1 s)
    assert len(fx.requests_to("/2/tweets")) == 2 and len(fx.tweets) == 1
    assert (await store.get_candidate(cid))["state"] == "posted"


async def test_xs_monthly_usage_cap_holds_the_target_until_next_month_and_never_loops(store, tmp_path, fx):
    """429 UsageCapExceeded is no 15-minute limit: X is not called again before the
    first of next month, it is said once in the log channel, and the persona's
    other targets go on."""
    await persona(store, [x_target(fx), {"platform": "outbox"}])
    first = await approved(store, "one", score=5)
    second = await approved(store, "two", score=4)
    ft = FakeTime()
    fx.fail_next("usage_cap")
    service = make_service(store, tmp_path, ft)
    report = await service.run("dril")
    assert report.outcome == "partial" and ft.sleeps == [] and report.retry_at is None
    holds = (await store.get_persona("dril"))["target_holds"]
    month_end = dt.datetime.now(dt.timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (month_end + dt.timedelta(days=32)).replace(day=1)
    assert holds["x"]["until"].startswith(next_month.strftime("%Y-%m-%dT00:00")) and "Monthly product cap" in holds["x"]["why"]
    said = [e["text"] for e in await events(store, "cap")]
    assert len(said) == 1 and "Posts to x are held until" in said[0] and "outbox go on" in said[0]

    for _ in range(3):  # later runs: the outbox gets the rest, X is never called
        await service.run("dril")
    assert len(fx.requests_to("/2/tweets")) == 1
    assert (await store.get_candidate(first))["state"] == "posted"
    assert (await store.get_candidate(second))["state"] == "posted"
    assert len(await events(store, "cap")) == 1  # said once


async def test_xs_daily_cap_holds_until_the_24_hour_reset_x_names(store, tmp_path, fx):
    await persona(store, [x_target(fx)])
    cid = await approved(store, "tomorrow")
    ft = FakeTime()
    reset = int(ft.now) + 20 * 3600
    fx.fail_next("daily_cap", reset_at=reset)
    service = make_service(store, tmp_path, ft)
    report = await service.run("dril")
    assert report.outcome == "failed" and ft.sleeps == []
    until = dt.datetime.fromtimestamp(reset, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M")
    assert (await store.get_persona("dril"))["target_holds"]["x"]["until"].startswith(until)
    again = await service.run("dril")  # the only target is held: nothing to post to, said once
    assert again.outcome == "cap" and "x is held until" in again.message
    assert len(fx.requests_to("/2/tweets")) == 1 and (await store.get_candidate(cid))["state"] == "approved"
    await service.run("dril")
    assert len(await events(store, "cap")) == 1  # the hold is said once; the runs it skips say nothing more


async def test_a_long_rate_limit_reschedules_and_the_candidate_stays_queued(store, tmp_path, fx):
    await persona(store, [x_target(fx)])
    cid = await approved(store, "later")
    ft = FakeTime()
    reset = int(ft.now) + 5 * 3600
    fx.fail_next("rate_limit", reset_at=reset)
    report = await make_service(store, tmp_path, ft).run("dril")
    assert report.outcome == "failed" and ft.sleeps == []  # did not block for five hours
    assert report.retry_at == pytest.approx(reset + 1, abs=2)
    cand = await store.get_candidate(cid)
    assert cand["state"] == "approved" and "x" in cand["note"]
    assert (await posts(store, cid))["x"]["state"] == "failed"
    (ev,) = await events(store, "failed")
    assert "rate limited" in ev["text"] and "stays in the queue" in ev["text"]
    assert (await store.get_persona("dril"))["state"] == "active"


async def test_503_then_success_retries_with_backoff(store, tmp_path, fm):
    await persona(store, [masto_target(fm)])
    cid = await approved(store, "second time lucky")
    fm.fail_next("unavailable")
    ft = FakeTime()
    report = await make_service(store, tmp_path, ft).run("dril")
    assert report.posted and ft.sleeps == [1.0]
    assert len(fm.requests_to("/api/v1/statuses")) == 2 and len(fm.statuses) == 1
    assert (await posts(store, cid))["mastodon"]["state"] == "posted"


async def test_timeout_retries_then_posts(store, tmp_path, fb):
    await persona(store, [bsky_target(fb)])
    cid = await approved(store, "slow server")
    fb.fail_next("timeout")
    ft = FakeTime()
    report = await make_service(store, tmp_path, ft).run("dril")
    assert report.posted and ft.sleeps == [1.0]
    assert len(fb.records) == 1
    assert (await store.get_candidate(cid))["state"] == "posted"


async def test_timeouts_that_never_end_leave_the_candidate_queued(store, tmp_path, fm):
    await persona(store, [masto_target(fm)])
    cid = await approved(store, "never answered")
    fm.fail_next("timeout", "timeout", "timeout", "timeout")
    ft = FakeTime()
    report = await make_service(store, tmp_path, ft).run("dril")
    assert report.outcome == "failed" and ft.sleeps == [1.0, 2.0, 4.0]
    assert (await store.get_candidate(cid))["state"] == "approved"
    assert (await posts(store, cid))["mastodon"]["state"] == "failed"


async def test_401_pauses_the_persona_and_says_so(store, tmp_path, fm):
    await persona(store, [masto_target(fm)])
    cid = await approved(store, "wrong key")
    fm.fail_next("unauthorized")
    ft = FakeTime()
    service = make_service(store, tmp_path, ft)
    report = await service.run("dril")
    assert ft.sleeps == []  # no retry on an auth error
    p = await store.get_persona("dril")
    assert p["state"] == "paused" and "401" in p["paused_reason"]
    assert (await store.get_candidate(cid))["state"] == "approved"
    (ev,) = await events(store, "paused")
    assert "paused" in ev["text"] and "/schedule resume persona:dril" in ev["text"]
    assert report.paused_reason
    # A paused persona does not post.
    again = await service.run("dril")
    assert again.outcome == "paused" and len(fm.requests_to("/api/v1/statuses")) == 1


async def test_missing_credentials_pause_the_persona_and_name_the_variable(store, tmp_path):
    await persona(store, [{"platform": "mastodon", "credentials": "NOPE", "base_url": "http://127.0.0.1:9"}])
    cid = await approved(store, "no token")
    await make_service(store, tmp_path).run("dril")
    p = await store.get_persona("dril")
    assert p["state"] == "paused" and "NOPE_ACCESS_TOKEN" in p["paused_reason"]
    assert (await store.get_candidate(cid))["state"] == "approved"


async def test_x_duplicate_content_counts_as_posted(store, tmp_path, fx):
    await persona(store, [x_target(fx)])
    cid = await approved(store, "already out there")
    fx.fail_next("duplicate")
    report = await make_service(store, tmp_path).run("dril")
    assert report.posted and report.targets[0].duplicate
    row = (await posts(store, cid))["x"]
    assert row["state"] == "posted" and row["url"] is None and "duplicate" in row["error"]
    assert (await store.get_candidate(cid))["state"] == "posted"
    (ev,) = await events(store, "posted")
    assert "duplicate" in ev["text"]


async def test_partly_posted_candidate_later_goes_only_to_the_missing_target(store, tmp_path, fx, fm):
    await persona(store, [x_target(fx), masto_target(fm)])
    cid = await approved(store, "half and half")
    fm.fail_next(*["unavailable"] * 4)
    service = make_service(store, tmp_path)
    first = await service.run("dril")
    assert first.outcome == "partial"
    rows = await posts(store, cid)
    assert rows["x"]["state"] == "posted" and rows["mastodon"]["state"] == "failed"
    cand = await store.get_candidate(cid)
    assert cand["state"] == "approved" and "mastodon" in cand["note"]
    assert "stays first in the queue" in (await events(store, "partial"))[0]["text"]

    second = await service.run("dril")
    assert second.posted and second.candidate_id == cid
    assert len(fx.requests_to("/2/tweets")) == 1 and len(fx.tweets) == 1  # X was not called again
    assert len(fm.statuses) == 1
    assert {o.key: o.state for o in second.targets} == {"x": "already", "mastodon": "posted"}
    assert (await store.get_candidate(cid))["state"] == "posted"


async def test_an_empty_queue_is_said_once(store, tmp_path):
    await persona(store, [{"platform": "outbox"}])
    service = make_service(store, tmp_path)
    assert [(await service.run("dril")).outcome for _ in range(3)] == ["empty"] * 3
    assert len(await events(store, "empty")) == 1
    await approved(store, "something at last")
    assert (await service.run("dril")).posted
    assert (await service.run("dril")).outcome == "empty"
    assert len(await events(store, "empty")) == 2  # said again after a post


async def test_daily_cap_skips_and_is_said_once(store, tmp_path):
    await persona(store, [{"platform": "outbox"}])
    for i in range(3):
        await approved(store, f"post {i}")
    service = make_service(store, tmp_path, daily_cap=2, monthly_cap=100)
    outcomes = [(await service.run("dril")).outcome for _ in range(4)]
    assert outcomes == ["posted", "posted", "cap", "cap"]
    (ev,) = await events(store, "cap")
    assert "daily cap of 2" in ev["text"]
    assert len(await store.approved_queue("dril")) == 1


async def test_monthly_cap(store, tmp_path):
    await persona(store, [{"platform": "outbox"}])
    for i in range(2):
        await approved(store, f"post {i}")
    service = make_service(store, tmp_path, daily_cap=0, monthly_cap=1)
    assert [(await service.run("dril")).outcome for _ in range(2)] == ["posted", "cap"]
    assert "monthly cap of 1" in (await events(store, "cap"))[0]["text"]


# ======================================================== a rate-limit retry across a restart

# The regular schedule of these personas never comes first: once a year, from
# now. (A cron for 29 February no longer passes: it does not fire within a year.)
FEB_29 = {"interval_minutes": 525600, "timezone": "UTC", "jitter_minutes": 0,
          "anchor": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


def lagging_time():
    """The service's epoch an hour behind the real clock: a reset a few real
    seconds away is an hour away to the service, longer than a scheduled run
    waits, so the run is rescheduled at the reset; the scheduler (APScheduler)
    then fires the retry at the real reset, a few seconds later."""
    ft = FakeTime()
    ft.now -= 3600
    return ft


async def rate_limited_then_stopped(store, tmp_path, fx, reset):
    """A scheduled run is rate limited until ``reset``; the bot stops before it."""
    fx.fail_next("rate_limit", reset_at=reset)
    sched = PostingScheduler(store, make_service(store, tmp_path, lagging_time()), Config().posting)
    await sched.start()
    try:
        report = await sched.run("dril", "scheduled")
        assert report.outcome == "failed" and report.retry_at == reset + 1
        assert sched.engine.get_job("retry:dril").next_run_time == dt.datetime.fromtimestamp(reset + 1, dt.timezone.utc)
    finally:
        await sched.stop()
    assert fx.tweets == {} and len(fx.requests_to("/2/tweets")) == 1


async def test_a_rate_limit_retry_survives_a_restart_and_posts_once_at_the_reset(store, tmp_path, fx):
    await persona(store, [x_target(fx)], schedule=FEB_29)
    cid = await approved(store, "worth the wait")
    reset = int(time.time()) + 4
    retry = reset + 1
    await rate_limited_then_stopped(store, tmp_path, fx, reset)

    # A new process over the same database file.
    store2 = await Store.open(store.path)
    reports = []

    async def on_report(report):
        reports.append(report)

    sched = PostingScheduler(store2, make_service(store2, tmp_path, lagging_time()), Config().posting,
                             on_report=on_report)
    await sched.start()
    try:
        job = sched.engine.get_job("retry:dril")
        assert job is not None and job.next_run_time == dt.datetime.fromtimestamp(retry, dt.timezone.utc)
        # Not before the reset ...
        assert time.time() < retry - 1, "the restart took too long for this test"
        await asyncio.sleep(retry - 1 - time.time())
        assert fx.tweets == {} and reports == []
        # ... but at it.
        while not reports and time.time() < retry + 10:
            await asyncio.sleep(0.05)
        await sched.idle()
        assert time.time() >= retry
        assert [(r.outcome, r.candidate_id) for r in reports] == [("posted", cid)]
        assert list(fx.tweets.values()) == ["worth the wait"]
        assert (await store2.get_candidate(cid))["state"] == "posted"
        assert sched.engine.get_job("retry:dril") is None
        assert (await store2.get_persona("dril"))["retry_at"] is None
        await asyncio.sleep(0.5)
        assert len(reports) == 1 and len(fx.requests_to("/2/tweets")) == 2  # once: 429, then the post
    finally:
        await sched.stop()
        await store2.close()


async def test_a_retry_due_while_the_bot_was_down_runs_once_at_start(store, tmp_path, fx):
    await persona(store, [x_target(fx)], schedule=FEB_29)
    cid = await approved(store, "better late")
    await approved(store, "next in line")
    reset = int(time.time()) + 1
    await rate_limited_then_stopped(store, tmp_path, fx, reset)
    await asyncio.sleep(max(0.0, reset + 1.2 - time.time()))  # down past the retry time

    for start in range(2):  # the second start has nothing left to retry
        store2 = await Store.open(store.path)
        sched = PostingScheduler(store2, make_service(store2, tmp_path, lagging_time()), Config().posting)
        await sched.start()
        try:
            await sched.idle()
            assert list(fx.tweets.values()) == ["better late"]
            assert (await store2.get_candidate(cid))["state"] == "posted"
            assert sched.engine.get_job("retry:dril") is None
            assert (await store2.get_persona("dril"))["retry_at"] is None
        finally:
            await sched.stop()
            await store2.close()
    assert len(fx.requests_to("/2/tweets")) == 2


async def test_a_later_post_or_a_pause_cancels_the_pending_retry(store, tmp_path, fx):
    await persona(store, [x_target(fx)], schedule=FEB_29)
    await approved(store, "first")
    await approved(store, "second")
    sched = PostingScheduler(store, make_service(store, tmp_path, lagging_time()), Config().posting)
    await sched.start()
    try:
        for settle in ("post now", "pause"):
            fx.fail_next("rate_limit", reset_at=int(time.time()) + 3600)
            assert (await sched.run("dril", "scheduled")).retry_at is not None
            assert (await store.get_persona("dril"))["retry_at"] is not None
            if settle == "post now":
                assert (await sched.run("dril", "manual")).posted
            else:  # what /schedule pause does
                await store.update_persona("dril", state="paused", paused_reason="test")
                await sched.sync("dril")
            assert sched.engine.get_job("retry:dril") is None, settle
            assert (await store.get_persona("dril"))["retry_at"] is None, settle
    finally:
        await sched.stop()
    assert list(fx.tweets.values()) == ["first"]


# ======================================================================= Discord


async def _bot_with_persona(world, bot_handle, monkeypatch, targets):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    bot = await bot_handle.start(config_for(world))
    await bot.services.store.create_persona(world.guild.id, "dril", curation_channel_id=world.curation.id,
                                   log_channel_id=world.log.id, targets=targets)
    return bot


async def _candidate_message(world, bot, text, score=4):
    cid = await bot.services.store.add_candidate(persona_key(world.guild.id, "dril"), None, text, {"temperature": 1.0}, "2099-01-01T00:00:00.000000Z",
                                        created_at=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    await bot.get_cog("Curation").post_unsent(persona_key(world.guild.id, "dril"))
    await bot.services.store.update_candidate(cid, state="approved", score=score)
    return cid, (await bot.services.store.get_candidate(cid))["message_id"]


def state_field(msg):
    return {f["name"]: f["value"] for f in msg["embeds"][0]["fields"]}["State"]


async def test_post_now_posts_edits_the_candidate_message_and_logs(world, bot_handle, monkeypatch, fm, fx):
    bot = await _bot_with_persona(world, bot_handle, monkeypatch, [masto_target(fm), x_target(fx)])
    cid, mid = await _candidate_message(world, bot, "bees are flies that went to college")

    ix = await world.standin.invoke(world.alice, "post", subcommand="now", channel=world.general,
                                    options={"persona": "dril"})
    response = await ix.wait_for_response(timeout=10)
    assert not ix.ephemeral and "posted #" in response["content"]
    (sid,) = fm.statuses
    tweet_id = next(iter(fx.tweets))
    assert fm.statuses[sid]["content"] == "<p>bees are flies that went to college</p>"
    assert fx.tweets[tweet_id] == "bees are flies that went to college"

    link = f"{fm.url}/@parody/{sid}"
    msg = await world.standin.wait_for(lambda: link in state_field(world.standin.message(mid))
                                       and world.standin.message(mid), timeout=5, what="the link on the candidate")
    assert "posted" in state_field(msg) and f"https://x.com/dril_gpt/status/{tweet_id}" in state_field(msg)
    line = await world.standin.wait_for_message(world.log, lambda m: link in (m["content"] or ""), timeout=5)
    assert f"#{cid}" in line["content"]
    assert (await bot.services.store.get_candidate(cid))["state"] == "posted"


async def test_post_now_auth_error_pauses_and_says_so_in_the_log_channel(world, bot_handle, monkeypatch, fm):
    bot = await _bot_with_persona(world, bot_handle, monkeypatch, [masto_target(fm)])
    cid, _ = await _candidate_message(world, bot, "wrong token")
    fm.fail_next("unauthorized")
    ix = await world.standin.invoke(world.alice, "post", subcommand="now", channel=world.general,
                                    options={"persona": "dril"})
    response = await ix.wait_for_response(timeout=10)
    assert "paused" in response["content"]
    line = await world.standin.wait_for_message(world.log, lambda m: "is paused" in (m["content"] or ""), timeout=5)
    assert "/schedule resume persona:dril" in line["content"]
    assert (await bot.services.store.get_candidate(cid))["state"] == "approved"
    assert (await bot.services.store.get_persona(persona_key(world.guild.id, "dril")))["state"] == "paused"
    assert bot.services.scheduler.job_for(persona_key(world.guild.id, "dril")) is None  # a paused persona has no job
    # /post now refuses while paused, ephemerally, and says what to do
    ix = await world.standin.invoke(world.alice, "post", subcommand="now", channel=world.general,
                                    options={"persona": "dril"})
    await ix.wait_for_response(timeout=5)
    assert ix.ephemeral and "/schedule resume" in ix.response["content"]


async def test_queue_commands(world, bot_handle, monkeypatch):
    bot = await _bot_with_persona(world, bot_handle, monkeypatch, [{"platform": "outbox"}])
    a, _ = await _candidate_message(world, bot, "first by score", score=5)
    b, mid_b = await _candidate_message(world, bot, "second by score", score=3)
    c, _ = await _candidate_message(world, bot, "to be removed", score=1)

    ix = await world.standin.invoke(world.erin, "queue", subcommand="show", channel=world.general,
                                    options={"persona": "dril"})
    shown = (await ix.wait_for_response())["content"]
    assert shown.index(f"#{a}") < shown.index(f"#{b}") < shown.index(f"#{c}")

    choices = await world.standin.autocomplete(world.alice, "queue", subcommand="top", focused="candidate",
                                               channel=world.general, options={"persona": "dril", "candidate": "second"})
    assert [ch["value"] for ch in choices] == [b]

    ix = await world.standin.invoke(world.erin, "queue", subcommand="top", channel=world.general,
                                    options={"persona": "dril", "candidate": b})
    await ix.wait_for_response()
    assert ix.ephemeral and "parodybot-operator" in ix.response["content"]
    ix = await world.standin.invoke(world.alice, "queue", subcommand="top", channel=world.general,
                                    options={"persona": "dril", "candidate": b})
    await ix.wait_for_response()
    assert [x["id"] for x in await bot.services.store.approved_queue(persona_key(world.guild.id, "dril"))] == [b, a, c]
    await world.standin.wait_for(lambda: "#1 in the posting queue" in state_field(world.standin.message(mid_b)),
                                 timeout=5, what="the new place on the message")
    ix = await world.standin.invoke(world.alice, "queue", subcommand="remove", channel=world.general,
                                    options={"persona": "dril", "candidate": c})
    await ix.wait_for_response()
    assert [x["id"] for x in await bot.services.store.approved_queue(persona_key(world.guild.id, "dril"))] == [b, a]
    ix = await world.standin.invoke(world.alice, "queue", subcommand="remove", channel=world.general,
                                    options={"persona": "dril", "candidate": c})
    await ix.wait_for_response()
    assert ix.ephemeral and "not in the queue" in ix.response["content"]


@pytest.mark.parametrize("options, words", [
    ({"cron": "every day at nine"}, ["five fields", "0 9,13,19 * * *"]),
    ({"cron": "61 9 * * *"}, ["not a valid cron", "0 9,13,19 * * *"]),
    ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, ["unknown time zone", "Europe/Berlin"]),
    ({"interval_minutes": 0}, ["between 0.01 and 527,040 minutes", "240"]),
    ({"interval_minutes": -5}, ["between 0.01"]),
    ({}, ["cron", "interval_minutes"]),
])
async def test_schedule_set_bad_input_says_what_to_do(world, bot_handle, monkeypatch, options, words):
    await _bot_with_persona(world, bot_handle, monkeypatch, [{"platform": "outbox"}])
    ix = await world.standin.invoke(world.alice, "schedule", subcommand="set", channel=world.general,
                                    options={"persona": "dril", **options})
    await ix.wait_for_response()
    assert ix.ephemeral
    for word in words:
        assert word in ix.response["content"]


async def test_schedule_set_show_pause_resume(world, bot_handle, monkeypatch):
    bot = await _bot_with_persona(world, bot_handle, monkeypatch, [{"platform": "outbox"}])
    ix = await world.standin.invoke(world.erin, "schedule", subcommand="set", channel=world.general,
                                    options={"persona": "dril", "cron": "30 2 * * *", "timezone": "Europe/Berlin"})
    await ix.wait_for_response()
    assert ix.ephemeral and "parodybot-operator" in ix.response["content"]
    ix = await world.standin.invoke(world.alice, "schedule", subcommand="set", channel=world.general,
                                    options={"persona": "dril", "cron": "30 2 * * *", "timezone": "Europe/Berlin",
                                             "jitter_minutes": 0})
    await ix.wait_for_response()
    assert "Europe/Berlin" in ix.response["content"]
    assert (await bot.services.store.get_persona(persona_key(world.guild.id, "dril")))["schedule"] == {"cron": "30 2 * * *", "timezone": "Europe/Berlin",
                                                                 "jitter_minutes": 0.0}
    job_time = bot.services.scheduler.next_run_time(persona_key(world.guild.id, "dril"))
    assert job_time.astimezone(dt.timezone.utc).minute == 30  # 02:30 Berlin = :30 UTC, no jitter
    ix = await world.standin.invoke(world.erin, "schedule", subcommand="show", channel=world.general,
                                    options={"persona": "dril"})
    shown = (await ix.wait_for_response())["content"]
    assert "Next run: <t:" in shown and shown.count("02:30") >= 4

    ix = await world.standin.invoke(world.alice, "schedule", subcommand="pause", channel=world.general,
                                    options={"persona": "dril"})
    await ix.wait_for_response()
    assert bot.services.scheduler.job_for(persona_key(world.guild.id, "dril")) is None and (await bot.services.store.get_persona(persona_key(world.guild.id, "dril")))["state"] == "paused"
    ix = await world.standin.invoke(world.alice, "schedule", subcommand="resume", channel=world.general,
                                    options={"persona": "dril"})
    await ix.wait_for_response()
    assert bot.services.scheduler.job_for(persona_key(world.guild.id, "dril")) is not None and (await bot.services.store.get_persona(persona_key(world.guild.id, "dril")))["state"] == "active"



async def test_a_stored_schedule_that_stopped_working_is_refused_with_what_to_do(world, bot_handle, monkeypatch):
    # E.g. a time zone that a tzdata update renamed, or a hand-edited database.
    bot = await _bot_with_persona(world, bot_handle, monkeypatch, [{"platform": "outbox"}])
    await bot.services.store.update_persona(persona_key(world.guild.id, "dril"), state="paused",
                                   schedule={"cron": "0 9 * * *", "timezone": "Mars/Olympus"})
    for sub in ("show", "resume"):
        ix = await world.standin.invoke(world.alice, "schedule", subcommand=sub, channel=world.general,
                                        options={"persona": "dril"})
        await ix.wait_for_response()
        assert ix.ephemeral and "does not work" in ix.response["content"]
        assert "/schedule set" in ix.response["content"]
    assert (await bot.services.store.get_persona(persona_key(world.guild.id, "dril")))["state"] == "paused"


# ======================================================================= CLI


def parodybot(data_dir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = dict(os.environ, PARODYBOT_DATA_DIR=str(data_dir), **(env or {}))
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=full,
                          cwd=data_dir.parent, timeout=60)


def test_cli_queue_and_post_now(tmp_path):
    data = tmp_path / "data"

    async def setup():
        s = await Store.open(data / "parodybot.sqlite3")
        await s.create_persona(0, "dril", targets=[{"platform": "outbox"}])
        ids = [await approved(s, "low", score=1), await approved(s, "high", score=9)]
        await s.close()
        return ids

    low, high = asyncio.run(setup())
    out = parodybot(data, "queue", "dril", "--json")
    assert out.returncode == 0, out.stderr
    assert [(i["position"], i["id"], i["text"]) for i in json.loads(out.stdout)["queue"]] == [(1, high, "high"), (2, low, "low")]

    out = parodybot(data, "post-now", "dril")
    assert out.returncode == 0, out.stderr
    assert f"posted #{high}" in out.stdout and "outbox://" in out.stdout
    out = parodybot(data, "post-now", "dril", "--json")
    report = json.loads(out.stdout)
    assert report["outcome"] == "posted" and report["candidate_id"] == low
    assert report["targets"][0]["url"].startswith("outbox://")
    out = parodybot(data, "post-now", "dril", "--json")
    assert out.returncode == 1 and json.loads(out.stdout)["outcome"] == "empty"
    out = parodybot(data, "queue", "nobody")
    assert out.returncode == 2 and "no persona" in out.stderr


async def test_the_bot_starts_with_a_poisoned_stored_schedule_and_says_so(world, bot_handle, data_dir):
    """interval_minutes 1e-12 once stopped every start (ZeroDivisionError in the scheduler)."""
    store = await Store.open(data_dir / "parodybot.sqlite3")
    try:
        await store.create_persona(world.guild.id, "dril", curation_channel_id=world.curation.id,
                                   log_channel_id=world.log.id,
                                   schedule={"interval_minutes": 1e-12, "jitter_minutes": 0,
                                             "anchor": "2026-01-01T00:00:00.000000Z"})
    finally:
        await store.close()
    bot = await bot_handle.start(config_for(world))
    line = await world.standin.wait_for_message(world.log, lambda m: "is paused" in (m["content"] or ""), timeout=10)
    assert "**dril** is paused: its stored schedule does not work" in line["content"]
    assert "/schedule set persona:dril" in line["content"]
    ix = await world.standin.invoke(world.alice, "status", channel=world.general)
    await ix.wait_for_response(timeout=5)  # the bot is up and answers
    assert bot.services.scheduler.job_for(persona_key(world.guild.id, "dril")) is None


async def test_status_shows_a_held_target(world, bot_handle, monkeypatch, fx):
    bot = await _bot_with_persona(world, bot_handle, monkeypatch, [x_target(fx)])
    await _candidate_message(world, bot, "capped")
    fx.fail_next("usage_cap")
    ix = await world.standin.invoke(world.alice, "post", subcommand="now", channel=world.general,
                                    options={"persona": "dril"})
    await ix.wait_for_response(timeout=10)
    ix = await world.standin.invoke(world.alice, "status", channel=world.general)
    await ix.wait_for_response(timeout=5)
    held = {f["name"]: f["value"] for f in ix.response["embeds"][0]["fields"]}["Posting held"]
    assert held.startswith("dril → x until ") and "Monthly product cap" in held


async def test_no_live_mention_reaches_any_platform_unless_the_persona_keeps_them(store, tmp_path, fx, fm):
    from core.mentions import ZWSP

    text = "shout out to @dril and @someone.bsky.social for nothing"
    async with FakeBluesky(handle=BSKY_HANDLE, password=BSKY_PASSWORD, delay=0.6,
                           handles={"someone.bsky.social": "did:plc:someone00000000000000"}) as fb:
        # The default: defused. Every service would have tagged them without it.
        await persona(store, [x_target(fx), bsky_target(fb), masto_target(fm)])
        await approved(store, text)
        assert (await make_service(store, tmp_path).run("dril")).outcome == "posted"
        (tweet_id,) = fx.tweets
        assert fx.tweets[tweet_id].replace(ZWSP, "") == text and fx.mentions[tweet_id] == []
        (status,) = fm.statuses.values()
        assert status["mentions"] == []
        (record,) = fb.records.values()
        assert record["text"].replace(ZWSP, "") == text
        assert not [f for f in record.get("facets") or [] for feat in f["features"] if feat["$type"].endswith("#mention")]

        # A persona that keeps them tags them: X, Mastodon and a Bluesky mention facet.
        await persona(store, [x_target(fx), bsky_target(fb), masto_target(fm)], name="keeper",
                      settings={"mentions": "keep"})
        await approved(store, text + " again", persona="keeper")
        assert (await make_service(store, tmp_path).run("keeper")).outcome == "posted"
        kept_id = next(t for t in fx.tweets if t != tweet_id)
        assert fx.mentions[kept_id] == ["dril", "someone"]  # X reads @someone.bsky.social as @someone
        assert [m["acct"] for m in list(fm.statuses.values())[1]["mentions"]] == ["dril", "someone.bsky.social"]
        facets = list(fb.records.values())[1]["facets"]
        assert [feat["did"] for f in facets for feat in f["features"] if feat["$type"].endswith("#mention")] == \
            ["did:plc:someone00000000000000"]
