"""Reaction votes: events per second the bot turns into exact tallies.

The local Discord stand-in and the real ParodyBot run in this process (as in
tests/conftest.py). The bot posts 50 candidates through its own curation
service (pre-reacted 👍 👎), then 50 members fire N random reaction events
(each one effective: a member adds a 👍/👎 they do not have on a candidate,
or removes one they have) as fast as the stand-in dispatches them. Ours: from
the first event until every candidate's score in the bot's SQLite equals the
score computed here from the events (and the stored reactions equal the
members' reactions), N / seconds. Lost: candidates whose score still differs
after the bot went quiet.

Anchor, same run, same stand-in, the very same stream from the same start
(the members' reactions are taken back first, untimed): a bare discord.py
Client that only counts the raw reaction events; the transport's ceiling
here. The ratio (ours / anchor) is the share of the transport's rate that
exact tallying keeps.

By default the persona has the default vote rules, so candidates get decided
during the burst and the bot edits their messages as it does for real;
``--no-decisions`` sets thresholds no stream reaches (tallies only).

A round is a second or so of work, and other work on a shared machine comes
and goes: the anchor alone has moved from 6,000 to 11,000 events/s between
single runs. So the bench runs ``--rounds`` rounds, each in a fresh process
(ours, then the anchor, each after a full garbage collection), and each side
keeps its best round: other work only ever slows a round down.

    python bench/votes.py [--rounds 5] [--events 6000] [--candidates 50] [--members 50] [--no-decisions]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time

import _common  # noqa: F401  (puts the repo on sys.path)
import discord
from _common import joke_corpus, ratio_line, run_child, standin_discord_section

from core.config import config_from
from discord_standin import DiscordStandin

UP, DOWN = "👍", "👎"
TIMEOUT_S = 90  # a run that does not settle by then reports what was lost


def make_stream(rng: random.Random, present: set, n: int, members: int, candidates: int) -> list[tuple]:
    """n effective events (member, candidate, emoji, added); updates ``present`` to the end state."""
    out = []
    for _ in range(n):
        key = (rng.randrange(members), rng.randrange(candidates), rng.choice((UP, DOWN)))
        added = key not in present
        (present.add if added else present.discard)(key)
        out.append((*key, added))
    return out


def expected_scores(present: set, candidates: int) -> list[int]:
    score = [0] * candidates
    for _, c, emoji in present:
        score[c] += 1 if emoji == UP else -1
    return score


async def fire(standin, channel, members, message_ids, stream) -> float:
    """Send the stream through the stand-in; returns when the last event was dispatched."""
    for m, c, emoji, added in stream:
        if added:
            await standin.react(members[m], channel, message_ids[c], emoji)
        else:
            await standin.unreact(members[m], channel, message_ids[c], emoji)
    return time.perf_counter()


class Counter(discord.Client):
    """The anchor: a bare client that counts raw reaction events and nothing else."""

    def __init__(self):
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_reactions = True
        super().__init__(intents=intents, guild_ready_timeout=0.05)
        self.count = 0
        self.target = -1
        self.done = asyncio.Event()

    def _seen(self) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set()

    async def on_raw_reaction_add(self, payload) -> None:
        self._seen()

    async def on_raw_reaction_remove(self, payload) -> None:
        self._seen()


async def main_async(args) -> None:
    from bot.client import ParodyBot

    rng = random.Random(7)
    standin = DiscordStandin()
    await standin.start()
    guild = standin.add_guild("Friends")
    curation = standin.add_channel(guild, "curation")
    members = [standin.add_member(guild, f"friend{i:02d}") for i in range(args.members)]

    tmp = tempfile.TemporaryDirectory(prefix="bench-votes-")
    os.environ["PARODYBOT_DATA_DIR"] = tmp.name
    cfg = config_from({"discord": standin_discord_section(standin, [guild.id])})
    bot = ParodyBot(cfg, guild_ready_timeout=0.05)
    task = asyncio.create_task(bot.start(standin.bot_token))
    anchor_task = None
    try:
        await asyncio.wait_for(bot.ready_event.wait(), 20)
        rules = {} if args.decisions else {"approve_at": 10**6, "reject_at": -10**6}
        dril = await bot.services.store.create_persona(guild.id, "dril", curation_channel_id=curation.id, rules=rules)
        cog = bot.get_cog("Curation")
        # The set-up is untimed: posting and pre-reacting 50 candidates under
        # Discord's rate limits takes about a minute. They are back on for the burst.
        standin.ratelimits.enabled = False
        texts = [j[:280] for j in joke_corpus()[: args.candidates]]
        await cog.service.add(dril["key"], None, [(t, {}) for t in texts], await cog.rules_of_persona(dril["key"]))
        await cog.post_unsent(dril["key"])

        def posted():
            msgs = [m for m in standin.messages(curation) if m.get("embeds")]
            ok = len(msgs) == args.candidates and all(sum(r["me"] for r in m["reactions"]) == 2 for m in msgs)
            return msgs if ok else None

        msgs = await standin.wait_for(posted, 30, what="the candidates posted and pre-reacted")
        standin.ratelimits.enabled = True
        rows = await bot.services.store.fetchall("SELECT id, message_id FROM candidates ORDER BY id")
        message_ids = [r[1] for r in rows]
        assert sorted(message_ids) == sorted(int(m["id"]) for m in msgs)
        print(f"{args.candidates} candidates posted, {args.members} members, "
              f"rules: {'default (3 / -2: candidates get decided and edited)' if args.decisions else 'tallies only'}")

        # --- ours ---------------------------------------------------------
        present: set = set()
        stream = make_stream(rng, present, args.events, args.members, args.candidates)
        want = expected_scores(present, args.candidates)
        want_rows = {(message_ids[c], members[m].user.id, e) for m, c, e in present}
        adds = sum(1 for e in stream if e[3])

        async def scores() -> list[int]:
            got = {r[0]: r[1] for r in await bot.services.store.fetchall("SELECT message_id, score FROM candidates")}
            return [got[mid] for mid in message_ids]

        async def reactions() -> set:
            return {tuple(r) for r in await bot.services.store.fetchall(
                "SELECT c.message_id, r.member_id, r.emoji FROM reactions r JOIN candidates c ON c.id = r.candidate_id")}

        gc.collect()
        t0 = time.perf_counter()
        firing = asyncio.create_task(fire(standin, curation, members, message_ids, stream))
        deadline = t0 + TIMEOUT_S
        t_end = None
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
            if firing.done() and await scores() == want and await reactions() == want_rows:
                t_end = time.perf_counter()
                break
        fired_at = await firing
        await asyncio.sleep(0.5)  # anything still in flight would change the tallies now
        got = await scores()
        lost = sum(1 for a, b in zip(got, want) if a != b)
        row_diff = len(await reactions() ^ want_rows)
        seconds = (t_end or time.perf_counter()) - t0
        ours = args.events / seconds
        decided = (await bot.services.store.fetchone("SELECT COUNT(*) FROM candidates WHERE state != 'voting'"))[0]
        print(f"ours: {args.events} events ({adds} adds, {args.events - adds} removes), stand-in dispatched them in "
              f"{fired_at - t0:.2f} s; tallies exact after {seconds:.2f} s -> {ours:.0f} events/s; "
              f"lost {lost} (candidates whose score differs), reaction rows differing {row_diff}; "
              f"candidates decided meanwhile: {decided}")
        if t_end is None:
            print(f"ours: tallies were NOT exact within {TIMEOUT_S} s")

        await bot.close()
        await asyncio.wait_for(task, 10)

        # --- anchor ---------------------------------------------------------
        for m, c, emoji in present:
            await standin.unreact(members[m], curation, message_ids[c], emoji)
        client = Counter()
        with standin.patch_discord():
            await client.login(standin.bot_token)
            anchor_task = asyncio.create_task(client.connect(reconnect=False))
            await asyncio.wait_for(client.wait_until_ready(), 20)
            # The very stream ours got, from the same start: the members' reactions
            # taken back first (nobody is connected to see that).
            stream2 = stream
            client.target = len(stream2)
            gc.collect()
            t0 = time.perf_counter()
            firing = asyncio.create_task(fire(standin, curation, members, message_ids, stream2))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(client.done.wait(), TIMEOUT_S)
            t1 = time.perf_counter()
            fired_at = await firing
        anchor = client.count / (t1 - t0)
        print(f"anchor (bare discord.py client counting raw reaction events): {client.count}/{len(stream2)} events "
              f"received, stand-in dispatched them in {fired_at - t0:.2f} s, all received after {t1 - t0:.2f} s "
              f"-> {anchor:.0f} events/s")
        await client.close()
        print("RESULT " + json.dumps({"ours": ours, "anchor": anchor, "lost": lost, "row_diff": row_diff,
                                      "exact": t_end is not None}), flush=True)
    finally:
        if not bot.is_closed():
            await bot.close()
        for t in (task, anchor_task):
            if t is not None and not t.done():
                t.cancel()
                with contextlib.suppress(BaseException):
                    await t
        await standin.stop()
        tmp.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--events", type=int, default=6000)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--members", type=int, default=50)
    ap.add_argument("--no-decisions", dest="decisions", action="store_false")
    ap.add_argument("--round", action="store_true", help="(internal) one round in this process")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR if args.round else logging.WARNING)
    if args.round:
        asyncio.run(main_async(args))
        return
    child = [sys.executable, __file__, "--round", "--events", str(args.events), "--candidates",
             str(args.candidates), "--members", str(args.members)] + ([] if args.decisions else ["--no-decisions"])
    results = []
    for i in range(args.rounds):
        result, lines = run_child(child, f"round {i + 1}")
        if i == 0:
            print(lines[0])  # what the rounds are
        print(f"round {i + 1}: " + "; ".join(lines[1:]))
        results.append(result)
    ours, anchor = max(r["ours"] for r in results), max(r["anchor"] for r in results)
    lost, rows = sum(r["lost"] for r in results), sum(r["row_diff"] for r in results)
    per_round = ", ".join(f"{r['ours']:.0f}/{r['anchor']:.0f}" for r in results)
    print(f"per round (ours / anchor events/s): {per_round}; "
          f"median of the rounds' ratios {statistics.median(r['ours'] / r['anchor'] for r in results):.3f}")
    print(f"events {args.events} x {args.rounds} rounds, best round: ours {ours:.0f} events/s, anchor {anchor:.0f} "
          f"events/s; lost {lost}, reaction rows differing {rows}; tallies exact in {sum(r['exact'] for r in results)}/{len(results)} rounds")
    print(ratio_line("votes", ours, anchor, "events/s", ours / anchor))


if __name__ == "__main__":
    main()
