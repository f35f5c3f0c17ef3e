"""Slash-command acknowledgement latency with 100 concurrent commands.

Ours: the bot as it is deployed, ``python -m bot bot --config CFG`` in its
own process (fresh data dir, one persona), pointed at the local Discord
stand-in, which runs in this process, as Discord runs elsewhere. Each round,
100 members' slash commands are dispatched at once: a mix of /status
(database and queue check), /jobs (lists jobs) and /generate (operator
check, persona lookup, then queues a job in the embedded queue; no worker
runs, so the jobs just wait). Every command of ours acknowledges first, with
Discord's "thinking…" (bot.client.acknowledge), and then answers. Latency:
the stand-in's ``ack_delay`` of each interaction, from the INTERACTION_CREATE
dispatch to the bot's callback reaching the stand-in. A round ends when every
member sees an answer and the bot has recorded its /generate jobs; then the
next one starts. How long the last answer of a round took is printed too.
Anchor, same run, same stand-in, same rounds and mix: a bare discord.py bot
(its own process too) with the same three commands answering at once (what
the transport costs). ratio = our p99 / the anchor's p99 (time: lower is
better; the goal is at most 1.5). Discord's own deadline, 3 s, is printed
for the record.

    python bench/ack.py [--rounds 10] [--warmup 3] [--concurrent 100]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repo on sys.path)
from _common import REPO, percentile, ratio_line, write_standin_config

from discord_standin import DiscordStandin

DEADLINE_MS = 3000.0
MIX = ("status", "jobs", "status", "generate", "jobs")  # 40% /status, 40% /jobs, 20% /generate


def every_answer(ixs):
    """A predicate: every member sees an answer (or "did not respond"). One waiter
    for the round, which looks past only what it has not seen yet: the stand-in
    re-checks it after every REST call and gateway event, in the loop that times
    the acknowledgements, so 100 waiters cost the bot that makes more calls more."""
    pending = list(ixs)

    def done() -> bool:
        while pending and (pending[-1].failed or pending[-1].has_visible_response()):
            pending.pop()
        return not pending
    return done


async def run_rounds(standin, general, members, operators, rounds: int, concurrent: int, settle, label: str,
                     warmup: int = 0):
    """``warmup`` untimed rounds, then ``rounds`` x ``concurrent`` commands at once;
    returns ({command: [ack ms]}, not acknowledged, [ms until a round's last answer])."""
    by_name: dict[str, list[float]] = {n: [] for n in set(MIX)}
    failed = 0
    last_answers: list[float] = []
    for r in range(-warmup, rounds):
        ixs = []
        # The stand-in's garbage is the harness's, not Discord's: collected between
        # rounds, so that a full collection here (90 ms once the stand-in holds a few
        # rounds' messages) never lands inside one side's round.
        gc.collect()
        gc.disable()
        t0 = time.perf_counter()
        for i in range(concurrent):
            name = MIX[i % len(MIX)]
            if name == "generate":
                ixs.append(await standin.invoke(operators[i % len(operators)], "generate", channel=general,
                                                options={"persona": "dril", "count": 5}))
            else:
                ixs.append(await standin.invoke(members[i % len(members)], name, channel=general))
        dispatch_ms = (time.perf_counter() - t0) * 1000
        await standin.wait_for(every_answer(ixs), timeout=10, what=f"{label}: every member's answer")
        answered_ms = (time.perf_counter() - t0) * 1000
        gc.enable()
        await settle()
        if r < 0:  # a first command costs what a running bot paid long ago (imports, caches, connections)
            print(f"{label} warm-up round {r + warmup + 1}: not timed")
            continue
        failed += sum(1 for ix in ixs if not ix.acknowledged)
        last_answers.append(answered_ms)
        delays = [ix.ack_delay * 1000 for ix in ixs if ix.acknowledged]
        for ix in ixs:
            if ix.acknowledged:
                by_name[ix.name].append(ix.ack_delay * 1000)
        print(f"{label} round {r + 1}: {len(ixs)} commands dispatched in {dispatch_ms:.0f} ms; ack p50 "
              f"{percentile(delays, 50):.1f} ms, p99 {percentile(delays, 99):.1f} ms, max {max(delays):.1f} ms; "
              f"all answered after {answered_ms:.0f} ms; not acknowledged: {len(ixs) - len(delays)}")
    return by_name, failed, last_answers


REFERENCE = textwrap.dedent("""
    # discord.py alone: the same three commands answering at once (the transport's floor).
    import sys
    import discord, yarl
    from discord.ext import commands
    api, gateway, guild_id, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    discord.http.Route.BASE = api
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    intents = discord.Intents.none()
    intents.guilds = True
    bot = commands.Bot(command_prefix=commands.when_mentioned, intents=intents, help_command=None,
                       guild_ready_timeout=0.05)

    @bot.tree.command(name="status", description="s")
    async def status(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("ok")

    @bot.tree.command(name="jobs", description="j")
    async def jobs(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("ok", ephemeral=True)

    @bot.tree.command(name="generate", description="g")
    async def generate(interaction: discord.Interaction, persona: str, count: int | None = None) -> None:
        await interaction.response.send_message("ok")

    @bot.event
    async def setup_hook() -> None:
        bot.tree.copy_global_to(guild=discord.Object(guild_id))
        await bot.tree.sync(guild=discord.Object(guild_id))

    bot.run(token, log_handler=None)
""")


@contextlib.asynccontextmanager
async def bot_process(cmd: list[str], env: dict, standin, guild, log_path: Path):
    """Run a bot process until the block ends; ready once it is on the gateway with its commands synced."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            await standin.wait_until_bot_ready(timeout=30)
            await standin.wait_for_commands(["status", "jobs", "generate"], guild=guild, timeout=30)
        except Exception:
            raise RuntimeError(f"{cmd[1:3]} did not get ready:\n" + log_path.read_text()[-3000:]) from None
        yield proc
    finally:
        proc.terminate()  # both close cleanly on SIGTERM
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        await standin.wait_for(lambda: not standin.bot_connected, 10, what="the bot to disconnect")


async def main_async(args) -> None:
    from bot.store import Store

    standin = DiscordStandin()
    await standin.start()
    guild = standin.add_guild("Friends")
    general = standin.add_channel(guild, "general")
    curation = standin.add_channel(guild, "curation")
    operator = standin.add_role(guild, "parodybot-operator")
    members = [standin.add_member(guild, f"friend{i:02d}", roles=[operator] if i % 2 == 0 else [])
               for i in range(20)]
    operators = [m for i, m in enumerate(members) if i % 2 == 0]

    tmp = tempfile.TemporaryDirectory(prefix="bench-ack-")
    root = Path(tmp.name)
    try:
        cfg = write_standin_config(root / "config.toml", standin, [guild.id], log_level="WARNING")
        data = root / "data"
        store = await Store.open(data / "parodybot.sqlite3")  # the persona /generate asks for
        dril = await store.create_persona(guild.id, "dril", curation_channel_id=curation.id)
        # A finished training, so /generate queues a job instead of refusing ("no trained model
        # yet"); delivered long ago, so the bot has nothing to report about it (as tests/conftest.py's trained()).
        trained = await store.create_job("train", dril["key"], guild.id, {"steps": 1}, None)
        await store.update_job(trained, state="done", finished_at="2026-01-01T00:00:00.000000Z", delivered=1)
        await store.close()
        base_env = {k: v for k, v in os.environ.items() if k not in ("PARODYBOT_DATA_DIR", "DISCORD_TOKEN")}
        env = dict(base_env, PARODYBOT_DATA_DIR=str(data), DISCORD_TOKEN=standin.bot_token)

        def unrecorded_jobs() -> int:
            with contextlib.closing(sqlite3.connect(f"file:{data / 'parodybot.sqlite3'}?mode=ro", uri=True)) as db:
                return db.execute("SELECT COUNT(*) FROM jobs WHERE kind = 'generate' AND message_id IS NULL").fetchone()[0]

        async def settle() -> None:
            # /generate stores its message id after the member sees it: let that finish too.
            for _ in range(500):
                if await asyncio.to_thread(unrecorded_jobs) == 0:
                    return
                await asyncio.sleep(0.01)

        async with bot_process([sys.executable, "-m", "bot", "bot", "--config", str(cfg)], env, standin, guild,
                               root / "bot.log"):
            by_name, failed, answers = await run_rounds(standin, general, members, operators, args.rounds, args.concurrent,
                                               settle, "ours", args.warmup)

        async def nothing() -> None:
            pass

        ref_script = root / "reference.py"
        ref_script.write_text(REFERENCE)
        ref_cmd = [sys.executable, str(ref_script), standin.api_base, standin.gateway_url, str(guild.id),
                   standin.bot_token]
        async with bot_process(ref_cmd, base_env, standin, guild, root / "reference.log"):
            ref_by_name, _, ref_answers = await run_rounds(standin, general, members, operators, args.rounds,
                                              args.concurrent, nothing, "anchor", args.warmup)
        ref_all = [d for ds in ref_by_name.values() for d in ds]

        every = [d for ds in by_name.values() for d in ds]
        p50, p99 = percentile(every, 50), percentile(every, 99)
        for name in sorted(by_name):
            ds = by_name[name]
            print(f"ours /{name}: {len(ds)} acks, p50 {percentile(ds, 50):.1f} ms, p99 {percentile(ds, 99):.1f} ms")
        print(f"anchor (bare discord.py bot answering at once, same mix): {len(ref_all)} acks, "
              f"p50 {percentile(ref_all, 50):.1f} ms, p99 {percentile(ref_all, 99):.1f} ms")
        print(f"ours: all {len(every)} acks over {args.rounds} rounds of {args.concurrent} concurrent: "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; not acknowledged within 3 s: {failed}")
        print(f"last answer of a round (median of rounds): ours {percentile(answers, 50):.0f} ms, "
              f"anchor {percentile(ref_answers, 50):.0f} ms")
        ref_p99 = percentile(ref_all, 99)
        print(f"Discord's deadline {DEADLINE_MS:.0f} ms: ours is {DEADLINE_MS / p99:.3g} times inside it")
        print(ratio_line("ack p99", p99, ref_p99, "ms", p99 / ref_p99))
    finally:
        await standin.stop()
        tmp.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds first, for each bot")
    ap.add_argument("--concurrent", type=int, default=100)
    args = ap.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
