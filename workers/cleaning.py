"""Cleaning posts for finetuning, with a count for every rule.

Order, per post:

1. ``retweet``: dropped when flagged by the source or when the text starts
   with ``RT @`` (``drop_retweets``);
2. ``reply``: dropped when the source says the post is a reply. Only where
   the source cannot say (a CSV without reply columns) is it guessed, as the
   seed's download_tweets.py did: a post whose text, links stripped, starts
   with an @mention (``drop_replies`` and ``leading_mention_is_reply``). A
   post the source says is not a reply is kept whatever it starts with, and a
   post starting ``.@user`` is the old way of writing to everyone: kept;
3. HTML entities unescaped (``&amp;`` ``&lt;`` ``&#39;`` ...), once;
4. URLs (``http(s)://``, ``www.``, ``t.co/``) and ``pic.twitter.com/`` links
   stripped (``strip_urls``);
5. @mentions and #hashtags stripped, when asked (Unicode-aware:
   ``#café``, ``#日本語``, ``@user_名``, ``@user@instance``);
6. whitespace normalised: runs of spaces and tabs become one space, each
   line is stripped, line breaks stay, 2 or more blank lines in a row become
   one (3+ newlines -> 2), leading and trailing blank lines go;
7. ``empty``: nothing left;
8. ``duplicate``: the same text as an earlier kept post (after cleaning).
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Iterable

import regex

from core.contract import CleanSpec
from workers.sources.base import RawPost

RULES = ("retweet", "reply", "empty", "duplicate")


# The options travel in the typed contract; one definition serves both.
CleanOptions = CleanSpec


@dataclass
class CleanResult:
    kept: list[str]
    dropped: dict[str, int] = field(default_factory=lambda: {rule: 0 for rule in RULES})
    kept_ids: list[str | None] = field(default_factory=list)  # the source's id of each kept post

    @property
    def total(self) -> int:
        return len(self.kept) + sum(self.dropped.values())


_WORD = r"[\p{L}\p{M}\p{N}_\p{Pc}]"
_LEAD = r"([^\S\n]*)"  # the spaces before a removed token go too when punctuation follows it
_URL = regex.compile(
    _LEAD + r"((?:\b(?:https?|ftp)://\S+"
    r"|(?<![\w@.])www\.\S+"
    r"|(?<![\w@.])(?:t\.co|pic\.twitter\.com|pic\.x\.com)/\S+))",
    regex.IGNORECASE,
)
# @user, @user_名, @user@instance.social (Mastodon); not e-mail addresses
_MENTION = regex.compile(_LEAD + r"(?<![\w@＠/])[@＠]" + _WORD + r"+(?:@[\w-]+(?:\.[\w-]+)+)?")
# #tag with at least one letter (#1 is a number, not a tag); not C# or &#39;
_HASHTAG = regex.compile(_LEAD + r"(?<![\w&#＃/])[#＃]" + _WORD + r"*[\p{L}\p{M}]" + _WORD + "*")
_LEADING_MENTION = regex.compile(r"^\s*[@＠]\w")
_RETWEET = regex.compile(r"^\s*RT @\w", regex.IGNORECASE)
_HSPACE = regex.compile(r"[^\S\n]+")
_BLANKS = regex.compile(r"\n{3,}")
_INVISIBLE = regex.compile(r"[\u200b\ufeff\u00ad]")
_TRAILING = ".,;:!?'\"’”»)]}>"
_PUNCT = ".,;:!?…"


def _url_sub(m: regex.Match) -> str:
    """Drop the link; keep punctuation that ended the sentence (and an unbalanced ``)``)."""
    lead, url = m.group(1), m.group(2)
    keep = ""
    while url and url[-1] in _TRAILING:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        keep = url[-1] + keep
        url = url[:-1]
    following = keep[:1] or m.string[m.end():m.end() + 1]
    return keep if following and following in _PUNCT else lead + keep


def _token_sub(m: regex.Match) -> str:
    following = m.string[m.end():m.end() + 1]
    return "" if following and following in _PUNCT else m.group(1)


def strip_links(text: str) -> str:
    return _URL.sub(_url_sub, text)


def strip_mentions(text: str) -> str:
    return _MENTION.sub(_token_sub, text)


def strip_hashtags(text: str) -> str:
    return _HASHTAG.sub(_token_sub, text)


def normalise_whitespace(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")
    text = _INVISIBLE.sub("", text)
    lines = [_HSPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip("\n")


def is_retweet(post: RawPost) -> bool:
    # Old manual retweets ("RT @x: ...") are someone else's words whatever the source says.
    return bool(post.is_retweet) or bool(_RETWEET.match(html.unescape(post.text)))


def is_reply(post: RawPost, options: CleanOptions) -> bool:
    if post.is_reply is not None:  # the source knows
        return post.is_reply
    if not options.leading_mention_is_reply:
        return False
    # "https://t.co/x @dril hi" is a reply as much as "@dril hi": look past the links.
    return bool(_LEADING_MENTION.match(strip_links(html.unescape(post.text))))


def clean_text(text: str, options: CleanOptions = CleanOptions()) -> str:
    """One post's text after steps 3-6 (may be empty)."""
    text = html.unescape(text)
    if options.strip_urls:
        text = strip_links(text)
    if options.strip_mentions:
        text = strip_mentions(text)
    if options.strip_hashtags:
        text = strip_hashtags(text)
    return normalise_whitespace(text)


def clean(posts: Iterable[RawPost | str], options: CleanOptions = CleanOptions()) -> CleanResult:
    """Apply every rule; ``dropped`` counts each rule, zeros included."""
    result = CleanResult(kept=[])
    seen: set[str] = set()
    for post in posts:
        if isinstance(post, str):
            post = RawPost(text=post)
        if options.drop_retweets and is_retweet(post):
            result.dropped["retweet"] += 1
            continue
        if options.drop_replies and is_reply(post, options):
            result.dropped["reply"] += 1
            continue
        text = clean_text(post.text or "", options)
        if not text:
            result.dropped["empty"] += 1
            continue
        if text in seen:
            result.dropped["duplicate"] += 1
            continue
        seen.add(text)
        result.kept.append(text)
        result.kept_ids.append(post.id)
    return result
