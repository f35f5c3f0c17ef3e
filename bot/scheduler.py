"""When each persona posts: schedules, their time logic, and APScheduler as the engine.

A persona's schedule (``personas.schedule``, JSON) is one of

    {"cron": "0 9,13,19 * * *", "timezone": "Europe/Berlin", "jitter_minutes": 20}
    {"interval_minutes": 90, "jitter_minutes": 5, "anchor": "2026-03-01T00:00:00.000000Z"}

and an empty ``{}`` means the config's default (``[posting] cron``,
``timezone``, ``jitter_minutes``).

The time logic is plain functions of a schedule and given instants
(``next_fire``, ``next_runs``, ``missed_since``), so it is tested on a fake
clock; ``PersonaTrigger`` hands the same functions to APScheduler, which fires
the jobs in the running bot.

Rules (DESIGN.md "Posting", issue #6):

- cron times are wall-clock times in the schedule's time zone;
- daylight saving time, e.g. ``30 2 * * *`` in Europe/Berlin:
  * spring forward (last Sunday of March, 02:00 -> 03:00): 02:30 does not
    exist that night; the run happens at 03:30 CEST (01:30 UTC), one hour of
    wall clock later, so the persona still posts once that day;
  * fall back (last Sunday of October, 03:00 -> 02:00): 02:30 happens twice;
    the run happens once, at the first 02:30 (CEST, 00:30 UTC). A cron whose
    hour field is ``*`` (e.g. ``*/15 * * * *``) runs on every real occurrence,
    like cron does, because it means "every hour";
- interval schedules count real minutes from their anchor; DST does not
  move them;
- jitter delays each run by a random 0..jitter minutes (never earlier). A
  jitter longer than the gap between two times can swallow the second one;
- runs missed while the bot was down (found from ``personas.last_run_at``)
  coalesce into one run at start; runs missed while it was up (a stalled
  event loop, a suspended machine) coalesce too (APScheduler ``coalesce``, no
  misfire grace limit);
- a paused persona has no job; resuming does not make up for the runs it
  skipped while paused;
- a run rate limited past its wait cap tries again at the reset time (a
  one-off ``retry:<persona>`` job) unless the next regular run comes first.
  The time is kept in ``personas.retry_at`` so that the retry survives a
  restart: at start it is scheduled again, or run at once if its time passed
  while the bot was down (once, and not at all when a catch-up run is made
  anyway). It is cleared when the retry fires, when a later run ends without
  a rate limit, and when the persona is paused.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import random
from dataclasses import dataclass
from typing import Awaitable, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from core.contract import shown

from core.clock import UTC, iso, parse_iso, utcnow

log = logging.getLogger("parodybot.scheduler")

EPS = dt.timedelta(microseconds=1)
DEFAULT_ANCHOR = dt.datetime(2000, 1, 1, tzinfo=UTC)
CRON_EXAMPLE = "`0 9,13,19 * * *` (09:00, 13:00 and 19:00 every day) or `30 8 * * 1-5` (08:30 on weekdays)"
TZ_EXAMPLE = "`Europe/Berlin`, `America/New_York` or `UTC`"
# Sane bounds: tests and the demo post every second or so; nothing less than once a year.
MIN_INTERVAL_MINUTES = 0.01
MAX_INTERVAL_MINUTES = 366 * 24 * 60
HORIZON = dt.timedelta(days=366)


class BadSchedule(ValueError):
    """A schedule a person typed that cannot work; the message says what to type instead."""


@dataclass(frozen=True)
class Schedule:
    cron: str | None = None
    timezone: str = "UTC"
    interval_minutes: float | None = None
    jitter_minutes: float = 0.0
    anchor: dt.datetime = DEFAULT_ANCHOR  # interval schedules: runs at anchor + k * interval

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def describe(self) -> str:
        if self.cron:
            what = f"cron `{self.cron}` ({self.timezone})"
        else:
            what = f"every {self.interval_minutes:g} min"
        if self.jitter_minutes:
            what += f", jitter up to {self.jitter_minutes:g} min"
        return what

    def to_json(self) -> dict:
        if self.cron:
            return {"cron": self.cron, "timezone": self.timezone, "jitter_minutes": self.jitter_minutes}
        return {"interval_minutes": self.interval_minutes, "timezone": self.timezone,
                "jitter_minutes": self.jitter_minutes, "anchor": iso(self.anchor)}




def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise BadSchedule(f"unknown time zone {shown(name)}: use an IANA name such as {TZ_EXAMPLE}") from None
    return name


def check_cron(expr: str, timezone: str = "UTC") -> str:
    expr = " ".join(str(expr).split())
    if len(expr.split()) != 5:
        raise BadSchedule(f"{shown(expr)} is not a cron expression: give five fields (minute hour day month weekday), "
                          f"e.g. {CRON_EXAMPLE}")
    try:
        trigger = CronTrigger.from_crontab(expr, timezone=ZoneInfo(timezone))
    except ValueError as exc:
        raise BadSchedule(f"{shown(expr)} is not a valid cron expression ({exc}); e.g. {CRON_EXAMPLE}") from None
    now = dt.datetime.now(UTC)
    first = trigger.get_next_fire_time(None, now.astimezone(ZoneInfo(timezone)))
    if first is None or first - now > HORIZON:
        when = f" (its next time is {first:%Y-%m-%d})" if first is not None else " (it names a day that never comes)"
        raise BadSchedule(f"{shown(expr)} does not fire within a year{when}; e.g. {CRON_EXAMPLE}")
    return expr


def make_schedule(*, cron: str | None = None, timezone: str | None = None, interval_minutes: float | None = None,
                  jitter_minutes: float | None = None, anchor: dt.datetime | None = None,
                  defaults=None) -> Schedule:
    """Validate what a person typed (a cron expression with a time zone, or an
    interval in minutes; jitter in minutes). Raises ``BadSchedule``."""
    tz = check_timezone(timezone or (defaults.timezone if defaults else "UTC"))
    jitter = float(defaults.jitter_minutes if (jitter_minutes is None and defaults) else (jitter_minutes or 0))
    if not (0 <= jitter <= 24 * 60) or math.isnan(jitter):
        raise BadSchedule(f"jitter must be between 0 and 1440 minutes, got {shown(jitter_minutes)}; e.g. 20")
    if cron and interval_minutes is not None:
        raise BadSchedule("give either a cron expression or an interval in minutes, not both")
    if interval_minutes is not None:
        try:
            minutes = float(interval_minutes)
        except (TypeError, ValueError):
            minutes = float("nan")
        if not MIN_INTERVAL_MINUTES <= minutes <= MAX_INTERVAL_MINUTES:  # NaN fails too
            raise BadSchedule(f"the interval must be between {MIN_INTERVAL_MINUTES:g} and {MAX_INTERVAL_MINUTES:,} "
                              f"minutes (a year), got {shown(interval_minutes)}; e.g. 240 for every four hours")
        return Schedule(interval_minutes=minutes, timezone=tz, jitter_minutes=jitter, anchor=anchor or DEFAULT_ANCHOR)
    if not cron:
        if defaults is None:
            raise BadSchedule(f"give a cron expression, e.g. {CRON_EXAMPLE}, or an interval in minutes")
        cron = defaults.cron
    return Schedule(cron=check_cron(cron, tz), timezone=tz, jitter_minutes=jitter)


def schedule_from(stored: dict | None, defaults=None) -> Schedule:
    """The schedule of a persona as stored (``{}`` = the config's default)."""
    stored = dict(stored or {})
    anchor = parse_iso(stored["anchor"]) if stored.get("anchor") else None
    return make_schedule(cron=stored.get("cron"), timezone=stored.get("timezone"),
                         interval_minutes=stored.get("interval_minutes"), jitter_minutes=stored.get("jitter_minutes"),
                         anchor=anchor, defaults=defaults)


# --- the time logic ------------------------------------------------------------


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _second_occurrence(t: dt.datetime, tz: ZoneInfo) -> bool:
    """Is ``t`` the second time its wall-clock time happened (fall-back hour)?"""
    local = t.astimezone(tz)
    naive = local.replace(tzinfo=None)
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    return first.utcoffset() != second.utcoffset() and local.fold == 1


def next_fire(schedule: Schedule, after: dt.datetime) -> dt.datetime | None:
    """The first scheduled time strictly after ``after`` (UTC, no jitter)."""
    after = _aware(after).astimezone(UTC)
    if schedule.interval_minutes:
        step = dt.timedelta(minutes=schedule.interval_minutes)
        k = math.floor((after - schedule.anchor) / step) + 1
        t = schedule.anchor + k * step
        while t <= after:  # float rounding
            t += step
        return t.astimezone(UTC)
    tz = schedule.tz
    trigger = CronTrigger.from_crontab(schedule.cron, timezone=tz)
    every_hour = schedule.cron.split()[1] == "*"
    cursor = after
    for _ in range(1000):
        t = trigger.get_next_fire_time(None, (cursor + EPS).astimezone(tz))
        if t is None:
            return None
        t = t.astimezone(UTC)
        if t <= cursor:  # a skipped wall-clock time mapped onto one already passed
            cursor = cursor + dt.timedelta(seconds=1)
            continue
        if not every_hour and _second_occurrence(t, tz):
            cursor = t
            continue
        return t
    return None


def next_runs(schedule: Schedule, after: dt.datetime, n: int) -> list[dt.datetime]:
    """The next ``n`` scheduled times strictly after ``after`` (UTC, no jitter)."""
    out: list[dt.datetime] = []
    t = after
    while len(out) < n:
        t = next_fire(schedule, t)
        if t is None:
            break
        out.append(t)
    return out


def missed_since(schedule: Schedule, last_run: dt.datetime, now: dt.datetime, limit: int = 10_000) -> list[dt.datetime]:
    """Scheduled times in (last_run, now]: the runs a stopped bot missed."""
    out: list[dt.datetime] = []
    t = last_run
    now = _aware(now)
    while len(out) < limit:
        t = next_fire(schedule, t)
        if t is None or t > now:
            break
        out.append(t)
    return out


class PersonaTrigger(BaseTrigger):
    """An APScheduler trigger over ``next_fire`` plus 0..jitter minutes of delay."""

    __slots__ = ("schedule", "rng")

    def __init__(self, schedule: Schedule, rng: random.Random | None = None):
        self.schedule = schedule
        self.rng = rng or random.Random()

    def get_next_fire_time(self, previous_fire_time, now):
        after = previous_fire_time if previous_fire_time is not None else _aware(now) - EPS
        base = next_fire(self.schedule, after)
        if base is None:
            return None
        if self.schedule.jitter_minutes:
            base = base + dt.timedelta(seconds=self.rng.uniform(0, self.schedule.jitter_minutes * 60))
        return base

    def __str__(self) -> str:
        return f"persona[{self.schedule.describe()}]"


# --- the engine ---------------------------------------------------------------


class PostingScheduler:
    """One APScheduler job per active persona, rebuilt from the database.

    ``service`` is a ``bot.posting.PostingService``; ``on_report`` (async) gets
    each run's report (the Discord cog delivers what it has to say)."""

    SYNC_SECONDS = 30.0

    def __init__(self, store, service, defaults, *, clock: Callable[[], dt.datetime] = utcnow,
                 rng: random.Random | None = None,
                 on_report: Callable[[object], Awaitable[None]] | None = None):
        self.store = store
        self.service = service
        self.defaults = defaults
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_report = on_report
        self.engine = None
        self._signatures: dict[str, str] = {}
        self._tasks: set[asyncio.Task] = set()

    # --- lifecycle ------------------------------------------------------------

    async def start(self, *, catch_up: bool = True) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.engine = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.engine.start()
        await self.service.recover_all()
        await self.sync(catch_up=catch_up)
        self.engine.add_job(self.sync, "interval", seconds=self.SYNC_SECONDS, id="sync", replace_existing=True)

    async def stop(self, timeout: float = 10.0) -> None:
        if self.engine is not None and self.engine.running:
            self.engine.shutdown(wait=False)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in list(self._tasks):
            task.cancel()  # a run cut here is found as interrupted at the next start
        self.engine = None

    async def idle(self, timeout: float = 30.0) -> None:
        """Wait until no run is in progress (tests)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks and loop.time() < deadline:
            await asyncio.wait(set(self._tasks), timeout=deadline - loop.time())

    # --- jobs -----------------------------------------------------------------

    def job_id(self, name: str) -> str:
        return f"post:{name}"

    def retry_id(self, name: str) -> str:
        return f"retry:{name}"

    def job_for(self, name: str):
        return self.engine.get_job(self.job_id(name)) if self.engine else None

    def next_run_time(self, name: str) -> dt.datetime | None:
        job = self.job_for(name)
        return job.next_run_time if job else None

    def schedule_of(self, persona: dict) -> Schedule:
        return schedule_from(persona.get("schedule"), self.defaults)

    async def sync(self, name: str | None = None, *, catch_up: bool = False) -> None:
        """Make the jobs match the database (all personas, or one)."""
        if self.engine is None:
            return
        personas = await self.store.list_personas() if name is None else \
            [p for p in [await self.store.get_persona(name)] if p]
        seen = {p["key"] for p in personas}
        if name is None:
            for gone in set(self._signatures) - seen:
                self._remove(gone)
        elif name not in seen:
            self._remove(name)
        now = self.clock()
        for persona in personas:
            try:
                await self._sync_one(persona, now, catch_up)
            except Exception as exc:  # one persona that cannot load never stops the others (or the bot)
                log.exception("persona %s: its posting schedule could not be loaded", persona["key"])
                await self._refuse_to_load(persona, f"its posting job could not be made ({type(exc).__name__}: {exc})")

    async def _refuse_to_load(self, persona: dict, why: str) -> None:
        """Pause the persona and say so in its log channel, once."""
        self._remove(persona["key"])
        if persona["state"] == "active":
            reason = why[:300]
            await self.store.update_persona(persona["key"], state="paused", paused_reason=reason, retry_at=None)
            await self.store.add_posting_event(
                persona["key"], "paused",
                f"⏸️ **{persona['name']}** is paused: {reason}. Set a schedule with "
                f"`/schedule set persona:{persona['name']}`, then `/schedule resume persona:{persona['name']}`.")

    async def _sync_one(self, persona: dict, now: dt.datetime, catch_up: bool) -> None:
        pname = persona["key"]
        if persona["state"] != "active":
            await self._drop(persona)
            return
        try:
            schedule = self.schedule_of(persona)
        except BadSchedule as exc:
            log.error("persona %s: bad stored schedule, paused: %s", pname, exc)
            await self._refuse_to_load(persona, f"its stored schedule does not work ({exc})")
            return
        # At start, a retry kept from before the restart (see the module docstring).
        retry = parse_iso(persona["retry_at"]) if catch_up and persona.get("retry_at") else None
        if persona.get("last_run_at") is None:
            await self.store.update_persona(pname, last_run_at=iso(now))
        elif catch_up:
            missed = missed_since(schedule, parse_iso(persona["last_run_at"]), now)
            if missed:
                log.info("persona %s: %d run(s) missed while stopped (%s ... %s); running once now",
                         pname, len(missed), missed[0], missed[-1])
                if retry is not None:  # the catch-up run is the retry too
                    await self._set_retry(pname, None)
                    retry = None
                self._spawn(pname, "catch-up")
        signature = repr(schedule)
        if self._signatures.get(pname) != signature or self.job_for(pname) is None:
            self.engine.add_job(self._fire, PersonaTrigger(schedule, self.rng), args=[pname, "scheduled"],
                                id=self.job_id(pname), name=f"post {pname}", replace_existing=True)
            self._signatures[pname] = signature
        if retry is not None and retry <= now:
            log.info("persona %s: the retry of a rate-limited run was due at %s while stopped; running it now",
                     pname, retry)
            self._spawn(pname, "retry")
        elif retry is not None:
            await self._schedule_retry(pname, retry)

    def _remove(self, name: str) -> None:
        self._signatures.pop(name, None)
        for job_id in (self.job_id(name), self.retry_id(name)):
            if self.engine is not None and self.engine.get_job(job_id):
                self.engine.remove_job(job_id)

    async def _drop(self, persona: dict) -> None:
        """No jobs for this persona (paused, or a bad schedule), and no pending retry."""
        self._remove(persona["key"])
        if persona.get("retry_at"):
            await self.store.set_retry_at(persona["key"], None)

    def _spawn(self, name: str, kind: str) -> asyncio.Task:
        task = asyncio.create_task(self._fire(name, kind))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- runs -----------------------------------------------------------------

    async def _fire(self, name: str, kind: str):
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if kind in ("scheduled", "catch-up"):
                await self.store.update_persona(name, last_run_at=iso(self.clock()))
            elif kind == "retry":  # fired: a crash from here on does not run it again at start
                await self.store.set_retry_at(name, None)
            return await self.run(name, kind)
        except Exception:
            log.exception("posting run for %s failed", name)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def run(self, name: str, kind: str = "manual"):
        """One posting run now (``/post now`` uses this too); reschedules a rate-limited one."""
        report = await self.service.run(name, manual=(kind == "manual"))
        if report.retry_at is not None:
            await self._schedule_retry(name, dt.datetime.fromtimestamp(report.retry_at, UTC))
        elif report.outcome != "busy":  # this run settled what a pending retry was for
            await self._set_retry(name, None)
        if report.paused_reason is not None:
            await self.sync(name)  # an auth error paused it: its jobs (and any retry) go
        if self.on_report is not None:
            try:
                await self.on_report(report)
            except Exception:
                log.exception("delivering the report of %s's run failed", name)
        return report

    async def _schedule_retry(self, name: str, when: dt.datetime) -> None:
        regular = self.next_run_time(name)
        if regular is not None and regular <= when:
            when = None  # the next regular run comes first anyway
        await self._set_retry(name, when)

    async def _set_retry(self, name: str, when: dt.datetime | None) -> None:
        """The persona's pending retry: a one-off job at ``when`` (or none), kept
        in ``personas.retry_at`` too so that it survives a restart."""
        if self.engine is not None:
            if when is not None:
                self.engine.add_job(self._fire, "date", run_date=when, args=[name, "retry"], id=self.retry_id(name),
                                    name=f"retry {name}", replace_existing=True)
            elif self.engine.get_job(self.retry_id(name)):
                self.engine.remove_job(self.retry_id(name))
        await self.store.set_retry_at(name, iso(when) if when is not None else None)
