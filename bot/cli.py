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
from bot.contract import BadInput, WorkFailed

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


# --- worker admin commands (run the worker's services in this process) ----


def _progress_printer(as_json: bool):
    """Human progress on stderr (stdout stays one JSON object with --json)."""
    def show(event: dict) -> None:
        if event.get("phase") == "finetuning" and event.get("loss") is not None:
            click.echo(f"step {event['step']}/{event['steps']} loss {event['loss']:.3f} avg {event['avg_loss']:.3f}"
                       f" eta {event.get('eta') or 0:.0f}s", err=True)
        elif event.get("phase") and event.get("phase") != "finetuning":
            click.echo(f"{event['phase']}…", err=True)
    return show


@cli.command("import")
@click.argument("persona")
@click.option("--source", required=True, type=click.Choice(["csv", "archive", "x", "bluesky", "mastodon", "twint"]))
@click.option("--file", "file", type=click.Path(path_type=Path), help="CSV or X archive .zip (csv, archive)")
@click.option("--handle", help="whose posts (x, bluesky, mastodon)")
@click.option("--api", "api", help="base URL of the API or instance (self-hosted or a test server)")
@click.option("--keep-replies", is_flag=True, help="keep replies instead of dropping them")
@click.option("--strip-mentions", is_flag=True)
@click.option("--strip-hashtags", is_flag=True)
@with_config
@json_option
def import_command(cfg: Config, persona, source, file, handle, api, keep_replies, strip_mentions, strip_hashtags, as_json):
    """Fetch and clean a persona's posts into the worker's dataset."""
    from bot.contract import check_persona_name
    from workers.cleaning import CleanOptions
    from workers.datasets import import_dataset

    check_persona_name(persona)
    if source in ("csv", "archive") and not file:
        raise BadInput(f"--source {source} needs --file PATH")
    if source in ("x", "bluesky", "mastodon", "twint") and not handle:
        raise BadInput(f"--source {source} needs --handle NAME")
    options = CleanOptions(drop_replies=not keep_replies, strip_mentions=strip_mentions, strip_hashtags=strip_hashtags)
    summary = import_dataset(cfg.worker_dir, persona, source, file=file, handle=handle, base_url=api, options=options)
    dropped = ", ".join(f"{k} {v}" for k, v in summary["dropped"].items() if v) or "none"
    emit(summary, as_json, f"{persona}: kept {summary['kept']} posts ({summary['chars']:,} characters); dropped {dropped}")


@cli.group("dataset")
def dataset_group() -> None:
    """The worker's cleaned datasets."""


@dataset_group.command("export")
@click.argument("persona")
@with_config
def dataset_export(cfg: Config, persona) -> None:
    """Print the cleaned dataset as a one-column CSV (header `tweets`)."""
    from bot.contract import check_persona_name
    from workers.datasets import export_csv

    check_persona_name(persona)
    export_csv(cfg.worker_dir, persona, sys.stdout)


@cli.command("train")
@click.argument("persona")
@click.option("--steps", type=int, default=None, help="finetuning steps (default from the config)")
@click.option("--model", default=None, help="tiny, 124M, 355M or a local model directory")
@click.option("--learning-rate", type=float, default=None)
@with_config
@json_option
def train_command(cfg: Config, persona, steps, model, learning_rate, as_json) -> None:
    """Finetune on the persona's dataset (run `parodybot import` first)."""
    from bot.contract import check_persona_name
    from workers.finetune import run_training

    check_persona_name(persona)
    steps = cfg.training.steps if steps is None else steps
    result = run_training(
        cfg.worker_dir, persona, steps=steps, model=model or cfg.worker.default_model,
        learning_rate=learning_rate or cfg.training.learning_rate, save_every=cfg.training.save_every,
        job_id="cli", on_event=_progress_printer(as_json), should_cancel=lambda: False,
    )
    emit(result, as_json, f"{persona}: {result['state']} after {result['steps_done']} steps, final loss {result['final_loss']:.3f}\n"
         + "\n".join(f"  sample: {s}" for s in result.get("samples", [])))


@cli.command("generate")
@click.argument("persona")
@click.option("-n", "count", type=int, default=None, help="how many candidates to aim for")
@click.option("--temperature", type=float, default=None)
@click.option("--top-p", "top_p", type=float, default=None)
@click.option("--length", type=int, default=None, help="longest sample in tokens")
@click.option("--platform", "platforms", multiple=True, type=click.Choice(["x", "bluesky", "mastodon"]),
              help="length limits to respect (default x)")
@with_config
@json_option
def generate_command(cfg: Config, persona, count, temperature, top_p, length, platforms, as_json) -> None:
    """Generate filtered candidates with the persona's model."""
    from bot.contract import check_persona_name
    from workers.generation import GenerationService

    check_persona_name(persona)
    gen = cfg.generation
    result = GenerationService(cfg.worker_dir, max_loaded=1).generate(
        persona, count or gen.count,
        temperature=gen.temperature if temperature is None else temperature,
        top_p=gen.top_p if top_p is None else top_p,
        length=length or gen.length, platforms=platforms or ("x",), blocklist=tuple(gen.blocklist),
    )
    lines = [f"- {c['text']}" for c in result["candidates"]]
    dropped = ", ".join(f"{k} {v}" for k, v in result["dropped"].items() if v) or "none"
    emit(result, as_json, "\n".join(lines + [f"({len(lines)} candidates; dropped {dropped})"]))


@cli.group("model")
def model_group() -> None:
    """Base models."""


@model_group.command("build-tiny")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@json_option
def model_build_tiny(directory: Path, as_json: bool) -> None:
    """Write a tiny random GPT-2 (for tests and the offline demo) into DIRECTORY."""
    from workers.tiny_model import build_tiny_model, model_info

    path = build_tiny_model(directory)
    emit({"model_dir": str(path), **model_info(path)}, as_json, f"tiny model written to {path}")


@model_group.command("download")
@click.argument("name", type=click.Choice(["124M", "355M"]))
@with_config
@json_option
def model_download(cfg: Config, name: str, as_json: bool) -> None:
    """Download a GPT-2 base model into the worker's model directory."""
    from workers.models import download_model

    path = download_model(cfg.worker_dir / "models", name)
    emit({"model_dir": str(path)}, as_json, f"{name} is in {path}")


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
    """The persona's approved queue, in posting order (next first)."""
    from bot.contract import check_persona_name

    check_persona_name(persona)

    async def go(store):
        if await store.get_persona(persona) is None:
            raise BadInput(f"there is no persona {persona!r}")
        return await store.approved_queue(persona)

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

    The bot delivers the log-channel line and the candidate's message edit when it next looks."""
    from bot.contract import check_persona_name
    from bot.logs import setup_logging
    from bot.posting import PostingService, format_report

    check_persona_name(persona)
    setup_logging("WARNING")

    async def go(store):
        return await PostingService(store, cfg).run(persona, manual=True)

    report = asyncio.run(_with_store(cfg, go))
    emit(report.to_json(), as_json, format_report(report))
    sys.exit(0 if report.posted else 1)


def main() -> None:
    cli(prog_name="parodybot")


if __name__ == "__main__":
    main()
