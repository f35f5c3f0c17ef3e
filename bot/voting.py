"""The vote rules for candidates, as plain functions (no Discord in here).

A member's vote is the net of their approve and reject reactions on the
candidate's message (+1, 0 or -1: reacting with both cancels out). The score
is the sum over eligible members. Eligibility: bots (the bot itself included)
never count; when the persona has a voter role, only members with it count.

Decisions, for a candidate still voting (defaults in ``VoteRules``):

- a curator's ✅ / ❌ decides at once (``forced``);
- net >= ``approve_at`` -> approved; net <= ``reject_at`` -> rejected;
- once ``window_hours`` have passed since voting started: net >=
  ``approve_after_window_at`` -> approved, else (net above ``reject_at``) expired;
- otherwise still voting.

``decide`` is a pure function of (net, start, now, forced), so the outcome is
the same whether the votes arrived live or were recounted at start-up from the
message's reactions (``state_from_reactions``). Decisions are final:
``next_state`` changes nothing once a candidate has left "voting", except that
a curator may still force a decision on a candidate that is approved (pull it
before it is posted), rejected or expired (rescue it). Candidates in
``posting``/``posted``/``failed`` never change here.

Typical reaction handler::

    if not counts(member.bot, role_ids, rules): return
    forced = forced_decision(emoji, may_force=..., rules=rules)
    net = apply_reaction(state, member.id, emoji, added, rules)
    new = next_state(cand.state, net, rules, voting_started_at=cand.started, now=now, forced=forced)
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Mapping, MutableMapping

VOTING, APPROVED, REJECTED, EXPIRED = "voting", "approved", "rejected", "expired"
DECISIONS = (VOTING, APPROVED, REJECTED, EXPIRED)
#: States a curator's forced decision may still change.
FORCEABLE_STATES = (VOTING, APPROVED, REJECTED, EXPIRED)
FORCE_EMOJIS = ("✅", "❌")  # a curator's approve / reject at once (the config keeps vote emoji apart from them)

_FORCE_ALIASES = {
    "approve": APPROVED, "approved": APPROVED, "+": APPROVED,
    "reject": REJECTED, "rejected": REJECTED, "-": REJECTED,
}


@dataclass(frozen=True)
class VoteRules:
    approve_at: int = 3
    reject_at: int = -2
    window_hours: float = 24
    approve_after_window_at: int = 1
    voter_role_id: int | None = None
    approve_emoji: str = "👍"
    reject_emoji: str = "👎"
    force_approve_emoji: str = FORCE_EMOJIS[0]
    force_reject_emoji: str = FORCE_EMOJIS[1]
    #: Members with this role (or Manage Messages, checked by the caller) may force.
    curator_role_id: int | None = None

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> None:
            raise ValueError(f"vote rules: `{field}` {why}")

        for f in ("approve_at", "reject_at", "approve_after_window_at"):
            if not isinstance(getattr(self, f), int) or isinstance(getattr(self, f), bool):
                bad(f, f"must be a whole number, got {getattr(self, f)!r}")
        if self.approve_at < 1:
            bad("approve_at", f"must be at least 1 (a candidate starts at 0), got {self.approve_at}")
        if self.reject_at > -1:
            bad("reject_at", f"must be at most -1 (a candidate starts at 0), got {self.reject_at}")
        if not self.approve_after_window_at > self.reject_at:
            bad("approve_after_window_at", f"must be above reject_at ({self.reject_at}), got {self.approve_after_window_at}")
        if not isinstance(self.window_hours, (int, float)) or not self.window_hours > 0:
            bad("window_hours", f"must be a positive number of hours, got {self.window_hours!r}")
        emojis = [self.approve_emoji, self.reject_emoji, self.force_approve_emoji, self.force_reject_emoji]
        if any(not isinstance(e, str) or not e for e in emojis) or len(set(emojis)) != 4:
            bad("approve_emoji/reject_emoji/force_approve_emoji/force_reject_emoji", "must be four different emoji")

    @property
    def vote_emojis(self) -> tuple[str, str]:
        return (self.approve_emoji, self.reject_emoji)

    @property
    def window_seconds(self) -> float:
        return float(self.window_hours) * 3600.0


def member_vote(reactions: Collection[str], rules: VoteRules) -> int:
    """One member's vote from the set of emoji they reacted with: +1, 0 or -1."""
    return int(rules.approve_emoji in reactions) - int(rules.reject_emoji in reactions)


def tally(votes: Mapping[int, int]) -> int:
    """The net score: the sum of the members' votes."""
    return sum(votes.values())


def counts(member_is_bot: bool, member_roles: Iterable[int], rules: VoteRules) -> bool:
    """Whether a member's reactions count: never a bot; the voter role when one is set."""
    if member_is_bot:
        return False
    if rules.voter_role_id is None:
        return True
    return rules.voter_role_id in set(member_roles)


def may_force(member_is_bot: bool, member_roles: Iterable[int], rules: VoteRules, *, manage_messages: bool = False) -> bool:
    """Whether a member may approve/reject at once: curator role or Manage Messages, never a bot."""
    if member_is_bot:
        return False
    return manage_messages or (rules.curator_role_id is not None and rules.curator_role_id in set(member_roles))


def forced_decision(emoji: str, *, may_force: bool, rules: VoteRules, added: bool = True) -> str | None:
    """``"approved"``/``"rejected"`` when a member allowed to force adds ✅/❌; else ``None``.

    Removing a force reaction undoes nothing (a decision is final).
    """
    if not (may_force and added):
        return None
    if emoji == rules.force_approve_emoji:
        return APPROVED
    if emoji == rules.force_reject_emoji:
        return REJECTED
    return None


def _seconds(t: float | int | _dt.datetime) -> float:
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            raise ValueError("datetimes given to decide() must be timezone-aware")
        return t.timestamp()
    return float(t)


def window_ends_at(voting_started_at: float | _dt.datetime, rules: VoteRules) -> float:
    """Epoch seconds at which the voting window closes."""
    return _seconds(voting_started_at) + rules.window_seconds


def decide(net: int, rules: VoteRules, *, voting_started_at: float | _dt.datetime,
           now: float | _dt.datetime, forced: str | None = None) -> str:
    """``"voting"`` | ``"approved"`` | ``"rejected"`` | ``"expired"``.

    Times are epoch seconds or timezone-aware datetimes. The window is closed
    from ``voting_started_at + window_hours`` on (inclusive). ``forced``:
    ``"approved"``/``"approve"`` or ``"rejected"``/``"reject"`` (or the
    force emoji) wins over everything.
    """
    if forced is not None:
        f = _FORCE_ALIASES.get(forced)
        if f is None:
            f = {rules.force_approve_emoji: APPROVED, rules.force_reject_emoji: REJECTED}.get(forced)
        if f is None:
            raise ValueError(f"forced must be 'approved' or 'rejected', got {forced!r}")
        return f
    if net >= rules.approve_at:
        return APPROVED
    if net <= rules.reject_at:
        return REJECTED
    if _seconds(now) >= window_ends_at(voting_started_at, rules):
        return APPROVED if net >= rules.approve_after_window_at else EXPIRED
    return VOTING


def next_state(current: str, net: int, rules: VoteRules, *, voting_started_at: float | _dt.datetime,
               now: float | _dt.datetime, forced: str | None = None) -> str:
    """The candidate's state after an event. Only a voting candidate is decided
    by votes and time; a forced decision also applies to approved, rejected and
    expired ones; any other state (posting, posted, failed) is kept."""
    if forced is not None and current in FORCEABLE_STATES:
        return decide(net, rules, voting_started_at=voting_started_at, now=now, forced=forced)
    if current != VOTING:
        return current
    return decide(net, rules, voting_started_at=voting_started_at, now=now)


# --------------------------------------------------------------------- state
# ReactionState: member id -> the vote emoji that member currently has on the message.
ReactionState = MutableMapping[int, set]


def apply_reaction(state: ReactionState, member: int, emoji: str, added: bool, rules: VoteRules) -> int:
    """Record one raw reaction add/remove of an eligible member and return the new net score.

    Only the approve and reject emoji are tracked; anything else leaves the
    state as it is. Adding twice or removing what is not there is harmless
    (Discord's reaction events are idempotent the same way).
    """
    change_reaction(state, member, emoji, added, rules)
    return net_score(state, rules)


def change_reaction(state: ReactionState, member: int, emoji: str, added: bool, rules: VoteRules) -> int:
    """apply_reaction without counting every member again: returns how much the net
    score moved (-2..2), so a burst of reactions costs one step each."""
    if emoji not in rules.vote_emojis:
        return 0
    before = member_vote(state.get(member, ()), rules)
    if added:
        state.setdefault(member, set()).add(emoji)
    else:
        current = state.get(member)
        if current is not None:
            current.discard(emoji)
            if not current:
                del state[member]
    return member_vote(state.get(member, ()), rules) - before


def votes_from_state(state: Mapping[int, Collection[str]], rules: VoteRules) -> dict[int, int]:
    """member -> +1/-1 for every member whose vote is not 0 (what the votes table stores)."""
    out = {}
    for member, emojis in state.items():
        v = member_vote(emojis, rules)
        if v:
            out[member] = v
    return out


def net_score(state: Mapping[int, Collection[str]], rules: VoteRules) -> int:
    return tally(votes_from_state(state, rules))


def state_from_reactions(users_by_emoji: Mapping[str, Iterable[int]], rules: VoteRules,
                         eligible: Callable[[int], bool] | None = None) -> dict[int, set]:
    """Rebuild the state from a message's reactions (emoji -> ids of the users
    who reacted), e.g. at start-up. ``eligible(member_id) -> bool`` filters out
    bots and members without the voter role."""
    state: dict[int, set] = {}
    for emoji, users in users_by_emoji.items():
        if emoji not in rules.vote_emojis:
            continue
        for user in users:
            if eligible is None or eligible(user):
                state.setdefault(user, set()).add(emoji)
    return state
