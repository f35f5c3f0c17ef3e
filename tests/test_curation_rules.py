"""Vote rules: tallies, thresholds, the voting window, eligibility, forcing."""
import datetime as dt

import pytest
from hypothesis import given, settings, strategies as st

from bot.voting import (
    APPROVED, EXPIRED, REJECTED, VOTING, VoteRules, apply_reaction, change_reaction, counts, decide, forced_decision,
    may_force, member_vote, net_score, next_state, state_from_reactions, tally, votes_from_state,
)

RULES = VoteRules()
UP, DOWN, FORCE_OK, FORCE_NO = "👍", "👎", "✅", "❌"
H = 3600.0
T0 = 1_700_000_000.0

# --------------------------------------------------------------- examples

def test_member_vote_is_net_of_their_reactions():
    assert member_vote({UP}, RULES) == 1
    assert member_vote({DOWN}, RULES) == -1
    assert member_vote({UP, DOWN}, RULES) == 0
    assert member_vote(set(), RULES) == 0
    assert member_vote({"🔥", FORCE_OK}, RULES) == 0


def test_tally_sums_votes():
    assert tally({1: 1, 2: 1, 3: -1}) == 1
    assert tally({}) == 0


def test_default_thresholds():
    d = lambda net, now=T0: decide(net, RULES, voting_started_at=T0, now=now)  # noqa: E731
    assert d(3) == APPROVED and d(5) == APPROVED
    assert d(2) == VOTING and d(0) == VOTING and d(-1) == VOTING
    assert d(-2) == REJECTED and d(-4) == REJECTED


def test_window_expiry():
    end = T0 + 24 * H
    assert decide(0, RULES, voting_started_at=T0, now=end - 1) == VOTING
    assert decide(0, RULES, voting_started_at=T0, now=end) == EXPIRED
    assert decide(1, RULES, voting_started_at=T0, now=end) == APPROVED  # approve_after_window_at
    assert decide(2, RULES, voting_started_at=T0, now=end + 1) == APPROVED
    assert decide(-1, RULES, voting_started_at=T0, now=end + 100 * H) == EXPIRED
    assert decide(-2, RULES, voting_started_at=T0, now=end) == REJECTED


def test_decide_accepts_aware_datetimes_only():
    start = dt.datetime(2025, 1, 1, 9, tzinfo=dt.timezone.utc)
    assert decide(0, RULES, voting_started_at=start, now=start + dt.timedelta(hours=23)) == VOTING
    assert decide(0, RULES, voting_started_at=start, now=start + dt.timedelta(hours=24)) == EXPIRED
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(0, RULES, voting_started_at=dt.datetime(2025, 1, 1), now=start)


def test_forced_decisions_win():
    for forced in ("approved", "approve", FORCE_OK):
        assert decide(-5, RULES, voting_started_at=T0, now=T0, forced=forced) == APPROVED
    for forced in ("rejected", "reject", FORCE_NO):
        assert decide(5, RULES, voting_started_at=T0, now=T0, forced=forced) == REJECTED
    with pytest.raises(ValueError):
        decide(0, RULES, voting_started_at=T0, now=T0, forced="maybe")


def test_next_state_final_except_forcing():
    kw = dict(voting_started_at=T0, now=T0)
    assert next_state(VOTING, 3, RULES, **kw) == APPROVED
    assert next_state(APPROVED, -5, RULES, **kw) == APPROVED  # votes after a decision change nothing
    assert next_state(REJECTED, 5, RULES, **kw) == REJECTED
    assert next_state(EXPIRED, 5, RULES, **kw) == EXPIRED
    assert next_state(EXPIRED, 0, RULES, forced=APPROVED, **kw) == APPROVED  # a curator rescues it
    assert next_state(APPROVED, 5, RULES, forced=REJECTED, **kw) == REJECTED  # a curator pulls it
    for done in ("posting", "posted", "failed"):
        assert next_state(done, -9, RULES, forced=REJECTED, **kw) == done


def test_counts_bots_never_voter_role_when_set():
    assert counts(False, [], RULES)
    assert not counts(True, [], RULES)
    role = VoteRules(voter_role_id=42)
    assert counts(False, [1, 42], role)
    assert not counts(False, [1, 2], role)
    assert not counts(True, [42], role)


def test_forcing_needs_curator_role_or_manage_messages():
    rules = VoteRules(curator_role_id=7)
    assert may_force(False, [7], rules)
    assert may_force(False, [], rules, manage_messages=True)
    assert not may_force(False, [1], rules)
    assert not may_force(True, [7], rules, manage_messages=True)
    assert not may_force(False, [7], RULES)  # no curator role configured
    assert forced_decision(FORCE_OK, may_force=True, rules=rules) == APPROVED
    assert forced_decision(FORCE_NO, may_force=True, rules=rules) == REJECTED
    assert forced_decision(FORCE_OK, may_force=False, rules=rules) is None
    assert forced_decision(FORCE_OK, may_force=True, rules=rules, added=False) is None
    assert forced_decision(UP, may_force=True, rules=rules) is None


def test_apply_reaction_handles_redundant_events():
    state = {}
    assert apply_reaction(state, 1, UP, True, RULES) == 1
    assert apply_reaction(state, 1, UP, True, RULES) == 1  # duplicate add
    assert apply_reaction(state, 1, DOWN, True, RULES) == 0  # both: cancels out
    assert apply_reaction(state, 1, UP, False, RULES) == -1
    assert apply_reaction(state, 2, DOWN, False, RULES) == -1  # removing what is not there
    assert apply_reaction(state, 2, "🔥", True, RULES) == -1  # other emoji ignored
    assert apply_reaction(state, 1, DOWN, False, RULES) == 0
    assert state == {}
    assert votes_from_state({1: {UP}, 2: {UP, DOWN}, 3: {DOWN}}, RULES) == {1: 1, 3: -1}


def test_custom_emoji_and_rules():
    rules = VoteRules(approve_at=1, reject_at=-1, approve_emoji="<:yes:1>", reject_emoji="<:no:2>")
    state = {}
    assert apply_reaction(state, 9, "<:yes:1>", True, rules) == 1
    assert decide(1, rules, voting_started_at=T0, now=T0) == APPROVED
    assert apply_reaction(state, 9, UP, True, rules) == 1  # the default emoji means nothing here


@pytest.mark.parametrize("kwargs, field", [
    (dict(approve_at=0), "approve_at"),
    (dict(reject_at=0), "reject_at"),
    (dict(window_hours=0), "window_hours"),
    (dict(approve_after_window_at=-2), "approve_after_window_at"),
    (dict(reject_emoji="👍"), "emoji"),
    (dict(approve_at=2.5), "approve_at"),
])
def test_bad_rules_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        VoteRules(**kwargs)

# --------------------------------------------------------------- properties

rules_st = st.builds(
    VoteRules,
    approve_at=st.integers(1, 6),
    reject_at=st.integers(-6, -1),
    window_hours=st.floats(0.5, 72),
    approve_after_window_at=st.integers(0, 4),
    voter_role_id=st.one_of(st.none(), st.just(100)),
)
# member: (id, is_bot, has_voter_role)
members_st = st.tuples(st.integers(1, 8), st.booleans(), st.booleans())
events_st = st.lists(
    st.tuples(members_st, st.sampled_from([UP, DOWN, "🔥", FORCE_OK]), st.booleans()), max_size=60)


@settings(max_examples=150, deadline=None)
@given(rules_st, events_st)
def test_incremental_tally_equals_recount_of_final_reactions(rules, events):
    live: dict = {}
    discord: dict[tuple[int, str], tuple[bool, bool]] = {}  # the message's reactions as Discord keeps them
    profile: dict[int, tuple[bool, bool]] = {}
    net = 0
    for (member, is_bot, has_role), emoji, added in events:
        is_bot, has_role = profile.setdefault(member, (is_bot, has_role))  # a member's traits are fixed
        if added:
            discord[(member, emoji)] = (is_bot, has_role)
        else:
            discord.pop((member, emoji), None)
        if counts(is_bot, [100] if has_role else [], rules):
            net += change_reaction(live, member, emoji, added, rules)  # the bot's path: one step per event
    # from scratch, as at a restart
    users_by_emoji: dict[str, list[int]] = {}
    for (member, emoji) in discord:
        users_by_emoji.setdefault(emoji, []).append(member)

    def eligible(m):
        is_bot, has_role = profile[m]
        return counts(is_bot, [100] if has_role else [], rules)

    rebuilt = state_from_reactions(users_by_emoji, rules, eligible)
    expected = tally({m: member_vote({e for (mm, e) in discord if mm == m}, rules)
                      for m in {mm for (mm, _) in discord} if eligible(m)})
    assert net == net_score(live, rules) == expected == net_score(rebuilt, rules)
    assert {m: set(v) for m, v in live.items()} == rebuilt
    # bots never have a say
    assert all(not profile[m][0] for m in live)


@settings(max_examples=150, deadline=None)
@given(rules_st, st.integers(-10, 10), st.floats(0, 200 * H))
def test_decisions_monotone_in_score(rules, net, elapsed):
    kw = dict(voting_started_at=T0, now=T0 + elapsed)
    order = {REJECTED: 0, EXPIRED: 1, VOTING: 1, APPROVED: 2}
    a, b = decide(net, rules, **kw), decide(net + 1, rules, **kw)
    assert order[a] <= order[b]
    if a == APPROVED:
        assert b == APPROVED
    if b == REJECTED:
        assert a == REJECTED
    # thresholds hold whatever the time
    if net >= rules.approve_at:
        assert a == APPROVED
    if net <= rules.reject_at:
        assert a == REJECTED


@settings(max_examples=150, deadline=None)
@given(rules_st, st.integers(-10, 10), st.floats(0, 200 * H), st.floats(0, 200 * H))
def test_time_only_closes_the_window(rules, net, t1, t2):
    early, late = sorted((t1, t2))
    a = decide(net, rules, voting_started_at=T0, now=T0 + early)
    b = decide(net, rules, voting_started_at=T0, now=T0 + late)
    window = rules.window_hours * H
    if a != VOTING:
        assert b == a  # a decision never changes with time alone
    if late >= window:
        assert b != VOTING
        if rules.reject_at < net < rules.approve_at:
            assert b == (APPROVED if net >= rules.approve_after_window_at else EXPIRED)
    else:
        assert b in (VOTING, APPROVED, REJECTED)
        assert b != EXPIRED


@settings(max_examples=200, deadline=None)
@given(rules_st, st.lists(st.tuples(st.integers(1, 5), st.sampled_from([UP, DOWN]), st.booleans()), max_size=40),
       st.floats(0, 100 * H))
def test_same_decision_with_or_without_restart(rules, events, now):
    """Live: apply events one by one, deciding after each; restart: recount and decide once."""
    state: dict = {}
    live_state = VOTING
    for member, emoji, added in events:
        net = apply_reaction(state, member, emoji, added, rules)
        live_state = next_state(live_state, net, rules, voting_started_at=T0, now=T0)
    final = next_state(live_state, net_score(state, rules), rules, voting_started_at=T0, now=T0 + now)
    restart = decide(net_score(state, rules), rules, voting_started_at=T0, now=T0 + now)
    if live_state == VOTING:
        # nothing was decided live: a recount from the final reactions decides the same
        assert final == restart
    else:
        # decided live: final, whatever the reactions did afterwards
        assert final == live_state
