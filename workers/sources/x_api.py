"""``x``: a user's timeline through the X API v2 (tweepy's ``Client``).

App-only auth with a bearer token (``X_BEARER_TOKEN``). Looks the user up by
username, then pages through ``GET /2/users/:id/tweets`` with retweets and
replies excluded, 100 at a time, up to the API's 3,200 latest posts. A 429
sleeps until ``x-rate-limit-reset`` (the sleep is injectable).

tweepy has no host setting, so ``_HostClient`` overrides ``request`` to send
to ``base_url``; it also never logs the headers (tweepy's own ``request``
logs the bearer token at DEBUG level).
"""
from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from core import xlimits
from core.contract import BadInput

from .base import (HTTP_TIMEOUT, ClockFn, ProgressFn, RawPost, SleepFn, SourceUnavailable, check_limit,
                   iso, need_handle, report, sleep_until)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.twitter.com"
TOKEN_ENV = "X_BEARER_TOKEN"
MAX_POSTS = 3200  # the API serves a user's latest 3,200 posts at most
PAGE_SIZE = 100
MAX_RATE_LIMIT_WAITS = 5
MAX_WAIT_S = 16 * 60  # X's windows are 15 minutes

USERNAME = re.compile(r"[A-Za-z0-9_]{1,15}")


def normalise_username(handle: str) -> str:
    handle = handle.strip()
    m = re.match(r"^(?:https?://)?(?:www\.|mobile\.)?(?:x|twitter)\.com/([^/?#]+)", handle)
    if m:
        handle = m.group(1)
    handle = handle.lstrip("@")
    if not USERNAME.fullmatch(handle):
        raise BadInput(f"{handle!r} is not an X username: 1 to 15 letters, digits or _ (for example: dril)")
    return handle


def _make_client(bearer_token: str, base_url: str, sleep: SleepFn, clock: ClockFn):
    import requests
    import tweepy
    from tweepy.errors import (BadRequest, Forbidden, HTTPException, NotFound, TooManyRequests,
                               TwitterServerError, Unauthorized)

    class _HostClient(tweepy.Client):
        def request(self, method, route, params=None, json=None, user_auth=False):
            if user_auth:
                raise RuntimeError("this client reads public timelines with a bearer token only")
            headers = {"User-Agent": self.user_agent, "Authorization": f"Bearer {self.bearer_token}"}
            waits = 0
            while True:
                log.debug("X API %s %s %s", method, route, params)
                failure = None
                try:
                    response = self.session.request(method, base_url + route, params=params, json=json,
                                                    headers=headers, timeout=HTTP_TIMEOUT)
                except requests.RequestException as e:
                    failure = type(e).__name__
                if failure is not None:  # raised here so that no traceback holds the request headers
                    raise SourceUnavailable(f"could not reach the X API at {base_url}: {failure}")
                with response:
                    status = response.status_code
                    if status == 429:
                        try:
                            problem = xlimits.usage_cap(response.json())
                        except ValueError:
                            problem = None
                        if problem is not None:  # waiting minutes changes nothing: say when it lifts
                            until = xlimits.cap_ends(problem, response.headers, clock())
                            raise SourceUnavailable(
                                f"X answered that this app's usage cap is reached ({xlimits.describe(problem)}): "
                                f"it serves no more posts until {_day(until)}. Use the archive, csv, bluesky or "
                                "mastodon source meanwhile")
                        reset = response.headers.get("x-rate-limit-reset")
                        reset_at = int(reset) if reset and reset.isdigit() else None
                        waits += 1
                        if waits > MAX_RATE_LIMIT_WAITS:
                            raise TooManyRequests(response, reset_time=reset_at)
                        waited = sleep_until(reset_at, sleep=sleep, clock=clock, fallback=60, max_wait=MAX_WAIT_S)
                        log.warning("X API rate limit reached; waited %.0f s", waited)
                        continue
                    if status == 400:
                        raise BadRequest(response)
                    if status == 401:
                        raise Unauthorized(response)
                    if status == 403:
                        raise Forbidden(response)
                    if status == 404:
                        raise NotFound(response)
                    if status >= 500:
                        raise TwitterServerError(response)
                    if not 200 <= status < 300:
                        raise HTTPException(response)
                    return response

    return _HostClient(bearer_token=bearer_token, wait_on_rate_limit=False)


class XSource:
    name = "x"

    def __init__(self, bearer_token: str | None = None, *, sleep: SleepFn = time.sleep,
                 clock: ClockFn = time.time):
        self._token = bearer_token
        self.sleep = sleep
        self.clock = clock

    def __repr__(self) -> str:  # never show the token
        return "XSource()"

    def fetch(self, *, handle: str | None = None, file: Path | None = None, base_url: str | None = None,
              limit: int | None = None, on_progress: ProgressFn | None = None) -> list[RawPost]:
        username = normalise_username(need_handle(handle, "x", "dril"))
        limit = check_limit(limit, MAX_POSTS, MAX_POSTS)
        token = self._token or os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise BadInput(f"the x source needs an X API bearer token: set {TOKEN_ENV} in the worker's "
                           "environment (or use the archive, csv, bluesky or mastodon source)")
        base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        if base.endswith("/2"):
            base = base[:-2]
        error = None
        try:
            return self._fetch(_make_client(token, base, self.sleep, self.clock), username, limit, on_progress)
        except BadInput:
            raise
        except Exception as e:  # tweepy's errors: say what happened, never the token
            error = _explain(e, username)
        # raised outside the except block: no __context__ chain back to the request and its headers
        raise error

    @staticmethod
    def _fetch(client, username: str, limit: int, on_progress: ProgressFn | None) -> list[RawPost]:
        user = client.get_user(username=username)
        if user.data is None:
            detail = "; ".join(str(err.get("detail", err)) for err in (user.errors or [])) or "no such user"
            raise BadInput(f"X user @{username} not found ({detail})")
        posts: list[RawPost] = []
        token = None
        while len(posts) < limit:
            page = client.get_users_tweets(
                user.data.id, exclude=["retweets", "replies"], max_results=PAGE_SIZE,
                # note_tweet: a post over 280 characters; `text` holds only its first 280.
                pagination_token=token, tweet_fields=["created_at", "referenced_tweets", "note_tweet"],
            )
            for tweet in page.data or []:
                refs = {r.type for r in tweet.referenced_tweets or []}
                note = (tweet.data.get("note_tweet") or {}).get("text")
                posts.append(RawPost(
                    text=note or tweet.text, id=str(tweet.id), created_at=iso(tweet.created_at),
                    is_retweet="retweeted" in refs or tweet.text.startswith("RT @"),
                    is_reply="replied_to" in refs,
                ))
                if len(posts) >= limit:
                    break
            report(on_progress, len(posts))
            token = (page.meta or {}).get("next_token")
            if not token:
                break
        return posts


def _day(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def _explain(e: Exception, username: str) -> BadInput:
    from tweepy.errors import (BadRequest, Forbidden, NotFound, TooManyRequests, TwitterServerError,
                               Unauthorized)

    detail = "; ".join(getattr(e, "api_messages", []) or []) or type(e).__name__
    if isinstance(e, Unauthorized):
        return BadInput(f"X refused the bearer token ({TOKEN_ENV}): check it is valid ({detail})")
    if isinstance(e, Forbidden):
        return BadInput(f"X refused to serve @{username}'s posts with this token: the account may be "
                        f"protected or suspended, or the API plan may not include reading timelines ({detail})")
    if isinstance(e, NotFound):
        return BadInput(f"X user @{username} not found ({detail})")
    if isinstance(e, BadRequest):
        return BadInput(f"X rejected the request for @{username} ({detail})")
    if isinstance(e, TooManyRequests):
        return SourceUnavailable("X keeps answering 'too many requests': try again in 15 minutes")
    if isinstance(e, TwitterServerError):
        return SourceUnavailable(f"the X API failed ({detail}); try again later")
    return SourceUnavailable(f"the X API answered unexpectedly: {type(e).__name__}")
