"""The worker's datasets: ``<worker_dir>/datasets/<persona>/``.

``dataset.csv`` holds the cleaned posts (one column, header ``tweets``, the
csv module's quoting, UTF-8: the download_tweets.py format that
gpt-2-simple's CSV mode reads); ``posts.jsonl`` the same posts with where each
came from (``{"key", "source", "text"}``); ``meta.json`` says where they came
from, when, what cleaning dropped, the posts per source and the CSV's sha256.
Each is written to a temporary file first and moved into place with
``os.replace``.

A persona's sources are merged: every import adds to the dataset the posts it
does not hold yet, known by the source's post id (``x:dril:1790...``) or,
where a source has none (a one-column CSV), by the text's hash; a text the
dataset holds from another source is not added twice. Importing a source
again (a refresh) adds only what is new. ``replace=True`` starts afresh.
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable, TextIO

import regex

from core.contract import BadInput, persona_label, check_persona_key

from workers.cleaning import CleanOptions, clean
from workers.sources import get_source

DATASETS_DIR = "datasets"
CSV_NAME = "dataset.csv"
META_NAME = "meta.json"
POSTS_NAME = "posts.jsonl"
HEADER = "tweets"


def dataset_dir(worker_dir: Path, persona: str) -> Path:
    check_persona_key(persona)
    root = (Path(worker_dir) / DATASETS_DIR).resolve()
    path = (root / persona).resolve()
    if path.parent != root:  # cannot happen with a checked name; belt and braces
        raise BadInput(f"persona {persona!r} would leave the datasets folder")
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def texts_to_csv(texts: list[str]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow([HEADER])
    for text in texts:
        writer.writerow([text])
    return buf.getvalue().encode("utf-8")


def import_dataset(
    worker_dir: Path,
    persona: str,
    source: str,
    *,
    file: Path | None = None,
    handle: str | None = None,
    base_url: str | None = None,
    options: CleanOptions = CleanOptions(),
    on_progress: Callable[[int], None] | None = None,
    min_chars: int = 0,
    limit: int | None = None,
    exclude: str | None = None,
    replace: bool = False,
) -> dict:
    """Fetch from ``source``, clean, and add what is new to the persona's dataset.

    ``limit``: at most that many posts fetched. ``exclude``: a regular
    expression; source posts it finds are left out (counted as ``excluded``).
    Returns a JSON-able summary (also saved as ``meta.json``): ``kept`` is
    the posts in the dataset now, ``added`` those this import brought,
    ``sources`` the posts per source. With ``min_chars`` > 0, too little text
    is a BadInput that says how much there is, and the previous dataset is
    left as it was.
    """
    target = dataset_dir(worker_dir, persona)
    src = get_source(source)
    pattern = _exclude_pattern(exclude)
    raw = src.fetch(handle=handle, file=Path(file) if file is not None else None, base_url=base_url,
                    limit=limit, on_progress=on_progress)
    wanted = [p for p in raw if not (pattern and _matches(pattern, p.text or ""))]
    result = clean(wanted, options)
    result.dropped["excluded"] = len(raw) - len(wanted)
    dropped = ", ".join(f"{n} {rule}" for rule, n in result.dropped.items() if n) or "none"
    label = source_label(src.name, handle, file)
    posts = [] if replace else load_posts(worker_dir, persona)
    keys, texts = {p["key"] for p in posts}, {p["text"] for p in posts}
    added = 0
    for text, post_id in zip(result.kept, result.kept_ids):
        key = f"{label}:{post_id}" if post_id else "text:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
        if key in keys or text in texts:
            continue  # the dataset holds it already (an earlier import, or another source)
        keys.add(key)
        texts.add(text)
        posts.append({"key": key, "source": label, "text": text})
        added += 1
    if not posts:
        raise BadInput(f"no posts left after cleaning {len(raw)} from {src.name} (dropped: {dropped})")
    chars = sum(len(p["text"]) for p in posts)
    if chars < min_chars:
        raise BadInput(
            f"too little text for {persona_label(persona)}: {len(posts)} posts, {chars:,} characters after cleaning "
            f"(dropped: {dropped}); at least {min_chars:,} are needed. Add more posts (another source or "
            "a bigger file)"
        )

    data = texts_to_csv([p["text"] for p in posts])
    sources: dict[str, int] = {}
    for p in posts:
        sources[p["source"]] = sources.get(p["source"], 0) + 1
    summary = {
        "persona": persona,
        "source": src.name,
        "label": label,
        "read_from": getattr(src, "read_from", None),  # which export format, for an archive
        "handle": handle,
        "file": Path(file).name if file is not None else None,
        "fetched": len(raw),
        "kept": len(posts),
        "added": added,
        "already": len(result.kept) - added,  # fetched again, or held from another source
        "sources": sources,
        "dropped": dict(result.dropped),
        "chars": chars,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "fetched_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "options": asdict(options),
        "exclude": exclude,
    }
    lines = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in posts)
    _atomic_write(target / POSTS_NAME, lines.encode("utf-8"))
    _atomic_write(target / CSV_NAME, data)
    _atomic_write(target / META_NAME, (json.dumps(summary, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    return summary


def source_label(source: str, handle: str | None, file: Path | str | None) -> str:
    """x:dril, bluesky:dril.bsky.social, csv:posts.csv: what the per-source counts are named."""
    return f"{source}:{handle.lstrip('@').lower()}" if handle else f"{source}:{Path(file).name if file else '?'}"


def load_posts(worker_dir: Path, persona: str) -> list[dict]:
    """The dataset's posts with their keys and sources ([] without a dataset). A dataset
    from before sources were merged has no posts.jsonl: its posts come from its CSV."""
    directory = dataset_dir(worker_dir, persona)
    path = directory / POSTS_NAME
    if path.is_file():
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    if not (directory / CSV_NAME).is_file():
        return []
    meta = dataset_info(worker_dir, persona) or {}
    label = source_label(meta.get("source") or "earlier", meta.get("handle"), meta.get("file"))
    return [{"key": "text:" + hashlib.sha256(t.encode("utf-8")).hexdigest()[:32], "source": label, "text": t}
            for t in load_texts(worker_dir, persona)]


def _exclude_pattern(exclude: str | None):
    if not exclude:
        return None
    try:
        return regex.compile(exclude)
    except regex.error as exc:
        raise BadInput(f"exclude {exclude!r} is not a regular expression ({exc})") from None


def _matches(pattern, text: str) -> bool:
    try:  # a pattern that backtracks for ever on one post cannot stall the import
        return pattern.search(text, timeout=0.1) is not None
    except TimeoutError:
        return True


def _csv_path(worker_dir: Path, persona: str) -> Path:
    path = dataset_dir(worker_dir, persona) / CSV_NAME
    if not path.is_file():
        raise BadInput(f"no dataset for {persona_label(persona)} yet: run `parodybot import` or /train {persona_label(persona)} first")
    return path


def load_texts(worker_dir: Path, persona: str) -> list[str]:
    """The persona's cleaned posts, in order."""
    with _csv_path(worker_dir, persona).open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != [HEADER]:
            raise BadInput(f"the dataset of {persona_label(persona)} is damaged (header {header!r}); import it again")
        return [row[0] for row in reader if row]


def export_csv(worker_dir: Path, persona: str, out: TextIO) -> int:
    """Write the persona's dataset.csv to ``out``; returns the number of posts."""
    texts = load_texts(worker_dir, persona)
    out.write(texts_to_csv(texts).decode("utf-8"))
    return len(texts)


def dataset_info(worker_dir: Path, persona: str) -> dict | None:
    """The summary saved at import (``meta.json``), or None without a dataset."""
    directory = dataset_dir(worker_dir, persona)
    meta = directory / META_NAME
    if not (directory / CSV_NAME).is_file() or not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
