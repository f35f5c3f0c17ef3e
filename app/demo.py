"""`parodybot demo`: the whole loop on embedded defaults, against a local Discord.

The real bot connects to the Discord stand-in, an embedded worker process
trains the tiny model on a bundled corpus (pyjokes' jokes), simulated members
run the slash commands and vote, and the transcript is printed. No account,
token or internet needed.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import time
from importlib import resources
from pathlib import Path

import msgspec

from core.config import Config

DEMO_STEPS = 400
DEMO_COUNT = 6


class Transcript:
    def __init__(self, out=sys.stdout):
        self.out = out
        self.t0 = time.monotonic()

    def say(self, who: str, text: str) -> None:
        stamp = f"[{time.monotonic() - self.t0:6.1f}s]"
        lines = text.splitlines() or [""]
        print(f"{stamp} {who}: {lines[0]}", file=self.out)
        for line in lines[1:]:
            print(f"{' ' * len(stamp)} {' ' * len(who)}  {line}", file=self.out)
        self.out.flush()


def message_text(msg: dict) -> str:
    parts = [msg.get("content") or ""]
    for embed in msg.get("embeds") or []:
        if embed.get("author"):
            parts.append(embed["author"]["name"])
        if embed.get("title"):
            parts.append(f"== {embed['title']} ==")
        if embed.get("description"):
            parts.append(embed["description"])
        for field in embed.get("fields") or []:
            parts.append(f"{field['name']}: {field['value']}")
    for att in msg.get("attachments") or []:
        parts.append(f"[attachment {att['filename']}, {att.get('size', 0):,} bytes]")
    return "\n".join(p for p in parts if p)


async def run_demo(cfg: Config) -> int:
    from bot.client import ParodyBot
    from core.logs import setup_logging
    from app.runner import EmbeddedWorker
    from discord_standin import DiscordStandin

    setup_logging("WARNING")
    if not os.environ.get("PARODYBOT_DATA_DIR"):
        demo_dir = Path.cwd() / "demo-output"
        shutil.rmtree(demo_dir, ignore_errors=True)
        os.environ["PARODYBOT_DATA_DIR"] = str(demo_dir / "data")
    say = Transcript().say

    standin = DiscordStandin()
    await standin.start()
    guild = standin.add_guild("Friends")
    operator = standin.add_role(guild, cfg.discord.operator_role)
    general = standin.add_channel(guild, "general")
    curation = standin.add_channel(guild, "curation")
    alice = standin.add_member(guild, "alice", roles=[operator])
    voters = [standin.add_member(guild, n) for n in ("bob", "carol", "dave")]

    cfg = msgspec.structs.replace(cfg, discord=msgspec.structs.replace(
        cfg.discord, api_base=standin.api_base, gateway_url=standin.gateway_url, guild_ids=[guild.id],
        attachment_hosts=[standin.cdn_host], progress_edit_interval=0.5))
    say("demo", f"data in {cfg.data_path}; Discord stand-in on {standin.base_url}")
    cfg.data_path.mkdir(parents=True, exist_ok=True)
    worker = EmbeddedWorker(cfg, log_path=cfg.data_path / "worker.log")
    worker.start()
    say("demo", f"embedded worker started (its log: {cfg.data_path / 'worker.log'})")
    bot = ParodyBot(cfg, guild_ready_timeout=0.1)
    bot_task = asyncio.create_task(bot.start(standin.bot_token))
    try:
        await asyncio.wait_for(bot.ready_event.wait(), 30)
        await standin.wait_for_commands(["status", "train", "generate"], guild=guild)
        say("demo", "the bot is connected and its slash commands are registered")

        say("alice", "/status")
        ix = await standin.invoke(alice, "status", channel=general)
        await ix.wait_for_response(timeout=5)
        say("parodybot", message_text(ix.response))

        corpus = resources.files("core.data").joinpath("demo_corpus.csv").read_bytes()
        say("alice", f"/train persona:jokes file:demo_corpus.csv ({len(corpus):,} bytes) steps:{DEMO_STEPS} model:tiny")
        ix = await standin.invoke(alice, "train", channel=curation,
                                  options={"persona": "jokes", "steps": DEMO_STEPS, "model": "tiny",
                                           "file": ("demo_corpus.csv", corpus, "text/csv")})
        await ix.wait_for_response(timeout=5)
        final = await follow(standin, curation, ix.response["id"], say, done=("done:", "failed:", "cancelled"),
                             timeout=240)
        if "failed:" in final:
            return 1

        say("alice", f"/generate persona:jokes count:{DEMO_COUNT}")
        ix = await standin.invoke(alice, "generate", channel=curation, options={"persona": "jokes", "count": DEMO_COUNT})
        await ix.wait_for_response(timeout=5)
        final = await follow(standin, curation, ix.response["id"], say, done=("done:", "failed:"), timeout=180)
        if "failed:" in final:
            return 1

        count = int(re.search(r"done: (\d+) candidate", final).group(1))

        def all_candidates():
            # Discord takes 5 messages per 5 s and a reaction per 0.25 s in a channel: wait for all, pre-reacted.
            found = [m for m in standin.messages(curation) if (m.get("embeds") or [{}])[0].get("author")]
            ready = len(found) >= count and all(sum(r["me"] for r in m["reactions"]) == 2 for m in found)
            return found if ready else None

        candidates = await standin.wait_for(all_candidates, timeout=60, what="candidate messages")
        for msg in candidates:
            say("parodybot", message_text(msg))
        # The group votes: the first two get three thumbs up, the third two thumbs down.
        for msg in candidates[:2]:
            for member in voters:
                await standin.react(member, curation, msg["id"], "👍")
                say(member.user.username, f"👍 on candidate message {msg['id']}")
        if len(candidates) > 2:
            for member in voters[:2]:
                await standin.react(member, curation, candidates[2]["id"], "👎")
                say(member.user.username, f"👎 on candidate message {candidates[2]['id']}")
        wanted = ["approved", "approved", "rejected"][:len(candidates)]

        def decided():
            states = [message_text(standin.message(m["id"])) for m in candidates[:3]]
            return states if all(f"{w} (net" in t for w, t in zip(wanted, states)) else None

        for text in await standin.wait_for(decided, timeout=30, what="the votes' decisions on the messages"):
            say("parodybot", "(edited) " + text)

        # Hands-off posting: a demo schedule of seconds instead of 0 9,13,19 * * *.
        say("alice", "/schedule set persona:jokes interval_minutes:0.05 jitter_minutes:0   (every 3 seconds, for the demo)")
        ix = await standin.invoke(alice, "schedule", subcommand="set", channel=general,
                                  options={"persona": "jokes", "interval_minutes": 0.05, "jitter_minutes": 0})
        await ix.wait_for_response(timeout=5)
        say("parodybot", message_text(ix.response))
        approved = min(2, len(candidates))

        def outbox_lines():
            path = cfg.outbox_path
            lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
            return lines if len(lines) >= approved else None

        lines = await standin.wait_for(outbox_lines, timeout=60, what="the scheduler to post the approved candidates")
        await asyncio.sleep(1.0)  # let the bot edit the candidate messages with their links
        for msg in candidates[:approved]:
            say("parodybot", "(edited) " + message_text(standin.message(msg["id"])))
        print("\nPosted by the scheduler (the outbox, " + str(cfg.outbox_path) + "):")
        for line in lines:
            record = json.loads(line)
            print(f"  {record['posted_at']}  {record['text']}")
        say("demo", "done: trained, generated, voted, posted")
        return 0
    finally:
        await bot.close()
        await asyncio.gather(bot_task, return_exceptions=True)
        await asyncio.to_thread(worker.stop)
        await standin.stop()


async def follow(standin, channel, message_id, say, *, done: tuple[str, ...], timeout: float) -> str:
    """Print each new version of a progress message until it reaches a final state."""
    seen = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = message_text(standin.message(message_id))
        if text != seen:
            say("parodybot", ("(edited) " if seen else "") + text)
            seen = text
            if any(word in text for word in done):
                return text
        await asyncio.sleep(0.25)
    say("demo", f"gave up waiting after {timeout:.0f} s")
    return seen or ""
