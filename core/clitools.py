"""What every `parodybot` command shares: the --config and --json options,
one-line errors instead of tracebacks, and output as text or one JSON object."""
from __future__ import annotations

import functools
import json
import sqlite3
import sys
from pathlib import Path

import click

from core.config import ConfigError, load_config
from core.contract import BadInput, WorkFailed

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
        except (ConfigError, BadInput, WorkFailed) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            click.echo(f"error: the database cannot be read ({exc}): move the file away to start afresh, or set "
                       "data_dir / PARODYBOT_DATA_DIR to the folder that holds yours", err=True)
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
