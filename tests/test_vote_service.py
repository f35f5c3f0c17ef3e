"""The vote service on a real SQLite store, no Discord: what it keeps in memory
between batches (each candidate's reactions and net) always agrees with a
recount of what it stored."""
from __future__ import annotations

import random

from bot import voting
from bot.candidates import CandidateService, ReactionEvent
from bot.store import Store

GUILD = 1_100_000_000_000_000_000  # ids the size of Discord's snowflakes
MEMBERS = [GUILD + 17 + i for i in range(8)]


async def open_service(tmp_path, n: int = 3):
    store = await Store.open(tmp_path / "bot.sqlite3")
    persona = await store.create_persona(GUILD, "dril")
    ids = await store.add_candidates(persona["key"], None, [(f"post {i}", {}) for i in range(n)],
                                     "2099-01-01T00:00:00.000000Z", created_at="2026-01-01T00:00:00.000000Z")
    service = CandidateService(store)
    rules = voting.VoteRules(approve_at=100, reject_at=-100)
    for i, cid in enumerate(ids):
        await store.claim_delivery(cid, 5, "2026-01-01T00:00:00.000000Z")
        await service.set_message(cid, GUILD + 1000 + i, rules)
    return store, service, ids


async def recount(store, cid, rules) -> tuple[int, int, dict]:
    """(stored score, net of the stored reactions, stored votes)."""
    score = (await store.fetchone("SELECT score FROM candidates WHERE id = ?", (cid,)))[0]
    votes = {r[0]: r[1] for r in await store.fetchall("SELECT member_id, value FROM votes WHERE candidate_id = ?", (cid,))}
    return score, voting.net_score(await store.member_reactions(cid), rules), votes


async def test_batches_of_any_size_store_what_a_recount_of_the_reactions_gives(tmp_path):
    store, service, ids = await open_service(tmp_path)
    rules = voting.VoteRules(approve_at=100, reject_at=-100)

    async def rules_of(_key):
        return rules

    rng = random.Random(3)
    present: set = set()
    events = []
    for _ in range(400):
        key = (rng.randrange(len(MEMBERS)), rng.randrange(len(ids)), rng.choice("👍👎✨"))
        added = key not in present
        (present.add if added else present.discard)(key)
        m, c, emoji = key
        events.append(ReactionEvent(GUILD + 1000 + c, GUILD, MEMBERS[m], emoji, added, member_roles=()))
    at = 0
    for size in (1, 2, 7, 50, 340):
        await service.apply(events[at:at + size], rules_of)
        at += size
    assert at == len(events)
    for c, cid in enumerate(ids):
        want = {}
        for m, cc, emoji in present:
            if cc == c and emoji != "✨":
                want[MEMBERS[m]] = want.get(MEMBERS[m], 0) + (1 if emoji == "👍" else -1)
        want = {k: v for k, v in want.items() if v}
        score, recounted, votes = await recount(store, cid, rules)
        assert votes == want
        assert score == recounted == sum(want.values())
    await store.close()


async def test_when_the_rules_change_the_next_vote_counts_every_reaction_again(tmp_path):
    store, service, (cid, *_) = await open_service(tmp_path)
    thumbs = voting.VoteRules(approve_at=100, reject_at=-100)
    fire = voting.VoteRules(approve_at=100, reject_at=-100, approve_emoji="🔥")
    rules = thumbs

    async def rules_of(_key):
        return rules

    msg = GUILD + 1000
    await service.apply([ReactionEvent(msg, GUILD, MEMBERS[0], "👍", True, member_roles=()),
                         ReactionEvent(msg, GUILD, MEMBERS[1], "👍", True, member_roles=())], rules_of)
    assert (await recount(store, cid, thumbs))[0] == 2
    rules = fire  # the persona now approves with 🔥: the 👍 already there no longer count
    ((cand, _),) = await service.apply([ReactionEvent(msg, GUILD, MEMBERS[2], "🔥", True, member_roles=())], rules_of)
    assert cand["score"] == 1
    assert (await recount(store, cid, fire))[0] == 1
    await store.close()


async def test_a_vote_never_undoes_a_change_another_process_made(tmp_path):
    """`parodybot post-now` posts from another process while the bot counts votes:
    the candidate stays posted, whatever the bot last read of it."""
    store, service, (cid, *_) = await open_service(tmp_path)
    rules = voting.VoteRules(approve_at=2, reject_at=-2)

    async def rules_of(_key):
        return rules

    msg = GUILD + 1000
    await service.apply([ReactionEvent(msg, GUILD, MEMBERS[0], "👍", True, member_roles=())], rules_of)
    other = await Store.open(tmp_path / "bot.sqlite3")  # the CLI's own connection
    await other.update_candidate(cid, state="posted", decided_at="2026-01-02T00:00:00.000000Z")
    await other.close()
    await service.apply([ReactionEvent(msg, GUILD, MEMBERS[1], "👍", True, member_roles=())], rules_of)
    row = await store.fetchone("SELECT state, score, decided_at FROM candidates WHERE id = ?", (cid,))
    assert tuple(row) == ("posted", 2, "2026-01-02T00:00:00.000000Z")
    await store.close()
