"""The `parodybot` command line (also `python -m bot`).

The worker's admin commands live in app/worker_commands.py and import the worker only
when they run, so `parodybot bot` never loads TensorFlow. Errors a person can
fix print one line and exit 2, no traceback (core/clitools.py).
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from core import __version__
from core.clitools import FriendlyGroup, config_option, emit, json_option, with_config
from core.config import Config, load_config
from app.worker_commands import COMMANDS as WORKER_COMMANDS  # light: they import the worker when run


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="parodybot")
def cli() -> None:
    """Run AI parody accounts with your friends."""


# --- processes -------------------------------------------------------------


@cli.command()
@with_config
def run(cfg: Config) -> None:
    """Start the bot and an embedded worker process (the default set-up)."""
    from app.runner import run_all

    run_all(cfg)


@cli.command("bot")
@with_config
def bot_command(cfg: Config) -> None:
    """Start only the bot (workers run elsewhere and share the queue)."""
    from app.runner import run_bot

    run_bot(cfg)


@cli.command()
@with_config
def worker(cfg: Config) -> None:
    """Start only a worker (GPU machine): it needs nothing but the queue."""
    from workers.main import run_worker

    run_worker(cfg)


@cli.command()
@with_config
def demo(cfg: Config) -> None:
    """The whole loop against a local Discord stand-in: no account, token or internet."""
    from app.demo import run_demo

    sys.exit(asyncio.run(run_demo(cfg)))


# --- config and database ---------------------------------------------------


@cli.group("config")
def config_group() -> None:
    """Configuration."""


@config_group.command("check")
@config_option
@json_option
def config_check(config_path: Path | None, as_json: bool) -> None:
    """Validate a config file; exit 0 when it is valid."""
    cfg = load_config(config_path)
    emit(
        {"ok": True, "config": str(cfg.source) if cfg.source else None, "data_dir": str(cfg.data_path)},
        as_json,
        f"ok: {cfg.source or 'built-in defaults'} (data in {cfg.data_path})",
    )


@cli.group("db")
def db_group() -> None:
    """Database."""


@db_group.command("migrate")
@with_config
@json_option
def db_migrate(cfg: Config, as_json: bool) -> None:
    """Apply pending schema migrations."""
    from bot.store import Store

    async def go():
        store = await Store.open(cfg.db_path)  # opening applies what is pending
        try:
            return await store.schema_version()
        finally:
            await store.close()

    version = asyncio.run(go())
    emit({"database": str(cfg.db_path), "schema_version": version}, as_json,
         f"{cfg.db_path}: schema version {version}")


# --- posting (the same service as /queue and /post now) ---------------------


async def _with_store(cfg: Config, fn):
    from bot.store import Store

    store = await Store.open(cfg.db_path)
    try:
        return await fn(store)
    finally:
        await store.close()


@cli.command("queue")
@click.argument("persona")
@with_config
@json_option
def queue_command(cfg: Config, persona: str, as_json: bool) -> None:
    """The persona's approved queue, in posting order (next first). PERSONA: NAME or GUILD_ID/NAME."""
    from app.persona_ref import require_in_store

    async def go(store):
        return await store.approved_queue((await require_in_store(store, persona))["key"])

    queue = asyncio.run(_with_store(cfg, go))
    items = [{"position": i, "id": c["id"], "score": c["score"], "queue_rank": c["queue_rank"], "text": c["text"],
              "created_at": c["created_at"], "note": c["note"]} for i, c in enumerate(queue, 1)]
    human = "\n".join(f"{i['position']}. #{i['id']} ({i['score']:+d}) {' '.join(i['text'].split())}" for i in items)
    emit({"persona": persona, "queue": items}, as_json, human or f"{persona}: the queue is empty")


@cli.command("post-now")
@click.argument("persona")
@with_config
@json_option
def post_now_command(cfg: Config, persona: str, as_json: bool) -> None:
    """Post the persona's best approved candidate now, to every target; exit 0 when it went out everywhere.
    PERSONA: NAME or GUILD_ID/NAME.

    The bot delivers the log-channel line and the candidate's message edit when it next looks."""
    from app.persona_ref import require_in_store
    from bot.posting import PostingService, format_report
    from core.logs import setup_logging

    setup_logging("WARNING")

    async def go(store):
        return await PostingService(store, cfg).run((await require_in_store(store, persona))["key"], manual=True)

    report = asyncio.run(_with_store(cfg, go))
    emit(report.to_json(), as_json, format_report(report))
    sys.exit(0 if report.posted else 1)


for command in WORKER_COMMANDS:
    cli.add_command(command)


def main() -> None:
    cli(prog_name="parodybot")


if __name__ == "__main__":
    main()
