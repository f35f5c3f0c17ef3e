"""`parodybot run`: the bot and its embedded worker live and die together."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest

from conftest import REPO


@pytest.mark.timeout(120)
async def test_sigkill_of_run_leaves_no_worker_behind(world, tmp_path):
    s = world.standin
    data = tmp_path / "data"
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{data}"\n[discord]\napi_base = "{s.api_base}"\ngateway_url = "{s.gateway_url}"\n'
                      f"guild_ids = [{world.guild.id}]\n", encoding="utf-8")
    env = dict(os.environ, DISCORD_TOKEN=s.bot_token, PARODYBOT_DATA_DIR=str(data), TF_CPP_MIN_LOG_LEVEL="2")
    log = open(tmp_path / "run.log", "ab")
    run = subprocess.Popen([sys.executable, "-m", "bot", "run", "--config", str(config)], cwd=REPO, env=env,
                           stdout=log, stderr=subprocess.STDOUT)
    workers: list[psutil.Process] = []
    try:
        def embedded_worker():
            kids = [p for p in psutil.Process(run.pid).children()
                    if "worker" in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE]
            return kids or None

        workers = await s.wait_for(embedded_worker, timeout=60, what="the embedded worker to start")
        await s.wait_for(lambda: s.bot_connected, timeout=60, what="the bot to connect")
        run.kill()  # SIGKILL: no handler of ours runs
        assert run.wait(10) == -signal.SIGKILL

        def gone():
            return all(not w.is_running() or w.status() == psutil.STATUS_ZOMBIE for w in workers)

        await s.wait_for(gone, timeout=30, what="the orphaned worker to stop")
    finally:
        if run.poll() is None:
            run.kill()
        for w in workers:
            if w.is_running():
                w.kill()
        log.close()
