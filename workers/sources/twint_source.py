"""``twint``: the seed's scraper, kept for completeness.

twint scraped twitter.com's web frontend and has not worked since 2023. If it
is not installed, or it fails (it will), the error points at the sources that
work.
"""
from __future__ import annotations

from pathlib import Path

from core.contract import BadInput

from .base import WORKING_SOURCES, ProgressFn, RawPost, check_limit, need_handle, report

_ALTERNATIVES = (f"use one of the working sources instead: {', '.join(WORKING_SOURCES)} "
                 "(archive: your own X data export; x: the X API with a bearer token; "
                 "csv: a file made by download_tweets.py)")


class TwintSource:
    name = "twint"

    def fetch(self, *, handle: str | None = None, file: Path | None = None, base_url: str | None = None,
              limit: int | None = None, on_progress: ProgressFn | None = None) -> list[RawPost]:
        username = need_handle(handle, "twint", "dril").lstrip("@")
        limit = check_limit(limit, None)
        try:
            import twint  # type: ignore[import-not-found]
        except Exception as e:  # ImportError, or twint's own import-time failures
            raise BadInput(f"twint is not available ({type(e).__name__}: {e}); it cannot reach X since "
                           f"2023 anyway: {_ALTERNATIVES}") from None
        try:
            config = twint.Config()
            config.Username = username
            config.Store_object = True
            config.Hide_output = True
            if limit is not None:
                config.Limit = limit
            twint.output.tweets_list = []
            twint.run.Search(config)
            found = list(twint.output.tweets_list)
        except BaseException as e:  # twint may sys.exit() or raise anything
            if isinstance(e, KeyboardInterrupt):
                raise
            raise BadInput(f"twint failed ({type(e).__name__}); it cannot reach X since 2023: "
                           f"{_ALTERNATIVES}") from None
        if not found:
            raise BadInput(f"twint found no posts for @{username} (it cannot reach X since 2023): {_ALTERNATIVES}")
        posts = [RawPost(text=str(getattr(t, "tweet", "")), id=str(getattr(t, "id", "")) or None,
                         created_at=getattr(t, "datestamp", None),
                         is_retweet=bool(getattr(t, "retweet", False)),
                         is_reply=bool(getattr(t, "reply_to", None)) and len(getattr(t, "reply_to", [])) > 0)
                 for t in found]
        report(on_progress, len(posts))
        return posts[:limit] if limit else posts
