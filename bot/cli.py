"""The `parodybot` command line (also `python -m bot`).

Worker commands import the worker lazily, so `parodybot bot` never loads
TensorFlow. Errors a person can fix print one line and exit 2, no traceback.
"""
from __future__ import annotations

import asyncio
import functools
import json
import sys
from pathlib import Path

import click

from bot import __version__
from bot.config import Config, ConfigError, load_config
from bot.contract import BadInput

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="config file (default: ./config.toml if present, else built-in defaults)",
)
json_option = click.option("--json", "as_json", is_flag=True, help="print one JSON object")


class FriendlyGroup(click.Group):
    """Turns our own errors into one clear line on stderr and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ConfigError, BadInput) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            sys.exit(130)


def with_config(fn):
    @config_option
    @functools.wraps(fn)
    def wrapper(config_path, **kwargs):
        return fn(load_config(config_path), **kwargs)

    return wrapper


def emit(data: dict, as_json: bool, human: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, default=str))
    else:
        click.echo(human if human is not None else json.dumps(data, indent=2, ensure_ascii=False, default=str))


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="parodybot")
def cli() -> None:
    """Run AI parody accounts with your friends."""


# --- processes -------------------------------------------------------------


@cli.command()
@with_config
def run(cfg: Config) -> None:
    """Start the bot and an embedded worker process (the default set-up)."""
    from bot.runner import run_all

    run_all(cfg)


@cli.command("bot")
@with_config
def bot_command(cfg: Config) -> None:
    """Start only the bot (workers run elsewhere and share the queue)."""
    from bot.runner import run_bot

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
    from bot.demo import run_demo

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


def main() -> None:
    cli(prog_name="parodybot")


if __name__ == "__main__":
    main()
