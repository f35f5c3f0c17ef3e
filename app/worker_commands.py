"""The worker's admin commands (`parodybot import|dataset|train|generate|model`).

They run the worker's services in this process; the heavy modules are
imported inside each command, so `parodybot --help` stays light. A PERSONA
argument is NAME or GUILD_ID/NAME (app/persona_ref.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from core.clitools import emit, json_option, with_config
from core.config import Config
from core.contract import BadInput, persona_label
from app.persona_ref import worker_key

def _progress_printer(as_json: bool):
    """Human progress on stderr (stdout stays one JSON object with --json)."""
    shown = {"val_loss": None, "sample": None}

    def show(event: dict) -> None:
        if event.get("val_loss") is not None and event["val_loss"] != shown["val_loss"]:
            shown["val_loss"] = event["val_loss"]
            click.echo(f"validation loss {event['val_loss']:.3f} (best {event.get('best_val_loss', 0):.3f})", err=True)
        if event.get("sample") and event["sample"] != shown["sample"]:
            shown["sample"] = event["sample"]
            click.echo(f"sample at step {event.get('sample_step')}: {event['sample']}", err=True)
        if event.get("phase") == "finetuning" and event.get("loss") is not None:
            click.echo(f"step {event['step']}/{event['steps']} loss {event['loss']:.3f} avg {event['avg_loss']:.3f}"
                       f" eta {event.get('eta') or 0:.0f}s", err=True)
        elif event.get("phase") and event.get("phase") != "finetuning":
            click.echo(f"{event['phase']}…", err=True)
    return show


@click.command("import")
@click.argument("persona")
@click.option("--source", required=True, type=click.Choice(["csv", "archive", "x", "bluesky", "mastodon", "twint"]))
@click.option("--file", "file", type=click.Path(path_type=Path), help="CSV or X archive .zip (csv, archive)")
@click.option("--handle", help="whose posts (x, bluesky, mastodon)")
@click.option("--api", "api", help="base URL of the API or instance (self-hosted or a test server)")
@click.option("--keep-replies", is_flag=True, help="keep replies instead of dropping them")
@click.option("--strip-mentions", is_flag=True)
@click.option("--strip-hashtags", is_flag=True)
@click.option("--limit", type=int, default=None, help="fetch at most this many posts")
@click.option("--exclude", default=None, help="a regular expression: source posts it finds are left out")
@click.option("--replace", is_flag=True, help="start the dataset afresh instead of adding to it")
@with_config
@json_option
def import_command(cfg: Config, persona, source, file, handle, api, keep_replies, strip_mentions, strip_hashtags,
                   limit, exclude, replace, as_json):
    """Fetch and clean a persona's posts into the worker's dataset."""
    from workers.cleaning import CleanOptions
    from workers.datasets import import_dataset

    persona = worker_key(cfg, persona)
    if source in ("csv", "archive") and not file:
        raise BadInput(f"--source {source} needs --file PATH")
    if source in ("x", "bluesky", "mastodon", "twint") and not handle:
        raise BadInput(f"--source {source} needs --handle NAME")
    options = CleanOptions(drop_replies=not keep_replies, strip_mentions=strip_mentions, strip_hashtags=strip_hashtags)
    summary = import_dataset(cfg.worker_dir, persona, source, file=file, handle=handle, base_url=api, options=options,
                             limit=limit, exclude=exclude, replace=replace)
    dropped = ", ".join(f"{k} {v}" for k, v in summary["dropped"].items() if v) or "none"
    read = f" from the {summary['read_from']}" if summary.get("read_from") else ""
    sources = ", ".join(f"{k} {v}" for k, v in summary["sources"].items())
    emit(summary, as_json, f"{persona_label(persona)}: {summary['added']} new post(s){read} "
         f"({summary['already']} it had already); the dataset has "
         f"{summary['kept']} ({summary['chars']:,} characters): {sources}; dropped {dropped}")


@click.group("dataset")
def dataset_group() -> None:
    """The worker's cleaned datasets."""


@dataset_group.command("export")
@click.argument("persona")
@with_config
def dataset_export(cfg: Config, persona) -> None:
    """Print the cleaned dataset as a one-column CSV (header `tweets`)."""
    from workers.datasets import export_csv

    persona = worker_key(cfg, persona)
    export_csv(cfg.worker_dir, persona, sys.stdout)


@click.command("train")
@click.argument("persona")
@click.option("--steps", type=int, default=None, help="finetuning steps (default from the config)")
@click.option("--model", default=None, help="tiny, 124M, 355M or a local model directory")
@click.option("--learning-rate", type=float, default=None)
@click.option("--more-steps", "more_steps", type=int, default=None,
              help="continue the persona's model this many steps more (--steps and --model are then ignored)")
@click.option("--from", "start_from", default=None,
              help="begin from this persona's model, or a local gpt-2-simple checkpoint folder, not the base model")
@click.option("--early-stop", "early_stop", type=int, default=None,
              help="stop once the validation loss has not improved this many times in a row")
@click.option("--sample-every", "sample_every", type=int, default=None, help="print a sample every N steps")
@with_config
@json_option
def train_command(cfg: Config, persona, steps, model, learning_rate, more_steps, start_from, early_stop,
                  sample_every, as_json) -> None:
    """Finetune on the persona's dataset (run `parodybot import` first)."""
    from workers.finetune import run_training

    persona = worker_key(cfg, persona)
    steps = cfg.training.steps if steps is None else steps
    base = None
    if start_from:
        base = Path(start_from)
        if not base.is_dir():  # a persona's name, not a folder
            base = cfg.worker_dir / "checkpoint" / worker_key(cfg, start_from)
    result = run_training(
        cfg.worker_dir, persona, steps=steps, model=model or cfg.worker.default_model,
        learning_rate=learning_rate or cfg.training.learning_rate, save_every=cfg.training.save_every,
        job_id="cli", on_event=_progress_printer(as_json), should_cancel=lambda: False,
        more_steps=more_steps, start_from=base,
        validation_fraction=cfg.training.validation_fraction,
        val_every=cfg.training.validation_every or cfg.training.save_every,
        val_batch_count=cfg.training.validation_batches,
        early_stop_patience=cfg.training.early_stop if early_stop is None else early_stop,
        sample_every=cfg.training.sample_every if sample_every is None else sample_every,
    )
    emit(result, as_json, f"{persona_label(persona)}: {result['state']} after {result['steps_done']} steps, final loss {result['final_loss']:.3f}\n"
         + "\n".join(f"  sample: {s}" for s in result.get("samples", [])))


@click.command("generate")
@click.argument("persona")
@click.option("-n", "count", type=int, default=None, help="how many candidates to aim for")
@click.option("--temperature", type=float, default=None)
@click.option("--top-p", "top_p", type=float, default=None)
@click.option("--length", type=int, default=None, help="longest sample in tokens")
@click.option("--platform", "platforms", multiple=True, type=click.Choice(["x", "bluesky", "mastodon"]),
              help="length limits to respect (default x)")
@click.option("--top-k", "top_k", type=int, default=None, help="keep the k likeliest tokens per step (0: off)")
@click.option("--prompt", default="", help="every candidate starts with this text")
@click.option("--seed", type=int, default=None, help="the same seed gives the same candidates")
@click.option("--mentions", type=click.Choice(["defuse", "drop", "keep"]), default=None,
              help="drop candidates with @mentions (defuse and keep matter when posting)")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the candidates to this file (gpt-2-simple's generate_to_file format)")
@with_config
@json_option
def generate_command(cfg: Config, persona, count, temperature, top_p, length, platforms, top_k, prompt, seed,
                     mentions, out, as_json) -> None:
    """Generate filtered candidates with the persona's model."""
    from workers.generation import GenerationService

    persona = worker_key(cfg, persona)
    gen = cfg.generation
    result = GenerationService(cfg.worker_dir, max_loaded=1).generate(
        persona, count or gen.count,
        temperature=gen.temperature if temperature is None else temperature,
        top_p=gen.top_p if top_p is None else top_p,
        top_k=gen.top_k if top_k is None else top_k, prompt=prompt, seed=seed, mentions=mentions or gen.mentions,
        length=length or gen.length, platforms=platforms or ("x",), blocklist=tuple(gen.blocklist),
    )
    dropped = ", ".join(f"{k} {v}" for k, v in result["dropped"].items() if v) or "none"
    if out is not None:
        out.write_text("".join(c["text"] + "\n" + "=" * 20 + "\n" for c in result["candidates"]), encoding="utf-8")
        emit(result, as_json, f"{len(result['candidates'])} candidates written to {out}; dropped {dropped}")
        return
    lines = [f"- {c['text']}" for c in result["candidates"]]
    emit(result, as_json, "\n".join(lines + [f"({len(lines)} candidates; dropped {dropped})"]))


@click.group("model")
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


COMMANDS = (import_command, dataset_group, train_command, generate_command, model_group)
