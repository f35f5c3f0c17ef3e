"""Candidates and their votes: the store side of curation (no Discord in here).

The rules themselves are plain functions in bot/curation.py; this module
applies them to what is stored, one candidate at a time under a lock so that
a burst of reaction events ends with exact tallies.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Awaitable, Callable, Iterable, Mapping

from bot import curation
from bot.clock import iso, parse_iso, utcnow
from bot.config import CurationConfig
from bot.store import Store


RULE_KEYS = ("approve_at", "reject_at", "window_hours", "approve_after_window_at",
             "voter_role_id", "curator_role_id", "approve_emoji", "reject_emoji")


def rules_for(persona: dict | None, defaults: CurationConfig, *, role_ids: Mapping[str, int] | None = None) -> curation.VoteRules:
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
    return curation.VoteRules(**{**base, **overrides})


class Curation:
    def __init__(self, store: Store, clock: Callable[[], dt.datetime] = utcnow):
        self.store = store
        self.clock = clock
        self._locks: dict[int, asyncio.Lock] = {}
        self._refs: dict[int, tuple[int, str]] = {}  # message id -> (candidate id, persona)
        self._state: dict[int, dict[int, set]] = {}  # candidate id -> member -> vote emoji (the reactions table)
        self._pending: dict[int, list[tuple]] = {}
        self._draining: set[int] = set()

    def lock(self, candidate_id: int) -> asyncio.Lock:
        return self._locks.setdefault(candidate_id, asyncio.Lock())

    async def add(self, persona: str, job_id: int | None, texts: Iterable[tuple[str, dict]],
                  rules: curation.VoteRules) -> list[dict]:
        now = self.clock()
        ends = iso(now + dt.timedelta(hours=rules.window_hours))
        ids = [await self.store.add_candidate(persona, job_id, text, settings, ends, created_at=iso(now))
               for text, settings in texts]
        return [await self.store.get_candidate(i) for i in ids]

    async def _decide(self, cand: dict, state: dict[int, set], rules: curation.VoteRules,
                      forced: str | None) -> tuple[dict, bool]:
        votes = curation.votes_from_state(state, rules)
        net = curation.tally(votes)
        await self.store.set_votes(cand["id"], votes, net)
        new_state = curation.next_state(
            cand["state"], net, rules, voting_started_at=parse_iso(cand["created_at"]), now=self.clock(), forced=forced,
        )
        changed = new_state != cand["state"]
        if changed:
            await self.store.update_candidate(cand["id"], state=new_state, decided_at=iso(self.clock()))
        return await self.store.get_candidate(cand["id"]), changed

    async def react(self, message_id: int, member_id: int, emoji: str, added: bool,
                    rules_of: Callable[[str], Awaitable[curation.VoteRules]], *, member_is_bot: bool,
                    member_roles: Iterable[int] | None, manage_messages: bool = False) -> tuple[dict | None, bool]:
        """One raw reaction event. Returns (candidate, state changed) or (None, False)
        when the message is not a candidate or the reaction does not count.
        `member_roles` is None on a removal (Discord sends no member then): a
        removal only ever undoes what was counted.

        Events for one candidate that arrive while an earlier batch is being
        written are applied together in one transaction: a burst of reactions
        costs a few writes per candidate, not a few per reaction.
        """
        ref = await self._candidate_ref(message_id)
        if ref is None:
            return None, False
        cand_id, persona = ref
        rules = await rules_of(persona)
        forced = None
        if added and emoji in (rules.force_approve_emoji, rules.force_reject_emoji):
            allowed = curation.may_force(member_is_bot, member_roles or (), rules, manage_messages=manage_messages)
            forced = curation.forced_decision(emoji, may_force=allowed, rules=rules)
            if forced is None:
                return None, False
        elif emoji not in rules.vote_emojis:
            return None, False
        elif added and not curation.counts(member_is_bot, member_roles or (), rules):
            return None, False
        done = asyncio.get_running_loop().create_future()
        self._pending.setdefault(cand_id, []).append((member_id, emoji, added, forced, done))
        if cand_id not in self._draining:
            self._draining.add(cand_id)
            try:
                while self._pending.get(cand_id):
                    batch = self._pending.pop(cand_id)
                    try:
                        cand, changed = await self._apply(cand_id, batch, rules)
                    except Exception as exc:  # every waiter hears of it; the next batch still runs
                        for *_, fut in batch:
                            fut.set_exception(exc)
                        continue
                    for *_, fut in batch[:-1]:
                        fut.set_result((cand, False))
                    batch[-1][-1].set_result((cand, changed))  # one message edit per batch
            finally:
                self._draining.discard(cand_id)
        return await done

    async def _candidate_ref(self, message_id: int) -> tuple[int, str] | None:
        ref = self._refs.get(message_id)
        if ref is None:
            cand = await self.store.candidate_by_message(message_id)
            if cand is None:
                return None
            ref = self._refs[message_id] = (cand["id"], cand["persona"])
        return ref

    async def _apply(self, cand_id: int, batch: list[tuple], rules: curation.VoteRules) -> tuple[dict | None, bool]:
        async with self.lock(cand_id):
            cand = await self.store.get_candidate(cand_id)
            if cand is None:  # deleted meanwhile
                return None, False
            state = self._state.get(cand_id)
            if state is None:
                state = self._state[cand_id] = await self.store.member_reactions(cand_id)
            rows = {}
            started, now = parse_iso(cand["created_at"]), self.clock()
            new_state = cand["state"]
            for member_id, emoji, added, forced, _ in batch:
                if forced is None:
                    curation.apply_reaction(state, member_id, emoji, added, rules)
                    rows[(member_id, emoji)] = added
                # Decide after every event, as if each had come alone: a threshold
                # reached mid-batch counts, and decisions are final.
                net = curation.net_score(state, rules)
                new_state = curation.next_state(new_state, net, rules, voting_started_at=started, now=now, forced=forced)
            votes = curation.votes_from_state(state, rules)
            net = curation.tally(votes)
            decided_at = iso(self.clock()) if new_state != cand["state"] else cand["decided_at"]
            await self.store.record_votes(cand_id, rows, votes, net, new_state, decided_at)
            return dict(cand, score=net, state=new_state, decided_at=decided_at), new_state != cand["state"]

    async def reconcile(self, cand: dict, read_reactions: Callable[[], Awaitable[tuple]],
                        rules: curation.VoteRules) -> tuple[dict, bool]:
        """Start-up: the message's reactions are the truth.

        `read_reactions()` returns (users by emoji, eligible(member id), forced
        decision or None); it runs under the candidate's lock, so a live
        reaction event waits for the recount instead of being overwritten by it.
        """
        async with self.lock(cand["id"]):
            users_by_emoji, eligible, forced = await read_reactions()
            state = curation.state_from_reactions(users_by_emoji, rules, eligible)
            await self.store.replace_reactions(cand["id"], state)
            self._state[cand["id"]] = state
            cand = await self.store.get_candidate(cand["id"])
            return await self._decide(cand, state, rules, forced)

    async def close_windows(self, rules_of: Callable[[dict], curation.VoteRules]) -> list[dict]:
        """Decide every voting candidate whose window has ended; returns the changed ones."""
        changed = []
        for cand in await self.store.candidates(states=["voting"]):
            async with self.lock(cand["id"]):
                state = await self.store.member_reactions(cand["id"])
                cand, did = await self._decide(await self.store.get_candidate(cand["id"]), state, rules_of(cand), None)
            if did:
                changed.append(cand)
        return changed

    async def queue_position(self, cand: dict) -> int | None:
        """1-based place among the persona's approved candidates (best score, then oldest)."""
        if cand["state"] != "approved":
            return None
        rows = await self.store.fetchall(
            "SELECT id FROM candidates WHERE persona = ? AND state = 'approved' "
            "ORDER BY queue_rank IS NULL, queue_rank, score DESC, id",
            (cand["persona"],),
        )
        ids = [r[0] for r in rows]
        return ids.index(cand["id"]) + 1 if cand["id"] in ids else None
