"""``csv``: download_tweets.py's one-column CSV, or any CSV with one text column."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from core.contract import BadInput

from .base import ProgressFn, RawPost, check_limit, need_file, report

#: Column names taken as the post text when a CSV has several columns, in order.
TEXT_COLUMNS = ("tweets", "text", "full_text", "content")
ID_COLUMNS = ("id", "id_str", "tweet_id")
DATE_COLUMNS = ("created_at", "date", "timestamp")
# The older X export's tweets.csv names what a post is: a non-empty id there
# means a reply (a retweet); an empty one means it is not.
REPLY_COLUMNS = ("in_reply_to_status_id", "in_reply_to_status_id_str", "in_reply_to_id")
RETWEET_COLUMNS = ("retweeted_status_id", "retweeted_status_id_str")


def decode_utf8(data: bytes, path: Path) -> str:
    """UTF-8 (a BOM is fine) or BadInput that says where the first bad byte is."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        start = e.start
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        raise BadInput(
            f"{path.name} must be UTF-8: byte 0x{data[start]:02X} at line {line}, column {column} "
            f"(byte offset {start}) is not valid UTF-8; save the file as UTF-8 and try again"
        ) from None


def _pick(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


class CsvSource:
    name = "csv"

    def fetch(self, *, handle: str | None = None, file: Path | None = None, base_url: str | None = None,
              limit: int | None = None, on_progress: ProgressFn | None = None) -> list[RawPost]:
        path = need_file(file, "csv")
        limit = check_limit(limit, None)
        data = path.read_bytes()
        if data.startswith(b"PK\x03\x04"):
            raise BadInput(f"{path.name} is a zip file, not a CSV: use the archive source for an X data export")
        text = decode_utf8(data, path)
        if not text.strip():
            raise BadInput(f"{path.name} is empty: it needs a header row (tweets) and one post per row")

        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = next(reader)
            text_col = 0
            if len(header) > 1:
                picked = _pick(header, TEXT_COLUMNS)
                if picked is None:
                    raise BadInput(
                        f"{path.name} has {len(header)} columns ({', '.join(repr(h) for h in header[:10])}) "
                        f"and none is called {', '.join(TEXT_COLUMNS)}: name the post text column one of "
                        "those, or keep only that column"
                    )
                text_col = picked
            id_col = _pick(header, ID_COLUMNS) if len(header) > 1 else None
            date_col = _pick(header, DATE_COLUMNS) if len(header) > 1 else None
            reply_col = _pick(header, REPLY_COLUMNS) if len(header) > 1 else None
            retweet_col = _pick(header, RETWEET_COLUMNS) if len(header) > 1 else None

            def flag(row: list[str], col: int | None) -> bool | None:
                if col is None:
                    return None  # the file cannot say
                return bool(row[col].strip()) if col < len(row) else False

            posts: list[RawPost] = []
            for row in reader:
                if not row:
                    continue  # a blank line between records
                value = row[text_col] if text_col < len(row) else ""
                posts.append(RawPost(
                    text=value,
                    id=(row[id_col] or None) if id_col is not None and id_col < len(row) else None,
                    created_at=(row[date_col] or None) if date_col is not None and date_col < len(row) else None,
                    is_reply=flag(row, reply_col), is_retweet=flag(row, retweet_col),
                ))
                if len(posts) % 1000 == 0:
                    report(on_progress, len(posts))
                if limit is not None and len(posts) >= limit:
                    break
        except csv.Error as e:
            raise BadInput(f"{path.name} is not a readable CSV (line {reader.line_num}): {e}") from None

        if not posts:
            raise BadInput(f"{path.name} has a header row but no posts under it")
        report(on_progress, len(posts))
        return posts
