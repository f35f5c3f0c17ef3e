"""Shared fixtures: a local Discord stand-in with a small server of friends, the
real bot connected to it with a temporary data dir, and a real worker process."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from core import contract, taskqueue
from core.config import Config, config_from
from discord_standin import DiscordStandin

REPO = Path(__file__).resolve().parents[1]


@dataclass
class World:
    """The Discord server the tests play in."""

    standin: DiscordStandin
    guild: object
    general: object
    curation: object
    log: object
    operator_role: object
    voter_role: object
    curator_role: object
    alice: object  # operator
    bob: object
    carol: object
    dave: object
    erin: object
    helper_bot: object  # another bot in the server: never counts


async def trained(store, persona: dict) -> dict:
    """``persona``, with a training that finished before: what /generate needs first."""
    job_id = await store.create_job("train", persona["key"], persona["guild_id"], {"steps": 1}, None)
    await store.update_job(job_id, state="done", finished_at="2026-01-01T00:00:00.000000Z", delivered=1)
    return persona


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("PARODYBOT_DATA_DIR", str(path))
    return path


async def start_world() -> World:
    """A started stand-in with the friends' server in it (stop it with world.standin.stop())."""
    standin = DiscordStandin()
    await standin.start()
    guild = standin.add_guild("Friends")
    operator = standin.add_role(guild, "parodybot-operator")
    voter = standin.add_role(guild, "voter")
    curator = standin.add_role(guild, "curator")
    return World(
        standin=standin, guild=guild,
        general=standin.add_channel(guild, "general"),
        curation=standin.add_channel(guild, "curation"),
        log=standin.add_channel(guild, "bot-log"),
        operator_role=operator, voter_role=voter, curator_role=curator,
        alice=standin.add_member(guild, "alice", roles=[operator]),
        bob=standin.add_member(guild, "bob", roles=[voter]),
        carol=standin.add_member(guild, "carol", roles=[voter]),
        dave=standin.add_member(guild, "dave", roles=[voter]),
        erin=standin.add_member(guild, "erin"),
        helper_bot=standin.add_member(guild, "otherbot", bot=True),
    )


@pytest.fixture
async def world():
    w = await start_world()
    try:
        yield w
    finally:
        await w.standin.stop()


class CannedWorker:
    """The worker's real task plumbing on the real queue, with the GPU swapped for
    fixed texts: generate returns `texts`. For tests about Discord and votes."""

    def __init__(self, cfg: Config, texts: list[str], dropped: dict | None = None):
        from workers.tasks import Tasks

        tasks = Tasks(cfg)
        tasks.generate = lambda request, task_id, progress: contract.GenerateResult(
            contract.DONE, [contract.GeneratedCandidate(t) for t in texts[: request.count]], dict(dropped or {}))
        self.huey = taskqueue.open_queue(cfg.queue_url, tasks.handlers())
        tasks.huey = self.huey

    async def run_one(self, timeout: float = 10) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            task = await asyncio.to_thread(self.huey.dequeue)
            if task is not None:
                await asyncio.to_thread(self.huey.execute, task)
                return
            await asyncio.sleep(0.05)
        raise AssertionError("nothing was queued")


def config_for(world: World, **sections) -> Config:
    """Embedded defaults, pointed at the stand-in, fast progress edits."""
    discord = {
        "api_base": world.standin.api_base,
        "gateway_url": world.standin.gateway_url,
        "guild_ids": [world.guild.id],
        "attachment_hosts": [world.standin.cdn_host],
        "progress_edit_interval": 0.2,
    }
    discord.update(sections.pop("discord", {}))
    return config_from({"discord": discord, **sections})


class BotHandle:
    """Start, stop and restart the real bot in this event loop."""

    def __init__(self, world: World):
        self.world = world
        self.bot = None
        self.task = None

    async def start(self, cfg: Config | None = None):
        from bot.client import ParodyBot

        self.cfg = cfg or getattr(self, "cfg", None) or config_for(self.world)
        self.bot = ParodyBot(self.cfg, guild_ready_timeout=0.05)
        self.task = asyncio.create_task(self.bot.start(self.world.standin.bot_token))
        waiter = asyncio.create_task(self.bot.ready_event.wait())
        done, _ = await asyncio.wait({waiter, self.task}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            waiter.cancel()
            self.task.result()  # raises what broke start-up
        assert waiter in done, "the bot did not get ready within 20 s"
        await self.world.standin.wait_for_commands(["status"], guild=self.world.guild)
        return self.bot

    async def stop(self):
        if self.bot is not None:
            await self.bot.close()
            try:
                await asyncio.wait_for(self.task, 10)
            except (asyncio.CancelledError, Exception):
                pass
            self.bot = None


@pytest.fixture
async def bot_handle(world, data_dir):
    handle = BotHandle(world)
    try:
        yield handle
    finally:
        await handle.stop()


@pytest.fixture
async def bot(bot_handle):
    return await bot_handle.start()


class WorkerProcess:
    """A real `parodybot worker` process on the same data dir (embedded SQLite queue)."""

    def __init__(self, data_dir: Path, config: Path | None = None, name: str = "worker", env: dict | None = None):
        self.data_dir = data_dir
        self.config = config
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"{name}.log"

    def start(self) -> "WorkerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "bot", "worker"] + (["--config", str(self.config)] if self.config else [])
        env = dict(os.environ, PARODYBOT_DATA_DIR=str(self.data_dir), TF_CPP_MIN_LOG_LEVEL="2", **self.env)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL the worker and everything it started (a training child included)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "log", None):
            self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def worker(data_dir):
    proc = WorkerProcess(data_dir).start()
    try:
        yield proc
    finally:
        proc.stop()


# --- real servers on loopback, for the network backends ----------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited at start ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on port {port} within 30 s")


@pytest.fixture
def redis_url(tmp_path):
    """A real Redis server on loopback (`make test` installs redis-server)."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: `make test` installs it (apt-get install redis-server)"
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_port(port, proc, "redis-server")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str
    env: dict  # the credentials a worker reads from its environment

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def keys(self) -> list[str]:
        return sorted(o["Key"] for o in self.client().list_objects_v2(Bucket=self.bucket).get("Contents", []))


@pytest.fixture
def s3_server(tmp_path, monkeypatch):
    """A real S3-compatible HTTP server on loopback (moto's server, from the test extra)
    with one bucket; this process's environment holds its credentials, as a worker's would."""
    port = free_port()
    log = open(tmp_path / "s3.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    env = {"AWS_ACCESS_KEY_ID": "parodybot-test", "AWS_SECRET_ACCESS_KEY": "parodybot-test-secret",
           "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        _wait_for_port(port, proc, "the S3 server")
        server = S3Server(f"http://127.0.0.1:{port}", "parodybot", env)
        server.client().create_bucket(Bucket=server.bucket)
        yield server
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
