"""``mastodon``: an account's public statuses through Mastodon.py.

The handle is ``user@instance`` (``@user@instance`` and
``https://instance/@user`` work too); the instance is the API host unless
``base_url`` names another. ``account_lookup`` finds the account, then
``account_statuses(exclude_replies=True, exclude_reblogs=True)`` pages
through ``fetch_next`` (the ``Link`` header). Status HTML becomes text:
paragraphs and ``<br>`` become line breaks and entities are unescaped.
"""
from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from core.contract import BadInput

from .base import (DEFAULT_NETWORK_LIMIT, HTTP_TIMEOUT, ClockFn, ProgressFn, RawPost, SleepFn, SourceUnavailable,
                   check_limit, iso, need_handle, report, sleep_until)

PAGE_SIZE = 40  # the API's maximum for account statuses
MAX_RATE_LIMIT_WAITS = 5
MAX_WAIT_S = 10 * 60

_USER = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HOST = re.compile(r"[A-Za-z0-9.-]+(:\d+)?")


class _TextExtractor(HTMLParser):
    """Status HTML as Mastodon sanitizes it (docs: "HTML sanitization"): paragraphs
    and line breaks become newlines; ``invisible`` and ``ellipsis`` spans only
    shorten a link's display, so their text is the link; elements of class
    ``quote-inline`` are the fallback ("RE: <link>") a quote post carries for
    servers that cannot show quotes, and are left out."""

    BLOCKS = {"p", "div", "blockquote", "ul", "ol", "pre", "h1", "h2", "h3", "h4", "h5", "h6"}
    VOID = {"br", "img", "hr", "wbr", "input", "meta", "link", "source"}
    LEFT_OUT = {"quote-inline"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.open: list[tuple[str, bool]] = []  # (tag, left out) of the elements we are in

    @property
    def hidden(self) -> bool:
        return bool(self.open) and self.open[-1][1]

    def _paragraph(self) -> None:
        if self.parts and not "".join(self.parts[-2:]).endswith("\n\n"):
            self.parts.append("\n\n")

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            classes = set((dict(attrs).get("class") or "").split())
            self.open.append((tag, self.hidden or bool(classes & self.LEFT_OUT)))
        if self.hidden:
            return
        if tag == "br":
            self.parts.append("\n")
        elif tag in self.BLOCKS:
            self._paragraph()
        elif tag == "li":
            self.parts.append("\n")

    def handle_startendtag(self, tag, attrs):
        if not self.hidden and tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag):
        was_hidden = self.hidden
        if any(t == tag for t, _ in self.open):
            while self.open:
                if self.open.pop()[0] == tag:
                    break
        if tag in self.BLOCKS and not was_hidden:
            self._paragraph()

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def html_to_text(content: str) -> str:
    """Mastodon status HTML to plain text with line breaks kept."""
    parser = _TextExtractor()
    parser.feed(content or "")
    parser.close()
    return "".join(parser.parts).strip("\n")


def parse_handle(handle: str) -> tuple[str, str | None]:
    """``user@instance`` -> (user, instance); ``user`` -> (user, None)."""
    handle = handle.strip()
    m = re.match(r"^https?://([^/]+)/@([^/?#@]+)(?:@([^/?#]+))?/?$", handle)
    if m:
        return m.group(2), (m.group(3) or m.group(1)).lower()
    parts = handle.lstrip("@").split("@")
    if len(parts) > 2 or not _USER.fullmatch(parts[0]) or (len(parts) == 2 and not _HOST.fullmatch(parts[1])):
        raise BadInput(f"{handle!r} is not a Mastodon account: write it as user@instance (for example: "
                       "Gargron@mastodon.social)")
    return parts[0], (parts[1].lower() if len(parts) == 2 else None)


class MastodonSource:
    name = "mastodon"

    def __init__(self, *, sleep: SleepFn = time.sleep, clock: ClockFn = time.time):
        self.sleep = sleep
        self.clock = clock

    def fetch(self, *, handle: str | None = None, file: Path | None = None, base_url: str | None = None,
              limit: int | None = None, on_progress: ProgressFn | None = None) -> list[RawPost]:
        user, instance = parse_handle(need_handle(handle, "mastodon", "Gargron@mastodon.social"))
        limit = check_limit(limit, DEFAULT_NETWORK_LIMIT)
        if base_url:
            api_base = base_url.rstrip("/")
            if not api_base.startswith(("http://", "https://")):
                api_base = "https://" + api_base
            same = instance is None or urlsplit(api_base).netloc.lower() == instance
            acct = user if same else f"{user}@{instance}"
        elif instance:
            api_base, acct = f"https://{instance}", user
        else:
            raise BadInput(f"say which instance {user!r} is on: write user@instance (for example: "
                           "Gargron@mastodon.social)")

        from mastodon import Mastodon

        api = Mastodon(api_base_url=api_base, request_timeout=HTTP_TIMEOUT, ratelimit_method="throw",
                       version_check_mode="none")
        shown = f"{user}@{instance}" if instance else user
        account = self._call(api, lambda: api.account_lookup(acct), shown)
        page = self._call(api, lambda: api.account_statuses(
            account["id"], exclude_replies=True, exclude_reblogs=True, limit=PAGE_SIZE), shown)
        posts: list[RawPost] = []
        while page:
            for status in page:
                if status.get("reblog"):
                    continue
                posts.append(RawPost(
                    text=html_to_text(status.get("content") or ""),
                    id=str(status.get("id")), created_at=iso(status.get("created_at")),
                    is_reply=status.get("in_reply_to_id") is not None,
                ))
                if len(posts) >= limit:
                    break
            report(on_progress, len(posts))
            if len(posts) >= limit:
                break
            previous = page
            page = self._call(api, lambda: api.fetch_next(previous), shown)
        return posts

    def _call(self, api, fn, shown: str):
        from mastodon import errors as me

        waits = 0
        while True:
            try:
                return fn()
            except me.MastodonRatelimitError:
                waits += 1
                if waits > MAX_RATE_LIMIT_WAITS:
                    raise SourceUnavailable("the Mastodon instance keeps answering 'rate limited': try later") from None
                sleep_until(api.ratelimit_reset, sleep=self.sleep, clock=self.clock, fallback=30, max_wait=MAX_WAIT_S)
            except me.MastodonNotFoundError:
                raise BadInput(f"Mastodon account {shown} not found on {api.api_base_url}") from None
            except me.MastodonUnauthorizedError:
                raise BadInput(f"{api.api_base_url} does not show {shown}'s posts without login") from None
            except me.MastodonNetworkError as e:
                raise SourceUnavailable(f"could not reach {api.api_base_url}: {type(e).__name__}") from None
            except me.MastodonServerError as e:
                raise SourceUnavailable(f"{api.api_base_url} failed ({_args(e)}); try again later") from None
            except me.MastodonAPIError as e:
                raise BadInput(f"{api.api_base_url} refused the request for {shown} ({_args(e)})") from None
            except me.MastodonError as e:
                raise SourceUnavailable(f"Mastodon.py failed talking to {api.api_base_url}: {e}") from None


def _args(e: Exception) -> str:
    args = [str(a) for a in e.args[1:] if a is not None]
    return " ".join(args) or type(e).__name__
