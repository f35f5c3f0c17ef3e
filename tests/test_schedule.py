"""Schedules on a fake clock: cron in a time zone across DST, intervals, jitter,
coalescing after downtime; and APScheduler firing the jobs for real.

DST decision (also in bot/scheduler.py): `30 2 * * *` in Europe/Berlin
- 2026-03-29 (spring forward, 02:00 -> 03:00): 02:30 does not exist; the run
  is at 03:30 CEST = 01:30 UTC, once;
- 2026-10-25 (fall back, 03:00 -> 02:00): 02:30 happens twice; the run is at
  the first one only (02:30 CEST = 00:30 UTC). An hour field of `*` means
  every real hour, so hourly crons run 25 times that day.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import random

import pytest

from core.clock import iso
from core.config import Config, PostingConfig
from bot.posting import PostingService
from bot.scheduler import (
    BadSchedule,
    PersonaTrigger,
    PostingScheduler,
    make_schedule,
    missed_since,
    next_runs,
    schedule_from,
)
from bot.store import Store

UTC = dt.timezone.utc
BERLIN = "Europe/Berlin"


def utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


def local(times, tz=BERLIN):
    from zoneinfo import ZoneInfo
    return [t.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M %Z") for t in times]


# ================================================================= time logic


def test_dst_spring_forward_runs_once_an_hour_later():
    s = make_schedule(cron="30 2 * * *", timezone=BERLIN)
    runs = next_runs(s, utc(2026, 3, 27), 4)
    assert runs == [utc(2026, 3, 27, 1, 30), utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]
    assert local(runs) == ["03-27 02:30 CET", "03-28 02:30 CET", "03-29 03:30 CEST", "03-30 02:30 CEST"]


def test_dst_fall_back_runs_once_at_the_first_occurrence():
    s = make_schedule(cron="30 2 * * *", timezone=BERLIN)
    runs = next_runs(s, utc(2026, 10, 23), 4)
    assert runs == [utc(2026, 10, 23, 0, 30), utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    assert local(runs) == ["10-23 02:30 CEST", "10-24 02:30 CEST", "10-25 02:30 CEST", "10-26 02:30 CET"]


def test_hourly_cron_runs_every_real_hour_across_dst():
    s = make_schedule(cron="0 * * * *", timezone=BERLIN)
    fall = [t for t in next_runs(s, utc(2026, 10, 24, 21, 59), 30) if local([t])[0].startswith("10-25")]
    assert len(fall) == 25 and local(fall).count("10-25 02:00 CEST") == 1 and local(fall).count("10-25 02:00 CET") == 1
    spring = [t for t in next_runs(s, utc(2026, 3, 28, 22, 59), 30) if local([t])[0].startswith("03-29")]
    assert len(spring) == 23 and not any(" 02:" in x for x in local(spring))


def test_missed_runs_across_the_dst_night():
    s = make_schedule(cron="30 2 * * *", timezone=BERLIN)
    missed = missed_since(s, utc(2026, 3, 27, 12), utc(2026, 3, 30, 12))
    assert missed == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]
    assert missed_since(s, utc(2026, 3, 30, 0, 30), utc(2026, 3, 30, 12)) == []  # strictly after the last run


def test_interval_schedules_count_real_minutes_from_their_anchor():
    s = make_schedule(interval_minutes=90, anchor=utc(2026, 3, 29, 0, 0), timezone=BERLIN)
    assert next_runs(s, utc(2026, 3, 29, 0, 10), 3) == [utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 3, 0),
                                                          utc(2026, 3, 29, 4, 30)]
    assert next_runs(s, utc(2026, 3, 29, 1, 30), 1) == [utc(2026, 3, 29, 3, 0)]


def test_default_schedule_comes_from_the_config():
    s = schedule_from({}, PostingConfig(cron="0 9,13,19 * * *", timezone=BERLIN, jitter_minutes=20))
    assert (s.cron, s.timezone, s.jitter_minutes) == ("0 9,13,19 * * *", BERLIN, 20)
    stored = make_schedule(interval_minutes=30, jitter_minutes=0, anchor=utc(2026, 1, 1)).to_json()
    assert schedule_from(stored) == make_schedule(interval_minutes=30, jitter_minutes=0, anchor=utc(2026, 1, 1))


@pytest.mark.parametrize("kwargs, words", [
    ({"cron": "0 9 * *"}, "five fields"),
    ({"cron": "0 25 * * *"}, "not a valid cron"),
    ({"cron": "0 9 * * *", "timezone": "Berlin/Europe"}, "unknown time zone"),
    ({"interval_minutes": 0}, "between 0.01 and 527,040 minutes"),
    ({"interval_minutes": -1}, "between 0.01 and 527,040 minutes"),
    # What used to be accepted and then stopped the bot from starting (issue 12):
    ({"interval_minutes": 1e-12}, "between 0.01 and 527,040 minutes .a year., got `1e-12`; e.g. 240"),
    ({"interval_minutes": 1e9}, "got `1000000000.0`"),
    ({"interval_minutes": 1e300}, "between 0.01"),
    ({"interval_minutes": float("nan")}, "between 0.01"),
    ({"interval_minutes": float("inf")}, "between 0.01"),
    ({"cron": "0 0 30 2 *"}, "`0 0 30 2 \\*` does not fire within a year .it names a day that never comes.; e.g."),
    ({"cron": "0 0 31 4 *"}, "does not fire within a year"),
    ({"interval_minutes": 10, "jitter_minutes": -1}, "jitter"),
    ({"interval_minutes": 10, "jitter_minutes": float("inf")}, "jitter must be between 0 and 1440"),
    ({"cron": "0 9 * * *", "interval_minutes": 10}, "not both"),
])
def test_bad_schedules_say_what_to_do(kwargs, words):
    with pytest.raises(BadSchedule, match=words):
        make_schedule(**kwargs)


def test_jitter_only_delays_within_its_window():
    s = make_schedule(cron="0 9,13,19 * * *", timezone="UTC", jitter_minutes=20)
    trigger = PersonaTrigger(s, random.Random(7))
    t, now = None, utc(2026, 3, 1)
    fired = []
    for _ in range(30):
        t = trigger.get_next_fire_time(t, now)
        fired.append(t)
    bases = next_runs(s, utc(2026, 3, 1), 30)
    assert all(b <= f <= b + dt.timedelta(minutes=20) for b, f in zip(bases, fired))
    assert len({f - b for b, f in zip(bases, fired)}) > 1  # really random


# ================================================================= the engine


@pytest.fixture
async def store(tmp_path):
    s = await Store.open(tmp_path / "data" / "parodybot.sqlite3")
    yield s
    await s.close()


def outbox(tmp_path):
    path = tmp_path / "data" / "outbox.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def approved(store, text, persona="dril"):
    cid = await store.add_candidate(persona, None, text, {}, "2026-01-02T00:00:00.000000Z",
                                    created_at="2026-01-01T00:00:00.000000Z")
    await store.update_candidate(cid, state="approved", score=3)
    return cid


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.mark.parametrize("schedule, last_run, now, missed", [
    ({"cron": "0 9,13,19 * * *", "timezone": "UTC", "jitter_minutes": 20},
     utc(2026, 3, 2, 8, 0), utc(2026, 3, 3, 7, 0), 3),
    ({"cron": "30 2 * * *", "timezone": BERLIN, "jitter_minutes": 0},
     utc(2026, 3, 27, 12, 0), utc(2026, 3, 30, 12, 0), 3),
])
async def test_downtime_across_three_runs_posts_exactly_once_at_start(store, tmp_path, schedule, last_run, now, missed):
    await store.create_persona(0, "dril", targets=[{"platform": "outbox"}], schedule=schedule,
                               last_run_at=last_run.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    for i in range(5):
        await approved(store, f"candidate {i}")
    cfg = Config()
    clock = Clock(now)
    assert len(missed_since(schedule_from(schedule), last_run, now)) == missed
    service = PostingService(store, cfg, data_dir=tmp_path / "data", clock=clock)
    sched = PostingScheduler(store, service, cfg.posting, clock=clock)
    await sched.start()
    try:
        await sched.idle()
        assert [r["text"] for r in outbox(tmp_path)] == ["candidate 0"]  # one post, not three
        assert (await store.get_persona("dril"))["last_run_at"].startswith(now.strftime("%Y-%m-%dT%H:%M"))
        job = sched.job_for("dril")
        assert job.coalesce and job.misfire_grace_time is None and job.max_instances == 1
    finally:
        await sched.stop()
    # A second start with nothing missed posts nothing.
    sched = PostingScheduler(store, service, cfg.posting, clock=clock)
    await sched.start()
    await sched.idle()
    await sched.stop()
    assert len(outbox(tmp_path)) == 1


async def test_a_new_persona_gets_its_last_run_set_and_no_catch_up(store, tmp_path):
    await store.create_persona(0, "dril", targets=[{"platform": "outbox"}])
    await approved(store, "not yet")
    cfg = Config()
    service = PostingService(store, cfg, data_dir=tmp_path / "data")
    sched = PostingScheduler(store, service, cfg.posting)
    await sched.start()
    await sched.idle()
    try:
        assert outbox(tmp_path) == []
        assert (await store.get_persona("dril"))["last_run_at"] is not None
        assert sched.job_for("dril") is not None
    finally:
        await sched.stop()


async def test_apscheduler_fires_the_job_and_pausing_stops_it(store, tmp_path):
    # Every 0.6 s (0.01 min) without jitter, so the real engine fires within the test.
    await store.create_persona(0, "dril", targets=[{"platform": "outbox"}],
                               schedule={"interval_minutes": 0.01, "jitter_minutes": 0})
    for i in range(10):
        await approved(store, f"tick {i}")
    cfg = Config()
    reports = []

    async def on_report(report):
        reports.append(report)

    service = PostingService(store, cfg, data_dir=tmp_path / "data")
    sched = PostingScheduler(store, service, cfg.posting, on_report=on_report)
    await sched.start()
    try:
        for _ in range(100):
            if len(reports) >= 2:
                break
            await asyncio.sleep(0.05)
        assert len(reports) >= 2 and all(r.posted for r in reports)
        await store.update_persona("dril", state="paused", paused_reason="test")
        await sched.sync("dril")
        assert sched.job_for("dril") is None
        await sched.idle()
        count = len(outbox(tmp_path))
        await asyncio.sleep(1.0)
        assert len(outbox(tmp_path)) == count  # paused: no more runs
        # A schedule change is picked up by sync, a new persona too.
        await store.update_persona("dril", state="active", schedule={"cron": "0 9 * * *", "timezone": BERLIN})
        await store.create_persona(0, "weirdal", targets=[{"platform": "outbox"}])
        await sched.sync()
        assert sched.next_run_time("dril").astimezone(UTC).hour in (7, 8)  # 09:00 Berlin (+ jitter)
        assert sched.job_for("weirdal") is not None
        await store.delete_persona("weirdal")
        await sched.sync()
        assert sched.job_for("weirdal") is None
    finally:
        await sched.stop()


async def test_a_long_rate_limit_schedules_a_retry_at_the_reset(store, tmp_path):
    await store.create_persona(0, "dril", targets=[{"platform": "outbox"}],
                               schedule={"interval_minutes": 525600, "timezone": "UTC", "jitter_minutes": 0,
                                         "anchor": iso(dt.datetime.now(dt.timezone.utc))})
    cfg = Config()
    service = PostingService(store, cfg, data_dir=tmp_path / "data")
    sched = PostingScheduler(store, service, cfg.posting)
    await sched.start()
    try:
        from bot.posting import RunReport

        soon = dt.datetime.now(UTC) + dt.timedelta(minutes=30)

        async def limited(name, manual=False):
            return RunReport(name, "failed", "rate limited", retry_at=soon.timestamp())

        service.run = limited
        await sched.run("dril", "scheduled")
        retry = sched.engine.get_job("retry:dril")
        assert retry is not None and abs((retry.next_run_time - soon).total_seconds()) < 1
    finally:
        await sched.stop()


async def test_a_missed_run_and_a_retry_due_while_down_make_one_run_at_start(store, tmp_path):
    # Down from 08:00 to 07:00 the next day: three runs missed, and the retry of a
    # rate-limited run (due at 10:00) too. One run at start covers them all.
    await store.create_persona(0, "dril", targets=[{"platform": "outbox"}],
                               schedule={"cron": "0 9,13,19 * * *", "timezone": "UTC", "jitter_minutes": 0},
                               last_run_at="2026-03-02T08:00:00.000000Z", retry_at="2026-03-02T10:00:00.000000Z")
    for i in range(3):
        await approved(store, f"candidate {i}")
    cfg = Config()
    clock = Clock(utc(2026, 3, 3, 7, 0))
    reports = []

    async def on_report(report):
        reports.append(report.outcome)

    service = PostingService(store, cfg, data_dir=tmp_path / "data", clock=clock)
    sched = PostingScheduler(store, service, cfg.posting, clock=clock, on_report=on_report)
    await sched.start()
    try:
        await sched.idle()
        assert [r["text"] for r in outbox(tmp_path)] == ["candidate 0"]
        assert reports == ["posted"]  # one run, not a catch-up and a retry (that would find it busy)
        assert sched.engine.get_job("retry:dril") is None
        assert (await store.get_persona("dril"))["retry_at"] is None
    finally:
        await sched.stop()


@pytest.mark.parametrize("stored", [
    {"interval_minutes": 1e-12, "timezone": "UTC", "jitter_minutes": 0, "anchor": "2026-01-01T00:00:00.000000Z"},
    {"cron": "0 0 30 2 *", "timezone": "UTC", "jitter_minutes": 0},
    {"cron": "0 9 * * *", "timezone": "Mars/Olympus", "jitter_minutes": 0},
    {"interval_minutes": "soon", "timezone": "UTC"},
])
async def test_a_poisoned_stored_schedule_pauses_its_persona_and_the_rest_start(store, tmp_path, stored):
    """A schedule stored by an older version (or by hand) that cannot load never
    stops the scheduler: its persona is paused and told why; the others run."""
    await store.create_persona(0, "broken", targets=[{"platform": "outbox"}], schedule=stored)
    await store.create_persona(0, "fine", targets=[{"platform": "outbox"}],
                               schedule={"cron": "0 9 * * *", "timezone": "UTC", "jitter_minutes": 0})
    cfg = Config()
    sched = PostingScheduler(store, PostingService(store, cfg, data_dir=tmp_path / "data"), cfg.posting)
    await sched.start()
    try:
        assert sched.job_for("fine") is not None and sched.job_for("broken") is None
        broken = await store.get_persona("broken")
        assert broken["state"] == "paused" and "stored schedule does not work" in broken["paused_reason"]
        (said,) = [e for e in await store.pending_posting_events() if e["persona"] == "broken"]
        assert "**broken** is paused" in said["text"] and "/schedule set persona:broken" in said["text"]
        await sched.sync()  # the periodic sync says nothing more
        assert len(await store.pending_posting_events()) == 1
    finally:
        await sched.stop()
