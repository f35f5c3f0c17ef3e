"""A store at scale: /queue show, /stats and a vote on 100,000 candidates and 1,000,000 votes.

Two SQLite stores made by the bot's own migrations, side by side in one run:

- **big**: one guild, 4 personas, 100,000 candidates (5% approved and waiting,
  5% voting, the rest decided or posted), 1,000,000 votes from 500 members
  (10 on each candidate), with their reactions;
- **anchor**: the same schema and personas, a dozen candidates, no votes.

On each, the code the commands run, through the bot's services on aiosqlite:
``/queue show`` (the posting queue of one persona, rendered as the reply),
``/stats`` (the guild's four personas), and **a vote** (one raw reaction event
on a candidate in its vote, applied and written: the bot's reaction path
without Discord). Each is timed ``--runs`` times; the lines give the median
and p99 in ms, and the ratio big / anchor. The goal: every p99 under 50 ms.

    python bench/store.py [--candidates 100000] [--votes 1000000] [--runs 200]
"""
from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repo on sys.path)
from _common import joke_corpus, median, percentile, ratio_line

from bot.candidates import CandidateService, ReactionEvent, rules_for
from bot.posting import PostingService
from bot.services import stats
from bot.store import Store
from cogs.posting import QUEUE_SHOWN, render_queue
from core.config import Config, CurationConfig

GUILD = 1111
PERSONAS = ("dril", "wint", "jokes", "cats")
MEMBERS = 500
GOAL_MS = 50.0


async def build(path: Path, candidates: int, votes: int, rng: random.Random) -> None:
    store = await Store.open(path)
    for name in PERSONAS:
        await store.create_persona(GUILD, name, curation_channel_id=2222)
    keys = [p["key"] for p in await store.list_personas(GUILD)]
    await store.close()
    jokes = joke_corpus()
    per_candidate = votes // candidates if candidates else 0
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    with db:
        rows = []
        for i in range(1, candidates + 1):
            roll = rng.random() if i > 2 * len(keys) else 0.07  # every persona has candidates in their vote
            state = ("approved" if roll < 0.05 else "voting" if roll < 0.10 else "posted" if roll < 0.40
                     else "rejected" if roll < 0.60 else "expired")
            rows.append((i, keys[i % len(keys)], jokes[i % len(jokes)][:280], state, rng.randint(-3, 8),
                         9_000_000 + i, "2026-11-01T10:00:00.000Z",
                         "2026-12-31T10:00:00.000Z" if state == "voting" else None))
        db.executemany("INSERT INTO candidates(id, persona, text, state, score, message_id, created_at, voting_ends_at)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        vote_rows, reaction_rows = [], []
        for cand in range(1, candidates + 1):
            for member in rng.sample(range(MEMBERS), per_candidate):
                value = 1 if rng.random() < 0.7 else -1
                vote_rows.append((cand, 10_000 + member, value))
                reaction_rows.append((cand, 10_000 + member, "👍" if value > 0 else "👎"))
            if len(vote_rows) > 200_000:
                db.executemany("INSERT INTO votes(candidate_id, member_id, value) VALUES (?, ?, ?)", vote_rows)
                db.executemany("INSERT INTO reactions VALUES (?, ?, ?)", reaction_rows)
                vote_rows, reaction_rows = [], []
        db.executemany("INSERT INTO votes(candidate_id, member_id, value) VALUES (?, ?, ?)", vote_rows)
        db.executemany("INSERT INTO reactions VALUES (?, ?, ?)", reaction_rows)
    db.execute("ANALYZE")
    db.close()


async def measure(path: Path, runs: int, rng: random.Random) -> dict[str, list[float]]:
    store = await Store.open(path)
    try:
        personas = await store.list_personas(GUILD)
        dril = personas[0]
        service = CandidateService(store)
        posting = PostingService(store, Config())
        rules = rules_for(dril, CurationConfig(approve_at=10**6, reject_at=-10**6))  # a vote never decides here

        async def rules_of(_persona):
            return rules

        voting = [r[0] for r in await store.fetchall(
            "SELECT message_id FROM candidates WHERE state = 'voting' AND persona = ? LIMIT 50", (dril["key"],))]
        timings: dict[str, list[float]] = {"/queue show": [], "/stats": [], "a vote": []}
        for i in range(runs):
            t0 = time.perf_counter()
            render_queue("dril", *await posting.queue_page(dril["key"], QUEUE_SHOWN))
            timings["/queue show"].append((time.perf_counter() - t0) * 1000)

            t0 = time.perf_counter()
            await stats(store, personas)
            timings["/stats"].append((time.perf_counter() - t0) * 1000)

            event = ReactionEvent(message_id=voting[i % len(voting)], guild_id=GUILD, member_id=20_000 + i,
                                  emoji=rng.choice(("👍", "👎")), added=True)
            t0 = time.perf_counter()
            await service.apply([event], rules_of)
            timings["a vote"].append((time.perf_counter() - t0) * 1000)
        return timings
    finally:
        await store.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=100_000)
    ap.add_argument("--votes", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big, empty = Path(tmp) / "big.sqlite3", Path(tmp) / "empty.sqlite3"
        t0 = time.perf_counter()
        await build(big, args.candidates, args.votes, random.Random(1))
        await build(empty, 12, 0, random.Random(1))
        size = big.stat().st_size / 2**20
        print(f"built: {args.candidates:,} candidates, {args.votes:,} votes ({size:.0f} MB) in "
              f"{time.perf_counter() - t0:.1f} s")
        ours = await measure(big, args.runs, random.Random(2))
        anchor = await measure(empty, args.runs, random.Random(2))
    worst = 0.0
    for name in ours:
        o99, a99 = percentile(ours[name], 99), percentile(anchor[name], 99)
        worst = max(worst, o99)
        print(f"{name}: big median {median(ours[name]):.2f} ms, p99 {o99:.2f} ms; "
              f"empty median {median(anchor[name]):.2f} ms, p99 {a99:.2f} ms")
        print(ratio_line(f"store {name} (p99)", o99, a99, "ms", o99 / a99))
    print(f"goal: every p99 under {GOAL_MS:g} ms on the big store: {'met' if worst < GOAL_MS else 'NOT met'} "
          f"(worst {worst:.2f} ms)")


if __name__ == "__main__":
    asyncio.run(main())
