"""``archive``: the user's own X (Twitter) data export, a ``.zip``.

The posts are in ``data/tweets.js`` (older exports: ``data/tweet.js``, or
``tweet.js`` at the top), split into ``tweets-part1.js``, ``tweets-part2.js``
... when large. Each file is JavaScript: ``window.YTD.tweets.part0 = [ ... ]``
with one ``{"tweet": {...}}`` per post (older exports: the post object without
the wrapper). ``full_text`` is HTML-escaped; cleaning unescapes it.

A current export also has ``community-tweet.js`` (posts made in X
Communities, the same shape, added) and ``note-tweet.js`` (``{"noteTweet":
{"core": {"text": ...}, "createdAt": ...}}``: the whole text of posts over 280
characters, whose ``full_text`` in tweets.js is cut; the whole text replaces
the cut one, matched by time or by the cut text being its start).

The export X made until about 2018 is another format: ``data/js/tweets/
YYYY_MM.js`` (``Grailbird.data.tweets_YYYY_MM = [ ... ]``, created_at like
``2014-01-31 23:59:59 +0000``) beside a ``tweets.csv`` at the top; the .js
files are read, or ``tweets.csv`` (with its reply and retweet columns) when
they are missing. ``ArchiveSource.read_from`` says which format was read.

The zip is checked before anything is read (member names, total size,
compression ratio) and members are read straight from the zip, never
extracted; the size limit is enforced again while reading.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import posixpath
import re
import zipfile
from pathlib import Path

from core.contract import BadInput

from .base import ProgressFn, RawPost, check_limit, need_file, report

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
#: A member that expands more than this many times is treated as a zip bomb
#: (JSON text compresses about 5-15 times).
MAX_RATIO = 100
#: ... but only when it expands to more than this (tiny members compress oddly).
RATIO_MIN_BYTES = 1024 * 1024

TWEETS_FILE = re.compile(r"^(tweets?)(?:-part(\d+))?\.js$")
EXTRA_FILE = re.compile(r"^(community-tweet|note-tweet)(?:-part(\d+))?\.js$")
GRAILBIRD_FILE = re.compile(r"(?:^|/)data/js/tweets/(\d{4})_(\d{2})\.js$")
CURRENT = "current X export (data/tweets.js)"
GRAILBIRD = "older X export (data/js/tweets/YYYY_MM.js)"
OLD_CSV = "older X export (tweets.csv)"
LOOKED_FOR = "data/tweets.js (or data/tweet.js, tweets-part1.js, ...)"
_CHUNK = 1024 * 1024


def _unsafe_name(name: str) -> bool:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return True
    parts = re.split(r"[\\/]+", name)
    return ".." in parts or "\x00" in name


def check_zip(zf: zipfile.ZipFile) -> None:
    """Refuse a zip with a member that could escape or that looks like a zip bomb.

    The size limit applies to the members we read (the tweets files), not to
    the photos and videos a full export carries and we never open.
    """
    for info in zf.infolist():
        if _unsafe_name(info.filename):
            raise BadInput(f"the archive has a member with an unsafe path ({info.filename!r}); refusing it")
        if info.file_size > RATIO_MIN_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > MAX_RATIO:
                raise BadInput(
                    f"the archive member {info.filename!r} expands {ratio:.0f} times "
                    f"({info.file_size:,} bytes): this looks like a zip bomb; refusing it"
                )


def check_size(members: list[zipfile.ZipInfo], max_bytes: int) -> None:
    total = sum(info.file_size for info in members)
    if total > max_bytes:
        raise BadInput(
            f"the archive's tweets files expand to {total:,} bytes, over the limit of {max_bytes:,}"
        )


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """Read one member, stopping as soon as it goes over ``budget`` bytes."""
    out = bytearray()
    with zf.open(info) as fh:
        while True:
            chunk = fh.read(_CHUNK)
            if not chunk:
                break
            out += chunk
            if len(out) > budget:
                raise BadInput(
                    f"the archive member {info.filename!r} expands beyond the size limit; refusing it"
                )
    return bytes(out)


def parse_tweets_js(data: bytes, name: str) -> list[dict]:
    """``window.YTD.tweets.partN = [ ... ]`` to the list of post objects."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadInput(f"{name} in the archive is not UTF-8 text") from None
    start = text.find("[")
    prefix = text[:start] if start >= 0 else text
    if start < 0 or ("=" not in prefix and prefix.strip()):
        raise BadInput(f"{name} in the archive is not in the window.YTD.tweets.part0 = [...] format")
    body = text[start:].strip().rstrip(";").strip()
    try:
        items = json.loads(body)
    except json.JSONDecodeError as e:
        raise BadInput(f"{name} in the archive is not valid JSON after its header: {e}") from None
    if not isinstance(items, list):
        raise BadInput(f"{name} in the archive does not hold a list of posts")
    out = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("tweet"), dict):
            item = item["tweet"]
        if isinstance(item, dict):
            out.append(item)
    return out


def _created(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    # "Wed Oct 10 20:19:24 +0000 2018" (current), "2014-01-31 23:59:59 +0000" (older),
    # "2023-05-01T12:00:00.000Z" (note-tweet.js)
    for fmt in ("%a %b %d %H:%M:%S %z %Y", "%Y-%m-%d %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return _dt.datetime.strptime(value.replace("Z", "+0000"), fmt).isoformat()
        except ValueError:
            continue
    return value


def to_raw_post(tweet: dict) -> RawPost | None:
    text = tweet.get("full_text", tweet.get("text"))
    if not isinstance(text, str):
        return None
    retweeted = tweet.get("retweeted") is True or text.startswith("RT @") or "retweeted_status" in tweet
    reply = any(tweet.get(k) not in (None, "") for k in (
        "in_reply_to_status_id", "in_reply_to_status_id_str", "in_reply_to_user_id", "in_reply_to_user_id_str"))
    tid = tweet.get("id_str", tweet.get("id"))
    return RawPost(text=text, id=str(tid) if tid is not None else None,
                   created_at=_created(tweet.get("created_at")), is_retweet=retweeted, is_reply=reply)


def _tweet_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The tweets files of one export, part0 first.

    Looked for in ``data/`` (the export), at the top of the zip (older
    exports), or one folder down (someone zipped the extracted folder again).
    """
    groups: dict[tuple[str, str], list[tuple[int, zipfile.ZipInfo]]] = {}
    for info in zf.infolist():
        if info.is_dir():
            continue
        directory, base = posixpath.split(info.filename.replace("\\", "/"))
        m = TWEETS_FILE.match(base)
        if not m:
            continue
        parts = [p for p in directory.split("/") if p]
        if len(parts) > 2 or (len(parts) == 2 and parts[1] != "data"):
            continue
        part = int(m.group(2)) if m.group(2) else 0
        groups.setdefault((directory, m.group(1)), []).append((part, info))
    if not groups:
        return []
    # tweets*.js before the older tweet*.js, data/ before other folders, shallow first
    best = min(groups, key=lambda k: (k[1] != "tweets", not k[0].rstrip("/").endswith("data"), k[0].count("/")))
    return [info for _, info in sorted(groups[best], key=lambda pi: pi[0])]


def _member_named(zf: zipfile.ZipFile, name: str) -> zipfile.ZipInfo | None:
    """``name`` at the top of the zip or one folder down."""
    found = [i for i in zf.infolist() if not i.is_dir()
             and posixpath.basename(i.filename) == name and i.filename.replace("\\", "/").count("/") <= 1]
    return min(found, key=lambda i: i.filename.count("/")) if found else None


def _extra_members(zf: zipfile.ZipFile, tweets: list[zipfile.ZipInfo]) -> list[tuple[str, zipfile.ZipInfo]]:
    """community-tweet*.js and note-tweet*.js beside the tweets files."""
    if not tweets:
        return []
    home = posixpath.dirname(tweets[0].filename.replace("\\", "/"))
    out = []
    for info in zf.infolist():
        directory, base = posixpath.split(info.filename.replace("\\", "/"))
        m = EXTRA_FILE.match(base)
        if m and directory == home and not info.is_dir():
            out.append((m.group(1), int(m.group(2) or 0), info))
    return [(kind, info) for kind, _, info in sorted(out, key=lambda k: (k[0], k[1]))]


def _grailbird_members(zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The older export's data/js/tweets/YYYY_MM.js, oldest month first."""
    months = []
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        m = GRAILBIRD_FILE.search(name)
        if m and not info.is_dir() and name.count("/") <= 4:
            months.append(((int(m.group(1)), int(m.group(2))), info))
    return [info for _, info in sorted(months, key=lambda mi: mi[0])]


def _read_old_csv(data: bytes, limit: int | None, on_progress: ProgressFn | None) -> list[RawPost]:
    """tweets.csv of the older export, with its reply and retweet columns (the csv source reads it)."""
    import tempfile

    from .csv_file import CsvSource

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tweets.csv"
        path.write_bytes(data)
        return CsvSource().fetch(file=path, limit=limit, on_progress=on_progress)


def _parse_notes(data: bytes, name: str) -> list[dict]:
    """note-tweet.js: [{"noteTweet": {"noteTweetId", "core": {"text"}, "createdAt"}}] -> [{"text", "created_at"}]."""
    notes = []
    for item in parse_tweets_js(data, name):
        note = item.get("noteTweet") if isinstance(item.get("noteTweet"), dict) else item
        text = ((note.get("core") or {}).get("text")) if isinstance(note.get("core"), dict) else None
        if isinstance(text, str) and text.strip():
            notes.append({"text": text, "created_at": _created(note.get("createdAt"))})
    return notes


_CUT_END = re.compile(r"(?:\s*https?://t\.co/\S+)+\s*$|\s*…\s*$")


def _cut_start(text: str) -> str:
    """What a cut post's full_text still shares with the whole one: the start, without
    the ellipsis and the t.co link X appends."""
    previous = None
    while previous != text:
        previous, text = text, _CUT_END.sub("", text)
    return " ".join(html.unescape(text).split())


def _apply_notes(posts: list[RawPost], notes: list[dict], limit: int | None) -> list[RawPost]:
    """Each long post's whole text in place of its cut one; a note with no post is a post."""
    by_time = {p.created_at: p for p in posts if p.created_at}
    for note in notes:
        post = by_time.get(note["created_at"])
        if post is None:
            whole = " ".join(note["text"].split())
            post = next((p for p in posts if len(_cut_start(p.text)) >= 20 and whole.startswith(_cut_start(p.text))),
                        None)
        if post is not None:
            post.text = note["text"]
        elif limit is None or len(posts) < limit:
            posts.append(RawPost(text=note["text"], created_at=note["created_at"]))
    return posts


class ArchiveSource:
    name = "archive"

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self.read_from: str | None = None  # which export format the last fetch read

    def fetch(self, *, handle: str | None = None, file: Path | None = None, base_url: str | None = None,
              limit: int | None = None, on_progress: ProgressFn | None = None,
              max_bytes: int | None = None) -> list[RawPost]:
        path = need_file(file, "archive")
        limit = check_limit(limit, None)
        max_bytes = self.max_bytes if max_bytes is None else max_bytes

        if path.suffix.lower() == ".js":  # a tweets.js taken out of the export
            if path.stat().st_size > max_bytes:
                raise BadInput(f"{path.name} is over the size limit of {max_bytes:,} bytes")
            self.read_from = f"{path.name} (one file of an X export)"
            return self._collect([(path.name, path.read_bytes())], limit, on_progress)

        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError):
            raise BadInput(f"{path.name} is not a zip file: give the .zip X sends you (Settings > "
                           "Your account > Download an archive of your data)") from None
        with zf:
            check_zip(zf)
            members, self.read_from = _tweet_members(zf), CURRENT
            extras = _extra_members(zf, members)
            if not members:
                members, self.read_from = _grailbird_members(zf), GRAILBIRD
            old_csv = None
            if not members:
                old_csv = _member_named(zf, "tweets.csv")
                if old_csv is None:
                    raise BadInput(f"no posts in {path.name}: looked for {LOOKED_FOR}, the older "
                                   "data/js/tweets/YYYY_MM.js or tweets.csv, and found none; is this your X data export?")
                members, self.read_from = [old_csv], OLD_CSV
            check_size(members + [i for _, i in extras], max_bytes)
            budget = max_bytes
            blobs, extra_blobs = [], []
            try:
                for info in members:
                    data = _read_member(zf, info, budget)
                    budget -= len(data)
                    blobs.append((info.filename, data))
                for kind, info in extras:
                    data = _read_member(zf, info, budget)
                    budget -= len(data)
                    extra_blobs.append((kind, info.filename, data))
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as e:
                raise BadInput(f"{path.name} could not be read: {e}") from None
        if old_csv is not None:
            return _read_old_csv(blobs[0][1], limit, on_progress)
        community = [(n, d) for kind, n, d in extra_blobs if kind == "community-tweet"]
        posts = self._collect(blobs + community, limit, on_progress)
        notes = [note for kind, n, d in extra_blobs if kind == "note-tweet" for note in _parse_notes(d, n)]
        return _apply_notes(posts, notes, limit)

    @staticmethod
    def _collect(blobs: list[tuple[str, bytes]], limit: int | None, on_progress: ProgressFn | None) -> list[RawPost]:
        posts: list[RawPost] = []
        for name, data in blobs:
            for tweet in parse_tweets_js(data, name):
                post = to_raw_post(tweet)
                if post is None:
                    continue
                posts.append(post)
                if limit is not None and len(posts) >= limit:
                    report(on_progress, len(posts))
                    return posts
            report(on_progress, len(posts))
        return posts
