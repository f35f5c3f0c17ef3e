"""The worker's datasets: ``<worker_dir>/datasets/<persona>/``.

``dataset.csv`` holds the cleaned posts (one column, header ``tweets``, the
csv module's quoting, UTF-8: the download_tweets.py format that
gpt-2-simple's CSV mode reads); ``meta.json`` says where they came from,
when, what cleaning dropped and the CSV's sha256. Both are written to a
temporary file first and moved into place with ``os.replace``.
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

from core.contract import BadInput, persona_label, check_persona_key

from workers.cleaning import CleanOptions, clean
from workers.sources import get_source

DATASETS_DIR = "datasets"
CSV_NAME = "dataset.csv"
META_NAME = "meta.json"
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
) -> dict:
    """Fetch from ``source``, clean, and store the persona's dataset.

    Returns a JSON-able summary (also saved as ``meta.json``). With
    ``min_chars`` > 0, too little text is a BadInput that says how much there
    is, and the previous dataset is left as it was.
    """
    target = dataset_dir(worker_dir, persona)
    src = get_source(source)
    raw = src.fetch(handle=handle, file=Path(file) if file is not None else None, base_url=base_url,
                    limit=limit, on_progress=on_progress)
    result = clean(raw, options)
    chars = sum(len(t) for t in result.kept)
    dropped = ", ".join(f"{n} {rule}" for rule, n in result.dropped.items() if n) or "none"
    if not result.kept:
        raise BadInput(f"no posts left after cleaning {len(raw)} from {src.name} (dropped: {dropped})")
    if chars < min_chars:
        raise BadInput(
            f"too little text for {persona_label(persona)}: {len(result.kept)} posts, {chars:,} characters after cleaning "
            f"(dropped: {dropped}); at least {min_chars:,} are needed. Add more posts (another source or "
            "a bigger file)"
        )

    data = texts_to_csv(result.kept)
    summary = {
        "persona": persona,
        "source": src.name,
        "read_from": getattr(src, "read_from", None),  # which export format, for an archive
        "handle": handle,
        "file": Path(file).name if file is not None else None,
        "fetched": len(raw),
        "kept": len(result.kept),
        "dropped": dict(result.dropped),
        "chars": chars,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "fetched_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "options": asdict(options),
    }
    _atomic_write(target / CSV_NAME, data)
    _atomic_write(target / META_NAME, (json.dumps(summary, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    return summary


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
