"""Slash-command acknowledgement latency with 100 concurrent commands.

The local Discord stand-in and the real ParodyBot run in this process (as in
tests/conftest.py). Each round, 100 members' slash commands are dispatched at
once: a mix of /status (database and queue check, answers at once), /jobs
(lists jobs, answers at once) and /generate (operator check, persona lookup,
defers, then queues a job in the embedded queue; no worker runs, so the jobs
just wait). Latency: the stand-in's ``ack_delay`` of each interaction, from
the INTERACTION_CREATE dispatch to the bot's callback reaching the stand-in,
measured on the stand-in's side. A round ends when every member sees an
answer; then the next one starts. The stand-in shares the event loop with
the bot, so its own work is inside the figure (as the network would be).
For the reader, a reference: a bare discord.py bot with the same three
commands answering at once, the same way (what the transport alone costs).

Anchor: Discord's 3-second acknowledgement deadline. ratio = anchor / ours
p99: how many times over the bot beats the deadline (above 1 is inside it;
the goal, p99 < 150 ms, is a ratio above 20).

    python bench/ack.py [--rounds 10] [--concurrent 100]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import tempfile
import time

import _common  # noqa: F401  (puts the repo on sys.path)
import discord
from _common import percentile, standin_discord_section

from bot.config import Config
from discord.ext import commands

from discord_standin import DiscordStandin, InteractionFailed

DEADLINE_MS = 3000.0
MIX = ("status", "jobs", "status", "generate", "jobs")  # 40% /status, 40% /jobs, 20% /generate


async def run_rounds(standin, general, members, operators, rounds: int, concurrent: int, settle, label: str):
    """``rounds`` x ``concurrent`` commands at once; returns ({command: [ack ms]}, not acknowledged)."""
    by_name: dict[str, list[float]] = {n: [] for n in set(MIX)}
    failed = 0
    for r in range(rounds):
        ixs = []
        t0 = time.perf_counter()
        for i in range(concurrent):
            name = MIX[i % len(MIX)]
            if name == "generate":
                ixs.append(await standin.invoke(operators[i % len(operators)], "generate", channel=general,
                                                options={"persona": "dril", "count": 5}))
            else:
                ixs.append(await standin.invoke(members[i % len(members)], name, channel=general))
        dispatch_ms = (time.perf_counter() - t0) * 1000
        results = await asyncio.gather(*(ix.wait_for_response(timeout=10) for ix in ixs), return_exceptions=True)
        answered_ms = (time.perf_counter() - t0) * 1000
        for x in results:
            if isinstance(x, BaseException) and not isinstance(x, (InteractionFailed, asyncio.TimeoutError)):
                raise x
        await settle()
        failed += sum(1 for ix in ixs if not ix.acknowledged)
        delays = [ix.ack_delay * 1000 for ix in ixs if ix.acknowledged]
        for ix in ixs:
            if ix.acknowledged:
                by_name[ix.name].append(ix.ack_delay * 1000)
        print(f"{label} round {r + 1}: {len(ixs)} commands dispatched in {dispatch_ms:.0f} ms; ack p50 "
              f"{percentile(delays, 50):.1f} ms, p99 {percentile(delays, 99):.1f} ms, max {max(delays):.1f} ms; "
              f"all answered after {answered_ms:.0f} ms; not acknowledged: {len(ixs) - len(delays)}")
    return by_name, failed


def bare_bot() -> commands.Bot:
    """Reference: discord.py alone, the same three commands answering at once (the transport's floor)."""
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

    return bot


async def main_async(args) -> None:
    from bot.client import ParodyBot

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
    os.environ["PARODYBOT_DATA_DIR"] = tmp.name
    cfg = Config.model_validate({"discord": standin_discord_section(standin, [guild.id])})
    bot = ParodyBot(cfg, guild_ready_timeout=0.05)
    task = asyncio.create_task(bot.start(standin.bot_token))
    ref = ref_task = None
    try:
        await asyncio.wait_for(bot.ready_event.wait(), 20)
        await standin.wait_for_commands(["status", "jobs", "generate"], guild=guild)
        await bot.store.create_persona("dril", guild_id=guild.id, curation_channel_id=curation.id)

        async def settle() -> None:
            # /generate stores its message id after the member sees it: let that finish too.
            for _ in range(500):
                if (await bot.store.fetchone("SELECT COUNT(*) FROM jobs WHERE message_id IS NULL"))[0] == 0:
                    return
                await asyncio.sleep(0.01)

        by_name, failed = await run_rounds(standin, general, members, operators, args.rounds, args.concurrent,
                                           settle, "ours")
        await bot.close()
        await asyncio.wait_for(task, 10)

        # Reference: the transport alone (same stand-in, same loop, same mix), for the reader.
        ref = bare_bot()
        with standin.patch_discord():
            await ref.login(standin.bot_token)
            await ref.tree.sync()
            ref.tree.copy_global_to(guild=discord.Object(guild.id))
            await ref.tree.sync(guild=discord.Object(guild.id))
            ref_task = asyncio.create_task(ref.connect(reconnect=False))
            await asyncio.wait_for(ref.wait_until_ready(), 20)

            async def nothing() -> None:
                pass

            ref_by_name, _ = await run_rounds(standin, general, members, operators, max(2, args.rounds // 3),
                                              args.concurrent, nothing, "reference")
        ref_all = [d for ds in ref_by_name.values() for d in ds]

        every = [d for ds in by_name.values() for d in ds]
        p50, p99 = percentile(every, 50), percentile(every, 99)
        for name in sorted(by_name):
            ds = by_name[name]
            print(f"ours /{name}: {len(ds)} acks, p50 {percentile(ds, 50):.1f} ms, p99 {percentile(ds, 99):.1f} ms")
        print(f"reference (bare discord.py bot answering at once, same mix): {len(ref_all)} acks, "
              f"p50 {percentile(ref_all, 50):.1f} ms, p99 {percentile(ref_all, 99):.1f} ms")
        print(f"ours: all {len(every)} acks over {args.rounds} rounds of {args.concurrent} concurrent: "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; not acknowledged within 3 s: {failed}")
        # ratio = deadline / our p99: how many times over the bot beats Discord's deadline.
        print(f"ack: ours {p99:.4g} ms (p99), anchor {DEADLINE_MS:.4g} ms, ratio {DEADLINE_MS / p99:.3g}")
    finally:
        if not bot.is_closed():
            await bot.close()
        if ref is not None and not ref.is_closed():
            await ref.close()
        for t in (task, ref_task):
            if t is not None:
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(t, 10)
        await standin.stop()
        tmp.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--concurrent", type=int, default=100)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
