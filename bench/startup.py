"""Bot start-up: process start to ready, its memory, and no TensorFlow.

Ours: ``python -m bot bot --config CFG`` as a subprocess (fresh data dir
each run, so the schema migrations run too), pointed at a Discord stand-in
that runs in this process. Ready: the bot logs "connected as" (its on_ready,
after login, migrations, cog loading, the guild command sync, IDENTIFY,
READY and GUILD_CREATE, and discord.py's ``guild_ready_timeout`` wait). The
clock starts just before the process is spawned. At ready, its RSS (psutil)
and whether any TensorFlow library is mapped into it (/proc/PID/maps).

Anchor: a bare discord.py Client in a tiny script (same intents, same
``guild_ready_timeout`` as the bot, so the ratio is about our own work),
connecting to the same stand-in, measured the same way. The runs alternate;
the figures are medians. ratio = ours / anchor (time: lower is better).

    python bench/startup.py [--runs 5]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repo on sys.path)
import psutil
from _common import REPO, median, ratio_line, write_standin_config

from discord_standin import DiscordStandin

ANCHOR = textwrap.dedent("""
    import sys
    import discord, yarl
    api, gateway, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    discord.http.Route.BASE = api
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_reactions = True
    client = discord.Client(intents=intents, guild_ready_timeout=timeout)

    @client.event
    async def on_ready():
        print(f"connected as {client.user} to {len(client.guilds)} guild(s)", flush=True)

    client.run(sys.argv[4], log_handler=None)
""")
READY_TIMEOUT_S = 30


def tensorflow_mapped(pid: int) -> list[str]:
    """TensorFlow's shared libraries mapped into the process (empty: not loaded)."""
    libs = set()
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            path = line.split(maxsplit=5)[-1].strip() if len(line.split()) >= 6 else ""
            if "tensorflow" in path.lower():
                libs.add(os.path.basename(path))
    return sorted(libs)


async def one_run(cmd: list[str], env: dict) -> tuple[float, float, list[str]]:
    """Spawn, wait for "connected as", read RSS and maps, stop it. Returns (seconds, RSS MB, TF libs)."""
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    lines = []
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            while True:
                line = await proc.stdout.readline()
                if not line:
                    raise RuntimeError("the process ended before it was ready:\n" + "".join(lines[-20:]))
                text = line.decode(errors="replace")
                lines.append(text)
                if "connected as" in text:
                    seconds = time.perf_counter() - t0
                    break
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        tf = tensorflow_mapped(proc.pid)
        return seconds, rss, tf
    finally:
        if proc.returncode is None:
            proc.terminate()  # the bot closes cleanly on SIGTERM
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        drain = asyncio.ensure_future(proc.stdout.read())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(drain, 2)


async def main_async(args) -> None:
    from bot.client import GUILD_READY_TIMEOUT

    ready_timeout = GUILD_READY_TIMEOUT  # what the bot gives discord.py

    standin = DiscordStandin()
    await standin.start()
    guild = standin.add_guild("Friends")
    for name in ("general", "curation", "bot-log"):
        standin.add_channel(guild, name)
    operator = standin.add_role(guild, "parodybot-operator")
    for i in range(8):
        standin.add_member(guild, f"friend{i}", roles=[operator] if i == 0 else [])

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        cfg = write_standin_config(Path(tmp) / "config.toml", standin, [guild.id])
        anchor_script = Path(tmp) / "anchor.py"
        anchor_script.write_text(ANCHOR)
        base_env = {k: v for k, v in os.environ.items() if k not in ("PARODYBOT_DATA_DIR", "DISCORD_TOKEN")}
        ours_cmd = [sys.executable, "-m", "bot", "bot", "--config", str(cfg)]
        anchor_cmd = [sys.executable, str(anchor_script), standin.api_base, standin.gateway_url,
                      str(ready_timeout), standin.bot_token]

        ours, anchor = [], []
        try:
            for r in range(args.runs):
                data = Path(tmp) / f"data{r}"
                env = dict(base_env, PARODYBOT_DATA_DIR=str(data), DISCORD_TOKEN=standin.bot_token)
                t, rss, tf = await one_run(ours_cmd, env)
                synced = {c["name"] for c in standin.registered_commands(guild)}
                assert "status" in synced, f"commands not synced at ready: {synced}"
                ours.append((t, rss, tf))
                await standin.wait_for(lambda: not standin.bot_connected, 10, what="the bot to disconnect")
                t, rss, tf2 = await one_run(anchor_cmd, base_env)
                anchor.append((t, rss, tf2))
                await standin.wait_for(lambda: not standin.bot_connected, 10, what="the anchor to disconnect")
                print(f"run {r + 1}: ours {ours[-1][0]:.3f} s, RSS {ours[-1][1]:.0f} MB, "
                      f"{len(synced)} commands synced; anchor {t:.3f} s, RSS {rss:.0f} MB")
        finally:
            await standin.stop()

    o_t, o_rss = median([x[0] for x in ours]), median([x[1] for x in ours])
    a_t, a_rss = median([x[0] for x in anchor]), median([x[1] for x in anchor])
    tf_libs = sorted({lib for x in ours for lib in x[2]})
    print(f"guild_ready_timeout (ours and the anchor's): {ready_timeout:g} s")
    print(f"RSS at ready: ours {o_rss:.0f} MB, anchor {a_rss:.0f} MB (medians of {args.runs})")
    print(f"tensorflow loaded: {'yes: ' + ', '.join(tf_libs) if tf_libs else 'no'}")
    print(ratio_line("startup", o_t, a_t, "s", o_t / a_t))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
