"""How long a post may be on each platform, measured the way the platform does.

- X: 280 of twitter-text's *weighted* length (``parse_tweet().weightedLength``):
  every URL counts 23, CJK characters and emoji weigh 2, most other text 1.
- Bluesky: 300 graphemes (extended grapheme clusters, regex ``\\X``) and at
  most 3,000 bytes of UTF-8 (both are in the app.bsky.feed.post lexicon).
- Mastodon: 500 characters as Mastodon's StatusLengthValidator counts them:
  grapheme clusters, every http(s) URL counts 23, a remote mention
  ``@user@domain`` counts as ``@user``.
- outbox: no limit. A persona whose only target is the outbox is held to X's
  rule by ``limit_for`` (the outbox is the dry run of a real account, and X
  is the strictest and the usual one).

Light on purpose: the worker's filters import this module too. twitter-text
(~0.2 s to import) and ``regex`` are imported on first use; nothing here
imports discord, tweepy or TensorFlow.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterable

X_WEIGHTED_LIMIT = 280
BLUESKY_GRAPHEME_LIMIT = 300
BLUESKY_BYTE_LIMIT = 3000
MASTODON_CHAR_LIMIT = 500
MASTODON_URL_LENGTH = 23

PLATFORMS = ("x", "bluesky", "mastodon", "outbox")
_ALIASES = {"twitter": "x", "bsky": "bluesky", "masto": "mastodon"}
#: What ``limit_for`` applies when no target has a limit (only the outbox, or none).
DEFAULT_PLATFORM = "x"

# Mastodon: URLs need a scheme (extract_url_without_protocol: false); trailing
# sentence punctuation is not part of the URL, as in twitter-text.
_MASTO_URL = re.compile(r"https?://[^\s<>\"]+?(?=[.,:;!?)\]'\"]*(?:\s|$))", re.IGNORECASE)
_MASTO_REMOTE_MENTION = re.compile(r"(?<![\w@])(@[a-z0-9_]+(?:[a-z0-9_.-]+[a-z0-9_]+)?)@[a-z0-9.\-]+[a-z0-9]+", re.IGNORECASE)


def canonical_platform(name: str) -> str:
    p = _ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if p not in PLATFORMS:
        raise ValueError(f"unknown platform {name!r}: use one of {', '.join(PLATFORMS)}")
    return p


@functools.lru_cache(maxsize=1)
def _grapheme_re():
    import regex

    return regex.compile(r"\X")


def graphemes(text: str) -> list[str]:
    """The extended grapheme clusters of ``text`` (what a reader sees as characters)."""
    return _grapheme_re().findall(text)


def grapheme_count(text: str) -> int:
    return len(graphemes(text))


def weighted_length_x(text: str) -> int:
    """twitter-text's weighted length (the number X compares with 280)."""
    from twitter_text import parse_tweet

    return parse_tweet(text).weightedLength


def mastodon_length(text: str) -> int:
    """The length Mastodon compares with 500 (see the module docstring)."""
    countable = _MASTO_URL.sub("x" * MASTODON_URL_LENGTH, text)
    countable = _MASTO_REMOTE_MENTION.sub(r"\1", countable)
    return grapheme_count(countable)


def length(text: str, platform: str) -> int:
    """The platform's own measure of ``text`` (outbox: code points)."""
    p = canonical_platform(platform)
    if p == "x":
        return weighted_length_x(text)
    if p == "bluesky":
        return grapheme_count(text)
    if p == "mastodon":
        return mastodon_length(text)
    return len(text)


def limit(platform: str) -> int | None:
    return {"x": X_WEIGHTED_LIMIT, "bluesky": BLUESKY_GRAPHEME_LIMIT,
            "mastodon": MASTODON_CHAR_LIMIT, "outbox": None}[canonical_platform(platform)]


def fits(text: str, platform: str) -> bool:
    """Whether ``text`` is within ``platform``'s length limit (the outbox has none).

    Only the length is checked: emptiness and content are the filters' business.
    """
    p = canonical_platform(platform)
    if p == "x":
        return weighted_length_x(text) <= X_WEIGHTED_LIMIT
    if p == "bluesky":
        return len(text.encode("utf-8")) <= BLUESKY_BYTE_LIMIT and grapheme_count(text) <= BLUESKY_GRAPHEME_LIMIT
    if p == "mastodon":
        return mastodon_length(text) <= MASTODON_CHAR_LIMIT
    return True


@dataclass(frozen=True)
class LimitChecker:
    """``checker(text) -> bool``: fits every platform in ``platforms``."""

    platforms: tuple[str, ...]

    def __call__(self, text: str) -> bool:
        return all(fits(text, p) for p in self.platforms)

    def violations(self, text: str) -> list[str]:
        """The platforms whose limit ``text`` exceeds (empty when it fits)."""
        return [p for p in self.platforms if not fits(text, p)]

    def describe(self) -> str:
        parts = {"x": f"X {X_WEIGHTED_LIMIT} weighted", "bluesky": f"Bluesky {BLUESKY_GRAPHEME_LIMIT} graphemes",
                 "mastodon": f"Mastodon {MASTODON_CHAR_LIMIT} characters", "outbox": "outbox: no limit"}
        return ", ".join(parts[p] for p in self.platforms)


def limit_for(platforms: Iterable[str]) -> LimitChecker:
    """The checker for a persona's set of targets: the text must fit all of them.

    The outbox has no limit; when no target has one (only the outbox, or an
    empty set) X's 280 weighted rule applies.
    """
    ps = {canonical_platform(p) for p in platforms} - {"outbox"}
    if not ps:
        ps = {DEFAULT_PLATFORM}
    return LimitChecker(tuple(p for p in PLATFORMS if p in ps))
