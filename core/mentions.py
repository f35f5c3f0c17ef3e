"""@mentions in generated text: a live one would notify a real person.

Each persona says what happens to a post with a mention (``mentions``):

- ``defuse`` (the default): posted with a zero-width space (U+200B) after
  the at sign, so no platform links or notifies anyone; the text reads the same;
- ``drop``: candidates with a mention are filtered out at generation;
- ``keep``: posted as written (on Bluesky with mention facets).

What the platforms turn into a mention, and why U+200B stops each one:

- X (twitter-text's ``validMentionOrList``): ``@`` or ``＠`` (U+FF20) not after
  ``[A-Za-z0-9_!#$%&*@＠]``, then 1-20 of ``[A-Za-z0-9_]``;
- Mastodon (``Account::MENTION_RE``): ``@`` not after a word character, ``=``
  or ``/``, then ``[a-z0-9_]`` ...;
- Bluesky: only a mention facet links, and the publisher makes facets with
  atproto's detector, which wants a handle character right after the ``@``.

All three need a handle character right after the at sign. U+200B is
weighted 1 by X (twitter-text's [8192, 8205] range), so a defused post is one
character longer per mention.
"""
from __future__ import annotations

import regex

MODES = ("defuse", "drop", "keep")
DEFAULT_MODE = "defuse"
ZWSP = "\u200b"

# An at sign that starts a mention on some platform: not inside a word or an
# e-mail address, with a handle character right after it.
_MENTION = regex.compile(r"(?<![\p{L}\p{M}\p{N}_!#$%&*@＠=/])[@＠](?=[A-Za-z0-9_])")


def has_mention(text: str) -> bool:
    return _MENTION.search(text) is not None


def defuse(text: str) -> str:
    """The text with no live mention on any platform (see the module docstring)."""
    return _MENTION.sub(lambda m: m.group(0) + ZWSP, text)


def for_publishing(text: str, mode: str) -> str:
    """What goes to the platforms under the persona's mode (``drop`` defuses too:
    a hand-written or edited post may still carry one)."""
    return text if mode == "keep" else defuse(text)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        from core.contract import BadInput

        raise BadInput(f"mentions must be one of {', '.join(MODES)}, not {mode!r}")
    return mode
