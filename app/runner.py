"""Process orchestration: the bot, and `run` = bot + an embedded worker process."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from core.config import Config, discord_token
from core.contract import BadInput
from core.logs import setup_logging

log = logging.getLogger("parodybot.runner")


async def serve_bot(cfg: Config, token: str) -> None:
    """Run the bot until it is closed. What keeps it from starting is one BadInput
    (the CLI prints it as one line): a refused token, Discord out of reach."""
    import discord

    from bot.client import ParodyBot
    from bot.store import Store

    Store.check_readable(cfg.db_path)
    bot = ParodyBot(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(bot.close()))
    where = cfg.discord.api_base or "discord.com"
    try:
        async with bot:
            await bot.start(token)
    except discord.LoginFailure:
        raise BadInput("Discord refused the bot token in DISCORD_TOKEN: copy it again from the developer "
                       "portal (Bot > Reset Token)") from None
    except (OSError, asyncio.TimeoutError) as exc:  # aiohttp's connection errors are OSErrors
        raise BadInput(f"could not reach Discord at {where} ({type(exc).__name__}): check the network "
                       "(or discord.api_base in the config) and start again") from None


def run_bot(cfg: Config) -> None:
    setup_logging(cfg.log_level)
    token = discord_token()
    asyncio.run(serve_bot(cfg, token))


PARENT_ENV = "PARODYBOT_PARENT_PID"


def _die_with_parent(parent: int) -> None:
    """In the child before it runs: SIGTERM when the thread that started it dies
    (Linux PR_SET_PDEATHSIG), so a SIGKILLed `parodybot run` leaves no worker
    behind. Elsewhere the worker's own watch on its parent (workers/main.py) does it."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


class EmbeddedWorker:
    """Keeps one `parodybot worker` child alive next to the bot; restarts it if it
    dies, and it dies with us however we end."""

    def __init__(self, cfg: Config, log_path=None):
        self.cfg = cfg
        self.log_path = log_path  # None: the worker logs to our stderr
        self.proc: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._supervise, name="embedded-worker", daemon=True)

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "app", "worker"]
        if self.cfg.source:
            cmd += ["--config", str(self.cfg.source)]
        return cmd

    def start(self) -> None:
        self.thread.start()

    def _supervise(self) -> None:
        backoff = 1.0
        env = dict(os.environ, PARODYBOT_DATA_DIR=str(self.cfg.data_path), **{PARENT_ENV: str(os.getpid())})
        parent = os.getpid()
        while not self.stopping.is_set():
            started = time.monotonic()
            out = open(self.log_path, "ab") if self.log_path else None
            self.proc = subprocess.Popen(self.command(), env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                         preexec_fn=lambda: _die_with_parent(parent))
            if out:
                out.close()  # the child holds its own copy
            code = self.proc.wait()
            if self.stopping.is_set():
                return
            backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, 60)
            log.warning("embedded worker exited with %s; restarting in %.0f s", code, backoff)
            self.stopping.wait(backoff)

    def stop(self, timeout: float = 20) -> None:
        self.stopping.set()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Huey: finish or checkpoint, then exit
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def run_all(cfg: Config) -> None:
    setup_logging(cfg.log_level)
    token = discord_token()  # fail before starting anything
    worker = EmbeddedWorker(cfg) if cfg.worker.embedded else None
    if worker:
        worker.start()
    try:
        asyncio.run(serve_bot(cfg, token))
    finally:
        if worker:
            worker.stop()
