"""A SIGKILLed bot decides votes exactly as a bot that never went down.

The bot runs as a real process (`python -m bot bot --config FILE`) against the
local Discord stand-in in this test's event loop. Candidates come from the
bot's own /generate (a canned worker in this process takes the job from the
SQLite queue in the data dir); every vote is a reaction through the stand-in.

The same scripted vote sequence is played twice, each time in a fresh world
and data dir:

- uninterrupted: the bot is up the whole time;
- crashed: the bot is SIGKILLed right after a burst of reactions it may or may
  not have handled, members keep voting (adding and removing reactions) while
  it is down, then it is started again and reconciles from the messages.

The states, tallies and per-member votes in the database, and what each
candidate's message shows, must be the same in both runs (and what the rules
say). Discord keeps only the reactions a message has now, not their history,
so a threshold crossed and uncrossed entirely while the bot is down cannot be
seen by anyone; the script never does that (see WHILE_DOWN).
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from core.config import load_config
from bot.store import Store
from conftest import REPO, CannedWorker, World, start_world, trained

pytestmark = pytest.mark.timeout(120)

CANDIDATES = {
    "A": "i am the only person on earth who knows what a spoon is",
    "B": "my cat filed a complaint about me with the landlord",
    "C": "just found out bees are flies that went to college",
    "D": "wore two hats to the funeral to show i was twice as sad",
    "E": "the moon is just the sun's night shift and it is underpaid",
    "F": "bought a ladder to improve my relationship with the ceiling",
    "G": "my horoscope says i am a horse. checks out",
    "H": "every sandwich is a tiny building and i am a landlord",
    "I": "the fire alarm and i are going through something together",
}
KEYS = list(CANDIDATES)
UP, DOWN = "👍", "👎"

# (member, candidate, emoji, added). Voters: bob carol dave frank grace heidi.
# erin has no voter role, otherbot is a bot: neither counts. ivan is a curator.
BEFORE = [  # the bot is up and handles these before the burst
    ("bob", "A", UP, True), ("carol", "A", UP, True), ("dave", "A", UP, True),  # A approved at 3
    ("bob", "B", DOWN, True),
    ("bob", "C", UP, True), ("carol", "C", UP, True),
    ("erin", "D", UP, True), ("otherbot", "D", UP, True),  # neither counts
    ("bob", "E", UP, True), ("carol", "E", UP, True), ("dave", "E", UP, True),  # E approved at 3
    ("bob", "F", UP, True),
]
BURST = [  # sent back to back; the crashed run's bot is killed right after, handled or not
    ("dave", "C", UP, True),  # C reaches 3
    ("carol", "B", DOWN, True),  # B reaches -2
    ("grace", "G", DOWN, True), ("grace", "G", DOWN, False),
]
WHILE_DOWN = [  # the crashed run's bot is down for these
    ("frank", "A", UP, True),  # an approved candidate's tally still moves: 4
    ("bob", "E", UP, False),  # ... both ways: 2
    ("bob", "D", UP, True), ("carol", "D", UP, True), ("dave", "D", UP, True),  # D approved at 3
    ("bob", "F", DOWN, True), ("carol", "F", DOWN, True), ("dave", "F", DOWN, True),  # bob nets 0: F -2
    ("dave", "G", UP, True), ("dave", "G", UP, False),  # added and removed: G stays 0
    ("frank", "H", UP, True), ("grace", "H", UP, True), ("erin", "H", UP, True),  # H 2
    ("carol", "I", UP, True), ("ivan", "I", "✅", True),  # a curator approves I at once
]
AFTER = [  # the bot is up again (restarted in the crashed run)
    ("heidi", "H", UP, True),  # H approved at 3
]

# What the rules say (approve at net 3, reject at -2, one net vote per member).
EXPECTED = {
    "A": ("approved", 4), "B": ("rejected", -2), "C": ("approved", 3), "D": ("approved", 3),
    "E": ("approved", 2), "F": ("rejected", -2), "G": ("voting", 0), "H": ("approved", 3),
    "I": ("approved", 1),
}
# Posting order: highest net score, then oldest.
EXPECTED_QUEUE = ["A", "C", "D", "H", "E", "I"]


@asynccontextmanager
async def fresh_world():
    world = await start_world()
    try:
        guild, voter = world.guild, world.voter_role
        world.members = {"bob": world.bob, "carol": world.carol, "dave": world.dave, "erin": world.erin,
                         "otherbot": world.helper_bot}
        for name in ("frank", "grace", "heidi"):
            world.members[name] = world.standin.add_member(guild, name, roles=[voter])
        world.members["ivan"] = world.standin.add_member(guild, "ivan", roles=[world.curator_role])
        yield world
    finally:
        await world.standin.stop()


class BotProcess:
    """`python -m bot bot --config FILE` as a child process."""

    def __init__(self, world: World, root: Path):
        self.world, self.root = world, root
        self.data_dir = root / "data"
        self.config = root / "config.toml"
        self.log_path = root / "bot.log"
        self.proc: subprocess.Popen | None = None
        self.unsettled = ""  # why settled() last said no
        s = world.standin
        self.config.write_text(
            f'data_dir = "{self.data_dir}"\n'
            "[discord]\n"
            f'api_base = "{s.api_base}"\n'
            f'gateway_url = "{s.gateway_url}"\n'
            f"guild_ids = [{world.guild.id}]\n"
            f'attachment_hosts = ["{s.cdn_host}"]\n'
            "progress_edit_interval = 0.2\n"
            "[worker]\n"
            "embedded = false\n",
            encoding="utf-8",
        )

    async def start(self, fault: str | None = None) -> None:
        env = dict(os.environ, DISCORD_TOKEN=self.world.standin.bot_token, PARODYBOT_DATA_DIR=str(self.data_dir))
        env.pop("PARODYBOT_FAULT", None)
        if fault:
            env["PARODYBOT_FAULT"] = fault
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "bot", "bot", "--config", str(self.config)],
                                         cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        await self.wait(lambda: self.world.standin.bot_connected, 30, "the bot to connect to the gateway")
        await self.world.standin.wait_for_commands(["generate"], guild=self.world.guild, timeout=10)

    def sigkill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def kill_if_running(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    async def wait(self, predicate, timeout: float, what: str):
        try:
            return await self.world.standin.wait_for(
                lambda: predicate() or (self.proc.poll() is not None and _raise(f"the bot exited with {self.proc.returncode}")),
                timeout=timeout, what=what)
        except (asyncio.TimeoutError, AssertionError) as exc:
            raise AssertionError(f"{exc}\n--- bot output ---\n{self.output()}") from None


def _raise(msg: str):
    raise AssertionError(msg)


def canned_worker(config: Path) -> CannedWorker:
    """The worker's real task plumbing on the shared SQLite queue; generation returns fixed texts."""
    return CannedWorker(load_config(config), list(CANDIDATES.values()))


# --- reading what happened ------------------------------------------------------------

def db_rows(bot: BotProcess) -> dict[str, dict]:
    """text key -> state, score, member name -> vote, member name -> stored reactions."""
    names = {m.user.id: n for n, m in bot.world.members.items()}
    key_of = {t: k for k, t in CANDIDATES.items()}
    conn = sqlite3.connect(bot.data_dir / "parodybot.sqlite3", timeout=5)
    try:
        out = {}
        for cid, text, state, score, mid in conn.execute("SELECT id, text, state, score, message_id FROM candidates"):
            votes = {names[m]: v for m, v in conn.execute("SELECT member_id, value FROM votes WHERE candidate_id = ?", (cid,))}
            reactions: dict[str, set] = {}
            for m, e in conn.execute("SELECT member_id, emoji FROM reactions WHERE candidate_id = ?", (cid,)):
                reactions.setdefault(names[m], set()).add(e)
            out[key_of[text]] = {"state": state, "score": score, "votes": votes, "reactions": reactions,
                                 "message_id": mid}
        return out
    finally:
        conn.close()


def shown(world: World, message_id: int) -> dict:
    """What the candidate's message says: state word, net, place in the posting queue."""
    msg = world.standin.message(message_id)
    value = next(f["value"] for f in msg["embeds"][0]["fields"] if f["name"] == "State")
    state = re.match(r"\S+ (\w+)", value).group(1)
    net = re.search(r"\(net ([+-]\d+)\)", value)
    place = re.search(r"#(\d+) in the posting queue", value)
    return {"state": state, "net": int(net.group(1)) if net else None, "place": int(place.group(1)) if place else None}


def eligible_reactions(world: World, message_id: int) -> dict[str, set]:
    """The vote reactions on the message now, of members whose votes count."""
    voters = {m.user.id: n for n, m in world.members.items() if n not in ("erin", "otherbot", "ivan")}
    out: dict[str, set] = {}
    for r in world.standin.message(message_id)["reactions"]:
        if r["emoji"] in (UP, DOWN):
            for uid in r["user_ids"]:
                if int(uid) in voters:
                    out.setdefault(voters[int(uid)], set()).add(r["emoji"])
    return out


def settled(bot: BotProcess, *, exact: bool = False):
    """The bot has caught up: every candidate's stored reactions are its message's, its
    votes, tally and decision follow from them, and every message shows the stored state (``exact``: and the stored net and place in the
    posting queue; a decided message's net is only redrawn on the next state change).
    Returns the outcome then, else None."""
    rows = db_rows(bot)
    bot.unsettled = f"{len(rows)} candidate(s) stored"
    if len(rows) != len(CANDIDATES):
        return None
    queue = sorted((k for k, r in rows.items() if r["state"] == "approved"), key=lambda k: (-rows[k]["score"], KEYS.index(k)))
    outcome = {}
    for key, row in rows.items():
        bot.unsettled = f"{key}: stored {row}"
        if row["message_id"] is None:
            return None
        on_message = eligible_reactions(bot.world, row["message_id"])
        bot.unsettled += f"; reactions on the message {on_message}"
        if row["reactions"] != on_message:
            return None
        # ... and the votes, the tally and the decision are stored too (not just the reaction).
        nets = {m: (UP in e) - (DOWN in e) for m, e in on_message.items() if (UP in e) != (DOWN in e)}
        if row["votes"] != nets or row["score"] != sum(nets.values()):
            return None
        if row["state"] == "voting" and not -2 < row["score"] < 3:
            return None
        curators = {bot.world.members["ivan"].user.id}
        forced = any(r["emoji"] in ("✅", "❌") and curators & {int(u) for u in r["user_ids"]}
                     for r in bot.world.standin.message(row["message_id"])["reactions"])
        if row["state"] == "voting" and forced:
            return None
        view = shown(bot.world, row["message_id"])
        bot.unsettled += f"; the message shows {view}"
        if view["state"] != row["state"]:
            return None
        if exact and row["state"] != "voting":
            place = queue.index(key) + 1 if key in queue else None
            if view["net"] != row["score"] or view["place"] != place:
                return None
        outcome[key] = {"state": row["state"], "score": row["score"], "votes": row["votes"], "shown": view}
    return outcome


# How long the bot may take to catch up. Under Discord's rate limits (5 message
# edits per 5 s in a channel) redrawing every message after a restart takes tens
# of seconds on a loaded machine: these bound convergence, they assert no speed.
SETTLE_S = 120


async def wait_settled(bot: BotProcess, what: str, timeout: float = SETTLE_S) -> dict:
    try:
        return await bot.wait(lambda: settled(bot), timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- not settled ---\n{bot.unsettled}") from None


# --- one play of the script ------------------------------------------------------------

async def vote(world: World, ids: dict[str, int], steps) -> None:
    for member, key, emoji, added in steps:
        act = world.standin.react if added else world.standin.unreact
        await act(world.members[member], world.curation, ids[key], emoji)


async def play(root: Path, *, crash: bool) -> tuple[dict, dict]:
    """Returns (outcome at the restart point, final outcome)."""
    root.mkdir()
    async with fresh_world() as world:
        bot = BotProcess(world, root)
        store = await Store.open(bot.data_dir / "parodybot.sqlite3")
        # Paused: no scheduled post takes an approved candidate out of the queue mid-test.
        await trained(store, await store.create_persona(
            world.guild.id, "dril", curation_channel_id=world.curation.id, state="paused", paused_reason="test",
            rules={"voter_role_id": world.voter_role.id, "curator_role_id": world.curator_role.id}))
        await store.close()
        try:
            await bot.start()
            worker = canned_worker(bot.config)
            ix = await world.standin.invoke(world.alice, "generate", channel=world.general,
                                            options={"persona": "dril", "count": len(CANDIDATES)})
            await ix.wait_for_response(timeout=5)
            await worker.run_one()

            def posted():
                msgs = [m for m in world.standin.messages(world.curation) if m.get("embeds")]
                ready = len(msgs) == len(CANDIDATES) and all(sum(r["me"] for r in m["reactions"]) == 2 for m in msgs)
                return ready and {k: int(m["id"]) for k, m in zip(KEYS, msgs)}

            ids = await bot.wait(posted, SETTLE_S, "the candidates, pre-reacted")
            assert [world.standin.message(ids[k])["embeds"][0]["description"] for k in KEYS] == list(CANDIDATES.values())

            await vote(world, ids, BEFORE)
            before = await wait_settled(bot, "the votes before the burst")
            assert before["A"]["state"] == before["E"]["state"] == "approved"

            await vote(world, ids, BURST)
            if crash:
                bot.sigkill()
                await world.standin.wait_for(lambda: not world.standin.bot_connected, 10, what="the bot's gateway to drop")
            await vote(world, ids, WHILE_DOWN)
            if crash:
                # Nothing is listening: the reactions are only on the messages now.
                assert shown(world, ids["D"])["state"] == "voting"
                await bot.start()
            middle = await wait_settled(bot, "reconciliation" if crash else "the votes while down")
            middle = {k: {**o, "shown": o["shown"]["state"]} for k, o in middle.items()}

            await vote(world, ids, AFTER)
            try:
                final = await bot.wait(lambda: (s := settled(bot, exact=True)) and s["H"]["state"] == "approved" and s,
                                       SETTLE_S, "the votes after the restart")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n--- not settled ---\n{bot.unsettled}") from None
            assert "Traceback" not in bot.output(), bot.output()
            return middle, final
        finally:
            bot.kill_if_running()


@pytest.mark.timeout(900)  # two plays, each waiting up to SETTLE_S at a few points
async def test_sigkilled_bot_decides_votes_as_an_uninterrupted_one(tmp_path, monkeypatch):
    monkeypatch.delenv("PARODYBOT_DATA_DIR", raising=False)
    steady_middle, steady = await play(tmp_path / "uninterrupted", crash=False)
    crashed_middle, crashed = await play(tmp_path / "crashed", crash=True)

    # What the rules say, and what the uninterrupted bot did.
    assert {k: (o["state"], o["score"]) for k, o in steady.items()} == EXPECTED
    places = {k: o["shown"]["place"] for k, o in steady.items() if o["state"] == "approved"}
    assert sorted(places, key=places.get) == EXPECTED_QUEUE
    assert steady["F"]["votes"] == {"carol": -1, "dave": -1}  # bob's 👍 and 👎 cancel out
    assert "erin" not in steady["H"]["votes"] and steady["D"]["votes"] == {"bob": 1, "carol": 1, "dave": 1}

    # The crashed bot: the same states, tallies, per-member votes and messages, at the
    # restart point and at the end.
    assert crashed_middle == steady_middle
    assert crashed == steady
    for key, outcome in crashed.items():
        assert outcome["shown"]["state"] == EXPECTED[key][0]
        if outcome["state"] != "voting":
            assert outcome["shown"]["net"] == EXPECTED[key][1]


def candidate_messages(world) -> list[dict]:
    return [m for m in world.standin.messages(world.curation)
            if m.get("embeds") and "candidate #" in ((m["embeds"][0].get("author") or {}).get("name") or "")]


@pytest.mark.timeout(180)
async def test_a_restart_mid_delivery_sends_each_candidate_exactly_once(tmp_path):
    """SIGKILL right after the 3rd of 20 candidate messages is sent, before its id is
    recorded; the restarted bot adopts that message and sends the other 17 once."""
    texts = [f"candidate text number {i}" for i in range(20)]
    async with fresh_world() as world:
        bot = BotProcess(world, tmp_path)
        store = await Store.open(bot.data_dir / "parodybot.sqlite3")
        await trained(store, await store.create_persona(world.guild.id, "dril", curation_channel_id=world.curation.id))
        await store.close()
        try:
            await bot.start(fault="after_candidate_message:3")
            worker = CannedWorker(load_config(bot.config), texts)
            ix = await world.standin.invoke(world.alice, "generate", channel=world.general,
                                            options={"persona": "dril", "count": 20})
            await ix.wait_for_response(timeout=5)
            await worker.run_one()
            await world.standin.wait_for(lambda: bot.proc.poll() is not None, 60, what="the fault to stop the bot")
            assert bot.proc.returncode == -signal.SIGKILL
            assert len(candidate_messages(world)) == 3  # the 3rd was sent, its id never recorded

            await bot.start()

            def stored_ids() -> dict[str, int]:
                conn = sqlite3.connect(bot.data_dir / "parodybot.sqlite3", timeout=5)
                try:
                    return dict(conn.execute("SELECT text, message_id FROM candidates WHERE message_id IS NOT NULL"))
                finally:
                    conn.close()

            def delivered():
                ids = stored_ids()
                ready = len(ids) == 20 and all(
                    sum(r["me"] for r in world.standin.message(mid)["reactions"]) == 2 for mid in ids.values())
                return ids if ready else None

            stored = await world.standin.wait_for(delivered, timeout=60, what="all 20 candidates delivered, pre-reacted")
            msgs = candidate_messages(world)
            assert sorted(m["embeds"][0]["description"] for m in msgs) == sorted(texts)  # each exactly once
            assert {m["embeds"][0]["description"]: int(m["id"]) for m in msgs} == stored

            # Votes on the adopted message count.
            third = next(m for m in msgs if m["embeds"][0]["description"] == texts[2])
            for name in ("bob", "carol", "dave"):
                await world.standin.react(world.members[name], world.curation, third["id"], UP)
            await bot.wait(lambda: "approved" in str(world.standin.message(third["id"])["embeds"][0]["fields"]), 20,
                           "the adopted candidate to be approved by three votes")
        finally:
            bot.kill_if_running()
