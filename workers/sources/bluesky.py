"""``bluesky``: ``app.bsky.feed.getAuthorFeed`` through atproto, no login.

Asks the public AppView (or ``base_url``) for the author's own posts with
``filter=posts_no_replies``, follows ``cursor`` page by page, and skips
reposts (feed items whose ``reason`` is a repost) and anything by another
author.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from core.contract import BadInput

from .base import (DEFAULT_NETWORK_LIMIT, HTTP_TIMEOUT, ClockFn, ProgressFn, RawPost, SleepFn, SourceUnavailable,
                   check_limit, iso, need_handle, report, sleep_until)

DEFAULT_BASE_URL = "https://public.api.bsky.app/xrpc"
PAGE_SIZE = 100
MAX_RATE_LIMIT_WAITS = 5
MAX_WAIT_S = 10 * 60

_HANDLE = re.compile(r"(?=.{3,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]*")
_DID = re.compile(r"did:[a-z]+:[A-Za-z0-9._:%-]+")


def normalise_actor(handle: str) -> str:
    handle = handle.strip()
    m = re.match(r"^(?:https?://)?bsky\.app/profile/([^/?#]+)", handle)
    if m:
        handle = m.group(1)
    handle = handle.lstrip("@")
    if _DID.fullmatch(handle):
        return handle
    if "." not in handle and re.fullmatch(r"[A-Za-z0-9-]{1,63}", handle):
        handle += ".bsky.social"
    if not _HANDLE.fullmatch(handle):
        raise BadInput(f"{handle!r} is not a Bluesky handle (for example: dril.bsky.social)")
    return handle.lower()


def _field(obj, name: str):
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


class BlueskySource:
    name = "bluesky"

    def __init__(self, *, sleep: SleepFn = time.sleep, clock: ClockFn = time.time):
        self.sleep = sleep
        self.clock = clock

    def fetch(self, *, handle: str | None = None, file: Path | None = None, base_url: str | None = None,
              limit: int | None = None, on_progress: ProgressFn | None = None) -> list[RawPost]:
        actor = normalise_actor(need_handle(handle, "bluesky", "dril.bsky.social"))
        limit = check_limit(limit, DEFAULT_NETWORK_LIMIT)
        from atproto import Client
        from atproto_client.request import Request

        client = Client(base_url=base_url or DEFAULT_BASE_URL, request=Request(timeout=HTTP_TIMEOUT))
        posts: list[RawPost] = []
        cursor = None
        author_did = actor if actor.startswith("did:") else None
        while len(posts) < limit:
            params = {"actor": actor, "filter": "posts_no_replies", "limit": PAGE_SIZE}
            if cursor:
                params["cursor"] = cursor
            page = self._get_page(client, params, actor)
            for item in page.feed or []:
                reason = _field(item, "reason")
                if reason is not None:  # a repost (or an unknown reason); a pinned post is kept
                    kind = str(_field(reason, "py_type") or _field(reason, "$type") or "")
                    if not kind.endswith("#reasonPin"):
                        continue
                post = item.post
                author = _field(post, "author")
                did, author_handle = _field(author, "did"), (_field(author, "handle") or "").lower()
                if author_did is None and author_handle == actor:
                    author_did = did
                if did is not None and author_did is not None and did != author_did:
                    continue  # somebody else's post (should not happen without a reason)
                record = _field(post, "record")
                text = _field(record, "text")
                if not isinstance(text, str):
                    continue
                posts.append(RawPost(
                    text=text, id=str(_field(post, "uri")), created_at=iso(_field(record, "created_at")
                                                                           or _field(record, "createdAt")),
                    is_reply=_field(record, "reply") is not None or _field(item, "reply") is not None,
                ))
                if len(posts) >= limit:
                    break
            report(on_progress, len(posts))
            cursor = page.cursor
            if not cursor or not page.feed:
                break
        return posts

    def _get_page(self, client, params: dict, actor: str):
        from atproto_client import exceptions as ex

        waits = 0
        while True:
            try:
                return client.app.bsky.feed.get_author_feed(params)
            except ex.RateLimitExceededError as e:
                waits += 1
                if waits > MAX_RATE_LIMIT_WAITS:
                    raise SourceUnavailable("Bluesky keeps answering 'rate limit exceeded': try again later") from None
                reset = e.reset_at.timestamp() if e.reset_at else None
                if reset is None and e.retry_after is not None:
                    reset = self.clock() + e.retry_after - 1
                sleep_until(reset, sleep=self.sleep, clock=self.clock, fallback=30, max_wait=MAX_WAIT_S)
            except ex.BadRequestError as e:
                raise BadInput(f"Bluesky could not give the posts of {actor}: {_xrpc_message(e)}") from None
            except ex.UnauthorizedError as e:
                raise BadInput(f"Bluesky refused to show the posts of {actor}: {_xrpc_message(e)}") from None
            except ex.NetworkError as e:
                raise SourceUnavailable(f"could not reach Bluesky ({e.__class__.__name__}); try again later") from None
            except ex.AtProtocolError as e:
                raise SourceUnavailable(f"Bluesky answered unexpectedly: {_xrpc_message(e)}") from None


def _xrpc_message(e: Exception) -> str:
    content = getattr(getattr(e, "response", None), "content", None)
    error, message = _field(content, "error"), _field(content, "message")
    if error or message:
        return f"{error or 'error'}: {message}" if message else str(error)
    return type(e).__name__
