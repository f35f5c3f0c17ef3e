"""Filters between the sampler and the curation channel.

What the sampler hands over (``raw_texts``): one decoded post attempt per
string, exactly as the model wrote it after the prefix. It may start with
whitespace and ``<|startoftext|>`` (posts after the first in a stream), and it
ends with ``<|endoftext|>`` if and only if the model finished the post
(anything after the first end marker is ignored). A text without the end
marker is an unfinished post.

Each raw text is dropped by the first filter that rejects it, in this order
(every name is always a key of ``dropped``):

``unfinished``  no end marker, or a ``<|startoftext|>`` inside the post (the
                model began a new post without ending this one);
``empty``       nothing visible left;
``too_long``    over the limit of any of the persona's platforms
                (``core.textlimits.limit_for``: only the outbox means X's rule);
``blocked``     contains a blocklist entry (whole word, case-insensitive,
                NFKC- and casefold-normalised; entries in scripts written
                without spaces match anywhere);
``mention``     an @mention, where the persona drops those (``mentions="drop"``;
                under ``"defuse"`` the length check is of the defused text);
``repetition``  a loop: a line repeated, a word n-gram repeated back to
                back, a long phrase repeated, a short character pattern
                repeated;
``verbatim``    equal to a training post after normalisation (Unicode NFKC,
                case, whitespace, punctuation);
``near_copy``   a training post with a few words changed, or a stretch of 8+
                words lifted out of a longer training post with at most a
                few words changed (see :class:`NearCopyIndex`);
``duplicate``   equal after normalisation to an earlier survivor of this
                batch or to one of ``earlier_candidates``.

Survivors are stripped and never contain the special markers.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import regex

from core.mentions import defuse, has_mention

try:  # a compiled Levenshtein over sequences of hashables (fast path)
    from rapidfuzz.distance import Levenshtein as _rf_levenshtein
except ImportError:  # pragma: no cover - exercised only without rapidfuzz
    _rf_levenshtein = None

START = "<|startoftext|>"
END = "<|endoftext|>"

FILTERS = (
    "unfinished",
    "garbled",
    "empty",
    "too_long",
    "blocked",
    "mention",
    "repetition",
    "verbatim",
    "near_copy",
    "duplicate",
)

# --- normalisation ----------------------------------------------------------

_APOSTROPHES = regex.compile(r"['\u2019\u2018`\u00b4\u02bc]")
_PUNCT = regex.compile(r"\p{P}+")
# Scripts written without spaces between words: every character is a "word".
_NO_SPACE_SCRIPTS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
_WORDS = regex.compile(rf"[{_NO_SPACE_SCRIPTS}]|[^\s{_NO_SPACE_SCRIPTS}]+")
_VISIBLE = regex.compile(r"[^\p{Z}\p{C}\s]")


# The same for ASCII text, without regexes (NFKC and casefold are lower()
# there; these are ASCII's \p{P} characters): ~3x faster on big datasets.
_ASCII_KEY = str.maketrans({**{c: " " for c in "!\"#%&()*,-./:;?@[\\]_{}"}, "'": None, "`": None})


def normalize(text: str) -> str:
    """The key that verbatim and duplicate checks compare: NFKC, casefold,
    apostrophes dropped (don't == dont), other punctuation as spaces,
    whitespace collapsed. A text made only of punctuation keeps it (so
    ``...`` and ``!!!`` stay different)."""
    if text.isascii():
        base = text.lower()
        key = " ".join(base.translate(_ASCII_KEY).split())
        return key if key else " ".join(base.split())
    base = unicodedata.normalize("NFKC", text).casefold()
    key = " ".join(_PUNCT.sub(" ", _APOSTROPHES.sub("", base)).split())
    return key if key else " ".join(base.split())


_HAS_NO_SPACE_SCRIPT = regex.compile(rf"[{_NO_SPACE_SCRIPTS}]")


def words(text: str) -> list[str]:
    """Normalised words (characters, for scripts without spaces)."""
    key = normalize(text)
    if key.isascii() or not _HAS_NO_SPACE_SCRIPT.search(key):
        return key.split()
    return _WORDS.findall(key)


# --- near copies --------------------------------------------------------------


def max_word_edits(n_words: int) -> int:
    """How many word edits (substitute, insert, delete) still make a near
    copy of a post whose longer side has ``n_words`` words.

    At most a quarter of the words may differ, and posts of four words or
    fewer must match exactly (that is the verbatim filter's job): "thank you
    so much" against "thank you very much" or "good morning everyone"
    against "good morning world" share stock phrases, not authorship, so
    they pass. A 5-7 word post with one word changed, an 8-11 word post
    with two changed (and so on) is caught.
    """
    return 0 if n_words <= 4 else n_words // 4


def _levenshtein(a: Sequence[int], b: Sequence[int], cutoff: int) -> int:
    """Word-level edit distance, or ``cutoff + 1`` when it exceeds ``cutoff``."""
    if _rf_levenshtein is not None:
        return _rf_levenshtein.distance(a, b, score_cutoff=cutoff)
    if abs(len(a) - len(b)) > cutoff:  # pragma: no cover
        return cutoff + 1
    prev = list(range(len(b) + 1))  # pragma: no cover - plain DP fallback
    for i, x in enumerate(a, 1):  # pragma: no cover
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        if min(cur) > cutoff:
            return cutoff + 1
        prev = cur
    return min(prev[-1], cutoff + 1)  # pragma: no cover


# A candidate this long or longer is also a near copy when it is (nearly) a
# stretch of a longer training post; see max_slice_edits.
SLICE_MIN_WORDS = 8


def max_slice_edits(n_words: int) -> int | None:
    """How many word edits still make a candidate of ``n_words`` words a
    near copy of some stretch (a run of consecutive words) of a longer
    training post, or None when a candidate that short is never a slice copy.

    At most a quarter of the candidate's words may differ, as for whole
    posts, and at least :data:`SLICE_MIN_WORDS` (8) of its words must be the
    real post's words in the real post's order: an 8-word candidate must be
    an exact run of a real post, a 9-word one may differ in one word, 10-11
    words in two, 12-15 words in three, then a quarter. Why 8: the stretch
    is chosen to fit the candidate (a whole post is not), so agreement by
    chance is likelier than for whole posts, and stock phrases run to six or
    seven words ("I am so tired of this", "thank you so much for this"):
    quoting one, even with a word or two around it ("I am so tired of this
    weather lol"), does not make a post a copy. Eight of a person's words in
    their order is their sentence.
    """
    if n_words < SLICE_MIN_WORDS:
        return None
    return min(n_words // 4, n_words - SLICE_MIN_WORDS)


def _slice_distance(a: Sequence[int], b: Sequence[int], cutoff: int) -> int:
    """Smallest word edit distance between ``a`` and any run of consecutive
    words of ``b`` (approximate substring matching: Sellers' dynamic program
    with free ends in ``b``, and Ukkonen's cut-off, which computes only the
    rows that can still be within ``cutoff``), or ``cutoff + 1`` when it
    exceeds ``cutoff``. Plain Python with or without rapidfuzz, so both give
    the same answers; it costs about ``(cutoff + 2) * len(b)`` cells.
    """
    n = len(a)
    col = list(range(n + 1))  # D[i][0] = i: a[:i] against an empty run
    last = min(cutoff, n)  # the last row within cutoff (the rows below it hold more)
    best = n if n <= cutoff else cutoff + 1
    for y in b:
        diag = up = 0  # D[0][j-1], D[0][j]: a run may start anywhere
        top = last + 1 if last < n else n
        for i in range(1, top + 1):
            left = col[i]
            if a[i - 1] == y:
                v = diag
            else:
                v = (diag if diag < up else up)
                if left < v:
                    v = left
                v += 1
            diag = left
            col[i] = up = v
        last = top
        while last > 0 and col[last] > cutoff:
            last -= 1
        if last == n and col[n] < best:
            best = col[n]
            if best == 0:
                break
    return best


class NearCopyIndex:
    """Finds training posts that a candidate copies with a few words changed,
    whole or in part.

    Whole posts: word-level Levenshtein distance ``d`` between the
    normalised word sequences (see :func:`words`); a near copy when
    ``d <= max_word_edits(max(len(a), len(b)))``, i.e. at least 3/4 of the
    words are the real post's words in the real post's order, and the post
    is longer than four words. Word level rather than character level
    because a changed word is what a near copy looks like (GPT-2 swapping
    one noun), and because short posts that merely share common words
    ("I love my dog so much" / "I love pizza so much") stay apart, where a
    character ratio on short strings is noisy.

    Slices: a candidate of ``n >= SLICE_MIN_WORDS`` words is also a near
    copy when some run of consecutive words of a (longer) training post is
    within ``max_slice_edits(n)`` word edits of it (approximate substring
    matching, :func:`_slice_distance`): ten words lifted out of a 60-word
    post, with a word or two changed, are still that person's words, though
    far more than a quarter of the whole post differs.

    Search: an inverted index from word bigrams to the posts that contain
    them, with prefix filtering (as in set-similarity joins): ``d`` edits
    destroy at most ``2d`` of the candidate's distinct bigrams (a
    substitution or deletion touches two bigram positions, an insertion
    one), and every other bigram of the candidate is a bigram of the post,
    whether the candidate is matched against the whole post or a run of it.
    So a match must contain at least one of the candidate's ``2d + 1``
    rarest bigrams: only those posting lists are read. Whole-post matches
    are then filtered by length, slice matches by the count of the
    candidate's bigrams the post contains (at least all but ``2d``), and the
    few posts left are verified with the exact distance (rapidfuzz when
    installed, a plain DP otherwise, for whole posts; a plain-Python DP for
    slices). Lossless for candidates with at least ``2d + 1`` distinct
    bigrams (everything but loops, which the repetition filter drops first).
    """

    def __init__(self, training_posts: Iterable[str]):
        flat: list[str] = []
        lens: list[int] = []
        for post in training_posts:
            ws = words(post)
            if len(ws) < 4:
                continue  # too short ever to be a near copy (see max_word_edits)
            flat.extend(ws)
            lens.append(len(ws))
        self._vocab = {w: i for i, w in enumerate(dict.fromkeys(flat))}
        self._ids = np.fromiter(map(self._vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
        self._lens = np.array(lens, dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(self._lens)]).astype(np.int64)
        self.size = len(lens)
        # CSR posting lists: sorted unique bigram keys -> sorted post ids.
        if self.size:
            owner = np.repeat(np.arange(self.size, dtype=np.int64), self._lens)
            same = owner[1:] == owner[:-1]
            keys = (self._ids[:-1] * (1 << 31) + self._ids[1:])[same]
            posts = owner[:-1][same]
            order = np.lexsort((posts, keys))
            keys, posts = keys[order], posts[order]
            first = np.ones(len(keys), dtype=bool)
            first[1:] = (keys[1:] != keys[:-1]) | (posts[1:] != posts[:-1])
            keys, posts = keys[first], posts[first]
            self._keys, starts = np.unique(keys, return_index=True)
            self._starts = starts.astype(np.int64)
            self._ends = np.append(self._starts[1:], len(keys))
            self._postings = posts.astype(np.int32)
        else:
            self._keys = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return self.size

    def find(self, text: str) -> int | None:
        """Index (among the indexed posts, in order) of a training post that
        ``text`` nearly copies, whole or as a slice, or None."""
        return self._find(text, whole=True, slices=True)

    def find_whole(self, text: str) -> int | None:
        """Like :meth:`find`, whole-post near copies only."""
        return self._find(text, whole=True, slices=False)

    def find_slice(self, text: str) -> int | None:
        """Like :meth:`find`, slice near copies only."""
        return self._find(text, whole=False, slices=True)

    def _find(self, text: str, *, whole: bool, slices: bool) -> int | None:
        ws = words(text)
        n = len(ws)
        if n < 4 or not len(self._keys):
            return None
        ids = [self._vocab.get(w, -1 - i) for i, w in enumerate(ws)]  # unknown words match nothing
        n_bigrams = len(set(zip(ws, ws[1:])))
        keys = np.array(sorted({a * (1 << 31) + b for a, b in zip(ids, ids[1:]) if a >= 0 and b >= 0}),
                        dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        at = pos[self._keys[pos] == keys]
        if not len(at):
            return None
        unseen = n_bigrams - len(at)  # bigrams in no training post: the rarest of all
        at = at[np.argsort(self._ends[at] - self._starts[at], kind="stable")]  # rarest first
        if whole:
            pid = self._find_whole(ids, at, unseen)
            if pid is not None:
                return pid
        if slices:
            return self._find_slice(ids, at, unseen, n_bigrams)
        return None

    def _probe(self, at: np.ndarray, unseen: int, d: int) -> np.ndarray | None:
        """Sorted ids of the posts holding one of the ``2d + 1`` rarest
        bigrams (None: the unseen ones alone exceed that, so no match)."""
        probe = 2 * d + 1
        if unseen >= probe:
            return None
        return np.unique(np.concatenate([self._postings[self._starts[i]:self._ends[i]]
                                         for i in at[: probe - unseen]]))

    def _find_whole(self, ids: list[int], at: np.ndarray, unseen: int) -> int | None:
        n = len(ids)
        # The largest d any match could have: N = max(n, n_t) <= n + d.
        d_max = 0
        while max_word_edits(n + d_max + 1) >= d_max + 1:
            d_max += 1
        if d_max == 0:
            return None
        found = self._probe(at, unseen, d_max)
        if found is None:
            return None
        found = found[np.abs(self._lens[found] - n) <= d_max]
        for pid in found.tolist():
            seq = self._ids[self._offsets[pid]:self._offsets[pid + 1]].tolist()
            allowed = max_word_edits(max(n, len(seq)))
            if allowed and _levenshtein(ids, seq, allowed) <= allowed:
                return pid
        return None

    def _find_slice(self, ids: list[int], at: np.ndarray, unseen: int, n_bigrams: int) -> int | None:
        n = len(ids)
        d = max_slice_edits(n)
        if d is None:
            return None
        found = self._probe(at, unseen, d)
        if found is None:
            return None
        found = found[self._lens[found] >= n - d]  # the run has at least n - d words
        # Count filter: a match holds all but at most 2d of the candidate's distinct bigrams.
        need = n_bigrams - 2 * d
        if need > 1 and len(found):
            hits = np.zeros(len(found), dtype=np.int64)
            for i in at.tolist():
                plist = self._postings[self._starts[i]:self._ends[i]]
                j = np.minimum(np.searchsorted(plist, found), len(plist) - 1)
                hits += plist[j] == found
            found = found[hits >= need]
        for pid in found.tolist():
            seq = self._ids[self._offsets[pid]:self._offsets[pid + 1]].tolist()
            if _slice_distance(ids, seq, d) <= d:
                return pid
        return None


# --- repetition -------------------------------------------------------------

_CHAR_LOOP = regex.compile(r"(.{1,12}?)\1{4,}", regex.S)


def is_repetitive(text: str) -> bool:
    """Loops the way GPT-2 loops.

    * a line of 20+ characters repeated, or any non-empty line three times;
    * a word n-gram repeated back to back so that the run covers 8+ words
      ("ha" x 8, "I am" x 4, "so very tired" x 3);
    * a phrase of 6+ words occurring twice anywhere;
    * a 1-12 character pattern repeated 5+ times covering 50+ characters
      ("!!!!..." or "lolololol..." on and on; "nooooooo" is fine).
    """
    lines = [" ".join(l.split()).casefold() for l in text.splitlines()]
    lines = [l for l in lines if l]
    seen: dict[str, int] = {}
    for l in lines:
        seen[l] = seen.get(l, 0) + 1
        if seen[l] >= 3 or (seen[l] >= 2 and len(l) >= 20):
            return True
    ws = [w.casefold() for w in text.split()]
    n = len(ws)
    for size in range(1, 5):
        need = max(2 if size >= 4 else 3, -(-8 // size))  # repeats needed
        i = 0
        while i + size * need <= n:
            unit = ws[i:i + size]
            k = 1
            while ws[i + k * size:i + (k + 1) * size] == unit:
                k += 1
            if k >= need:
                return True
            i += 1
    seen6: dict[tuple[str, ...], int] = {}
    for i in range(n - 5):
        gram = tuple(ws[i:i + 6])
        j = seen6.get(gram)
        if j is not None and i - j >= 6:
            return True
        seen6.setdefault(gram, i)
    for m in _CHAR_LOOP.finditer(text):
        if len(m.group(0)) >= 50:
            return True
    return False


# --- blocklist --------------------------------------------------------------


class Blocklist:
    """Whole-word, case-insensitive matching of blocked words and phrases.

    Text and entries are NFKC-normalised and casefolded (so "STRASSE" blocks
    "Straße" and full-width letters are caught); "whole word" means no
    letter, digit or mark directly before or after. Entries written in a
    script without spaces (Chinese, Japanese, Thai...) match anywhere.
    """

    def __init__(self, entries: Sequence[str]):
        parts = []
        for entry in entries:
            norm = unicodedata.normalize("NFKC", entry).casefold().split()
            if not norm:
                continue
            body = r"\s+".join(regex.escape(w) for w in norm)
            if regex.search(rf"[{_NO_SPACE_SCRIPTS}]", norm[0][:1] + norm[-1][-1:]):
                parts.append(rf"(?:{body})")
            else:
                parts.append(rf"(?<![\p{{L}}\p{{N}}\p{{M}}_])(?:{body})(?![\p{{L}}\p{{N}}\p{{M}}_])")
        self._pattern = regex.compile("|".join(parts)) if parts else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def search(self, text: str) -> str | None:
        if self._pattern is None:
            return None
        m = self._pattern.search(unicodedata.normalize("NFKC", text).casefold())
        return m.group(0) if m else None


# --- the pipeline -----------------------------------------------------------


@dataclass
class FilterResult:
    candidates: list[str]
    dropped: dict[str, int]
    # For each raw text in order: the filter that dropped it, or None if kept.
    fates: list[str | None] = field(default_factory=list)


def clean_raw(raw: str) -> tuple[str, bool]:
    """(post text, ended) from one raw text: cut at the first end marker,
    leading whitespace and one leading start marker removed, stripped."""
    cut = raw.find(END)
    ended = cut >= 0
    text = raw[:cut] if ended else raw
    text = text.lstrip()
    if text.startswith(START):
        text = text[len(START):]
    return text.strip(), ended


_MAYBE_URL = regex.compile(r"\S[.\u3002\uff0e\uff61]\S")


def _surely_fits(text: str, platform: str) -> bool:
    """A cheap sufficient test (twitter-text's parser costs ~0.5 ms a post):
    a URL needs a dot with no space on either side, and no code point weighs
    more than 2 on X; graphemes never outnumber code points; Mastodon only
    counts a URL (which needs '://') as longer than it is."""
    n = len(text)
    if platform == "x":
        if n > 280 or _MAYBE_URL.search(text):
            return False
        if text.isascii():
            return True
        nfc = unicodedata.normalize("NFC", text)  # what twitter-text counts
        # code points below U+1100 weigh 1 (and a few above: counted as 2 here)
        return len(nfc) + sum(1 for c in nfc if ord(c) >= 0x1100) <= 280
    if platform == "bluesky":
        return n <= 300 and len(text.encode("utf-8")) <= 3000
    if platform == "mastodon":
        return n <= 500 and "://" not in text
    return False


def filter_candidates(
    raw_texts: list[str],
    *,
    training_posts: Sequence[str],
    earlier_candidates: Sequence[str] = (),
    platforms: Sequence[str] = ("x",),
    blocklist: Sequence[str] | Blocklist = (),
    near_copy_index: NearCopyIndex | None = None,
    verbatim_keys: set[str] | None = None,
    mentions: str = "keep",
) -> FilterResult:
    """Run every filter over ``raw_texts`` (see the module docstring).

    ``training_posts`` feed the verbatim check and, when no
    ``near_copy_index`` is given, a near-copy index built here (build it
    once per dataset with :class:`NearCopyIndex` and pass it in when
    filtering more than once; ``verbatim_keys`` likewise caches
    ``{normalize(p) for p in training_posts}``).
    """
    from core.textlimits import limit_for

    checker = limit_for(platforms)  # ValueError for an unknown platform

    def fits(text: str) -> bool:
        return all(_surely_fits(text, p) or checker_one(text, p) for p in checker.platforms)

    from core.textlimits import fits as checker_one
    dropped = {name: 0 for name in FILTERS}
    fates: list[str | None] = []
    kept: list[str] = []
    block = blocklist if isinstance(blocklist, Blocklist) else Blocklist(blocklist)
    if verbatim_keys is None:
        verbatim_keys = {normalize(p) for p in training_posts}
    index = near_copy_index
    seen = {normalize(c) for c in earlier_candidates}

    for raw in raw_texts:
        text, ended = clean_raw(raw)
        if not ended or START in text:
            fate = "unfinished"
        elif "<|" in text or "|>" in text:
            # Pieces of the special markers (an undertrained model spells them badly).
            fate = "garbled"
        elif not _VISIBLE.search(text):
            fate = "empty"
        elif not fits(defuse(text) if mentions == "defuse" else text):
            fate = "too_long"
        elif block and block.search(text):
            fate = "blocked"
        elif mentions == "drop" and has_mention(text):
            fate = "mention"
        elif is_repetitive(text):
            fate = "repetition"
        else:
            key = normalize(text)
            if key in verbatim_keys:
                fate = "verbatim"
            else:
                if index is None:
                    index = NearCopyIndex(training_posts)
                if index.find(text) is not None:
                    fate = "near_copy"
                elif key in seen:
                    fate = "duplicate"
                else:
                    fate = None
                    seen.add(key)
                    kept.append(text)
        if fate is not None:
            dropped[fate] += 1
        fates.append(fate)
    return FilterResult(candidates=kept, dropped=dropped, fates=fates)
