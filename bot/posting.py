"""Posting: claim the best approved candidate, post it to every target, never twice.

One service for the scheduler, ``/post now`` and ``parodybot post-now``. No
Discord in here: what operators must be told is written to
``posting_events`` (a line for the persona's log channel, a candidate message
to edit) and the bot delivers it, so a run made by the CLI is told in Discord
too when the bot next looks.

Never twice (DESIGN.md "Posting"):

1. A run holds the persona's run lock: an asyncio lock in this process and an
   exclusive ``flock`` on ``<data_dir>/locks/posting-<persona>.lock`` across
   processes (the kernel drops it when a process dies, so a candidate left in
   ``posting`` while nobody holds the lock was left by a crash).
2. The claim (candidate -> ``posting``, one ``posts`` row ``sending`` per
   target not yet posted) is committed before any publisher is called.
3. Each answer is recorded (``posts`` row -> ``posted`` with the remote id and
   URL) in its own transaction right after the call.
4. A run that finds a candidate in ``posting`` does not post it again: its
   ``sending`` rows become ``unknown``, the candidate ``failed`` with a note,
   and the operators are told how to resolve it (``/post resolve``).

Errors: rate limits wait for the reset (up to ``max_wait``; longer, the
candidate goes back to ``approved`` and the report carries ``retry_at``),
5xx and timeouts retry with backoff, auth errors pause the persona; in every
failure case the candidate stays ``approved`` and a later run posts it only
to the targets it is missing.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Mapping
from zoneinfo import ZoneInfo

import msgspec

from core import contract, mentions
from bot.publishers import (
    AuthError,
    PublishConfigError,
    PublishError,
    RateLimited,
    UsageCapped,
    make_publisher,
    normalize_platform,
    publish_with_retry,
)
from core.clock import UTC, iso, utcnow
from core.faults import fault
from bot.store import Store

log = logging.getLogger("parodybot.posting")

#: Longest rate-limit wait a scheduled run sits through; a later reset reschedules.
MAX_WAIT_SCHEDULED = 600.0
#: The same for `/post now` and `parodybot post-now` (a person is waiting).
MAX_WAIT_MANUAL = 60.0


def resolve_command(candidate_id: int) -> str:
    return (f"`/post resolve candidate:{candidate_id} outcome:posted` if it is there, "
            f"`/post resolve candidate:{candidate_id} outcome:requeue` to queue it again")


@dataclass
class TargetOutcome:
    key: str                  # posts.platform: the platform, or platform:CREDENTIALS when one repeats
    platform: str
    state: str                # posted | failed | unknown | already
    remote_id: str | None = None
    url: str | None = None
    duplicate: bool = False
    error: str | None = None
    reset_at: float | None = None   # rate limited: when the platform takes posts again (epoch)
    held_until: float | None = None  # usage capped: nothing goes to this target before then (epoch)
    pauses: bool = False            # the error pauses the persona (credentials, target config)


@dataclass
class RunReport:
    persona: str
    outcome: str              # posted | partial | failed | interrupted | empty | cap | paused | busy
    message: str
    candidate_id: int | None = None
    text: str | None = None
    targets: list[TargetOutcome] = field(default_factory=list)
    recovered: list[dict] = field(default_factory=list)   # [{"candidate_id", "note"}]
    retry_at: float | None = None
    paused_reason: str | None = None

    @property
    def posted(self) -> bool:
        return self.outcome == "posted"

    def to_json(self) -> dict:
        return asdict(self)


def configured_targets(persona: dict, cfg, *, name_shared: bool = False) -> list[dict] | None:
    """The persona's targets from the config, if it names them: ``[personas."GUILD_ID/NAME"]``,
    or ``[personas.NAME]`` while only one server has a persona of that name (when two
    have, a bare name would post one server's persona to the other's account)."""
    sections = getattr(cfg, "personas", None) or {}
    name = persona["name"]
    section = sections.get(f"{persona['guild_id']}/{name}")
    if section is None and name in sections:
        if name_shared:
            raise PublishConfigError(
                f'[personas.{name}] in the config could mean the {name} of more than one server; name it '
                f'[personas."{persona["guild_id"]}/{name}"] instead')
        section = sections[name]
    if section is None:
        return None
    return [{k: v for k, v in msgspec.structs.asdict(t).items() if v} for t in section.targets] or None


def target_list(persona: dict, cfg=None, *, name_shared: bool = False) -> list[dict]:
    """The persona's publish targets: the config's (``configured_targets``) when it
    names them, else the database's (``/persona configure``), else the outbox.
    Each gets a ``key`` unique within the persona (the ``posts.platform``)."""
    name = persona["name"]
    configured = configured_targets(persona, cfg, name_shared=name_shared) if cfg is not None else None
    targets = [dict(t) for t in (configured or persona.get("targets") or [{"platform": "outbox"}])]
    platforms = [normalize_platform(t.get("platform")) for t in targets]
    out, keys = [], set()
    for target, platform in zip(targets, platforms):
        key = platform if platforms.count(platform) == 1 else f"{platform}:{target.get('credentials') or ''}"
        if key in keys:
            log.warning("persona %s: target %s is listed twice; posting once", name, key)
            continue
        keys.add(key)
        target["platform"] = platform
        if platform == "outbox":
            target.setdefault("persona", name)
            if persona.get("guild_id"):
                target.setdefault("guild_id", persona["guild_id"])
        out.append(dict(target, key=key))
    return out


def post_links(posts: list[dict]) -> list[str]:
    """Lines for the candidate's message: where it is (or may be) posted."""
    lines = []
    for p in posts:
        if p["state"] == "posted":
            if p.get("url"):
                lines.append(f"{p['platform']}: {p['url']}")
            else:
                lines.append(f"{p['platform']}: posted ({p.get('error') or 'no link returned'})")
        elif p["state"] == "unknown":
            lines.append(f"{p['platform']}: ⚠️ unknown (interrupted; see /post resolve)")
        elif p["state"] == "failed":
            lines.append(f"{p['platform']}: not posted yet ({p.get('error') or 'failed'})")
    return lines


class PostingService:
    def __init__(self, store: Store, cfg, *, env: Mapping[str, str] | None = None, data_dir: Path | None = None,
                 clock: Callable[[], dt.datetime] = utcnow,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 epoch: Callable[[], float] = time.time,
                 attempts: int = 4, backoff: float = 2.0):
        self.store = store
        self.cfg = cfg
        self.env = env if env is not None else os.environ
        self.data_dir = Path(data_dir) if data_dir is not None else cfg.data_path
        self.clock = clock
        self.sleep = sleep
        self.epoch = epoch
        self.attempts = attempts
        self.backoff = backoff
        self._locks: dict[str, asyncio.Lock] = {}

    # --- the run lock ---------------------------------------------------------

    @contextlib.asynccontextmanager
    async def run_lock(self, name: str):
        """Yields True when this run holds the persona's lock, False when another run does.
        ``name`` is the persona's key."""
        contract.check_persona_key(name)
        lock = self._locks.setdefault(name, asyncio.Lock())
        if lock.locked():
            yield False
            return
        async with lock:
            fd = _flock(self.data_dir / "locks" / f"posting-{name}.lock")
            if fd is None:
                yield False
                return
            try:
                yield True
            finally:
                os.close(fd)

    # --- small reads ------------------------------------------------------------

    async def targets(self, persona: dict) -> list[dict]:
        shared = len(await self.store.personas_named(persona["name"])) > 1
        return target_list(persona, self.cfg, name_shared=shared)

    def timezone(self, persona: dict) -> ZoneInfo:
        name = (persona.get("schedule") or {}).get("timezone") or self.cfg.posting.timezone
        try:
            return ZoneInfo(name)
        except Exception:
            return ZoneInfo("UTC")

    async def queue(self, key: str, limit: int | None = None) -> list[dict]:
        return await self.store.approved_queue(key, limit)

    async def queue_page(self, key: str, limit: int) -> tuple[list[dict], int]:
        """The first ``limit`` of the approved queue, and how many it holds in all."""
        rows = await self.store.approved_queue(key, limit)
        return rows, (len(rows) if len(rows) < limit else await self.store.approved_count(key))

    async def posted_count(self, key: str, since: dt.datetime) -> int:
        return await self.store.posted_count(key, iso(since))

    async def _say(self, name: str, kind: str, text: str | None, *, candidate_id: int | None = None,
                   refresh: bool = False) -> None:
        await self.store.add_posting_event(name, kind, text, candidate_id=candidate_id, refresh=refresh)

    async def _say_once(self, persona: dict, notice: str, kind: str, text: str) -> None:
        """Say ``text`` unless the same notice was the last one said."""
        if persona.get("posting_notice") == notice:
            return
        await self.store.update_persona(persona["key"], posting_notice=notice)
        await self._say(persona["key"], kind, text)

    # --- crash recovery ---------------------------------------------------------

    async def recover_all(self) -> list[dict]:
        found = []
        for persona in await self.store.list_personas():
            async with self.run_lock(persona["key"]) as held:
                if held:
                    found += await self._recover(persona)
        return found

    async def _recover(self, persona: dict) -> list[dict]:
        """Candidates left in ``posting`` by a run that died (call with the run lock held)."""
        found = []
        key, name = persona["key"], persona["name"]
        for cand in await self.store.candidates(persona=key, states=["posting"]):
            posts = await self.store.posts_for(cand["id"])
            sending = [p for p in posts if p["state"] == "sending"]
            if not sending:
                # It died after recording every answer: finish what it knew.
                failed = [p for p in posts if p["state"] != "posted"]
                await self.store.settle_recorded(cand["id"], "approved" if failed else "posted")
                continue
            platforms = ", ".join(p["platform"] for p in sending)
            note = (f"posting was interrupted between the call to {platforms} and its record: "
                    "not sent again; it may or may not be there")
            await self.store.mark_outcome_unknown(cand["id"], note, "interrupted: outcome unknown")
            text = (f"⚠️ **{name}**: posting candidate #{cand['id']} was interrupted (the process stopped between "
                    f"sending it to {platforms} and recording the answer). It was **not** sent again. Check "
                    f"{platforms}, then {resolve_command(cand['id'])} (only to the targets not known to be posted).")
            await self._say(key, "interrupted", text, candidate_id=cand["id"], refresh=True)
            log.warning("persona %s: candidate #%s was left in posting by a crash; marked failed", name, cand["id"])
            found.append({"candidate_id": cand["id"], "platforms": [p["platform"] for p in sending], "note": note})
        return found

    # --- the run ----------------------------------------------------------------

    async def run(self, key: str, *, manual: bool = False) -> RunReport:
        """One posting run for the persona whose key is ``key``."""
        contract.check_persona_key(key)
        persona = await self.store.get_persona(key)
        if persona is None:
            raise contract.BadInput(f"there is no persona {contract.persona_label(key)!r}")
        name = persona["name"]
        async with self.run_lock(key) as held:
            if not held:
                return RunReport(name, "busy", f"{name}: another posting run is in progress; try again in a minute")
            recovered = await self._recover(persona)
            report = await self._run_locked(key, manual=manual)
            report.recovered = recovered
            if recovered:
                ids = ", ".join(f"#{r['candidate_id']}" for r in recovered)
                report.message = (f"{name}: candidate {ids} was left half-posted by an interrupted run: marked failed, "
                                  f"not reposted; resolve with {resolve_command(recovered[0]['candidate_id'])}.\n"
                                  + report.message)
            return report

    async def _run_locked(self, key: str, *, manual: bool) -> RunReport:
        persona = await self.store.get_persona(key)
        name = persona["name"]
        if persona["state"] != "active":
            reason = persona.get("paused_reason") or "paused"
            return RunReport(name, "paused", f"{name} is paused ({reason}): `/schedule resume persona:{name}` "
                             "starts it again", paused_reason=reason)
        try:
            targets = await self.targets(persona)
        except PublishConfigError as exc:
            return await self._pause(persona, f"bad publish target: {exc}", None, [])

        now = iso(self.clock())
        held = {k: h for k, h in (persona.get("target_holds") or {}).items() if h.get("until", "") > now}
        if held and not [t for t in targets if t["key"] not in held]:
            notice = "held:" + ",".join(f"{k}@{h['until']}" for k, h in sorted(held.items()))
            text = f"⏸️ **{name}**: nothing to post to: " + "; ".join(
                f"{k} is held until {h['until'][:16].replace('T', ' ')} UTC ({h['why']})" for k, h in held.items())
            await self._say_once(persona, notice, "cap", text)
            return RunReport(name, "cap", text.replace("**", ""))
        targets = [t for t in targets if t["key"] not in held]

        cap = await self._cap_reached(persona)
        if cap is not None:
            notice, text = cap
            await self._say_once(persona, notice, "cap", text)
            return RunReport(name, "cap", text.replace("**", ""))

        claimed = await self._claim(key, targets)
        if claimed is None:
            await self._say_once(persona, "empty", "empty",
                                 f"📭 **{name}**: the approved queue is empty, nothing to post. Vote some candidates "
                                 "up (or `/generate`); this is said once until something is posted.")
            return RunReport(name, "empty", f"{name}: the approved queue is empty; nothing to post")
        cand, todo, already = claimed
        outcomes = [TargetOutcome(p["platform"], p["platform"].split(":")[0], "already", p["remote_id"], p["url"])
                    for p in already]
        max_wait = MAX_WAIT_MANUAL if manual else MAX_WAIT_SCHEDULED
        retry_at: float | None = None
        pause_reason: str | None = None
        # No live mention of a real person goes out unless the persona keeps them (core/mentions.py).
        text = mentions.for_publishing(cand["text"], (persona.get("settings") or {}).get("mentions", self.cfg.generation.mentions))
        for target in todo:
            outcome = await self._publish_one(cand, text, target, max_wait)
            outcomes.append(outcome)
            if outcome.reset_at is not None:
                retry_at = max(retry_at or 0.0, outcome.reset_at)
            if outcome.pauses:
                pause_reason = outcome.error
        return await self._finish(persona, cand, outcomes, retry_at, pause_reason)

    async def _cap_reached(self, persona: dict) -> tuple[str, str] | None:
        caps = self.cfg.posting
        tz = self.timezone(persona)
        local = self.clock().astimezone(tz)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        month = day.replace(day=1)
        name, key = persona["name"], persona["key"]
        if caps.daily_cap and await self.posted_count(key, day) >= caps.daily_cap:
            return (f"cap:daily:{day.date()}",
                    f"🛑 **{name}** reached its daily cap of {caps.daily_cap} post(s) for {day.date()} ({tz.key}); "
                    "runs are skipped until tomorrow (`posting.daily_cap` in the config).")
        if caps.monthly_cap and await self.posted_count(key, month) >= caps.monthly_cap:
            return (f"cap:monthly:{month:%Y-%m}",
                    f"🛑 **{name}** reached its monthly cap of {caps.monthly_cap} post(s) for {month:%Y-%m} "
                    f"({tz.key}); runs are skipped until next month (`posting.monthly_cap` in the config).")
        return None

    async def _claim(self, key: str, targets: list[dict]):
        """The best approved candidate, claimed for ``targets`` before any call (Store.claim_next)."""
        claimed = await self.store.claim_next(key, [t["key"] for t in targets], iso(self.clock()))
        if claimed is None:
            return None
        cand, todo_keys, already = claimed
        return cand, [t for t in targets if t["key"] in todo_keys], already

    async def _publish_one(self, cand: dict, text: str, target: dict, max_wait: float) -> TargetOutcome:
        key, platform = target["key"], target["platform"]
        spec = {k: v for k, v in target.items() if k != "key"}
        try:
            publisher = make_publisher(spec, self.env, self.data_dir)
            result = await publish_with_retry(publisher, text, attempts=self.attempts, backoff=self.backoff,
                                              sleep=self.sleep, clock=self.epoch, max_wait=max_wait)
        except AuthError as exc:  # refused credentials, or missing ones
            out = TargetOutcome(key, platform, "failed", error=str(exc), pauses=True)
            await self._record_failure(cand["id"], key, str(exc))
            return out
        except PublishConfigError as exc:
            out = TargetOutcome(key, platform, "failed", error=f"bad publish target: {exc}", pauses=True)
            await self._record_failure(cand["id"], key, out.error)
            return out
        except UsageCapped as exc:  # before the next period nothing gets through: hold, never retry
            await self._record_failure(cand["id"], key, str(exc))
            return TargetOutcome(key, platform, "failed", error=str(exc), held_until=exc.until)
        except RateLimited as exc:
            when = dt.datetime.fromtimestamp(exc.reset_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            out = TargetOutcome(key, platform, "failed", error=f"rate limited until {when}", reset_at=exc.reset_at + 1)
            await self._record_failure(cand["id"], key, out.error)
            return out
        except PublishError as exc:
            await self._record_failure(cand["id"], key, str(exc))
            return TargetOutcome(key, platform, "failed", error=str(exc))
        except Exception as exc:  # a bug or an unmapped library error: it may have gone out
            log.exception("publishing candidate #%s to %s failed unexpectedly", cand["id"], key)
            return TargetOutcome(key, platform, "unknown", error=f"unexpected {type(exc).__name__}")
        fault("after_publish")
        note = "duplicate: the platform already had it" if result.duplicate else None
        await self.store.record_posted(cand["id"], key, result.remote_id or None, result.url, note, iso(self.clock()))
        return TargetOutcome(key, platform, "posted", result.remote_id or None, result.url, result.duplicate)

    async def _record_failure(self, candidate_id: int, key: str, error: str) -> None:
        await self.store.record_post_failure(candidate_id, key, error)

    async def _finish(self, persona: dict, cand: dict, outcomes: list[TargetOutcome], retry_at: float | None,
                      pause_reason: str | None) -> RunReport:
        name, key, cid = persona["name"], persona["key"], cand["id"]
        done = [o for o in outcomes if o.state in ("posted", "already")]
        failed = [o for o in outcomes if o.state == "failed"]
        unknown = [o for o in outcomes if o.state == "unknown"]
        where = ", ".join(f"{o.key}: {o.url or ('posted (duplicate: already there)' if o.duplicate else 'posted')}"
                          for o in done)
        why = "; ".join(f"{o.key}: {o.error}" for o in failed)
        report = RunReport(name, "posted", "", cid, cand["text"], outcomes, retry_at=retry_at)
        if unknown:
            keys = ", ".join(o.key for o in unknown)
            note = f"posting to {keys} ended in an unexpected error: it may or may not be there"
            await self.store.mark_outcome_unknown(cid, note, "unexpected error: outcome unknown")
            text = (f"⚠️ **{name}**: candidate #{cid}: {note}. It will not be sent again by itself: check {keys}, then "
                    f"{resolve_command(cid)}." + (f" Posted: {where}." if done else ""))
            await self._say(key, "interrupted", text, candidate_id=cid, refresh=True)
            report.outcome, report.message = "interrupted", text.replace("**", "")
        elif not failed:
            await self.store.finish_posted(cid, key, iso(self.clock()))
            text = f"📤 **{name}** posted #{cid} to {where}"
            await self._say(key, "posted", text, candidate_id=cid, refresh=True)
            report.message = text.replace("**", "")
        else:
            note = f"not yet posted to {', '.join(o.key for o in failed)}"
            await self.store.requeue_unposted(cid, key, note, some_posted=bool(done))
            if done:
                report.outcome = "partial"
                text = (f"⚠️ **{name}** posted #{cid} to {where}, but not to {why}. It stays first in the queue; "
                        "a later run posts it only to the missing target(s).")
            else:
                report.outcome = "failed"
                text = f"⚠️ **{name}**: posting #{cid} failed ({why}). It stays in the queue (approved)."
            if retry_at:
                text += f" Rate limited: the next try is at <t:{int(retry_at)}:f> or the next scheduled run."
            await self._say(key, report.outcome, text, candidate_id=cid, refresh=bool(done))
            report.message = text.replace("**", "")
        for o in outcomes:
            if o.held_until is not None:
                until = iso(dt.datetime.fromtimestamp(o.held_until, UTC))
                await self.store.hold_target(persona["key"], o.key, until, o.error or "usage cap")
                others = [t.key for t in outcomes if t.key != o.key]
                text = (f"⏸️ **{name}**: {o.error}. Posts to {o.key} are held until {until[:16].replace('T', ' ')} UTC "
                        "and not tried before" + (f"; {', '.join(others)} go on." if others else "."))
                await self._say_once(dict(persona, posting_notice=None), f"held:{o.key}@{until}", "cap", text)
                report.message += "\n" + text.replace("**", "")
        if pause_reason:
            paused = await self._pause(persona, pause_reason, cid, outcomes)
            report.paused_reason = paused.paused_reason
            report.message += "\n" + paused.message
        return report

    async def _pause(self, persona: dict, reason: str, candidate_id: int | None,
                     outcomes: list[TargetOutcome]) -> RunReport:
        name = persona["name"]
        reason = reason[:300]
        await self.store.update_persona(persona["key"], state="paused", paused_reason=reason)
        text = (f"⏸️ **{name}** is paused: {reason}. Fix the credentials (environment variables) or the target, "
                f"then `/schedule resume persona:{name}`."
                + (f" Candidate #{candidate_id} stays in the queue." if candidate_id else ""))
        await self._say(persona["key"], "paused", text)
        return RunReport(name, "paused", text.replace("**", ""), candidate_id, targets=outcomes, paused_reason=reason)

    # --- what runs have to say ---------------------------------------------------

    async def pending_events(self) -> list[dict]:
        """Log lines and candidate redraws not yet delivered to the frontend."""
        return await self.store.pending_posting_events()

    async def event_delivered(self, event_id: int) -> None:
        await self.store.mark_posting_event_delivered(event_id)

    async def links(self, cand: dict) -> list[str]:
        """What the candidate's message shows of its posts (and a note)."""
        links = post_links(await self.store.posts_for(cand["id"]))
        if cand.get("note") and cand["state"] in ("failed", "approved", "rejected"):
            links.append(f"note: {cand['note']}")
        return links

    # --- operator actions --------------------------------------------------------

    async def resolve(self, candidate_id: int, outcome: str, by: str = "an operator",
                      guild_id: int | None = None) -> dict:
        """After an interrupted run: ``posted`` (it is there) or ``requeue`` (post it
        again to the targets not known to be posted). With ``guild_id``, only that
        guild's candidates."""
        if outcome not in ("posted", "requeue"):
            raise contract.BadInput("outcome must be `posted` or `requeue`.")
        cand = await self.store.get_candidate(candidate_id, guild_id)
        if cand is None:
            raise contract.BadInput(f"there is no candidate #{candidate_id}.")
        if cand["state"] != "failed":
            raise contract.BadInput(f"candidate #{candidate_id} is {cand['state']}: only a candidate whose posting was "
                                    "interrupted (failed) can be resolved.")
        key = cand["persona"]
        name = contract.persona_label(key)
        async with self.run_lock(key) as held:
            if not held:
                raise contract.BadInput(f"a posting run for {name} is in progress; try again in a minute.")
            await self.store.resolve_interrupted(candidate_id, outcome, by, iso(self.clock()))
        what = "marked posted" if outcome == "posted" else "back in the queue (only for the targets not known posted)"
        await self._say(key, "resolved", f"✅ **{name}**: candidate #{candidate_id} {what} by {by}.",
                        candidate_id=candidate_id, refresh=True)
        return await self.store.get_candidate(candidate_id)

    async def edit_queue(self, persona: dict, candidate_id: int, action: str, by: str = "an operator") -> dict:
        """``remove`` the persona's approved candidate from the queue, or move it to the ``top``.
        Another persona's candidate is not found."""
        name = persona["name"]
        cand = await self.store.get_candidate(candidate_id)
        if cand is None or cand["persona"] != persona["key"]:
            raise contract.BadInput(f"**{name}** has no candidate #{candidate_id}: "
                                    f"`/queue show persona:{name}` lists them.")
        try:
            return await (self.remove(candidate_id, by=by) if action == "remove" else self.top(candidate_id))
        except contract.BadInput as exc:
            raise contract.BadInput(f"{exc}. `/queue show persona:{name}` lists the queue.") from None

    async def remove(self, candidate_id: int, by: str = "an operator") -> dict:
        cand = await self._approved(candidate_id)
        await self.store.update_candidate(candidate_id, state="rejected", note=f"removed from the queue by {by}",
                                          decided_at=iso(self.clock()))
        return await self.store.get_candidate(cand["id"])

    async def top(self, candidate_id: int) -> dict:
        cand = await self._approved(candidate_id)
        await self.store.move_to_top(candidate_id, cand["persona"])
        return await self.store.get_candidate(candidate_id)

    async def _approved(self, candidate_id: int) -> dict:
        cand = await self.store.get_candidate(candidate_id)
        if cand is None:
            raise contract.BadInput(f"there is no candidate #{candidate_id}")
        if cand["state"] != "approved":
            raise contract.BadInput(f"candidate #{candidate_id} is {cand['state']}, not in the queue")
        return cand


def _flock(path: Path) -> int | None:
    """An exclusive, non-blocking lock on ``path``; the fd, or None when held elsewhere."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: the in-process lock is all there is
        return os.open(os.devnull, os.O_RDONLY)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def format_report(report: RunReport) -> str:
    """What ``parodybot post-now`` prints."""
    lines = [report.message]
    for o in report.targets:
        if o.state == "posted":
            lines.append(f"  {o.key}: posted {o.url or ''}{' (duplicate: already there)' if o.duplicate else ''}".rstrip())
        elif o.state == "already":
            lines.append(f"  {o.key}: already posted earlier {o.url or ''}".rstrip())
        else:
            lines.append(f"  {o.key}: {o.state}: {o.error}")
    return "\n".join(lines)
