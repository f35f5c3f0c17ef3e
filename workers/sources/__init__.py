"""Where posts come from: one interface, one module per source.

``get_source(name).fetch(handle=..., file=..., base_url=..., limit=...,
on_progress=...)`` returns a list of :class:`RawPost`; cleaning happens
afterwards (``workers.cleaning``). The client libraries (tweepy, atproto,
Mastodon.py) are imported only when their source fetches.
"""
from __future__ import annotations

from core.contract import BadInput

from .base import WORKING_SOURCES, RawPost, Source, SourceUnavailable

SOURCE_NAMES = (*WORKING_SOURCES, "twint")

__all__ = ["RawPost", "Source", "SourceUnavailable", "SOURCE_NAMES", "WORKING_SOURCES", "get_source"]


def get_source(name: str) -> Source:
    """The source called ``name``; BadInput naming the valid ones otherwise."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key == "csv":
        from .csv_file import CsvSource
        return CsvSource()
    if key == "archive":
        from .x_archive import ArchiveSource
        return ArchiveSource()
    if key == "x":
        from .x_api import XSource
        return XSource()
    if key == "bluesky":
        from .bluesky import BlueskySource
        return BlueskySource()
    if key == "mastodon":
        from .mastodon_api import MastodonSource
        return MastodonSource()
    if key == "twint":
        from .twint_source import TwintSource
        return TwintSource()
    raise BadInput(f"unknown source {name!r}: use one of {', '.join(SOURCE_NAMES)}")
