"""`parodybot config check` and the config loader, as a person editing the file sees them."""
import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


def parodybot(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_example_config_is_valid():
    result = parodybot("config", "check", "--config", str(REPO / "config.example.toml"))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_wrong_type_names_the_key(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text('[worker]\nconcurrency = "two"\n')
    result = parodybot("config", "check", "--config", str(bad))
    assert result.returncode != 0
    assert "worker.concurrency" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_key_names_the_key(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text('[discord]\noperater_role = "ops"\n')
    result = parodybot("config", "check", "--config", str(bad))
    assert result.returncode != 0
    assert "discord.operater_role" in result.stderr and "unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_broken_toml_and_missing_file_are_one_line_errors(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text("[discord\n")
    for path in (bad, tmp_path / "missing.toml"):
        result = parodybot("config", "check", "--config", str(path))
        assert result.returncode == 2
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_invalid_persona_name_in_config(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text('[personas."../etc"]\ntargets = []\n')
    with pytest.raises(ConfigError, match="personas"):
        load_config(bad)


def test_data_dir_env_overrides_everything(tmp_path, monkeypatch):
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text('data_dir = "elsewhere"\n')
    monkeypatch.setenv("PARODYBOT_DATA_DIR", str(tmp_path / "state"))
    cfg = load_config(cfg_file)
    assert cfg.db_path == tmp_path / "state" / "parodybot.sqlite3"
    assert cfg.queue_url == f"sqlite:///{tmp_path / 'state' / 'queue.sqlite3'}"
    assert cfg.worker_dir == tmp_path / "state" / "worker"
    assert cfg.outbox_path == tmp_path / "state" / "outbox.jsonl"


def test_data_dir_is_relative_to_the_config_file(tmp_path, monkeypatch):
    monkeypatch.delenv("PARODYBOT_DATA_DIR", raising=False)
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text('data_dir = "state"\n')
    assert load_config(cfg_file).data_path == tmp_path / "state"


def test_db_migrate_uses_the_data_dir_env(tmp_path):
    env = {"PARODYBOT_DATA_DIR": str(tmp_path / "d"), "PATH": "/usr/bin:/bin"}
    result = parodybot("db", "migrate", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "parodybot.sqlite3").exists()
    assert '"schema_version": 1' in result.stdout or '"schema_version":' in result.stdout


def test_secrets_come_from_dotenv_but_environment_wins(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text("")
    (tmp_path / ".env").write_text("PARODYBOT_TEST_SECRET=from-dotenv\nPARODYBOT_TEST_OTHER=dotenv\n")
    monkeypatch.setenv("PARODYBOT_TEST_OTHER", "from-env")
    monkeypatch.delenv("PARODYBOT_TEST_SECRET", raising=False)
    load_config(tmp_path / "config.toml")
    import os
    assert os.environ["PARODYBOT_TEST_SECRET"] == "from-dotenv"
    assert os.environ["PARODYBOT_TEST_OTHER"] == "from-env"
    monkeypatch.delenv("PARODYBOT_TEST_SECRET")


# --- what would fail later is caught now, in one line (issue 16) ----------------------------


def one_line_error(result: subprocess.CompletedProcess, *, after_logs: bool = False) -> str:
    """The one error line; ``after_logs``: log lines may come before it (a started bot logs)."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    if not after_logs:
        assert len(lines) == 1, lines
    assert lines[-1].startswith("error: ") and sum(line.startswith("error: ") for line in lines) == 1
    return lines[-1]


@pytest.mark.parametrize("toml, words", [
    ('[curation]\napprove_emoji = "👎"\n', "must differ from each other"),
    ('[curation]\napprove_emoji = "thumbsup"\n', "is not one emoji"),
    ('[posting]\ntimezone = "Mars/Olympus"\n', "posting.timezone"),
    ('[posting]\ncron = "every day"\n', "posting.cron"),
    ('[personas.dril]\ntargets = [{ platform = "mastodon", credentials = "M", base_url = "javascript:alert(1)" }]\n',
     "is not a web address"),
])
def test_config_check_catches_what_would_fail_later(tmp_path, toml, words):
    path = tmp_path / "config.toml"
    path.write_text(toml, encoding="utf-8")
    result = parodybot("config", "check", "--config", str(path))
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr


def test_a_database_that_is_not_sqlite_is_one_line_and_no_hang(tmp_path):
    import os

    data = tmp_path / "data"
    data.mkdir()
    (data / "parodybot.sqlite3").write_bytes(b"this is not a database, just some text " * 100)
    env = dict(os.environ, PARODYBOT_DATA_DIR=str(data), DISCORD_TOKEN="x.y.z")
    for command in (["db", "migrate"], ["bot"]):
        result = subprocess.run([sys.executable, "-m", "bot", *command], capture_output=True, text=True,
                                env=env, timeout=60)  # it used to hang here
        assert "the database cannot be read (file is not a database)" in one_line_error(result)


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path):
    import os

    data = tmp_path / "data"
    data.write_text("oops")
    env = dict(os.environ, PARODYBOT_DATA_DIR=str(data))
    result = subprocess.run([sys.executable, "-m", "bot", "db", "migrate"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert f"PARODYBOT_DATA_DIR: {data} is a file, not a folder" in one_line_error(result)


def test_discord_out_of_reach_at_start_is_one_line(tmp_path):
    import os
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "config.toml"
    config.write_text(f'[discord]\napi_base = "http://127.0.0.1:{port}/api/v10"\n'
                      f'gateway_url = "ws://127.0.0.1:{port}/"\n[worker]\nembedded = false\n')
    env = dict(os.environ, PARODYBOT_DATA_DIR=str(tmp_path / "data"), DISCORD_TOKEN="x.y.z")
    result = subprocess.run([sys.executable, "-m", "bot", "bot", "--config", str(config)], capture_output=True,
                            text=True, env=env, timeout=60)
    assert f"could not reach Discord at http://127.0.0.1:{port}/api/v10" in one_line_error(result, after_logs=True)


async def test_a_database_the_migrations_refuse_is_one_line_and_the_bot_goes_offline(tmp_path, world):
    # The store opens while the bot is already on the gateway (bot/client.py): what
    # stops it there still ends the process with one clear line.
    import os
    import sqlite3

    s = world.standin
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "parodybot.sqlite3") as db:  # a database, but not one of ours
        db.execute("CREATE TABLE personas (something_else TEXT)")
    config = tmp_path / "config.toml"
    config.write_text(f'[discord]\napi_base = "{s.api_base}"\ngateway_url = "{s.gateway_url}"\n'
                      f"guild_ids = [{world.guild.id}]\n")
    env = dict(os.environ, PARODYBOT_DATA_DIR=str(data), DISCORD_TOKEN=s.bot_token)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "bot", "--config", str(config),
                                                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    result = subprocess.CompletedProcess([], proc.returncode, out.decode(), err.decode())
    assert "the database cannot be read (table personas already exists)" in one_line_error(result, after_logs=True)
    assert not s.bot_connected


def test_every_wrong_section_gets_its_own_line_that_says_what_to_do(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text('[worker]\nconcurrency = 0\n[generation]\nmentions = "shout"\n'
                   '[personas.dril]\ntargets = [{ platform = "tiktok" }, {}]\n[training]\nlearning_rate = "fast"\n')
    result = parodybot("config", "check", "--config", str(bad))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: {bad}: 4 problem(s):",
        "  worker.concurrency: must be a whole number >= 1 (got 0)",
        "  generation.mentions: must be one of 'defuse', 'drop', 'keep' (got 'shout')",
        "  personas.dril.targets[0].platform: must be one of 'bluesky', 'mastodon', 'outbox', 'x' (got 'tiktok')",
        "  training.learning_rate: must be a number (got 'fast')",
    ]
