"""Candidates and their votes (no Discord in here): CandidateService.

The rules themselves are plain functions in bot/voting.py; this module
applies them to what is stored, one candidate at a time under a lock so that
a burst of reaction events ends with exact tallies.
"""
from __future__ import annotations

import asyncio
import csv
import io
import datetime as dt
import logging
import time
from typing import Awaitable, Callable, Iterable, Mapping, NamedTuple

from bot import voting
from core import contract
from core.clock import iso, parse_iso, utcnow
from core.config import CurationConfig
from bot.store import Store

log = logging.getLogger("parodybot.candidates")


RULE_KEYS = ("approve_at", "reject_at", "window_hours", "approve_after_window_at",
             "voter_role_id", "curator_role_id", "approve_emoji", "reject_emoji")


def rules_for(persona: dict | None, defaults: CurationConfig, *, role_ids: Mapping[str, int] | None = None) -> voting.VoteRules:
    """The persona's vote rules: its own overrides on top of the config's defaults.

    Config names roles; `role_ids` (name -> id, from the guild) resolves them.
    """
    role_ids = role_ids or {}
    base = {
        "approve_at": defaults.approve_at,
        "reject_at": defaults.reject_at,
        "window_hours": defaults.window_hours,
        "approve_after_window_at": defaults.approve_after_window_at,
        "approve_emoji": defaults.approve_emoji,
        "reject_emoji": defaults.reject_emoji,
        "voter_role_id": role_ids.get(defaults.voter_role) if defaults.voter_role else None,
        "curator_role_id": role_ids.get(defaults.curator_role) if defaults.curator_role else None,
    }
    overrides = {k: v for k, v in ((persona or {}).get("rules") or {}).items() if k in RULE_KEYS}
    return voting.VoteRules(**{**base, **overrides})


MAX_CURATED = 1000  # posts one curated list may bring
VOTE_BATCH_GAP_S = 0.05  # under a burst of reactions, one batch of votes at most this often
VOTE_VIEWS_FRESH_S = 1.0  # candidates' states kept between batches at most this long


class ReactionEvent(NamedTuple):
    """One raw reaction add or remove, as Discord sent it (a tuple: thousands a
    second are made in a burst, bench/votes.py)."""

    message_id: int
    guild_id: int                   # where the reaction was made: only that guild's candidates count it
    member_id: int
    emoji: str
    added: bool
    member_is_bot: bool = False
    member_roles: tuple[int, ...] | None = None
    manage_messages: bool = False


class _Tally:
    """One candidate's counted reactions (member -> vote emoji), kept in step
    with its rows in the reactions table, and their net under ``rules``."""

    __slots__ = ("reactions", "rules", "net")

    def __init__(self, reactions: dict[int, set], rules: voting.VoteRules):
        self.reactions, self.rules, self.net = reactions, rules, voting.net_score(reactions, rules)


class CandidateService:
    def __init__(self, store: Store, clock: Callable[[], dt.datetime] = utcnow):
        self.store = store
        self.clock = clock
        self._locks: dict[int, asyncio.Lock] = {}
        self._refs: dict[int, tuple[int, str, int]] = {}  # message id -> (candidate id, persona key, guild id)
        self._tallies: dict[int, _Tally] = {}  # candidate id -> its reactions as counted (the reactions table)
        self._events: asyncio.Queue[ReactionEvent] = asyncio.Queue()
        # What a vote needs of each candidate (Store.vote_targets), kept between batches
        # while this process wrote nothing else, and at most VOTE_VIEWS_FRESH_S.
        self._views: dict[int, dict] = {}
        self._views_writes = -1  # Store.writes when they were read (or last written by us)
        self._views_since = 0.0

    def lock(self, candidate_id: int) -> asyncio.Lock:
        return self._locks.setdefault(candidate_id, asyncio.Lock())

    async def add(self, persona: str, job_id: int | None, texts: Iterable[tuple[str, dict]],
                  rules: voting.VoteRules) -> list[dict]:
        """Store candidates for voting (a job's only once); returns those added."""
        now = self.clock()
        ends = iso(now + dt.timedelta(hours=rules.window_hours))
        ids = await self.store.add_candidates(persona, job_id, list(texts), ends, created_at=iso(now))
        return [await self.store.get_candidate(i) for i in ids]

    async def add_from_job(self, job: dict, result: contract.GenerateResult, rules: voting.VoteRules) -> list[dict]:
        """A finished generate job's candidates, with the settings they were sampled with."""
        settings = {k: job["params"].get(k) for k in ("temperature", "top_p")}
        settings["job"] = job["id"]
        return await self.add(job["persona"], job["id"],
                              [(c.text, dict(settings, **c.settings)) for c in result.candidates], rules)

    # --- hand curation (the texts come back from the worker's filters: a "check" job) ---

    async def apply_check(self, job: dict, result: contract.CheckResult, rules: voting.VoteRules) -> dict:
        """Carry out what a finished check job was for. Returns ``{"added": [...], "edited":
        candidate or None, "refused": [(text, filter)], "retire": (channel, message) or None}``."""
        params = job["params"]
        passed = [(t, i) for i, (t, fate) in enumerate(zip(result.texts, result.fates)) if fate is None]
        out: dict = {"added": [], "edited": None, "retire": None,
                     "refused": [(params["texts"][i], fate) for i, fate in enumerate(result.fates) if fate]}
        if params["action"] == "edit":
            if not passed:
                return out
            cand = await self.store.get_candidate(params["candidate_id"])
            if cand is None or cand["state"] in ("posting", "posted"):
                out["refused"] = [(params["texts"][0], "posted or deleted meanwhile")]
                return out
            now = self.clock()
            async with self.lock(cand["id"]):
                before = await self.store.edit_candidate(
                    cand["id"], passed[0][0], job_id=job["id"], edited_by=job.get("requested_by"),
                    created_at=iso(now), voting_ends_at=iso(now + dt.timedelta(hours=rules.window_hours)))
                self._tallies.pop(cand["id"], None)  # its reactions so far count no more
                if before and before["message_id"]:
                    self._refs.pop(before["message_id"], None)
            out["edited"] = await self.store.get_candidate(cand["id"])
            if before and before["message_id"] and before["channel_id"]:
                out["retire"] = (before["channel_id"], before["message_id"])
            return out
        settings = {"hand": True, "by": job.get("requested_by"), "job": job["id"]}
        added = await self.add(job["persona"], job["id"], [(t, dict(settings)) for t, _ in passed], rules)
        if params.get("approve"):
            for cand in added:
                await self.store.update_candidate(cand["id"], state="approved", decided_at=iso(self.clock()))
            added = [await self.store.get_candidate(c["id"]) for c in added]
        out["added"] = added
        return out

    @staticmethod
    def parse_curated(file_name: str, data: bytes) -> list[str]:
        """A curated list: a CSV (a ``text`` or ``tweets`` column, else the first), or a
        text file of posts each followed by gpt-2-simple's delimiter line (``=`` x 20);
        a text file without delimiters is one post per line."""
        try:
            body = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise contract.BadInput(f"{file_name} is not UTF-8 text: save it as UTF-8 and attach it again") from None
        if file_name.lower().endswith(".csv"):
            rows = list(csv.reader(io.StringIO(body, newline="")))
            if not rows:
                raise contract.BadInput(f"{file_name} is empty: one post per row, under a header row (text)")
            header = [h.strip().lower() for h in rows[0]]
            col = next((header.index(h) for h in ("text", "tweets") if h in header), 0)
            texts = [r[col] for r in rows[1:] if len(r) > col]
        elif "=" * 20 in body:
            texts = body.split("=" * 20)
        else:
            texts = body.splitlines()
        texts = [t.strip() for t in texts if t.strip()]
        if not texts:
            raise contract.BadInput(f"{file_name} has no posts: one per row (CSV), per line, or each followed "
                                    "by a line of 20 '='")
        if len(texts) > MAX_CURATED:
            raise contract.BadInput(f"{file_name} has {len(texts)} posts; at most {MAX_CURATED} at a time")
        return texts

    async def edits(self, candidate_id: int) -> list[dict]:
        return await self.store.candidate_edits(candidate_id)

    async def export_csv(self, persona: str) -> bytes:
        """The persona's candidates and their votes, one row each (the seed's CSV habits: UTF-8, a header)."""
        buf = io.StringIO(newline="")
        columns = ["id", "state", "score", "up", "down", "edits", "text", "created_at", "decided_at", "job_id"]
        writer = csv.DictWriter(buf, columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(await self.store.export_rows(persona))
        return buf.getvalue().encode("utf-8")

    async def _decide(self, cand: dict, state: dict[int, set], rules: voting.VoteRules,
                      forced: str | None) -> tuple[dict, bool]:
        votes = voting.votes_from_state(state, rules)
        net = voting.tally(votes)
        await self.store.set_votes(cand["id"], votes, net)
        new_state = voting.next_state(
            cand["state"], net, rules, voting_started_at=parse_iso(cand["created_at"]), now=self.clock(), forced=forced,
        )
        changed = new_state != cand["state"]
        if changed:
            await self.store.update_candidate(cand["id"], state=new_state, decided_at=iso(self.clock()))
        return await self.store.get_candidate(cand["id"]), changed

    def submit(self, event: ReactionEvent) -> None:
        """Queue one raw reaction event; called before any await, so arrival order is kept."""
        self._events.put_nowait(event)

    async def consume(self, rules_of: Callable[[str], Awaitable[voting.VoteRules]],
                      on_applied: Callable[[dict, bool], None]) -> None:
        """Apply reaction events in arrival order, all that are waiting in one
        write: a burst costs a few writes, not a few per reaction.
        `on_applied(candidate, state changed)` runs for each candidate touched."""
        while True:
            events = [await self._events.get()]
            began = time.monotonic()
            while not self._events.empty():
                events.append(self._events.get_nowait())
            try:
                results = await self.apply(events, rules_of)
            except Exception:
                log.exception("applying %d reaction event(s) failed", len(events))
                continue
            for cand, changed in results:
                on_applied(cand, changed)
            # Under a burst the next batch gathers for a moment: each batch costs
            # the event loop two trips to SQLite's thread whatever its size (a
            # lone vote still goes at once: the wait is after a batch, not before).
            left = VOTE_BATCH_GAP_S - (time.monotonic() - began)
            if left > 0:
                await asyncio.sleep(left)

    async def apply(self, events: list[ReactionEvent],
                    rules_of: Callable[[str], Awaitable[voting.VoteRules]]) -> list[tuple[dict, bool]]:
        """Events in arrival order -> [(candidate, state changed)], written in one transaction.
        On a removal `member_roles` is None (Discord sends no member then): a
        removal only ever undoes what was counted.

        A batch costs in proportion to its events, not to the members who voted
        before: under a burst of thousands a second the batches are small and many,
        and a recount per candidate per batch was most of the bot's work (bench/votes.py)."""
        per_candidate: dict[int, list[tuple]] = {}
        rules_of_candidate: dict[int, voting.VoteRules] = {}
        rules_of_persona: dict[str, voting.VoteRules] = {}  # asked once per batch
        for ev in events:
            ref = self._refs.get(ev.message_id) or await self._candidate_ref(ev.message_id)
            if ref is None or ref[2] != ev.guild_id:
                continue
            cand_id, persona, _ = ref
            rules = rules_of_persona.get(persona)
            if rules is None:
                rules = rules_of_persona[persona] = await rules_of(persona)
            rules_of_candidate[cand_id] = rules
            forced = None
            if ev.added and ev.emoji in (rules.force_approve_emoji, rules.force_reject_emoji):
                allowed = voting.may_force(ev.member_is_bot, ev.member_roles or (), rules,
                                             manage_messages=ev.manage_messages)
                forced = voting.forced_decision(ev.emoji, may_force=allowed, rules=rules)
                if forced is None:
                    continue
            elif ev.emoji not in rules.vote_emojis:
                continue
            elif ev.added and not voting.counts(ev.member_is_bot, ev.member_roles or (), rules):
                continue
            per_candidate.setdefault(cand_id, []).append((ev.member_id, ev.emoji, ev.added, forced))
        if not per_candidate:
            return []
        ids = sorted(per_candidate)
        held = []
        try:
            for cand_id in ids:  # always in id order: no deadlock with one-candidate holders
                lock = self.lock(cand_id)
                await lock.acquire()
                held.append(lock)
            writes, results = [], []
            current = await self._vote_views(ids)
            now = self.clock()
            now_s, now_iso = now.timestamp(), iso(now)
            for cand_id in ids:
                cand = current.get(cand_id)
                if cand is None:  # deleted meanwhile
                    continue
                rules = rules_of_candidate[cand_id]
                tally = self._tallies.get(cand_id)
                if tally is None:
                    tally = self._tallies[cand_id] = _Tally(await self.store.member_reactions(cand_id), rules)
                elif tally.rules is not rules and tally.rules != rules:  # the persona's rules changed
                    tally = self._tallies[cand_id] = _Tally(tally.reactions, rules)
                rows = {}
                started_s = parse_iso(cand["created_at"]).timestamp()
                new_state = cand["state"]
                for member_id, emoji, added, forced in per_candidate[cand_id]:
                    if forced is None:
                        tally.net += voting.change_reaction(tally.reactions, member_id, emoji, added, rules)
                        rows[(member_id, emoji)] = added
                    # Decide after every event, as if each had come alone: a threshold
                    # reached mid-batch counts, and decisions are final.
                    new_state = voting.next_state(new_state, tally.net, rules,
                                                    voting_started_at=started_s, now=now_s, forced=forced)
                votes = {m: voting.member_vote(tally.reactions.get(m, ()), rules) for m, _ in rows}
                decided_at = now_iso if new_state != cand["state"] else cand["decided_at"]
                writes.append((cand_id, rows, votes, tally.net, cand["state"], new_state, decided_at))
                results.append((dict(cand, score=tally.net, state=new_state, decided_at=decided_at),
                                new_state != cand["state"]))
            before = self.store.writes
            try:
                await self.store.record_votes(writes)
            except Exception:
                for cand_id in ids:  # memory went ahead of the database: reload next time
                    self._tallies.pop(cand_id, None)
                self._views.clear()
                raise
            if self._views_writes == before and self.store.writes == before + 1:  # ours was the only write
                for cand, _ in results:
                    view = self._views.get(cand["id"])
                    if view is not None:
                        view.update(score=cand["score"], state=cand["state"], decided_at=cand["decided_at"])
                self._views_writes = self.store.writes
        finally:
            for lock in held:
                lock.release()
        return results

    async def _vote_views(self, ids: list[int]) -> dict[int, dict]:
        """The candidates' vote columns. Under a burst a read per batch was half the
        batch's trips to SQLite's thread, so they are kept while no other write of
        this process came between, for at most VOTE_VIEWS_FRESH_S: another
        process's change (`parodybot post-now`) shows within that, and
        record_votes never writes a state over one it did not count on."""
        now = time.monotonic()
        if self._views_writes != self.store.writes or now - self._views_since > VOTE_VIEWS_FRESH_S:
            self._views.clear()  # something else wrote, or it is time to look again
            self._views_since = now
        missing = [i for i in ids if i not in self._views]
        if missing:
            writes = self.store.writes  # a write during the read shows as a change next time
            self._views.update(await self.store.vote_targets(missing))
            self._views_writes = writes
        return {i: self._views[i] for i in ids if i in self._views}

    async def _candidate_ref(self, message_id: int) -> tuple[int, str, int] | None:
        ref = self._refs.get(message_id)
        if ref is None:
            cand = await self.store.candidate_by_message(message_id)
            persona = await self.store.get_persona(cand["persona"]) if cand else None
            if persona is None:
                return None
            ref = self._refs[message_id] = (cand["id"], cand["persona"], persona["guild_id"])
        return ref

    async def reconcile(self, cand: dict, read_reactions: Callable[[], Awaitable[tuple]],
                        rules: voting.VoteRules) -> tuple[dict, bool]:
        """Start-up: the message's reactions are the truth.

        `read_reactions()` returns (users by emoji, eligible(member id), forced
        decision or None); it runs under the candidate's lock, so a live
        reaction event waits for the recount instead of being overwritten by it.
        """
        async with self.lock(cand["id"]):
            users_by_emoji, eligible, forced = await read_reactions()
            state = voting.state_from_reactions(users_by_emoji, rules, eligible)
            await self.store.replace_reactions(cand["id"], state)
            self._tallies[cand["id"]] = _Tally(state, rules)
            cand = await self.store.get_candidate(cand["id"])
            return await self._decide(cand, state, rules, forced)

    async def close_windows(self, rules_of: Callable[[dict], voting.VoteRules]) -> list[dict]:
        """Decide every voting candidate whose window has ended; returns the changed ones."""
        changed = []
        for cand in await self.store.candidates(states=["voting"]):
            async with self.lock(cand["id"]):
                state = await self.store.member_reactions(cand["id"])
                cand, did = await self._decide(await self.store.get_candidate(cand["id"]), state, rules_of(cand), None)
            if did:
                changed.append(cand)
        return changed

    async def get(self, candidate_id: int, guild_id: int | None = None) -> dict | None:
        return await self.store.get_candidate(candidate_id, guild_id)

    async def unsent(self, persona: str) -> list[dict]:
        """The persona's candidates still voting (or approved by hand) that have no message yet."""
        return await self.store.undelivered(persona)

    async def claim_delivery(self, candidate_id: int, channel_id: int) -> str | None:
        """Claim a delivery before sending; the time of an earlier claim (a message
        may already be in the channel) or None."""
        return await self.store.claim_delivery(candidate_id, channel_id, iso(self.clock()))

    async def set_message(self, candidate_id: int, message_id: int, rules: voting.VoteRules) -> None:
        """Its message is sent: from now on reactions to it are its votes."""
        await self.store.record_delivery(candidate_id, message_id)
        self._refs.pop(message_id, None)
        # Ready for the first vote now, so a burst of votes on new candidates reads
        # nothing per candidate (bench/votes.py).
        await self._candidate_ref(message_id)
        async with self.lock(candidate_id):
            self._tallies[candidate_id] = _Tally(await self.store.member_reactions(candidate_id), rules)

    async def to_reconcile(self) -> list[dict]:
        """Candidates whose votes still matter (voting, and approved: their score orders the queue)."""
        return [c for c in await self.store.candidates(states=["voting", "approved"]) if c["message_id"]]

    async def approved_queue(self, persona: str) -> list[dict]:
        return await self.store.approved_queue(persona)

    async def to_resolve(self, persona: str) -> list[dict]:
        """Candidates whose posting was interrupted (failed) or is under way."""
        return await self.store.candidates(persona=persona, states=["failed", "posting"])

    async def posts_for(self, candidate_id: int) -> list[dict]:
        return await self.store.posts_for(candidate_id)

    async def queue_position(self, cand: dict) -> int | None:
        """1-based place among the persona's approved candidates (posting order)."""
        if cand["state"] != "approved":
            return None
        return await self.store.queue_position(cand["id"], cand["persona"])
